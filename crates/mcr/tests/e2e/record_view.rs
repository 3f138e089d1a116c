//! The foundation's "done means": a record view fans out to four sources over HTTP and comes
//! back merged and attributed; failing and slow sources are reported, not fatal.

use crate::helpers::*;
use mcr_sources::{Behaviour, Failure};
use std::time::{Duration, Instant};

#[tokio::test]
async fn everything_for_a_four_source_patient_has_items_from_all_four_with_provenance() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    t.give_permission(AE, &nhs).await;
    let (status, bundle) = t.everything(AE, &nhs).await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(bundle["resourceType"], "Bundle");

    // Every source organisation is named by at least one Provenance: the GP system's items
    // by the patient's practice, whose endpoint answered through GP Connect.
    let orgs = provenance_orgs(&bundle);
    assert_eq!(
        orgs.len(),
        t.demo.region.sources.len(),
        "one organisation per source, the GP's letters the practice's too: {orgs:?}"
    );
    for s in &t.demo.region.sources {
        let org = if s.id.as_str() == "gp" {
            practice_of(&t, &nhs)
        } else {
            s.organisation.code.to_string()
        };
        assert!(orgs.contains(&org), "no item from {} in {orgs:?}", s.id);
    }
    // One Provenance per item, each pointing at an item in the bundle.
    let provenances = resources(&bundle, "Provenance");
    let items = bundle["total"].as_u64().unwrap() as usize;
    assert_eq!(provenances.len(), items);
    let full_urls: std::collections::HashSet<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["fullUrl"].as_str())
        .collect();
    for p in &provenances {
        let target = p["target"][0]["reference"].as_str().unwrap();
        assert!(
            full_urls.contains(target),
            "Provenance target {target} is not in the bundle"
        );
    }
    // Every source answered.
    let codes = issue_codes(outcome(&bundle));
    assert_eq!(
        codes.iter().filter(|(c, _)| c == "source-ok").count(),
        4,
        "{codes:?}"
    );
}

#[tokio::test]
async fn duplicated_items_are_merged_with_both_sources() {
    let t = start().await;
    let nhs = t.patient("duplicated_items", 0);
    t.give_permission(AE, &nhs).await;
    let (status, bundle) = t.everything(AE, &nhs).await;
    assert_eq!(status, 200, "{bundle}");
    let merged: Vec<_> = resources(&bundle, "Provenance")
        .into_iter()
        .filter(|p| p["agent"].as_array().unwrap().len() >= 2)
        .collect();
    assert!(
        !merged.is_empty(),
        "a duplicated medication or problem should carry two sources"
    );
    for p in merged {
        let entities = p["entity"].as_array().unwrap();
        assert!(entities.len() >= 2);
        let hosts: std::collections::BTreeSet<_> = entities
            .iter()
            .map(|e| {
                e["what"]["reference"]
                    .as_str()
                    .unwrap()
                    .split('/')
                    .nth(2)
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert!(
            hosts.len() >= 2,
            "the merged item's copies come from different servers: {hosts:?}"
        );
    }
    // The same current medication is never listed once per source: two entries with the same
    // code and status come from one source (two entries there), never from two.
    let mut seen: std::collections::HashMap<(String, String), String> =
        std::collections::HashMap::new();
    for e in bundle["entry"].as_array().unwrap() {
        let r = &e["resource"];
        if r["resourceType"] != "MedicationStatement" {
            continue;
        }
        let key = (
            r["medicationCodeableConcept"]["coding"][0]["code"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            r["status"].as_str().unwrap_or("").to_owned(),
        );
        let host = e["fullUrl"]
            .as_str()
            .unwrap()
            .split('/')
            .nth(2)
            .unwrap()
            .to_owned();
        if let Some(other) = seen.insert(key.clone(), host.clone()) {
            assert_eq!(
                other, host,
                "medication {key:?} listed separately by two sources"
            );
        }
    }
}

#[tokio::test]
async fn a_source_that_is_down_is_named_and_the_rest_are_shown() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    t.give_permission(AE, &nhs).await;
    t.demo
        .source("community")
        .unwrap()
        .set_behaviour(Behaviour {
            failure: Failure::Drop,
            ..Behaviour::default()
        });
    let started = Instant::now();
    let (status, bundle) = t.everything(AE, &nhs).await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{bundle}");
    assert!(took < Duration::from_millis(1_500 + 1_000), "took {took:?}");
    let codes = issue_codes(outcome(&bundle));
    assert!(
        codes
            .iter()
            .any(|(c, e)| c.starts_with("source-") && c != "source-ok" && e == "community"),
        "{codes:?}"
    );
    assert_eq!(codes.iter().filter(|(c, _)| c == "source-ok").count(), 3);
    let orgs = provenance_orgs(&bundle);
    assert!(!orgs.contains("RY4"), "nothing from the down source");
    assert!(orgs.contains("RWH"));
}

#[tokio::test]
async fn a_source_slower_than_the_deadline_is_cut_off_at_the_deadline() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    t.give_permission(AE, &nhs).await;
    t.demo
        .source("socialcare")
        .unwrap()
        .set_behaviour(Behaviour {
            latency_ms: (10_000, 10_000),
            ..Behaviour::default()
        });
    let started = Instant::now();
    let (status, bundle) = t.everything(AE, &nhs).await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{bundle}");
    assert!(
        took >= Duration::from_millis(1_400),
        "waited for the deadline: {took:?}"
    );
    assert!(
        took < Duration::from_millis(1_500 + 1_000),
        "but not for the slow source: {took:?}"
    );
    let codes = issue_codes(outcome(&bundle));
    assert!(
        codes.contains(&("source-timeout".to_owned(), "socialcare".to_owned())),
        "{codes:?}"
    );
    assert_eq!(codes.iter().filter(|(c, _)| c == "source-ok").count(), 3);
}

#[tokio::test]
async fn garbage_errors_and_huge_bodies_from_sources_are_reported_not_fatal() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    t.give_permission(AE, &nhs).await;
    let cases = [
        ("gp", Failure::Malformed, "source-malformed"),
        ("community", Failure::Status(500), "source-http-status"),
        (
            "socialcare",
            Failure::Huge(10 * 1024 * 1024),
            "source-too-large",
        ),
    ];
    for (id, failure, _) in &cases {
        t.demo.source(id).unwrap().set_behaviour(Behaviour {
            failure: failure.clone(),
            ..Behaviour::default()
        });
    }
    let (status, bundle) = t.everything(AE, &nhs).await;
    assert_eq!(status, 200, "{bundle}");
    let codes = issue_codes(outcome(&bundle));
    for (id, _, code) in &cases {
        assert!(
            codes.contains(&((*code).to_owned(), (*id).to_owned())),
            "{id}: {codes:?}"
        );
    }
    assert!(
        provenance_orgs(&bundle).contains("RWH"),
        "the healthy source is still shown"
    );
}

#[tokio::test]
async fn a_gp_record_without_nhs_number_is_found_by_demographics_and_marked() {
    // The GP system asked the plain R4 way: GP Connect finds a patient by NHS number only, and
    // this GP record has none (the GP Connect path answers "patient not found" for it).
    let t = start_opts(mcr::demo::DemoOptions {
        gp_connect: false,
        ..test_options()
    })
    .await;
    let nhs = t.patient("matched_by_demographics_only", 0);
    let (status, patient) = t.get(AE, &format!("/fhir/Patient/{nhs}")).await;
    assert_eq!(status, 200, "{patient}");
    let links = patient["extension"].as_array().unwrap();
    let gp = links
        .iter()
        .find(|l| {
            l["extension"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["url"] == "source" && e["valueString"] == "gp")
        })
        .expect("the GP record is linked");
    let matched_by = gp["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"] == "matchedBy")
        .unwrap();
    assert_eq!(matched_by["valueCode"], "demographics");

    // And the GP's items are in the record.
    t.give_permission(AE, &nhs).await;
    let (status, bundle) = t.everything(AE, &nhs).await;
    assert_eq!(status, 200);
    assert!(
        provenance_orgs(&bundle).contains("E82000"),
        "GP items present"
    );
}

#[tokio::test]
async fn bad_requests_get_operation_outcomes() {
    let t = start().await;
    let cases: Vec<(&str, u16, &str)> = vec![
        (
            "/fhir/Patient/9434765918/$everything",
            400,
            "invalid-nhs-number",
        ),
        (
            "/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|12345",
            400,
            "invalid-nhs-number",
        ),
        (
            "/fhir/Patient?identifier=urn:other|9434765919",
            400,
            "unknown-identifier-system",
        ),
        (
            "/fhir/Patient?family=Smith&birthdate=1970-13-45",
            400,
            "invalid-date",
        ),
        ("/fhir/Patient?colour=blue", 400, "unknown-parameter"),
        ("/fhir/Patient/9434765919", 404, "not-found"),
        ("/fhir/Patient/9434765919/$everything", 404, "not-found"),
        (
            "/fhir/Patient/9434765919/$nonsense",
            404,
            "unknown-operation",
        ),
    ];
    for (path, want, code) in cases {
        let (status, body) = t.get(AE, path).await;
        assert_eq!(status, want, "{path}: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome", "{path}");
        assert_eq!(
            body["issue"][0]["details"]["coding"][0]["code"], code,
            "{path}: {body}"
        );
    }
}

#[tokio::test]
async fn no_request_is_served_without_a_verified_identity() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    let path = format!("/fhir/Patient/{nhs}/$everything");
    let no_token = t.http.get(t.url(&path)).send().await.unwrap();
    assert_eq!(no_token.status(), 401);
    let body: serde_json::Value = no_token.json().await.unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome");

    // Change the role claim without re-signing.
    let token = t.token(AE);
    let parts: Vec<&str> = token.split('.').collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims = String::from_utf8(b64.decode(parts[1]).unwrap())
        .unwrap()
        .replace("RWH", "E82001");
    let tampered = format!("{}.{}.{}", parts[0], b64.encode(claims), parts[2]);
    for bad in ["not-a-jwt", "a.b.c", tampered.as_str()] {
        let resp = t
            .http
            .get(t.url(&path))
            .bearer_auth(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{bad}");
    }
}

#[tokio::test]
async fn oversized_and_malformed_bodies_are_refused() {
    let t = start().await;
    let big = "x".repeat(200 * 1024);
    let resp = t
        .http
        .post(t.url("/fhir/Consent"))
        .bearer_auth(t.token(AE))
        .header("content-type", "application/fhir+json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let (status, body) = t
        .post(AE, "/fhir/Consent", &serde_json::json!("just a string"))
        .await;
    assert_eq!(status, 400, "{body}");
    let resp = t
        .http
        .post(t.url("/fhir/Consent"))
        .bearer_auth(t.token(AE))
        .header("content-type", "application/fhir+json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn search_by_name_and_birth_date_finds_the_patient() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    let (_, p) = t.get(AE, &format!("/fhir/Patient/{nhs}")).await;
    let family = p["name"][0]["family"].as_str().unwrap().to_owned();
    let dob = p["birthDate"].as_str().unwrap().to_owned();
    let (status, bundle) = t
        .get(
            AE,
            &format!("/fhir/Patient?family={family}&birthdate={dob}"),
        )
        .await;
    assert_eq!(status, 200, "{bundle}");
    let ids: Vec<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&nhs.as_str()), "{ids:?}");
}

#[tokio::test]
async fn metadata_tells_the_truth() {
    let t = start().await;
    let (status, cs) = t.get(AE, "/fhir/metadata").await;
    assert_eq!(status, 200);
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let types: Vec<&str> = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["Patient", "Consent"]);
}

#[tokio::test]
async fn no_clinical_data_reaches_the_gateways_disk() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    t.give_permission(AE, &nhs).await;
    let (status, bundle) = t.everything(AE, &nhs).await;
    assert_eq!(status, 200);
    // Clinical text the view carried: medication, problem and result names.
    let mut clinical: Vec<String> = Vec::new();
    for ty in [
        "MedicationStatement",
        "Condition",
        "Observation",
        "AllergyIntolerance",
    ] {
        for r in resources(&bundle, ty) {
            let cc = if ty == "MedicationStatement" {
                &r["medicationCodeableConcept"]
            } else {
                &r["code"]
            };
            if let Some(d) = cc["coding"][0]["display"].as_str() {
                clinical.push(d.to_owned());
            }
        }
    }
    clinical.sort();
    clinical.dedup();
    assert!(
        clinical.len() >= 5,
        "the view carried clinical items: {clinical:?}"
    );
    // Everything the gateway wrote under its data directory (store, WAL, keys, demo.json).
    let data_dir = t
        .demo
        .info
        .signing_key
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let mut written = Vec::new();
    let mut stack = vec![data_dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                written.extend(std::fs::read(&p).unwrap());
            }
        }
    }
    let written = String::from_utf8_lossy(&written);
    for text in &clinical {
        assert!(
            !written.contains(text.as_str()),
            "clinical text {text:?} was written to disk"
        );
    }
}

/// A Bundle's entries as a sorted list, without what differs between two demos or two views:
/// the OperationOutcome (its timings), when a Provenance was recorded, and each source's
/// address (named by its id instead).
fn entries_of(t: &TestDemo, bundle: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["resource"]["resourceType"] != "OperationOutcome")
        .map(|e| {
            let mut r = e["resource"].clone();
            if let Some(o) = r.as_object_mut() {
                o.remove("recorded");
            }
            let mut text = r.to_string();
            for s in &t.demo.info.sources {
                text = text.replace(&s.url, &format!("source:{}", s.id));
            }
            text
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn one_batch_per_source_shows_the_same_record_as_a_request_per_search() {
    // FHIR batches are an R4 matter: the GP system is asked the R4 way here too, so all four
    // sources are batched (GP Connect is one request per view either way). What is compared
    // is the whole record each way, so the deadline is far off: on a busy machine the large
    // record's many requests one by one outran the usual 1.5 s and came back partial (what a
    // deadline does is tested on its own).
    let batch = start_opts(mcr::demo::DemoOptions {
        gp_connect: false,
        deadline_ms: 30_000,
        ..test_options()
    })
    .await;
    let each = start_opts(mcr::demo::DemoOptions {
        source_batch: false,
        gp_connect: false,
        deadline_ms: 30_000,
        ..test_options()
    })
    .await;
    for case in [
        "all_four_sources",
        "large_record",
        "sensitive_items",
        "duplicated_items",
        "hostile_text",
    ] {
        let nhs = batch.patient(case, 0);
        let mut seen = Vec::new();
        for t in [&batch, &each] {
            t.give_permission(AE, &nhs).await;
            let before = t.requests_served();
            let (status, bundle) = t.everything(AE, &nhs).await;
            assert_eq!(status, 200, "{case}: {bundle}");
            let codes = issue_codes(outcome(&bundle));
            seen.push((entries_of(t, &bundle), codes, t.requests_served() - before));
        }
        let ((by_batch, codes_batch, n_batch), (by_each, codes_each, n_each)) =
            (&seen[0], &seen[1]);
        assert!(by_batch.len() > 10, "{case}: {} entries", by_batch.len());
        assert_eq!(by_batch.len(), by_each.len(), "{case}");
        if let Some((a, b)) = by_batch.iter().zip(by_each).find(|(a, b)| a != b) {
            panic!("{case}: by batch {a}\none by one {b}");
        }
        assert_eq!(codes_batch, codes_each, "{case}");
        assert!(
            n_batch < n_each,
            "{case}: {n_batch} requests by batch, {n_each} one by one"
        );
        match case {
            // One request per source: no search here needs a second page.
            "all_four_sources" => assert_eq!(*n_batch, 4, "{case}"),
            // Searches longer than a page are followed on from the batch's first page.
            "large_record" => assert!(*n_batch > 4, "{case}: {n_batch} requests"),
            _ => {}
        }
    }
}

/// The items in a `$everything` Bundle held by the organisation with ODS code `org`.
fn items_from(bundle: &serde_json::Value, org: &str) -> usize {
    resources(bundle, "Provenance")
        .iter()
        .filter(|p| {
            p["agent"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| a["who"]["identifier"]["value"] == org)
        })
        .count()
}

#[tokio::test]
async fn every_form_of_patient_reference_r4_allows_shows_the_same_items() {
    use mcr_sources::References;
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    t.give_permission(AE, &nhs).await;
    let community = t.demo.source("community").expect("community source");
    let (status, plain) = t.everything(AE, &nhs).await;
    assert_eq!(status, 200, "{plain}");
    let expected = items_from(&plain, "RY4");
    assert!(
        expected > 0,
        "the community source holds items for this patient"
    );
    for style in [
        References::Absolute,
        References::Contained,
        References::Identifier,
    ] {
        community.set_behaviour(Behaviour {
            references: style,
            ..Behaviour::default()
        });
        let (status, bundle) = t.everything(AE, &nhs).await;
        assert_eq!(status, 200, "{style:?}: {bundle}");
        assert_eq!(items_from(&bundle, "RY4"), expected, "{style:?}");
        let codes = issue_codes(outcome(&bundle));
        assert!(
            codes
                .iter()
                .any(|(c, e)| c == "source-ok" && e == "community"),
            "{style:?}: {codes:?}"
        );
    }

    // References to another server's patient cannot be tied: nothing from the source is shown,
    // and the view says how many and why, in the API and on the page; never "answered".
    community.set_behaviour(Behaviour {
        references: References::OtherServer,
        ..Behaviour::default()
    });
    let (status, bundle) = t.everything(AE, &nhs).await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(items_from(&bundle, "RY4"), 0);
    let issues = outcome(&bundle)["issue"]
        .as_array()
        .expect("issues")
        .clone();
    let warnings: Vec<&str> = issues
        .iter()
        .filter(|i| i["details"]["coding"][0]["code"] == "items-not-tied")
        .inspect(|i| assert_eq!(i["severity"], "warning"))
        .filter_map(|i| i["details"]["text"].as_str())
        .collect();
    assert!(!warnings.is_empty(), "a warning: {issues:?}");
    // Every item it sent is counted (those the role would not see or that are withheld too:
    // none of them can be said to be this patient's), for each of the patient's records there.
    let mut n = 0;
    for text in &warnings {
        let (count, rest) = text.split_once(' ').expect("a count first");
        n += count.parse::<usize>().expect("a count");
        assert!(
            rest.contains(
                "from Hertfordshire Community NHS Trust could not be tied to this patient"
            ),
            "{text}"
        );
        assert!(text.ends_with("nothing it sent could be shown."), "{text}");
    }
    assert!(
        n >= expected,
        "{n} counted, {expected} shown before: {warnings:?}"
    );
    let codes = issue_codes(outcome(&bundle));
    assert!(
        !codes
            .iter()
            .any(|(c, e)| c == "source-ok" && e == "community"),
        "not 'answered': {codes:?}"
    );
    // The audit record counts them.
    let rows = t
        .demo
        .gateway
        .gateway
        .store()
        .query_audit(&mcr_store::AuditQuery {
            actions: vec!["view-record".into()],
            patient: Some(nhs.clone()),
            limit: 100,
            ..mcr_store::AuditQuery::default()
        })
        .await
        .expect("audit");
    let last = rows
        .iter()
        .max_by_key(|r| r.seq)
        .expect("the last view's record");
    let event: mcr_audit::AuditEvent = serde_json::from_str(&last.record.payload).expect("event");
    let audited = event
        .sources
        .iter()
        .filter(|s| s.source == "community")
        .fold((0, 0), |(items, not_tied), s| {
            (items + s.items, not_tied + s.not_tied)
        });
    assert_eq!(audited, (0, n));
    community.set_behaviour(Behaviour::default());
}

/// The ODS code of `nhs`'s registered practice in the synthetic region.
fn practice_of(t: &TestDemo, nhs: &str) -> String {
    let nhs = mcr_domain::NhsNumber::parse(nhs).expect("nhs");
    t.demo
        .region
        .person(&nhs)
        .expect("person")
        .gp_practice
        .to_string()
}

/// The demo's GP system answers through GP Connect: a patient who has dissented is said in
/// words and audited, never shown an empty GP record; one not registered at the practice is
/// said so; a provider leaving out confidential items warns the viewer.
#[tokio::test]
async fn gp_connect_cases_reach_the_viewer_in_words_and_the_audit_trail() {
    let t = start().await;
    let everything = |nhs: String| {
        let t = &t;
        async move {
            t.give_permission(AE, &nhs).await;
            let (status, bundle) = t.everything(AE, &nhs).await;
            assert_eq!(status, 200, "{bundle}");
            let issues: Vec<(String, String)> = outcome(&bundle)["issue"]
                .as_array()
                .expect("issues")
                .iter()
                .filter(|i| i["expression"][0] == "gp")
                .map(|i| {
                    (
                        i["details"]["coding"][0]["code"]
                            .as_str()
                            .unwrap_or("")
                            .to_owned(),
                        i["details"]["text"]
                            .as_str()
                            .or_else(|| i["diagnostics"].as_str())
                            .unwrap_or("")
                            .to_owned(),
                    )
                })
                .collect();
            (bundle, issues)
        }
    };

    let dissent = t.patient("gp_connect_dissent", 0);
    let dissent_practice = practice_of(&t, &dissent);
    let (bundle, issues) = everything(dissent.clone()).await;
    assert!(
        issues
            .iter()
            .any(|(code, text)| code == "source-patient-dissent"
                && text.contains("the patient has declined to share their GP record")),
        "{issues:?}"
    );
    let orgs = provenance_orgs(&bundle);
    assert!(
        !orgs.contains(&dissent_practice) && !orgs.contains("E82000"),
        "nothing from the GP: {orgs:?}"
    );
    let audited = t
        .demo
        .gateway
        .gateway
        .store()
        .search_audit(&mcr_store::AuditFilter {
            patient: Some(dissent.clone()),
            outcome: Some("permit".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("audit");
    assert!(
        audited
            .iter()
            .any(|r| r.record.payload.contains("patient-dissent")),
        "the dissent is in the view's audit record"
    );

    let elsewhere = t.patient("gp_connect_not_registered", 0);
    let (_, issues) = everything(elsewhere).await;
    assert!(
        issues
            .iter()
            .any(|(code, text)| code == "source-not-registered" && text.contains("not registered")),
        "{issues:?}"
    );

    // Items labelled confidential never leave the practice; the viewer is told some were left
    // out, and everything else it holds is there.
    let confidential = t.patient("gp_connect_confidential_excluded", 0);
    let confidential_practice = practice_of(&t, &confidential);
    let (bundle, issues) = everything(confidential).await;
    assert!(
        issues
            .iter()
            .any(|(code, text)| code == "source-warning" && text.contains("confidential")),
        "{issues:?}"
    );
    assert!(
        provenance_orgs(&bundle).contains(&confidential_practice),
        "GP items present, from the practice"
    );

    // And an ordinary patient's GP record comes through GP Connect with no warning, its items
    // the registered practice's.
    let ordinary = t.patient("all_four_sources", 0);
    let ordinary_practice = practice_of(&t, &ordinary);
    let (bundle, issues) = everything(ordinary).await;
    assert!(provenance_orgs(&bundle).contains(&ordinary_practice));
    assert_eq!(
        issues.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
        ["source-ok"]
    );
    assert!(
        t.demo.source("gp").expect("gp").requests_served() > 0,
        "asked over HTTP"
    );
    // Each practice's endpoint came from the directory (an Endpoint and a Device search per
    // practice at most: cached after).
    let searches = t.demo.directory.searches();
    assert!(searches >= 2, "{searches}");
    let practices: std::collections::BTreeSet<_> = [
        "gp_connect_dissent",
        "gp_connect_not_registered",
        "gp_connect_confidential_excluded",
        "all_four_sources",
    ]
    .iter()
    .filter_map(|case| {
        let nhs = mcr_domain::NhsNumber::parse(&t.patient(case, 0)).ok()?;
        Some(t.demo.region.person(&nhs)?.gp_practice.clone())
    })
    .collect();
    assert!(
        searches <= 2 * practices.len() as u64,
        "{searches} searches for {} practices",
        practices.len()
    );
}

/// Nothing a view answers may be kept by a browser or a proxy: a record printed or left open
/// reads as of its view, never from a cache (hazard H11.4).
#[tokio::test]
async fn every_answer_with_patient_data_says_no_store() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    let ask = |path: String| {
        let t = &t;
        async move {
            let resp = t
                .http
                .get(t.url(&path))
                .bearer_auth(t.token(AE))
                .send()
                .await
                .expect("request");
            (
                resp.status().as_u16(),
                resp.headers()
                    .get(reqwest::header::CACHE_CONTROL)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            )
        }
    };
    // Refused before permission, then the record itself, then the patient and an error.
    let (status, cache) = ask(format!("/fhir/Patient/{nhs}/$everything")).await;
    assert_eq!((status, cache.as_deref()), (403, Some("no-store")));
    t.give_permission(AE, &nhs).await;
    for path in [
        format!("/fhir/Patient/{nhs}/$everything"),
        format!("/fhir/Patient/{nhs}"),
        format!("/access/explain?patient={nhs}"),
        "/fhir/Patient/123".to_owned(),
    ] {
        let (status, cache) = ask(path.clone()).await;
        assert_eq!(cache.as_deref(), Some("no-store"), "{path}: {status}");
    }
}

/// `$everything` a page at a time: following `next` from `_count=N` gives every item of the
/// whole Bundle once, each page with the Patient and the sources' OperationOutcome; bad paging
/// parameters are refused, saying which.
#[tokio::test]
async fn everything_pages_through_the_whole_record() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    t.give_permission(AE, &nhs).await;
    let (status, whole) = t.everything(AE, &nhs).await;
    assert_eq!(status, 200, "{whole}");
    let total = whole["total"].as_u64().expect("total") as usize;
    assert!(total > 7, "a record of several pages: {total}");
    let items_of = |b: &serde_json::Value| -> Vec<String> {
        b["entry"]
            .as_array()
            .expect("entries")
            .iter()
            .filter(|e| e["search"]["mode"] == "include")
            .filter(|e| e["resource"]["resourceType"] != "Provenance")
            .map(|e| e["fullUrl"].as_str().expect("fullUrl").to_owned())
            .collect()
    };
    let link = |b: &serde_json::Value, rel: &str| -> Option<String> {
        b["link"].as_array()?.iter().find_map(|l| {
            (l["relation"] == rel).then(|| l["url"].as_str().expect("url").to_owned())
        })
    };

    let mut path = format!("/fhir/Patient/{nhs}/$everything?_count=7");
    let (mut paged, mut pages) = (Vec::new(), 0);
    loop {
        let (status, page) = t.get(AE, &path).await;
        assert_eq!(status, 200, "{path}: {page}");
        pages += 1;
        assert_eq!(
            page["total"].as_u64(),
            Some(total as u64),
            "the whole record's total"
        );
        let on_page = items_of(&page);
        assert!(on_page.len() <= 7, "page {pages}: {}", on_page.len());
        assert_eq!(
            resources(&page, "Patient").len(),
            1,
            "the Patient on page {pages}"
        );
        assert_eq!(
            issue_codes(outcome(&page))
                .iter()
                .filter(|(c, _)| c == "source-ok")
                .count(),
            4,
            "each page says which sources answered"
        );
        assert_eq!(
            resources(&page, "Provenance").len(),
            on_page.len(),
            "each item with its Provenance"
        );
        if pages > 1 {
            assert!(link(&page, "previous").is_some(), "page {pages} links back");
        }
        paged.extend(on_page);
        match link(&page, "next") {
            Some(next) => {
                path = next
                    .strip_prefix(t.demo.info.gateway_url.as_str())
                    .expect("links at the gateway's own address")
                    .to_owned();
            }
            None => break,
        }
        assert!(pages < 100, "paging does not end");
    }
    assert_eq!(pages, total.div_ceil(7));
    let mut all = items_of(&whole);
    all.sort();
    paged.sort();
    assert_eq!(
        paged, all,
        "the pages together are the whole record, each item once"
    );

    // The total alone.
    let (status, count_only) = t
        .get(AE, &format!("/fhir/Patient/{nhs}/$everything?_count=0"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(count_only["total"].as_u64(), Some(total as u64));
    assert!(items_of(&count_only).is_empty());
    assert!(link(&count_only, "next").is_none());

    for (query, at) in [
        ("_count=-1", "_count"),
        ("_count=1001", "_count"),
        ("_offset=x", "_offset"),
        ("_since=2020-01-01", "_since"),
    ] {
        let (status, body) = t
            .get(AE, &format!("/fhir/Patient/{nhs}/$everything?{query}"))
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(
            body["issue"][0]["expression"][0], at,
            "{query} names what is wrong: {body}"
        );
    }
}
