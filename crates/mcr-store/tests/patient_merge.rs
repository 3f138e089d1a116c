//! Merge and unmerge of index persons, on both backends: what a merge moves (links, care
//! events, care relationships), what it carries (a standing objection, protection), what it
//! leaves (permissions), what it refuses (chains, a number merged twice, a "not a match"); that
//! a later sync writing the retired number cannot undo it (index row, links, care events and
//! governance records go to the survivor); and that an unmerge moves back exactly what moved,
//! sends links that arrived while merged to review, and never loses an opt-out.

mod backends;
mod fixtures;

use backends::on_both_backends;
use chrono::NaiveDate;
use fixtures::{chain, t};
use mcr_domain::{NhsNumber, SourceId};
use mcr_store::{
    AuditAppend, CareEventRow, GovernanceChange, IndexedPatient, LinkMethod, MatchCandidateRow,
    MatchDecisionRow, MergeCounts, MergeOutcome, MergeRequest, MergeRow, ObjectionRow,
    PatientStatusRow, PermissionRow, ProtectedPersonRow, RelationshipRow, SourceLink, Store,
    UnmergeCounts, UnmergeRequest,
};

/// The `i`-th valid test-range number from 999 001 000 (some first nine digits have none).
fn nhs(i: u8) -> NhsNumber {
    (0u8..100)
        .filter_map(|j| NhsNumber::from_first_nine([9, 9, 9, 0, 0, 1, 0, j / 10, j % 10]))
        .nth(usize::from(i))
        .expect("valid NHS number")
}

fn src(s: &str) -> SourceId {
    SourceId::parse(s).expect("source id")
}

fn patient(i: u8) -> IndexedPatient {
    IndexedPatient {
        nhs_number: nhs(i),
        family: "Okafor".into(),
        given: "Grace".into(),
        birth_date: NaiveDate::from_ymd_opt(1961, 7, 14).expect("date"),
        gender: Some("female".into()),
        postcode: Some("SG1 2AB".into()),
        address: Some("7 ELM RD".into()),
        gp_practice: Some("E82001".into()),
        updated_at: t(0),
    }
}

fn link(source: &str, local: &str, i: u8, at: i64) -> SourceLink {
    SourceLink {
        nhs_number: nhs(i),
        source: src(source),
        local_id: local.into(),
        method: LinkMethod::NhsNumber,
        family: "Okafor".into(),
        given: "Grace".into(),
        birth_date: NaiveDate::from_ymd_opt(1961, 7, 14),
        postcode: Some("SG1 2AB".into()),
        linked_at: t(at),
    }
}

fn audit(action: &str, at: i64) -> AuditAppend {
    AuditAppend {
        role_profile_id: None,
        at: t(at),
        correlation_id: format!("c-{action}-{at}"),
        user_id: "dq.patel".into(),
        org_code: "RWH".into(),
        patient: None,
        action: action.into(),
        outcome: "recorded".into(),
        payload: "{}".into(),
    }
}

fn objection(i: u8, state: &str, at: i64) -> GovernanceChange {
    GovernanceChange::Objection(ObjectionRow {
        nhs_number: nhs(i),
        state: state.into(),
        recorded_by: "po.khan".into(),
        on_whose_word: "patient".into(),
        override_reason: None,
        by_role: None,
        note: None,
        at: t(at),
        ends_at: None,
    })
}

fn care_event(i: u8, id: &str, at: i64) -> CareEventRow {
    CareEventRow {
        nhs_number: nhs(i),
        org_code: "RWH".into(),
        kind: "admission".into(),
        ward: Some("Ward 7".into()),
        team: None,
        service: None,
        start: t(at),
        end: None,
        origin: "adt".into(),
        source_event_id: id.into(),
        received_at: t(at),
    }
}

async fn govern(store: &dyn Store, change: GovernanceChange, at: i64) {
    store
        .record_governance(&change, &audit("governance", at), &chain)
        .await
        .expect("governance recorded");
}

async fn merge(store: &dyn Store, retired: u8, survivor: u8, at: i64) -> MergeOutcome<MergeRow> {
    let request = MergeRequest {
        retired: nhs(retired),
        survivor: nhs(survivor),
        reason: "Duplicate registration: the same person".into(),
        by: "dq.patel".into(),
        at: t(at),
    };
    store
        .merge_patients(
            &request,
            &|c: &MergeCounts| audit(&format!("merge-patients {}", c.links_moved), at),
            &chain,
        )
        .await
        .expect("merge ran")
}

async fn unmerge(store: &dyn Store, id: i64, at: i64) -> MergeOutcome<MergeRow> {
    let request = UnmergeRequest {
        merge_id: id,
        reason: "Two people: twins".into(),
        by: "po.khan".into(),
        at: t(at),
    };
    store
        .unmerge_patients(
            &request,
            &|c: &UnmergeCounts| audit(&format!("unmerge-patients {}", c.links_back), at),
            &chain,
        )
        .await
        .expect("unmerge ran")
}

fn refused<T: std::fmt::Debug>(outcome: MergeOutcome<T>) -> String {
    match outcome {
        MergeOutcome::Refused(why) => why,
        MergeOutcome::Done(done, _) => panic!("expected a refusal, got {done:?}"),
    }
}

fn done(outcome: MergeOutcome<MergeRow>) -> MergeRow {
    match outcome {
        MergeOutcome::Done(row, audit) => {
            assert!(audit.record.action.contains("merge-patients"));
            row
        }
        MergeOutcome::Refused(why) => panic!("refused: {why}"),
    }
}

/// Where a number's objection register stands (the latest opt-out or opt-back-in).
async fn objects(store: &dyn Store, i: u8) -> bool {
    store
        .governance(&nhs(i))
        .await
        .expect("governance")
        .objections
        .iter()
        .rev()
        .find(|o| o.state == "active" || o.state == "withdrawn")
        .is_some_and(|o| o.state == "active")
}

async fn link_of(store: &dyn Store, source: &str, local: &str) -> Option<NhsNumber> {
    store
        .link_for_local(&src(source), local)
        .await
        .expect("link")
        .map(|l| l.nhs_number)
}

async fn restricted(store: &dyn Store, n: u8) -> bool {
    store
        .patient_status(&nhs(n))
        .await
        .expect("status")
        .is_some_and(|s| s.restricted)
}

async fn story(store: &dyn Store) {
    // 1 survives, 2 is retired into it; 3 is someone else.
    store
        .upsert_patients(&[patient(1), patient(2), patient(3)])
        .await
        .expect("patients");
    store
        .upsert_links(&[
            link("gp", "G1", 1, 1),
            link("acute", "A1", 2, 1),
            link("acute", "A9", 3, 1),
        ])
        .await
        .expect("links");
    store
        .upsert_care_events(&[care_event(2, "V1", 2)])
        .await
        .expect("care event");
    govern(
        store,
        GovernanceChange::Relationship(RelationshipRow {
            nhs_number: nhs(2),
            org_code: "RWH".into(),
            kind: "recorded".into(),
            user_id: None,
            reason: Some("Community nursing caseload".into()),
            start: t(2),
            end: None,
            recorded_by: "admin.lee".into(),
        }),
        2,
    )
    .await;
    govern(
        store,
        GovernanceChange::Permission(PermissionRow {
            nhs_number: nhs(2),
            org_code: "RWH".into(),
            user_id: "dr.ade".into(),
            decision: "given".into(),
            given_by: "patient".into(),
            at: t(2),
            reason_code: None,
            reason_text: None,
        }),
        2,
    )
    .await;
    // The retired number opted out; the survivor opted out and back in: the stricter wins.
    govern(store, objection(2, "active", 3), 3).await;
    govern(store, objection(1, "active", 1), 1).await;
    govern(store, objection(1, "withdrawn", 2), 2).await;
    store
        .add_protected_person(
            &ProtectedPersonRow {
                nhs_number: nhs(2),
                category: "staff".into(),
                note: "Works on Ward 7".into(),
                added_by: "po.khan".into(),
                added_at: t(2),
            },
            &audit("protect-person", 2),
            &chain,
        )
        .await
        .expect("protected");
    store
        .replace_match_candidates(
            &[],
            &[MatchCandidateRow {
                source: src("community"),
                local_id: "C1".into(),
                nhs_number: nhs(2),
                kind: "review".into(),
                score: 4.0,
                agreement: "family=exact".into(),
                guard: None,
                family: "Okafor".into(),
                given: "Grace".into(),
                birth_date: None,
                gender: None,
                postcode: None,
                found_at: t(3),
            }],
        )
        .await
        .expect("candidate");
    assert!(!objects(store, 1).await, "the survivor opted back in");
    // PDS says the retired number's person is restricted (S flag); the survivor is not.
    store
        .put_patient_statuses(&[PatientStatusRow {
            nhs_number: nhs(2),
            restricted: true,
            deceased: None,
            said_by: "pds".into(),
            updated_at: t(3),
        }])
        .await
        .expect("status");
    assert!(!restricted(store, 1).await);

    // A merge into itself, or of a number the index does not hold, is refused.
    assert!(refused(merge(store, 1, 1, 4).await).contains("itself"));
    assert!(refused(merge(store, 9, 1, 4).await).contains("must be patients"));

    let m = done(merge(store, 2, 1, 5).await);
    assert_eq!((&m.retired, &m.survivor), (&nhs(2), &nhs(1)));
    assert_eq!(
        m.counts,
        MergeCounts {
            links_moved: 1,
            care_events_moved: 1,
            relationships_moved: 1,
            objection_carried: true,
            protection_carried: true,
            pairs_dropped: 1,
        }
    );
    assert_eq!(m.retired_patient, patient(2));
    assert!(m.undone.is_none());
    assert!(
        restricted(store, 1).await,
        "a restriction holds on the merged person"
    );

    // One person: the retired number's row is gone from the index, its links, care events and
    // relationships are the survivor's, and the survivor objects (the retired number did).
    assert_eq!(store.patient(&nhs(2)).await.expect("read"), None);
    let links: Vec<String> = store
        .links(&nhs(1))
        .await
        .expect("links")
        .iter()
        .map(|l| l.local_id.clone())
        .collect();
    assert_eq!(links, ["A1", "G1"]);
    let g1 = store.governance(&nhs(1)).await.expect("governance");
    assert_eq!(g1.care_events.len(), 1);
    assert_eq!(g1.relationships.len(), 1);
    assert!(
        objects(store, 1).await,
        "an opt-out is never lost by a merge"
    );
    assert!(g1
        .objections
        .last()
        .is_some_and(|o| o.on_whose_word == format!("merged-record:{}", nhs(2))));
    // Permissions stay with the number they were given for: the merged record is asked again.
    assert!(g1.permissions.is_empty());
    assert_eq!(
        store
            .governance(&nhs(2))
            .await
            .expect("governance")
            .permissions
            .len(),
        1
    );
    // The retired number's own history is as it was.
    assert!(objects(store, 2).await);
    let protected: Vec<NhsNumber> = store
        .protected_persons()
        .await
        .expect("protected")
        .into_iter()
        .map(|p| p.nhs_number)
        .collect();
    assert!(protected.contains(&nhs(1)));
    assert!(store
        .match_candidates_for(&nhs(2))
        .await
        .expect("candidates")
        .is_empty());

    // No chains, no second merge of one number.
    assert!(refused(merge(store, 2, 3, 6).await).contains("already merged"));
    assert!(refused(merge(store, 3, 2, 6).await).contains("itself merged"));
    assert!(refused(merge(store, 1, 3, 6).await).contains("Other NHS numbers"));

    // A later sync cannot undo it: the retired number's index row is not written back, its
    // records go to the survivor, and so do care events and governance records written for it.
    store
        .upsert_patients(&[patient(2)])
        .await
        .expect("patients");
    store
        .insert_missing_patients(&[patient(2)])
        .await
        .expect("patients");
    assert_eq!(store.patient(&nhs(2)).await.expect("read"), None);
    store
        .upsert_links(&[link("acute", "A1", 2, 7), link("acute", "A2", 2, 7)])
        .await
        .expect("links");
    assert_eq!(link_of(store, "acute", "A1").await, Some(nhs(1)));
    assert_eq!(link_of(store, "acute", "A2").await, Some(nhs(1)));
    store
        .upsert_care_events(&[care_event(2, "V2", 7)])
        .await
        .expect("care event");
    govern(store, objection(2, "active", 8), 8).await;
    let g1 = store.governance(&nhs(1)).await.expect("governance");
    assert_eq!(g1.care_events.len(), 2);
    assert_eq!(
        g1.objections.len(),
        4,
        "the new opt-out is the merged person's"
    );
    assert_eq!(
        store.merge_redirects().await.expect("redirects"),
        [(nhs(2), nhs(1))]
    );
    assert_eq!(
        store
            .merged_into(&nhs(2))
            .await
            .expect("merged")
            .map(|m| m.id),
        Some(m.id)
    );
    assert_eq!(store.merged_into(&nhs(1)).await.expect("merged"), None);

    // The unmerge moves back exactly what moved; A2 arrived while merged: review, both numbers.
    let u = match unmerge(store, m.id, 10).await {
        MergeOutcome::Done(row, audit) => {
            assert!(audit.record.action.starts_with("unmerge-patients"));
            row
        }
        MergeOutcome::Refused(why) => panic!("refused: {why}"),
    };
    let undone = u.undone.expect("undone");
    assert_eq!(
        undone.counts,
        UnmergeCounts {
            links_back: 1,
            sent_to_review: 1,
            care_events_back: 1,
            relationships_back: 1,
            // The opt-out recorded while merged: the retired number objects on its own.
            objection_carried_back: false,
        }
    );
    assert_eq!((undone.by.as_str(), undone.at), ("po.khan", t(10)));
    assert_eq!(
        store.patient(&nhs(2)).await.expect("read"),
        Some(patient(2))
    );
    assert_eq!(link_of(store, "acute", "A1").await, Some(nhs(2)));
    assert_eq!(link_of(store, "gp", "G1").await, Some(nhs(1)));
    assert_eq!(link_of(store, "acute", "A2").await, None);
    let review = store
        .match_candidates_of(&src("acute"), "A2")
        .await
        .expect("candidates");
    assert_eq!(
        review
            .iter()
            .map(|c| (c.nhs_number.clone(), c.kind.as_str()))
            .collect::<Vec<_>>(),
        [(nhs(1), "unmerged"), (nhs(2), "unmerged")]
    );
    assert!(store
        .unmatched(Some(&src("acute")))
        .await
        .expect("unmatched")
        .iter()
        .any(|u| u.local_id == "A2" && u.reason == "unmerged"));
    let g1 = store.governance(&nhs(1)).await.expect("governance");
    let g2 = store.governance(&nhs(2)).await.expect("governance");
    assert_eq!(
        (g1.care_events.len(), g2.care_events.len()),
        (1, 1),
        "V1 back; V2 (arrived while merged) stays"
    );
    assert_eq!((g1.relationships.len(), g2.relationships.len()), (0, 1));
    assert!(g1
        .objections
        .iter()
        .all(|o| !o.on_whose_word.starts_with("merged-record")));
    // The survivor keeps the opt-out recorded on the merged person; the retired its own.
    assert!(objects(store, 1).await && objects(store, 2).await);
    // The restriction the merge carried goes; the retired number keeps its own.
    assert!(!restricted(store, 1).await && restricted(store, 2).await);
    assert!(!store
        .protected_persons()
        .await
        .expect("protected")
        .iter()
        .any(|p| p.nhs_number == nhs(1)));
    assert!(refused(unmerge(store, m.id, 11).await).contains("already been undone"));
    assert!(refused(unmerge(store, 999, 11).await).contains("no such merge"));
    assert_eq!(store.merged_into(&nhs(2)).await.expect("merged"), None);
    // Both numbers are people again: a record of the retired number stays with it.
    store
        .upsert_links(&[link("acute", "A3", 2, 12)])
        .await
        .expect("links");
    assert_eq!(link_of(store, "acute", "A3").await, Some(nhs(2)));

    // 4 (no objection) into 5: an opt-out recorded on the merged person while merged holds
    // for both after the unmerge (whose it was is not known).
    store
        .upsert_patients(&[patient(4), patient(5)])
        .await
        .expect("patients");
    let m2 = done(merge(store, 4, 5, 13).await);
    assert!(!m2.counts.objection_carried);
    govern(store, objection(5, "active", 14), 14).await;
    let u2 = match unmerge(store, m2.id, 15).await {
        MergeOutcome::Done(row, _) => row,
        MergeOutcome::Refused(why) => panic!("refused: {why}"),
    };
    assert!(u2.undone.expect("undone").counts.objection_carried_back);
    assert!(objects(store, 4).await && objects(store, 5).await);

    // A record someone decided is not the survivor blocks merging the number it is linked to.
    store
        .upsert_patients(&[patient(6), patient(7)])
        .await
        .expect("patients");
    store
        .upsert_links(&[link("acute", "A6", 6, 16)])
        .await
        .expect("links");
    store
        .decide_match(
            &MatchDecisionRow {
                source: src("acute"),
                local_id: "A6".into(),
                nhs_number: nhs(7),
                decision: "not-a-match".into(),
                decided_by: "dq.patel".into(),
                decided_at: t(16),
            },
            None,
            &audit("match-not-a-match", 16),
            &chain,
        )
        .await
        .expect("decided");
    assert!(refused(merge(store, 6, 7, 17).await).contains("not a match"));

    let listed: Vec<(i64, bool)> = store
        .merges()
        .await
        .expect("merges")
        .iter()
        .map(|m| (m.id, m.undone.is_some()))
        .collect();
    assert_eq!(listed, [(m2.id, true), (m.id, true)]);
    assert_eq!(
        store.merge(m.id).await.expect("merge").map(|m| m.id),
        Some(m.id)
    );
}

on_both_backends!(
    story,
    merge_and_unmerge_on_sqlite,
    merge_and_unmerge_on_postgres
);
