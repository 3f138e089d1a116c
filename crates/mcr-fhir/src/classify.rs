use crate::read::{clip, codings_at, str_at};
use crate::Json;
use mcr_domain::DataClass;

/// Each data class and the FHIR resource types that hold it: the one table, read both ways
/// (what to ask a source for, and which class a resource it sent belongs to). A type listed
/// under several classes belongs to the first, unless its codes say otherwise: a
/// `DocumentReference` is a document unless its category or type says `assessment`; a `Flag`
/// or `DocumentReference` coded as a legal or end-of-life decision ([`END_OF_LIFE_CODES`]) is
/// legal and end-of-life information, as every `Consent` a source holds is.
const CLASS_TYPES: [(DataClass, &[&str]); 17] = [
    (DataClass::Demographics, &["Patient"]),
    (DataClass::CareTeam, &["CareTeam", "EpisodeOfCare"]),
    (DataClass::Alerts, &["Flag"]),
    (DataClass::Allergies, &["AllergyIntolerance"]),
    (DataClass::Problems, &["Condition"]),
    (
        DataClass::Medications,
        &[
            "MedicationStatement",
            "MedicationRequest",
            "MedicationDispense",
        ],
    ),
    (DataClass::Encounters, &["Encounter"]),
    (DataClass::Appointments, &["Appointment"]),
    (DataClass::Results, &["Observation", "DiagnosticReport"]),
    (DataClass::Immunisations, &["Immunization"]),
    (DataClass::Procedures, &["Procedure"]),
    (DataClass::Referrals, &["ServiceRequest"]),
    (DataClass::Documents, &["DocumentReference"]),
    (DataClass::Assessments, &["DocumentReference"]),
    (DataClass::CarePlans, &["CarePlan"]),
    (DataClass::KeyContacts, &["RelatedPerson"]),
    (
        DataClass::LegalEndOfLife,
        &["Consent", "Flag", "DocumentReference"],
    ),
];

/// SNOMED CT concepts that make a `Flag` or a `DocumentReference` (its `code`, `type` or
/// `category`) legal and end-of-life information: decisions about resuscitation, advance
/// decisions and directives, and who may decide for the patient.
///
/// - 304253006 Not for resuscitation, 714748000 Has advance care plan, 425392003 Active
///   advance directive: HL7 PACIO Advance Directive Interoperability IG, ValueSet
///   `ADIDocumentationTypeVS` (build.fhir.org/ig/HL7/fhir-pacio-adi).
/// - 310305009 Active advance directive, 425393008 Active durable power of attorney for
///   healthcare (a lasting power of attorney for health and welfare), 425394002 Active
///   healthcare will, 425395001 Active living will, 425396000 and 425397009 Active advance
///   directive verified by family / by a healthcare professional: IHE PCC mPSC ValueSet
///   `Active.Advance.Directive.Finding.VS` (profiles.ihe.net/PCC/mPSC).
/// - 450476008 Not for attempted cardiopulmonary resuscitation (finding), the DNACPR code:
///   NHS Digital's End of Life Care FHIR API, CPR status Flag, "SCR Inclusion Dataset, and
///   advised codes" (github.com/nhsconnect/FHIR-END-OF-LIFE-API,
///   pages/explore/api_eol_management_flag_cprstatus.md), and the SCCI1580 (EPaCCS) compliant
///   code where 304253006 is not (support-ew.ardens.org.uk, "Resuscitation status coding
///   SCCI1580").
/// - 816301000000100 Has advance decision to refuse treatment (Mental Capacity Act 2005)
///   (finding), UK extension: the ADRT Flag of the End of Life Care API's worked example (the
///   same NHS Digital programme) and the openEHR UK `advance_care_directive` archetype's "Type
///   of directive" value set. Both checked December 2026; neither needed replacing.
pub const END_OF_LIFE_CODES: [&str; 12] = [
    "304253006",
    "714748000",
    "425392003",
    "310305009",
    "425393008",
    "425394002",
    "425395001",
    "425396000",
    "425397009",
    "450476008",
    "816301000000100",
    // 845151000000104 is "Not aware of do not attempt cardiopulmonary resuscitation clinical
    // decision" (NHS Structured Headings, ResuscitationStatusSnCT): the paramedic must see
    // that no decision is known as plainly as a decision.
    "845151000000104",
];

const SNOMED: &str = "http://snomed.info/sct";

/// The resource types that carry `class`.
pub fn resource_types_for(class: DataClass) -> &'static [&'static str] {
    CLASS_TYPES
        .iter()
        .find(|(c, _)| *c == class)
        .map_or(&[], |(_, types)| types)
}

/// True when the record has a place for resources of type `rt` (a type outside the table is
/// counted and named as not shown, never ignored in silence).
pub fn is_shown_type(rt: &str) -> bool {
    CLASS_TYPES.iter().any(|(_, types)| types.contains(&rt))
}

fn coded_end_of_life<J: Json>(r: &J, fields: &[&str]) -> bool {
    fields.iter().any(|f| {
        codings_at(r, f).any(|c| c.system == SNOMED && END_OF_LIFE_CODES.contains(&c.code))
    })
}

/// The data class a resource belongs to, from its type (and, for flags and documents, its
/// codes). `None` for types the record does not show.
pub fn classify<J: Json>(r: &J) -> Option<DataClass> {
    let rt = crate::resource_type(r)?;
    let class = CLASS_TYPES
        .iter()
        .find(|(_, types)| types.contains(&rt))
        .map(|(c, _)| *c)?;
    match class {
        DataClass::Alerts if coded_end_of_life(r, &["code", "category"]) => {
            Some(DataClass::LegalEndOfLife)
        }
        DataClass::Documents => {
            if coded_end_of_life(r, &["type", "category"]) {
                return Some(DataClass::LegalEndOfLife);
            }
            let is_assessment = codings_at(r, "category")
                .chain(codings_at(r, "type"))
                .any(|c| c.code == "assessment");
            Some(if is_assessment {
                DataClass::Assessments
            } else {
                DataClass::Documents
            })
        }
        other => Some(other),
    }
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
    codings_at(r, field)
        .next()
        .and_then(|c| c.display)
        .or_else(|| str_at(r, &[field, "text"]))
        .map(|t| clip(t, crate::MAX_TEXT))
}

fn status_of<J: Json>(r: &J) -> Option<String> {
    match codings_at(r, "clinicalStatus").next() {
        Some(c) => Some(clip(c.code, crate::read::MAX_CODE)),
        None => str_at(r, &["status"]).map(|s| clip(s, 40)),
    }
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
        "Consent" => {
            // An advance decision, a DNACPR decision or a power of attorney as a source holds
            // it: what (category, else scope), whether it permits or refuses, since when.
            s.display = text_of_cc(r, "category")
                .or_else(|| text_of_cc(r, "scope"))
                .unwrap_or_default();
            let provision = str_at(r, &["provision", "type"]).map(|t| match t {
                "deny" => "refuses".to_owned(),
                "permit" => "permits".to_owned(),
                other => clip(other, 20),
            });
            let actor = r
                .get("provision")
                .and_then(|p| p.get("actor"))
                .and_then(|a| a.at(0))
                .and_then(|a| {
                    text_of_cc(a, "role").map(|role| match str_at(a, &["reference", "display"]) {
                        Some(who) => format!("{role}: {}", clip(who, 100)),
                        None => role,
                    })
                });
            s.detail = match (provision, actor) {
                (Some(p), Some(a)) => Some(format!("{p}; {a}")),
                (p, a) => p.or(a),
            };
            s.date = date_field(r, &[&["dateTime"], &["provision", "period", "start"]]);
        }
        "Procedure" => {
            s.display = text_of_cc(r, "code").unwrap_or_default();
            s.detail = text_of_cc(r, "bodySite").or_else(|| text_of_cc(r, "outcome"));
            s.date = date_field(
                r,
                &[
                    &["performedDateTime"],
                    &["performedPeriod", "start"],
                    &["recorded"],
                ],
            );
        }
        "Appointment" => {
            s.display = str_at(r, &["description"])
                .map(|d| clip(d, 300))
                .or_else(|| text_of_cc(r, "serviceType"))
                .or_else(|| text_of_cc(r, "appointmentType"))
                .unwrap_or_default();
            s.detail = text_of_cc(r, "serviceType").filter(|d| *d != s.display);
            s.date = date_field(r, &[&["start"], &["created"]]);
        }
        "MedicationDispense" => {
            s.display = text_of_cc(r, "medicationCodeableConcept").unwrap_or_default();
            s.detail = r
                .get("quantity")
                .and_then(quantity)
                .map(|q| format!("dispensed {q}"));
            s.date = date_field(r, &[&["whenHandedOver"], &["whenPrepared"]]);
        }
        "DiagnosticReport" => {
            s.display = text_of_cc(r, "code").unwrap_or_default();
            s.detail = str_at(r, &["conclusion"])
                .map(|d| clip(d, 300))
                .or_else(|| {
                    let n = r
                        .get("result")
                        .and_then(|x| x.as_array())
                        .map_or(0, |a| a.len());
                    (n > 0).then(|| format!("{n} result{}", if n == 1 { "" } else { "s" }))
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
        "CareTeam" => {
            s.display = str_at(r, &["name"])
                .map(|d| clip(d, 200))
                .or_else(|| text_of_cc(r, "category"))
                .unwrap_or_default();
            s.detail = r
                .get("managingOrganization")
                .and_then(|m| m.at(0))
                .and_then(|m| m.get("display"))
                .and_then(J::as_str)
                .map(|d| clip(d, 200));
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
    fn legal_and_end_of_life_decisions_are_recognised_by_their_snomed_codes() {
        let dnacpr = json!({"resourceType": "Flag", "status": "active",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "450476008",
                "display": "Not for attempted cardiopulmonary resuscitation"}]},
            "period": {"start": "2026-02-01"}});
        assert_eq!(classify(&dnacpr), Some(DataClass::LegalEndOfLife));
        let s = summary(&dnacpr);
        assert_eq!(s.display, "Not for attempted cardiopulmonary resuscitation");
        assert_eq!(s.date.as_deref(), Some("2026-02-01"));

        // The same code from another code system is not SNOMED's: an ordinary alert.
        let other = json!({"resourceType": "Flag",
            "code": {"coding": [{"system": "http://example.org", "code": "450476008"}]}});
        assert_eq!(classify(&other), Some(DataClass::Alerts));
        let falls = json!({"resourceType": "Flag",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "129839007", "display": "At risk for falls"}]}});
        assert_eq!(classify(&falls), Some(DataClass::Alerts));

        let adrt_letter = json!({"resourceType": "DocumentReference",
            "type": {"coding": [{"system": "http://snomed.info/sct", "code": "816301000000100"}]}});
        assert_eq!(classify(&adrt_letter), Some(DataClass::LegalEndOfLife));

        let lpa = json!({"resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "adr", "display": "Advanced Care Directive"}]},
            "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "425393008",
                "display": "Active durable power of attorney for healthcare"}]}],
            "dateTime": "2024-05-06",
            "provision": {"type": "permit", "actor": [{"role": {"text": "Attorney"}, "reference": {"display": "Jane Doe"}}]}});
        assert_eq!(classify(&lpa), Some(DataClass::LegalEndOfLife));
        let s = summary(&lpa);
        assert_eq!(s.display, "Active durable power of attorney for healthcare");
        assert_eq!(s.detail.as_deref(), Some("permits; Attorney: Jane Doe"));
        assert_eq!(s.date.as_deref(), Some("2024-05-06"));
    }

    #[test]
    fn the_other_clinical_areas_have_a_class_and_a_summary() {
        for (rt, class) in [
            ("Immunization", DataClass::Immunisations),
            ("Procedure", DataClass::Procedures),
            ("ServiceRequest", DataClass::Referrals),
            ("Appointment", DataClass::Appointments),
            ("CareTeam", DataClass::CareTeam),
            ("EpisodeOfCare", DataClass::CareTeam),
            ("MedicationDispense", DataClass::Medications),
            ("DiagnosticReport", DataClass::Results),
        ] {
            assert_eq!(classify(&json!({"resourceType": rt})), Some(class), "{rt}");
        }
        let proc = json!({"resourceType": "Procedure", "status": "completed",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "80146002", "display": "Appendicectomy"}]},
            "performedDateTime": "2019-07-01"});
        let s = summary(&proc);
        assert_eq!(
            (s.display.as_str(), s.date.as_deref()),
            ("Appendicectomy", Some("2019-07-01"))
        );
        let appt = json!({"resourceType": "Appointment", "status": "booked", "description": "Diabetes review",
            "start": "2027-01-10T09:30:00Z"});
        let s = summary(&appt);
        assert_eq!(s.display, "Diabetes review");
        assert_eq!(s.status.as_deref(), Some("booked"));
        assert_eq!(s.date.as_deref(), Some("2027-01-10T09:30:00Z"));
        let report = json!({"resourceType": "DiagnosticReport", "status": "final",
            "code": {"text": "Full blood count"}, "effectiveDateTime": "2026-03-01",
            "result": [{"reference": "Observation/1"}, {"reference": "Observation/2"}]});
        let s = summary(&report);
        assert_eq!(
            (s.display.as_str(), s.detail.as_deref()),
            ("Full blood count", Some("2 results"))
        );
        assert!(!is_shown_type("Goal"));
        assert_eq!(classify(&json!({"resourceType": "Goal"})), None);
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
                // A type under several classes is the first's unless its codes say otherwise.
                let first = CLASS_TYPES
                    .iter()
                    .find(|(_, ts)| ts.contains(rt))
                    .map(|(c, _)| *c);
                assert_eq!(Some(back), first, "{rt} is {back:?}");
                assert!(is_shown_type(rt));
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
