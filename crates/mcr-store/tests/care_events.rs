//! Care events and held messages on both backends: an event is keyed by its source, so a
//! repeat replaces it; its end can be set and cleared; a cancel removes it; a merge moves a
//! patient's events; the view's one-statement read returns them with the other governance
//! records, by start; held messages list newest first.

use chrono::{DateTime, TimeZone, Utc};
use mcr_domain::NhsNumber;
use mcr_store::{AuditAppend, CareEventKey, CareEventRow, GovernanceChange, HeldMessage, Store};

fn t(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, 9, 30, 0)
        .single()
        .expect("valid time")
}

fn nhs(s: &str) -> NhsNumber {
    NhsNumber::parse(s).expect("valid test NHS number")
}

fn event(who: &NhsNumber, id: &str, kind: &str, start: u32, end: Option<u32>) -> CareEventRow {
    CareEventRow {
        nhs_number: who.clone(),
        org_code: "RWH".into(),
        kind: kind.into(),
        ward: Some("Ward 7B".into()),
        team: None,
        service: Some("180".into()),
        start: t(start),
        end: end.map(t),
        origin: "adt".into(),
        source_event_id: id.into(),
        received_at: t(start),
    }
}

fn key(id: &str) -> CareEventKey<'_> {
    CareEventKey {
        origin: "adt",
        org_code: "RWH",
        source_event_id: id,
    }
}

async fn story(store: &dyn Store) {
    let a = nhs("9434765919");
    let b = nhs("9434765870");
    assert!(store
        .governance(&a)
        .await
        .expect("read")
        .care_events
        .is_empty());

    // Two events, one given twice in one call: the last wins.
    let admitted = event(&a, "V1", "admission", 20, None);
    let mut first = event(&a, "V2", "encounter", 3, Some(3));
    first.ward = None;
    let seen = event(&a, "V2", "encounter", 2, Some(2));
    store
        .upsert_care_events(&[first, admitted.clone(), seen.clone()])
        .await
        .expect("upsert");
    let read = store.governance(&a).await.expect("read").care_events;
    assert_eq!(read, vec![seen.clone(), admitted.clone()], "by start");
    assert_eq!(
        store.care_event(key("V1")).await.expect("read one"),
        Some(admitted.clone())
    );
    assert_eq!(store.care_event(key("V9")).await.expect("read one"), None);

    // The view's one statement returns the same events.
    let view = store.view_inputs(&a).await.expect("view inputs");
    assert_eq!(view.governance.care_events, read);

    // Discharge, then the discharge cancelled.
    assert!(store
        .set_care_event_end(key("V1"), Some(t(25)))
        .await
        .expect("end"));
    let ended = store
        .care_event(key("V1"))
        .await
        .expect("read")
        .expect("held");
    assert_eq!(ended.end, Some(t(25)));
    assert!(store
        .set_care_event_end(key("V1"), None)
        .await
        .expect("reopen"));
    let reopened = store
        .care_event(key("V1"))
        .await
        .expect("read")
        .expect("held");
    assert_eq!(reopened.end, None);
    assert!(!store
        .set_care_event_end(key("V9"), Some(t(25)))
        .await
        .expect("no such event"));

    // The admission cancelled: gone; a second cancel finds nothing.
    assert!(store.cancel_care_event(key("V1")).await.expect("cancel"));
    assert!(!store
        .cancel_care_event(key("V1"))
        .await
        .expect("cancel again"));
    assert_eq!(
        store.governance(&a).await.expect("read").care_events,
        vec![seen.clone()]
    );

    // A merge moves a's events to b.
    assert_eq!(store.merge_care_events(&a, &b).await.expect("merge"), 1);
    assert!(store
        .governance(&a)
        .await
        .expect("read")
        .care_events
        .is_empty());
    let moved = store.governance(&b).await.expect("read").care_events;
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].nhs_number, b);

    // A feed's event and its audit record in one transaction.
    let fed = event(&a, "V7", "admission", 21, None);
    let audit = AuditAppend {
        role_profile_id: None,
        at: t(21),
        correlation_id: "adt-RWH-1".into(),
        user_id: "feed:adt:RWH".into(),
        org_code: "RWH".into(),
        patient: Some(a.to_string()),
        action: "care-event".into(),
        outcome: "recorded".into(),
        payload: "{}".into(),
    };
    let chain =
        |seq: i64, prev: &str, r: &AuditAppend| format!("{seq}:{}:{}", prev.len(), r.action);
    store
        .record_governance(&GovernanceChange::CareEvent(fed.clone()), &audit, &chain)
        .await
        .expect("event and audit");
    assert_eq!(
        store.care_event(key("V7")).await.expect("read"),
        Some(fed),
        "written with its audit record"
    );
    assert_eq!(store.audit_rows(0, 10).await.expect("audit").len(), 1);

    // Held messages, newest first, limited.
    assert!(store.held_messages(0).await.expect("list").is_empty());
    for (i, code) in ["AE", "AR", "AE"].iter().enumerate() {
        store
            .hold_message(&HeldMessage {
                received_at: t(10 + u32::try_from(i).expect("small")),
                channel: "adt".into(),
                sender: Some("RWH".into()),
                message_type: Some("ADT^A01".into()),
                control_id: Some(format!("MSG{i}")),
                ack_code: (*code).into(),
                reason: format!("reason {i}"),
            })
            .await
            .expect("hold");
    }
    let held = store.held_messages(2).await.expect("list");
    assert_eq!(held.len(), 2);
    assert_eq!(held[0].control_id.as_deref(), Some("MSG2"));
    assert_eq!(held[1].ack_code, "AR");

    // Events that ended before the cut-off go; open ones and later ones stay.
    let c = nhs("9434765838");
    store
        .upsert_care_events(&[
            event(&c, "P1", "encounter", 1, Some(2)),
            event(&c, "P2", "encounter", 3, Some(9)),
            event(&c, "P3", "admission", 1, None),
        ])
        .await
        .expect("upsert");
    let before: Vec<String> = store
        .governance(&c)
        .await
        .expect("read")
        .care_events
        .into_iter()
        .map(|e| e.source_event_id)
        .collect();
    assert_eq!(before.len(), 3);
    let removed = store.prune_care_events(t(5)).await.expect("prune");
    assert!(removed >= 1, "P1 and any earlier ended events: {removed}");
    let mut left: Vec<String> = store
        .governance(&c)
        .await
        .expect("read")
        .care_events
        .into_iter()
        .map(|e| e.source_event_id)
        .collect();
    left.sort();
    assert_eq!(left, ["P2", "P3"]);
    assert_eq!(store.prune_care_events(t(5)).await.expect("again"), 0);
}

#[tokio::test]
async fn care_events_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = mcr_testkit::sqlite_url(dir.path());
    let store = mcr_store::connect_and_migrate(&url).await.expect("open");
    story(&*store).await;
}

#[tokio::test]
async fn care_events_on_postgres() {
    let url = mcr_testkit::postgres_url().await;
    let store = mcr_store::connect_and_migrate(&url).await.expect("open");
    story(&*store).await;
}
