//! Local identities on both backends: one made from a source record with no NHS number (and
//! only one, however often that record is written again), later records linked to it, a link
//! to an NHS number and a link to a local identity never both held for one record, and the
//! resolution: its links move to the NHS number, it says where it went, with its audit record,
//! once. And what people decide about a record and a local identity (link, not a match,
//! unlink), each with its audit record in one transaction, refused for the record a local
//! identity was made from and for a local identity resolved since.

mod backends;
mod fixtures;

use backends::on_both_backends;
use chrono::NaiveDate;
use fixtures::{chain, t};
use mcr_domain::{LocalPersonId, NhsNumber, SourceId};
use mcr_store::{
    AuditAppend, LinkMethod, LocalCandidateRow, LocalDecisionRow, LocalLink, LocalPersonRecord,
    LocalResolution, MatchCandidateRow, MatchDecisionRow, SourceLink, Store, StoreError,
    UnmatchedRecord,
};

fn nhs(j: u8) -> NhsNumber {
    (0u8..100)
        .filter_map(|k| NhsNumber::from_first_nine([9, 9, 9, 0, 0, 2, 0, k / 10, k % 10]))
        .nth(usize::from(j))
        .expect("valid NHS number")
}

fn src(s: &str) -> SourceId {
    SourceId::parse(s).expect("source id")
}

fn born() -> NaiveDate {
    NaiveDate::from_ymd_opt(1984, 2, 29).expect("date")
}

fn record(source: &str, local: &str, postcode: &str, at: i64) -> LocalPersonRecord {
    LocalPersonRecord {
        source: src(source),
        local_id: local.into(),
        family: "Nwosu".into(),
        given: "Adaeze".into(),
        birth_date: born(),
        gender: Some("female".into()),
        postcode: Some(postcode.into()),
        address: Some(format!("FLAT {at} 2 HIGH ST")),
        at: t(at),
    }
}

fn local_link(person: LocalPersonId, source: &str, local: &str, at: i64) -> LocalLink {
    LocalLink {
        person,
        source: src(source),
        local_id: local.into(),
        method: LinkMethod::Demographics,
        family: "NWOSU".into(),
        given: "Ada".into(),
        birth_date: Some(born()),
        postcode: Some("LU1 3AA".into()),
        linked_at: t(at),
    }
}

fn nhs_link(source: &str, local: &str, n: u8, at: i64) -> SourceLink {
    SourceLink {
        nhs_number: nhs(n),
        source: src(source),
        local_id: local.into(),
        method: LinkMethod::NhsNumber,
        family: "Nwosu".into(),
        given: "Adaeze".into(),
        birth_date: Some(born()),
        postcode: Some("LU1 3AA".into()),
        linked_at: t(at),
    }
}

fn audit(at: i64) -> AuditAppend {
    AuditAppend {
        role_profile_id: None,
        at: t(at),
        correlation_id: format!("c-{at}"),
        user_id: "system".into(),
        org_code: String::new(),
        patient: Some(nhs(2).as_str().to_owned()),
        action: "resolve-local-identity".into(),
        outcome: "recorded".into(),
        payload: "{}".into(),
    }
}

async fn local_keys(store: &dyn Store) -> Vec<(String, String, LocalPersonId)> {
    let mut keys: Vec<_> = store
        .local_link_keys()
        .await
        .expect("keys")
        .into_iter()
        .map(|((s, l), p)| (s.to_string(), l, p))
        .collect();
    keys.sort();
    keys
}

async fn story(store: &dyn Store) {
    // A record with no NHS number that matched nobody: a local identity of its own.
    let made = store
        .put_local_persons(&[record("hospital", "h-1", "LU1 3AA", 0)])
        .await
        .expect("put");
    let [(id, true)] = made[..] else {
        panic!("one new local identity: {made:?}")
    };
    assert!(
        NhsNumber::parse(&id.to_string()).is_err(),
        "{id} reads as an NHS number"
    );
    let held = store.local_person(id).await.expect("read").expect("held");
    assert_eq!(held.origin, (src("hospital"), "h-1".to_owned()));
    assert_eq!(held.birth_date, born());
    assert!(held.resolved.is_none());
    let links = store.local_links(id).await.expect("links");
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].method, LinkMethod::LocalIdentity);
    // Nothing keyed by an NHS number sees it: not an index patient.
    assert_eq!(store.patient_count().await.expect("count"), 0);

    // The same record again (a re-sync; it moved house): the same local identity, refreshed.
    let again = store
        .put_local_persons(&[record("hospital", "h-1", "SG2 7QT", 5)])
        .await
        .expect("put again");
    assert_eq!(again, vec![(id, false)]);
    let open = store.open_local_persons().await.expect("open");
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].postcode.as_deref(), Some("SG2 7QT"));
    assert_eq!(open[0].address.as_deref(), Some("FLAT 5 2 HIGH ST"));
    assert_eq!(open[0].created_at, t(0));
    assert_eq!(open[0].updated_at, t(5));

    // Another source's record of the person links to it; a link it had to an NHS number goes
    // (a record is linked to one or the other, never both).
    store
        .upsert_links(&[nhs_link("walk-in", "w-9", 1, 6)])
        .await
        .expect("nhs link");
    store
        .upsert_local_links(&[local_link(id, "walk-in", "w-9", 7)])
        .await
        .expect("local link");
    assert!(store
        .link_for_local(&src("walk-in"), "w-9")
        .await
        .expect("read")
        .is_none());
    assert_eq!(
        local_keys(store).await,
        vec![
            ("hospital".into(), "h-1".into(), id),
            ("walk-in".into(), "w-9".into(), id)
        ]
    );

    // Found by demographics, open ones only.
    let found = store
        .search_local_persons("NWOSU", Some(born()), 10)
        .await
        .expect("search");
    assert_eq!(found.iter().map(|p| p.id).collect::<Vec<_>>(), vec![id]);
    assert!(store
        .search_local_persons("Nwosu", NaiveDate::from_ymd_opt(1984, 3, 1), 10)
        .await
        .expect("search")
        .is_empty());

    // A pair for review beside it (a twin, say), replaced when the record is matched again.
    let pair = mcr_store::LocalCandidateRow {
        source: src("walk-in"),
        local_id: "w-twin".into(),
        person: id,
        score: 27.5,
        agreement: "family=exact given=typo sex=differs".into(),
        guard: Some("possible-twin".into()),
        family: "Nwosu".into(),
        given: "Adanna".into(),
        birth_date: Some(born()),
        gender: Some("male".into()),
        postcode: None,
        found_at: t(8),
    };
    store
        .replace_local_candidates(&[], std::slice::from_ref(&pair))
        .await
        .expect("pairs");
    store
        .replace_local_candidates(
            &[(src("walk-in"), "w-twin".into())],
            std::slice::from_ref(&pair),
        )
        .await
        .expect("pairs again");
    assert_eq!(
        store.local_candidates().await.expect("read"),
        vec![pair.clone()]
    );
    // Records matched again with nothing to show lose their pairs (many records at once); a
    // record not matched again keeps its own.
    let other = mcr_store::LocalCandidateRow {
        local_id: "w-other".into(),
        ..pair.clone()
    };
    store
        .replace_local_candidates(&[], std::slice::from_ref(&other))
        .await
        .expect("another record's pair");
    store
        .replace_local_candidates(
            &[
                (src("walk-in"), "w-twin".into()),
                (src("walk-in"), "never-paired".into()),
            ],
            &[],
        )
        .await
        .expect("matched again, nothing to show");
    assert_eq!(
        store.local_candidates().await.expect("read"),
        vec![other.clone()]
    );
    store
        .replace_local_candidates(
            &[(src("walk-in"), "w-other".into())],
            std::slice::from_ref(&pair),
        )
        .await
        .expect("the pair again");
    assert_eq!(
        store.local_candidates().await.expect("read"),
        vec![pair.clone()]
    );

    // Resolved to an NHS number: its links move there, with the resolution's method, and it
    // says where it went; the audit record is written with it.
    let before = store.audit_rows(0, 100).await.expect("audit").len();
    let resolution = LocalResolution {
        person: id,
        nhs_number: nhs(2),
        method: LinkMethod::PdsTrace,
        at: t(10),
    };
    let (moved, row) = store
        .resolve_local_person(&resolution, &audit(10), &chain)
        .await
        .expect("resolve")
        .expect("resolved");
    assert_eq!(moved, 2);
    assert_eq!(row.record.action, "resolve-local-identity");
    let links = store.links(&nhs(2)).await.expect("links");
    assert_eq!(
        links
            .iter()
            .map(|l| (l.source.as_str(), l.local_id.as_str(), l.method))
            .collect::<Vec<_>>(),
        vec![
            ("hospital", "h-1", LinkMethod::PdsTrace),
            ("walk-in", "w-9", LinkMethod::PdsTrace)
        ]
    );
    assert!(local_keys(store).await.is_empty());
    // Its pairs in review are dropped: the next sync finds them against the number.
    assert!(store.local_candidates().await.expect("read").is_empty());
    let gone = store.local_person(id).await.expect("read").expect("kept");
    let resolved = gone.resolved.expect("says where it went");
    assert_eq!(resolved.nhs_number, nhs(2));
    assert_eq!(resolved.method, LinkMethod::PdsTrace);
    assert_eq!(resolved.links_moved, 2);
    assert!(store.open_local_persons().await.expect("open").is_empty());
    assert!(store
        .search_local_persons("Nwosu", None, 10)
        .await
        .expect("search")
        .is_empty());
    assert_eq!(
        store.audit_rows(0, 100).await.expect("audit").len(),
        before + 1
    );

    // Resolving it again does nothing and audits nothing.
    assert!(store
        .resolve_local_person(&resolution, &audit(11), &chain)
        .await
        .expect("again")
        .is_none());
    assert_eq!(
        store.audit_rows(0, 100).await.expect("audit").len(),
        before + 1
    );

    // A record linked to a local identity that staff link to an NHS number leaves it.
    let made = store
        .put_local_persons(&[record("hospital", "h-2", "LU1 3AA", 20)])
        .await
        .expect("put");
    let [(second, true)] = made[..] else {
        panic!("a new local identity: {made:?}")
    };
    assert_ne!(second, id);
    store
        .decide_match(
            &MatchDecisionRow {
                source: src("hospital"),
                local_id: "h-2".into(),
                nhs_number: nhs(3),
                decision: "link".into(),
                decided_by: "dq.patel".into(),
                decided_at: t(21),
            },
            Some(&SourceLink {
                method: LinkMethod::Demographics,
                ..nhs_link("hospital", "h-2", 3, 21)
            }),
            &audit(21),
            &chain,
        )
        .await
        .expect("decide");
    assert!(local_keys(store).await.is_empty());
    assert_eq!(
        store
            .link_for_local(&src("hospital"), "h-2")
            .await
            .expect("read")
            .map(|l| l.nhs_number),
        Some(nhs(3))
    );
    // And a local link removed is counted.
    store
        .upsert_local_links(&[local_link(second, "walk-in", "w-10", 22)])
        .await
        .expect("link");
    assert_eq!(
        store
            .remove_local_links(&[
                (src("walk-in"), "w-10".into()),
                (src("walk-in"), "w-11".into())
            ])
            .await
            .expect("remove"),
        1
    );
}

fn local_pair(local: &str, person: LocalPersonId, at: i64) -> LocalCandidateRow {
    LocalCandidateRow {
        source: src("walk-in"),
        local_id: local.into(),
        person,
        score: 27.5,
        agreement: "family=exact given=typo sex=differs".into(),
        guard: Some("possible-twin".into()),
        family: "Nwosu".into(),
        given: "Adanna".into(),
        birth_date: Some(born()),
        gender: Some("male".into()),
        postcode: Some("LU1 3AA".into()),
        found_at: t(at),
    }
}

fn decision(local: &str, person: LocalPersonId, verdict: &str, at: i64) -> LocalDecisionRow {
    LocalDecisionRow {
        source: src("walk-in"),
        local_id: local.into(),
        person,
        decision: verdict.into(),
        decided_by: "dq.patel".into(),
        decided_at: t(at),
    }
}

fn decided(action: &str, at: i64) -> AuditAppend {
    AuditAppend {
        patient: None,
        action: action.into(),
        ..audit(at)
    }
}

async fn audit_count(store: &dyn Store) -> usize {
    store.audit_rows(0, 1_000).await.expect("audit").len()
}

/// What people decide about records and local identities.
async fn decisions(store: &dyn Store) {
    let made = store
        .put_local_persons(&[
            record("hospital", "h-1", "LU1 3AA", 0),
            record("hospital", "h-9", "SG2 7QT", 0),
        ])
        .await
        .expect("put");
    let [(id, true), (other, true)] = made[..] else {
        panic!("two new local identities: {made:?}")
    };
    // W1 waits beside the local identity, and beside an index patient too; it is unmatched.
    store
        .replace_local_candidates(&[], &[local_pair("w-1", id, 1), local_pair("w-2", id, 1)])
        .await
        .expect("pairs");
    store
        .replace_match_candidates(
            &[],
            &[MatchCandidateRow {
                source: src("walk-in"),
                local_id: "w-1".into(),
                nhs_number: nhs(4),
                kind: "review".into(),
                score: 20.0,
                agreement: "family=exact".into(),
                guard: None,
                family: "Nwosu".into(),
                given: "Adanna".into(),
                birth_date: Some(born()),
                gender: None,
                postcode: None,
                found_at: t(1),
            }],
        )
        .await
        .expect("index pair");
    store
        .record_unmatched(&UnmatchedRecord {
            source: src("walk-in"),
            local_id: "w-1".into(),
            reason: "review".into(),
            candidates: 2,
            seen_at: t(1),
        })
        .await
        .expect("unmatched");
    let before = audit_count(store).await;

    // Link: the record joins the local identity; its pairs of both kinds and its unmatched
    // entry go; the decision is kept with its audit record.
    let link = LocalLink {
        person: id,
        ..local_link(id, "walk-in", "w-1", 2)
    };
    let row = store
        .decide_local_match(
            &decision("w-1", id, "link", 2),
            Some(&link),
            &decided("local-match-link", 2),
            &chain,
        )
        .await
        .expect("decide")
        .expect("the local identity is open");
    assert_eq!(row.record.action, "local-match-link");
    assert_eq!(row.record.patient, None, "no NHS number in the trail");
    assert_eq!(
        store
            .local_link_of(&src("walk-in"), "w-1")
            .await
            .expect("read")
            .map(|l| (l.person, l.method)),
        Some((id, LinkMethod::Demographics))
    );
    assert!(store
        .local_candidates_of(&src("walk-in"), "w-1")
        .await
        .expect("read")
        .is_empty());
    assert!(store
        .match_candidates_of(&src("walk-in"), "w-1")
        .await
        .expect("read")
        .is_empty());
    assert!(store.unmatched(None).await.expect("read").is_empty());
    assert_eq!(audit_count(store).await, before + 1);

    // Not a match: that pair goes, nothing is linked.
    store
        .decide_local_match(
            &decision("w-2", id, "not-a-match", 3),
            None,
            &decided("local-match-not-a-match", 3),
            &chain,
        )
        .await
        .expect("decide")
        .expect("open");
    assert!(store.local_candidates().await.expect("read").is_empty());
    assert_eq!(
        store
            .local_link_of(&src("walk-in"), "w-2")
            .await
            .expect("read"),
        None
    );

    // Unlink: the record leaves the local identity; the decision replaces the link.
    store
        .decide_local_match(
            &decision("w-1", id, "unlink", 4),
            None,
            &decided("local-match-unlink", 4),
            &chain,
        )
        .await
        .expect("decide")
        .expect("open");
    assert_eq!(
        store
            .local_link_of(&src("walk-in"), "w-1")
            .await
            .expect("read"),
        None
    );
    let kept: Vec<_> = store
        .local_decisions()
        .await
        .expect("read")
        .into_iter()
        .map(|d| (d.local_id, d.person, d.decision, d.decided_by))
        .collect();
    assert_eq!(
        kept,
        vec![
            ("w-1".into(), id, "unlink".into(), "dq.patel".into()),
            ("w-2".into(), id, "not-a-match".into(), "dq.patel".into()),
        ]
    );
    assert_eq!(audit_count(store).await, before + 3);

    // Refused, nothing written or audited: unlinking the record a local identity was made
    // from; linking the record another one was made from; a link without the link it makes.
    let origin = LocalDecisionRow {
        source: src("hospital"),
        local_id: "h-1".into(),
        ..decision("h-1", id, "unlink", 5)
    };
    let refused = store
        .decide_local_match(&origin, None, &decided("local-match-unlink", 5), &chain)
        .await;
    assert!(matches!(refused, Err(StoreError::Config(_))), "{refused:?}");
    let theirs = LocalDecisionRow {
        source: src("hospital"),
        local_id: "h-9".into(),
        ..decision("h-9", id, "link", 5)
    };
    let theirs_link = LocalLink {
        source: src("hospital"),
        ..local_link(id, "hospital", "h-9", 5)
    };
    let refused = store
        .decide_local_match(
            &theirs,
            Some(&theirs_link),
            &decided("local-match-link", 5),
            &chain,
        )
        .await;
    assert!(matches!(refused, Err(StoreError::Config(_))), "{refused:?}");
    let refused = store
        .decide_local_match(
            &decision("w-1", id, "link", 5),
            None,
            &decided("local-match-link", 5),
            &chain,
        )
        .await;
    assert!(matches!(refused, Err(StoreError::Config(_))), "{refused:?}");
    assert_eq!(
        store
            .local_link_of(&src("hospital"), "h-9")
            .await
            .expect("read")
            .map(|l| l.person),
        Some(other)
    );
    assert_eq!(
        store
            .local_links(id)
            .await
            .expect("read")
            .iter()
            .map(|l| l.local_id.as_str())
            .collect::<Vec<_>>(),
        vec!["h-1"]
    );
    assert_eq!(audit_count(store).await, before + 3);

    // A local identity resolved since: nothing written, nothing audited.
    store
        .resolve_local_person(
            &LocalResolution {
                person: id,
                nhs_number: nhs(7),
                method: LinkMethod::PdsTrace,
                at: t(6),
            },
            &audit(6),
            &chain,
        )
        .await
        .expect("resolve")
        .expect("resolved");
    let after_resolve = audit_count(store).await;
    store
        .replace_local_candidates(&[], &[local_pair("w-3", other, 7)])
        .await
        .expect("pair");
    assert!(store
        .decide_local_match(
            &decision("w-3", id, "not-a-match", 7),
            None,
            &decided("local-match-not-a-match", 7),
            &chain,
        )
        .await
        .expect("decide")
        .is_none());
    assert_eq!(audit_count(store).await, after_resolve);
    assert_eq!(store.local_decisions().await.expect("read").len(), 2);
}

/// A pass's worth of records at once (more than one statement's rows on either backend):
/// each record answered in order with the identity made from it, a record given twice making
/// one identity (refreshed by the second), an identity held already refreshed, not made again,
/// each record linked to its identity and to no NHS number; links and review pairs in batches
/// too.
async fn batch(store: &dyn Store) {
    let id = |k: usize| format!("h-{k:05}");
    let held = store
        .put_local_persons(&[record("hospital", &id(3), "LU1 3AA", 0)])
        .await
        .expect("put one")[0]
        .0;
    store
        .upsert_links(&[nhs_link("hospital", &id(7), 1, 0)])
        .await
        .expect("link by NHS number");
    let mut records: Vec<LocalPersonRecord> = (0..6_001)
        .map(|k| record("hospital", &id(k), "LU1 3AA", 1))
        .collect();
    records.push(record("hospital", &id(10), "SG2 7QT", 2));
    let made = store.put_local_persons(&records).await.expect("put many");
    assert_eq!(made.len(), records.len());
    assert_eq!(made[3], (held, false), "the identity held is refreshed");
    assert_eq!(
        made[6_001],
        (made[10].0, false),
        "a record given twice makes one"
    );
    assert_eq!(made.iter().filter(|(_, new)| *new).count(), 6_000);
    let open = store.open_local_persons().await.expect("open");
    assert_eq!(open.len(), 6_001);
    for (k, (person, _)) in made.iter().enumerate().step_by(499) {
        let kept = store
            .local_person(*person)
            .await
            .expect("read")
            .expect("kept");
        assert_eq!(kept.origin, (src("hospital"), records[k].local_id.clone()));
    }
    let refreshed = store
        .local_person(made[10].0)
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(refreshed.postcode.as_deref(), Some("SG2 7QT"));
    assert_eq!(refreshed.address.as_deref(), Some("FLAT 2 2 HIGH ST"));
    assert_eq!(refreshed.updated_at, t(2));
    let linked = local_keys(store).await;
    assert_eq!(linked.len(), 6_001);
    for (k, (person, _)) in made.iter().enumerate().take(6_001) {
        let key = ("hospital".to_owned(), id(k), *person);
        assert!(linked.binary_search(&key).is_ok(), "{key:?} not linked");
    }
    assert!(store
        .link_for_local(&src("hospital"), &id(7))
        .await
        .expect("read")
        .is_none());

    // Links in a batch move records to another identity; review pairs in a batch.
    let links: Vec<LocalLink> = (0..450)
        .map(|k| local_link(held, "gp", &id(k), 3))
        .collect();
    store.upsert_local_links(&links).await.expect("links");
    assert_eq!(store.local_links(held).await.expect("links").len(), 451);
    let pairs: Vec<LocalCandidateRow> = (0..450)
        .map(|k| LocalCandidateRow {
            source: src("outpatients"),
            local_id: id(k),
            person: made[k].0,
            score: 9.5,
            agreement: "family:exact".into(),
            guard: None,
            family: "Nwosu".into(),
            given: "Ada".into(),
            birth_date: Some(born()),
            gender: None,
            postcode: None,
            found_at: t(4),
        })
        .collect();
    store
        .replace_local_candidates(&[], &pairs)
        .await
        .expect("pairs");
    assert_eq!(store.local_candidates().await.expect("pairs").len(), 450);
    let evaluated: Vec<(SourceId, String)> =
        (0..400).map(|k| (src("outpatients"), id(k))).collect();
    store
        .replace_local_candidates(&evaluated, &[])
        .await
        .expect("forget");
    assert_eq!(store.local_candidates().await.expect("pairs").len(), 50);
    let gone: Vec<(SourceId, String)> = (0..450).map(|k| (src("gp"), id(k))).collect();
    assert_eq!(store.remove_local_links(&gone).await.expect("remove"), 450);
    assert_eq!(store.local_links(held).await.expect("links").len(), 1);
}

on_both_backends!(
    batch,
    a_batch_of_local_identities_on_sqlite,
    a_batch_of_local_identities_on_postgres
);

on_both_backends!(
    decisions,
    local_identity_decisions_on_sqlite,
    local_identity_decisions_on_postgres
);

on_both_backends!(
    story,
    local_identities_on_sqlite,
    local_identities_on_postgres
);
