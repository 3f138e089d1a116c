//! GP Connect Access Document fed the specification's own published examples
//! (`tests/fixtures/gpconnect/documents_response.json`: a search's answer;
//! `documents_response2.json`: a `Binary`; README.md says where each came from) over real
//! HTTP, through a stand-in Spine Secure Proxy on port 0: the documents are found and listed
//! with the patient's record, and one is retrieved only when opened, with the interaction ids
//! and headers the specification requires.

mod common;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use base64::Engine as _;
use mcr_domain::{DataClass, NhsNumber, OdsCode, Purpose, Role, SourceId};
use mcr_federation::document::DocumentRefusal;
use mcr_federation::gpconnect::documents::{
    INTERACTION_FIND_PATIENT, INTERACTION_READ_BINARY, INTERACTION_SEARCH_DOCUMENTS,
};
use mcr_federation::gpconnect::GpConnectSource;
use mcr_federation::{digest, Digested, FederationConfig, Received, Requester, SourceMeta};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// The specification's example provider, as its examples' URLs name it.
const PROVIDER: &str = "http://exampleGPSystem.co.uk/GP0001/STU3/1/gpconnect";
const NHS: &str = "9434765919";
/// [`PROVIDER`] as a URL writes it (host names are case-insensitive, and written lower case).
const PROXIED: &str = "http://examplegpsystem.co.uk/GP0001/STU3/1/gpconnect";

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/gpconnect/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // The example names its patient by the placeholder 9999999999.
    text.replace("9999999999", NHS)
}

/// (path and query, Ssp-InteractionID, Ssp-From, Ssp-To) of one request.
type Request = (String, String, String, String);

#[derive(Clone, Default)]
struct Provider {
    /// (path, Ssp-InteractionID, Ssp-From, Ssp-To) of each request.
    seen: Arc<Mutex<Vec<Request>>>,
    binary: Arc<Mutex<String>>,
    /// When set, the document search names its patient by this NHS number instead (the
    /// practice's id now belongs to someone else), and Find a patient finds nobody.
    reassigned: Arc<Mutex<Option<String>>>,
}

async fn answer(State(p): State<Provider>, uri: Uri, headers: HeaderMap) -> impl IntoResponse {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let path = uri.path().to_owned();
    let reassigned = p.reassigned.lock().expect("lock").clone();
    p.seen.lock().expect("lock").push((
        format!("{path}?{}", uri.query().unwrap_or("")),
        h("ssp-interactionid"),
        h("ssp-from"),
        h("ssp-to"),
    ));
    let body = if reassigned.is_some() && path.ends_with("/documents/Patient") {
        json!({"resourceType": "Bundle", "type": "searchset", "entry": []}).to_string()
    } else if let (Some(other), true) = (&reassigned, path.ends_with("/DocumentReference")) {
        fixture("documents_response").replace(NHS, other)
    } else if path.ends_with("/documents/Patient") {
        // Find a patient: the searchset of the example's own Patient.
        let search: Value = serde_json::from_str(&fixture("documents_response")).expect("json");
        let patient = search["entry"][0].clone();
        json!({"resourceType": "Bundle", "type": "searchset", "entry": [patient]}).to_string()
    } else if path.ends_with("/DocumentReference") {
        fixture("documents_response")
    } else if path.contains("/Binary/") {
        p.binary.lock().expect("lock").clone()
    } else {
        return (
            StatusCode::NOT_FOUND,
            [("content-type", "application/fhir+json")],
            String::new(),
        );
    };
    (
        StatusCode::OK,
        [("content-type", "application/fhir+json")],
        body,
    )
}

struct Rig {
    source: GpConnectSource,
    provider: Provider,
    token: String,
}

async fn rig() -> Rig {
    let provider = Provider::default();
    *provider.binary.lock().expect("lock") = fixture("documents_response2");
    let app = axum::Router::new()
        .fallback(answer)
        .with_state(provider.clone());
    let config =
        common::source_config(PROVIDER, "The Trevelyan Practice", common::serve(app).await);
    let signer = common::signer();
    let nhs = NhsNumber::parse(NHS).expect("nhs");
    let org = OdsCode::parse("RWH").expect("ods");
    let who = Requester {
        user_id: "ae.okafor",
        role: Role::Clinician,
        org_code: &org,
        purpose: Purpose::DirectCare,
        patient: &nhs,
    };
    let token = signer.for_gp_connect(&who, PROVIDER).expect("token");
    let source = GpConnectSource::new(config, reqwest::Client::new(), FederationConfig::default())
        .with_identity(signer);
    Rig {
        source,
        provider,
        token,
    }
}

fn meta<'a>(id: &'a SourceId, code: &'a OdsCode) -> SourceMeta<'a> {
    SourceMeta {
        source: id,
        org_code: code,
        org_name: "The Trevelyan Practice",
        base_url: PROVIDER,
        local_id: "not used by GP Connect",
        elsewhere: &[],
    }
}

#[tokio::test]
async fn the_specs_document_search_is_found_listed_and_tied_to_the_patient() {
    let rig = rig().await;
    let nhs = NhsNumber::parse(NHS).expect("nhs");
    let (id, code) = (
        SourceId::parse("gp").expect("id"),
        OdsCode::parse("A20047").expect("ods"),
    );
    let m = meta(&id, &code);
    // The stand-in has no structured record (404): only the documents are looked at.
    let items = {
        let n = nhs.clone();
        let (grant, mut policy) = mcr_testkit::grant(&n, &DataClass::ALL);
        // Nothing withheld as sensitive here (withholding is the policy's own test).
        policy.sensitive = mcr_policy::SensitivityConfig {
            codes: Vec::new(),
            withhold_confidential_labels: false,
        };
        let input = grant.filter(
            &policy,
            [],
            mcr_domain::Clock::now(&mcr_domain::SystemClock),
        );
        let digest = |r: Received<'_>| digest(&input, &m, r);
        let fetched = rig
            .source
            .structured_record(&nhs, &["Patient", "DocumentReference"], &rig.token, &digest)
            .await;
        // The stand-in provider has no structured record: that fails, and says so.
        assert!(fetched.is_err(), "{fetched:?}");
        // The documents were still asked for, as the specification says.
        let seen = rig.provider.seen.lock().expect("lock").clone();
        let find = seen
            .iter()
            .find(|s| s.1 == INTERACTION_FIND_PATIENT)
            .unwrap_or_else(|| panic!("a Find a patient in {seen:?}"));
        assert!(
            find.0
                .starts_with(&format!("/ssp/{PROXIED}/documents/Patient?identifier=")),
            "{find:?}"
        );
        assert!(
            find.0
                .contains("https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C9434765919"),
            "{find:?}"
        );
        let search = seen
            .iter()
            .find(|s| s.1 == INTERACTION_SEARCH_DOCUMENTS)
            .unwrap_or_else(|| panic!("a document search in {seen:?}"));
        assert!(search.0.starts_with(&format!(
            "/ssp/{PROXIED}/documents/Patient/04603d77-1a4e-4d63-b246-d7504f8bd833/DocumentReference?"
        )));
        for include in [
            "_include=DocumentReference%3Asubject%3APatient",
            "_include=DocumentReference%3Acustodian%3AOrganization",
            "_include=DocumentReference%3Aauthor%3AOrganization",
            "_include=DocumentReference%3Aauthor%3APractitioner",
            "_revinclude%3Arecurse=PractitionerRole%3Apractitioner",
        ] {
            assert!(search.0.contains(include), "{include} in {}", search.0);
        }
        for s in &seen {
            assert_eq!(
                (s.2.as_str(), s.3.as_str()),
                ("200000000115", "200000000116")
            );
        }
        assert!(
            seen.iter().all(|s| s.1 != INTERACTION_READ_BINARY),
            "no bytes until opened"
        );
        // Read into the R4 shape and digested as the view digests: the example's one
        // document, tied to this patient by NHS number.
        let search_bundle: Value =
            serde_json::from_str(&fixture("documents_response")).expect("json");
        let doc = search_bundle["entry"][1]["resource"].clone();
        let r4 = mcr_federation::gpconnect::documents::r4_document(
            &doc,
            "04603d77-1a4e-4d63-b246-d7504f8bd833",
            &nhs,
        );
        assert_eq!(r4["date"], "2019-06-24T09:35:00+11:00");
        assert_eq!(r4["subject"]["identifier"]["value"], NHS);
        assert!(r4.get("indexed").is_none() && r4.get("created").is_none());
        let text = r4.to_string();
        let raw: &serde_json::value::RawValue = serde_json::from_str(&text).expect("json");
        let parsed = mcr_fhir::Doc::parse(raw.get()).expect("doc");
        match digest(Received { doc: &parsed, raw }) {
            Digested::Item(item) => {
                let item = &item.1;
                assert_eq!(item.resource_type, "DocumentReference");
                assert_eq!(item.display, "Discharge Summary");
                assert_eq!(
                    item.sources[0].full_url,
                    format!("{PROVIDER}/DocumentReference/27863182736")
                );
                item.clone()
            }
            other => panic!("the example document is shown: {other:?}"),
        }
    };
    assert_eq!(items.date.as_deref().map(|d| &d[..10]), Some("2019-06-24"));
}

#[tokio::test]
async fn the_specs_binary_is_retrieved_only_when_opened_and_checked_against_its_type() {
    let rig = rig().await;
    let nhs = NhsNumber::parse(NHS).expect("nhs");
    let (id, code) = (
        SourceId::parse("gp").expect("id"),
        OdsCode::parse("A20047").expect("ods"),
    );
    let m = meta(&id, &code);
    let n = nhs.clone();
    let (grant, mut policy) = mcr_testkit::grant(&n, &DataClass::ALL);
    // Nothing withheld as sensitive here (withholding is the policy's own test).
    policy.sensitive = mcr_policy::SensitivityConfig {
        codes: Vec::new(),
        withhold_confidential_labels: false,
    };
    let input = grant.filter(
        &policy,
        [],
        mcr_domain::Clock::now(&mcr_domain::SystemClock),
    );
    let check = |r: Received<'_>| digest(&input, &m, r);
    let cap = 20 * 1024 * 1024;

    // As published: the reference and the Binary say Word 97 (application/msword), but the
    // bytes are a zip (a Word 2007 document). The gateway does not pass it on as Word 97.
    let refused = rig
        .source
        .open_document_as(&nhs, "27863182736", &rig.token, &check, cap)
        .await
        .expect_err("refused");
    assert_eq!(
        refused,
        DocumentRefusal::TypeMismatch {
            declared: "application/msword".into(),
            arrived: "a zip file (such as a Word 2007 or later document)".into(),
        }
    );
    let seen = rig.provider.seen.lock().expect("lock").clone();
    let read = seen
        .iter()
        .find(|s| s.1 == INTERACTION_READ_BINARY)
        .unwrap_or_else(|| panic!("a Binary read in {seen:?}"));
    // The address the reference gives (the example's `gpconnect-documents` path), proxied.
    assert_eq!(
        read.0,
        "/ssp/http://examplegpsystem.co.uk/GP0001/STU3/1/gpconnect-documents/Binary/07a6483f-732b-461e-86b6-edb665c45510?"
    );

    // The same example with a type that agrees with its bytes is opened, byte for byte.
    let published: Value = serde_json::from_str(&fixture("documents_response2")).expect("json");
    let want = base64::engine::general_purpose::STANDARD
        .decode(published["content"].as_str().expect("content"))
        .expect("base64");
    let docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
    let mut agreed = published.clone();
    agreed["contentType"] = json!(docx);
    *rig.provider.binary.lock().expect("lock") = agreed.to_string();
    // (The search answer still declares msword, so that refusal stands: the reference and
    // the bytes must agree.)
    let again = rig
        .source
        .open_document_as(&nhs, "27863182736", &rig.token, &check, cap)
        .await
        .expect_err("the reference still says msword");
    assert!(
        matches!(again, DocumentRefusal::TypeMismatch { .. }),
        "{again:?}"
    );
    let opened = mcr_federation::document::binary_resource(agreed.to_string().as_bytes(), docx)
        .expect("a Binary that agrees is read");
    assert_eq!(opened, want);

    // A document the practice's list does not name is not asked for at all.
    let before = rig.provider.seen.lock().expect("lock").len();
    let missing = rig
        .source
        .open_document_as(&nhs, "not-in-the-list", &rig.token, &check, cap)
        .await
        .expect_err("not found");
    assert_eq!(missing, DocumentRefusal::NotFound);
    let after = rig.provider.seen.lock().expect("lock").clone();
    assert!(after[before..]
        .iter()
        .all(|s| s.1 != INTERACTION_READ_BINARY));
}

/// The practice's id for a patient is remembered, so a later view asks once (search) instead
/// of twice (find, then search); but a remembered id is used only when the search's own answer
/// says it is still this patient. When the practice's answer names someone else, nothing of
/// it is listed, the id is forgotten and the patient found again.
#[tokio::test]
async fn a_remembered_patient_id_saves_a_round_trip_and_is_never_trusted_alone() {
    let rig = rig().await;
    let nhs = NhsNumber::parse(NHS).expect("nhs");
    let (id, code) = (
        SourceId::parse("gp").expect("id"),
        OdsCode::parse("A20047").expect("ods"),
    );
    let m = meta(&id, &code);
    let n = nhs.clone();
    let (grant, mut policy) = mcr_testkit::grant(&n, &DataClass::ALL);
    policy.sensitive = mcr_policy::SensitivityConfig {
        codes: Vec::new(),
        withhold_confidential_labels: false,
    };
    let input = grant.filter(
        &policy,
        [],
        mcr_domain::Clock::now(&mcr_domain::SystemClock),
    );
    let check = |r: Received<'_>| digest(&input, &m, r);
    let cap = 20 * 1024 * 1024;
    let interactions = |from: usize| -> Vec<String> {
        rig.provider.seen.lock().expect("lock")[from..]
            .iter()
            .map(|s| s.1.clone())
            .collect()
    };
    let open = || {
        rig.source
            .open_document_as(&nhs, "27863182736", &rig.token, &check, cap)
    };

    // First: found, then searched (the published Binary's type disagrees; that refusal is
    // the other test's, and comes after the list was read).
    let first = open().await.expect_err("type mismatch");
    assert!(
        matches!(first, DocumentRefusal::TypeMismatch { .. }),
        "{first:?}"
    );
    assert_eq!(
        interactions(0),
        [
            INTERACTION_FIND_PATIENT,
            INTERACTION_SEARCH_DOCUMENTS,
            INTERACTION_READ_BINARY
        ]
    );

    // Again: the search alone, its answer confirming the id is still this NHS number.
    let seen = rig.provider.seen.lock().expect("lock").len();
    let second = open().await.expect_err("type mismatch");
    assert!(
        matches!(second, DocumentRefusal::TypeMismatch { .. }),
        "{second:?}"
    );
    assert_eq!(
        interactions(seen),
        [INTERACTION_SEARCH_DOCUMENTS, INTERACTION_READ_BINARY]
    );

    // The practice's id now names another patient, who has left: the answer is not this
    // patient's, so nothing of it is opened; the patient is looked for again, not found.
    *rig.provider.reassigned.lock().expect("lock") = Some("9000000009".into());
    let seen = rig.provider.seen.lock().expect("lock").len();
    let stale = open().await.expect_err("not this patient's");
    assert_eq!(stale, DocumentRefusal::NotFound);
    assert_eq!(
        interactions(seen),
        [INTERACTION_SEARCH_DOCUMENTS, INTERACTION_FIND_PATIENT]
    );

    // The id was forgotten: back to the practice's own word, find first.
    *rig.provider.reassigned.lock().expect("lock") = None;
    let seen = rig.provider.seen.lock().expect("lock").len();
    let back = open().await.expect_err("type mismatch");
    assert!(
        matches!(back, DocumentRefusal::TypeMismatch { .. }),
        "{back:?}"
    );
    assert_eq!(
        interactions(seen),
        [
            INTERACTION_FIND_PATIENT,
            INTERACTION_SEARCH_DOCUMENTS,
            INTERACTION_READ_BINARY
        ]
    );
}
