//! The GP Connect consumer fed the specification's own published example responses over real
//! HTTP (through a stand-in Spine Secure Proxy on port 0), checked item by item once merged
//! with an R4 source's record. Fixtures: `tests/fixtures/gpconnect/README.md` says where each
//! came from.

mod common;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use base64::Engine as _;
use mcr_domain::{
    DataClass, FailureReason, NhsNumber, OdsCode, Purpose, Role, Section, SourceId, SourceStatus,
};
use mcr_federation::gpconnect::{GpConnectSource, INTERACTION_STRUCTURED};
use mcr_federation::{
    digest, merge, Digested, FederationConfig, IdentitySigner, Received, Requester, SourceFetch,
    SourceMeta,
};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

const PROVIDER: &str = "https://gp.example/A20047/STU3/1/gpconnect";

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/gpconnect/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // The published examples name their patient by a placeholder (9999999999) or an example
    // NHS number (9432003812); each answers here for the patient the tests ask about, whose
    // NHS number the items must carry to be shown as theirs.
    let text = text
        .replace("9999999999", "9434765919")
        .replace("9432003812", "9434765919");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The published example exactly as published (its patient's NHS number is not the one asked).
fn fixture_as_published(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/gpconnect/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// One Bundle answering several clinical areas, as a provider answers a request for all of
/// them: the published examples' entries, shared resources (the patient, the practice) once.
fn combined(names: &[&str]) -> Value {
    let mut seen = BTreeSet::new();
    let mut entries = Vec::new();
    for n in names {
        for e in fixture(n)["entry"].as_array().expect("entries") {
            let r = &e["resource"];
            let key = format!("{}/{}", r["resourceType"], r["id"]);
            if r["resourceType"] == "List" || seen.insert(key) {
                entries.push(e.clone());
            }
        }
    }
    json!({"resourceType": "Bundle", "type": "collection", "entry": entries})
}

#[derive(Default)]
struct Seen {
    path: String,
    headers: Vec<(String, String)>,
    body: Value,
}

#[derive(Clone)]
struct Provider {
    answer: Arc<Mutex<(u16, String)>>,
    seen: Arc<Mutex<Seen>>,
}

async fn answer(
    State(p): State<Provider>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    {
        let mut seen = p.seen.lock().expect("lock");
        seen.path = uri.path().to_owned();
        seen.headers = headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        seen.body = serde_json::from_str(&body).unwrap_or(Value::Null);
    }
    let (status, text) = p.answer.lock().expect("lock").clone();
    (
        StatusCode::from_u16(status).expect("status"),
        [("content-type", "application/fhir+json")],
        text,
    )
}

struct Rig {
    source: GpConnectSource,
    provider: Provider,
    signer: Arc<IdentitySigner>,
    /// A clinician's grant to see every data class of [`nhs`], and the policy it came from.
    grant: mcr_policy::Grant,
    policy: mcr_policy::PolicyConfig,
}

impl Rig {
    /// What the grant lets through, as the policy hands it to federation.
    fn filter(&self) -> mcr_policy::ResourceFilter<'_> {
        self.grant.filter(
            &self.policy,
            [],
            mcr_domain::Clock::now(&mcr_domain::SystemClock),
        )
    }
}

async fn rig() -> Rig {
    let provider = Provider {
        answer: Arc::new(Mutex::new((200, String::new()))),
        seen: Arc::new(Mutex::new(Seen::default())),
    };
    let app = axum::Router::new()
        .fallback(answer)
        .with_state(provider.clone());
    let config = common::source_config(PROVIDER, "Riverside Surgery", common::serve(app).await);
    let signer = common::signer();
    let source = GpConnectSource::new(config, reqwest::Client::new(), FederationConfig::default())
        .with_identity(Arc::clone(&signer));
    let (grant, policy) = mcr_testkit::grant(&nhs(), &DataClass::ALL);
    Rig {
        source,
        provider,
        signer,
        grant,
        policy,
    }
}

const ALL_TYPES: [&str; 9] = [
    "Patient",
    "AllergyIntolerance",
    "MedicationStatement",
    "Condition",
    "Encounter",
    "Observation",
    "DiagnosticReport",
    "Immunization",
    "ServiceRequest",
];

fn nhs() -> NhsNumber {
    NhsNumber::parse("9434765919").expect("nhs")
}

struct Asked {
    fetch: SourceFetch,
    token: String,
}

/// Ask the rig's source for everything, answered with `status` and `body`, digested for a
/// viewer of every class.
async fn ask(
    rig: &Rig,
    input: &mcr_policy::ResourceFilter<'_>,
    status: u16,
    body: String,
) -> Asked {
    *rig.provider.answer.lock().expect("lock") = (status, body);
    let n = nhs();
    let org = OdsCode::parse("RWH").expect("ods");
    let who = Requester {
        user_id: "ae.okafor",
        role: Role::Clinician,
        org_code: &org,
        purpose: Purpose::DirectCare,
        patient: &n,
    };
    let token = rig.signer.for_gp_connect(&who, PROVIDER).expect("token");
    let id = SourceId::parse("gp").expect("id");
    let code = OdsCode::parse("A20047").expect("ods");
    let meta = SourceMeta {
        source: &id,
        org_code: &code,
        org_name: "Riverside Surgery",
        base_url: PROVIDER,
        local_id: "not used by GP Connect",
        elsewhere: &[],
    };
    let digest = |r: Received<'_>| digest(input, &meta, r);
    let result = rig
        .source
        .structured_record(&n, &ALL_TYPES, &token, &digest)
        .await;
    let (outcome, warnings) = match result {
        Ok(f) => (Ok(f.resources), f.warnings),
        Err(e) => (Err(e), Vec::new()),
    };
    Asked {
        fetch: SourceFetch {
            source: id.clone(),
            org_code: code,
            org_name: "Riverside Surgery".into(),
            base_url: PROVIDER.into(),
            outcome,
            elapsed_ms: 1,
            source_ms: None,
            warnings,
            cut_short: None,
            unsearchable: Vec::new(),
        },
        token,
    }
}

/// An R4 source's answer, digested as the client does.
fn acute(input: &mcr_policy::ResourceFilter<'_>, resources: &[Value]) -> SourceFetch {
    let id = SourceId::parse("acute").expect("id");
    let code = OdsCode::parse("RWH").expect("ods");
    let meta = SourceMeta {
        source: &id,
        org_code: &code,
        org_name: "East and North Hertfordshire NHS Trust",
        base_url: "https://acute.example/fhir",
        local_id: "x",
        elsewhere: &[],
    };
    let digested: Vec<Digested> = resources
        .iter()
        .map(|v| {
            let text = v.to_string();
            let raw: &serde_json::value::RawValue = serde_json::from_str(&text).expect("json");
            let doc = mcr_fhir::Doc::parse(raw.get()).expect("json");
            digest(input, &meta, Received { doc: &doc, raw })
        })
        .collect();
    SourceFetch {
        source: id.clone(),
        org_code: code,
        org_name: "East and North Hertfordshire NHS Trust".into(),
        base_url: "https://acute.example/fhir".into(),
        outcome: Ok(digested),
        elapsed_ms: 1,
        source_ms: None,
        warnings: Vec::new(),
        cut_short: None,
        unsearchable: Vec::new(),
    }
}

fn claims(token: &str) -> Value {
    let body = token.split('.').nth(1).expect("a JWS");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .expect("base64url");
    serde_json::from_slice(&json).expect("claims")
}

#[tokio::test]
async fn the_request_goes_through_the_proxy_with_the_headers_parameters_and_token_the_spec_requires(
) {
    let rig = rig().await;
    let input = rig.filter();
    let asked = ask(
        &rig,
        &input,
        200,
        fixture("allergies_response1").to_string(),
    )
    .await;
    assert!(asked.fetch.outcome.is_ok(), "{:?}", asked.fetch.outcome);
    let seen = rig.provider.seen.lock().expect("lock");
    // The proxy's prefix, then the provider's whole URL (the spec's absolute request).
    assert_eq!(
        seen.path,
        "/ssp/https://gp.example/A20047/STU3/1/gpconnect/Patient/$gpc.getstructuredrecord"
    );
    let header = |name: &str| {
        seen.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} header"))
    };
    assert_eq!(header("ssp-from"), "200000000115");
    assert_eq!(header("ssp-to"), "200000000116");
    assert_eq!(header("ssp-interactionid"), INTERACTION_STRUCTURED);
    assert!(uuid::Uuid::parse_str(&header("ssp-traceid")).is_ok());
    assert!(header("content-type").starts_with("application/fhir+json"));
    assert_eq!(header("authorization"), format!("Bearer {}", asked.token));
    let c = claims(&asked.token);
    assert_eq!(c["aud"], PROVIDER);
    assert_eq!(c["sub"], "ae.okafor");
    assert_eq!(c["requesting_practitioner"]["id"], "ae.okafor");
    assert_eq!(c["reason_for_request"], "directcare");
    assert_eq!(c["requested_scope"], "patient/*.read");
    assert_eq!(c["requesting_device"]["resourceType"], "Device");
    assert_eq!(
        c["requesting_organization"]["identifier"][0],
        json!({"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "RWH"})
    );
    assert_eq!(
        c["exp"].as_i64().expect("exp") - c["iat"].as_i64().expect("iat"),
        300
    );
    assert_eq!(seen.body["resourceType"], "Parameters");
    assert_eq!(
        seen.body["parameter"][0]["valueIdentifier"],
        json!({"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"})
    );
}

#[tokio::test]
async fn the_published_examples_become_one_record_with_the_practice_as_source_merged_with_r4() {
    let rig = rig().await;
    let input = rig.filter();
    let bundle = combined(&[
        "allergies_response1",
        "meds_response",
        "immunizations_response1",
        "referrals_response1",
        "uncategorised_response1",
    ]);
    let gp = ask(&rig, &input, 200, bundle.to_string()).await.fetch;
    // The acute trust holds the same peanut allergy and the same current aspirin (R4).
    let hospital = acute(
        &input,
        &[
            json!({"resourceType": "AllergyIntolerance", "id": "a1",
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "256349002", "display": "Peanut - dietary"}]},
                "patient": {"reference": "Patient/x"}}),
            json!({"resourceType": "MedicationStatement", "id": "m1", "status": "active",
                "medicationCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "319773006", "display": "Aspirin 75mg dispersible tablets"}]},
                "dosage": [{"text": "TAKE ONE 3 TIMES/DAY"}], "subject": {"reference": "Patient/x"}}),
        ],
    );
    let record = merge(&input, vec![gp, hospital]);
    assert_eq!(record.sources[0].status, SourceStatus::Ok);
    let patient = record
        .patient
        .as_ref()
        .expect("the practice's demographics");
    assert_eq!(patient["name"][0]["family"], "Jackson");

    // Allergies: three active and the resolved one from the "Resolved Allergies" list's
    // contained resources; the peanut allergy is one item held by both.
    let allergies = record.items(Section::Allergies);
    let mut got: Vec<(String, Option<String>, usize)> = allergies
        .iter()
        .map(|i| {
            (
                i.code.clone().expect("coded").1,
                i.status.clone(),
                i.sources.len(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("196461000000101".into(), Some("active".into()), 1),
            ("256349002".into(), Some("active".into()), 2),
            ("319773006".into(), Some("resolved".into()), 1),
            ("323509004".into(), Some("active".into()), 1),
        ]
    );
    let peanut = allergies
        .iter()
        .find(|i| i.sources.len() == 2)
        .expect("merged");
    assert_eq!(peanut.sources[0].org_name, "Riverside Surgery");
    assert_eq!(
        peanut.sources[0].full_url,
        format!("{PROVIDER}/AllergyIntolerance/5eb0f76a-cecb-4b83-999d-ddb76e551a9b")
    );
    assert_eq!(peanut.sources[1].source.as_str(), "acute");
    assert_eq!(peanut.date.as_deref(), Some("2016-02-08T10:57:34+00:00"));

    // Medications: three statements named by their Medication, dose from the statement,
    // issues folded in; the current aspirin is one item with both sources, and the hospital's
    // different dose is flagged, not hidden.
    let meds = record.items(Section::Medications);
    assert_eq!(meds.len(), 3, "{meds:#?}");
    let aspirin = meds
        .iter()
        .find(|m| m.code.as_ref().is_some_and(|c| c.1 == "319773006"))
        .expect("aspirin");
    assert_eq!(aspirin.status.as_deref(), Some("active"));
    assert_eq!(aspirin.sources.len(), 2);
    assert_eq!(aspirin.detail.as_deref(), Some("TAKE ONE DAILY"));
    let note = aspirin.discrepancy.as_deref().expect("doses differ");
    assert!(
        note.contains("Riverside Surgery says “TAKE ONE DAILY”")
            && note.contains("TAKE ONE 3 TIMES/DAY"),
        "{note}"
    );
    let amoxicillin: Vec<_> = meds
        .iter()
        .filter(|m| m.code.as_ref().is_some_and(|c| c.1 == "323509004"))
        .collect();
    assert_eq!(amoxicillin.len(), 2, "two courses at one source stay two");
    assert!(amoxicillin
        .iter()
        .all(|m| m.status.as_deref() == Some("completed") && m.sources.len() == 1));
    let r4 = aspirin.resource.value().expect("R4 JSON");
    assert_eq!(r4["resourceType"], "MedicationStatement");
    assert!(
        r4.get("medicationReference").is_none(),
        "resolved to a code"
    );
    assert!(
        r4["note"]
            .as_array()
            .expect("notes")
            .iter()
            .any(|n| n["text"].as_str().is_some_and(|t| t.contains("issued"))),
        "{r4}"
    );

    // Results: the uncategorised observations with their values. The published example's
    // respiration rate names a patient the Bundle does not hold
    // (`Patient/9340157B-6973-4209-9B57-BF6C64F29E46`): it cannot be tied to this patient, so
    // it is not shown, and the practice's row says one item could not be tied.
    let results = record.items(Section::Results);
    let mut shown: Vec<(String, Option<String>)> = results
        .iter()
        .map(|i| (i.resource_type.clone(), i.detail.clone()))
        .collect();
    shown.sort();
    assert_eq!(
        shown,
        [
            ("Observation".to_owned(), Some("36.7 C".into())),
            ("Observation".to_owned(), Some("96 %".into())),
        ]
    );
    let practice = record
        .sources
        .iter()
        .find(|s| s.source.as_str() == "gp")
        .expect("the practice's row");
    assert_eq!(practice.untied, 1, "{practice:?}");
    // Immunisations, in their own section: the vaccination named by its procedure (the
    // vaccine being unknown).
    let immunisations = record.items(Section::Immunisations);
    assert_eq!(immunisations.len(), 1, "{immunisations:?}");
    let vaccine = &immunisations[0];
    assert_eq!(vaccine.resource_type, "Immunization");
    assert_eq!(vaccine.detail.as_deref(), Some("batch AAJN11K"));
    assert_eq!(vaccine.display, "First hepatitis A vaccination");
    assert_eq!(vaccine.status.as_deref(), Some("completed"));

    // Referrals: the two outbound referrals as R4 ServiceRequests, in their own section.
    let referrals: Vec<_> = record
        .items(Section::Referrals)
        .iter()
        .filter(|i| i.resource_type == "ServiceRequest")
        .collect();
    let mut names: Vec<&str> = referrals.iter().map(|i| i.display.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["Referral to counselor", "Referral to physiotherapist"]
    );
    assert!(referrals
        .iter()
        .any(|i| i.detail.as_deref() == Some("Referral due to swollen legs")));
    assert!(record.sources[0].warnings.is_empty());
    // Nothing unaccounted for: the view counts what it kept, and what it could not tie.
    assert_eq!(
        (record.sources[0].items, record.sources[0].untied),
        (4 + 3 + 1 + 2 + 2, 1)
    );
}

#[tokio::test]
async fn investigations_keep_the_report_and_every_test_result() {
    let rig = rig().await;
    let input = rig.filter();
    let published = fixture("pathology_response1");
    let observations = published["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["resource"]["resourceType"] == "Observation")
        .count();
    let gp = ask(&rig, &input, 200, published.to_string()).await.fetch;
    let record = merge(&input, vec![gp]);
    let results = record.items(Section::Results);
    assert_eq!(
        results.len(),
        observations + 1,
        "every Observation and the report"
    );
    let report = results
        .iter()
        .find(|i| i.resource_type == "DiagnosticReport")
        .expect("report");
    assert_eq!(report.status.as_deref(), Some("final"));
    let r4 = report.resource.value().expect("json");
    assert_eq!(
        r4["result"][0]["reference"], "Observation/dacb177a-9501-4dcc-8b22-b941791ae0db",
        "{r4}"
    );
    assert!(
        r4.get("meta").is_none(),
        "the STU3 profile is not claimed: {r4}"
    );
}

#[tokio::test]
async fn a_providers_list_warning_reaches_the_banner_in_words_and_its_items_still_show() {
    let rig = rig().await;
    let input = rig.filter();
    // The published example with the spec's confidential-items warning added to its list
    // (none of the published examples carries one).
    let mut bundle = fixture("allergies_response1");
    for e in bundle["entry"].as_array_mut().expect("entries") {
        if e["resource"]["resourceType"] == "List" && e["resource"]["title"] == "Active Allergies" {
            e["resource"]["extension"] = json!([{
                "url": mcr_federation::gpconnect::stu3::LIST_WARNING_URL,
                "valueCode": "confidential-items"}]);
            e["resource"]["note"] = json!([{"text": "Items excluded due to confidentiality and/or patient preferences."}]);
        }
    }
    let gp = ask(&rig, &input, 200, bundle.to_string()).await.fetch;
    let record = merge(&input, vec![gp]);
    assert_eq!(record.sources[0].warnings.len(), 1);
    assert!(
        record.sources[0].warnings[0].contains("confidential"),
        "{:?}",
        record.sources[0].warnings
    );
    assert_eq!(record.items(Section::Allergies).len(), 4);
}

#[tokio::test]
async fn each_error_the_spec_defines_is_its_own_failure_and_never_an_empty_record() {
    let rig = rig().await;
    let input = rig.filter();
    let outcome = |issue: &str, code: &str, display: &str, diagnostics: Option<&str>| {
        let mut i = json!({"severity": "error", "code": issue, "details": {"coding": [{
            "system": "https://fhir.nhs.uk/STU3/CodeSystem/Spine-ErrorOrWarningCode-1",
            "code": code, "display": display}]}});
        if let Some(d) = diagnostics {
            i["diagnostics"] = json!(d);
        }
        json!({"resourceType": "OperationOutcome",
            "meta": {"profile": ["https://fhir.nhs.uk/STU3/StructureDefinition/GPConnect-OperationOutcome-1"]},
            "issue": [i]})
        .to_string()
    };
    // (HTTP status, issue type, Spine code, display) as the spec's error handling guidance
    // tables give them, and the banner's words.
    let cases = [
        (
            403,
            outcome(
                "forbidden",
                "NO_PATIENT_CONSENT",
                "Patient has not provided consent to share data",
                None,
            ),
            FailureReason::PatientDissent,
            "the patient has declined to share their GP record",
        ),
        (
            404,
            outcome("not-found", "PATIENT_NOT_FOUND", "Patient not found", None),
            FailureReason::PatientNotFound,
            "holds no GP record it can share for this NHS number",
        ),
        (
            404,
            outcome(
                "not-found",
                "PATIENT_NOT_FOUND",
                "Patient not found",
                Some("Patient is not registered at this practice (non-regular patient)"),
            ),
            FailureReason::NotRegistered,
            "says the patient is not registered there",
        ),
        (
            400,
            outcome("value", "INVALID_NHS_NUMBER", "Invalid NHS number", None),
            FailureReason::InvalidNhsNumber,
            "refused the NHS number as invalid",
        ),
        (
            422,
            outcome(
                "invalid",
                "INVALID_RESOURCE",
                "Invalid validation of resource",
                None,
            ),
            FailureReason::InvalidRequest {
                code: "INVALID_RESOURCE".into(),
            },
            "refused the request as invalid (INVALID_RESOURCE)",
        ),
        (
            422,
            outcome("invalid", "INVALID_PARAMETER", "Invalid parameter", None),
            FailureReason::InvalidRequest {
                code: "INVALID_PARAMETER".into(),
            },
            "refused the request as invalid (INVALID_PARAMETER)",
        ),
        (
            403,
            outcome("forbidden", "ACCESS DENIED", "Access denied", None),
            FailureReason::AccessDenied {
                code: "ACCESS DENIED".into(),
            },
            "refused access (ACCESS DENIED)",
        ),
        (
            500,
            outcome(
                "processing",
                "INTERNAL_SERVER_ERROR",
                "Unexpected internal server error",
                None,
            ),
            FailureReason::ProviderError {
                code: "INTERNAL_SERVER_ERROR".into(),
            },
            "failed on its side (INTERNAL_SERVER_ERROR)",
        ),
    ];
    for (status, body, want, words) in cases {
        let gp = ask(&rig, &input, status, body).await.fetch;
        let record = merge(&input, vec![gp]);
        assert_eq!(record.item_count(), 0);
        match &record.sources[0].status {
            SourceStatus::Failed(reason) => {
                assert_eq!(reason, &want);
                assert_eq!(reason.describe(), words);
            }
            SourceStatus::Ok | SourceStatus::Partial(_) => panic!("{want:?} shown as an answer"),
        }
        assert_eq!(record.failed_sources().count(), 1);
    }
}

/// A provider that answers with another patient's record (the published example as published:
/// its patient's NHS number is not the one asked) has nothing shown; every item is counted as
/// naming another patient, so the view can say so.
#[tokio::test]
async fn an_answer_about_another_nhs_number_shows_nothing_and_is_counted() {
    let rig = rig().await;
    let input = rig.filter();
    let asked = ask(&rig, &input, 200, fixture_as_published("meds_response")).await;
    let counts = asked.fetch.counts();
    assert_eq!(counts.kept, 0, "{counts:?}");
    assert!(counts.another_patient > 0, "{counts:?}");
    let record = merge(&input, vec![asked.fetch]);
    assert_eq!(record.item_count(), 0);
    assert!(record.sources[0]
        .not_tied_sentence()
        .is_some_and(|s| s.contains("named another patient")));
}
