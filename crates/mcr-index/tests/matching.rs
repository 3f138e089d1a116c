//! Probabilistic matching through the real path: `Indexer::sync` over FHIR sources on real
//! HTTP, links and review candidates read back from a real SQLite store. The cases a clinical
//! safety officer asks about: twins, a moved person, a wrong NHS number, a stale link, a "not a
//! match" decision surviving a resync, a record without a birth date.

mod common;

use common::{
    clock, federation, nhs, no_source_failed, not_a_match, of, person, serve_changing, source,
    sqlite,
};
use mcr_domain::{NhsNumber, OrgKind, SourceId};
use mcr_index::{Indexer, SyncReport};
use mcr_store::{LinkMethod, MatchDecisionRow, Store};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

struct Region {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    indexer: Indexer,
    acute: Arc<Mutex<Vec<Value>>>,
}

impl Region {
    async fn new(gp: Vec<Value>, acute: Vec<Value>) -> Self {
        let gp = Arc::new(Mutex::new(gp));
        let acute = Arc::new(Mutex::new(acute));
        // The hospital is configured first: GP systems are still read before it.
        let sources = vec![
            source(
                "acute",
                "RWH",
                OrgKind::AcuteTrust,
                &serve_changing(acute.clone()).await,
            ),
            source(
                "gp",
                "E82001",
                OrgKind::GpPractice,
                &serve_changing(gp.clone()).await,
            ),
        ];
        let (dir, store) = sqlite().await;
        let indexer = Indexer::new(federation(sources), store.clone(), clock());
        Self {
            _dir: dir,
            store,
            indexer,
            acute,
        }
    }

    async fn sync(&self) -> SyncReport {
        no_source_failed(self.indexer.sync(true).await.expect("sync"))
    }

    async fn acute_link(&self, local: &str) -> Option<NhsNumber> {
        self.store
            .link_for_local(&SourceId::parse("acute").expect("id"), local)
            .await
            .expect("read")
            .map(|l| l.nhs_number)
    }
}

fn acute(report: &SyncReport) -> &mcr_index::SourceSyncReport {
    of(report, "acute")
}

#[tokio::test]
async fn twins_are_never_linked_automatically() {
    // The GP holds Louise and her twin brother Louis, and (in another family) Amira, whose twin
    // brother Amir is not registered there.
    let gp = vec![
        person(
            "G1",
            Some(&nhs(1)),
            ("Smith", "Louise"),
            "1990-04-02",
            "female",
            "SG1 1AA",
        ),
        person(
            "G2",
            Some(&nhs(2)),
            ("Smith", "Louis"),
            "1990-04-02",
            "male",
            "SG1 1AA",
        ),
        person(
            "G3",
            Some(&nhs(3)),
            ("Khan", "Amira"),
            "2001-09-15",
            "female",
            "LU2 7QQ",
        ),
    ];
    let hospital = vec![
        // Louise, as the hospital holds her: linked to her, not her brother.
        person(
            "H1",
            None,
            ("Smith", "Louise"),
            "1990-04-02",
            "female",
            "SG1 1AA",
        ),
        // Amir: his twin sister is the only close candidate, and she is not him.
        person(
            "H2",
            None,
            ("Khan", "Amir"),
            "2001-09-15",
            "male",
            "LU2 7QQ",
        ),
        // A twin with no sex recorded and an initial only: too close to call.
        person(
            "H3",
            None,
            ("Smith", "L"),
            "1990-04-02",
            "unknown",
            "SG1 1AA",
        ),
    ];
    let region = Region::new(gp, hospital).await;
    let report = region.sync().await;
    assert_eq!(region.acute_link("H1").await, Some(nhs(1)), "{report:?}");
    assert_eq!(
        region.acute_link("H2").await,
        None,
        "never linked to his twin"
    );
    assert_eq!(region.acute_link("H3").await, None);
    let r = acute(&report);
    assert_eq!(
        (r.linked_by_demographics, r.review, r.ambiguous),
        (1, 1, 1),
        "{r:?}"
    );

    let amir = region
        .store
        .match_candidates_of(&SourceId::parse("acute").expect("id"), "H2")
        .await
        .expect("queue");
    assert_eq!(amir.len(), 1, "{amir:?}");
    assert_eq!(amir[0].nhs_number, nhs(3));
    assert_eq!(amir[0].guard.as_deref(), Some("possible-twin"));
    assert!(
        amir[0].agreement.contains("sex=differs"),
        "{}",
        amir[0].agreement
    );
    let l = region
        .store
        .match_candidates_of(&SourceId::parse("acute").expect("id"), "H3")
        .await
        .expect("queue");
    assert_eq!(l.len(), 2, "both twins offered: {l:?}");
}

#[tokio::test]
async fn a_typo_in_a_given_name_links_and_twins_with_near_names_do_not() {
    let gp = vec![
        person(
            "G1",
            Some(&nhs(1)),
            ("Okafor", "Margaret"),
            "1950-05-07",
            "female",
            "SG1 1AA",
        ),
        person(
            "G2",
            Some(&nhs(2)),
            ("Reid", "Oliver"),
            "2001-03-04",
            "male",
            "LU2 7QQ",
        ),
        person(
            "G3",
            Some(&nhs(3)),
            ("Price", "Daniel"),
            "1988-10-12",
            "male",
            "AL8 2EX",
        ),
        person(
            "G4",
            Some(&nhs(4)),
            ("Yates", "Mia"),
            "1970-11-01",
            "female",
            "SG2 9BB",
        ),
    ];
    let hospital = vec![
        // Margaret, her name mistyped (no one's name): her.
        person(
            "H1",
            None,
            ("Okafor", "Margaert"),
            "1950-05-07",
            "female",
            "SG1 1AA",
        ),
        // Oliver's twin brother Noah.
        person(
            "H2",
            None,
            ("Reid", "Noah"),
            "2001-03-04",
            "male",
            "LU2 7QQ",
        ),
        // Daniel's twin sister Danielle.
        person(
            "H3",
            None,
            ("Price", "Danielle"),
            "1988-10-12",
            "female",
            "AL8 2EX",
        ),
        // Mia's twin sister Mila: a letter apart, and both names people hold.
        person(
            "H4",
            None,
            ("Yates", "Mila"),
            "1970-11-01",
            "female",
            "SG2 9BB",
        ),
    ];
    let region = Region::new(gp, hospital).await;
    let report = region.sync().await;
    assert_eq!(region.acute_link("H1").await, Some(nhs(1)), "{report:?}");
    let acute_id = SourceId::parse("acute").expect("id");
    for (twin, sibling) in [("H2", nhs(2)), ("H3", nhs(3)), ("H4", nhs(4))] {
        assert_eq!(region.acute_link(twin).await, None, "{twin} never linked");
        let shown = region
            .store
            .match_candidates_of(&acute_id, twin)
            .await
            .expect("queue");
        assert_eq!(shown.len(), 1, "{twin}: {shown:?}");
        assert_eq!(shown[0].nhs_number, sibling);
        assert_eq!(shown[0].guard.as_deref(), Some("possible-twin"), "{twin}");
    }
    let r = acute(&report);
    assert_eq!((r.linked_by_demographics, r.review), (1, 3), "{r:?}");
}

#[tokio::test]
async fn a_moved_person_is_linked_and_a_parent_namesake_is_not() {
    let gp = vec![
        person(
            "G1",
            Some(&nhs(1)),
            ("Okafor", "Grace"),
            "1972-11-30",
            "female",
            "SG1 1AA",
        ),
        // Her mother, whose name she was given, at the old address.
        person(
            "G2",
            Some(&nhs(2)),
            ("Okafor", "Grace"),
            "1948-03-30",
            "female",
            "SG1 1AA",
        ),
    ];
    let hospital = vec![
        // Grace has moved to Luton since: a new postcode, a typo in her family name.
        person(
            "H1",
            None,
            ("Okafor", "Grace"),
            "1972-11-30",
            "female",
            "LU4 9ZZ",
        ),
        person(
            "H2",
            None,
            ("Okafr", "Grace"),
            "1972-11-30",
            "female",
            "LU4 9ZZ",
        ),
        // The hospital's record of the mother with the daughter's birth year: not linked to
        // either automatically.
        person(
            "H3",
            None,
            ("Okafor", "Grace"),
            "1972-03-30",
            "female",
            "SG1 1AA",
        ),
    ];
    let region = Region::new(gp, hospital).await;
    let report = region.sync().await;
    assert_eq!(region.acute_link("H1").await, Some(nhs(1)), "{report:?}");
    assert_eq!(region.acute_link("H2").await, Some(nhs(1)));
    let link = region
        .store
        .link_for_local(&SourceId::parse("acute").expect("id"), "H1")
        .await
        .expect("read")
        .expect("linked");
    assert_eq!(link.method, LinkMethod::Demographics);
    assert_eq!(region.acute_link("H3").await, None, "{report:?}");
}

#[tokio::test]
async fn a_wrong_nhs_number_goes_to_review_and_the_record_finds_its_owner() {
    let gp = vec![
        person(
            "G1",
            Some(&nhs(1)),
            ("Hughes", "Margaret"),
            "1951-02-14",
            "female",
            "SG5 3BT",
        ),
        person(
            "G2",
            Some(&nhs(2)),
            ("Hughes", "Owen"),
            "1983-07-09",
            "male",
            "SG5 3BT",
        ),
    ];
    // The hospital filed Owen under his mother's NHS number; and holds Margaret rightly.
    let hospital = vec![
        person(
            "H1",
            Some(&nhs(1)),
            ("Hughes", "Owen"),
            "1983-07-09",
            "male",
            "SG5 3BT",
        ),
        person(
            "H2",
            Some(&nhs(1)),
            ("Hughes", "Maggie"),
            "1951-02-14",
            "female",
            "SG5 3BT",
        ),
    ];
    let region = Region::new(gp, hospital).await;
    let report = region.sync().await;
    let r = acute(&report);
    assert_eq!(r.possible_wrong_nhs_number, 1, "{r:?}");
    assert_eq!(r.linked_by_nhs_number, 1);
    assert_eq!(region.acute_link("H2").await, Some(nhs(1)));
    assert_eq!(
        region.acute_link("H1").await,
        Some(nhs(2)),
        "not linked to his mother; linked to himself by demographics"
    );
    let warned = region
        .store
        .match_candidates_for(&nhs(1))
        .await
        .expect("read");
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert_eq!(warned[0].kind, "possible-wrong-nhs-number");
    assert_eq!(warned[0].local_id, "H1");
    // Margaret's view holds her own records only.
    let links = region.store.links(&nhs(1)).await.expect("links");
    assert_eq!(
        links
            .iter()
            .map(|l| l.local_id.as_str())
            .collect::<Vec<_>>(),
        ["H2", "G1"],
        "by source: acute, then gp"
    );
}

#[tokio::test]
async fn a_stale_link_is_reevaluated_when_the_source_changes_the_record() {
    let gp = vec![person(
        "G1",
        Some(&nhs(1)),
        ("Reid", "Fiona"),
        "1966-06-01",
        "female",
        "SG2 8XY",
    )];
    let hospital = vec![person(
        "H1",
        None,
        ("Reid", "Fiona"),
        "1966-06-01",
        "female",
        "SG2 8XY",
    )];
    let region = Region::new(gp, hospital).await;
    region.sync().await;
    assert_eq!(region.acute_link("H1").await, Some(nhs(1)));

    // The hospital corrects its record: it was someone else all along.
    *region.acute.lock().expect("test setup") = vec![person(
        "H1",
        None,
        ("Reid", "Callum"),
        "2004-12-24",
        "male",
        "SG2 8XY",
    )];
    let report = region.sync().await;
    assert_eq!(acute(&report).stale_links_removed, 1, "{report:?}");
    assert_eq!(region.acute_link("H1").await, None);
    assert_eq!(region.store.links(&nhs(1)).await.expect("links").len(), 1);
}

#[tokio::test]
async fn not_a_match_survives_a_resync() {
    let gp = vec![person(
        "G1",
        Some(&nhs(1)),
        ("Ahmed", "Yusuf"),
        "1980-01-01",
        "male",
        "LU1 1AA",
    )];
    // Same name and birth date, a different address: linked automatically at first.
    let hospital = vec![person(
        "H1",
        None,
        ("Ahmed", "Yusuf"),
        "1980-01-01",
        "male",
        "SG1 9ZZ",
    )];
    let region = Region::new(gp, hospital).await;
    region.sync().await;
    assert_eq!(region.acute_link("H1").await, Some(nhs(1)));

    // Records staff find they are two people.
    not_a_match(&*region.store, "H1", &nhs(1)).await;
    assert_eq!(region.acute_link("H1").await, None);

    for _ in 0..2 {
        let report = region.sync().await;
        assert_eq!(region.acute_link("H1").await, None, "{report:?}");
        assert!(region
            .store
            .match_candidates_for(&nhs(1))
            .await
            .expect("read")
            .is_empty());
        assert_eq!(acute(&report).unmatched, 1);
    }
}

#[tokio::test]
async fn a_record_without_a_birth_date_is_rejected_and_counted() {
    let mut no_dob = person(
        "G2",
        Some(&nhs(2)),
        ("Reid", "Fiona"),
        "1966-06-01",
        "female",
        "SG2 8XY",
    );
    no_dob.as_object_mut().expect("object").remove("birthDate");
    let mut no_name = person(
        "G3",
        Some(&nhs(3)),
        ("", ""),
        "1966-06-01",
        "female",
        "SG2 8XY",
    );
    no_name["name"] = json!([]);
    let gp = vec![
        person(
            "G1",
            Some(&nhs(1)),
            ("Reid", "Ann"),
            "1966-06-01",
            "female",
            "SG2 8XY",
        ),
        no_dob,
        no_name,
    ];
    let region = Region::new(gp, Vec::new()).await;
    let report = region.sync().await;
    let gp = report
        .sources
        .iter()
        .find(|s| s.source == "gp")
        .expect("gp");
    assert_eq!(
        (gp.seen, gp.rejected, gp.linked_by_nhs_number),
        (3, 2, 1),
        "{gp:?}"
    );
    assert_eq!(region.store.patient_count().await.expect("count"), 1);
    assert!(region.store.patient(&nhs(2)).await.expect("read").is_none());
}

/// A record that cannot be read is listed, with why, for the people who check matching (so
/// that its source can correct it), until it is read or no longer sent. A record linked before
/// it became unreadable keeps its link until it is read again, and its pairs in review (which
/// showed what it said before) leave the queue.
#[tokio::test]
async fn a_record_that_cannot_be_read_is_listed_with_why_until_it_is_corrected() {
    let fiona = |id: &str, dob: &str| person(id, None, ("Reid", "Fiona"), dob, "female", "SG2 8XY");
    let mut no_dob = fiona("H1", "1966-06-01");
    no_dob.as_object_mut().expect("object").remove("birthDate");
    let mut no_name = fiona("H3", "1966-06-01");
    no_name["name"] = json!([{"use": "official"}]);
    let region = Region::new(
        vec![person(
            "G1",
            Some(&nhs(1)),
            ("Reid", "Fiona"),
            "1966-06-01",
            "female",
            "SG2 8XY",
        )],
        vec![
            no_dob,
            fiona("H2", "1966-06-93"),
            no_name,
            // A twin: in review beside G1.
            person(
                "H4",
                None,
                ("Reid", "Morag"),
                "1966-06-01",
                "female",
                "SG2 8XY",
            ),
        ],
    )
    .await;
    let acute_id = SourceId::parse("acute").expect("id");
    let listed = |store: Arc<dyn Store>| {
        let acute_id = acute_id.clone();
        async move {
            let (rows, total) = store.unreadable(&acute_id, 500).await.expect("read");
            assert_eq!(u64::try_from(rows.len()).expect("few"), total);
            rows.into_iter()
                .map(|r| (r.local_id, r.reason))
                .collect::<Vec<_>>()
        }
    };
    let report = region.sync().await;
    assert_eq!(acute(&report).rejected, 3, "{report:?}");
    assert_eq!(
        listed(region.store.clone()).await,
        [
            ("H1".to_owned(), "no-birth-date".to_owned()),
            ("H2".to_owned(), "birth-date-unreadable".to_owned()),
            ("H3".to_owned(), "no-name".to_owned()),
        ]
    );
    assert_eq!(region.acute_link("H1").await, None);
    let in_review = || async {
        region
            .store
            .match_candidates()
            .await
            .expect("read")
            .into_iter()
            .map(|c| c.local_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(in_review().await, ["H4"]);

    // H1 corrected at the hospital, H2 no longer sent, H4 sent without its birth date: H1 is
    // linked, H2 listed no longer, and H4's pair (what it said before) leaves the queue.
    {
        let mut acute = region.acute.lock().expect("test setup");
        let mut h4 = acute[3].clone();
        h4.as_object_mut().expect("object").remove("birthDate");
        *acute = vec![fiona("H1", "1966-06-01"), acute[2].clone(), h4];
    }
    let report = region.sync().await;
    assert_eq!(acute(&report).rejected, 2, "{report:?}");
    assert_eq!(region.acute_link("H1").await, Some(nhs(1)));
    assert_eq!(
        listed(region.store.clone()).await,
        [
            ("H3".to_owned(), "no-name".to_owned()),
            ("H4".to_owned(), "no-birth-date".to_owned()),
        ]
    );
    assert!(in_review().await.is_empty());

    // H1 loses its birth date again: listed, and still linked as it was (its link was made
    // on what it said before; nothing it says now says otherwise).
    region.acute.lock().expect("test setup")[0]
        .as_object_mut()
        .expect("object")
        .remove("birthDate");
    region.sync().await;
    assert_eq!(region.acute_link("H1").await, Some(nhs(1)));
    assert_eq!(
        listed(region.store.clone()).await,
        [
            ("H1".to_owned(), "no-birth-date".to_owned()),
            ("H3".to_owned(), "no-name".to_owned()),
            ("H4".to_owned(), "no-birth-date".to_owned()),
        ]
    );
}

/// A merge of index persons survives a full resync: records carrying the retired number go to
/// the survivor (counted) without its index row coming back, and a "not a match" people made
/// against the retired number holds against the survivor (one person).
#[tokio::test]
async fn a_merge_survives_a_resync_and_a_not_a_match_holds_through_it() {
    let yusuf = |id: &str, n: Option<&NhsNumber>, postcode: &str| {
        person(id, n, ("Ahmed", "Yusuf"), "1980-01-01", "male", postcode)
    };
    // The GP registered one man twice; the hospital holds a record carrying the duplicate's
    // number, and one without a number at another address.
    let gp = vec![
        yusuf("G1", Some(&nhs(1)), "LU1 1AA"),
        yusuf("G2", Some(&nhs(2)), "LU1 1AA"),
    ];
    let hospital = vec![
        yusuf("H1", None, "SG1 9ZZ"),
        yusuf("H2", Some(&nhs(2)), "LU1 1AA"),
    ];
    let region = Region::new(gp, hospital).await;
    region.sync().await;
    assert_eq!(region.acute_link("H2").await, Some(nhs(2)));
    assert_eq!(
        region.acute_link("H1").await,
        None,
        "two candidates: review"
    );

    // Records staff rule H1 out for the duplicate, then merge the duplicate into G1's number.
    let at: chrono::DateTime<chrono::Utc> = "2026-11-24T09:00:00Z".parse().expect("time");
    let audit = |action: &str| mcr_store::AuditAppend {
        role_profile_id: None,
        at,
        correlation_id: format!("c-{action}"),
        user_id: "rec.jones".into(),
        org_code: "RWH".into(),
        patient: Some(nhs(2).as_str().into()),
        action: action.into(),
        outcome: "recorded".into(),
        payload: "{}".into(),
    };
    region
        .store
        .decide_match(
            &MatchDecisionRow {
                source: SourceId::parse("acute").expect("id"),
                local_id: "H1".into(),
                nhs_number: nhs(2),
                decision: "not-a-match".into(),
                decided_by: "rec.jones".into(),
                decided_at: at,
            },
            None,
            &audit("match-not-a-match"),
            &|_, _, _| "h".into(),
        )
        .await
        .expect("decide");
    let merged = region
        .store
        .merge_patients(
            &mcr_store::MergeRequest {
                retired: nhs(2),
                survivor: nhs(1),
                reason: "Duplicate registration".into(),
                by: "rec.jones".into(),
                at,
            },
            &|_| audit("merge-patients"),
            &|_, _, _| "h".into(),
        )
        .await
        .expect("merge");
    assert!(matches!(merged, mcr_store::MergeOutcome::Done(..)));

    for _ in 0..2 {
        let report = region.sync().await;
        let gp = report
            .sources
            .iter()
            .find(|s| s.source == "gp")
            .expect("gp reported");
        assert_eq!(
            (gp.merged_redirected, acute(&report).merged_redirected),
            (1, 1),
            "{report:?}"
        );
        assert_eq!(region.store.patient(&nhs(2)).await.expect("read"), None);
        assert_eq!(region.acute_link("H2").await, Some(nhs(1)));
        assert_eq!(
            region.acute_link("H1").await,
            None,
            "not the duplicate, so not the survivor: {report:?}"
        );
        assert!(region
            .store
            .match_candidates_for(&nhs(1))
            .await
            .expect("read")
            .iter()
            .all(|c| c.local_id != "H1"));
    }
}

/// The first line of the address is compared too: a hospital record without a postcode and
/// with a birth date a digit out links to the GP's patient in the same house, and stays in
/// review without it. A source labelling its patient restricted: their house is never kept.
#[tokio::test]
async fn the_same_house_links_a_record_without_a_postcode_and_a_restricted_house_is_never_kept() {
    let at = |mut p: Value, line: &str| {
        p["address"][0]["line"] = json!([line]);
        p
    };
    let mut grace = at(
        person(
            "G2",
            Some(&nhs(2)),
            ("Okafor", "Grace"),
            "1972-11-30",
            "female",
            "SG1 1AA",
        ),
        "9 Park View",
    );
    grace["meta"]["security"] = json!([{
        "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]);
    let gp = vec![
        at(
            person(
                "G1",
                Some(&nhs(1)),
                ("Adeyemi", "Tolu"),
                "1988-03-02",
                "female",
                "LU2 7HQ",
            ),
            "4, Elm Road",
        ),
        grace,
    ];
    let hospital = vec![
        at(
            person("H1", None, ("Adeyemi", "Tolu"), "1988-03-12", "female", ""),
            "4 ELM ROAD",
        ),
        person("H2", None, ("Adeyemi", "Tolu"), "1988-03-12", "female", ""),
        at(
            person("H3", None, ("Adeyemi", "Tolu"), "1988-03-12", "female", ""),
            "40 Elm Road",
        ),
    ];
    let region = Region::new(gp, hospital).await;
    let report = region.sync().await;
    assert_eq!(region.acute_link("H1").await, Some(nhs(1)), "{report:?}");
    assert_eq!(region.acute_link("H2").await, None, "{report:?}");
    assert_eq!(region.acute_link("H3").await, None, "{report:?}");
    assert_eq!(acute(&report).review, 2, "{report:?}");
    let tolu = region
        .store
        .patient(&nhs(1))
        .await
        .expect("read")
        .expect("held");
    assert_eq!(tolu.address.as_deref(), Some("4 ELM ROAD"));
    let grace = region
        .store
        .patient(&nhs(2))
        .await
        .expect("read")
        .expect("held");
    assert_eq!(grace.postcode.as_deref(), Some("SG1 1AA"));
    assert_eq!(
        grace.address, None,
        "a restricted patient's house is never kept"
    );
}
