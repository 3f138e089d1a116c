//! The Bundle's and the Patient's FHIR shapes, and the OperationOutcome's words.

use super::*;
use mcr_domain::{MergedRecord, NhsNumber, SourceStatus};

#[test]
fn sources_disagreeing_on_who_this_is_come_first_in_the_operation_outcome() {
    let view = View {
        record: MergedRecord {
            nhs_number: NhsNumber::parse("9434765919").unwrap_or_else(|_| unreachable!()),
            patient: None,
            patient_url: None,
            sections: Vec::new(),
            sources: Vec::new(),
            unavailable_sections: Vec::new(),
            withheld: true,
            demographics_differ: vec![
                "The sources disagree on this patient's date of birth.".into(),
                "The sources disagree on this patient's sex.".into(),
            ],
            location_withheld: false,
        },
        basis: mcr_policy::Basis::LegalBasis {
            relationship: mcr_policy::RelationshipKind::GpRegistration,
        },
        classes: Default::default(),
        timings: Vec::new(),
        phases: Vec::new(),
        identity_warnings: Vec::new(),
    };
    let body = everything(
        &view,
        mcr_domain::Clock::now(&mcr_domain::SystemClock),
        None,
    )
    .unwrap_or_default();
    let bundle: Value = serde_json::from_slice(&body).unwrap_or_default();
    let issues = &bundle["entry"][0]["resource"]["issue"];
    let said: Vec<(&str, &str, &str)> = issues
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    (
                        i["severity"].as_str().unwrap_or(""),
                        i["details"]["coding"][0]["code"].as_str().unwrap_or(""),
                        i["details"]["text"].as_str().unwrap_or(""),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        &said[..2],
        [
            (
                "warning",
                "demographics-differ",
                "The sources disagree on this patient's date of birth."
            ),
            (
                "warning",
                "demographics-differ",
                "The sources disagree on this patient's sex."
            ),
        ],
        "{issues}"
    );
    assert_eq!(said[2].1, "items-withheld", "then the rest: {issues}");
}

#[test]
fn types_a_source_holds_that_the_record_does_not_show_and_forms_its_search_cannot_find_are_named_in_the_operation_outcome(
) {
    let source = mcr_domain::SourceOutcome {
        source: mcr_domain::SourceId::parse("community").unwrap_or_else(|_| unreachable!()),
        org_code: mcr_domain::OdsCode::parse("RY4").unwrap_or_else(|_| unreachable!()),
        org_name: "Hertfordshire Community NHS Trust".into(),
        status: SourceStatus::Ok,
        items: 4,
        withheld: 0,
        untied: 0,
        another_patient: 0,
        elapsed_ms: 10,
        warnings: Vec::new(),
        not_shown: vec![mcr_domain::NotShown {
            resource_type: "Goal".into(),
            count: 12,
        }],
        unsearchable: vec![
            mcr_domain::UnsearchableForm::OtherServer,
            mcr_domain::UnsearchableForm::Contained,
        ],
    };
    let view = View {
        record: MergedRecord {
            nhs_number: NhsNumber::parse("9434765919").unwrap_or_else(|_| unreachable!()),
            patient: None,
            patient_url: None,
            sections: Vec::new(),
            sources: vec![source],
            unavailable_sections: Vec::new(),
            withheld: false,
            demographics_differ: Vec::new(),
            location_withheld: false,
        },
        basis: mcr_policy::Basis::LegalBasis {
            relationship: mcr_policy::RelationshipKind::GpRegistration,
        },
        classes: Default::default(),
        timings: Vec::new(),
        phases: Vec::new(),
        identity_warnings: Vec::new(),
    };
    let body = everything(
        &view,
        mcr_domain::Clock::now(&mcr_domain::SystemClock),
        None,
    )
    .unwrap_or_default();
    let bundle: Value = serde_json::from_slice(&body).unwrap_or_default();
    let issues = bundle["entry"][0]["resource"]["issue"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let not_shown = issues
        .iter()
        .find(|i| i["details"]["coding"][0]["code"] == "types-not-shown")
        .unwrap_or_else(|| panic!("no types-not-shown issue: {issues:?}"));
    assert_eq!(not_shown["severity"], "warning");
    assert_eq!(not_shown["code"], "incomplete");
    assert_eq!(
        not_shown["details"]["text"],
        "Not shown: 12 Goal resources from Hertfordshire Community NHS Trust (this record has no section for them; ask Hertfordshire Community NHS Trust if you need them)."
    );
    assert_eq!(not_shown["expression"][0], "community");
    let unsearchable = issues
        .iter()
        .find(|i| i["details"]["coding"][0]["code"] == "references-not-searchable")
        .unwrap_or_else(|| panic!("no references-not-searchable issue: {issues:?}"));
    assert_eq!(unsearchable["severity"], "warning");
    assert_eq!(
        unsearchable["details"]["text"],
        "Hertfordshire Community NHS Trust's search cannot find items that name the patient by an address outside this region's sources or inside the item; any such items are not shown."
    );
    assert_eq!(unsearchable["expression"][0], "community");
}

/// A view of `n` items in each of two sections, from two sources.
pub(crate) fn view_of(n: usize) -> View {
    let item = |section: mcr_domain::Section, i: usize| RecordItem {
        section,
        class: mcr_domain::DataClass::Results,
        resource_type: "Observation".into(),
        code: None,
        display: format!("Result {i}"),
        detail: None,
        status: None,
        date: None,
        sources: ["gp", "acute"]
            .iter()
            .map(|s| mcr_domain::ItemSource {
                source: mcr_domain::SourceId::parse(s).unwrap_or_else(|_| unreachable!()),
                org_code: OdsCode::parse("A81001").unwrap_or_else(|_| unreachable!()),
                org_name: format!("{s} \"organisation\""),
                full_url: format!("https://{s}/Observation/{i}"),
                recorded: None,
            })
            .collect(),
        discrepancy: None,
        resource: mcr_domain::SourceJson::from_value(
            &json!({"resourceType": "Observation", "id": i.to_string(), "note": [{"text": "é \u{2028} \\"}]}),
        ),
    };
    View {
        record: MergedRecord {
            nhs_number: NhsNumber::parse("9434765919").unwrap_or_else(|_| unreachable!()),
            patient: Some(json!({"resourceType": "Patient", "id": "p1"})),
            patient_url: Some("https://gp/Patient/p1".into()),
            sections: vec![
                (
                    mcr_domain::Section::Problems,
                    (0..n)
                        .map(|i| item(mcr_domain::Section::Problems, i))
                        .collect(),
                ),
                (mcr_domain::Section::Allergies, Vec::new()),
                (
                    mcr_domain::Section::Results,
                    (n..2 * n)
                        .map(|i| item(mcr_domain::Section::Results, i))
                        .collect(),
                ),
            ],
            sources: Vec::new(),
            unavailable_sections: Vec::new(),
            withheld: true,
            demographics_differ: Vec::new(),
            location_withheld: false,
        },
        basis: mcr_policy::Basis::LegalBasis {
            relationship: mcr_policy::RelationshipKind::GpRegistration,
        },
        classes: Default::default(),
        timings: Vec::new(),
        phases: Vec::new(),
        identity_warnings: Vec::new(),
    }
}

/// Written a few bytes at a time, a Bundle (whole or one page) is byte for byte the one
/// written at once, and is the record: every item once, with its Provenance, in order.
#[test]
fn a_bundle_written_in_parts_is_the_bundle_written_whole() {
    let view = view_of(7);
    let now = mcr_domain::Clock::now(&mcr_domain::SystemClock);
    let page = |offset, count| Page {
        offset,
        count,
        url: "https://mcr/fhir/Patient/9434765919/$everything".into(),
    };
    for page in [
        None,
        Some(page(0, 5)),
        Some(page(5, 5)),
        Some(page(12, 5)),
        Some(page(40, 5)),
        Some(page(3, 0)),
    ] {
        let whole = everything(&view, now, page.as_ref()).unwrap_or_default();
        for part in [1, 300, 4096] {
            let mut writer = BundleWriter::new(&view, now, page.clone());
            let mut parts = Vec::new();
            let mut calls = 0;
            loop {
                let mut out = Vec::new();
                let done = writer.write(&view, &mut out, part).unwrap_or(true);
                parts.extend_from_slice(&out);
                calls += 1;
                if done || calls > 1_000 {
                    break;
                }
            }
            assert_eq!(
                String::from_utf8_lossy(&parts),
                String::from_utf8_lossy(&whole),
                "{page:?} in parts of {part} bytes"
            );
            if part == 1 {
                let (offset, count) = page.as_ref().map_or((0, 14), |p| (p.offset, p.count));
                let items = (offset + count).min(14).saturating_sub(offset);
                assert_eq!(calls, items + 2, "the head, each item, then the outcome");
            }
        }
        let bundle: Value = serde_json::from_slice(&whole).unwrap_or_default();
        let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
        let (offset, count) = page.as_ref().map_or((0, 14), |p| (p.offset, p.count));
        let ids: Vec<&str> = entries
            .iter()
            .filter(|e| e["resource"]["resourceType"] == "Observation")
            .filter_map(|e| e["resource"]["id"].as_str())
            .collect();
        let expected: Vec<String> = (offset.min(14)..(offset + count).min(14))
            .map(|i| i.to_string())
            .collect();
        assert_eq!(ids, expected, "{page:?}");
        assert_eq!(bundle["total"], 14);
        assert_eq!(
            entries.first().map(|e| &e["resource"]["resourceType"]),
            Some(&json!("Patient"))
        );
        assert_eq!(
            entries.last().map(|e| &e["resource"]["resourceType"]),
            Some(&json!("OperationOutcome"))
        );
        let provenances = entries
            .iter()
            .filter(|e| e["resource"]["resourceType"] == "Provenance")
            .count();
        assert_eq!(provenances, ids.len(), "one Provenance per item");
    }
}
