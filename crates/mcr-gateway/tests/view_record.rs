//! The record view use case at the gateway, where HTTP adds nothing: a real SQLite store and
//! the real policy, audit and merge, with scripted sources in place of the source systems (the
//! same resources over HTTP are tested end to end in `mcr`'s `e2e::record_view`). What only the
//! gateway can show: a refused view asks no source at all, a permitted one asks each located
//! source once, and what each source sent (or why it sent nothing) is in the audit record as
//! the view counted it.

use async_trait::async_trait;
use chrono::Duration;
use mcr_domain::{
    Clock, FailureReason, NhsNumber, OdsCode, OrgKind, Organisation, Principal, Role, SourceId,
    SystemClock,
};
use mcr_federation::{
    Ask, Digest, Federation, FederationConfig, Fetched, Received, Source, SourceConfig,
};
use mcr_gateway::{Arrival, Gateway, OrgRegistry, RequestContext, StreamOutcome, ViewOutcome};
use mcr_policy::{ConsentModel, Grant, PolicyConfig};
use mcr_store::{CareEventRow, IndexedPatient, LinkMethod, SourceLink, Store};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

const GP: &str = "A81001";
const ACUTE: &str = "RWH";

fn org(code: &str, kind: OrgKind) -> Organisation {
    Organisation {
        code: OdsCode::parse(code).expect("ODS code"),
        name: format!("Test {code}"),
        kind,
        member: true,
        suspended: false,
    }
}

/// A source system that answers from a script: the resources it holds for its patient, or a
/// failure, after a delay if it has one. It counts the times it is asked.
#[derive(Debug)]
struct Scripted {
    config: SourceConfig,
    answer: Result<Vec<Value>, FailureReason>,
    asked: AtomicUsize,
    delay: Option<StdDuration>,
}

impl Scripted {
    fn new(id: &str, org: Organisation, answer: Result<Vec<Value>, FailureReason>) -> Arc<Self> {
        Self::with(id, org, answer, &["Patient", "Condition"], None)
    }

    /// A source that may be asked for `types` only, answering after `delay`.
    fn with(
        id: &str,
        org: Organisation,
        answer: Result<Vec<Value>, FailureReason>,
        types: &[&str],
        delay: Option<StdDuration>,
    ) -> Arc<Self> {
        Arc::new(Self {
            delay,
            config: SourceConfig {
                id: SourceId::parse(id).expect("source id"),
                organisation: org,
                base_url: format!("https://{id}.invalid/fhir").parse().expect("URL"),
                resource_types: types.iter().map(|t| (*t).to_owned()).collect(),
                batch: false,
                kind: Default::default(),
                gp_connect: None,
                deadline_ms: None,
                feed_timeout_secs: None,
                // It answers with the patient's whole scripted record, whatever is asked.
                patient_search: mcr_federation::PatientSearch::EveryForm,
                identifier_search: Default::default(),
            },
            answer,
            asked: AtomicUsize::new(0),
        })
    }

    fn asked(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Source for Scripted {
    fn id(&self) -> &SourceId {
        &self.config.id
    }

    fn config(&self) -> &SourceConfig {
        &self.config
    }

    async fn fetch_patient(
        &self,
        _grant: &Grant,
        _local_id: &str,
        _types: &[&str],
        digest: &Digest<'_>,
        _ask: Ask,
    ) -> Result<Fetched, FailureReason> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        let resources = self.answer.clone()?;
        let mut digested = Vec::new();
        for r in resources {
            let raw = serde_json::value::RawValue::from_string(r.to_string()).expect("JSON");
            let doc = mcr_fhir::Doc::parse(raw.get()).expect("a resource");
            digested.push(digest(Received {
                doc: &doc,
                raw: &raw,
            }));
        }
        Ok(Fetched {
            resources: digested,
            source_ms: None,
            warnings: Vec::new(),
            cut_short: None,
        })
    }

    /// These tests write the index themselves; no sync reads the feeds.
    async fn patient_feed(
        &self,
        _since: Option<&str>,
        _timeout: StdDuration,
        _pages: tokio::sync::mpsc::Sender<Vec<Value>>,
    ) -> Result<(), FailureReason> {
        Err(FailureReason::Unreachable {
            detail: "a scripted source has no feed".into(),
        })
    }

    async fn care_event_feed(
        &self,
        _resource_type: &str,
        _from: chrono::NaiveDate,
        _timeout: StdDuration,
        _pages: tokio::sync::mpsc::Sender<Vec<Value>>,
    ) -> Result<(), FailureReason> {
        Err(FailureReason::Unreachable {
            detail: "a scripted source has no feed".into(),
        })
    }
}

/// What a source holds for its patient `local`: the Patient and two problems.
fn record_of(local: &str, nhs: &NhsNumber) -> Vec<Value> {
    let condition = |id: &str, text: &str| {
        json!({
            "resourceType": "Condition", "id": id,
            "subject": {"reference": format!("Patient/{local}")},
            "code": {"text": text},
            "recordedDate": "2024-03-01"
        })
    };
    vec![
        json!({
            "resourceType": "Patient", "id": local,
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs.as_str()}],
            "name": [{"family": "Scripted", "given": ["Pat"]}],
            "birthDate": "1970-01-01"
        }),
        condition("c1", "Asthma"),
        condition("c2", "Hypertension"),
    ]
}

struct Region {
    gateway: Gateway,
    store: Arc<dyn Store>,
    nhs: NhsNumber,
    _dir: tempfile::TempDir,
}

/// A gateway on a fresh SQLite store, under legal basis (no ask), whose index holds one
/// patient at each of `sources` (local id `p1`), registered with the GP practice.
async fn region(sources: &[Arc<Scripted>]) -> Region {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("gateway.db").display());
    let store = mcr_store::connect_and_migrate(&url).await.expect("store");
    let nhs = NhsNumber::parse("9434765919").expect("NHS number");
    let now = SystemClock.now();
    store
        .upsert_patients(&[IndexedPatient {
            nhs_number: nhs.clone(),
            family: "SCRIPTED".into(),
            given: "PAT".into(),
            birth_date: chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("date"),
            gender: None,
            postcode: None,
            address: None,
            gp_practice: Some(GP.into()),
            updated_at: now,
        }])
        .await
        .expect("patient");
    let links: Vec<SourceLink> = sources
        .iter()
        .map(|s| SourceLink {
            nhs_number: nhs.clone(),
            source: s.config.id.clone(),
            local_id: "p1".into(),
            method: LinkMethod::NhsNumber,
            family: "SCRIPTED".into(),
            given: "PAT".into(),
            birth_date: None,
            postcode: None,
            linked_at: now,
        })
        .collect();
    store.upsert_links(&links).await.expect("links");
    store
        .upsert_care_events(&[CareEventRow {
            nhs_number: nhs.clone(),
            org_code: GP.into(),
            kind: "gp-registration".into(),
            ward: None,
            team: None,
            service: None,
            start: now - Duration::days(365),
            end: None,
            origin: "gp-registration".into(),
            source_event_id: "reg-1".into(),
            received_at: now,
        }])
        .await
        .expect("registration");
    let federation = Federation::new(
        sources
            .iter()
            .map(|s| Arc::clone(s) as Arc<dyn Source>)
            .collect(),
        FederationConfig::default(),
    );
    let policy = PolicyConfig {
        consent_model: ConsentModel::LegalBasis,
        ..PolicyConfig::default()
    };
    let gateway = Gateway::new(
        store.clone(),
        Arc::new(federation),
        Arc::new(SystemClock),
        policy,
        OrgRegistry::new([
            org(GP, OrgKind::GpPractice),
            org(ACUTE, OrgKind::AcuteTrust),
        ]),
    );
    Region {
        gateway,
        store,
        nhs,
        _dir: dir,
    }
}

fn clinician_at(code: &str, kind: OrgKind, correlation: &str) -> RequestContext {
    RequestContext {
        principal: Principal {
            user_id: format!("doctor.{}", code.to_lowercase()),
            name: "Dr Test".into(),
            role: Role::Clinician,
            organisation: org(code, kind),
            role_profile: None,
        },
        correlation_id: correlation.into(),
        system: None,
    }
}

/// The audit record of the view with `correlation`, its payload read.
async fn audited(store: &Arc<dyn Store>, correlation: &str) -> (String, Value) {
    let rows = store.audit_rows(0, 1_000).await.expect("audit rows");
    let row = rows
        .into_iter()
        .find(|r| r.record.correlation_id == correlation && r.record.action == "view-record")
        .unwrap_or_else(|| panic!("no audit record of the view {correlation}"));
    let payload = serde_json::from_str(&row.record.payload).expect("payload JSON");
    (row.record.outcome, payload)
}

#[tokio::test]
async fn a_refused_view_is_audited_and_asks_no_source() {
    let gp = Scripted::new("gp", org(GP, OrgKind::GpPractice), Ok(Vec::new()));
    let r = region(std::slice::from_ref(&gp)).await;
    let ctx = clinician_at(ACUTE, OrgKind::AcuteTrust, "refused-1");

    let outcome = r.gateway.view_record(&ctx, &r.nhs).await.expect("view");
    let ViewOutcome::NotPermitted(decision) = outcome else {
        panic!("a clinician with no relationship was let in");
    };
    assert_eq!(gp.asked(), 0, "a source was asked before a grant");
    let (outcome, payload) = audited(&r.store, "refused-1").await;
    assert_eq!(outcome, decision.code());
    assert_eq!(payload["patient"], r.nhs.as_str());
}

#[tokio::test]
async fn a_permitted_view_asks_each_source_once_and_audits_what_each_sent() {
    let nhs = NhsNumber::parse("9434765919").expect("NHS number");
    let gp = Scripted::new(
        "gp",
        org(GP, OrgKind::GpPractice),
        Ok(record_of("p1", &nhs)),
    );
    let r = region(std::slice::from_ref(&gp)).await;
    let ctx = clinician_at(GP, OrgKind::GpPractice, "permitted-1");

    let ViewOutcome::Record(pending) = r.gateway.view_record(&ctx, &r.nhs).await.expect("view")
    else {
        panic!("the patient's registered practice was refused");
    };
    let view = pending.committed().await.expect("audit committed");
    assert_eq!(gp.asked(), 1);
    assert_eq!(view.record.item_count(), 2, "{:#?}", view.record.sections);
    assert_eq!(view.record.failed_sources().count(), 0);

    let (outcome, payload) = audited(&r.store, "permitted-1").await;
    assert_eq!(outcome, "permit");
    assert_eq!(
        payload["sources"],
        json!([{"source": "gp", "org_code": GP, "status": "ok", "items": 2, "withheld": 0}])
    );
}

/// A source whose search finds only relative references, with no CapabilityStatement read:
/// the forms it cannot be asked for are listed in the view's audit record, as the view says
/// them.
#[tokio::test]
async fn the_forms_a_sources_search_cannot_find_are_audited() {
    let nhs = NhsNumber::parse("9434765919").expect("NHS number");
    let mut gp = Scripted::new(
        "gp",
        org(GP, OrgKind::GpPractice),
        Ok(record_of("p1", &nhs)),
    );
    Arc::get_mut(&mut gp)
        .expect("not shared yet")
        .config
        .patient_search = mcr_federation::PatientSearch::Relative;
    let r = region(std::slice::from_ref(&gp)).await;
    let ctx = clinician_at(GP, OrgKind::GpPractice, "relative-1");
    let ViewOutcome::Record(pending) = r.gateway.view_record(&ctx, &r.nhs).await.expect("view")
    else {
        panic!("the patient's registered practice was refused");
    };
    let view = pending.committed().await.expect("audit committed");
    assert_eq!(
        view.record.sources[0].unsearchable,
        [
            mcr_domain::UnsearchableForm::Identifier,
            mcr_domain::UnsearchableForm::OtherServer,
            mcr_domain::UnsearchableForm::Contained
        ]
    );
    let (_, payload) = audited(&r.store, "relative-1").await;
    assert_eq!(
        payload["sources"],
        json!([{"source": "gp", "org_code": GP, "status": "ok", "items": 2, "withheld": 0,
                "unsearchable": ["identifier", "other-server", "contained"]}])
    );
}

#[tokio::test]
async fn a_source_that_fails_is_named_and_audited_and_the_rest_are_shown() {
    let nhs = NhsNumber::parse("9434765919").expect("NHS number");
    let gp = Scripted::new(
        "gp",
        org(GP, OrgKind::GpPractice),
        Ok(record_of("p1", &nhs)),
    );
    let acute = Scripted::new(
        "acute",
        org(ACUTE, OrgKind::AcuteTrust),
        Err(FailureReason::Unreachable {
            detail: "connection refused".into(),
        }),
    );
    let r = region(&[gp.clone(), acute.clone()]).await;
    let ctx = clinician_at(GP, OrgKind::GpPractice, "one-down-1");

    let ViewOutcome::Record(pending) = r.gateway.view_record(&ctx, &r.nhs).await.expect("view")
    else {
        panic!("the patient's registered practice was refused");
    };
    let view = pending.committed().await.expect("audit committed");
    assert_eq!((gp.asked(), acute.asked()), (1, 1));
    assert_eq!(view.record.item_count(), 2);
    let failed: Vec<&str> = view
        .record
        .failed_sources()
        .map(|s| s.source.as_str())
        .collect();
    assert_eq!(failed, ["acute"]);

    let (_, payload) = audited(&r.store, "one-down-1").await;
    let mut statuses: Vec<(&str, &str)> = payload["sources"]
        .as_array()
        .expect("sources audited")
        .iter()
        .map(|s| {
            (
                s["source"].as_str().unwrap_or_default(),
                s["status"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [("acute", "unreachable"), ("gp", "ok")]);
}

/// The record page's use case: the decision is audited before anything is handed over; a
/// section comes as soon as every source that may hold it has answered, before a slow source
/// that cannot hold it; the whole view last, with what each source gave audited after it.
#[tokio::test]
async fn a_streamed_view_hands_over_each_section_once_its_sources_have_answered() {
    let nhs = NhsNumber::parse("9434765919").expect("NHS number");
    let slow_by = StdDuration::from_millis(800);
    let gp = Scripted::new(
        "gp",
        org(GP, OrgKind::GpPractice),
        Ok(record_of("p1", &nhs)),
    );
    let allergy = json!({
        "resourceType": "AllergyIntolerance", "id": "a1",
        "patient": {"reference": "Patient/p1"},
        "code": {"text": "Penicillin"},
        "recordedDate": "2023-01-01"
    });
    let acute = Scripted::with(
        "acute",
        org(ACUTE, OrgKind::AcuteTrust),
        Ok(vec![allergy]),
        &["Patient", "AllergyIntolerance"],
        Some(slow_by),
    );
    let r = region(&[gp.clone(), acute.clone()]).await;
    let ctx = clinician_at(GP, OrgKind::GpPractice, "streamed-1");

    let started = std::time::Instant::now();
    let StreamOutcome::Opened(mut view) = r
        .gateway
        .view_record_streamed(&ctx, &r.nhs)
        .await
        .expect("view")
    else {
        panic!("the patient's registered practice was refused");
    };
    assert!(
        started.elapsed() < slow_by,
        "opened before the slow source answered"
    );
    // Audited before anything about the patient is handed over.
    let (outcome, payload) = audited(&r.store, "streamed-1").await;
    assert_eq!(outcome, "permit");
    assert_eq!(
        payload["sources"],
        Value::Null,
        "the decision, not yet the answers"
    );
    let mut asking = view.opening.asking.clone();
    asking.sort_unstable();
    assert_eq!(asking, ["Test A81001", "Test RWH"], "who is being asked");
    assert_eq!(
        view.opening.patient.as_ref().map(|p| p.family.as_str()),
        Some("SCRIPTED")
    );

    let mut problems_at = None;
    let mut allergies_at = None;
    let mut complete = None;
    while let Some(arrival) = view.arrivals.recv().await {
        match arrival {
            Arrival::Sections { sections, record } => {
                if sections.contains(&mcr_domain::Section::Problems) {
                    assert_eq!(record.items(mcr_domain::Section::Problems).len(), 2);
                    problems_at = Some(started.elapsed());
                }
                if sections.contains(&mcr_domain::Section::Allergies) {
                    assert_eq!(record.items(mcr_domain::Section::Allergies).len(), 1);
                    allergies_at = Some(started.elapsed());
                }
            }
            Arrival::Complete { view, audited } => {
                audited.expect("the answers audited");
                complete = Some(view);
            }
        }
    }
    let problems_at = problems_at.expect("the problems were handed over");
    let allergies_at = allergies_at.expect("the allergies were handed over");
    assert!(
        problems_at < slow_by,
        "the GP's problems waited for the slow hospital: {problems_at:?}"
    );
    assert!(allergies_at >= slow_by, "{allergies_at:?}");
    let view = complete.expect("the whole view comes last");
    assert_eq!(
        view.record.item_count(),
        0,
        "every item was handed over with its section, and is not held again"
    );
    let counted: usize = view.record.sources.iter().map(|s| s.items).sum();
    assert_eq!(counted, 3, "but every item is counted");
    assert_eq!((gp.asked(), acute.asked()), (1, 1));

    let rows = r.store.audit_rows(0, 1_000).await.expect("audit rows");
    let answered = rows
        .iter()
        .find(|row| {
            row.record.correlation_id == "streamed-1" && row.record.action == "view-record-answered"
        })
        .expect("what each source gave is audited");
    let payload: Value = serde_json::from_str(&answered.record.payload).expect("payload");
    let mut sources = payload["sources"].as_array().expect("sources").clone();
    sources.sort_by_key(|s| s["source"].to_string());
    assert_eq!(
        sources,
        [
            json!({"source": "acute", "org_code": ACUTE, "status": "ok", "items": 1, "withheld": 0}),
            json!({"source": "gp", "org_code": GP, "status": "ok", "items": 2, "withheld": 0})
        ]
    );
}

/// The patient's own choice online, at the gateway: only at P9, whatever the web let through;
/// below it nothing changes and the refusal is audited. At P9 it takes effect at once: the
/// next view is refused as opted out, and opting back in lets it through again.
#[tokio::test]
async fn only_a_patient_proved_to_p9_changes_their_own_choice() {
    use mcr_gateway::{ChoiceMade, OptOutKind, Sharing, SignedInPatient};
    let gp = Scripted::new("gp", org(GP, OrgKind::GpPractice), Ok(Vec::new()));
    let r = region(std::slice::from_ref(&gp)).await;
    let at = |level, correlation| SignedInPatient {
        nhs: &r.nhs,
        proofing_level: level,
        correlation_id: correlation,
    };

    let refused = r
        .gateway
        .patient_chooses(&at("P5", "choice-p5"), OptOutKind::OptOut)
        .await
        .expect_err("below P9");
    assert!(refused.to_string().contains("level P5"), "{refused}");
    assert_eq!(
        r.gateway.patient_sharing(&r.nhs).await.expect("read"),
        Sharing::Shared
    );
    let rows = r.store.audit_rows(0, 1_000).await.expect("audit rows");
    let denied = rows
        .iter()
        .find(|row| row.record.correlation_id == "choice-p5")
        .expect("the refusal is audited");
    assert_eq!(denied.record.outcome, "deny");
    assert_eq!(denied.record.action, "record-objection");

    let made = r
        .gateway
        .patient_chooses(&at("P9", "choice-p9"), OptOutKind::OptOut)
        .await
        .expect("P9");
    assert!(matches!(made, ChoiceMade::Recorded(_)), "{made:?}");
    assert_eq!(
        r.gateway.patient_sharing(&r.nhs).await.expect("read"),
        Sharing::OptedOut
    );
    let gp_doctor = clinician_at(GP, OrgKind::GpPractice, "after-opt-out");
    let outcome = r
        .gateway
        .view_record(&gp_doctor, &r.nhs)
        .await
        .expect("view");
    let ViewOutcome::NotPermitted(decision) = outcome else {
        panic!("an opted-out patient's record was shown");
    };
    assert_eq!(decision.code(), "deny");
    assert_eq!(gp.asked(), 0, "no source asked for an opted-out patient");
    assert_eq!(
        r.gateway
            .patient_chooses(&at("P9", "again"), OptOutKind::OptOut)
            .await
            .expect("again"),
        ChoiceMade::AlreadySo
    );

    r.gateway
        .patient_chooses(&at("P9", "back-in"), OptOutKind::OptIn)
        .await
        .expect("back in");
    let outcome = r
        .gateway
        .view_record(
            &clinician_at(GP, OrgKind::GpPractice, "after-opt-in"),
            &r.nhs,
        )
        .await
        .expect("view");
    assert!(matches!(outcome, ViewOutcome::Record(_)), "{outcome:?}");
}

/// A source that labels its Patient restricted (`meta.security` R) when asked, though the
/// index did not hold the patient so: the decision is made again with the restriction before
/// anything is shown, so a role the region does not name is refused, audited and flagged for
/// review; the index now holds the restriction, so the next view is refused before any source
/// is asked; a role the region names still views.
#[tokio::test]
async fn a_restriction_a_source_labels_when_asked_is_decided_on_before_anything_is_shown() {
    let nhs = NhsNumber::parse("9434765919").expect("NHS number");
    let mut resources = record_of("p1", &nhs);
    resources[0]["meta"] = json!({"security": [{
        "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
        "code": "R"
    }]});
    let gp = Scripted::new("gp", org(GP, OrgKind::GpPractice), Ok(resources));
    let r = region(std::slice::from_ref(&gp)).await;
    let pharmacist = |correlation: &str| {
        let mut ctx = clinician_at(GP, OrgKind::GpPractice, correlation);
        ctx.principal.role = Role::Pharmacist;
        ctx
    };

    let outcome = r
        .gateway
        .view_record(&pharmacist("labelled-1"), &r.nhs)
        .await
        .expect("view");
    let ViewOutcome::NotPermitted(decision) = outcome else {
        panic!("a pharmacist was shown a record its source labels restricted");
    };
    let mcr_policy::Decision::Deny(denial) = &decision else {
        panic!("not a denial: {decision:?}");
    };
    assert_eq!(denial.code, mcr_policy::DenyCode::RestrictedRecord);
    assert_eq!(
        gp.asked(),
        1,
        "the first decision (unrestricted) let the fetch go"
    );
    let (outcome, payload) = audited(&r.store, "labelled-1").await;
    assert_eq!(outcome, "deny");
    assert_eq!(payload["basis"], "restricted-record", "{payload}");
    let rows = r.store.audit_rows(0, 1_000).await.expect("audit rows");
    assert!(
        rows.iter()
            .any(|row| row.record.correlation_id == "labelled-1"
                && row.record.action == "anomaly-flag"
                && row.record.payload.contains("restricted-record")),
        "the refusal was not flagged for review"
    );
    let status = r
        .store
        .patient_status(&r.nhs)
        .await
        .expect("status")
        .expect("the index was told");
    assert!(status.restricted);
    assert_eq!(status.said_by, "source-label");

    let outcome = r
        .gateway
        .view_record(&pharmacist("labelled-2"), &r.nhs)
        .await
        .expect("view");
    assert!(matches!(outcome, ViewOutcome::NotPermitted(_)));
    assert_eq!(gp.asked(), 1, "the next refusal asked a source");

    let ctx = clinician_at(GP, OrgKind::GpPractice, "labelled-3");
    let ViewOutcome::Record(pending) = r.gateway.view_record(&ctx, &r.nhs).await.expect("view")
    else {
        panic!("a doctor was refused a restricted patient's record");
    };
    let view = pending.committed().await.expect("audit committed");
    assert_eq!(view.record.item_count(), 2);
    assert_eq!(gp.asked(), 2);
}
