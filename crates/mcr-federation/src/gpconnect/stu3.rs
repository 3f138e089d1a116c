//! Reading a GP Connect Access Record: Structured answer (a FHIR STU3 `Bundle` in the
//! CareConnect / GP Connect profiles) into the R4 shapes the rest of the gateway reads.
//!
//! Pure: a `Bundle` in, R4-shaped resources and the provider's list warnings out. Only what
//! the merged record shows is carried across (codes, status, dates, dose, notes, confidentiality
//! labels); STU3-only extensions are left behind. Supporting resources (`Organization`,
//! `Practitioner`, `Medication`, `Specimen`, …) are read to resolve references, never shown on
//! their own; prescription issues and plans (`MedicationRequest`) are folded into the
//! `MedicationStatement` they belong to. Whatever is neither converted nor folded is counted.

use mcr_domain::FailureReason;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// The GP Connect list warning extension and its codes (spec: "Returning data in lists",
/// warning codes).
pub const LIST_WARNING_URL: &str =
    "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-CareConnect-GPC-ListWarningCode-1";

/// What one structured answer holds, read.
#[derive(Debug, Default)]
pub struct Structured {
    /// Clinical items and the `Patient`, R4-shaped, in the order the bundle had them.
    pub resources: Vec<Value>,
    /// The provider's list warnings, once each, as sentences for the banner.
    pub warnings: Vec<String>,
    /// Prescription plans and issues folded into their `MedicationStatement`.
    pub folded: usize,
    /// Resources of types the record does not show (counted, never silently lost).
    pub not_shown: usize,
    /// The practice the record says it is from (the `Patient`'s managing organisation): its
    /// ODS code and name.
    pub practice: Option<(String, String)>,
}

/// The banner's words for a list warning code.
pub fn warning_text(code: &str) -> String {
    match code {
        "confidential-items" => {
            "Some GP record items were excluded by the practice because they are confidential or by the patient's preference.".into()
        }
        "data-in-transit" => {
            "The patient's record from their previous GP practice has not all arrived yet: older information may be missing.".into()
        }
        "data-awaiting-filing" => {
            "The practice has items not yet filed in the patient's record: recent information may be missing.".into()
        }
        other => format!(
            "The GP practice warned that its answer may be incomplete ({}).",
            other.chars().take(60).collect::<String>()
        ),
    }
}

/// Read an Access Record: Structured answer.
pub fn read_bundle(bundle: &Value) -> Result<Structured, FailureReason> {
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(FailureReason::Malformed {
            detail: "the structured record is not a Bundle".into(),
        });
    }
    let entries: Vec<&Value> = match bundle.get("entry") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().filter_map(|e| e.get("resource")).collect(),
        Some(_) => {
            return Err(FailureReason::Malformed {
                detail: "the structured record's Bundle.entry is not a list".into(),
            })
        }
    };
    let by_ref: HashMap<String, &Value> = entries
        .iter()
        .filter_map(|r| Some((reference_of(r)?, *r)))
        .collect();
    // Issues per plan, and the latest issue date, for folding into the statements.
    let mut issues: HashMap<String, (usize, Option<String>)> = HashMap::new();
    for r in &entries {
        if type_of(r) == Some("MedicationRequest") && str_of(r, "intent") == Some("order") {
            for plan in refs(r, "basedOn") {
                let e = issues.entry(plan.to_owned()).or_default();
                e.0 += 1;
                let date = str_of(r, "authoredOn")
                    .or_else(|| {
                        r.pointer("/dispenseRequest/validityPeriod/start")
                            .and_then(Value::as_str)
                    })
                    .map(str::to_owned);
                if date > e.1 {
                    e.1 = date;
                }
            }
        }
    }

    let mut out = Structured::default();
    let mut codes: Vec<String> = Vec::new();
    for r in &entries {
        match type_of(r) {
            Some("List") => {
                list_warnings(r, &mut codes);
                // Resolved allergies travel inside their list (spec: allergies guidance).
                for c in r
                    .get("contained")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    match convert(c, &by_ref, &issues) {
                        Some(v) => out.resources.push(v),
                        None => out.not_shown += 1,
                    }
                }
            }
            Some("MedicationRequest") => out.folded += 1,
            Some(
                "Organization" | "Practitioner" | "PractitionerRole" | "Location" | "Medication"
                | "Specimen" | "ProcedureRequest" | "OperationOutcome",
            ) => {}
            _ => match convert(r, &by_ref, &issues) {
                Some(v) => out.resources.push(v),
                None => out.not_shown += 1,
            },
        }
    }
    let patient = entries.iter().find(|r| type_of(r) == Some("Patient"));
    // Whom the items are about, said by NHS number: the provider's own patient id means
    // nothing to the gateway, whose index knows the patient by NHS number at a GP Connect
    // source. An item naming any other patient, or none, is left untied (counted, never shown).
    let nhs = patient
        .and_then(|p| p.get("identifier"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|i| str_of(i, "system") == Some(mcr_domain::NhsNumber::SYSTEM))
        .and_then(|i| str_of(i, "value"))
        .map(str::to_owned);
    let patient_ref = patient.and_then(|p| reference_of(p));
    for r in &mut out.resources {
        let Some(o) = r.as_object_mut() else { continue };
        for field in ["subject", "patient"] {
            let Some(who) = o.get(field) else { continue };
            let names_the_patient = who.get("reference").and_then(Value::as_str).is_some()
                && who.get("reference").and_then(Value::as_str) == patient_ref.as_deref();
            let tied = match (&nhs, names_the_patient) {
                (Some(n), true) => {
                    json!({"identifier": {"system": mcr_domain::NhsNumber::SYSTEM, "value": n}})
                }
                _ => json!({"display": "a patient this record does not identify"}),
            };
            o.insert(field.to_owned(), tied);
        }
    }
    out.practice = patient
        .and_then(|p| p.pointer("/managingOrganization/reference"))
        .and_then(Value::as_str)
        .and_then(|r| by_ref.get(r))
        .and_then(|org| {
            let code = org
                .get("identifier")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|i| {
                    i.get("system").and_then(Value::as_str)
                        == Some("https://fhir.nhs.uk/Id/ods-organization-code")
                })
                .and_then(|i| i.get("value"))
                .and_then(Value::as_str)?;
            let name = str_of(org, "name")?;
            Some((code.to_owned(), name.chars().take(200).collect()))
        });
    codes.sort();
    codes.dedup();
    out.warnings = codes.iter().map(|c| warning_text(c)).collect();
    Ok(out)
}

fn list_warnings(list: &Value, codes: &mut Vec<String>) {
    for ext in list
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let url = ext.get("url").and_then(Value::as_str).unwrap_or("");
        if !url.ends_with("ListWarningCode-1") {
            continue;
        }
        let code = ext.get("valueCode").and_then(Value::as_str).or_else(|| {
            ext.pointer("/valueCodeableConcept/coding/0/code")
                .and_then(Value::as_str)
        });
        if let Some(code) = code {
            codes.push(code.to_owned());
        }
    }
}

fn type_of(r: &Value) -> Option<&str> {
    r.get("resourceType").and_then(Value::as_str)
}

fn str_of<'a>(r: &'a Value, field: &str) -> Option<&'a str> {
    r.get(field).and_then(Value::as_str)
}

fn reference_of(r: &Value) -> Option<String> {
    Some(format!("{}/{}", type_of(r)?, str_of(r, "id")?))
}

fn refs<'a>(r: &'a Value, field: &str) -> impl Iterator<Item = &'a str> {
    r.get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|x| x.get("reference").and_then(Value::as_str))
}

/// An STU3 `code` that R4 makes a `CodeableConcept` of the given code system.
fn cc(system: &str, code: &str) -> Value {
    json!({"coding": [{"system": system, "code": code}]})
}

/// Copy the named fields that mean the same in STU3 and R4.
fn copy(from: &Value, to: &mut Map<String, Value>, fields: &[&str]) {
    for f in fields {
        if let Some(v) = from.get(*f) {
            to.insert((*f).to_owned(), v.clone());
        }
    }
}

/// One STU3 resource as R4, or `None` for a type the record does not show.
fn convert(
    r: &Value,
    by_ref: &HashMap<String, &Value>,
    issues: &HashMap<String, (usize, Option<String>)>,
) -> Option<Value> {
    let t = type_of(r)?;
    let mut o = Map::new();
    o.insert("resourceType".into(), json!(t));
    copy(r, &mut o, &["id", "identifier"]);
    // Only the confidentiality labels of `meta` matter here (the withhold rules read them).
    if let Some(security) = r.pointer("/meta/security") {
        o.insert("meta".into(), json!({ "security": security }));
    }
    match t {
        "Patient" => {
            copy(
                r,
                &mut o,
                &[
                    "active",
                    "name",
                    "telecom",
                    "gender",
                    "birthDate",
                    "deceasedBoolean",
                    "deceasedDateTime",
                    "address",
                ],
            );
        }
        "AllergyIntolerance" => {
            copy(
                r,
                &mut o,
                &[
                    "type",
                    "category",
                    "criticality",
                    "code",
                    "patient",
                    "onsetDateTime",
                    "onsetPeriod",
                    "reaction",
                    "note",
                ],
            );
            if let Some(s) = str_of(r, "clinicalStatus") {
                o.insert(
                    "clinicalStatus".into(),
                    cc(
                        "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                        s,
                    ),
                );
            }
            if let Some(s) = str_of(r, "verificationStatus") {
                o.insert(
                    "verificationStatus".into(),
                    cc(
                        "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                        s,
                    ),
                );
            }
            if let Some(d) = r.get("assertedDate") {
                o.insert("recordedDate".into(), d.clone());
            }
        }
        "Condition" => {
            copy(
                r,
                &mut o,
                &[
                    "code",
                    "subject",
                    "onsetDateTime",
                    "onsetPeriod",
                    "abatementDateTime",
                    "abatementPeriod",
                    "note",
                ],
            );
            if let Some(s) = str_of(r, "clinicalStatus") {
                o.insert(
                    "clinicalStatus".into(),
                    cc(
                        "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        s,
                    ),
                );
            }
            if let Some(s) = str_of(r, "verificationStatus") {
                o.insert(
                    "verificationStatus".into(),
                    cc(
                        "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                        s,
                    ),
                );
            }
            o.insert(
                "category".into(),
                json!([cc(
                    "http://terminology.hl7.org/CodeSystem/condition-category",
                    "problem-list-item"
                )]),
            );
            if let Some(d) = r.get("assertedDate") {
                o.insert("recordedDate".into(), d.clone());
            }
        }
        "MedicationStatement" => {
            copy(
                r,
                &mut o,
                &[
                    "status",
                    "subject",
                    "effectiveDateTime",
                    "effectivePeriod",
                    "dateAsserted",
                    "note",
                    "reasonCode",
                ],
            );
            let medication = r.get("medicationCodeableConcept").cloned().or_else(|| {
                let m = r.pointer("/medicationReference/reference")?.as_str()?;
                by_ref.get(m)?.get("code").cloned()
            });
            if let Some(m) = medication {
                o.insert("medicationCodeableConcept".into(), m);
            }
            let plan = refs(r, "basedOn").next();
            // The dose as the statement gives it, or as its authorisation (the plan) does.
            let dosage = r.get("dosage").cloned().or_else(|| {
                let p = by_ref.get(plan?)?;
                p.get("dosageInstruction").cloned()
            });
            if let Some(d) = dosage {
                o.insert("dosage".into(), d);
            }
            if let Some((n, last)) = plan.and_then(|p| issues.get(p)) {
                let text = match last {
                    Some(d) => format!(
                        "{n} {} issued; last issued {}",
                        if *n == 1 {
                            "prescription"
                        } else {
                            "prescriptions"
                        },
                        d.chars().take(10).collect::<String>()
                    ),
                    None => format!("{n} prescriptions issued"),
                };
                let mut notes = o
                    .get("note")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                notes.push(json!({ "text": text }));
                o.insert("note".into(), Value::Array(notes));
            }
        }
        "Encounter" => {
            copy(
                r,
                &mut o,
                &["status", "class", "type", "subject", "period", "reason"],
            );
        }
        "Immunization" => {
            let not_given = r.get("notGiven").and_then(Value::as_bool) == Some(true);
            o.insert(
                "status".into(),
                json!(if not_given {
                    "not-done"
                } else {
                    str_of(r, "status").unwrap_or("completed")
                }),
            );
            copy(
                r,
                &mut o,
                &[
                    "patient",
                    "primarySource",
                    "lotNumber",
                    "note",
                    "site",
                    "route",
                ],
            );
            // A vaccine recorded as unknown (NullFlavor UNK) is named by its vaccination
            // procedure (the CareConnect extension).
            let unknown = r
                .pointer("/vaccineCode/coding/0/code")
                .and_then(Value::as_str)
                == Some("UNK");
            let procedure = r
                .get("extension")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|e| {
                    e.get("url")
                        .and_then(Value::as_str)
                        .is_some_and(|u| u.ends_with("VaccinationProcedure-1"))
                })
                .and_then(|e| e.get("valueCodeableConcept"));
            let vaccine = match (unknown, procedure) {
                (true, Some(p)) => Some(p.clone()),
                _ => r.get("vaccineCode").cloned(),
            };
            if let Some(v) = vaccine {
                o.insert("vaccineCode".into(), v);
            }
            if let Some(d) = r.get("date") {
                o.insert("occurrenceDateTime".into(), d.clone());
            }
        }
        "Observation" => {
            copy(
                r,
                &mut o,
                &[
                    "status",
                    "category",
                    "code",
                    "subject",
                    "effectiveDateTime",
                    "effectivePeriod",
                    "issued",
                    "valueQuantity",
                    "valueString",
                    "valueCodeableConcept",
                    "referenceRange",
                    "component",
                    "specimen",
                    "hasMember",
                ],
            );
            // STU3 `interpretation` is one concept, R4's a list; `comment` became `note`.
            if let Some(i) = r.get("interpretation") {
                o.insert("interpretation".into(), json!([i]));
            }
            if let Some(c) = str_of(r, "comment") {
                o.insert("note".into(), json!([{ "text": c }]));
            }
            if let Some(c) = r.get("context") {
                o.insert("encounter".into(), c.clone());
            }
        }
        "DiagnosticReport" => {
            copy(
                r,
                &mut o,
                &[
                    "status",
                    "code",
                    "subject",
                    "effectiveDateTime",
                    "effectivePeriod",
                    "issued",
                    "result",
                    "specimen",
                    "conclusion",
                ],
            );
            if let Some(c) = r.get("category") {
                o.insert("category".into(), json!([c]));
            }
            if let Some(c) = r.get("context") {
                o.insert("encounter".into(), c.clone());
            }
        }
        // An outbound referral: `ReferralRequest` in STU3, a referral `ServiceRequest` in R4.
        "ReferralRequest" => {
            o.insert("resourceType".into(), json!("ServiceRequest"));
            let status = match str_of(r, "status") {
                Some(s @ ("draft" | "active" | "completed" | "entered-in-error")) => s,
                Some("suspended") => "on-hold",
                Some("cancelled") => "revoked",
                _ => "unknown",
            };
            o.insert("status".into(), json!(status));
            o.insert(
                "intent".into(),
                json!(str_of(r, "intent").unwrap_or("order")),
            );
            o.insert(
                "category".into(),
                json!([{"coding": [{"system": "http://snomed.info/sct", "code": "3457005", "display": "Patient referral"}]}]),
            );
            copy(
                r,
                &mut o,
                &[
                    "priority",
                    "subject",
                    "authoredOn",
                    "reasonCode",
                    "performerType",
                ],
            );
            let code = r
                .get("serviceRequested")
                .and_then(|s| s.get(0))
                .or_else(|| r.get("reasonCode").and_then(|s| s.get(0)))
                .or_else(|| r.get("type"));
            if let Some(c) = code {
                o.insert("code".into(), c.clone());
            }
            if let Some(d) = str_of(r, "description") {
                o.insert("note".into(), json!([{ "text": d }]));
            }
            if let Some(c) = r.get("context") {
                o.insert("encounter".into(), c.clone());
            }
        }
        _ => return None,
    }
    Some(Value::Object(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_warning_is_said_once_in_plain_words_and_junk_is_refused() {
        let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "List", "extension": [
                {"url": LIST_WARNING_URL, "valueCode": "confidential-items"},
                {"url": LIST_WARNING_URL, "valueCode": "data-in-transit"}]}},
            {"resource": {"resourceType": "List", "extension": [
                {"url": LIST_WARNING_URL, "valueCode": "confidential-items"}]}},
            {"resource": {"resourceType": "Basic", "id": "x"}}
        ]});
        let s = read_bundle(&bundle).expect("reads");
        assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
        assert!(s.warnings[0].contains("confidential"));
        assert!(s.warnings[1].contains("previous GP practice"));
        assert_eq!(s.not_shown, 1, "a type the record does not show is counted");
        assert_eq!(s.practice, None);
        assert!(read_bundle(&json!({"resourceType": "OperationOutcome"})).is_err());
        assert!(read_bundle(&json!({"resourceType": "Bundle", "entry": {}})).is_err());
    }

    #[test]
    fn the_practice_is_the_patients_managing_organisation() {
        let bundle = json!({"resourceType": "Bundle", "entry": [
            {"resource": {"resourceType": "Organization", "id": "o2",
                "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "X1"}],
                "name": "Somewhere Else"}},
            {"resource": {"resourceType": "Patient", "id": "p",
                "managingOrganization": {"reference": "Organization/o1"}}},
            {"resource": {"resourceType": "Organization", "id": "o1",
                "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "A20047"}],
                "name": "Riverside Surgery"}}
        ]});
        let s = read_bundle(&bundle).expect("reads");
        assert_eq!(
            s.practice,
            Some(("A20047".to_owned(), "Riverside Surgery".to_owned()))
        );
        assert_eq!(s.resources.len(), 1, "the patient only");
    }
}
