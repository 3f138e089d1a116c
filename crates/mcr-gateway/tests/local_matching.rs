//! Deciding about local identities at the gateway (issue 19): link, not a match and unlink, by
//! the people who may decide about index pairs and within the same scope, each audited with its
//! own action and never with an NHS number; refusals audited too. A real SQLite store, the
//! real audit; sources that are never asked (no record is viewed here).

use async_trait::async_trait;
use mcr_domain::{
    FailureReason, LocalPersonId, OdsCode, OrgKind, Organisation, Principal, Role, SourceId,
    SystemClock,
};
use mcr_federation::{Ask, Digest, Federation, FederationConfig, Fetched, Source, SourceConfig};
use mcr_gateway::{Gateway, GatewayError, LocalVerdict, OrgRegistry, RequestContext};
use mcr_policy::{Grant, PolicyConfig};
use mcr_store::{LinkMethod, LocalCandidateRow, LocalLink, LocalPersonRecord, Store};
use serde_json::Value;
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

/// A source that is never asked: it names the organisation whose records it holds.
#[derive(Debug)]
struct Held(SourceConfig);

#[async_trait]
impl Source for Held {
    fn id(&self) -> &SourceId {
        &self.0.id
    }

    fn config(&self) -> &SourceConfig {
        &self.0
    }

    async fn fetch_patient(
        &self,
        _grant: &Grant,
        _local_id: &str,
        _types: &[&str],
        _digest: &Digest<'_>,
        _ask: Ask,
    ) -> Result<Fetched, FailureReason> {
        panic!("no record is viewed in these tests")
    }

    async fn patient_feed(
        &self,
        _since: Option<&str>,
        _timeout: StdDuration,
        _pages: tokio::sync::mpsc::Sender<Vec<Value>>,
    ) -> Result<(), FailureReason> {
        panic!("no sync in these tests")
    }

    async fn care_event_feed(
        &self,
        _resource_type: &str,
        _from: chrono::NaiveDate,
        _timeout: StdDuration,
        _pages: tokio::sync::mpsc::Sender<Vec<Value>>,
    ) -> Result<(), FailureReason> {
        panic!("no sync in these tests")
    }
}

fn held(id: &str, org: Organisation) -> Arc<dyn Source> {
    Arc::new(Held(SourceConfig {
        id: SourceId::parse(id).expect("source id"),
        organisation: org,
        base_url: format!("https://{id}.invalid/fhir").parse().expect("URL"),
        resource_types: vec!["Patient".into()],
        batch: false,
        kind: Default::default(),
        gp_connect: None,
        deadline_ms: None,
        feed_timeout_secs: None,
        patient_search: mcr_federation::PatientSearch::EveryForm,
        identifier_search: Default::default(),
    }))
}

fn user(id: &str, role: Role, code: &str, kind: OrgKind) -> RequestContext {
    RequestContext {
        principal: Principal {
            user_id: id.into(),
            name: format!("Test {id}"),
            role,
            organisation: org(code, kind),
            role_profile: None,
        },
        correlation_id: format!("c-{id}"),
        system: None,
    }
}

fn acute() -> SourceId {
    SourceId::parse("acute").expect("source id")
}

fn pair(local: &str, person: LocalPersonId) -> LocalCandidateRow {
    LocalCandidateRow {
        source: acute(),
        local_id: local.into(),
        person,
        score: 27.5,
        agreement: "family=exact given=typo birth-date=exact sex=differs postcode=full".into(),
        guard: Some("possible-twin".into()),
        family: "Privatefamily".into(),
        given: "Louis".into(),
        birth_date: chrono::NaiveDate::from_ymd_opt(1990, 4, 2),
        gender: Some("male".into()),
        postcode: Some("SG1 1AA".into()),
        found_at: "2026-11-24T09:00:00Z".parse().expect("time"),
    }
}

struct Region {
    gateway: Gateway,
    store: Arc<dyn Store>,
    person: LocalPersonId,
    _dir: tempfile::TempDir,
}

/// A local identity made from the hospital's record H1, with H2 and H3 waiting beside it and
/// H4 linked to it.
async fn region() -> Region {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("gateway.db").display());
    let store = mcr_store::connect_and_migrate(&url).await.expect("store");
    let at = "2026-11-24T09:00:00Z".parse().expect("time");
    let made = store
        .put_local_persons(&[LocalPersonRecord {
            source: acute(),
            local_id: "H1".into(),
            family: "Privatefamily".into(),
            given: "Louise".into(),
            birth_date: chrono::NaiveDate::from_ymd_opt(1990, 4, 2).expect("date"),
            gender: Some("female".into()),
            postcode: Some("SG1 1AA".into()),
            address: None,
            at,
        }])
        .await
        .expect("local identity");
    let person = made[0].0;
    store
        .replace_local_candidates(&[], &[pair("H2", person), pair("H3", person)])
        .await
        .expect("pairs");
    store
        .upsert_local_links(&[LocalLink {
            person,
            source: acute(),
            local_id: "H4".into(),
            method: LinkMethod::Demographics,
            family: "Privatefamily".into(),
            given: "Louise".into(),
            birth_date: chrono::NaiveDate::from_ymd_opt(1990, 4, 2),
            postcode: None,
            linked_at: at,
        }])
        .await
        .expect("link");
    let federation = Federation::new(
        vec![
            held("gp", org(GP, OrgKind::GpPractice)),
            held("acute", org(ACUTE, OrgKind::AcuteTrust)),
        ],
        FederationConfig::default(),
    );
    let gateway = Gateway::new(
        store.clone(),
        Arc::new(federation),
        Arc::new(SystemClock),
        PolicyConfig::default(),
        OrgRegistry::new([
            org(GP, OrgKind::GpPractice),
            org(ACUTE, OrgKind::AcuteTrust),
        ]),
    );
    Region {
        gateway,
        store,
        person,
        _dir: dir,
    }
}

/// The audit records with `action`, as (outcome, patient, payload).
async fn audited(store: &Arc<dyn Store>, action: &str) -> Vec<(String, Option<String>, String)> {
    store
        .audit_rows(0, 1_000)
        .await
        .expect("audit rows")
        .into_iter()
        .filter(|r| r.record.action == action)
        .map(|r| (r.record.outcome, r.record.patient, r.record.payload))
        .collect()
}

#[tokio::test]
async fn records_staff_link_rule_out_and_unlink_each_audited_with_its_own_action() {
    let r = region().await;
    let records_staff = user("rec.obi", Role::Admin, ACUTE, OrgKind::AcuteTrust);
    let g = &r.gateway;

    let seq = g
        .decide_local_match(&records_staff, &acute(), "H2", r.person, LocalVerdict::Link)
        .await
        .expect("link");
    assert!(seq > 0);
    g.decide_local_match(
        &records_staff,
        &acute(),
        "H3",
        r.person,
        LocalVerdict::NotAMatch,
    )
    .await
    .expect("not a match");
    g.decide_local_match(
        &records_staff,
        &acute(),
        "H4",
        r.person,
        LocalVerdict::Unlink,
    )
    .await
    .expect("unlink");

    let linked: Vec<_> = r
        .store
        .local_links(r.person)
        .await
        .expect("links")
        .into_iter()
        .map(|l| l.local_id)
        .collect();
    assert_eq!(linked, vec!["H1".to_owned(), "H2".to_owned()]);
    assert!(r.store.local_candidates().await.expect("pairs").is_empty());

    let label = r.person.to_string();
    for action in [
        "local-match-link",
        "local-match-not-a-match",
        "local-match-unlink",
    ] {
        let rows = audited(&r.store, action).await;
        assert_eq!(rows.len(), 1, "{action}: {rows:?}");
        let (outcome, patient, payload) = &rows[0];
        assert_eq!(outcome, "recorded", "{action}");
        // Never an NHS number, never the demographics: the record and the local identity.
        assert_eq!(patient, &None, "{action}");
        assert!(payload.contains(&label), "{action}: {payload}");
        assert!(!payload.contains("Privatefamily"), "{action}: {payload}");
    }
    let (_, _, link) = &audited(&r.store, "local-match-link").await[0];
    assert!(link.contains("score 27.5"), "{link}");

    // What cannot be decided says why, and writes nothing.
    let refusals = [
        ("H2", LocalVerdict::Link, "not waiting for review"),
        ("H3", LocalVerdict::NotAMatch, "not waiting for review"),
        ("H4", LocalVerdict::Unlink, "not linked to local identity"),
        ("H1", LocalVerdict::Unlink, "was made from"),
    ];
    for (local, verdict, why) in refusals {
        match g
            .decide_local_match(&records_staff, &acute(), local, r.person, verdict)
            .await
        {
            Err(GatewayError::Invalid(m)) => assert!(m.contains(why), "{local}: {m}"),
            other => panic!("{local} {verdict:?}: {other:?}"),
        }
    }
    assert_eq!(r.store.local_decisions().await.expect("read").len(), 3);
}

#[tokio::test]
async fn only_reviewers_may_decide_and_records_staff_only_their_own_records() {
    let r = region().await;
    let g = &r.gateway;
    let clinician = user("dr.ade", Role::Clinician, ACUTE, OrgKind::AcuteTrust);
    let gp_records = user("rec.murphy", Role::Admin, GP, OrgKind::GpPractice);
    for ctx in [&clinician, &gp_records] {
        let refused = g
            .decide_local_match(ctx, &acute(), "H2", r.person, LocalVerdict::Link)
            .await;
        assert!(
            matches!(refused, Err(GatewayError::Forbidden(_))),
            "{refused:?}"
        );
    }
    let denied = audited(&r.store, "local-match-link").await;
    assert_eq!(denied.len(), 2, "{denied:?}");
    assert!(denied.iter().all(|(o, p, _)| o == "deny" && p.is_none()));
    assert!(r.store.local_decisions().await.expect("read").is_empty());
    assert_eq!(r.store.local_candidates().await.expect("pairs").len(), 2);

    // A privacy officer decides across the region.
    let privacy = user("po.shah", Role::PrivacyOfficer, GP, OrgKind::GpPractice);
    g.decide_local_match(&privacy, &acute(), "H2", r.person, LocalVerdict::Link)
        .await
        .expect("a privacy officer links");

    // The local identity's page: the hospital's records staff see its records; a GP
    // practice's see none of them, counted; a clinician may not look.
    let acute_records = user("rec.obi", Role::Admin, ACUTE, OrgKind::AcuteTrust);
    let view = g
        .local_identity(&acute_records, r.person)
        .await
        .expect("read");
    let shown: Vec<_> = view
        .records
        .iter()
        .map(|x| (x.link.local_id.as_str(), x.origin))
        .collect();
    assert_eq!(shown, vec![("H1", true), ("H2", false), ("H4", false)]);
    assert_eq!(view.others_not_shown, 0);
    let view = g.local_identity(&gp_records, r.person).await.expect("read");
    assert!(view.records.is_empty());
    assert_eq!(view.others_not_shown, 3);
    assert!(matches!(
        g.local_identity(&clinician, r.person).await,
        Err(GatewayError::Forbidden(_))
    ));
    let reads = audited(&r.store, "read-local-identity").await;
    assert_eq!(
        reads.iter().map(|(o, _, _)| o.as_str()).collect::<Vec<_>>(),
        vec!["permit", "permit", "deny"]
    );
}
