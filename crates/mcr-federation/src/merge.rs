//! One record from many answers: drop what the grant does not cover, withhold what must not
//! be shown, then merge items that several sources hold into one item with all their sources.
//! Pure: no I/O, no clock.

use crate::SourceFetch;
use mcr_domain::{
    DataClass, ItemSource, MergedRecord, NhsNumber, RecordItem, Section, SourceOutcome,
    SourceStatus,
};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

/// What the merge needs besides the answers.
pub struct MergeInput<'a> {
    pub nhs_number: &'a NhsNumber,
    /// Data classes the viewer may see.
    pub classes: &'a BTreeSet<DataClass>,
    /// Data classes each source shares with the viewer's kind of organisation
    /// (absent source = shares everything).
    pub source_shares: &'a HashMap<mcr_domain::SourceId, BTreeSet<DataClass>>,
    /// True for items that must be withheld from every view (sensitive codes, confidential labels).
    pub withhold: &'a (dyn Fn(&Value) -> bool + Sync),
    /// For roles that see recent encounters only: the earliest date (`YYYY-MM-DD`) shown.
    /// Older or undated encounters are left out (not counted as withheld).
    pub encounters_since: Option<&'a str>,
}

/// Items that are the same across sources share a key: same kind of item, same code, and the
/// same period (what "same period" means depends on the kind of item).
impl std::fmt::Debug for MergeInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergeInput")
            .field("classes", &self.classes)
            .finish_non_exhaustive()
    }
}

fn merge_key(
    section: Section,
    summary: &mcr_fhir::Summary,
    code: Option<&(String, String)>,
) -> Option<String> {
    let (system, code) = code?;
    let day = |d: &Option<String>| {
        d.as_deref()
            .map(|d| d.chars().take(10).collect::<String>())
            .unwrap_or_default()
    };
    Some(match section {
        // The same drug, current or not, from GP and hospital is one line.
        Section::Medications => {
            let current = matches!(
                summary.status.as_deref(),
                Some("active" | "intended" | "on-hold")
            );
            format!("med|{system}|{code}|{current}")
        }
        Section::Allergies => format!("allergy|{system}|{code}"),
        Section::Problems => format!("problem|{system}|{code}|{}", day(&summary.date)),
        Section::Alerts => format!("alert|{system}|{code}"),
        // A measurement is the same if taken at the same instant.
        Section::Results => format!(
            "result|{system}|{code}|{}",
            summary.date.as_deref().unwrap_or("")
        ),
        // Encounters, documents and care items are each their own.
        Section::Encounters | Section::Documents | Section::CareAndSupport => return None,
    })
}

/// Takes the answers by value: each resource is moved into the record, never copied.
pub fn merge(input: &MergeInput<'_>, fetches: Vec<SourceFetch>) -> MergedRecord {
    let mut items: Vec<RecordItem> = Vec::new();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    let mut outcomes = Vec::with_capacity(fetches.len());
    let mut patient: Option<(usize, Value)> = None;
    let mut unavailable: BTreeSet<Section> = BTreeSet::new();
    let mut withheld_any = false;

    for (rank, mut f) in fetches.into_iter().enumerate() {
        let mut kept = 0usize;
        let mut withheld = 0usize;
        let (status, resources) = match std::mem::replace(&mut f.outcome, Ok(Vec::new())) {
            Err(reason) => (SourceStatus::Failed(reason), Vec::new()),
            Ok(resources) => (SourceStatus::Ok, resources),
        };
        let shares = input.source_shares.get(&f.source);
        for received in resources {
            let r = &received.value;
            let Some(class) = mcr_fhir::classify(r) else {
                continue;
            };
            let section = mcr_domain::Section::for_class(class);
            if !input.classes.contains(&class) {
                if let Some(s) = section {
                    unavailable.insert(s);
                }
                if class != DataClass::Demographics {
                    continue;
                }
            }
            if shares.is_some_and(|s| !s.contains(&class)) {
                withheld += 1;
                continue;
            }
            if (input.withhold)(r) {
                withheld += 1;
                continue;
            }
            if class == DataClass::Demographics {
                if input.classes.contains(&DataClass::Demographics) && patient.is_none() {
                    patient = Some((rank, received.value));
                }
                continue;
            }
            let Some(section) = section else { continue };
            let summary = mcr_fhir::summarise(r);
            if class == DataClass::Encounters {
                if let Some(since) = input.encounters_since {
                    if summary.date.as_deref().is_none_or(|d| d < since) {
                        continue;
                    }
                }
            }
            kept += 1;
            let code = mcr_fhir::first_coding(r, code_field(r)).map(|c| (c.system, c.code));
            let source = ItemSource {
                source: f.source.clone(),
                org_code: f.org_code.clone(),
                org_name: f.org_name.clone(),
                full_url: full_url(&f.base_url, r),
                recorded: summary.recorded.clone(),
            };
            let key = merge_key(section, &summary, code.as_ref());
            let existing = key
                .as_ref()
                .and_then(|k| by_key.get(k))
                .map(|i| &mut items[*i])
                // The same source twice is two entries at that source, not a second opinion.
                .filter(|e| !e.sources.iter().any(|s| s.source == source.source));
            if let Some(existing) = existing {
                if existing.detail != summary.detail {
                    let note = format!(
                        "Sources differ: {} says “{}”; {} says “{}”",
                        existing.sources[0].org_name,
                        existing.detail.as_deref().unwrap_or("nothing"),
                        source.org_name,
                        summary.detail.as_deref().unwrap_or("nothing"),
                    );
                    existing.discrepancy = Some(match existing.discrepancy.take() {
                        Some(prev) => format!("{prev}. {note}"),
                        None => note,
                    });
                }
                existing.sources.push(source);
                continue;
            }
            if let Some(k) = key {
                by_key.entry(k).or_insert(items.len());
            }
            items.push(RecordItem {
                section,
                class,
                resource_type: mcr_fhir::resource_type(r).unwrap_or_default().to_owned(),
                code,
                display: summary.display,
                detail: summary.detail,
                status: summary.status,
                date: summary.date,
                sources: vec![source],
                discrepancy: None,
                // The parsed form is dropped here: only the text is kept for the view.
                resource: received.json,
            });
        }
        withheld_any |= withheld > 0;
        outcomes.push(SourceOutcome {
            source: f.source.clone(),
            org_code: f.org_code.clone(),
            org_name: f.org_name.clone(),
            status,
            items: kept,
            withheld,
            elapsed_ms: f.elapsed_ms,
        });
    }

    let mut sections: Vec<(Section, Vec<RecordItem>)> =
        Section::ALL.iter().map(|s| (*s, Vec::new())).collect();
    for item in items {
        if let Some((_, list)) = sections.iter_mut().find(|(s, _)| *s == item.section) {
            list.push(item);
        }
    }
    for (_, list) in &mut sections {
        // Newest first; undated items last.
        list.sort_by(|a, b| b.date.cmp(&a.date));
    }
    // A section is unavailable only if no granted class maps to it.
    unavailable.retain(|s| {
        !input
            .classes
            .iter()
            .any(|c| Section::for_class(*c) == Some(*s))
    });
    for s in Section::ALL {
        let granted = input
            .classes
            .iter()
            .any(|c| Section::for_class(*c) == Some(s));
        if !granted {
            unavailable.insert(s);
        }
    }
    MergedRecord {
        nhs_number: input.nhs_number.clone(),
        patient: patient.map(|(_, p)| p),
        sections,
        sources: outcomes,
        unavailable_sections: unavailable.into_iter().collect(),
        withheld: withheld_any,
    }
}

fn code_field(r: &Value) -> &'static str {
    match mcr_fhir::resource_type(r) {
        Some("MedicationStatement" | "MedicationRequest") => "medicationCodeableConcept",
        Some("Encounter" | "DocumentReference" | "EpisodeOfCare") => "type",
        Some("RelatedPerson") => "relationship",
        Some("CarePlan") => "category",
        _ => "code",
    }
}

fn full_url(base: &str, r: &Value) -> String {
    format!(
        "{}/{}/{}",
        base.trim_end_matches('/'),
        mcr_fhir::resource_type(r).unwrap_or("Resource"),
        mcr_fhir::resource_id(r).unwrap_or("unknown")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcr_domain::{FailureReason, OdsCode, SourceId};
    use serde_json::json;

    fn fetch(id: &str, org: &str, resources: Vec<Value>) -> SourceFetch {
        SourceFetch {
            source: SourceId::parse(id).unwrap(),
            org_code: OdsCode::parse(org).unwrap(),
            org_name: format!("{org} org"),
            base_url: format!("http://{id}.example"),
            outcome: Ok(resources
                .into_iter()
                .map(crate::Received::from_value)
                .collect()),
            elapsed_ms: 5,
            source_ms: None,
        }
    }

    fn med(id: &str, code: &str, dose: &str) -> Value {
        json!({"resourceType": "MedicationStatement", "id": id, "status": "active",
            "medicationCodeableConcept": {"coding": [{"system": "https://dmd.nhs.uk", "code": code, "display": "Drug"}]},
            "dosage": [{"text": dose}], "subject": {"reference": "Patient/p"}})
    }

    fn nhs() -> NhsNumber {
        NhsNumber::parse("9434765919").unwrap()
    }

    fn run(classes: &[DataClass], fetches: &[SourceFetch]) -> MergedRecord {
        let classes: BTreeSet<DataClass> = classes.iter().copied().collect();
        let shares = HashMap::new();
        let n = nhs();
        let withhold = |r: &Value| r.get("meta").and_then(|m| m.get("security")).is_some();
        merge(
            &MergeInput {
                nhs_number: &n,
                classes: &classes,
                source_shares: &shares,
                withhold: &withhold,
                encounters_since: None,
            },
            fetches.to_vec(),
        )
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
        secret["meta"] = json!({"security": [{"code": "R"}]});
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
        let classes: BTreeSet<DataClass> = DataClass::ALL.into_iter().collect();
        let shares = HashMap::new();
        let n = nhs();
        let r = merge(
            &MergeInput {
                nhs_number: &n,
                classes: &classes,
                source_shares: &shares,
                withhold: &|_| false,
                encounters_since: Some("2026-09-01"),
            },
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
        let classes: BTreeSet<DataClass> = DataClass::ALL.into_iter().collect();
        let mut shares = HashMap::new();
        shares.insert(
            SourceId::parse("gp").unwrap(),
            [DataClass::Allergies].into_iter().collect(),
        );
        let n = nhs();
        let r = merge(
            &MergeInput {
                nhs_number: &n,
                classes: &classes,
                source_shares: &shares,
                withhold: &|_| false,
                encounters_since: None,
            },
            vec![fetch("gp", "GPA", vec![med("m1", "111", "a")])],
        );
        assert_eq!(r.item_count(), 0);
    }
}
