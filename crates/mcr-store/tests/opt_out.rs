//! Opt-out requests on both backends: a request is stored with its audit record, listed by
//! state oldest first, decided once (a second decision writes nothing), and a request whose
//! audit append fails is not kept.

mod raw;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use mcr_domain::NhsNumber;
use mcr_store::{AuditAppend, OptOutDecision, OptOutKind, OptOutRequestRow, OptOutState, Store};
use raw::{on_both_backends_raw, Raw};

fn chain(seq: i64, prev_hash: &str, record: &AuditAppend) -> String {
    format!(
        "{seq}:{}:{}:{}",
        prev_hash.len(),
        record.action,
        record.payload.len()
    )
}

fn t(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
        .single()
        .expect("valid time")
        + chrono::Duration::minutes(i64::from(minute))
}

fn nhs(s: &str) -> NhsNumber {
    NhsNumber::parse(s).expect("valid test NHS number")
}

fn audit(action: &str, at: DateTime<Utc>) -> AuditAppend {
    AuditAppend {
        role_profile_id: None,
        at,
        correlation_id: format!("c-{action}"),
        user_id: "public".into(),
        org_code: "PUBLIC".into(),
        patient: None,
        action: action.into(),
        outcome: "received".into(),
        payload: "{}".into(),
    }
}

fn request(reference: &str, minute: u32, nhs_number: Option<NhsNumber>) -> OptOutRequestRow {
    OptOutRequestRow {
        reference: reference.into(),
        // Requests whose reference ends in 2 ask to opt back in.
        kind: if reference.ends_with('2') {
            OptOutKind::OptIn
        } else {
            OptOutKind::OptOut
        },
        received_at: t(minute),
        given_name: "Zoë <script>".into(),
        family_name: "O'Brien-Ñúñez".into(),
        birth_date: NaiveDate::from_ymd_opt(1970, 1, 31).expect("date"),
        nhs_number,
        postcode: "AL1 3ER".into(),
        contact: "zoe@example.org".into(),
        state: OptOutState::Received,
        matched_nhs: None,
        decided_by: None,
        decided_at: None,
        decision_note: None,
    }
}

impl Raw {
    /// Audit appends are taken again.
    async fn allow_audit(&self) {
        match self {
            Raw::Sqlite(_) => self.exec("DROP TRIGGER audit_refused").await,
            Raw::Postgres(_) => self.exec("DROP TRIGGER audit_refused ON audit_log").await,
        }
    }
}

async fn audit_count(store: &dyn Store) -> usize {
    store.audit_rows(0, 1000).await.expect("read audit").len()
}

async fn story(store: &dyn Store, raw: Raw) {
    assert!(store
        .opt_out_requests(None, 0)
        .await
        .expect("list")
        .is_empty());
    assert_eq!(store.opt_out_request("OPT-NONE").await.expect("read"), None);

    // Received out of time order; listed oldest first.
    let late = request("OPT-BBBB-2222", 30, None);
    let early = request("OPT-AAAA-1111", 10, Some(nhs("9434765919")));
    for r in [&late, &early] {
        let row = store
            .add_opt_out_request(r, &audit("opt-out-request", r.received_at), &chain)
            .await
            .expect("add");
        assert_eq!(row.record.action, "opt-out-request");
    }
    assert_eq!(audit_count(store).await, 2);
    assert_eq!(
        store.opt_out_requests(None, 0).await.expect("list"),
        vec![early.clone(), late.clone()]
    );
    assert_eq!(
        store.opt_out_request("OPT-AAAA-1111").await.expect("read"),
        Some(early.clone())
    );

    // A reference used twice is refused, and nothing is audited for it.
    assert!(store
        .add_opt_out_request(&early, &audit("opt-out-request", t(40)), &chain)
        .await
        .is_err());
    assert_eq!(audit_count(store).await, 2);

    // Verified once; the second decision writes nothing.
    let decision = OptOutDecision {
        reference: early.reference.clone(),
        state: OptOutState::Verified,
        matched_nhs: Some(nhs("9434765919")),
        decided_by: "po.wright".into(),
        decided_at: t(50),
        note: Some("matched by NHS number".into()),
    };
    let row = store
        .decide_opt_out_request(&decision, &audit("verify-opt-out-request", t(50)), &chain)
        .await
        .expect("decide");
    assert!(row.is_some(), "a received request can be decided");
    let again = OptOutDecision {
        state: OptOutState::Rejected,
        ..decision.clone()
    };
    assert_eq!(
        store
            .decide_opt_out_request(&again, &audit("reject", t(51)), &chain)
            .await
            .expect("decide again"),
        None
    );
    let unknown = OptOutDecision {
        reference: "OPT-NOPE".into(),
        ..decision.clone()
    };
    assert_eq!(
        store
            .decide_opt_out_request(&unknown, &audit("reject", t(51)), &chain)
            .await
            .expect("decide unknown"),
        None
    );
    assert_eq!(audit_count(store).await, 3);

    let verified = store
        .opt_out_request("OPT-AAAA-1111")
        .await
        .expect("read")
        .expect("still there");
    assert_eq!(verified.state, OptOutState::Verified);
    assert_eq!(verified.matched_nhs, Some(nhs("9434765919")));
    assert_eq!(verified.decided_by.as_deref(), Some("po.wright"));
    assert_eq!(verified.decided_at, Some(t(50)));
    assert_eq!(
        verified.decision_note.as_deref(),
        Some("matched by NHS number")
    );
    assert_eq!(
        store
            .opt_out_requests(Some(OptOutState::Received), 0)
            .await
            .expect("list"),
        vec![late.clone()]
    );
    assert_eq!(
        store
            .opt_out_requests(Some(OptOutState::Verified), 0)
            .await
            .expect("list"),
        vec![verified]
    );

    // When the audit record cannot be written, neither the request nor a decision is kept.
    raw.refuse_audit().await;
    let refused = request("OPT-CCCC-3333", 60, None);
    assert!(store
        .add_opt_out_request(&refused, &audit("opt-out-request", t(60)), &chain)
        .await
        .is_err());
    let reject_late = OptOutDecision {
        reference: late.reference.clone(),
        state: OptOutState::Rejected,
        matched_nhs: None,
        decided_by: "po.wright".into(),
        decided_at: t(61),
        note: None,
    };
    assert!(store
        .decide_opt_out_request(&reject_late, &audit("reject", t(61)), &chain)
        .await
        .is_err());
    raw.allow_audit().await;
    assert_eq!(
        store.opt_out_request("OPT-CCCC-3333").await.expect("read"),
        None
    );
    assert_eq!(
        store.opt_out_request(&late.reference).await.expect("read"),
        Some(late.clone())
    );
    assert_eq!(audit_count(store).await, 3);

    // Limits are honoured.
    assert_eq!(
        store.opt_out_requests(None, 1).await.expect("list").len(),
        1
    );
}

on_both_backends_raw!(
    story,
    opt_out_requests_on_sqlite,
    opt_out_requests_on_postgres
);
