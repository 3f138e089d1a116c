//! What each demo user can and cannot see, over HTTP: the governance rules enforced by the
//! gateway for the FHIR API.

mod objections;

use crate::helpers::*;
use serde_json::json;

#[tokio::test]
async fn clinicians_with_a_relationship_need_permission_then_see_everything() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    for user in ["gp.patel", "ae.okafor", "nurse.evans"] {
        let (status, body) = t.everything(user, &nhs).await;
        assert_eq!(status, 403, "{user}: {body}");
        assert_eq!(deny_code(&body), "needs-permission", "{user}");
        t.give_permission(user, &nhs).await;
        let (status, bundle) = t.everything(user, &nhs).await;
        assert_eq!(status, 200, "{user}: {bundle}");
        assert!(
            !resources(&bundle, "MedicationStatement").is_empty()
                || !resources(&bundle, "Condition").is_empty(),
            "{user} sees clinical items"
        );
    }
}

#[tokio::test]
async fn permission_is_per_organisation_and_refusal_blocks() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    t.give_permission("ae.okafor", &nhs).await;
    // Another organisation still has to ask.
    let (status, body) = t.everything("nurse.evans", &nhs).await;
    assert_eq!(
        (status, deny_code(&body).as_str()),
        (403, "needs-permission")
    );
    // A refusal is recorded and blocks.
    t.refuse_permission("nurse.evans", &nhs).await;
    let (status, body) = t.everything("nurse.evans", &nhs).await;
    assert_eq!(
        (status, deny_code(&body).as_str()),
        (403, "permission-refused"),
        "{body}"
    );
}

#[tokio::test]
async fn social_care_sees_the_care_subset_only() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    t.give_permission("sw.khan", &nhs).await;
    let (status, bundle) = t.everything("sw.khan", &nhs).await;
    assert_eq!(status, 200, "{bundle}");
    for ty in ["MedicationStatement", "Condition", "Observation"] {
        assert!(
            resources(&bundle, ty).is_empty(),
            "social care must not see {ty}"
        );
    }
    let codes = issue_codes(outcome(&bundle));
    assert!(
        codes
            .iter()
            .any(|(c, s)| c == "section-not-available-to-role" && s == "medications"),
        "{codes:?}"
    );
    // Recent encounters only (90 days by default).
    let since = (mcr_domain::Clock::now(&mcr_domain::SystemClock) - chrono::Duration::days(91))
        .format("%Y-%m-%d")
        .to_string();
    for e in resources(&bundle, "Encounter") {
        let start = e["period"]["start"].as_str().expect("a dated encounter");
        assert!(
            start >= since.as_str(),
            "an old encounter reached social care: {start}"
        );
    }
    // A clinician sees the older ones too.
    t.give_permission("ae.okafor", &nhs).await;
    let (_, full) = t.everything("ae.okafor", &nhs).await;
    assert!(
        resources(&full, "Encounter")
            .iter()
            .any(|e| e["period"]["start"]
                .as_str()
                .is_some_and(|s| s < since.as_str())),
        "the fixture has older encounters, so the window was tested"
    );
}

#[tokio::test]
async fn receptionists_see_demographics_only() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    t.give_permission("rec.murphy", &nhs).await;
    let (status, bundle) = t.everything("rec.murphy", &nhs).await;
    assert_eq!(status, 200, "{bundle}");
    let types: std::collections::BTreeSet<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    assert!(
        types.iter().all(|t| [
            "Patient",
            "OperationOutcome",
            "Provenance",
            "EpisodeOfCare",
            "CareTeam"
        ]
        .contains(t)),
        "{types:?}"
    );
}

#[tokio::test]
async fn privacy_officers_and_private_companies_are_denied() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    let (status, body) = t.everything("po.wright", &nhs).await;
    assert_eq!(
        (status, deny_code(&body).as_str()),
        (403, "role-no-clinical-access"),
        "{body}"
    );
    let (status, body) = t.everything("acme.jones", &nhs).await;
    assert_eq!(
        (status, deny_code(&body).as_str()),
        (403, "org-kind-excluded"),
        "{body}"
    );
    // Even recording permission or searching does not open the door.
    let (status, _) = t
        .post(
            "acme.jones",
            "/fhir/Consent",
            &permission(&nhs, "permit", "patient"),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = t.get("acme.jones", &format!("/fhir/Patient/{nhs}")).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn no_relationship_means_claim_one_then_ask() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    let (status, body) = t.everything("hospice.ali", &nhs).await;
    assert_eq!(
        (status, deny_code(&body).as_str()),
        (403, "needs-relationship"),
        "{body}"
    );
    // Permission alone does not help.
    t.give_permission("hospice.ali", &nhs).await;
    let (status, body) = t.everything("hospice.ali", &nhs).await;
    assert_eq!(
        (status, deny_code(&body).as_str()),
        (403, "needs-relationship")
    );
    let (status, body) = t
        .post(
            "hospice.ali",
            "/fhir/Consent",
            &consent(
                "care-relationship",
                &nhs,
                "permit",
                &[(
                    "reason",
                    "Admitted to the hospice today for symptom control",
                )],
            ),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, bundle) = t.everything("hospice.ali", &nhs).await;
    assert_eq!(status, 200, "{bundle}");
}

#[tokio::test]
async fn emergency_access_needs_no_relationship_but_a_reason() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    let params = |reason: &str, text: &str| json!({"resourceType": "Parameters", "parameter": [{"name": "reason", "valueCode": reason}, {"name": "text", "valueString": text}]});
    let path = format!("/fhir/Patient/{nhs}/$emergency-access");
    let (status, body) = t.post("hospice.ali", &path, &params("bored", "x")).await;
    assert_eq!(status, 400, "unknown reason code: {body}");
    let (status, _) = t
        .post("hospice.ali", &path, &params("unconscious", "  "))
        .await;
    assert_eq!(status, 400, "empty reason text");
    let (status, body) = t
        .post(
            "rec.murphy",
            &path,
            &params("unconscious", "Collapsed in reception"),
        )
        .await;
    assert_eq!(status, 403, "not a clinical role: {body}");
    let (status, body) = t
        .post(
            "hospice.ali",
            &path,
            &params("unconscious", "Brought in unresponsive"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, bundle) = t.everything("hospice.ali", &nhs).await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(bundle["meta"]["tag"][0]["code"], "emergency");
}

#[tokio::test]
async fn an_opted_out_patients_sources_are_not_even_asked() {
    let t = start().await;
    let nhs = t.patient("opted_out", 0);
    t.give_permission("ae.okafor", &nhs).await;
    let before = t.requests_served();
    let (status, body) = t.everything("ae.okafor", &nhs).await;
    assert_eq!(
        (status, deny_code(&body).as_str()),
        (403, "opted-out"),
        "{body}"
    );
    assert!(body["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .contains("opted out"));
    // Emergency access does not pass an opt-out by default either.
    let (status, _) = t.emergency_access("ae.okafor", &nhs, "Unresponsive").await;
    assert_eq!(status, 200);
    let (status, _) = t.everything("ae.okafor", &nhs).await;
    assert_eq!(status, 403);
    let after = t.requests_served();
    assert_eq!(
        before, after,
        "no source was asked for an opted-out patient"
    );
}

#[tokio::test]
async fn an_overridden_objection_lets_a_related_clinician_view() {
    let t = start().await;
    let nhs = t.patient("objection_overridden", 0);
    let (status, bundle) = t.everything("ae.okafor", &nhs).await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(bundle["meta"]["tag"][0]["code"], "objection-overridden");
}

#[tokio::test]
async fn sensitive_items_never_appear_in_any_response() {
    let t = start().await;
    let sensitive_codes = [
        "86406008",
        "165816005",
        "105629000",
        "15628003",
        "52637005",
        "386639001",
        "93461009",
    ];
    let mut withheld_seen = false;
    for i in 0..3 {
        let nhs = t.patient("sensitive_items", i);
        t.give_permission("ae.okafor", &nhs).await;
        let (status, body) = t
            .get_text("ae.okafor", &format!("/fhir/Patient/{nhs}/$everything"))
            .await;
        assert_eq!(status, 200, "{body}");
        for code in sensitive_codes {
            assert!(
                !body.contains(&format!("\"{code}\"")),
                "sensitive code {code} leaked for patient {i}"
            );
        }
        assert!(
            !body.contains("\"R\""),
            "an item labelled restricted leaked"
        );
        withheld_seen |= body.contains("items-withheld");
    }
    assert!(withheld_seen, "the view says something was withheld");
}

#[tokio::test]
async fn bad_governance_input_is_refused_and_nothing_is_written() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    let cases = vec![
        (consent("care-relationship", &nhs, "permit", &[]), 400),
        (
            consent("care-relationship", &nhs, "permit", &[("reason", "   ")]),
            400,
        ),
        (
            {
                let mut c = consent(
                    "care-relationship",
                    &nhs,
                    "permit",
                    &[("reason", "Seeing them today")],
                );
                c["provision"]["period"] =
                    json!({"start": "2026-11-20T10:00:00Z", "end": "2026-11-19T10:00:00Z"});
                c
            },
            400,
        ),
        (
            consent(
                "permission-to-view",
                &nhs,
                "permit",
                &[("given-by", "neighbour")],
            ),
            400,
        ),
        (
            consent(
                "permission-to-view",
                &nhs,
                "maybe",
                &[("given-by", "patient")],
            ),
            400,
        ),
        (
            consent(
                "permission-to-view",
                "9434765919",
                "permit",
                &[("given-by", "patient")],
            ),
            404,
        ),
        (consent("no-such-category", &nhs, "permit", &[]), 400),
        (
            consent(
                "opt-out-override",
                &nhs,
                "permit",
                &[
                    ("override-reason", "safeguarding"),
                    ("reason", "case conference"),
                ],
            ),
            403,
        ),
    ];
    for (body, want) in cases {
        let (status, resp) = t.post("hospice.ali", "/fhir/Consent", &body).await;
        assert_eq!(status, want, "{body} -> {resp}");
        assert_eq!(resp["resourceType"], "OperationOutcome");
    }
    let (status, bundle) = t
        .get(
            "hospice.ali",
            &format!("/fhir/Consent?patient=Patient/{nhs}"),
        )
        .await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(bundle["total"], 0, "nothing half-written: {bundle}");
}

#[tokio::test]
async fn explain_lists_every_rule() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    let (status, body) = t
        .get("hospice.ali", &format!("/access/explain?patient={nhs}"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "needs-relationship");
    let rules: Vec<&str> = body["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["rule"].as_str().unwrap())
        .collect();
    assert!(rules.contains(&"relationship"), "{rules:?}");
    assert!(body["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["sentence"].as_str().is_some_and(|x| !x.is_empty())));
}

#[tokio::test]
async fn when_governance_records_cannot_be_read_the_answer_is_no() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    t.give_permission("ae.okafor", &nhs).await;
    let (status, _) = t.everything("ae.okafor", &nhs).await;
    assert_eq!(status, 200);
    // Break the store underneath the gateway: the permission table disappears.
    let db = t
        .demo
        .info
        .signing_key
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("mcr.db");
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        db.display()
    ))
    .await
    .unwrap();
    sqlx::query("DROP TABLE permission")
        .execute(&mut conn)
        .await
        .unwrap();
    let before = t.requests_served();
    let (status, body) = t.everything("ae.okafor", &nhs).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(deny_code(&body), "decision-unavailable");
    let after = t.requests_served();
    assert_eq!(before, after, "failing closed asks no source");
}

#[tokio::test]
async fn a_patient_scoped_token_reads_only_its_own_patient() {
    let t = start().await;
    let mine = t.patient("all_four_sources", 0);
    let other = t.patient("needs_permission", 0);
    let get = |token: String, path: String| {
        let http = t.http.clone();
        let url = t.url(&path);
        async move {
            let resp = http
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("request");
            let status = resp.status().as_u16();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            (status, deny_code(&body))
        }
    };
    let bound = t
        .demo
        .token_with("ae.okafor", "patient/*.read", Some(&mine))
        .expect("token");
    t.give_permission("ae.okafor", &mine).await;
    let (status, code) = get(bound.clone(), format!("/fhir/Patient/{mine}/$everything")).await;
    assert_eq!(status, 200, "its own patient: {code}");
    for path in [
        format!("/fhir/Patient/{other}/$everything"),
        format!("/access/explain?patient={other}"),
        "/fhir/Patient?family=Smith&birthdate=1970-01-01".to_owned(),
        "/fhir/AuditEvent".to_owned(),
    ] {
        let (status, code) = get(bound.clone(), path.clone()).await;
        assert_eq!(
            (status, code.as_str()),
            (403, "patient-scope-other-patient"),
            "{path}"
        );
    }
    // A patient scope with no patient claim reaches nobody.
    let unbound = t
        .demo
        .token_with("ae.okafor", "patient/*.read", None)
        .expect("token");
    let (status, code) = get(unbound, format!("/fhir/Patient/{mine}/$everything")).await;
    assert_eq!(
        (status, code.as_str()),
        (403, "patient-scope-without-patient")
    );
    // A user scope is not bound: the policy decides (needs permission here, not a scope refusal).
    let (status, body) = t.everything("ae.okafor", &other).await;
    assert_eq!(
        (status, deny_code(&body).as_str()),
        (403, "needs-permission")
    );
}
