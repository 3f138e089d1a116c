//! The patient's structured record as a GP Connect provider builds it: the clinical areas
//! asked, each as its primary `List` (with the confidential-items warning), the items read
//! from the same synthetic R4 record and written as STU3.

use super::*;

pub(super) fn confidential(r: &Value) -> bool {
    r.pointer("/meta/security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|s| matches!(s["code"].as_str(), Some("R" | "V")))
}

/// An R4 code-in-a-concept as the STU3 code string.
pub(super) fn code_of(cc: &Value) -> Option<Value> {
    cc.pointer("/coding/0/code").cloned()
}

/// One clinical area's primary list (spec: "Using lists to return data"), with the
/// confidential-items warning if anything was excluded.
pub(super) fn list(
    title: &str,
    code: &str,
    patient: &str,
    items: &[String],
    excluded: bool,
) -> Value {
    let mut l = json!({
        "resourceType": "List",
        "meta": profile("CareConnect-GPC-List-1"),
        "status": "current",
        "mode": "snapshot",
        "title": title,
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code, "display": title}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "entry": items.iter().map(|r| json!({"item": {"reference": r}})).collect::<Vec<_>>(),
    });
    if excluded {
        l["extension"] = json!([{"url": WARNING_URL, "valueCode": "confidential-items"}]);
        l["note"] = json!([{"text": CONFIDENTIAL_TEXT}]);
    }
    if items.is_empty() {
        l["emptyReason"] = json!({"coding": [{"system": "http://hl7.org/fhir/list-empty-reason", "code": "no-content-recorded"}]});
        if !excluded {
            l["note"] = json!([{"text": "Information not available"}]);
        }
    }
    l
}

/// The patient's structured record for the areas asked, as an STU3 Bundle.
pub(super) fn record(slice: &mcr_synth::SourceSlice, local_id: &str, asked: &Asked) -> Value {
    let mut entries: Vec<Value> = Vec::new();
    let mut push = |r: Value| entries.push(json!({ "resource": r }));
    let r4 = |t: &str| slice.resources(local_id, t);
    let practice = slice
        .person(local_id)
        .and_then(|person| slice.practice(&person.gp_practice));
    if let Some(mut p) = r4("Patient").into_iter().next() {
        p["meta"] = profile("CareConnect-GPC-Patient-1");
        if let Some(org) = practice {
            p["managingOrganization"] = json!({"reference": format!("Organization/{}", org.code)});
        }
        push(p);
    }
    if let Some(org) = practice {
        push(json!({
            "resourceType": "Organization", "id": org.code.as_str(),
            "meta": profile("CareConnect-GPC-Organization-1"),
            "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": org.code.as_str()}],
            "name": org.name,
        }));
    }
    let subject = json!({"reference": format!("Patient/{local_id}")});

    if asked.allergies {
        let (mut active, mut ended, mut excluded) = (Vec::new(), Vec::new(), false);
        for a in r4("AllergyIntolerance") {
            if confidential(&a) {
                excluded = true;
                continue;
            }
            let mut s = json!({
                "resourceType": "AllergyIntolerance", "id": a["id"],
                "meta": profile("CareConnect-GPC-AllergyIntolerance-1"),
                "clinicalStatus": a.get("clinicalStatus").and_then(code_of),
                "verificationStatus": a.get("verificationStatus").and_then(code_of).unwrap_or(json!("unconfirmed")),
                "code": a["code"], "patient": subject,
                "assertedDate": a.get("recordedDate").cloned().unwrap_or(Value::Null),
            });
            for f in [
                "type",
                "category",
                "criticality",
                "onsetDateTime",
                "reaction",
                "note",
            ] {
                if let Some(v) = a.get(f) {
                    s[f] = v.clone();
                }
            }
            if s["clinicalStatus"] == "resolved" {
                ended.push(s);
            } else {
                active.push(s);
            }
        }
        let refs: Vec<String> = active
            .iter()
            .map(|a| format!("AllergyIntolerance/{}", a["id"].as_str().unwrap_or("")))
            .collect();
        for a in active {
            push(a);
        }
        push(list(
            "Allergies and adverse reactions",
            "886921000000105",
            local_id,
            &refs,
            excluded,
        ));
        // Ended allergies travel inside their list.
        let contained_refs: Vec<String> = ended
            .iter()
            .map(|a| format!("#{}", a["id"].as_str().unwrap_or("")))
            .collect();
        let mut l = list(
            "Ended allergies",
            "1103671000000101",
            local_id,
            &contained_refs,
            excluded,
        );
        l["contained"] = Value::Array(ended);
        push(l);
    }
    if asked.medication {
        let (mut refs, mut excluded) = (Vec::new(), false);
        for m in r4("MedicationStatement") {
            if confidential(&m) {
                excluded = true;
                continue;
            }
            let id = m["id"].as_str().unwrap_or("").to_owned();
            let start = m
                .pointer("/effectivePeriod/start")
                .or_else(|| m.get("effectiveDateTime"))
                .or_else(|| m.get("dateAsserted"))
                .cloned()
                .unwrap_or(Value::Null);
            let status = m["status"].as_str().unwrap_or("active");
            let plan_status = if status == "active" {
                "active"
            } else {
                "completed"
            };
            push(
                json!({"resourceType": "Medication", "id": format!("{id}-med"),
                "meta": profile("CareConnect-GPC-Medication-1"),
                "code": m["medicationCodeableConcept"]}),
            );
            push(
                json!({"resourceType": "MedicationRequest", "id": format!("{id}-plan"),
                "meta": profile("CareConnect-GPC-MedicationRequest-1"),
                "status": plan_status, "intent": "plan",
                "medicationReference": {"reference": format!("Medication/{id}-med")},
                "subject": subject, "authoredOn": start,
                "dosageInstruction": m.get("dosage").cloned().unwrap_or(json!([]))}),
            );
            push(
                json!({"resourceType": "MedicationRequest", "id": format!("{id}-issue-1"),
                "meta": profile("CareConnect-GPC-MedicationRequest-1"),
                "status": "completed", "intent": "order",
                "basedOn": [{"reference": format!("MedicationRequest/{id}-plan")}],
                "medicationReference": {"reference": format!("Medication/{id}-med")},
                "subject": subject, "authoredOn": start,
                "dosageInstruction": m.get("dosage").cloned().unwrap_or(json!([]))}),
            );
            let mut s = json!({"resourceType": "MedicationStatement", "id": id,
                "meta": profile("CareConnect-GPC-MedicationStatement-1"),
                "status": status, "subject": subject, "taken": "unk",
                "basedOn": [{"reference": format!("MedicationRequest/{id}-plan")}],
                "medicationReference": {"reference": format!("Medication/{id}-med")}});
            for f in [
                "effectivePeriod",
                "effectiveDateTime",
                "dateAsserted",
                "dosage",
                "note",
            ] {
                if let Some(v) = m.get(f) {
                    s[f] = v.clone();
                }
            }
            push(s);
            refs.push(format!("MedicationStatement/{id}"));
        }
        push(list(
            "Medications and medical devices",
            "933361000000108",
            local_id,
            &refs,
            excluded,
        ));
    }
    if asked.problems {
        let (mut refs, mut excluded) = (Vec::new(), false);
        for c in r4("Condition") {
            if confidential(&c) {
                excluded = true;
                continue;
            }
            let mut s = json!({"resourceType": "Condition", "id": c["id"],
                "meta": profile("CareConnect-GPC-ProblemHeader-Condition-1"),
                "clinicalStatus": c.get("clinicalStatus").and_then(code_of),
                "code": c["code"], "subject": subject});
            for f in ["onsetDateTime", "abatementDateTime", "note"] {
                if let Some(v) = c.get(f) {
                    s[f] = v.clone();
                }
            }
            if let Some(d) = c.get("recordedDate") {
                s["assertedDate"] = d.clone();
            }
            refs.push(format!("Condition/{}", c["id"].as_str().unwrap_or("")));
            push(s);
        }
        push(list(
            "Problems",
            "717711000000103",
            local_id,
            &refs,
            excluded,
        ));
    }
    if asked.consultations {
        let (mut refs, mut excluded) = (Vec::new(), false);
        for e in r4("Encounter") {
            if confidential(&e) {
                excluded = true;
                continue;
            }
            let mut s = json!({"resourceType": "Encounter", "id": e["id"],
                "meta": profile("CareConnect-GPC-Encounter-1"), "subject": subject});
            for f in ["status", "type", "period", "class"] {
                if let Some(v) = e.get(f) {
                    s[f] = v.clone();
                }
            }
            refs.push(format!("Encounter/{}", e["id"].as_str().unwrap_or("")));
            push(s);
        }
        push(list(
            "List of consultations",
            "1149501000000101",
            local_id,
            &refs,
            excluded,
        ));
    }
    if asked.investigations || asked.uncategorised {
        let (mut refs, mut excluded) = (Vec::new(), false);
        for o in r4("Observation") {
            if confidential(&o) {
                excluded = true;
                continue;
            }
            let mut s = json!({"resourceType": "Observation", "id": o["id"],
                "meta": profile("CareConnect-GPC-Observation-1"), "subject": subject});
            for f in [
                "status",
                "category",
                "code",
                "effectiveDateTime",
                "effectivePeriod",
                "issued",
                "valueQuantity",
                "valueString",
                "valueCodeableConcept",
                "referenceRange",
                "component",
            ] {
                if let Some(v) = o.get(f) {
                    s[f] = v.clone();
                }
            }
            if let Some(i) = o.pointer("/interpretation/0") {
                s["interpretation"] = i.clone();
            }
            if let Some(t) = o.pointer("/note/0/text") {
                s["comment"] = t.clone();
            }
            refs.push(format!("Observation/{}", o["id"].as_str().unwrap_or("")));
            push(s);
        }
        push(list(
            "Uncategorised data",
            "826501000000100",
            local_id,
            &refs,
            excluded,
        ));
    }
    json!({
        "resourceType": "Bundle",
        "meta": profile("GPConnect-StructuredRecord-Bundle-1"),
        "type": "collection",
        "entry": entries,
    })
}
