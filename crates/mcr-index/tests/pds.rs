//! The PDS trace, against things this project did not write and through the real path: the
//! PDS FHIR API's published example payloads (tests/fixtures/pds, see its README) parsed by
//! the client; the simulator's answers compared in shape with them; and `Indexer::sync` over
//! a FHIR source on real HTTP tracing against the simulator on real HTTP, read back from a
//! real SQLite store. Access is the platform's signed-JWT exchange throughout (its own tests:
//! tests/pds_auth.rs).

mod common;

use common::{clock, federation, serve, source, sqlite};
use mcr_domain::{NhsNumber, OrgKind, SourceId, SystemClock};
use mcr_federation::Source;
use mcr_index::pds::{
    read_search, spine_code, PdsClient, PdsPatient, PdsSettings, SearchAnswer, Trace, TraceAudit,
    TraceQuery, TraceRecord,
};
use mcr_index::Indexer;
use mcr_sources::pds::{PdsAccess, PdsData, PdsHandle};
use mcr_store::LinkMethod;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The application the simulated platform knows: its API key, and the key id of its public key
/// in tests/fixtures/pds-auth/jwks.json.
const API_KEY: &str = "pds-test-application";
const KID: &str = "test-1";

fn auth_fixture(name: &str) -> std::path::PathBuf {
    format!(
        "{}/tests/fixtures/pds-auth/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
    .into()
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/pds/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("fixture JSON")
}

fn nhs(s: &str) -> NhsNumber {
    NhsNumber::parse(s).expect("test NHS number")
}

async fn pds() -> PdsHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("test setup");
    let jwks = std::fs::read_to_string(auth_fixture("jwks.json")).expect("fixture");
    let access = PdsAccess {
        api_key: API_KEY.into(),
        jwks: serde_json::from_str(&jwks).expect("fixture JSON"),
        clock: Arc::new(SystemClock),
    };
    mcr_sources::pds::serve(listener, PdsData::demo(), access)
        .await
        .expect("test setup")
}

/// A client of `pds` signing its JWTs with `key` (a file in tests/fixtures/pds-auth).
fn client_signing_with(pds: &PdsHandle, key: &str) -> PdsClient {
    PdsClient::new(
        PdsSettings {
            base_url: pds.base_url(),
            token_url: pds.token_url(),
            api_key: API_KEY.to_owned().into(),
            key_id: KID.into(),
            private_key: auth_fixture(key),
            link_score: 1.0,
            timeout_ms: 5000,
        },
        Arc::new(SystemClock),
    )
    .expect("client")
}

fn client(pds: &PdsHandle) -> PdsClient {
    client_signing_with(pds, "application-key.pem")
}

/// An access token from `pds`'s token endpoint, for requests made by hand.
async fn token(pds: &PdsHandle) -> String {
    use secrecy::ExposeSecret;
    client(pds)
        .access_tokens()
        .bearer()
        .await
        .expect("token")
        .expose_secret()
        .to_owned()
}

#[test]
fn published_examples_parse_through_the_client() {
    let p = PdsPatient::from_fhir(&fixture("Patient.json")).expect("Patient.json");
    assert_eq!(p.nhs_number.as_str(), "9000000009");
    assert_eq!(p.postcode.as_deref(), Some("LS1 6AE"));
    assert_eq!(p.gp_practice.as_deref(), Some("Y12345"));
    assert!(!p.restricted);
    assert_eq!(p.deceased.as_deref(), Some("2010-10-22T00:00:00+00:00"));

    let s = PdsPatient::from_fhir(&fixture("Sensitive_Patient.json")).expect("Sensitive");
    assert_eq!(s.nhs_number.as_str(), "9000000025");
    assert!(s.restricted, "meta.security R");
    assert_eq!((s.postcode, s.gp_practice), (None, None));

    let m = PdsPatient::from_fhir(&fixture("Minimal_Patient.json")).expect("Minimal");
    assert!(!m.restricted);

    match read_search(&fixture("PatientSearch.json")).expect("PatientSearch.json") {
        SearchAnswer::One(p, score) => {
            assert_eq!(p.nhs_number.as_str(), "9000000009");
            assert!((score - 0.75).abs() < 1e-9);
        }
        other => panic!("{other:?}"),
    }
    match read_search(&fixture("Sensitive_PatientSearch.json")).expect("sensitive search") {
        SearchAnswer::One(p, _) => assert!(p.restricted && p.postcode.is_none()),
        other => panic!("{other:?}"),
    }
    match read_search(&fixture("dateOfDeath_searchset.json")).expect("deceased search") {
        SearchAnswer::One(p, _) => assert!(p.deceased.is_some()),
        other => panic!("{other:?}"),
    }
    match read_search(&fixture("cuff_superseded_searchset.json")).expect("superseded search") {
        SearchAnswer::One(p, score) => {
            assert_eq!(p.nhs_number.as_str(), "9732019395");
            assert!((score - 1.0).abs() < 1e-9);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        read_search(&fixture("TOO_MANY_MATCHES.json")).expect("too many"),
        SearchAnswer::TooMany
    );
    for code in [
        "RESOURCE_NOT_FOUND",
        "INVALID_RESOURCE_ID",
        "INVALIDATED_RESOURCE",
        "INVALID_SEARCH_DATA",
        "ACCESS_DENIED",
    ] {
        let outcome = fixture(&format!("error_{code}.json"));
        assert_eq!(spine_code(&outcome).as_deref(), Some(code));
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

async fn ask(url: &str, token: Option<&str>, request_id: bool) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if request_id {
        req = req.header("x-request-id", "60E0B220-8136-4CA5-AE46-1D97EF59D068");
    }
    let answer = req.send().await.expect("request");
    let status = answer.status().as_u16();
    (status, answer.json().await.expect("JSON"))
}

#[tokio::test]
async fn the_simulator_answers_in_the_published_shapes() {
    let pds = pds().await;
    let base = pds.base_url();
    let example = fixture("Patient.json");
    let token = token(&pds).await;
    let token = token.as_str();

    let (status, read) = ask(&format!("{base}/Patient/9990000034"), Some(token), true).await;
    assert_eq!(status, 200);
    // Every field the simulator sends is one the published example has, with the same
    // systems and extension URLs.
    let extra: Vec<_> = keys(&read).difference(&keys(&example)).cloned().collect();
    assert!(extra.is_empty(), "not in the published example: {extra:?}");
    for pointer in [
        "/identifier/0/system",
        "/identifier/0/extension/0/url",
        "/meta/security/0/system",
        "/generalPractitioner/0/identifier/system",
    ] {
        assert_eq!(read.pointer(pointer), example.pointer(pointer), "{pointer}");
    }
    for field in ["address", "name", "telecom", "generalPractitioner"] {
        let ours = keys(&read[field][0]);
        let theirs = keys(&example[field][0]);
        assert!(ours.is_subset(&theirs), "{field}: {ours:?} vs {theirs:?}");
    }

    let search_example = fixture("PatientSearch.json");
    let (status, search) = ask(
        &format!("{base}/Patient?family=Attison&given=Pauline&birthdate=eq1962-09-30"),
        Some(token),
        true,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(keys(&search), keys(&search_example));
    assert_eq!(keys(&search["entry"][0]), keys(&search_example["entry"][0]));
    assert_eq!(search["entry"][0]["search"]["score"], json!(1.0));

    // The errors, each with the status and Spine code the specification gives, and the
    // issue type the published error examples carry.
    let cases = [
        (
            "/Patient/9990000035",
            Some(token),
            true,
            400,
            "INVALID_RESOURCE_ID",
        ),
        (
            "/Patient/9990000107",
            Some(token),
            true,
            404,
            "RESOURCE_NOT_FOUND",
        ),
        (
            "/Patient/9990000042",
            Some(token),
            true,
            404,
            "INVALIDATED_RESOURCE",
        ),
        ("/Patient/9990000034", None, true, 401, "ACCESS_DENIED"),
        (
            "/Patient/9990000034",
            Some("wrong"),
            true,
            401,
            "ACCESS_DENIED",
        ),
        (
            "/Patient/9990000034",
            Some(token),
            false,
            400,
            "MISSING_VALUE",
        ),
        (
            "/Patient?family=Attison",
            Some(token),
            true,
            400,
            "INVALID_SEARCH_DATA",
        ),
    ];
    for (path, token, rid, want_status, want_code) in cases {
        let (status, body) = ask(&format!("{base}{path}"), token, rid).await;
        assert_eq!(
            (status, spine_code(&body).as_deref()),
            (want_status, Some(want_code)),
            "{path}"
        );
        assert_eq!(body["resourceType"], "OperationOutcome");
        let published = format!("error_{want_code}.json");
        if std::path::Path::new(&format!(
            "{}/tests/fixtures/pds/{published}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .exists()
        {
            assert_eq!(
                body["issue"][0]["code"],
                fixture(&published)["issue"][0]["code"],
                "{path}: issue type"
            );
        }
    }
    let (status, body) = ask(
        &format!("{base}/Patient?family=Jones&given=Jackie&birthdate=eq1990-03-04"),
        Some(token),
        true,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(spine_code(&body).as_deref(), Some("TOO_MANY_MATCHES"));
    assert_eq!(
        body["issue"][0]["code"],
        fixture("TOO_MANY_MATCHES.json")["issue"][0]["code"]
    );
}

#[tokio::test]
async fn what_pds_says_is_read_superseded_deceased_restricted() {
    let pds = pds().await;
    let c = client(&pds);
    // A superseded number leads to the current one.
    let current = c
        .read(&nhs("9990000069"))
        .await
        .expect("read")
        .expect("held");
    assert_eq!(current.nhs_number.as_str(), "9990000077");
    assert_eq!(
        current.superseded.as_ref().map(NhsNumber::as_str),
        Some("9990000069")
    );
    // Deceased.
    let dead = c
        .read(&nhs("9990000026"))
        .await
        .expect("read")
        .expect("held");
    assert!(dead.deceased.is_some());
    // Restricted: flagged, and PDS sends no location.
    let r = c
        .read(&nhs("9990000018"))
        .await
        .expect("read")
        .expect("held");
    assert!(r.restricted);
    assert_eq!((r.postcode, r.gp_practice), (None, None));
    // Not held.
    assert_eq!(c.read(&nhs("9990000107")).await.expect("read"), None);
    // A JWT signed with a key the platform does not hold gets no token: an error in the
    // platform's words, never a patient.
    let wrong = client_signing_with(&pds, "other-key.pem");
    let e = wrong.read(&nhs("9990000034")).await.expect_err("refused");
    assert_eq!(
        e.to_string(),
        "the PDS token endpoint refused the signed JWT: 401 public_key error: JWT signature verification failed"
    );

    let born = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
    let q = |family: &'static str, given: &'static str, dob: &str, postcode| TraceQuery {
        family,
        given,
        birth_date: born(dob),
        gender: Some("female"),
        postcode,
    };
    // An exact match links; a Soundex match scores below 1.0: review.
    match c
        .trace(Some(q("Attison", "Pauline", "1962-09-30", Some("LS1 6AE"))))
        .await
    {
        Ok(Trace::Traced(p, score)) => {
            assert_eq!((p.nhs_number.as_str(), score), ("9990000034", 1.0));
        }
        other => panic!("{other:?}"),
    }
    match c
        .trace(Some(q("Atison", "Pauline", "1962-09-30", Some("LS1 6AE"))))
        .await
    {
        Ok(Trace::Review(p, score)) => {
            assert_eq!(p.nhs_number.as_str(), "9990000034");
            assert!(score < 1.0, "{score}");
        }
        other => panic!("{other:?}"),
    }
    // Two people answer: nobody is chosen.
    assert_eq!(
        c.trace(Some(q("Jones", "Jackie", "1990-03-04", None)))
            .await
            .expect("trace"),
        Trace::TooMany
    );
    // The restricted patient is found without the postcode, as PDS allows.
    match c
        .trace(Some(q("Smythe", "Janet", "2005-06-16", Some("LS1 6AE"))))
        .await
    {
        Ok(Trace::Traced(p, _)) => assert!(p.restricted),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.trace(None).await.expect("trace"), Trace::Untraceable);
}

/// The acute trust's FHIR source at `url`.
fn acute_source(url: &str) -> Arc<dyn Source> {
    source("acute", "RWH", OrgKind::AcuteTrust, url)
}

/// The audit the gateway would write, kept.
#[derive(Debug, Default)]
struct Audited(std::sync::Mutex<Vec<TraceRecord>>);

#[async_trait::async_trait]
impl TraceAudit for Audited {
    async fn traced(&self, traces: &[TraceRecord]) -> Result<(), mcr_store::StoreError> {
        self.0.lock().expect("lock").extend_from_slice(traces);
        Ok(())
    }
}

/// A `Patient` with no NHS number.
fn person(id: &str, family: &str, given: &str, dob: &str, sex: &str, postcode: &str) -> Value {
    common::person(id, None, (family, given), dob, sex, postcode)
}

/// Pauline Attison, whom the simulated PDS knows (9990000034), with no NHS number.
fn pauline(id: &str) -> Value {
    person(id, "Attison", "Pauline", "1962-09-30", "female", "LS1 6AE")
}

#[tokio::test]
async fn a_sync_traces_what_the_index_cannot_link() {
    let pds = pds().await;
    let acute = serve(vec![
        // No NHS number, PDS's exact match: linked to PDS's number.
        pauline("a1"),
        // A typo: PDS's fuzzy match scores below 1.0, so review, never a link.
        person("a2", "Atison", "Pauline", "1962-09-30", "female", "LS1 6AE"),
        // Deceased, per PDS.
        person("a3", "Garton", "Bill", "1936-02-11", "male", "LS1 6AE"),
        // Restricted, per PDS.
        person("a4", "Smythe", "Janet", "2005-06-16", "female", "LS1 6AE"),
        // Twins in PDS: nobody chosen.
        person("a5", "Jones", "Jackie", "1990-03-04", "female", "LS2 7UE"),
    ])
    .await;
    let source = acute_source(&acute);
    let (_dir, store) = sqlite().await;
    let fed = federation(vec![source]);
    let clock = clock();
    let audit = Arc::new(Audited::default());
    let indexer = Indexer::new(fed, store.clone(), clock)
        .with_pds(Arc::new(client(&pds)), audit.clone() as Arc<dyn TraceAudit>);
    let report = indexer.sync(true).await.expect("sync");
    // Every trace audited: the source record, what came of it, the NHS number PDS gave; no
    // name, birth date or postcode.
    let traces = audit.0.lock().expect("lock").clone();
    let said: Vec<(&str, &str, Option<&str>, bool, bool)> = traces
        .iter()
        .map(|t| {
            (
                t.local_id.as_str(),
                t.outcome.code(),
                t.nhs_number.as_ref().map(NhsNumber::as_str),
                t.deceased,
                t.restricted,
            )
        })
        .collect();
    assert_eq!(
        said,
        [
            ("a1", "linked", Some("9990000034"), false, false),
            ("a2", "review", Some("9990000034"), false, false),
            ("a3", "linked", Some("9990000026"), true, false),
            ("a4", "linked", Some("9990000018"), false, true),
            ("a5", "too-many", None, false, false),
        ]
    );
    let words = format!("{traces:?}");
    for demographic in ["Attison", "Pauline", "1962", "LS1"] {
        assert!(!words.contains(demographic), "{words}");
    }
    let counts = report.sources[0].pds.clone();
    assert_eq!(
        (
            counts.asked,
            counts.linked,
            counts.review,
            counts.too_many,
            counts.failed
        ),
        (5, 3, 1, 1, 0),
        "{counts:?}"
    );
    assert_eq!((counts.deceased, counts.restricted), (1, 1));

    let acute_id = SourceId::parse("acute").expect("id");
    let link = |local: &'static str| {
        let store = store.clone();
        let acute_id = acute_id.clone();
        async move { store.link_for_local(&acute_id, local).await.expect("read") }
    };
    let a1 = link("a1").await.expect("a1 linked");
    assert_eq!(
        (a1.nhs_number.as_str(), a1.method),
        ("9990000034", LinkMethod::PdsTrace)
    );
    assert_eq!(link("a2").await, None, "a low score is never a silent link");
    let review = store.match_candidates().await.expect("read");
    assert!(
        review.iter().any(|c| c.local_id == "a2"
            && c.nhs_number.as_str() == "9990000034"
            && c.kind == "pds-review"),
        "{review:?}"
    );
    assert_eq!(link("a5").await, None);

    let dead = store
        .patient_status(&nhs("9990000026"))
        .await
        .expect("read")
        .expect("held");
    assert!(dead.deceased.is_some() && !dead.restricted);
    assert_eq!(
        link("a3").await.map(|l| l.nhs_number),
        Some(nhs("9990000026"))
    );
    let restricted = store
        .patient_status(&nhs("9990000018"))
        .await
        .expect("read")
        .expect("held");
    assert!(restricted.restricted);
    // The index patient PDS gave for a restricted person holds no location.
    let held = store
        .patient(&nhs("9990000018"))
        .await
        .expect("read")
        .expect("held");
    assert_eq!((held.postcode, held.gp_practice), (None, None));
    // Nothing else in the index carries a status.
    assert_eq!(
        store
            .patient_status(&nhs("9990000034"))
            .await
            .expect("read")
            .map(|s| s.restricted),
        Some(false)
    );
}

/// An audit trail that cannot be written.
#[derive(Debug)]
struct Unwritable;

#[async_trait::async_trait]
impl TraceAudit for Unwritable {
    async fn traced(&self, _: &[TraceRecord]) -> Result<(), mcr_store::StoreError> {
        Err(mcr_store::StoreError::Unavailable("audit down".into()))
    }
}

#[tokio::test]
async fn a_trace_that_cannot_be_audited_links_nothing() {
    let pds = pds().await;
    let acute = serve(vec![pauline("a1")]).await;
    let (_dir, store) = sqlite().await;
    let fed = federation(vec![acute_source(&acute)]);
    let clock = clock();
    let indexer = Indexer::new(fed, store.clone(), clock).with_pds(
        Arc::new(client(&pds)),
        Arc::new(Unwritable) as Arc<dyn TraceAudit>,
    );
    assert!(indexer.sync(true).await.is_err(), "the sync fails");
    let acute_id = SourceId::parse("acute").expect("id");
    assert_eq!(
        store.link_for_local(&acute_id, "a1").await.expect("read"),
        None,
        "no audit, no link"
    );
    assert!(
        store
            .patient(&nhs("9990000034"))
            .await
            .expect("read")
            .is_none(),
        "nor a patient added from PDS"
    );
}

/// A local identity (made while PDS was not asked) is resolved when its record, read again, is
/// traced: its links move to the NHS number PDS gave, audited.
#[tokio::test]
async fn a_pds_trace_resolves_a_local_identity() {
    let pds = pds().await;
    // Pauline, twice at the hospital (two registrations), no NHS number.
    let acute = serve(vec![pauline("a1"), pauline("a1-again")]).await;
    let (_dir, store) = sqlite().await;
    let clock = clock();
    let fed = || federation(vec![acute_source(&acute)]);
    // Without PDS: one local identity, both records at home in it.
    let report = Indexer::new(fed(), store.clone(), clock.clone())
        .sync(true)
        .await
        .expect("sync");
    assert_eq!(report.sources[0].local_identities, 1, "{report:?}");
    let homes = store.local_link_keys().await.expect("read");
    assert_eq!(homes.len(), 2, "{homes:?}");
    let home = homes[0].1;

    // With PDS: the record it was made from is traced, and PDS knows her.
    let audit = Arc::new(Audited::default());
    let report = Indexer::new(fed(), store.clone(), clock)
        .with_pds(Arc::new(client(&pds)), audit.clone() as Arc<dyn TraceAudit>)
        .sync(true)
        .await
        .expect("sync");
    assert_eq!(report.matching.local_identities_resolved, 1, "{report:?}");
    let resolved = store
        .local_person(home)
        .await
        .expect("read")
        .expect("kept")
        .resolved
        .expect("resolved");
    assert_eq!(
        (resolved.nhs_number.as_str(), resolved.method),
        ("9990000034", LinkMethod::PdsTrace)
    );
    let acute_id = SourceId::parse("acute").expect("id");
    for local in ["a1", "a1-again"] {
        let link = store
            .link_for_local(&acute_id, local)
            .await
            .expect("read")
            .expect("linked");
        assert_eq!(link.nhs_number.as_str(), "9990000034", "{local}");
    }
    assert!(store.local_link_keys().await.expect("read").is_empty());
    assert!(store.open_local_persons().await.expect("read").is_empty());
    let trail = store.audit_rows(0, 100).await.expect("audit");
    assert!(
        trail
            .iter()
            .any(|r| r.record.action == "resolve-local-identity"
                && r.record.patient.as_deref() == Some("9990000034")
                && r.record.payload.contains("pds-trace")),
        "{trail:?}"
    );
}

/// A token exchange the platform refuses is no silent skip: every record it would have traced
/// is counted failed, the report says why in the platform's words, each trace is audited as
/// failed, and nothing is linked.
#[tokio::test]
async fn a_refused_exchange_is_a_clear_error_in_the_sync_report() {
    let pds = pds().await;
    let acute = serve(vec![
        pauline("a1"),
        person("a3", "Garton", "Bill", "1936-02-11", "male", "LS1 6AE"),
    ])
    .await;
    let (_dir, store) = sqlite().await;
    let fed = federation(vec![acute_source(&acute)]);
    let clock = clock();
    let audit = Arc::new(Audited::default());
    // Signed with a key the platform was never given.
    let refused = Arc::new(client_signing_with(&pds, "other-key.pem"));
    let report = Indexer::new(fed, store.clone(), clock)
        .with_pds(refused.clone(), audit.clone() as Arc<dyn TraceAudit>)
        .sync(true)
        .await
        .expect("the sync itself completes");
    let counts = &report.sources[0].pds;
    assert_eq!(
        (counts.asked, counts.failed, counts.linked),
        (2, 2, 0),
        "{counts:?}"
    );
    assert_eq!(
        counts.failure.as_deref(),
        Some("the PDS token endpoint refused the signed JWT: 401 public_key error: JWT signature verification failed")
    );
    // The report as `mcr index sync` prints it says so too.
    let printed = serde_json::to_value(&report).expect("JSON");
    assert_eq!(
        printed["sources"][0]["pds"]["failure"],
        json!("the PDS token endpoint refused the signed JWT: 401 public_key error: JWT signature verification failed")
    );
    let outcomes: Vec<&str> = audit
        .0
        .lock()
        .expect("lock")
        .iter()
        .map(|t| t.outcome.code())
        .collect();
    assert_eq!(outcomes, ["failed", "failed"]);
    // The refusal was remembered: one exchange for the whole sync, not one per record.
    assert_eq!(refused.access_tokens().exchanges(), 1);
    assert_eq!(pds.token_requests(), (1, 0));
    assert_eq!(pds.searches(), 0, "PDS is never asked without a token");
    let acute_id = SourceId::parse("acute").expect("id");
    assert_eq!(
        store.link_for_local(&acute_id, "a1").await.expect("read"),
        None
    );
}
