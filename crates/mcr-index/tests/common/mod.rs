//! The set-up the index's integration tests share: `Patient`s as a source holds them, FHIR
//! servers of them on real HTTP, sources configured over those, a fresh SQLite store, a fixed
//! clock. Each test file says `mod common;` and takes what it needs.

// Each test file is its own binary and uses only some of these helpers, so in each binary the
// rest would be reported as dead code. (An `#[expect]` would instead fail in a binary that
// happens to use them all.)
#![allow(dead_code)]

use axum::routing::get;
use axum::Json;
use mcr_domain::{FixedClock, NhsNumber, OdsCode, OrgKind, Organisation, SourceId};
use mcr_federation::{Federation, FederationConfig, HttpSource, Source, SourceConfig};
use mcr_index::{SourceSyncReport, SyncReport};
use mcr_store::Store;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// The time every test's index runs at.
pub fn clock() -> Arc<FixedClock> {
    Arc::new(FixedClock::new(
        "2026-11-24T09:00:00Z".parse().expect("test setup"),
    ))
}

/// The `i`-th valid NHS number of a test range (some nine digits have no check digit).
pub fn nhs(i: u8) -> NhsNumber {
    (0u8..)
        .filter_map(|n| {
            NhsNumber::from_first_nine([9, 9, 9, 1, 0, 0, n / 100, n / 10 % 10, n % 10])
        })
        .nth(usize::from(i))
        .expect("test setup")
}

/// A `Patient` as a source holds it: `name` is (family, given), `dob` a FHIR date.
pub fn person(
    id: &str,
    nhs: Option<&NhsNumber>,
    name: (&str, &str),
    dob: &str,
    sex: &str,
    postcode: &str,
) -> Value {
    let mut p = json!({
        "resourceType": "Patient", "id": id,
        "meta": {"lastUpdated": "2026-11-01T10:00:00Z"},
        "name": [{"use": "official", "family": name.0, "given": [name.1]}],
        "birthDate": dob, "gender": sex,
        "address": [{"postalCode": postcode}]
    });
    if let Some(n) = nhs {
        p["identifier"] = json!([{"system": NhsNumber::SYSTEM, "value": n.as_str()}]);
    }
    p
}

/// Serves `app` on a free local port; its base URL.
pub async fn listen(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("test setup");
    let addr = listener.local_addr().expect("test setup");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("test setup") });
    format!("http://{addr}")
}

/// A FHIR server whose `Patient`s the test may change between syncs, all on one page.
pub async fn serve_changing(patients: Arc<Mutex<Vec<Value>>>) -> String {
    listen(axum::Router::new().route(
        "/Patient",
        get(move || {
            let held = patients.lock().expect("test setup").clone();
            async move {
                Json(json!({"resourceType": "Bundle", "type": "searchset",
                    "total": held.len(),
                    "entry": held.into_iter().map(|p| json!({"resource": p})).collect::<Vec<_>>()}))
            }
        }),
    ))
    .await
}

/// A FHIR server holding `patients`, all on one page.
pub async fn serve(patients: Vec<Value>) -> String {
    let bundle = Arc::new(json!({"resourceType": "Bundle", "type": "searchset",
        "total": patients.len(),
        "entry": patients.into_iter().map(|p| json!({"resource": p})).collect::<Vec<_>>()}));
    listen(axum::Router::new().route(
        "/Patient",
        get(move || {
            let bundle = Arc::clone(&bundle);
            async move { Json((*bundle).clone()) }
        }),
    ))
    .await
}

/// A member organisation, named by its code.
pub fn org(code: &str, kind: OrgKind) -> Organisation {
    Organisation {
        code: OdsCode::parse(code).expect("test setup"),
        name: code.into(),
        kind,
        member: true,
        suspended: false,
    }
}

/// A FHIR R4 source at `base` serving `types`.
pub fn http_source(id: &str, org: Organisation, base: &str, types: &[&str]) -> Arc<dyn Source> {
    let cfg = SourceConfig {
        id: SourceId::parse(id).expect("test setup"),
        organisation: org,
        base_url: base.parse().expect("test setup"),
        resource_types: types.iter().map(|t| (*t).to_owned()).collect(),
        batch: false,
        kind: mcr_federation::SourceKind::FhirR4,
        gp_connect: None,
        deadline_ms: None,
        feed_timeout_secs: None,
        patient_search: Default::default(),
        identifier_search: Default::default(),
    };
    Arc::new(HttpSource::new(
        cfg,
        reqwest::Client::new(),
        FederationConfig::default(),
    ))
}

/// A source of `Patient`s only, at `base`, for the organisation `code`.
pub fn source(id: &str, code: &str, kind: OrgKind, base: &str) -> Arc<dyn Source> {
    http_source(id, org(code, kind), base, &["Patient"])
}

/// A federation of `sources`, with the default settings.
pub fn federation(sources: Vec<Arc<dyn Source>>) -> Arc<Federation> {
    Arc::new(Federation::new(sources, FederationConfig::default()))
}

/// A fresh, migrated SQLite store; it lives as long as the directory.
pub async fn sqlite() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("test setup");
    let store = mcr_store::connect_and_migrate(&mcr_testkit::sqlite_url(dir.path()))
        .await
        .expect("test setup");
    (dir, store)
}

/// A sync's report, after checking that no source failed.
pub fn no_source_failed(report: SyncReport) -> SyncReport {
    assert!(
        report.sources.iter().all(|s| s.failed.is_none()),
        "{report:?}"
    );
    report
}

/// The report of one source in a sync.
pub fn of<'a>(report: &'a SyncReport, source: &str) -> &'a SourceSyncReport {
    report
        .sources
        .iter()
        .find(|s| s.source == source)
        .expect("reported")
}

/// Records staff say the acute trust's record `local` is not the patient `nhs`: the decision
/// and its audit record, written in one transaction as the gateway writes them.
pub async fn not_a_match(store: &dyn Store, local: &str, nhs: &NhsNumber) {
    let decision = mcr_store::MatchDecisionRow {
        source: SourceId::parse("acute").expect("id"),
        local_id: local.into(),
        nhs_number: nhs.clone(),
        decision: "not-a-match".into(),
        decided_by: "rec.jones".into(),
        decided_at: "2026-11-24T09:00:00Z".parse().expect("time"),
    };
    let audit = mcr_store::AuditAppend {
        role_profile_id: None,
        at: decision.decided_at,
        correlation_id: "c1".into(),
        user_id: "rec.jones".into(),
        org_code: "RWH".into(),
        patient: Some(nhs.as_str().into()),
        action: "match-not-a-match".into(),
        outcome: "recorded".into(),
        payload: "{}".into(),
    };
    store
        .decide_match(&decision, None, &audit, &|_, _, _| "h".into())
        .await
        .expect("decide");
}
