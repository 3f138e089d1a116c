//! Weights estimated from the data (`WeightsMode::Estimated`) through the real path:
//! `Indexer::sync` over two FHIR sources on real HTTP into a real SQLite store, links read back.
//! A GP system of 3,000 synthetic people and a hospital holding some of them again without an
//! NHS number (as they are, moved house, or with a typo), and the cases a clinical safety
//! officer asks about: a moved person linked, twins never linked, a "not a match" decision
//! kept, whatever the weights.

mod common;

use chrono::NaiveDate;
use common::{clock, federation, not_a_match, person, serve, source, sqlite};
use mcr_domain::{NhsNumber, OrgKind, SourceId};
use mcr_index::matching::WeightsMode;
use mcr_index::Indexer;
use mcr_index::WeightsUsed;
use serde_json::Value;

/// A `Patient` born on `dob`.
fn patient(
    id: &str,
    nhs: Option<&NhsNumber>,
    name: (&str, &str),
    dob: NaiveDate,
    sex: &str,
    postcode: &str,
) -> Value {
    person(id, nhs, name, &dob.to_string(), sex, postcode)
}

/// A letter of `s` changed (the third, or the last of a short name).
fn typo(s: &str) -> String {
    let mut b: Vec<char> = s.chars().collect();
    let at = 2.min(b.len() - 1);
    b[at] = if b[at] == 'E' || b[at] == 'e' {
        'a'
    } else {
        'e'
    };
    b.into_iter().collect()
}

#[tokio::test]
async fn estimated_weights_link_a_moved_person_and_never_twins() {
    let today = NaiveDate::from_ymd_opt(2026, 11, 1).expect("date");
    let people = mcr_synth::demographics(41, 3_000, today);
    let first = |p: &mcr_synth::Person| p.given[0].clone();
    let mut gp: Vec<Value> = people
        .iter()
        .map(|p| {
            patient(
                &format!("G{}", p.index),
                Some(&p.nhs_number),
                (&p.family, &first(p)),
                p.birth_date,
                p.gender,
                &p.postcode,
            )
        })
        .collect();
    // Louise and her twin brother Louis are both registered; Amira is, her twin Amir is not.
    let extra = mcr_synth::demographics(4_141, 3, today);
    let dob = NaiveDate::from_ymd_opt(1990, 4, 2).expect("date");
    let amira_dob = NaiveDate::from_ymd_opt(2001, 9, 15).expect("date");
    let (louise, louis, amira) = (&extra[0], &extra[1], &extra[2]);
    gp.push(patient(
        "T1",
        Some(&louise.nhs_number),
        ("Smith", "Louise"),
        dob,
        "female",
        "SG1 1AA",
    ));
    gp.push(patient(
        "T2",
        Some(&louis.nhs_number),
        ("Smith", "Louis"),
        dob,
        "male",
        "SG1 1AA",
    ));
    gp.push(patient(
        "T3",
        Some(&amira.nhs_number),
        ("Khan", "Amira"),
        amira_dob,
        "female",
        "LU2 7QQ",
    ));

    // The hospital: 600 of the GP's people again, without NHS numbers, a third as they are, a
    // third moved house (to another patient's postcode), a third with a family-name typo; then
    // a twin of each of 40 GP patients (same family, birth date and address, another given
    // name and sex) who is not registered; and the cases named below.
    let mut hospital = Vec::new();
    let mut truth = Vec::new();
    for (i, p) in people.iter().step_by(5).take(600).enumerate() {
        let (family, postcode) = match i % 3 {
            0 => (p.family.clone(), p.postcode.clone()),
            1 => (
                p.family.clone(),
                people[(i * 7 + 1) % 3_000].postcode.clone(),
            ),
            _ => (typo(&p.family), p.postcode.clone()),
        };
        let id = format!("H{i}");
        hospital.push(patient(
            &id,
            None,
            (&family, &first(p)),
            p.birth_date,
            p.gender,
            &postcode,
        ));
        truth.push((id, p.nhs_number.clone()));
    }
    let mut twins = Vec::new();
    for (i, p) in people.iter().skip(1).step_by(70).take(40).enumerate() {
        let (given, sex) = if p.gender == "male" {
            ("Olivia", "female")
        } else {
            ("Oliver", "male")
        };
        let id = format!("W{i}");
        hospital.push(patient(
            &id,
            None,
            (&p.family, given),
            p.birth_date,
            sex,
            &p.postcode,
        ));
        twins.push(id);
    }
    // Louise at the hospital, and Amir, whose only close candidate is his twin sister.
    hospital.push(patient(
        "L1",
        None,
        ("Smith", "Louise"),
        dob,
        "female",
        "SG1 1AA",
    ));
    hospital.push(patient(
        "A1",
        None,
        ("Khan", "Amir"),
        amira_dob,
        "male",
        "LU2 7QQ",
    ));
    twins.push("A1".into());
    // A named moved person: the first GP patient, at another patient's address.
    let moved = &people[0];
    hospital.push(patient(
        "M1",
        None,
        (&moved.family, &first(moved)),
        moved.birth_date,
        moved.gender,
        &people[1_234].postcode,
    ));

    let (_dir, store) = sqlite().await;
    let fed = federation(vec![
        source("gp", "E82001", OrgKind::GpPractice, &serve(gp).await),
        source("acute", "RWH", OrgKind::AcuteTrust, &serve(hospital).await),
    ]);
    let indexer =
        Indexer::new(fed, store.clone(), clock()).with_weights_mode(WeightsMode::Estimated);
    let report = indexer.sync(true).await.expect("sync");
    assert!(
        report.sources.iter().all(|s| s.failed.is_none()),
        "{report:?}"
    );

    // The report says the weights were estimated, and from what.
    let WeightsUsed::Estimated(e) = &report.matching.weights else {
        panic!("not estimated: {:?}", report.matching.weights);
    };
    assert!(e.random_pairs >= 1_000, "{e:?}");
    assert!(
        e.sessions.iter().all(|s| s.pairs >= 100),
        "{:?}",
        e.sessions
    );
    let weight = |field: &str, level: &str| {
        e.levels
            .iter()
            .find(|l| l.field == field && l.level == level)
            .map(|l| l.weight)
            .expect("level reported")
    };
    assert!(weight("birth-date", "exact") > 8.0, "{:?}", e.levels);
    assert!(weight("sex", "differs") < 0.0, "{:?}", e.levels);
    assert!(weight("postcode", "full") > weight("postcode", "differs"));
    let json = serde_json::to_value(&report.matching).expect("json");
    assert_eq!(json["weights"]["kind"], "estimated", "{json}");
    assert_eq!(report.matching.weights.kind(), "estimated");
    assert!(json["weights"]["levels"][0]["m"].is_number(), "{json}");

    let acute = SourceId::parse("acute").expect("id");
    let link = |local: String| {
        let store = store.clone();
        let acute = acute.clone();
        async move {
            store
                .link_for_local(&acute, &local)
                .await
                .expect("read")
                .map(|l| l.nhs_number)
        }
    };
    // The moved person is linked, to them.
    assert_eq!(link("M1".into()).await, Some(moved.nhs_number.clone()));
    // Louise is linked to herself, never to her brother.
    assert_eq!(link("L1".into()).await, Some(louise.nhs_number.clone()));
    // No twin is linked, whoever to.
    for id in &twins {
        assert_eq!(link(id.clone()).await, None, "twin {id} linked");
    }
    // And the rest: no false links; most linked (moved and misspelt ones included).
    let (mut right, mut wrong) = (0, 0);
    for (id, nhs) in &truth {
        match link(id.clone()).await {
            Some(n) if &n == nhs => right += 1,
            Some(_) => wrong += 1,
            None => {}
        }
    }
    assert_eq!(wrong, 0, "false links with estimated weights");
    assert!(right >= 540, "{right} of 600 linked");

    // Records staff say the moved record is not that patient: a resync with estimated weights
    // does not link them again.
    not_a_match(&*store, "M1", &moved.nhs_number).await;
    let report = indexer.sync(true).await.expect("resync");
    assert!(
        matches!(report.matching.weights, WeightsUsed::Estimated(_)),
        "{:?}",
        report.matching.weights
    );
    assert_eq!(link("M1".into()).await, None);
    assert_eq!(link("L1".into()).await, Some(louise.nhs_number.clone()));
}
