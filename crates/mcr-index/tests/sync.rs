//! Index sync against sources over real HTTP: the simulated region, and a crafted FHIR server
//! for the ambiguous case the region never produces.

mod common;

use axum::routing::get;
use axum::Json;
use common::{clock, federation, http_source, org, serve, sqlite};
use mcr_domain::{NhsNumber, OrgKind, SourceId};
use mcr_index::Indexer;
use mcr_store::LinkMethod;
use serde_json::{json, Value};
use std::sync::Arc;

#[tokio::test]
async fn full_then_incremental_sync_of_the_simulated_region() {
    let region = mcr_synth::generate(&mcr_synth::SynthConfig {
        patients: 1_000,
        ..Default::default()
    });
    let mut handles = Vec::new();
    let mut sources = Vec::new();
    for slice in &region.sources {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("test setup");
        let h = mcr_sources::serve(slice.clone(), listener, mcr_sources::Behaviour::default())
            .await
            .expect("test setup");
        sources.push(http_source(
            slice.id.as_str(),
            slice.organisation.clone(),
            &h.base_url(),
            &slice.resource_types,
        ));
        handles.push(h);
    }
    let (_dir, store) = sqlite().await;
    let fed = federation(sources);
    let indexer = Indexer::new(fed, store.clone(), clock());

    let report = indexer.sync(true).await.expect("test setup");
    assert!(
        report.sources.iter().all(|s| s.failed.is_none()),
        "{report:?}"
    );
    let gp = report
        .sources
        .iter()
        .find(|s| s.source == "gp")
        .expect("test setup");
    assert_eq!(gp.seen, 1_000);
    assert_eq!(
        store.patient_count().await.expect("test setup"),
        1_000,
        "every person is in the index once"
    );

    let four = &region.samples.all_four[0];
    let links = store.links(four).await.expect("test setup");
    assert_eq!(links.len(), 4, "{links:?}");

    let gp_less = &region.samples.demographics_only[0];
    let links = store.links(gp_less).await.expect("test setup");
    let gp_link = links
        .iter()
        .find(|l| l.source.as_str() == "gp")
        .expect("GP record linked by demographics");
    assert_eq!(gp_link.method, LinkMethod::Demographics);
    assert!(links
        .iter()
        .filter(|l| l.source.as_str() != "gp")
        .all(|l| l.method == LinkMethod::NhsNumber));

    for nhs in &region.samples.no_nhs_number_in_acute {
        let links = store.links(nhs).await.expect("test setup");
        let acute = links
            .iter()
            .find(|l| l.source.as_str() == "acute")
            .expect("acute record linked");
        assert_eq!(acute.method, LinkMethod::Demographics);
    }
    // The region's matching cases, and nothing else, are left unmatched: a twin the GP does
    // not hold (in review against their sibling, never linked), a parent carrying their
    // child's NHS number (not linked by it; a possible wrong NHS number for review), and one of
    // two twins neither of whom the GP holds (in review beside the local identity made from
    // the other's record), and a record whose birth date is not a whole date (listed as one
    // that could not be read, with why).
    let unmatched = store.unmatched(None).await.expect("test setup");
    let twins = &region.samples.acute_local_twins;
    assert_eq!(twins.len(), 2);
    let cases = region.samples.acute_twin.len() + region.samples.acute_wrong_nhs_number.len() + 2;
    assert_eq!(unmatched.len(), cases, "{unmatched:?}");
    let acute = mcr_domain::SourceId::parse("acute").expect("test setup");
    let (unreadable, total) = store.unreadable(&acute, 500).await.expect("test setup");
    assert_eq!(total, 1);
    assert_eq!(
        (
            unreadable[0].local_id.as_str(),
            unreadable[0].reason.as_str()
        ),
        (
            region.samples.acute_unreadable[0].as_str(),
            "birth-date-unreadable"
        )
    );
    let local = store.local_candidates().await.expect("test setup");
    assert_eq!(local.len(), 1, "{local:?}");
    assert!(twins.contains(&local[0].local_id));
    assert_eq!(local[0].guard.as_deref(), Some("possible-twin"));
    let origin = store
        .local_person(local[0].person)
        .await
        .expect("test setup")
        .expect("the local identity")
        .origin;
    assert!(twins.contains(&origin.1) && origin.1 != local[0].local_id);
    for twin in &region.samples.acute_twin {
        let pairs = store.match_candidates_for(twin).await.expect("test setup");
        assert_eq!(pairs.len(), 1, "{pairs:?}");
        assert_eq!(pairs[0].guard.as_deref(), Some("possible-twin"));
    }
    for child in &region.samples.acute_wrong_nhs_number {
        let pairs = store.match_candidates_for(child).await.expect("test setup");
        assert_eq!(pairs.len(), 1, "{pairs:?}");
        assert_eq!(pairs[0].kind, "possible-wrong-nhs-number");
        assert!(
            store
                .links(child)
                .await
                .expect("test setup")
                .iter()
                .all(|l| l.local_id != pairs[0].local_id),
            "the parent's record is not linked to the child"
        );
    }

    // Nothing changed since: an incremental sync reads nothing new.
    let again = indexer.sync(false).await.expect("test setup");
    assert!(again.sources.iter().all(|s| s.seen == 0), "{again:?}");
    assert_eq!(store.patient_count().await.expect("test setup"), 1_000);
}

/// A `Patient` born 1950-05-05 at SG1 1AA.
fn patient(id: &str, nhs: Option<&NhsNumber>, family: &str, given: &str) -> Value {
    common::person(id, nhs, (family, given), "1950-05-05", "female", "SG1 1AA")
}

/// A fresh SQLite index, fully synced from sources that hold `Patient`s only:
/// `(id, ODS code, kind, base URL)` each.
async fn full_sync(
    sources: &[(&str, &str, OrgKind, &str)],
) -> (
    tempfile::TempDir,
    Arc<dyn mcr_store::Store>,
    mcr_index::SyncReport,
) {
    let (dir, store) = sqlite().await;
    let sources = sources
        .iter()
        .map(|(id, code, kind, base)| http_source(id, org(code, *kind), base, &["Patient"]))
        .collect();
    let fed = federation(sources);
    let report = Indexer::new(fed, store.clone(), clock())
        .sync(true)
        .await
        .expect("a failing source is reported, not an error");
    (dir, store, report)
}

#[tokio::test]
async fn an_ambiguous_demographic_match_is_never_linked() {
    // Twins with the same surname, initial, birth date and postcode, each with an NHS number at
    // the GP; the hospital holds one of them without an NHS number.
    let a = NhsNumber::from_first_nine([9, 9, 9, 0, 0, 0, 0, 0, 1]).expect("test setup");
    let b = NhsNumber::from_first_nine([9, 9, 9, 0, 0, 0, 0, 0, 2]).expect("test setup");
    let gp = serve(vec![
        patient("G1", Some(&a), "Smith", "Ann"),
        patient("G2", Some(&b), "Smith", "Alice"),
        // Born another year: with the same birth date and postcode as the twins, a third
        // person is close enough for a person to look at (the matching is probabilistic).
        {
            let mut jones = patient("G3", None, "Jones", "Bob");
            jones["birthDate"] = json!("1962-01-01");
            jones
        },
    ])
    .await;
    let acute = serve(vec![patient("H1", None, "SMITH", "A.")]).await;
    let (_dir, store, report) = full_sync(&[
        ("gp", "E82001", OrgKind::GpPractice, &gp),
        ("acute", "RWH", OrgKind::AcuteTrust, &acute),
    ])
    .await;
    let acute_report = report
        .sources
        .iter()
        .find(|s| s.source == "acute")
        .expect("test setup");
    assert_eq!(acute_report.ambiguous, 1, "{report:?}");
    assert_eq!(acute_report.linked_by_demographics, 0);
    let gp_report = report
        .sources
        .iter()
        .find(|s| s.source == "gp")
        .expect("test setup");
    assert_eq!(
        gp_report.unmatched, 1,
        "Jones has no NHS number and nobody to match: {report:?}"
    );

    let acute_id = SourceId::parse("acute").expect("test setup");
    assert!(
        store
            .link_for_local(&acute_id, "H1")
            .await
            .expect("test setup")
            .is_none(),
        "not linked to either twin"
    );
    let unmatched = store.unmatched(Some(&acute_id)).await.expect("test setup");
    assert_eq!(unmatched.len(), 1);
    assert_eq!(unmatched[0].reason, "ambiguous");
    assert_eq!(unmatched[0].candidates, 2);
}

/// A source whose `Patient` search answers the first page, then fails on the second.
async fn serve_first_page_then_fail(first: Vec<Value>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("test setup");
    let addr = listener.local_addr().expect("test setup");
    let page = json!({"resourceType": "Bundle", "type": "searchset",
        "link": [{"relation": "next", "url": format!("http://{addr}/Patient?page=2")}],
        "entry": first.into_iter().map(|p| json!({"resource": p})).collect::<Vec<_>>()});
    let app = axum::Router::new().route(
        "/Patient",
        get(
            move |q: axum::extract::Query<std::collections::HashMap<String, String>>| {
                let page = page.clone();
                async move {
                    if q.get("page").is_some() {
                        Err(axum::http::StatusCode::INTERNAL_SERVER_ERROR)
                    } else {
                        Ok(Json(page))
                    }
                }
            },
        ),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.expect("test setup") });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_feed_that_fails_part_way_keeps_what_it_read_and_reads_again_next_time() {
    let a = NhsNumber::from_first_nine([9, 9, 9, 0, 0, 0, 0, 1, 1]).expect("test setup");
    let b = NhsNumber::from_first_nine([9, 9, 9, 0, 0, 0, 0, 1, 2]).expect("test setup");
    let gp = serve_first_page_then_fail(vec![
        patient("G1", Some(&a), "Smith", "Ann"),
        patient("G2", Some(&b), "Patel", "Ravi"),
    ])
    .await;
    let (_dir, store, report) = full_sync(&[("gp", "E82001", OrgKind::GpPractice, &gp)]).await;
    let gp_report = &report.sources[0];
    assert!(
        matches!(
            gp_report.failed,
            Some(mcr_domain::FailureReason::HttpStatus { status: 500 })
        ),
        "{report:?}"
    );
    // The first page was written as it arrived.
    assert_eq!(gp_report.seen, 2);
    assert_eq!(store.patient_count().await.expect("count"), 2);
    assert_eq!(store.links(&a).await.expect("links").len(), 1);
    // The watermark did not move: the next incremental sync reads from the start again.
    let gp_id = SourceId::parse("gp").expect("test setup");
    assert_eq!(store.sync_watermark(&gp_id).await.expect("watermark"), None);
}

#[tokio::test]
async fn where_two_gp_systems_hold_one_person_the_last_configured_wins_every_time() {
    let a = NhsNumber::from_first_nine([9, 9, 9, 0, 0, 0, 0, 2, 1]).expect("test setup");
    let old_practice = serve(vec![patient("P1", Some(&a), "Smith", "Ann")]).await;
    let new_practice = serve(vec![patient("Q7", Some(&a), "Jones", "Ann")]).await;
    // A hospital that holds her under her old name only fills gaps.
    let acute = serve(vec![patient("H1", Some(&a), "Smith", "Ann")]).await;
    for _ in 0..3 {
        let (_dir, store, report) = full_sync(&[
            ("acute", "RWH", OrgKind::AcuteTrust, &acute),
            ("gpold", "E82001", OrgKind::GpPractice, &old_practice),
            ("gpnew", "E82002", OrgKind::GpPractice, &new_practice),
        ])
        .await;
        assert_eq!(
            report
                .sources
                .iter()
                .map(|s| s.source.as_str())
                .collect::<Vec<_>>(),
            ["gpold", "gpnew", "acute"],
            "GP systems reported first"
        );
        let held = store.patient(&a).await.expect("read").expect("indexed");
        assert_eq!(held.family, "Jones");
        assert_eq!(store.links(&a).await.expect("links").len(), 3);
    }
}

/// Two gateways (two indexers on one store) start a sync at once: one runs it, the other is
/// told another holds the lease and does nothing; once the first is done, the next sync runs.
async fn a_sync_started_on_both_runs_once(store: Arc<dyn mcr_store::Store>) {
    let region = mcr_synth::generate(&mcr_synth::SynthConfig {
        patients: 300,
        ..Default::default()
    });
    let slice = region
        .sources
        .iter()
        .find(|s| s.organisation.kind == OrgKind::GpPractice)
        .expect("a GP system");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("test setup");
    let h = mcr_sources::serve(
        slice.clone(),
        listener,
        mcr_sources::Behaviour::with_latency(5, 20),
    )
    .await
    .expect("test setup");
    let source = http_source(
        slice.id.as_str(),
        slice.organisation.clone(),
        &h.base_url(),
        &slice.resource_types,
    );
    let gateway = || Indexer::new(federation(vec![source.clone()]), store.clone(), clock());
    let (a, b) = (gateway(), gateway());
    let served_before = h.requests_served();
    let (ran_a, ran_b) = tokio::join!(a.sync_once(true, "gw-a"), b.sync_once(true, "gw-b"));
    let (ran_a, ran_b) = (ran_a.expect("sync a"), ran_b.expect("sync b"));
    assert!(
        ran_a.is_some() != ran_b.is_some(),
        "exactly one ran: a {:?}, b {:?}",
        ran_a.is_some(),
        ran_b.is_some()
    );
    let report = ran_a.or(ran_b).expect("one report");
    assert_eq!(report.sources[0].seen, 300, "{report:?}");
    let one_sync = h.requests_served() - served_before;
    assert!(one_sync > 0);
    let indexed = store.patient_count().await.expect("count");
    assert!((250..=300).contains(&indexed), "{indexed} indexed");
    // The lease was given back: the next sync, on either, runs.
    assert!(b.sync_once(false, "gw-b").await.expect("sync").is_some());
    h.shutdown().await;
}

#[tokio::test]
async fn a_sync_started_on_two_gateways_runs_once_on_sqlite() {
    let (_dir, store) = sqlite().await;
    a_sync_started_on_both_runs_once(store).await;
}

#[tokio::test]
async fn a_sync_started_on_two_gateways_runs_once_on_postgres() {
    let url = mcr_testkit::postgres_url().await;
    let store = mcr_store::connect_and_migrate(&url)
        .await
        .expect("test setup");
    a_sync_started_on_both_runs_once(store).await;
}
