//! Local identities through the real path: `Indexer::sync` over three FHIR sources on real
//! HTTP (a GP system, a hospital and a walk-in centre), read back from a real SQLite store. A
//! record with no NHS number that matches nobody becomes a local identity; another source's
//! record of the person links to it; a twin is never linked to it; a re-sync makes no second
//! one; a later NHS-numbered record (by demographics, or a record of it now carrying the
//! number) resolves it, its links move, audited.

mod common;

use common::{
    clock, federation, nhs, no_source_failed, of, person, serve, serve_changing, source, sqlite,
};
use mcr_domain::{LocalPersonId, NhsNumber, OrgKind, SourceId};
use mcr_index::{Indexer, SyncReport};
use mcr_store::{LinkMethod, Store};
use serde_json::Value;
use std::sync::{Arc, Mutex};

fn adaeze(id: &str, nhs: Option<&NhsNumber>) -> Value {
    person(
        id,
        nhs,
        ("Nwosu", "Adaeze"),
        "1984-02-29",
        "female",
        "LU1 3AA",
    )
}

struct Region {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    indexer: Indexer,
    gp: Arc<Mutex<Vec<Value>>>,
    walk_in: Arc<Mutex<Vec<Value>>>,
}

fn src(s: &str) -> SourceId {
    SourceId::parse(s).expect("test setup")
}

impl Region {
    async fn new(gp: Vec<Value>, acute: Vec<Value>, walk_in: Vec<Value>) -> Self {
        let gp = Arc::new(Mutex::new(gp));
        let walk_in = Arc::new(Mutex::new(walk_in));
        let sources = vec![
            source(
                "gp",
                "E82001",
                OrgKind::GpPractice,
                &serve_changing(gp.clone()).await,
            ),
            source("acute", "RWH", OrgKind::AcuteTrust, &serve(acute).await),
            source(
                "walk-in",
                "RWH01",
                OrgKind::AcuteTrust,
                &serve_changing(walk_in.clone()).await,
            ),
        ];
        let (dir, store) = sqlite().await;
        let indexer = Indexer::new(federation(sources), store.clone(), clock());
        Self {
            _dir: dir,
            store,
            indexer,
            gp,
            walk_in,
        }
    }

    async fn sync(&self) -> SyncReport {
        no_source_failed(self.indexer.sync(true).await.expect("sync"))
    }

    /// The local identity a record is linked to.
    async fn home(&self, source: &str, local: &str) -> Option<LocalPersonId> {
        self.store
            .local_link_keys()
            .await
            .expect("read")
            .into_iter()
            .find(|((s, l), _)| s.as_str() == source && l == local)
            .map(|(_, p)| p)
    }

    async fn nhs_link(&self, source: &str, local: &str) -> Option<(NhsNumber, LinkMethod)> {
        self.store
            .link_for_local(&src(source), local)
            .await
            .expect("read")
            .map(|l| (l.nhs_number, l.method))
    }
}

/// Adaeze at the hospital and at the walk-in centre, with no NHS number and known to nobody
/// else, synced once: the local identity both records are linked to.
async fn adaeze_in_a_local_identity() -> (Region, LocalPersonId) {
    let region = Region::new(
        Vec::new(),
        vec![adaeze("H1", None)],
        vec![adaeze("W1", None)],
    )
    .await;
    region.sync().await;
    let home = region.home("acute", "H1").await.expect("a home");
    (region, home)
}

/// Louise at the hospital, her twin brother Louis at the walk-in centre: same family name,
/// birth date and address, neither with an NHS number.
fn twins() -> (Value, Value) {
    (
        person(
            "H1",
            None,
            ("Smith", "Louise"),
            "1990-04-02",
            "female",
            "SG1 1AA",
        ),
        person(
            "W1",
            None,
            ("Smith", "Louis"),
            "1990-04-02",
            "male",
            "SG1 1AA",
        ),
    )
}

/// The twins (`twins`), synced once: the local identity made from Louise's record.
async fn twins_synced() -> (Region, LocalPersonId) {
    let (louise, louis) = twins();
    let region = Region::new(Vec::new(), vec![louise], vec![louis]).await;
    region.sync().await;
    let hers = region.home("acute", "H1").await.expect("Louise's home");
    (region, hers)
}

/// Louise as the GP holds her, with her NHS number.
fn louise_at_the_gp() -> Value {
    person(
        "G1",
        Some(&nhs(1)),
        ("Smith", "Louise"),
        "1990-04-02",
        "female",
        "SG1 1AA",
    )
}

#[tokio::test]
async fn a_record_that_matches_nobody_becomes_a_local_identity_that_others_link_to() {
    let gp = vec![person(
        "G1",
        Some(&nhs(1)),
        ("Okafor", "Grace"),
        "1961-07-14",
        "female",
        "SG1 2AB",
    )];
    // The hospital and the walk-in centre each hold Adaeze, with no NHS number; nobody in the
    // index is her.
    let region = Region::new(gp, vec![adaeze("H1", None)], vec![adaeze("W1", None)]).await;
    let report = region.sync().await;
    assert_eq!(of(&report, "acute").local_identities, 1, "{report:?}");
    assert_eq!(of(&report, "acute").unmatched, 1);
    assert_eq!(of(&report, "walk-in").local_identities, 0, "{report:?}");
    assert_eq!(of(&report, "walk-in").linked_to_local_identity, 1);
    assert_eq!(report.matching.local_identities_open, 1);

    let home = region.home("acute", "H1").await.expect("a home");
    assert_eq!(region.home("walk-in", "W1").await, Some(home));
    // Its identifier is its own, never an NHS number, and it is not an index patient.
    assert!(NhsNumber::parse(&home.to_string()).is_err());
    assert_eq!(region.store.patient_count().await.expect("count"), 1);
    assert_eq!(region.nhs_link("acute", "H1").await, None);
    assert!(region.store.unmatched(None).await.expect("read").is_empty());
    let held = region
        .store
        .local_person(home)
        .await
        .expect("read")
        .expect("held");
    assert_eq!(held.origin, (src("acute"), "H1".to_owned()));

    // A re-sync (twice) makes no second local identity: the same one, the same links.
    for _ in 0..2 {
        let report = region.sync().await;
        assert_eq!(of(&report, "acute").local_identities, 0, "{report:?}");
        assert_eq!(of(&report, "acute").linked_to_local_identity, 1);
        assert_eq!(of(&report, "walk-in").linked_to_local_identity, 1);
        let open = region.store.open_local_persons().await.expect("read");
        assert_eq!(open.iter().map(|l| l.id).collect::<Vec<_>>(), vec![home]);
        assert_eq!(region.home("acute", "H1").await, Some(home));
        assert_eq!(region.home("walk-in", "W1").await, Some(home));
    }
}

#[tokio::test]
async fn twins_are_not_linked_to_each_others_local_identity() {
    // Louise at the hospital, her twin brother Louis at the walk-in centre: same family name,
    // birth date and address, neither with an NHS number, neither known to the GP.
    let (louise, louis) = twins();
    let region = Region::new(Vec::new(), vec![louise], vec![louis]).await;
    for round in 0..2 {
        let report = region.sync().await;
        let home = region.home("acute", "H1").await.expect("Louise's home");
        assert_eq!(
            region.home("walk-in", "W1").await,
            None,
            "round {round}: Louis linked to his sister: {report:?}"
        );
        assert_eq!(of(&report, "walk-in").review, 1, "{report:?}");
        // The pair is for a person to look at, labelled with the local identity.
        let pairs = region.store.local_candidates().await.expect("read");
        assert_eq!(pairs.len(), 1, "{pairs:?}");
        assert_eq!(pairs[0].person, home);
        assert_eq!(pairs[0].local_id, "W1");
        assert_eq!(pairs[0].guard.as_deref(), Some("possible-twin"));
        assert_eq!(
            region.store.open_local_persons().await.expect("read").len(),
            1
        );
    }
}

#[tokio::test]
async fn a_later_nhs_numbered_record_resolves_the_local_identity_and_its_links_move() {
    let (region, home) = adaeze_in_a_local_identity().await;

    // She registers with the GP, who has her NHS number: the local identity is her.
    region
        .gp
        .lock()
        .expect("test setup")
        .push(adaeze("G9", Some(&nhs(9))));
    let report = region.sync().await;
    assert_eq!(report.matching.local_identities_resolved, 1, "{report:?}");
    assert_eq!(report.matching.links_moved, 2);
    assert_eq!(report.matching.local_identities_open, 0);
    for (source, local) in [("acute", "H1"), ("walk-in", "W1")] {
        assert_eq!(
            region.nhs_link(source, local).await.map(|(n, _)| n),
            Some(nhs(9)),
            "{source}/{local}"
        );
        assert_eq!(region.home(source, local).await, None);
    }
    // It says where it went, and the move is in the audit trail (an update, BALP U).
    let gone = region
        .store
        .local_person(home)
        .await
        .expect("read")
        .expect("kept");
    let resolved = gone.resolved.expect("resolved");
    assert_eq!(resolved.nhs_number, nhs(9));
    assert_eq!(resolved.method, LinkMethod::Demographics);
    let trail = region.store.audit_rows(0, 100).await.expect("audit");
    let moved: Vec<_> = trail
        .iter()
        .filter(|r| r.record.action == "resolve-local-identity")
        .collect();
    assert_eq!(moved.len(), 1, "{trail:?}");
    assert_eq!(moved[0].record.patient.as_deref(), Some(nhs(9).as_str()));
    assert!(moved[0].record.payload.contains(&home.to_string()));
    assert!(!moved[0].record.payload.contains("Nwosu"));
    assert_eq!(
        mcr_audit::Action::ResolveLocalIdentity
            .coding()
            .action
            .code(),
        "U"
    );

    // Later syncs keep them with her and make no new local identity.
    let report = region.sync().await;
    assert_eq!(of(&report, "acute").linked_by_demographics, 1, "{report:?}");
    assert_eq!(of(&report, "acute").local_identities, 0);
    assert!(region
        .store
        .open_local_persons()
        .await
        .expect("read")
        .is_empty());
    assert_eq!(
        region.nhs_link("walk-in", "W1").await.map(|(n, _)| n),
        Some(nhs(9))
    );
}

#[tokio::test]
async fn a_record_of_a_local_identity_now_carrying_an_nhs_number_resolves_it() {
    let (region, home) = adaeze_in_a_local_identity().await;
    // The walk-in centre learns her NHS number.
    *region.walk_in.lock().expect("test setup") = vec![adaeze("W1", Some(&nhs(5)))];
    let report = region.sync().await;
    assert_eq!(report.matching.local_identities_resolved, 1, "{report:?}");
    assert_eq!(
        region.nhs_link("walk-in", "W1").await,
        Some((nhs(5), LinkMethod::NhsNumber))
    );
    assert_eq!(
        region.nhs_link("acute", "H1").await.map(|(n, _)| n),
        Some(nhs(5))
    );
    let resolved = region
        .store
        .local_person(home)
        .await
        .expect("read")
        .expect("kept")
        .resolved
        .expect("resolved");
    assert_eq!(
        (resolved.nhs_number, resolved.method),
        (nhs(5), LinkMethod::NhsNumber)
    );
    assert!(region
        .store
        .local_link_keys()
        .await
        .expect("read")
        .is_empty());
}

/// A person's decision about a record and a local identity, written as the gateway writes it
/// (with an audit record, in one transaction).
async fn decide(region: &Region, local: &str, person: LocalPersonId, verdict: &str) {
    let pair = region
        .store
        .local_candidates_of(&src("walk-in"), local)
        .await
        .expect("read")
        .into_iter()
        .find(|c| c.person == person);
    let link = (verdict == "link").then(|| {
        let c = pair.expect("the pair is in review");
        mcr_store::LocalLink {
            person,
            source: src("walk-in"),
            local_id: local.into(),
            method: LinkMethod::Demographics,
            family: c.family,
            given: c.given,
            birth_date: c.birth_date,
            postcode: c.postcode,
            linked_at: "2026-11-24T09:30:00Z".parse().expect("test setup"),
        }
    });
    let at = "2026-11-24T09:30:00Z".parse().expect("test setup");
    let audit = mcr_store::AuditAppend {
        role_profile_id: None,
        at,
        correlation_id: format!("decide-{local}"),
        user_id: "dq.patel".into(),
        org_code: "RWH01".into(),
        patient: None,
        action: format!("local-match-{verdict}"),
        outcome: "recorded".into(),
        payload: "{}".into(),
    };
    region
        .store
        .decide_local_match(
            &mcr_store::LocalDecisionRow {
                source: src("walk-in"),
                local_id: local.into(),
                person,
                decision: verdict.into(),
                decided_by: "dq.patel".into(),
                decided_at: at,
            },
            link.as_ref(),
            &audit,
            &mcr_audit::chain_hash,
        )
        .await
        .expect("decide")
        .expect("the local identity is open");
}

#[tokio::test]
async fn a_not_a_match_with_a_local_identity_holds_through_resyncs_and_its_resolution() {
    let (region, hers) = twins_synced().await;
    decide(&region, "W1", hers, "not-a-match").await;
    assert!(region
        .store
        .local_candidates()
        .await
        .expect("read")
        .is_empty());

    // Later syncs never offer the pair again: matching nobody else, Louis is a local identity
    // of his own.
    for round in 0..2 {
        let report = region.sync().await;
        assert_eq!(
            of(&report, "walk-in").review,
            0,
            "round {round}: {report:?}"
        );
        assert!(
            region
                .store
                .local_candidates()
                .await
                .expect("read")
                .is_empty(),
            "round {round}"
        );
        let his = region.home("walk-in", "W1").await.expect("Louis's home");
        assert_ne!(his, hers, "round {round}");
    }

    // Louise registers with the GP: her local identity resolves to her NHS number. The "not a
    // match" holds against that number too: Louis's record is not put in review beside her.
    region
        .gp
        .lock()
        .expect("test setup")
        .push(louise_at_the_gp());
    let report = region.sync().await;
    assert_eq!(report.matching.local_identities_resolved, 1, "{report:?}");
    assert_eq!(
        region.nhs_link("acute", "H1").await.map(|(n, _)| n),
        Some(nhs(1))
    );
    for round in 0..2 {
        assert!(
            region
                .store
                .match_candidates_of(&src("walk-in"), "W1")
                .await
                .expect("read")
                .is_empty(),
            "round {round}: Louis in review beside the sister a person said he is not"
        );
        assert_eq!(region.nhs_link("walk-in", "W1").await, None);
        assert!(region.home("walk-in", "W1").await.is_some());
        region.sync().await;
    }
}

#[tokio::test]
async fn a_record_a_person_linked_to_a_local_identity_stays_with_it_and_follows_it() {
    // The walk-in centre recorded the wrong sex and a nickname: a person checked and linked.
    let (region, hers) = twins_synced().await;
    decide(&region, "W1", hers, "link").await;
    for round in 0..2 {
        let report = region.sync().await;
        assert_eq!(
            of(&report, "walk-in").linked_to_local_identity,
            1,
            "round {round}: {report:?}"
        );
        assert_eq!(of(&report, "walk-in").review, 0, "round {round}");
        assert_eq!(
            region.home("walk-in", "W1").await,
            Some(hers),
            "round {round}"
        );
        assert!(region
            .store
            .local_candidates()
            .await
            .expect("read")
            .is_empty());
    }
    // Resolved to an NHS number: the record moves with it, and stays there on later syncs
    // (its demographics alone would only send it to review beside her).
    region
        .gp
        .lock()
        .expect("test setup")
        .push(louise_at_the_gp());
    region.sync().await;
    for round in 0..2 {
        let report = region.sync().await;
        assert_eq!(
            region.nhs_link("walk-in", "W1").await.map(|(n, _)| n),
            Some(nhs(1)),
            "round {round}: {report:?}"
        );
        assert!(region
            .store
            .match_candidates_of(&src("walk-in"), "W1")
            .await
            .expect("read")
            .is_empty());
    }
}

#[tokio::test]
async fn a_record_unlinked_from_a_local_identity_is_never_linked_to_it_again() {
    let (region, home) = adaeze_in_a_local_identity().await;
    assert_eq!(region.home("walk-in", "W1").await, Some(home));
    decide(&region, "W1", home, "unlink").await;
    assert_eq!(region.home("walk-in", "W1").await, None);
    for round in 0..2 {
        let report = region.sync().await;
        let now = region.home("walk-in", "W1").await;
        assert!(
            now.is_some() && now != Some(home),
            "round {round}: {now:?} {report:?}"
        );
        assert_eq!(of(&report, "walk-in").review, 0, "round {round}");
        assert_eq!(region.home("acute", "H1").await, Some(home));
    }
}
