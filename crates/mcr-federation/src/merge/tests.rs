//! The merge's tests: tables of answers in, one record out.

use super::*;
use mcr_domain::{FailureReason, NhsNumber, OdsCode, SourceId};
use serde_json::json;

/// A source's answer before it is digested.
#[derive(Clone)]
struct Answer {
    source: SourceId,
    org_code: OdsCode,
    org_name: String,
    base_url: String,
    outcome: Result<Vec<Value>, FailureReason>,
}

fn fetch(id: &str, org: &str, resources: Vec<Value>) -> Answer {
    Answer {
        source: SourceId::parse(id).unwrap(),
        org_code: OdsCode::parse(org).unwrap(),
        org_name: format!("{org} org"),
        base_url: format!("http://{id}.example"),
        outcome: Ok(resources),
    }
}

/// Digest each answer as the client does, then merge.
fn merge_answers(filter: &ResourceFilter<'_>, answers: Vec<Answer>) -> MergedRecord {
    merge(filter, digest_answers(filter, answers))
}

/// Digest each answer as the client does.
fn digest_answers(filter: &ResourceFilter<'_>, answers: Vec<Answer>) -> Vec<SourceFetch> {
    answers
        .into_iter()
        .map(|a| {
            let meta = SourceMeta {
                source: &a.source,
                org_code: &a.org_code,
                org_name: &a.org_name,
                base_url: &a.base_url,
                local_id: "p",
                elsewhere: &[],
            };
            let outcome = a.outcome.clone().map(|resources| {
                resources
                    .into_iter()
                    .map(|v| {
                        let text = v.to_string();
                        let raw: &serde_json::value::RawValue =
                            serde_json::from_str(&text).expect("JSON");
                        let doc = mcr_fhir::Doc::parse(raw.get()).expect("JSON");
                        digest(filter, &meta, Received { doc: &doc, raw })
                    })
                    .collect()
            });
            SourceFetch {
                source: a.source.clone(),
                org_code: a.org_code.clone(),
                org_name: a.org_name.clone(),
                base_url: a.base_url.clone(),
                outcome,
                elapsed_ms: 5,
                source_ms: None,
                warnings: Vec::new(),
                cut_short: None,
                unsearchable: Vec::new(),
            }
        })
        .collect()
}

#[test]
fn a_section_merged_alone_is_the_whole_records_section() {
    let problem = json!({"resourceType": "Condition", "id": "c1", "clinicalStatus":
        {"coding": [{"code": "active"}]}, "code": {"text": "Asthma"},
        "subject": {"reference": "Patient/p"}});
    let answers = vec![
        fetch(
            "gp",
            "E82001",
            vec![med("1", "322236009", "1 daily"), problem],
        ),
        fetch("acute", "RWH", vec![med("9", "322236009", "2 daily")]),
    ];
    let (grant, policy) =
        mcr_testkit::grant(&nhs(), &[DataClass::Medications, DataClass::Problems]);
    let filter = grant.filter(
        &policy,
        [],
        mcr_domain::Clock::now(&mcr_domain::SystemClock),
    );
    let whole = merge_answers(&filter, answers.clone());
    let mut fetches = digest_answers(&filter, answers);
    let wanted: BTreeSet<Section> = [Section::Medications].into_iter().collect();
    let part = take_sections(
        &filter,
        &mut fetches.iter_mut().collect::<Vec<_>>(),
        &wanted,
    );
    assert_eq!(
        part.items(Section::Medications),
        whole.items(Section::Medications),
        "one line, both sources, the difference flagged, as in the whole record"
    );
    assert_eq!(part.items(Section::Medications).len(), 1);
    assert_eq!(part.items(Section::Medications)[0].sources.len(), 2);
    assert!(part.items(Section::Medications)[0].discrepancy.is_some());
    assert!(
        part.items(Section::Problems).is_empty(),
        "only what was asked"
    );
    assert_eq!(whole.items(Section::Problems).len(), 1);
    assert_eq!(part.sources.len(), 2, "each source's status");

    // What was handed over is counted in the whole record, never held or merged again.
    let rest = merge(&filter, fetches);
    assert!(
        rest.items(Section::Medications).is_empty(),
        "handed over once"
    );
    assert_eq!(
        rest.items(Section::Problems),
        whole.items(Section::Problems)
    );
    let items = |r: &MergedRecord| r.sources.iter().map(|s| s.items).collect::<Vec<_>>();
    assert_eq!(
        items(&rest),
        items(&whole),
        "each source's items counted as before"
    );
    assert_eq!(items(&rest), [2, 1]);
}

fn med(id: &str, code: &str, dose: &str) -> Value {
    json!({"resourceType": "MedicationStatement", "id": id, "status": "active",
        "medicationCodeableConcept": {"coding": [{"system": "https://dmd.nhs.uk", "code": code, "display": "Drug"}]},
        "dosage": [{"text": dose}], "subject": {"reference": "Patient/p"}})
}

fn nhs() -> NhsNumber {
    NhsNumber::parse("9434765919").unwrap()
}

fn run(classes: &[DataClass], fetches: &[Answer]) -> MergedRecord {
    let (grant, policy) = mcr_testkit::grant(&nhs(), classes);
    merge_answers(
        &grant.filter(
            &policy,
            [],
            mcr_domain::Clock::now(&mcr_domain::SystemClock),
        ),
        fetches.to_vec(),
    )
}

#[test]
fn one_source_labelling_the_patient_restricted_withholds_their_location_from_every_patient() {
    let patient = |restricted: bool| {
        let mut p = json!({"resourceType": "Patient", "id": "p",
            "name": [{"family": "Smythe", "given": ["Janet"]}], "birthDate": "2005-06-16",
            "address": [{"postalCode": "LS1 6AE"}],
            "telecom": [{"system": "phone", "value": "01632960587"}],
            "generalPractitioner": [{"identifier": {"value": "Y12345"}}]});
        if restricted {
            p["meta"] = json!({"security": [{"system":
                "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]});
        }
        p
    };
    // The unlabelled GP Patient comes first and is the one shown; the hospital's label
    // still restricts it.
    let answers = [
        fetch("gp", "E82001", vec![patient(false)]),
        fetch("acute", "RWH", vec![patient(true)]),
    ];
    let r = run(&[DataClass::Demographics], &answers);
    assert!(r.location_withheld);
    let shown = r.patient.expect("the Patient is shown, without location");
    assert_eq!(shown["birthDate"], "2005-06-16");
    for field in ["address", "telecom", "generalPractitioner"] {
        assert!(shown.get(field).is_none(), "{field}: {shown}");
    }
    assert!(!r.withheld, "nothing else was withheld");

    let r = run(
        &[DataClass::Demographics],
        &[fetch("gp", "E82001", vec![patient(false)])],
    );
    assert!(!r.location_withheld);
    assert!(r.patient.expect("patient").get("address").is_some());
}

#[test]
fn items_that_cannot_be_tied_to_the_patient_are_counted_and_said_never_shown() {
    let with = |id: &str, subject: Value| {
        let mut m = med(id, id, "1 daily");
        m["subject"] = subject;
        m
    };
    let answers = [fetch(
        "gp",
        "E82001",
        vec![
            with("1", json!({"reference": "Patient/p"})),
            with("2", json!({"reference": "http://gp.example/Patient/p"})),
            with(
                "3",
                json!({"reference": "http://elsewhere.example/Patient/p"}),
            ),
            with("4", json!({"reference": "Patient/q"})),
            with("5", json!({"display": "no reference"})),
        ],
    )];
    let r = run(&[DataClass::Medications], &answers);
    assert_eq!(
        r.item_count(),
        2,
        "relative and absolute on the same server"
    );
    let s = &r.sources[0];
    assert_eq!((s.items, s.untied, s.another_patient), (2, 2, 1));
    assert_eq!(
        s.not_tied_sentence().as_deref(),
        Some("3 items from E82001 org could not be tied to this patient and are not shown (1 named another patient).")
    );
    let all_lost = [fetch(
        "gp",
        "E82001",
        vec![with(
            "1",
            json!({"reference": "http://elsewhere.example/Patient/p"}),
        )],
    )];
    let r = run(&[DataClass::Medications], &all_lost);
    assert_eq!(
        r.sources[0].not_tied_sentence().as_deref(),
        Some("1 item from E82001 org could not be tied to this patient and is not shown: nothing it sent could be shown.")
    );
}

#[test]
fn types_the_record_has_no_place_for_are_counted_by_type_never_ignored() {
    let goal = |id: &str| {
        json!({"resourceType": "Goal", "id": id, "subject": {"reference": "Patient/p"},
            "description": {"text": "Walk to the shops"}})
    };
    let answers = [fetch(
        "community",
        "RY4",
        vec![
            med("m1", "111", "one daily"),
            goal("g1"),
            goal("g2"),
            json!({"resourceType": "NutritionOrder", "id": "n1", "patient": {"reference": "Patient/p"}}),
            json!({"resourceType": "OperationOutcome", "issue": []}),
        ],
    )];
    let r = run(&DataClass::ALL, &answers);
    let s = &r.sources[0];
    assert_eq!(s.items, 1);
    let counted: Vec<(&str, usize)> = s
        .not_shown
        .iter()
        .map(|n| (n.resource_type.as_str(), n.count))
        .collect();
    assert_eq!(
        counted,
        [("Goal", 2), ("NutritionOrder", 1)],
        "a search's own OperationOutcome is not the record"
    );
    assert_eq!(
        s.not_shown_sentence().as_deref(),
        Some("Not shown: 2 Goal resources, 1 NutritionOrder resource from RY4 org (this record has no section for them; ask RY4 org if you need them).")
    );
}

#[test]
fn a_dnacpr_decision_two_sources_hold_is_one_legal_item_with_both() {
    let dnacpr = |id: &str, start: &str| {
        json!({"resourceType": "Flag", "id": id, "status": "active", "subject": {"reference": "Patient/p"},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "450476008",
                "display": "Not for attempted cardiopulmonary resuscitation"}]},
            "period": {"start": start}})
    };
    let r = run(
        &DataClass::ALL,
        &[
            fetch("gp", "GPA", vec![dnacpr("f1", "2026-01-01")]),
            fetch("community", "RY4", vec![dnacpr("f9", "2026-01-01")]),
        ],
    );
    assert!(r.items(Section::Alerts).is_empty());
    let legal = r.items(Section::LegalEndOfLife);
    assert_eq!(legal.len(), 1);
    assert_eq!(legal[0].sources.len(), 2);
    // A role without the class sees the section named as not available, not an empty one.
    let r = run(
        &[DataClass::Alerts],
        &[fetch("gp", "GPA", vec![dnacpr("f1", "2026-01-01")])],
    );
    assert!(r.unavailable_sections.contains(&Section::LegalEndOfLife));
}

#[test]
fn same_drug_from_two_sources_is_one_item_with_both() {
    let r = run(
        &DataClass::ALL,
        &[
            fetch("gp", "GPA", vec![med("m1", "111", "one daily")]),
            fetch("acute", "RWH", vec![med("x9", "111", "one daily")]),
        ],
    );
    let meds = r.items(Section::Medications);
    assert_eq!(meds.len(), 1);
    assert_eq!(meds[0].sources.len(), 2);
    assert_eq!(
        meds[0].sources[1].full_url,
        "http://acute.example/MedicationStatement/x9"
    );
    assert_eq!(meds[0].discrepancy, None);
}

fn course(id: &str, start: &str, end: &str) -> Value {
    let mut m = med(id, "222", "three times a day for seven days");
    m["status"] = json!("completed");
    m["effectivePeriod"] = json!({"start": start, "end": end});
    m
}

fn observation(id: &str, rt: &str, when: &str, value: f64) -> Value {
    json!({"resourceType": rt, "id": id, "status": "final", "subject": {"reference": "Patient/p"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7", "display": "Haemoglobin"}]},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "g/L"}})
}

#[test]
fn a_course_of_a_drug_is_the_same_only_over_the_same_period() {
    let r = run(
        &DataClass::ALL,
        &[
            fetch(
                "gp",
                "GPA",
                vec![
                    course("c1", "2020-01-01", "2020-01-08"),
                    course("c2", "2023-05-01", "2023-05-08"),
                ],
            ),
            fetch(
                "acute",
                "RWH",
                vec![
                    course("x1", "2023-05-01", "2023-05-08"),
                    course("x2", "2024-02-01", "2024-02-08"),
                ],
            ),
        ],
    );
    let meds = r.items(Section::Medications);
    let sources: Vec<Vec<&str>> = meds
        .iter()
        .map(|m| m.sources.iter().map(|s| s.full_url.as_str()).collect())
        .collect();
    assert_eq!(meds.len(), 3, "{sources:?}");
    assert!(
        sources.contains(&vec![
            "http://gp.example/MedicationStatement/c2",
            "http://acute.example/MedicationStatement/x1"
        ]),
        "the 2023 course is one: {sources:?}"
    );
}

#[test]
fn a_second_copy_pairs_with_the_other_sources_second_copy() {
    // Two measurements of one code at one instant at each source (two analysers, say):
    // each source's pair stays two items, and each item has both sources.
    let at = "2024-03-01T09:30:00Z";
    let r = run(
        &DataClass::ALL,
        &[
            fetch(
                "gp",
                "GPA",
                vec![
                    observation("o1", "Observation", at, 131.0),
                    observation("o2", "Observation", at, 131.0),
                ],
            ),
            fetch(
                "acute",
                "RWH",
                vec![
                    observation("a1", "Observation", at, 131.0),
                    observation("a2", "Observation", at, 131.0),
                ],
            ),
        ],
    );
    let results = r.items(Section::Results);
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|i| i.sources.len() == 2), "{results:?}");
}

#[test]
fn a_measurement_is_the_same_at_the_same_instant_however_it_is_written() {
    let r = run(
        &DataClass::ALL,
        &[
            fetch(
                "gp",
                "GPA",
                vec![
                    observation("o1", "Observation", "2024-03-01T09:30:00Z", 131.0),
                    observation("o2", "Observation", "2024-03-02T09:30:00Z", 128.0),
                    observation("d1", "DiagnosticReport", "2024-03-03T09:30:00Z", 1.0),
                ],
            ),
            fetch(
                "acute",
                "RWH",
                vec![
                    observation("a1", "Observation", "2024-03-01T10:30:00.000+01:00", 131.0),
                    // Another instant is another measurement.
                    observation("a2", "Observation", "2024-03-02T09:31:00Z", 128.0),
                    // An observation is never one item with a report.
                    observation("a3", "Observation", "2024-03-03T09:30:00Z", 1.0),
                ],
            ),
        ],
    );
    let results = r.items(Section::Results);
    let merged: Vec<_> = results.iter().filter(|i| i.sources.len() == 2).collect();
    assert_eq!(results.len(), 5, "{results:?}");
    assert_eq!(merged.len(), 1);
    assert_eq!(
        merged[0].sources[1].full_url,
        "http://acute.example/Observation/a1"
    );
}

#[test]
fn differing_dose_is_flagged_not_hidden() {
    let r = run(
        &DataClass::ALL,
        &[
            fetch("gp", "GPA", vec![med("m1", "111", "one daily")]),
            fetch("acute", "RWH", vec![med("x9", "111", "two daily")]),
        ],
    );
    let m = &r.items(Section::Medications)[0];
    let note = m.discrepancy.as_deref().unwrap();
    assert!(
        note.contains("one daily") && note.contains("two daily"),
        "{note}"
    );
}

#[test]
fn the_same_drug_twice_from_one_source_stays_two_entries() {
    let r = run(
        &DataClass::ALL,
        &[fetch(
            "gp",
            "GPA",
            vec![med("m1", "111", "a"), med("m2", "111", "a")],
        )],
    );
    let meds = r.items(Section::Medications);
    assert_eq!(meds.len(), 2);
    assert!(meds.iter().all(|m| m.sources.len() == 1));
}

#[test]
fn different_drugs_stay_apart() {
    let r = run(
        &DataClass::ALL,
        &[fetch(
            "gp",
            "GPA",
            vec![med("m1", "111", "a"), med("m2", "222", "b")],
        )],
    );
    assert_eq!(r.items(Section::Medications).len(), 2);
}

#[test]
fn sources_that_disagree_on_who_the_patient_is_are_said() {
    let patient = |family: &str, given: &str, born: &str, sex: &str| {
        json!({"resourceType": "Patient", "id": "p", "birthDate": born, "gender": sex,
            "name": [{"use": "official", "family": family, "given": [given]}]})
    };
    // Spelling and case alone are not a disagreement; a date of birth is.
    let agree = run(
        &DataClass::ALL,
        &[
            fetch(
                "gp",
                "GPA",
                vec![patient("O'Brien", "Ann", "1950-02-01", "female")],
            ),
            fetch(
                "acute",
                "RWH",
                vec![patient("OBRIEN", "ANN", "1950-02-01", "female")],
            ),
        ],
    );
    assert!(
        agree.demographics_differ.is_empty(),
        "{:?}",
        agree.demographics_differ
    );
    let differ = run(
        &DataClass::ALL,
        &[
            fetch(
                "gp",
                "GPA",
                vec![patient("O'Brien", "Ann", "1950-02-01", "female")],
            ),
            fetch(
                "acute",
                "RWH",
                vec![patient("O'Brien", "Ann", "1950-01-02", "female")],
            ),
            fetch(
                "community",
                "RY4",
                vec![patient("Byrne", "Ann", "1950-02-01", "male")],
            ),
        ],
    );
    assert_eq!(
        differ.demographics_differ,
        [
            "The sources disagree on this patient's name: GPA org says Ann O'Brien; RWH org says Ann O'Brien; RY4 org says Ann Byrne. Check that this is the right patient before acting on this record.",
            "The sources disagree on this patient's date of birth: GPA org says 1950-02-01; RWH org says 1950-01-02; RY4 org says 1950-02-01. Check that this is the right patient before acting on this record.",
            "The sources disagree on this patient's sex: GPA org says female; RWH org says female; RY4 org says male. Check that this is the right patient before acting on this record.",
        ]
    );
}

#[test]
fn classes_outside_the_grant_are_dropped_and_named() {
    let r = run(
        &[DataClass::Demographics, DataClass::CareTeam],
        &[fetch(
            "gp",
            "GPA",
            vec![
                med("m1", "111", "a"),
                json!({"resourceType": "Patient", "id": "p"}),
            ],
        )],
    );
    assert_eq!(r.item_count(), 0);
    assert!(r.unavailable_sections.contains(&Section::Medications));
    assert!(r.patient.is_some());
    assert!(!r.withheld, "dropping for role is not withholding");
}

#[test]
fn withheld_items_are_counted_but_never_shown() {
    let mut secret = med("m3", "333", "x");
    secret["meta"] = json!({"security": [{"system": mcr_policy::V3_CONFIDENTIALITY, "code": "R"}]});
    let r = run(
        &DataClass::ALL,
        &[fetch("gp", "GPA", vec![secret, med("m1", "111", "a")])],
    );
    assert_eq!(r.items(Section::Medications).len(), 1);
    assert!(r.withheld);
    assert_eq!(r.sources[0].withheld, 1);
    assert_eq!(r.sources[0].items, 1);
}

#[test]
fn failed_sources_travel_with_the_record() {
    let mut down = fetch("acute", "RWH", vec![]);
    down.outcome = Err(FailureReason::Timeout { after_ms: 3000 });
    let r = run(
        &DataClass::ALL,
        &[fetch("gp", "GPA", vec![med("m1", "111", "a")]), down],
    );
    let failed: Vec<_> = r.failed_sources().collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].source.as_str(), "acute");
}

#[test]
fn a_recent_encounters_window_leaves_out_older_and_undated_ones() {
    let enc = |id: &str, start: Option<&str>| {
        let mut e = json!({"resourceType": "Encounter", "id": id, "status": "finished",
            "class": {"display": "inpatient"}, "subject": {"reference": "Patient/p"}});
        if let Some(s) = start {
            e["period"] = json!({"start": s});
        }
        e
    };
    let (grant, mut policy) = mcr_testkit::grant(&nhs(), &DataClass::ALL);
    policy
        .recent_encounters_days
        .insert(mcr_domain::Role::Clinician, 31);
    let now = chrono::DateTime::parse_from_rfc3339("2026-10-02T12:00:00Z")
        .expect("instant")
        .to_utc();
    let r = merge_answers(
        &grant.filter(&policy, [], now),
        vec![fetch(
            "acute",
            "RWH",
            vec![
                enc("e1", Some("2026-10-02T10:00:00Z")),
                enc("e2", Some("2025-01-01")),
                enc("e3", None),
            ],
        )],
    );
    let shown: Vec<_> = r
        .items(Section::Encounters)
        .iter()
        .map(|i| i.sources[0].full_url.clone())
        .collect();
    assert_eq!(shown, ["http://acute.example/Encounter/e1"]);
    assert!(!r.withheld, "scoping by role is not withholding");
}

#[test]
fn source_sharing_agreement_is_applied() {
    let (grant, policy) = mcr_testkit::grant(&nhs(), &DataClass::ALL);
    let agreement = mcr_policy::SharingAgreement {
        source_org: OdsCode::parse("GPA").unwrap(),
        shares: [(
            mcr_domain::OrgKind::GpPractice,
            [DataClass::Allergies].into_iter().collect(),
        )]
        .into_iter()
        .collect(),
    };
    let r = merge_answers(
        &grant.filter(
            &policy,
            [(SourceId::parse("gp").unwrap(), Some(&agreement))],
            mcr_domain::Clock::now(&mcr_domain::SystemClock),
        ),
        vec![fetch("gp", "GPA", vec![med("m1", "111", "a")])],
    );
    assert_eq!(r.item_count(), 0);
}
