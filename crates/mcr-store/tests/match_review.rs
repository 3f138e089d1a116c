//! What probabilistic matching keeps, on both backends: the index read in pages and by NHS
//! numbers; review candidates replaced per evaluated record and listed best first; a `link`
//! decision writes the link and empties the record's queue, a `not-a-match` removes the link
//! to that patient only, each with its audit record; decisions read back; links removed and
//! unmatched records kept and cleared in batches.

mod backends;
mod fixtures;

use backends::on_both_backends;
use chrono::NaiveDate;
use fixtures::{chain, t};
use mcr_domain::{NhsNumber, SourceId};
use mcr_store::{
    AuditAppend, IndexedPatient, LinkMethod, MatchCandidateRow, MatchDecisionRow, SourceLink,
    Store, UnmatchedRecord,
};

fn nhs(i: u8) -> NhsNumber {
    NhsNumber::from_first_nine([9, 9, 9, 0, 0, 0, 0, i / 10, i % 10]).expect("valid NHS number")
}

fn src(s: &str) -> SourceId {
    SourceId::parse(s).expect("source id")
}

fn patient(i: u8, family: &str) -> IndexedPatient {
    IndexedPatient {
        nhs_number: nhs(i),
        family: family.into(),
        given: "Ann".into(),
        birth_date: NaiveDate::from_ymd_opt(1950, 5, 5).expect("date"),
        gender: Some("female".into()),
        postcode: Some("SG1 1AA".into()),
        address: None,
        gp_practice: None,
        updated_at: t(0),
    }
}

fn link(local: &str, i: u8) -> SourceLink {
    SourceLink {
        nhs_number: nhs(i),
        source: src("acute"),
        local_id: local.into(),
        method: LinkMethod::Demographics,
        family: "Smith".into(),
        given: "Ann".into(),
        birth_date: NaiveDate::from_ymd_opt(1950, 5, 5),
        postcode: Some("SG1 1AA".into()),
        linked_at: t(1),
    }
}

fn candidate(local: &str, i: u8, score: f64) -> MatchCandidateRow {
    MatchCandidateRow {
        source: src("acute"),
        local_id: local.into(),
        nhs_number: nhs(i),
        kind: "review".into(),
        score,
        agreement:
            "family=exact given=differs birth-date=exact sex=agree postcode=full nhs-number=missing"
                .into(),
        guard: Some("possible-twin".into()),
        family: "Smith".into(),
        given: "Alice".into(),
        birth_date: NaiveDate::from_ymd_opt(1950, 5, 5),
        gender: None,
        postcode: Some("SG1 1AA".into()),
        found_at: t(2),
    }
}

fn decision(local: &str, i: u8, what: &str) -> MatchDecisionRow {
    MatchDecisionRow {
        source: src("acute"),
        local_id: local.into(),
        nhs_number: nhs(i),
        decision: what.into(),
        decided_by: "rec.jones".into(),
        decided_at: t(3),
    }
}

fn audit(action: &str) -> AuditAppend {
    AuditAppend {
        role_profile_id: None,
        at: t(3),
        correlation_id: format!("c-{action}"),
        user_id: "rec.jones".into(),
        org_code: "RWH".into(),
        patient: None,
        action: action.into(),
        outcome: "recorded".into(),
        payload: "{}".into(),
    }
}

async fn story(store: &dyn Store) {
    // Written out of order, with every column's kinds of value: text JSON must escape
    // (quotes, a backslash, a newline, letters outside ASCII), empty values, no values, a
    // time to the nanosecond.
    let mut patients: Vec<IndexedPatient> = (1..=5).map(|i| patient(i, "Smith")).collect();
    patients[1].family = "O'Brien \"Jo\" \\ Ní Bhriain".into();
    patients[1].given = "Zoë\nMarie-José".into();
    patients[1].gender = None;
    patients[1].postcode = None;
    patients[1].gp_practice = Some("E82001".into());
    patients[1].updated_at = t(5) + chrono::Duration::nanoseconds(123_456_789);
    patients[3].gender = Some("unknown".into());
    patients[3].postcode = Some(String::new());
    patients[3].birth_date = NaiveDate::from_ymd_opt(1900, 1, 1).expect("date");
    let mut shuffled = patients.clone();
    shuffled.swap(0, 4);
    shuffled.swap(1, 3);
    store.upsert_patients(&shuffled).await.expect("patients");

    // The index in pages, in NHS number order, each patient exactly as written.
    let first = store.patients_after(None, 2).await.expect("page");
    assert_eq!(first, patients[..2]);
    let rest = store
        .patients_after(Some(&first[1].nhs_number), 10)
        .await
        .expect("page");
    assert_eq!(rest, patients[2..]);
    let after_last = store.patients_after(Some(&nhs(5)), 10).await.expect("page");
    assert!(
        after_last.is_empty(),
        "a page after the last patient is empty"
    );
    let mut some = store
        .patients_by_nhs(&[nhs(2), nhs(4), nhs(77)])
        .await
        .expect("by nhs");
    some.sort_by(|a, b| a.nhs_number.cmp(&b.nhs_number));
    assert_eq!(
        some.iter()
            .map(|p| p.nhs_number.clone())
            .collect::<Vec<_>>(),
        [nhs(2), nhs(4)],
        "one not held is left out"
    );

    // Candidates: replaced per evaluated record, best first.
    let h1 = (src("acute"), "H1".to_owned());
    let h2 = (src("acute"), "H2".to_owned());
    store
        .replace_match_candidates(
            &[h1.clone(), h2.clone()],
            &[
                candidate("H1", 1, 18.5),
                candidate("H1", 2, 17.0),
                candidate("H2", 3, 20.25),
            ],
        )
        .await
        .expect("candidates");
    let queue = store.match_candidates().await.expect("queue");
    assert_eq!(
        queue
            .iter()
            .map(|c| (c.local_id.as_str(), c.score))
            .collect::<Vec<_>>(),
        [("H2", 20.25), ("H1", 18.5), ("H1", 17.0)]
    );
    assert_eq!(queue[0], candidate("H2", 3, 20.25), "read back whole");
    // A candidate written again without its record among those evaluated (its old pairs
    // not cleared first) replaces the one held, on both backends: no error, no second row.
    store
        .replace_match_candidates(&[], &[candidate("H1", 1, 19.0)])
        .await
        .expect("a candidate written again replaces the one held");
    let queue = store.match_candidates().await.expect("queue");
    assert_eq!(queue.len(), 3);
    assert!(queue.contains(&candidate("H1", 1, 19.0)));
    store
        .replace_match_candidates(&[], &[candidate("H1", 1, 18.5)])
        .await
        .expect("and back");
    // H2 evaluated again and no longer in review: its candidate goes; H1's stay.
    store
        .replace_match_candidates(std::slice::from_ref(&h2), &[])
        .await
        .expect("replace");
    assert_eq!(store.match_candidates().await.expect("queue").len(), 2);
    assert_eq!(
        store
            .match_candidates_for(&nhs(2))
            .await
            .expect("for")
            .len(),
        1
    );
    assert_eq!(
        store
            .match_candidates_of(&src("acute"), "H1")
            .await
            .expect("of")
            .len(),
        2
    );

    // Not a match: that pair leaves the queue and any link to that patient goes.
    store.upsert_links(&[link("H1", 2)]).await.expect("link");
    store
        .decide_match(
            &decision("H1", 2, "not-a-match"),
            None,
            &audit("match-not-a-match"),
            &chain,
        )
        .await
        .expect("decide");
    assert!(store
        .link_for_local(&src("acute"), "H1")
        .await
        .expect("link")
        .is_none());
    assert_eq!(
        store
            .match_candidates_of(&src("acute"), "H1")
            .await
            .expect("of")
            .iter()
            .map(|c| c.nhs_number.clone())
            .collect::<Vec<_>>(),
        [nhs(1)]
    );
    // Link: the link is written, the record's queue and unmatched entry emptied.
    store
        .record_unmatched_batch(&[UnmatchedRecord {
            source: src("acute"),
            local_id: "H1".into(),
            reason: "review".into(),
            candidates: 2,
            seen_at: t(2),
        }])
        .await
        .expect("unmatched");
    store
        .decide_match(
            &decision("H1", 1, "link"),
            Some(&link("H1", 1)),
            &audit("match-link"),
            &chain,
        )
        .await
        .expect("decide");
    assert_eq!(
        store
            .link_for_local(&src("acute"), "H1")
            .await
            .expect("link")
            .map(|l| l.nhs_number),
        Some(nhs(1))
    );
    assert!(store.match_candidates().await.expect("queue").is_empty());
    assert!(store.unmatched(None).await.expect("unmatched").is_empty());
    // A link decision without its link (or for another record) is refused, and writes nothing.
    assert!(store
        .decide_match(
            &decision("H9", 1, "link"),
            Some(&link("H1", 1)),
            &audit("match-link"),
            &chain
        )
        .await
        .is_err());
    let decisions = store.match_decisions().await.expect("decisions");
    assert_eq!(
        decisions
            .iter()
            .map(|d| (d.nhs_number.clone(), d.decision.as_str()))
            .collect::<Vec<_>>(),
        [(nhs(1), "link"), (nhs(2), "not-a-match")]
    );
    assert_eq!(decisions[0].decided_by, "rec.jones");
    let trail = store.audit_rows(0, 100).await.expect("audit");
    assert_eq!(
        trail
            .iter()
            .map(|r| r.record.action.as_str())
            .collect::<Vec<_>>(),
        ["match-not-a-match", "match-link"]
    );

    // Batches: links removed (counted), unmatched kept and cleared.
    store
        .upsert_links(&[link("H3", 3), link("H4", 4)])
        .await
        .expect("links");
    let removed = store
        .remove_links(&[
            (src("acute"), "H3".into()),
            (src("acute"), "H4".into()),
            (src("acute"), "never".into()),
        ])
        .await
        .expect("remove");
    assert_eq!(removed, 2);
    let unmatched = |l: &str| UnmatchedRecord {
        source: src("acute"),
        local_id: l.into(),
        reason: "no-match".into(),
        candidates: 0,
        seen_at: t(4),
    };
    store
        .record_unmatched_batch(&[unmatched("U1"), unmatched("U2")])
        .await
        .expect("unmatched");
    store
        .clear_unmatched_batch(&[(src("acute"), "U1".into())])
        .await
        .expect("clear");
    assert_eq!(
        store
            .unmatched(None)
            .await
            .expect("unmatched")
            .iter()
            .map(|u| u.local_id.as_str())
            .collect::<Vec<_>>(),
        ["U2"]
    );

    // Records that could not be read: listed by source apart from the unmatched, by local
    // id, at most as many as asked, with how many there are in all.
    let unreadable = |source: &str, l: &str, reason: &str| UnmatchedRecord {
        source: src(source),
        local_id: l.into(),
        reason: reason.into(),
        candidates: 0,
        seen_at: t(5),
    };
    store
        .record_unmatched_batch(&[
            unreadable("acute", "R3", "no-name"),
            unreadable("acute", "R1", "no-birth-date"),
            unreadable("acute", "R2", "birth-date-unreadable"),
            unreadable("gp", "R9", "no-birth-date"),
        ])
        .await
        .expect("unreadable");
    let (rows, total) = store.unreadable(&src("acute"), 2).await.expect("read");
    assert_eq!(total, 3);
    assert_eq!(
        rows.iter()
            .map(|u| (u.local_id.as_str(), u.reason.as_str()))
            .collect::<Vec<_>>(),
        [("R1", "no-birth-date"), ("R2", "birth-date-unreadable")]
    );
    assert_eq!(rows[0].seen_at, t(5));
    let (rows, total) = store.unreadable(&src("gp"), 500).await.expect("read");
    assert_eq!((rows.len(), total), (1, 1));
    let (rows, total) = store.unreadable(&src("social"), 500).await.expect("read");
    assert_eq!((rows.len(), total), (0, 0));
}

on_both_backends!(story, match_review_on_sqlite, match_review_on_postgres);
