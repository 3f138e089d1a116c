//! What PDS (or a source's label) says of a patient, on both backends: written and read back;
//! a source's label adds a restriction but never lifts one; PDS's own word replaces it; a
//! death is kept when a later row says nothing of it.

mod backends;

use backends::on_both_backends;
use chrono::{TimeZone, Utc};
use mcr_domain::NhsNumber;
use mcr_store::{PatientStatusRow, Store};

fn row(nhs: &str, restricted: bool, deceased: Option<&str>, said_by: &str) -> PatientStatusRow {
    PatientStatusRow {
        nhs_number: NhsNumber::parse(nhs).expect("nhs"),
        restricted,
        deceased: deceased.map(str::to_owned),
        said_by: said_by.into(),
        updated_at: Utc
            .with_ymd_and_hms(2026, 12, 4, 9, 0, 0)
            .single()
            .expect("t"),
    }
}

async fn story(store: &dyn Store) {
    let nhs = NhsNumber::parse("9990000018").expect("nhs");
    assert_eq!(store.patient_status(&nhs).await.expect("read"), None);
    store
        .put_patient_statuses(&[row("9990000018", true, None, "pds")])
        .await
        .expect("write");
    let held = store
        .patient_status(&nhs)
        .await
        .expect("read")
        .expect("held");
    assert_eq!(held, row("9990000018", true, None, "pds"));

    // A source that does not label the patient does not lift PDS's restriction.
    store
        .put_patient_statuses(&[row("9990000018", false, None, "source-label")])
        .await
        .expect("write");
    assert!(
        store
            .patient_status(&nhs)
            .await
            .expect("read")
            .expect("held")
            .restricted
    );

    // PDS lifting it does; a death stays once said.
    store
        .put_patient_statuses(&[row(
            "9990000018",
            false,
            Some("2026-10-02T00:00:00+00:00"),
            "pds",
        )])
        .await
        .expect("write");
    store
        .put_patient_statuses(&[row("9990000018", false, None, "pds")])
        .await
        .expect("write");
    let held = store
        .patient_status(&nhs)
        .await
        .expect("read")
        .expect("held");
    assert!(!held.restricted);
    assert_eq!(held.deceased.as_deref(), Some("2026-10-02T00:00:00+00:00"));

    // A source's label restricts.
    store
        .put_patient_statuses(&[row("9990000018", true, None, "source-label")])
        .await
        .expect("write");
    assert!(
        store
            .patient_status(&nhs)
            .await
            .expect("read")
            .expect("held")
            .restricted
    );
    store
        .put_patient_statuses(&[])
        .await
        .expect("nothing to write");

    // Many at once: only the restricted are named, in chunks.
    store
        .put_patient_statuses(&[row("9990000026", false, None, "pds")])
        .await
        .expect("write");
    let mut asked: Vec<NhsNumber> = (0..1_200u32)
        .filter_map(|i| NhsNumber::parse(&format!("99980{i:05}")).ok())
        .collect();
    asked.push(nhs.clone());
    asked.push(NhsNumber::parse("9990000026").expect("nhs"));
    let restricted = store.restricted_among(&asked).await.expect("read");
    assert_eq!(restricted.into_iter().collect::<Vec<_>>(), vec![nhs]);
    assert!(store.restricted_among(&[]).await.expect("read").is_empty());
}

on_both_backends!(story, patient_status_on_sqlite, patient_status_on_postgres);
