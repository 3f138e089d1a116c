//! A restricted (S-flagged) patient over HTTP: their address, telephone and registered
//! practice are never shown (record page, FHIR Patient read and search, `$everything`),
//! whichever source sends them, and the view says so and audits it; only the roles the region
//! names view the record at all (others are refused, audited and flagged for review), and
//! emergency access to one is flagged for review.

use crate::helpers::*;
use mcr_domain::NhsNumber;
use mcr_store::PatientStatusRow;
use serde_json::{json, Value};

/// Say the patient is restricted, as a PDS trace would.
async fn restrict(t: &TestDemo, nhs: &str) {
    t.demo
        .gateway
        .gateway
        .store()
        .put_patient_statuses(&[PatientStatusRow {
            nhs_number: NhsNumber::parse(nhs).expect("nhs"),
            restricted: true,
            deceased: None,
            said_by: "pds".into(),
            updated_at: mcr_domain::Clock::now(&mcr_domain::SystemClock),
        }])
        .await
        .expect("status written");
}

/// A page, signed in as `user`: its status and HTML.
async fn page(t: &TestDemo, user: &str, path: &str) -> (u16, String) {
    let s = t.sign_in(user).await;
    let resp = s
        .http
        .get(t.url(path))
        .header("cookie", &s.cookie)
        .send()
        .await
        .expect("page");
    (resp.status().as_u16(), resp.text().await.expect("html"))
}

/// The audit records of `nhs` as the privacy officer reads them.
async fn audit_of(t: &TestDemo, nhs: &str) -> Value {
    let (status, audit) = t
        .get(
            "po.wright",
            &format!("/fhir/AuditEvent?patient=Patient/{nhs}&_count=100"),
        )
        .await;
    assert_eq!(status, 200, "{audit}");
    audit
}

/// The index's record of `nhs`.
async fn indexed(t: &TestDemo, nhs: &str) -> mcr_store::IndexedPatient {
    t.demo
        .gateway
        .gateway
        .store()
        .patient(&NhsNumber::parse(nhs).expect("nhs"))
        .await
        .expect("index")
        .expect("held")
}

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
    restrict(&t, &nhs).await;

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
    let html = page.html(t.url(&format!("/app/patient/{nhs}"))).await;
    assert!(
        html.contains("address withheld: restricted record"),
        "{html}"
    );
    assert!(html.contains("id=\"restricted-record\""));
    assert!(!html.contains(&postcode), "the postcode is on the page");

    // Audited: the view's record says the location was withheld.
    let audit = audit_of(&t, &nhs).await;
    assert!(
        audit
            .to_string()
            .contains("address withheld: restricted record"),
        "{audit}"
    );
}

#[tokio::test]
async fn a_role_the_region_does_not_name_is_refused_audited_and_reviewed() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    // The acute trust's records officer (admin staff) with the patient's permission: viewed
    // before the restriction (so the refusal below is the restriction's).
    t.give_permission("rec.obi", &nhs).await;
    t.give_permission(AE, &nhs).await;
    let (status, before) = t.everything("rec.obi", &nhs).await;
    assert_eq!(status, 200, "{before}");

    restrict(&t, &nhs).await;

    // FHIR: 403, an OperationOutcome naming who can.
    let (status, body) = t.everything("rec.obi", &nhs).await;
    assert_eq!(
        (status, deny_code(&body).as_str()),
        (403, "restricted-record"),
        "{body}"
    );
    let said = body["issue"][0]["diagnostics"].as_str().unwrap_or_default();
    assert!(
        said.contains("only a doctor, nurse or paramedic may view it"),
        "{said}"
    );
    // The page: 403 with the same sentence; no record, no postcode.
    let (status, html) = page(&t, "rec.obi", &format!("/app/patient/{nhs}")).await;
    assert_eq!(status, 403, "{html}");
    assert!(
        html.contains("only a doctor, nurse or paramedic may view it"),
        "{html}"
    );
    // A document of theirs: refused the same way.
    let (status, _) = page(
        &t,
        "rec.obi",
        &format!("/app/patient/{nhs}/documents/acute/any-id"),
    )
    .await;
    assert_eq!(status, 403);
    // A named role views (with permission, as ever).
    let (status, bundle) = t.everything(AE, &nhs).await;
    assert_eq!(status, 200, "{bundle}");

    // Audited as a refusal with its reason, and flagged for the privacy officer.
    let audit = audit_of(&t, &nhs).await.to_string();
    assert!(audit.contains("restricted-record"), "{audit}");
    let (status, queue) = page(&t, "po.wright", "/app/review").await;
    assert_eq!(status, 200, "{queue}");
    assert!(
        queue.contains("Restricted record: refused, or viewed by emergency access")
            && queue.contains("Refused a view of a restricted (S-flagged) patient")
            && queue.contains("Refused a document from a restricted (S-flagged) patient")
            && queue.contains("rec.obi"),
        "{queue}"
    );
}

#[tokio::test]
async fn emergency_access_to_a_restricted_patient_lands_in_the_review_queue() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    restrict(&t, &nhs).await;
    // A hospice doctor with no relationship: emergency access.
    let (status, body) = t
        .emergency_access("hospice.ali", &nhs, "Brought in unresponsive")
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, bundle) = t.everything("hospice.ali", &nhs).await;
    assert_eq!(status, 200, "{bundle}");
    // Allowed, the location still withheld.
    let patient = bundle_patient(&bundle);
    assert_eq!(location_fields(&patient), Vec::<&str>::new(), "{patient}");
    // Flagged beside the view.
    let (status, queue) = page(&t, "po.wright", "/app/review").await;
    assert_eq!(status, 200, "{queue}");
    assert!(
        queue.contains("Viewed a restricted (S-flagged) patient") && queue.contains("hospice.ali"),
        "{queue}"
    );
}

#[tokio::test]
async fn every_pds_trace_is_audited_without_demographics() {
    let t = start().await;
    // The demo's start-up sync traced the records the index could not link.
    let (status, audit) = t
        .get("po.wright", "/fhir/AuditEvent?agent=system&_count=1000")
        .await;
    assert_eq!(status, 200, "{audit}");
    let traces: Vec<&Value> = resources(&audit, "AuditEvent")
        .into_iter()
        .filter(|e| e.to_string().contains("pds-trace"))
        .collect();
    assert!(!traces.is_empty(), "{audit}");
    // The gateway reached PDS with an access token the platform's token endpoint gave it for
    // its signed JWT (the demo's RSA key, registered with the simulator): no trace failed.
    let (asked, granted) = t.demo.pds.token_requests();
    assert!(
        granted >= 1 && asked == granted,
        "token requests {asked}, granted {granted}"
    );
    assert!(t.demo.pds.searches() > 0, "PDS was searched");
    assert!(
        !traces
            .iter()
            .any(|e| e.to_string().contains("\"valueString\":\"failed\"")),
        "{traces:?}"
    );
    let sources: Vec<String> = t
        .demo
        .gateway
        .gateway
        .federation()
        .sources()
        .map(|s| s.id().to_string())
        .collect();
    for e in traces {
        // Who asked: the gateway itself; which record: `source/local id`; the outcome and its
        // code; nothing else in words.
        assert_eq!(e["agent"][0]["who"]["identifier"]["value"], "system", "{e}");
        let what = e["entity"][0]["description"].as_str().unwrap_or_default();
        let (record, said) = what.split_once(": ").expect("record: outcome");
        assert!(
            sources.iter().any(|s| record.starts_with(&format!("{s}/"))),
            "{what}"
        );
        assert!(
            said.starts_with("PDS ") || said.starts_with("not traceable"),
            "{what}"
        );
        let basis = e["entity"][0]["detail"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["type"] == "basis"))
            .and_then(|d| d["valueString"].as_str())
            .unwrap_or_default()
            .to_owned();
        assert!(
            [
                "linked",
                "review",
                "not-found",
                "too-many",
                "untraceable",
                "failed"
            ]
            .contains(&basis.as_str()),
            "{e}"
        );
    }
}

#[tokio::test]
async fn staff_pages_never_show_a_restricted_patients_postcode_or_practice() {
    let t = start().await;
    let g = &t.demo.gateway.gateway;
    let nhs = t.patient("all_four_sources", 0);
    let held = indexed(&t, &nhs).await;
    let postcode = held.postcode.clone().expect("a postcode");
    let gp_names: Vec<String> = g
        .federation()
        .sources()
        .map(|s| &s.config().organisation)
        .filter(|o| o.kind == mcr_domain::OrgKind::GpPractice)
        .map(|o| o.name.clone())
        .collect();
    assert!(!gp_names.is_empty());

    // An opt-out request naming the person (as the public site takes it) and the matching
    // queue's pairs: before, both pages show the postcodes (so the checks below can fail).
    let reference = g
        .submit_opt_out_request(
            &mcr_gateway::OptOutSubmission {
                kind: mcr_gateway::OptOutKind::OptOut,
                given_name: held.given.clone(),
                family_name: held.family.clone(),
                birth_date: held.birth_date,
                nhs_number: None,
                postcode: postcode.clone(),
                contact: "by post".into(),
            },
            "test",
        )
        .await
        .expect("request");
    let case_path = format!("/app/opt-outs/{reference}");
    let (status, case) = page(&t, "po.wright", &case_path).await;
    assert_eq!(status, 200, "{case}");
    assert!(case.contains(&postcode), "{case}");
    let pairs = g.store().match_candidates().await.expect("queue");
    let pair_postcodes: Vec<String> = pairs.iter().filter_map(|c| c.postcode.clone()).collect();
    assert!(!pair_postcodes.is_empty(), "the demo has pairs in review");
    let (_, queue) = page(&t, "po.wright", "/app/matching").await;
    assert!(pair_postcodes.iter().any(|p| queue.contains(p.as_str())));
    t.give_permission(AE, &nhs).await;
    let (_, record) = page(&t, AE, &format!("/app/patient/{nhs}")).await;
    assert!(gp_names.iter().any(|n| record.contains(n.as_str())));

    // Restricted: the patient, and every patient with a pair in review.
    restrict(&t, &nhs).await;
    for c in &pairs {
        restrict(&t, c.nhs_number.as_str()).await;
    }

    let (status, case) = page(&t, "po.wright", &case_path).await;
    assert_eq!(status, 200, "{case}");
    assert!(
        !case.contains(&postcode),
        "the postcode on the opt-out case: {case}"
    );
    assert!(case.contains("Withheld: restricted record"), "{case}");

    let (status, queue) = page(&t, "po.wright", "/app/matching").await;
    assert_eq!(status, 200, "{queue}");
    for p in &pair_postcodes {
        assert!(!queue.contains(p.as_str()), "{p} in the matching queue");
    }
    assert!(queue.contains("Withheld: restricted record"), "{queue}");

    // The record page: the GP practice is not named; its items stay.
    let (status, record) = page(&t, AE, &format!("/app/patient/{nhs}")).await;
    assert_eq!(status, 200, "{record}");
    for n in &gp_names {
        assert!(!record.contains(n.as_str()), "{n} named on the record page");
    }
    assert!(record.contains("GP practice (withheld: restricted record)"));
    assert!(!record.contains(&postcode));
}

/// Issue 19: the `$everything` Bundle withholds a restricted patient's GP practice as the
/// record page does: no Provenance agent, OperationOutcome sentence or resource (a
/// `performer`, an `informationSource`, a clinician's display) names it by ODS code or name;
/// its items stay, and the OperationOutcome counts them and says why.
#[tokio::test]
async fn a_restricted_patients_bundle_names_their_practice_nowhere() {
    let t = start().await;
    let g = &t.demo.gateway.gateway;
    let nhs = t.patient("all_four_sources", 0);
    let held = indexed(&t, &nhs).await;
    let registered = held.gp_practice.clone().expect("a registered practice");
    let gp_orgs: Vec<mcr_domain::Organisation> = g
        .federation()
        .sources()
        .map(|s| s.config().organisation.clone())
        .filter(|o| o.kind == mcr_domain::OrgKind::GpPractice)
        .collect();
    assert!(!gp_orgs.is_empty());
    let mut codes: Vec<String> = gp_orgs.iter().map(|o| o.code.to_string()).collect();
    codes.push(registered.clone());
    t.give_permission(AE, &nhs).await;

    // Before: the Bundle names the practice (so the checks below can fail): GP Connect
    // answers as the registered practice, named in Provenance and in the items.
    let (status, before) = t.everything(AE, &nhs).await;
    assert_eq!(status, 200, "{before}");
    let text = before.to_string();
    assert!(
        text.contains(&format!("\"{registered}\"")),
        "{registered} not in the Bundle before: {:?}",
        provenance_orgs(&before)
    );
    let gp_items = |b: &Value| {
        resources(b, "Provenance")
            .iter()
            .filter(|p| {
                p["agent"].to_string().contains("GP practice (withheld")
                    || codes
                        .iter()
                        .any(|c| p["agent"].to_string().contains(c.as_str()))
            })
            .count()
    };
    let held_by_gp = gp_items(&before);
    assert!(held_by_gp > 0, "the GP holds items of theirs");
    // The practice's name as the Bundle carries it beside its code (Provenance agents, the
    // items' `performer` or `informationSource`).
    let practice_name = display_of(&before, &registered).expect("the practice named by code");

    restrict(&t, &nhs).await;

    let (status, bundle) = t.everything(AE, &nhs).await;
    assert_eq!(status, 200, "{bundle}");
    let text = bundle.to_string();
    for c in &codes {
        assert!(
            !text.contains(&format!("\"{c}\"")),
            "{c} in the restricted Bundle"
        );
        assert!(
            !text.contains(&format!("({c})")),
            "{c} in the restricted Bundle"
        );
    }
    assert!(
        !text.contains(&practice_name),
        "{practice_name} in the Bundle"
    );
    for o in &gp_orgs {
        assert!(!text.contains(&o.name), "{} in the Bundle", o.name);
    }
    // The items stay, each Provenance agent named in words only.
    assert_eq!(
        gp_items(&bundle),
        held_by_gp,
        "the practice's items are all still there"
    );
    let withheld_agents = resources(&bundle, "Provenance")
        .iter()
        .flat_map(|p| p["agent"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["who"]["display"] == mcr_domain::PRACTICE_WITHHELD)
        .inspect(|a| assert!(a["who"].get("identifier").is_none(), "{a}"))
        .count();
    assert!(
        withheld_agents >= held_by_gp,
        "{withheld_agents} < {held_by_gp}"
    );
    // Said and counted in the OperationOutcome.
    let oo = outcome(&bundle);
    let said = oo["issue"]
        .as_array()
        .expect("issues")
        .iter()
        .find(|i| i["details"]["coding"][0]["code"] == "practice-withheld")
        .unwrap_or_else(|| panic!("no practice-withheld issue: {oo}"));
    let sentence = said["diagnostics"]
        .as_str()
        .or_else(|| said["details"]["text"].as_str())
        .unwrap_or_default();
    assert!(
        sentence.contains(&format!("{held_by_gp} item(s)")),
        "{sentence}"
    );
}

/// The `display` of the first object in `v` that names `code` by its `identifier` (as a
/// Reference does, or a Provenance agent's `who`).
fn display_of(v: &Value, code: &str) -> Option<String> {
    match v {
        Value::Object(map) => {
            if map.get("identifier").and_then(|i| i.get("value")) == Some(&json!(code)) {
                if let Some(d) = map.get("display").and_then(Value::as_str) {
                    return Some(d.to_owned());
                }
            }
            map.values().find_map(|c| display_of(c, code))
        }
        Value::Array(items) => items.iter().find_map(|c| display_of(c, code)),
        _ => None,
    }
}
