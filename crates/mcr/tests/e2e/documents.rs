//! Documents fetched on demand (issue 18 item 4), over real HTTP against the simulated
//! sources: a PDF a source holds as a `Binary` is opened through the gateway only when asked,
//! audited as its own event, passed on unchanged and never written to disk; a document the
//! grant no longer covers, whose bytes are not what it says, or that is too large, is refused
//! with its reason, audited.

use crate::helpers::*;
use mcr_sources::{Behaviour, Documents};
use serde_json::Value;

/// A patient with a PDF at the acute trust, and that document's id.
fn pdf_patient(t: &TestDemo) -> (String, String) {
    pdf_patient_at(t, 0)
}

fn pdf_patient_at(t: &TestDemo, i: usize) -> (String, String) {
    let nhs = t.patient("pdf_documents", i);
    let acute = t.demo.region.source("acute").expect("acute");
    let sp = acute
        .patients()
        .iter()
        .find(|p| p.nhs_number.as_ref().map(ToString::to_string) == Some(nhs.clone()))
        .expect("held by the acute trust");
    let doc = acute
        .resources(&sp.local_id, "DocumentReference")
        .into_iter()
        .find(|r| r.pointer("/content/0/attachment/url").is_some())
        .expect("a PDF document");
    (nhs, doc["id"].as_str().expect("id").to_owned())
}

fn held_bytes(t: &TestDemo, id: &str) -> Vec<u8> {
    let (ct, bytes) = t
        .demo
        .region
        .source("acute")
        .and_then(|s| s.binary(id))
        .expect("the source holds the PDF");
    assert_eq!(ct, "application/pdf");
    bytes
}

/// The `open-document` audit records about `nhs`, as (outcome, basis).
async fn openings(t: &TestDemo, nhs: &str) -> Vec<(String, Option<String>, Value)> {
    t.audit_trail()
        .await
        .into_iter()
        .filter(|r| r.record.action == "open-document" && r.record.patient.as_deref() == Some(nhs))
        .map(|r| {
            let payload: Value = serde_json::from_str(&r.record.payload).expect("payload");
            (
                r.record.outcome.clone(),
                payload["basis"].as_str().map(str::to_owned),
                payload,
            )
        })
        .collect()
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(p);
                }
            }
        }
    }
    found
}

async fn open_binary(t: &TestDemo, user: &str, nhs: &str, id: &str) -> reqwest::Response {
    t.http
        .get(t.url(&format!("/fhir/Binary/{nhs}.acute.{id}")))
        .bearer_auth(t.token(user))
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn a_pdf_opens_through_the_gateway_audited_as_its_own_event_and_never_on_disk() {
    let t = start().await;
    let (nhs, id) = pdf_patient(&t);
    t.give_permission(AE, &nhs).await;

    // The record lists it, with the address the source holds it at, and does not carry it.
    let (status, bundle) = t.everything(AE, &nhs).await;
    assert_eq!(status, 200, "{bundle}");
    let listed = resources(&bundle, "DocumentReference")
        .into_iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap_or_else(|| panic!("DocumentReference/{id} in {bundle}"));
    assert_eq!(
        listed["content"][0]["attachment"]["url"],
        format!("Binary/{id}")
    );
    assert!(openings(&t, &nhs).await.is_empty(), "nothing opened yet");

    let resp = open_binary(&t, AE, &nhs, &id).await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "application/pdf");
    assert_eq!(h["cache-control"], "no-store");
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .starts_with("sandbox"));
    assert!(h["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment;"));
    let bytes = resp.bytes().await.expect("body");
    let held = held_bytes(&t, &id);
    assert_eq!(
        bytes.as_ref(),
        held.as_slice(),
        "the source's bytes, unchanged"
    );

    // Audited as its own event, naming the document and the source.
    let opened = openings(&t, &nhs).await;
    assert_eq!(opened.len(), 1, "{opened:?}");
    let (outcome, _, payload) = &opened[0];
    assert_eq!(outcome, "permit");
    assert!(payload["detail"].as_str().unwrap().contains(&format!(
        "DocumentReference/{id} at acute (application/pdf)"
    )));
    assert_eq!(payload["sources"][0]["source"], "acute");

    // Through the record page too: inline, in the browser's viewer, sandboxed.
    let page = t.sign_in(AE).await;
    let resp = get_with_cookie(
        &page.http,
        t.url(&format!("/app/patient/{nhs}")),
        &page.cookie,
    )
    .await;
    let html = resp.text().await.expect("html");
    let link = format!("/app/patient/{nhs}/documents/acute/{id}");
    assert!(html.contains(&link), "the record page links the document");
    let resp = get_with_cookie(&page.http, t.url(&link), &page.cookie).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("inline;"));
    assert!(resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("sandbox"));
    assert_eq!(resp.bytes().await.expect("body").as_ref(), held.as_slice());
    assert_eq!(openings(&t, &nhs).await.len(), 2);

    // Never written to disk: no file under the data directory holds any of it.
    let middle = &held[held.len() / 3..held.len() / 3 + 64];
    assert_eq!(
        files_containing(t.data_dir(), middle),
        Vec::<std::path::PathBuf>::new()
    );
}

#[tokio::test]
async fn a_document_is_refused_once_permission_is_withdrawn_and_the_refusal_audited() {
    let t = start().await;
    let (nhs, id) = pdf_patient(&t);
    t.give_permission(AE, &nhs).await;
    assert_eq!(open_binary(&t, AE, &nhs, &id).await.status(), 200);

    t.refuse_permission(AE, &nhs).await;
    let resp = open_binary(&t, AE, &nhs, &id).await;
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.expect("OperationOutcome");
    assert_eq!(body["resourceType"], "OperationOutcome");
    let opened = openings(&t, &nhs).await;
    assert_eq!(opened.len(), 2, "{opened:?}");
    assert_eq!(opened[1].0, "deny");
    assert_eq!(opened[1].1.as_deref(), Some("permission-refused"));
}

#[tokio::test]
async fn a_caller_cannot_open_a_document_through_another_patients_record() {
    let t = start().await;
    // One this clinician may see (a permission and a relationship), and another's document.
    let other = t.patient("all_four_sources", 0);
    let (nhs, id) = if t.patient("pdf_documents", 0) == other {
        pdf_patient_at(&t, 1)
    } else {
        pdf_patient(&t)
    };
    assert_ne!(other, nhs);
    t.give_permission(AE, &other).await;
    // Permitted to see `other`, asking for `nhs`'s document under `other`'s name.
    let resp = open_binary(&t, AE, &other, &id).await;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("OperationOutcome");
    assert_eq!(status, 403, "{body}");
    let opened = openings(&t, &other).await;
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].0, "deny");
    assert_eq!(opened[0].1.as_deref(), Some("another-patient"));
    // A Binary id that is not {NHS number}.{source}.{id} is refused before anything else.
    let resp = t
        .http
        .get(t.url(&format!("/fhir/Binary/{id}")))
        .bearer_auth(t.token(AE))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn bytes_that_are_not_what_the_document_says_are_refused() {
    let t = start().await;
    let (nhs, id) = pdf_patient(&t);
    t.give_permission(AE, &nhs).await;
    let acute = t.demo.source("acute").expect("acute");
    acute.set_behaviour(Behaviour {
        documents: Documents::WrongType,
        ..Behaviour::healthy()
    });
    let resp = open_binary(&t, AE, &nhs, &id).await;
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.expect("OperationOutcome");
    let text = body["issue"][0]["diagnostics"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
        + body["issue"][0]["details"]["text"]
            .as_str()
            .unwrap_or_default();
    assert!(text.contains("application/pdf"), "{body}");
    let opened = openings(&t, &nhs).await;
    assert_eq!(opened.len(), 1);
    assert_eq!(
        (opened[0].0.as_str(), opened[0].1.as_deref()),
        ("error", Some("type-mismatch"))
    );
}

#[tokio::test]
async fn a_document_over_the_size_cap_is_refused_and_counted() {
    let t = start().await;
    let (nhs, id) = pdf_patient(&t);
    t.give_permission(AE, &nhs).await;
    let acute = t.demo.source("acute").expect("acute");
    acute.set_behaviour(Behaviour {
        documents: Documents::Padded(21 * 1024 * 1024),
        ..Behaviour::healthy()
    });
    let resp = open_binary(&t, AE, &nhs, &id).await;
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.expect("OperationOutcome");
    assert!(body.to_string().contains("too large"), "{body}");
    let opened = openings(&t, &nhs).await;
    assert_eq!(
        (opened[0].0.as_str(), opened[0].1.as_deref()),
        ("error", Some("too-large"))
    );
    let metrics = t.demo.gateway.gateway.metrics().encode();
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("action=\"open-document\"")
                && l.contains("outcome=\"too-large\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_gp_letter_comes_through_gp_connect_and_opens_through_the_gateway_audited() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    t.give_permission(AE, &nhs).await;
    // The practice's letters for this patient, as the simulated GP system holds them.
    let gp = t.demo.region.source("gp").expect("gp");
    let local = gp
        .patients()
        .iter()
        .find(|p| p.nhs_number.as_ref().map(ToString::to_string) == Some(nhs.clone()))
        .expect("held by the GP")
        .local_id
        .clone();
    let mut held: Vec<String> = gp
        .practice_documents(&local)
        .iter()
        .filter_map(|d| d["id"].as_str().map(str::to_owned))
        .collect();
    held.sort();
    assert!(!held.is_empty());

    // The record lists them (from GP Connect Access Document), from the GP practice.
    let (status, bundle) = t.everything(AE, &nhs).await;
    assert_eq!(status, 200, "{bundle}");
    let mut listed: Vec<String> = resources(&bundle, "DocumentReference")
        .into_iter()
        .filter_map(|r| r["id"].as_str())
        .filter(|id| held.iter().any(|h| h == id))
        .map(str::to_owned)
        .collect();
    listed.sort();
    assert_eq!(listed, held, "the GP letters in {bundle}");
    let id = held[0].clone();

    // Opened through the gateway: the practice's bytes, unchanged, audited as its own event.
    let resp = t
        .http
        .get(t.url(&format!("/fhir/Binary/{nhs}.gp.{id}")))
        .bearer_auth(t.token(AE))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/pdf");
    let bytes = resp.bytes().await.expect("body");
    let (_, want) = gp.binary(&id).expect("held");
    assert_eq!(bytes.as_ref(), want.as_slice(), "the practice's bytes");
    let opened = openings(&t, &nhs).await;
    assert_eq!(opened.len(), 1, "{opened:?}");
    let (outcome, _, payload) = &opened[0];
    assert_eq!(outcome, "permit");
    assert!(
        payload["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("DocumentReference/{id} at gp (application/pdf)")),
        "{payload}"
    );
    assert_eq!(payload["sources"][0]["source"], "gp");

    // The record page links it, and opens it.
    let page = t.sign_in(AE).await;
    let html = page.html(t.url(&format!("/app/patient/{nhs}"))).await;
    let link = format!("/app/patient/{nhs}/documents/gp/{id}");
    assert!(html.contains(&link), "the record page links the GP letter");
    let resp = get_with_cookie(&page.http, t.url(&link), &page.cookie).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.expect("body").as_ref(), want.as_slice());
    assert_eq!(openings(&t, &nhs).await.len(), 2);
}
