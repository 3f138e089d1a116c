use crate::read::{clip, codings, first_coding, str_at};
use crate::Json;
use mcr_domain::DataClass;

/// Each data class and the FHIR resource types that hold it: the one table, read both ways
/// (what to ask a source for, and which class a resource it sent belongs to). A
/// `DocumentReference` is a document unless its category or type says `assessment`.
const CLASS_TYPES: [(DataClass, &[&str]); 12] = [
    (DataClass::Demographics, &["Patient"]),
    (DataClass::CareTeam, &["EpisodeOfCare", "CareTeam"]),
    (DataClass::Alerts, &["Flag"]),
    (DataClass::Allergies, &["AllergyIntolerance"]),
    (DataClass::Problems, &["Condition"]),
    (
        DataClass::Medications,
        &["MedicationStatement", "MedicationRequest"],
    ),
    (DataClass::Encounters, &["Encounter"]),
    // Immunisations are shown with results (the record has no section of their own).
    (
        DataClass::Results,
        &["Observation", "DiagnosticReport", "Immunization"],
    ),
    (DataClass::Documents, &["DocumentReference"]),
    (DataClass::Assessments, &["DocumentReference"]),
    // Referrals (a GP's outbound referrals, as GP Connect sends them) are care planned.
    (DataClass::CarePlans, &["CarePlan", "ServiceRequest"]),
    (DataClass::KeyContacts, &["RelatedPerson"]),
];

/// The resource types that carry `class`.
pub fn resource_types_for(class: DataClass) -> &'static [&'static str] {
    CLASS_TYPES
        .iter()
        .find(|(c, _)| *c == class)
        .map_or(&[], |(_, types)| types)
}

/// The data class a resource belongs to, from its type (and, for documents, its category).
/// `None` for types the record does not show.
pub fn classify<J: Json>(r: &J) -> Option<DataClass> {
    let rt = crate::resource_type(r)?;
    let class = CLASS_TYPES
        .iter()
        .find(|(_, types)| types.contains(&rt))
        .map(|(c, _)| *c)?;
    if class != DataClass::Documents {
        return Some(class);
    }
    let is_assessment = codings(r, "category")
        .iter()
        .chain(codings(r, "type").iter())
        .any(|c| c.code == "assessment");
    Some(if is_assessment {
        DataClass::Assessments
    } else {
        DataClass::Documents
    })
}

/// The few fields the merged record shows for an item, read from the raw resource.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    pub display: String,
    pub detail: Option<String>,
    pub status: Option<String>,
    /// The clinically relevant date (onset, effective, period start, authored).
    pub date: Option<String>,
    /// When it was recorded at the source.
    pub recorded: Option<String>,
}

fn text_of_cc<J: Json>(r: &J, field: &str) -> Option<String> {
    first_coding(r, field)
        .and_then(|c| c.display)
        .or_else(|| str_at(r, &[field, "text"]).map(|t| clip(t, crate::MAX_TEXT)))
}

fn status_of<J: Json>(r: &J) -> Option<String> {
    first_coding(r, "clinicalStatus")
        .map(|c| c.code)
        .or_else(|| str_at(r, &["status"]).map(|s| clip(s, 40)))
}

fn quantity<J: Json>(q: &J) -> Option<String> {
    let value = q.get("value")?;
    let v = if let Some(f) = value.as_f64() {
        // Keep the source's precision as far as JSON allows.
        value
            .as_i64()
            .map_or_else(|| format!("{f}"), |i| i.to_string())
    } else {
        return None;
    };
    let unit = q
        .get("unit")
        .or_else(|| q.get("code"))
        .and_then(J::as_str)
        .unwrap_or("");
    Some(clip(format!("{v} {unit}").trim(), 80))
}

fn date_field<J: Json>(r: &J, candidates: &[&[&str]]) -> Option<String> {
    candidates
        .iter()
        .find_map(|p| str_at(r, p))
        .map(|d| clip(d, 40))
}

/// Read what the record shows from a resource. Unknown shapes give an empty summary, never a
/// panic.
pub fn summarise<J: Json>(r: &J) -> Summary {
    let t = crate::resource_type(r).unwrap_or("");
    let recorded = date_field(r, &[&["recordedDate"], &["meta", "lastUpdated"]]);
    let mut s = Summary {
        recorded,
        status: status_of(r),
        ..Summary::default()
    };
    match t {
        "Condition" | "AllergyIntolerance" | "Flag" => {
            s.display = text_of_cc(r, "code").unwrap_or_default();
            s.date = date_field(
                r,
                &[
                    &["onsetDateTime"],
                    &["onsetPeriod", "start"],
                    &["period", "start"],
                    &["recordedDate"],
                ],
            );
            if t == "AllergyIntolerance" {
                let reaction = r.get("reaction").and_then(|rs| rs.at(0)).and_then(|rx| {
                    text_of_cc(rx.get("manifestation")?.at(0)?, "coding").or_else(|| {
                        rx.get("manifestation")?
                            .at(0)?
                            .get("coding")?
                            .at(0)?
                            .get("display")?
                            .as_str()
                            .map(|d| clip(d, 200))
                    })
                });
                let criticality = str_at(r, &["criticality"]);
                s.detail = match (reaction, criticality) {
                    (Some(rx), Some(c)) => Some(format!("{rx} (criticality {c})")),
                    (Some(rx), None) => Some(rx),
                    (None, Some(c)) => Some(format!("criticality {c}")),
                    (None, None) => None,
                };
            }
        }
        "MedicationStatement" | "MedicationRequest" => {
            s.display = text_of_cc(r, "medicationCodeableConcept").unwrap_or_default();
            s.detail = r
                .get("dosage")
                .or_else(|| r.get("dosageInstruction"))
                .and_then(|d| d.at(0))
                .and_then(|d| d.get("text"))
                .and_then(J::as_str)
                .map(|d| clip(d, 300));
            s.date = date_field(
                r,
                &[
                    &["effectivePeriod", "start"],
                    &["effectiveDateTime"],
                    &["authoredOn"],
                    &["dateAsserted"],
                ],
            );
        }
        "Encounter" => {
            s.display = text_of_cc(r, "type")
                .or_else(|| str_at(r, &["class", "display"]).map(|d| clip(d, 200)))
                .unwrap_or_default();
            s.detail = str_at(r, &["class", "display"]).map(|d| clip(d, 100));
            s.date = date_field(r, &[&["period", "start"]]);
        }
        "Observation" => {
            s.display = text_of_cc(r, "code").unwrap_or_default();
            s.detail = r
                .get("valueQuantity")
                .and_then(quantity)
                .or_else(|| str_at(r, &["valueString"]).map(|v| clip(v, 300)))
                .or_else(|| text_of_cc(r, "valueCodeableConcept"))
                .or_else(|| {
                    // Blood pressure style: components.
                    let parts: Vec<String> = r
                        .get("component")?
                        .as_array()?
                        .iter()
                        .take(4)
                        .filter_map(|c| c.get("valueQuantity").and_then(quantity))
                        .collect();
                    (!parts.is_empty()).then(|| parts.join(" / "))
                });
            s.date = date_field(
                r,
                &[
                    &["effectiveDateTime"],
                    &["effectivePeriod", "start"],
                    &["issued"],
                ],
            );
        }
        "Immunization" => {
            s.display = text_of_cc(r, "vaccineCode").unwrap_or_default();
            s.detail = str_at(r, &["lotNumber"]).map(|l| format!("batch {}", clip(l, 40)));
            s.date = date_field(r, &[&["occurrenceDateTime"], &["recorded"]]);
        }
        "ServiceRequest" => {
            s.display = text_of_cc(r, "code")
                .or_else(|| text_of_cc(r, "category"))
                .unwrap_or_default();
            s.detail = r
                .get("note")
                .and_then(|n| n.at(0))
                .and_then(|n| n.get("text"))
                .and_then(J::as_str)
                .map(|d| clip(d, 300));
            s.date = date_field(r, &[&["authoredOn"], &["occurrenceDateTime"]]);
        }
        "DocumentReference" => {
            s.display = str_at(r, &["description"])
                .map(|d| clip(d, 300))
                .or_else(|| text_of_cc(r, "type"))
                .unwrap_or_default();
            s.detail = text_of_cc(r, "type");
            s.date = date_field(r, &[&["date"], &["context", "period", "start"]]);
        }
        "CarePlan" => {
            s.display = str_at(r, &["title"])
                .map(|d| clip(d, 300))
                .or_else(|| text_of_cc(r, "category"))
                .unwrap_or_default();
            s.detail = str_at(r, &["description"]).map(|d| clip(d, 500));
            s.date = date_field(r, &[&["period", "start"], &["created"]]);
        }
        "RelatedPerson" => {
            let name = r.get("name").and_then(|n| n.at(0));
            let given = name
                .and_then(|n| n.get("given"))
                .and_then(|g| g.at(0))
                .and_then(J::as_str)
                .unwrap_or("");
            let family = name
                .and_then(|n| n.get("family"))
                .and_then(J::as_str)
                .unwrap_or("");
            s.display = clip(format!("{given} {family}").trim(), 200);
            let rel = text_of_cc(r, "relationship");
            let phone = r
                .get("telecom")
                .and_then(|t| t.at(0))
                .and_then(|t| t.get("value"))
                .and_then(J::as_str);
            s.detail = match (rel, phone) {
                (Some(r), Some(p)) => Some(format!("{r}, {}", clip(p, 40))),
                (Some(r), None) => Some(r),
                (None, Some(p)) => Some(clip(p, 40)),
                (None, None) => None,
            };
            s.date = date_field(r, &[&["period", "start"]]);
        }
        "EpisodeOfCare" => {
            s.display = text_of_cc(r, "type").unwrap_or_default();
            s.detail = str_at(r, &["managingOrganization", "display"]).map(|d| clip(d, 200));
            s.date = date_field(r, &[&["period", "start"]]);
        }
        _ => {
            s.display = str_at(r, &["text", "div"])
                .map(|d| clip(d, 200))
                .unwrap_or_default();
        }
    }
    if s.display.is_empty() {
        s.display = format!("{t} (no description given)");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// What the record shows of `r`, the same whether read from the parsed `Value` or from the
    /// gateway's borrowed reading of the text ([`crate::Doc`]).
    fn summary(r: &Value) -> Summary {
        let text = r.to_string();
        let doc = crate::Doc::parse(&text).expect("JSON");
        let s = summarise(r);
        assert_eq!(summarise(&doc), s, "the two readings disagree on {r}");
        assert_eq!(
            classify(&doc),
            classify(r),
            "the two readings disagree on {r}"
        );
        s
    }

    #[test]
    fn classifies_by_type_and_category() {
        assert_eq!(
            classify(&json!({"resourceType": "Condition"})),
            Some(DataClass::Problems)
        );
        assert_eq!(
            classify(
                &json!({"resourceType": "DocumentReference", "category": [{"coding": [{"system": "x", "code": "assessment"}]}]})
            ),
            Some(DataClass::Assessments)
        );
        assert_eq!(
            classify(&json!({"resourceType": "DocumentReference"})),
            Some(DataClass::Documents)
        );
        assert_eq!(classify(&json!({"resourceType": "Basic"})), None);
        assert_eq!(classify(&json!({"resourceType": 3})), None);
    }

    #[test]
    fn summarises_observation_and_medication() {
        let obs = json!({"resourceType": "Observation", "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4", "display": "HbA1c"}]},
            "valueQuantity": {"value": 48, "unit": "mmol/mol"}, "effectiveDateTime": "2026-01-02"});
        let s = summary(&obs);
        assert_eq!(s.display, "HbA1c");
        assert_eq!(s.detail.as_deref(), Some("48 mmol/mol"));
        assert_eq!(s.date.as_deref(), Some("2026-01-02"));

        let med = json!({"resourceType": "MedicationStatement", "status": "active",
            "medicationCodeableConcept": {"coding": [{"system": "https://dmd.nhs.uk", "code": "322236009", "display": "Paracetamol 500mg tablets"}]},
            "dosage": [{"text": "Two tablets four times a day"}], "effectivePeriod": {"start": "2025-03-01"}});
        let s = summary(&med);
        assert_eq!(s.display, "Paracetamol 500mg tablets");
        assert_eq!(s.status.as_deref(), Some("active"));
        assert_eq!(s.detail.as_deref(), Some("Two tablets four times a day"));
    }

    #[test]
    fn garbage_gives_a_placeholder_not_a_panic() {
        let s = summary(
            &json!({"resourceType": "Condition", "code": {"coding": "nope"}, "onsetDateTime": 12}),
        );
        assert_eq!(s.display, "Condition (no description given)");
        assert_eq!(s.date, None);
    }
}

#[cfg(test)]
mod table_tests {
    use super::*;

    #[test]
    fn every_class_has_types_and_every_type_classifies_back() {
        for class in DataClass::ALL {
            let types = resource_types_for(class);
            assert!(!types.is_empty(), "{class:?} has no resource type");
            for rt in types {
                let r = serde_json::json!({"resourceType": rt});
                let back = classify(&r).expect("a shown type");
                let same =
                    back == class || (*rt == "DocumentReference" && back == DataClass::Documents);
                assert!(same, "{rt} is {back:?}, not {class:?}");
            }
        }
        let assessment = serde_json::json!({"resourceType": "DocumentReference",
            "category": [{"coding": [{"system": "http://example.org/doc-category", "code": "assessment"}]}]});
        assert_eq!(classify(&assessment), Some(DataClass::Assessments));
        assert_eq!(
            classify(&serde_json::json!({"resourceType": "Basic"})),
            None
        );
    }
}
