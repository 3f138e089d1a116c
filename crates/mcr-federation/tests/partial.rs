//! A large record from a slow source: what arrived by the deadline is shown, marked partial,
//! never all-or-nothing; a source's own deadline overrides the federation's. Over real HTTP
//! against a simulated source that takes its time over every page.

use mcr_domain::{DataClass, FailureReason, SourceStatus};
use mcr_federation::{
    Federation, FederationConfig, HttpSource, Location, SignedAhead, Source, SourceConfig,
    SourceKind,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Milliseconds the source takes over every request (each page is one).
const PAGE_MS: u64 = 150;

struct Rig {
    region: mcr_synth::Region,
    _handle: mcr_sources::SourceHandle,
    base_url: url::Url,
}

async fn rig() -> Rig {
    let region = mcr_synth::generate(&mcr_synth::SynthConfig {
        patients: 300,
        ..Default::default()
    });
    let slice = region.source("acute").expect("acute").clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let handle = mcr_sources::serve_with(
        slice,
        listener,
        mcr_sources::Behaviour::with_latency(PAGE_MS, PAGE_MS),
        mcr_sources::SourceOptions::default(),
    )
    .await
    .expect("serve");
    let base_url = url::Url::parse(&handle.base_url()).expect("url");
    Rig {
        region,
        _handle: handle,
        base_url,
    }
}

/// The acute trust's patient with the most resources, and how many it holds.
fn largest(rig: &Rig) -> (mcr_domain::NhsNumber, String, usize) {
    let acute = rig.region.source("acute").expect("acute");
    acute
        .patients()
        .iter()
        .map(|p| {
            let nhs = rig.region.people[p.person].nhs_number.clone();
            (nhs, p.local_id.clone(), acute.resource_count(&p.local_id))
        })
        .max_by_key(|(_, _, n)| *n)
        .expect("patients")
}

/// The acute source asked with `deadline`, `page_size` resources to a page (each page takes
/// PAGE_MS), and the source's own deadline if given.
fn federation(
    rig: &Rig,
    deadline: Duration,
    page_size: u32,
    own_deadline_ms: Option<u64>,
) -> Federation {
    let acute = rig.region.source("acute").expect("acute");
    let limits = FederationConfig {
        deadline,
        page_size,
        max_pages: 1000,
        ..FederationConfig::default()
    };
    let config = SourceConfig {
        id: acute.id.clone(),
        organisation: acute.organisation.clone(),
        base_url: rig.base_url.clone(),
        resource_types: mcr_synth::SourceKind::Acute
            .resource_types()
            .iter()
            .map(|t| (*t).to_owned())
            .collect(),
        batch: false,
        kind: SourceKind::FhirR4,
        gp_connect: None,
        deadline_ms: own_deadline_ms,
        feed_timeout_secs: None,
        patient_search: Default::default(),
        identifier_search: Default::default(),
    };
    let source: Arc<dyn Source> = Arc::new(HttpSource::new(
        config,
        reqwest::Client::new(),
        limits.clone(),
    ));
    Federation::new(vec![source], limits)
}

async fn view(rig: &Rig, federation: &Federation) -> (mcr_domain::MergedRecord, Duration) {
    let (nhs, local_id, _) = largest(rig);
    let (grant, policy) = mcr_testkit::grant(&nhs, &DataClass::ALL);
    let filter = grant.filter(
        &policy,
        [],
        mcr_domain::Clock::now(&mcr_domain::SystemClock),
    );
    let acute = rig.region.source("acute").expect("acute");
    let location = Location {
        source: acute.id.clone(),
        local_id,
        registered_practice: None,
    };
    let started = Instant::now();
    let fetches = federation
        .fetch_record(&filter, &[location], started, SignedAhead::default())
        .await;
    let took = started.elapsed();
    (mcr_federation::merge(&filter, fetches), took)
}

#[tokio::test]
async fn a_slow_large_record_shows_what_arrived_by_the_deadline_marked_partial() {
    let rig = rig().await;
    let (_, _, held) = largest(&rig);
    assert!(held > 60, "the largest record needs many pages: {held}");

    // Three to a page: a large record takes many pages at PAGE_MS each.
    let deadline = Duration::from_millis(1200);
    let (record, took) = view(&rig, &federation(&rig, deadline, 3, None)).await;
    let acute = &record.sources[0];
    assert_eq!(
        acute.status,
        SourceStatus::Partial(FailureReason::Timeout { after_ms: 1200 }),
        "{acute:?}"
    );
    assert!(
        acute.items > 0 && record.item_count() > 0,
        "what arrived is shown: {acute:?}"
    );
    assert!(
        acute.items < held,
        "not everything can arrive by then ({} of {held})",
        acute.items
    );
    assert!(
        took < deadline + Duration::from_millis(400),
        "the view did not wait past the deadline: {took:?}"
    );
    let said = acute.partial_sentence().expect("said");
    assert!(
        said.contains("Only part of the record at")
            && said.contains("arrived before the 1.2-second deadline")
            && said.contains("the rest of its record is missing"),
        "{said}"
    );
    assert_eq!(record.failed_sources().count(), 0, "partial is not failed");
}

#[tokio::test]
async fn a_sources_own_deadline_lets_its_large_record_arrive_whole() {
    let rig = rig().await;
    // One page per search, each taking PAGE_MS: the federation's 100 ms would cut it short;
    // the source's own deadline allows for it.
    let short = Duration::from_millis(100);
    let (cut, _) = view(&rig, &federation(&rig, short, 1000, None)).await;
    assert!(
        !matches!(cut.sources[0].status, SourceStatus::Ok),
        "{:?}",
        cut.sources[0]
    );
    let (record, _) = view(&rig, &federation(&rig, short, 1000, Some(10_000))).await;
    let acute = &record.sources[0];
    assert_eq!(acute.status, SourceStatus::Ok, "{acute:?}");
    assert!(acute.items > 0);
    assert!(acute.partial_sentence().is_none());
}

#[tokio::test]
async fn a_source_that_sends_nothing_by_the_deadline_has_failed_not_answered_in_part() {
    let rig = rig().await;
    // Shorter than one page: nothing can arrive.
    let (record, _) = view(&rig, &federation(&rig, Duration::from_millis(50), 3, None)).await;
    assert_eq!(
        record.sources[0].status,
        SourceStatus::Failed(FailureReason::Timeout { after_ms: 50 })
    );
    assert_eq!(record.item_count(), 0);
}
