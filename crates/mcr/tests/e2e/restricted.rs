//! A restricted (S-flagged) patient over HTTP: their address, telephone and registered
//! practice are never shown (record page, FHIR Patient read and search, `$everything`),
//! whichever source sends them, and the view says so and audits it.

use crate::helpers::*;
use mcr_domain::NhsNumber;
use mcr_store::PatientStatusRow;
use serde_json::Value;

fn location_fields(p: &Value) -> Vec<&'static str> {
    ["address", "telecom", "contact", "generalPractitioner"]
        .into_iter()
        .filter(|f| p.get(*f).is_some())
        .collect()
}

fn bundle_patient(bundle: &Value) -> Value {
    resources(bundle, "Patient")
        .first()
        .map(|p| (*p).clone())
        .expect("a Patient in the bundle")
}

#[tokio::test]
async fn a_restricted_patients_address_and_practice_are_never_shown() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    t.give_permission(AE, &nhs).await;

    // Before: the sources' Patient and the index's carry where the person lives (so the
    // checks below can fail).
    let (status, before) = t.everything(AE, &nhs).await;
    assert_eq!(status, 200, "{before}");
    assert!(
        bundle_patient(&before).get("address").is_some(),
        "{}",
        bundle_patient(&before)
    );
    let (_, read) = t.get(AE, &format!("/fhir/Patient/{nhs}")).await;
    assert!(
        read.get("address").is_some() && read.get("generalPractitioner").is_some(),
        "{read}"
    );
    let postcode = read["address"][0]["postalCode"]
        .as_str()
        .expect("a postcode")
        .to_owned();

    // PDS says the patient is restricted.
    t.demo
        .gateway
        .gateway
        .store()
        .put_patient_statuses(&[PatientStatusRow {
            nhs_number: NhsNumber::parse(&nhs).expect("nhs"),
            restricted: true,
            deceased: None,
            said_by: "pds".into(),
            updated_at: mcr_domain::Clock::now(&mcr_domain::SystemClock),
        }])
        .await
        .expect("status written");

    // $everything: the Patient without location, and the OperationOutcome says why.
    let (status, bundle) = t.everything(AE, &nhs).await;
    assert_eq!(status, 200, "{bundle}");
    let patient = bundle_patient(&bundle);
    assert_eq!(location_fields(&patient), Vec::<&str>::new(), "{patient}");
    assert!(patient.get("name").is_some() && patient.get("birthDate").is_some());
    let codes = issue_codes(outcome(&bundle));
    assert!(
        codes.iter().any(|(c, _)| c == "location-withheld"),
        "{codes:?}"
    );
    assert!(
        !bundle.to_string().contains(&postcode),
        "the postcode leaked"
    );

    // FHIR Patient read and search: no postcode, no practice, labelled restricted.
    let (status, read) = t.get(AE, &format!("/fhir/Patient/{nhs}")).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(location_fields(&read), Vec::<&str>::new(), "{read}");
    assert_eq!(read["meta"]["security"][0]["code"], "R");
    let (status, found) = t
        .get(
            AE,
            &format!("/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}"),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert!(!found.to_string().contains(&postcode), "{found}");

    // The record page: says the address is withheld, never shows it.
    let page = t.sign_in(AE).await;
    let html = page
        .http
        .get(t.url(&format!("/app/patient/{nhs}")))
        .header("cookie", &page.cookie)
        .send()
        .await
        .expect("record page")
        .text()
        .await
        .expect("html");
    assert!(
        html.contains("address withheld: restricted record"),
        "{html}"
    );
    assert!(html.contains("id=\"restricted-record\""));
    assert!(!html.contains(&postcode), "the postcode is on the page");

    // Audited: the view's record says the location was withheld.
    let (status, audit) = t
        .get(
            "po.wright",
            &format!("/fhir/AuditEvent?patient=Patient/{nhs}&_count=100"),
        )
        .await;
    assert_eq!(status, 200, "{audit}");
    assert!(
        audit
            .to_string()
            .contains("address withheld: restricted record"),
        "{audit}"
    );
}
