//! The protected person list on both backends: a person is added with the audit record in one
//! transaction (a second add replaces the category and note), listed by NHS number, removed
//! once (removing someone not on the list writes nothing), and a change whose audit append
//! fails is not kept.

mod fixtures;
mod raw;

use fixtures::{chain, t};
use mcr_domain::NhsNumber;
use mcr_store::{AuditAppend, ProtectedPersonRow, Store};
use raw::{on_both_backends_raw, Raw};

fn nhs(s: &str) -> NhsNumber {
    NhsNumber::parse(s).expect("valid test NHS number")
}

fn audit(action: &str, patient: &str) -> AuditAppend {
    AuditAppend {
        role_profile_id: None,
        at: t(0),
        correlation_id: format!("c-{action}"),
        user_id: "po.wright".into(),
        org_code: "RWH".into(),
        patient: Some(patient.into()),
        action: action.into(),
        outcome: "added".into(),
        payload: "{}".into(),
    }
}

fn person(n: &str, category: &str, note: &str) -> ProtectedPersonRow {
    ProtectedPersonRow {
        nhs_number: nhs(n),
        category: category.into(),
        note: note.into(),
        added_by: "po.wright".into(),
        added_at: t(1),
    }
}

async fn audit_count(store: &dyn Store) -> usize {
    store.audit_rows(0, 1000).await.expect("read audit").len()
}

async fn story(store: &dyn Store, raw: Raw) {
    assert!(store.protected_persons().await.expect("list").is_empty());
    let (a, b) = ("9434765919", "9990000018");
    store
        .add_protected_person(
            &person(b, "public-figure", "Local MP"),
            &audit("protect-person", b),
            &chain,
        )
        .await
        .expect("add");
    store
        .add_protected_person(
            &person(a, "staff", "Ward nurse"),
            &audit("protect-person", a),
            &chain,
        )
        .await
        .expect("add");
    // Added again: the category and note are replaced, not duplicated.
    store
        .add_protected_person(
            &person(a, "other", "Moved to the board"),
            &audit("protect-person", a),
            &chain,
        )
        .await
        .expect("add again");
    let list = store.protected_persons().await.expect("list");
    assert_eq!(
        list.iter()
            .map(|p| (p.nhs_number.as_str(), p.category.as_str(), p.note.as_str()))
            .collect::<Vec<_>>(),
        [
            (a, "other", "Moved to the board"),
            (b, "public-figure", "Local MP")
        ],
        "by NHS number"
    );
    assert_eq!(list[0].added_at, t(1));
    assert_eq!(list[0].added_by, "po.wright");
    assert_eq!(audit_count(store).await, 3);

    let removed = store
        .remove_protected_person(&nhs(a), &audit("unprotect-person", a), &chain)
        .await
        .expect("remove");
    assert!(removed.is_some());
    let again = store
        .remove_protected_person(&nhs(a), &audit("unprotect-person", a), &chain)
        .await
        .expect("remove again");
    assert!(again.is_none(), "not on the list: nothing written");
    assert_eq!(audit_count(store).await, 4);

    // A category the table does not know is refused by the schema.
    assert!(store
        .add_protected_person(
            &person(a, "celebrity", "x"),
            &audit("protect-person", a),
            &chain
        )
        .await
        .is_err());

    // No audit, no change.
    raw.refuse_audit().await;
    assert!(store
        .add_protected_person(
            &person(a, "staff", "Ward nurse"),
            &audit("protect-person", a),
            &chain
        )
        .await
        .is_err());
    assert!(store
        .remove_protected_person(&nhs(b), &audit("unprotect-person", b), &chain)
        .await
        .is_err());
    let list = store.protected_persons().await.expect("list");
    assert_eq!(list.len(), 1, "neither change was kept");
    assert_eq!(list[0].nhs_number.as_str(), b);
}

on_both_backends_raw!(
    story,
    protected_persons_on_sqlite,
    protected_persons_on_postgres
);
