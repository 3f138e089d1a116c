//! Callers who may never look learn nothing about who the region holds: for a private
//! company's user and a suspended organisation's user, every patient-scoped route answers the
//! same (status and body) for an NHS number the index holds and one it does not, over the API;
//! the pages refuse them at sign-in (their CIS2 role profiles are at organisations that are not
//! members), before any patient is named.

use crate::helpers::*;
use serde_json::{json, Value};

/// The body with the NHS number asked about (plain and spaced) replaced, so two answers can
/// be compared.
fn neutral(body: &str, nhs: &str) -> String {
    let spaced = format!("{} {} {}", &nhs[..3], &nhs[3..6], &nhs[6..]);
    body.replace(nhs, "NHSNUMBER").replace(&spaced, "NHSNUMBER")
}

/// One route's answer: status and neutralised body.
async fn api(
    t: &TestDemo,
    user: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    nhs: &str,
) -> (u16, String) {
    let path = path.replace("{nhs}", nhs);
    let req = match method {
        "GET" => t.http.get(t.url(&path)),
        _ => t
            .http
            .post(t.url(&path))
            .header("content-type", "application/fhir+json")
            .body(
                body.map(|b| b.to_string().replace("{nhs}", nhs))
                    .unwrap_or_default(),
            ),
    };
    let resp = req
        .bearer_auth(t.token(user))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, neutral(&resp.text().await.expect("body"), nhs))
}

#[tokio::test]
async fn refused_callers_get_the_same_answer_for_held_and_unheld_patients() {
    let t = start().await;
    let held = t.patient("all_four_sources", 0);
    let unheld = unknown_patient(&t).await;
    let emergency = json!({"resourceType": "Parameters", "parameter": [
        {"name": "reason", "valueCode": "unconscious"},
        {"name": "text", "valueString": "Brought in unconscious"}]});
    let fhir: Vec<(&str, &str, Option<Value>)> = vec![
        ("GET", "/fhir/Patient/{nhs}/$everything", None),
        ("GET", "/access/explain?patient={nhs}", None),
        ("GET", "/fhir/Patient/{nhs}", None),
        ("GET", "/fhir/Patient?identifier={nhs}", None),
        ("GET", "/fhir/Consent?patient=Patient/{nhs}", None),
        ("GET", "/fhir/AuditEvent?patient={nhs}", None),
        (
            "POST",
            "/fhir/Consent",
            Some(consent(
                "permission-to-view",
                "{nhs}",
                "permit",
                &[("given-by", "patient")],
            )),
        ),
        (
            "POST",
            "/fhir/Consent",
            Some(consent(
                "care-relationship",
                "{nhs}",
                "permit",
                &[("reason", "On my ward today")],
            )),
        ),
        (
            "POST",
            "/fhir/Consent",
            Some(consent(
                "opt-out",
                "{nhs}",
                "deny",
                &[("reason", "patient by phone")],
            )),
        ),
        (
            "POST",
            "/fhir/Consent",
            Some(consent(
                "opt-out-override",
                "{nhs}",
                "permit",
                &[
                    ("override-reason", "safeguarding"),
                    ("reason", "case conference"),
                ],
            )),
        ),
        (
            "POST",
            "/fhir/Patient/{nhs}/$emergency-access",
            Some(emergency),
        ),
    ];
    for user in ["acme.jones", "pharm.lee"] {
        for (method, path, body) in &fhir {
            let a = api(&t, user, method, path, body.as_ref(), &held).await;
            let b = api(&t, user, method, path, body.as_ref(), &unheld).await;
            assert_eq!(a, b, "{user} {method} {path}: held and unheld answer alike");
            assert!(
                a.0 == 403 || (a.0 == 200 && path.starts_with("/access/")),
                "{user} {method} {path} is refused: {a:?}"
            );
            assert_ne!(a.0, 404, "{user} {method} {path}");
        }
        // Their NHS CIS2 role profiles are at an organisation that is not a member (or is
        // suspended): the pages refuse them at sign-in, before any patient is named.
        let (status, body) = t.refused_sign_in(user).await;
        assert_eq!(status, 403, "{user}: {body}");
        assert!(
            body.contains("not a member") || body.contains("suspended"),
            "{user} is told why: {body}"
        );
    }
}
