//! Opt-out verification letters on both backends: one letter per request, written with its
//! audit record; wrong codes are counted and a confirmation happens once, each with its audit
//! record; nothing changes for a request with no letter.

mod fixtures;

use chrono::NaiveDate;
use fixtures::{chain, t};
use mcr_domain::NhsNumber;
use mcr_store::{
    AuditAppend, LetterAttempt, OptOutLetterRow, OptOutRequestRow, OptOutState, Store,
};

fn audit(action: &str) -> AuditAppend {
    AuditAppend {
        role_profile_id: None,
        at: t(0),
        correlation_id: format!("c-{action}"),
        user_id: "po".into(),
        org_code: "RWH".into(),
        patient: None,
        action: action.into(),
        outcome: "ok".into(),
        payload: "{}".into(),
    }
}

async fn story(store: &dyn Store) {
    let request = OptOutRequestRow {
        reference: "OPT-AAAA-BBBB".into(),
        kind: mcr_store::OptOutKind::OptOut,
        received_at: t(0),
        given_name: "Ann".into(),
        family_name: "Smith".into(),
        birth_date: NaiveDate::from_ymd_opt(1961, 3, 12).expect("date"),
        nhs_number: None,
        postcode: "SG1 2AB".into(),
        contact: "01438 000000".into(),
        state: OptOutState::Received,
        matched_nhs: None,
        decided_by: None,
        decided_at: None,
        decision_note: None,
    };
    store
        .add_opt_out_request(&request, &audit("opt-out-request"), &chain)
        .await
        .expect("request");
    let letter = OptOutLetterRow {
        reference: request.reference.clone(),
        nhs_number: NhsNumber::parse("9434765919").expect("nhs"),
        code_hash: "ab".repeat(32),
        sent_to: "the address held in the index (postcode SG1 2AB)".into(),
        sent_by: "po.wright".into(),
        sent_at: t(5),
        wrong_attempts: 0,
        confirmed_at: None,
    };
    assert!(store
        .opt_out_letter(&letter.reference)
        .await
        .expect("read")
        .is_none());
    let before = store.audit_rows(0, 100).await.expect("rows").len();
    let row = store
        .add_opt_out_letter(&letter, &audit("send-opt-out-letter"), &chain)
        .await
        .expect("add");
    assert!(row.is_some());
    assert!(
        store
            .add_opt_out_letter(&letter, &audit("send-opt-out-letter"), &chain)
            .await
            .expect("add again")
            .is_none(),
        "one letter per request"
    );
    assert_eq!(
        store.audit_rows(0, 100).await.expect("rows").len(),
        before + 1
    );
    assert_eq!(
        store.opt_out_letter(&letter.reference).await.expect("read"),
        Some(letter.clone())
    );
    for _ in 0..2 {
        assert!(store
            .record_letter_attempt(
                &letter.reference,
                LetterAttempt::Wrong,
                &audit("wrong"),
                &chain
            )
            .await
            .expect("wrong")
            .is_some());
    }
    let confirmed = LetterAttempt::Confirmed(t(60));
    assert!(store
        .record_letter_attempt(&letter.reference, confirmed, &audit("confirm"), &chain)
        .await
        .expect("confirm")
        .is_some());
    assert!(
        store
            .record_letter_attempt(&letter.reference, confirmed, &audit("confirm"), &chain)
            .await
            .expect("confirm again")
            .is_none(),
        "confirmed once"
    );
    assert!(store
        .record_letter_attempt(
            "OPT-NONE-NONE",
            LetterAttempt::Wrong,
            &audit("wrong"),
            &chain
        )
        .await
        .expect("none")
        .is_none());
    let read = store
        .opt_out_letter(&letter.reference)
        .await
        .expect("read")
        .expect("letter");
    assert_eq!((read.wrong_attempts, read.confirmed_at), (2, Some(t(60))));
    assert_eq!(
        store.audit_rows(0, 100).await.expect("rows").len(),
        before + 4
    );
}

#[tokio::test]
async fn opt_out_letters_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = mcr_testkit::sqlite_url(dir.path());
    let store = mcr_store::connect_and_migrate(&url).await.expect("open");
    story(&*store).await;
}

#[tokio::test]
async fn opt_out_letters_on_postgres() {
    let url = mcr_testkit::postgres_url().await;
    let store = mcr_store::connect_and_migrate(&url).await.expect("open");
    story(&*store).await;
}
