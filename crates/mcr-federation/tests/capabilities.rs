//! Each source asked only for what its CapabilityStatement says it can be searched for: a
//! source configured without resource types is read at `/metadata` and asked for exactly the
//! types listed as searchable by patient; a statement that cannot be read keeps what was read
//! before. Over real HTTP against a simulated social care system, which holds no problems or
//! medications and refuses a search for them.

use mcr_domain::{DataClass, SourceStatus};
use mcr_federation::{
    Federation, FederationConfig, HttpSource, Location, SignedAhead, Source, SourceConfig,
    SourceKind,
};
use std::sync::Arc;
use std::time::Instant;

struct Rig {
    region: mcr_synth::Region,
    handle: mcr_sources::SourceHandle,
    federation: Federation,
}

async fn rig() -> Rig {
    let region = mcr_synth::generate(&mcr_synth::SynthConfig {
        patients: 200,
        ..Default::default()
    });
    let slice = region.source("socialcare").expect("socialcare").clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let handle = mcr_sources::serve_with(
        slice.clone(),
        listener,
        mcr_sources::Behaviour::default(),
        mcr_sources::SourceOptions::default(),
    )
    .await
    .expect("serve");
    let config = SourceConfig {
        id: slice.id.clone(),
        organisation: slice.organisation.clone(),
        base_url: url::Url::parse(&handle.base_url()).expect("url"),
        // Nothing configured: its statement decides.
        resource_types: Vec::new(),
        batch: false,
        kind: SourceKind::FhirR4,
        gp_connect: None,
        deadline_ms: None,
        feed_timeout_secs: None,
        patient_search: Default::default(),
        identifier_search: Default::default(),
    };
    let limits = FederationConfig::default();
    let source: Arc<dyn Source> = Arc::new(HttpSource::new(
        config,
        reqwest::Client::new(),
        limits.clone(),
    ));
    Rig {
        region,
        handle,
        federation: Federation::new(vec![source], limits),
    }
}

/// A view of the social care patient holding the most, with every data class granted.
async fn view(rig: &Rig) -> (mcr_domain::MergedRecord, usize) {
    let sc = rig.region.source("socialcare").expect("socialcare");
    let (nhs, local_id, held) = sc
        .patients()
        .iter()
        .map(|p| {
            (
                rig.region.people[p.person].nhs_number.clone(),
                p.local_id.clone(),
                sc.resource_count(&p.local_id),
            )
        })
        .max_by_key(|(_, _, n)| *n)
        .expect("patients");
    let (grant, policy) = mcr_testkit::grant(&nhs, &DataClass::ALL);
    let filter = grant.filter(
        &policy,
        [],
        mcr_domain::Clock::now(&mcr_domain::SystemClock),
    );
    let location = Location {
        source: sc.id.clone(),
        local_id,
        registered_practice: None,
    };
    let fetches = rig
        .federation
        .fetch_record(&filter, &[location], Instant::now(), SignedAhead::default())
        .await;
    (mcr_federation::merge(&filter, fetches), held)
}

#[tokio::test]
async fn a_source_is_asked_only_for_what_its_capability_statement_lists() {
    let rig = rig().await;
    let source = rig.federation.sources().next().expect("source").clone();
    let held: Vec<&str> = mcr_synth::SourceKind::SocialCare.resource_types().to_vec();
    assert!(!held.contains(&"Condition"), "the premise: {held:?}");

    // Not read yet: every type the grant allows is asked for, and a system that holds no
    // problems refuses that search.
    assert!(rig.federation.asks(&*source, "Condition"));
    let (record, _) = view(&rig).await;
    assert!(
        matches!(record.sources[0].status, SourceStatus::Failed(_)),
        "{:?}",
        record.sources[0]
    );

    // Read: only what it lists, and the record comes whole.
    let now = mcr_domain::Clock::now(&mcr_domain::SystemClock);
    assert_eq!(rig.federation.discover(now).await, 1);
    for t in &held {
        assert!(rig.federation.asks(&*source, t), "{t} is listed");
    }
    assert!(!rig.federation.asks(&*source, "Condition"));
    assert!(!rig.federation.asks(&*source, "MedicationStatement"));
    let (record, held_items) = view(&rig).await;
    assert_eq!(
        record.sources[0].status,
        SourceStatus::Ok,
        "{:?}",
        record.sources[0]
    );
    assert!(held_items > 1, "a patient with a record: {held_items}");
    // How the operators' page says it is asked is how this view asked it: the same types, and
    // the same forms its search cannot find as the view's warning names.
    let asking = rig.federation.asking(&*source);
    let mut asked = asking.types.clone();
    asked.sort();
    let mut listed: Vec<String> = held
        .iter()
        .filter(|t| **t != "Patient")
        .map(|t| (*t).to_owned())
        .collect();
    listed.sort();
    assert_eq!(asked, listed);
    assert!(
        !record.sources[0].unsearchable.is_empty(),
        "a relative source"
    );
    assert_eq!(asking.unsearchable, record.sources[0].unsearchable);
    let discovered = rig.federation.discovered();
    let (_, d) = &discovered[0];
    let (caps, at) = d.capabilities.as_ref().expect("read");
    assert_eq!(*at, now);
    assert!(caps.batch, "the simulated sources declare batch");
    assert!(caps
        .software
        .as_deref()
        .unwrap_or("")
        .contains("simulated source"));
    assert_eq!(d.failures, 0);

    // Down at the next reading: said and counted, and what it said before still used.
    rig.handle.set_behaviour(mcr_sources::Behaviour::failing(
        mcr_sources::Failure::Status(503),
    ));
    assert_eq!(rig.federation.discover(now).await, 0);
    let (_, d) = &rig.federation.discovered()[0];
    assert_eq!(d.failures, 1);
    let (why, _) = d.failure.as_ref().expect("a failure");
    assert!(why.contains("/metadata") && why.contains("503"), "{why}");
    assert!(d.capabilities.is_some(), "kept");
    assert!(!rig.federation.asks(&*source, "Condition"));

    // A server that answers /metadata with something else (as one independent server answers
    // an empty searchset) is said, in words.
    let bundle = serde_json::json!({"resourceType": "Bundle", "type": "searchset", "total": 0});
    let e = mcr_federation::capabilities::Capabilities::read(&bundle).expect_err("no");
    assert!(e.contains("Bundle"), "{e}");
}
