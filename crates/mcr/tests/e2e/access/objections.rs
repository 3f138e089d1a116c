//! Who may lift an objection, and on what; overrides that run out; answers given on a
//! patient's behalf. Over HTTP, as staff and the public would; the review queue read as the
//! privacy officer reads it, on the page.

use crate::helpers::*;
use serde_json::{json, Value};

const LIFT_WORDS: &str = "Only a privacy officer or the Caldicott guardian can lift an objection";

fn issue_text(body: &Value) -> String {
    body["issue"][0]["diagnostics"]
        .as_str()
        .or_else(|| body["issue"][0]["details"]["text"].as_str())
        .unwrap_or("")
        .to_owned()
}

/// "Opt back in" as staff would try it: Consent opt-out with provision permit.
fn lift(nhs: &str, written_request: Option<&str>) -> Value {
    let ext: Vec<(&str, &str)> = written_request
        .map(|r| vec![("written-request", r)])
        .unwrap_or_default();
    consent("opt-out", nhs, "permit", &ext)
}

/// The privacy officer's review queue page, as text.
async fn review_page(t: &TestDemo) -> String {
    let po = t.sign_in("po.wright").await;
    let resp = po
        .http
        .get(t.url("/app/review"))
        .header("cookie", &po.cookie)
        .send()
        .await
        .expect("GET /app/review");
    assert_eq!(resp.status(), 200);
    resp.text().await.expect("page")
}

#[tokio::test]
async fn staff_cannot_lift_an_objection_and_every_attempt_is_reviewed() {
    let t = start().await;
    let nhs = t.patient("opted_out", 0);
    for user in ["ae.okafor", "hospice.ali", "rec.murphy", "gp.patel"] {
        let (status, body) = t
            .post(user, "/fhir/Consent", &lift(&nhs, Some("LTR-1")))
            .await;
        assert_eq!(status, 403, "{user}: {body}");
        assert!(issue_text(&body).contains(LIFT_WORDS), "{user}: {body}");
    }
    // The objection stands: permission recorded or not, the record is refused.
    t.give_permission("ae.okafor", &nhs).await;
    let (status, body) = t.everything("ae.okafor", &nhs).await;
    assert_eq!((status, deny_code(&body).as_str()), (403, "opted-out"));
    // Every attempt is in the privacy officer's queue, with who made it.
    let page = review_page(&t).await;
    assert_eq!(
        page.matches("Refused attempt to lift an objection").count(),
        4,
        "one case per attempt"
    );
    assert!(page.contains("Dr Sara Ali (hospice.ali)"));
}

#[tokio::test]
async fn a_caldicott_guardian_lifts_an_objection_only_on_the_patients_written_request() {
    let t = start().await;
    let nhs = t.patient("opted_out", 0);
    let (status, body) = t.post("cg.shah", "/fhir/Consent", &lift(&nhs, None)).await;
    assert_eq!(status, 400, "{body}");
    assert!(issue_text(&body).contains("written request"), "{body}");
    let (status, body) = t
        .post(
            "cg.shah",
            "/fhir/Consent",
            &lift(&nhs, Some("LTR-2026-0042")),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // Lifting twice: there is nothing left to lift.
    let (status, _) = t
        .post(
            "po.wright",
            "/fhir/Consent",
            &lift(&nhs, Some("LTR-2026-0042")),
        )
        .await;
    assert_eq!(status, 400);
    t.give_permission("ae.okafor", &nhs).await;
    let (status, body) = t.everything("ae.okafor", &nhs).await;
    assert_eq!(status, 200, "{body}");
    let (_, consents) = t
        .get("cg.shah", &format!("/fhir/Consent?patient=Patient/{nhs}"))
        .await;
    let words: Vec<String> = consents["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .flat_map(|e| {
            e["resource"]["extension"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|x| x["valueString"].as_str().map(str::to_owned))
        .collect();
    assert!(
        words.iter().any(|w| w == "written-request:LTR-2026-0042"),
        "the lift names the patient's request: {words:?}"
    );
    let page = review_page(&t).await;
    assert!(page.contains("Objection lifted"), "every lift is reviewed");
    assert!(page.contains("Dr Priya Shah (cg.shah)"));
}

#[tokio::test]
async fn opting_back_in_from_the_public_site_lifts_the_objection_once_verified() {
    let t = start().await;
    let nhs = t.patient("opted_out", 0);
    let p = t
        .demo
        .gateway
        .gateway
        .store()
        .patient(&mcr_domain::NhsNumber::parse(&nhs).expect("nhs"))
        .await
        .expect("read")
        .expect("in the index");
    let public = t.browser();
    let form = [
        ("kind", "opt-in".to_owned()),
        ("given", p.given.clone()),
        ("family", p.family.clone()),
        ("dob-day", p.birth_date.format("%-d").to_string()),
        ("dob-month", p.birth_date.format("%-m").to_string()),
        ("dob-year", p.birth_date.format("%Y").to_string()),
        ("nhs", nhs.clone()),
        ("postcode", p.postcode.clone().unwrap_or_default()),
        ("contact", "by post, please".to_owned()),
    ];
    let resp = public
        .post(t.url("/opt-out"))
        .form(&form)
        .send()
        .await
        .expect("POST /opt-out");
    assert_eq!(resp.status(), 303);
    let done = location(&resp);
    assert!(done.contains("kind=opt-in"), "{done}");
    let reference = done
        .split("reference=")
        .nth(1)
        .and_then(|r| r.split('&').next())
        .expect("a reference")
        .to_owned();
    let page = public
        .get(t.url(&done))
        .send()
        .await
        .expect("confirmation")
        .text()
        .await
        .expect("page");
    assert!(page.contains("Request to opt back in sent"), "{page}");

    // Until a privacy officer verifies it, the objection stands.
    t.give_permission("ae.okafor", &nhs).await;
    let (status, _) = t.everything("ae.okafor", &nhs).await;
    assert_eq!(status, 403);

    let po = t.sign_in("po.wright").await;
    let case = po
        .http
        .get(t.url(&format!("/app/opt-outs/{reference}")))
        .header("cookie", &po.cookie)
        .send()
        .await
        .expect("case")
        .text()
        .await
        .expect("page");
    assert!(case.contains("Opt back in"), "the case says what is asked");
    // Demographics are not identity: a letter with a code goes to the registered address.
    let resp = po
        .http
        .post(t.url(&format!("/app/opt-outs/{reference}")))
        .header("cookie", &po.cookie)
        .form(&[
            ("csrf", po.csrf.as_str()),
            ("action", "send-letter"),
            ("patient", nhs.as_str()),
        ])
        .send()
        .await
        .expect("send the letter");
    let html = resp.text().await.expect("page");
    let code = html
        .split("id=\"letter-code\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the demo shows the letter's code")
        .trim()
        .to_owned();
    let (status, _) = t.everything("ae.okafor", &nhs).await;
    assert_eq!(status, 403, "not lifted before the code comes back");
    // The person types the code from the letter on the public site.
    let resp = public
        .post(t.url("/opt-out/code"))
        .form(&[("reference", reference.as_str()), ("code", code.as_str())])
        .send()
        .await
        .expect("POST /opt-out/code");
    assert_eq!(resp.status(), 200);
    let page = resp.text().await.expect("confirmation page");
    assert!(page.contains("You have opted back in"), "{page}");
    assert!(!page.contains("opt-out has started"), "{page}");
    let (status, body) = t.everything("ae.okafor", &nhs).await;
    assert_eq!(
        status, 200,
        "lifted on the patient's verified request: {body}"
    );
    assert!(review_page(&t).await.contains("Objection lifted"));
}

#[tokio::test]
async fn an_override_is_its_own_time_limited_reviewed_record() {
    let t = start().await;
    let nhs = t.patient("opted_out", 0);
    let override_until = |end: &str| {
        let mut c = consent(
            "opt-out-override",
            &nhs,
            "permit",
            &[
                ("override-reason", "safeguarding"),
                (
                    "reason",
                    "Strategy meeting: records needed by the care team",
                ),
            ],
        );
        c["provision"]["period"] = json!({ "end": end });
        c
    };
    // A clinician may not; the attempt is reviewed.
    let (status, _) = t
        .post(
            "ae.okafor",
            "/fhir/Consent",
            &override_until("2099-01-01T00:00:00Z"),
        )
        .await;
    assert_eq!(status, 403);
    // Never for ever, never in the past.
    for end in ["2099-01-01T00:00:00Z", "2000-01-01T00:00:00Z"] {
        let (status, body) = t
            .post("cg.shah", "/fhir/Consent", &override_until(end))
            .await;
        assert_eq!(status, 400, "{end}: {body}");
    }
    // Not on someone with no objection.
    let other = t.patient("all_four_sources", 0);
    let mut c = override_until("2099-01-01T00:00:00Z");
    c["provision"] = json!({"type": "permit"});
    c["patient"] = json!({"reference": format!("Patient/{other}")});
    let (status, body) = t.post("cg.shah", "/fhir/Consent", &c).await;
    assert_eq!(status, 400, "{body}");

    // Three days (the default), then it runs out: the Consent says until when.
    let mut c = override_until("x");
    c["provision"] = json!({"type": "permit"});
    let (status, body) = t.post("cg.shah", "/fhir/Consent", &c).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = t.everything("ae.okafor", &nhs).await;
    assert_eq!(status, 200, "the override passes the objection: {body}");
    let (_, consents) = t
        .get("cg.shah", &format!("/fhir/Consent?patient=Patient/{nhs}"))
        .await;
    let ov = consents["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["category"][0]["coding"][0]["code"] == "opt-out-override")
        .expect("the override")
        .clone();
    let start = chrono::DateTime::parse_from_rfc3339(
        ov["provision"]["period"]["start"].as_str().expect("start"),
    )
    .expect("instant");
    let end = chrono::DateTime::parse_from_rfc3339(
        ov["provision"]["period"]["end"].as_str().expect("end"),
    )
    .expect("instant");
    assert_eq!(end - start, chrono::Duration::hours(72), "{ov}");
    let page = review_page(&t).await;
    assert!(page.contains("Objection overridden"));
    assert!(page.contains("Refused attempt to override an objection"));
}

#[tokio::test]
async fn answers_on_a_patients_behalf_need_a_coded_reason_and_are_reviewed() {
    let t = start().await;
    let nhs = t.patient("needs_permission", 0);
    let on_behalf = |given_by: &str, ext: &[(&str, &str)]| {
        let mut all = vec![("given-by", given_by)];
        all.extend_from_slice(ext);
        consent("permission-to-view", &nhs, "permit", &all)
    };
    let cases = [
        (on_behalf("best-interests", &[]), "Choose why"),
        (
            on_behalf("best-interests", &[("reason-code", "unconscious")]),
            "Give a reason",
        ),
        (
            on_behalf(
                "best-interests",
                &[
                    ("reason-code", "lasting-power-of-attorney"),
                    ("reason", "x"),
                ],
            ),
            "Choose why",
        ),
        (
            on_behalf(
                "representative",
                &[("reason-code", "unconscious"), ("reason", "x")],
            ),
            "Choose why",
        ),
        (
            on_behalf("patient", &[("reason-code", "unconscious")]),
            "only for an answer given on the patient's behalf",
        ),
    ];
    for (body, words) in cases {
        let (status, resp) = t.post("ae.okafor", "/fhir/Consent", &body).await;
        assert_eq!(status, 400, "{body} -> {resp}");
        assert!(issue_text(&resp).contains(words), "{resp}");
    }
    let (status, _) = t.everything("ae.okafor", &nhs).await;
    assert_eq!(status, 403, "nothing was recorded");
    let (status, body) = t
        .post(
            "ae.okafor",
            "/fhir/Consent",
            &on_behalf(
                "best-interests",
                &[
                    ("reason-code", "unconscious"),
                    (
                        "reason",
                        "Brought in after a fall, GCS 8, no relatives reachable",
                    ),
                ],
            ),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = t.everything("ae.okafor", &nhs).await;
    assert_eq!(status, 200);
    let page = review_page(&t).await;
    assert!(
        page.contains("Permission given on the patient&#x27;s behalf")
            || page.contains("Permission given on the patient's behalf"),
        "reviewed like break-glass"
    );
    assert!(page.contains("GCS 8"), "with the words given");
}

#[tokio::test]
async fn a_refusal_blocks_for_the_episode_and_says_so() {
    let t = start().await;
    let nhs = t.patient("needs_permission", 1);
    t.refuse_permission("nurse.evans", &nhs).await;
    let (status, body) = t.everything("nurse.evans", &nhs).await;
    assert_eq!(
        (status, deny_code(&body).as_str()),
        (403, "permission-refused")
    );
    let words = issue_text(&body);
    assert!(
        words.contains("The patient said no")
            && words.contains("during this episode of care (until"),
        "{body}"
    );
}
