//! A GP Connect provider: the simulated GP system answering NHS GP Connect Access Record:
//! Structured (`POST /Patient/$gpc.getstructuredrecord`, FHIR STU3) and Access Document
//! ([`documents`]) from the same synthetic patients it serves as R4, the way a real practice
//! system would answer a shared care record.
//!
//! It checks each request the way the specification says a provider must (`admit`): the
//! Spine proxy headers (the interaction id the one its path answers), the access token's
//! claims, then the `Parameters`; a bad request is refused with the
//! specification's Spine error code and HTTP status (`BAD_REQUEST` 400 for a header or claim,
//! `INVALID_RESOURCE` / `INVALID_PARAMETER` 422, `INVALID_NHS_NUMBER` 400). The specification's
//! patient-level errors (dissent, not registered here, not found, internal error) are given
//! per NHS number by configuration. Items labelled confidential are excluded with the
//! `confidential-items` list warning, as a provider must.

use crate::fhir;
use crate::Shared;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use mcr_domain::NhsNumber;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub mod documents;

/// `Ssp-InteractionID` of Access Record: Structured.
pub const INTERACTION: &str =
    "urn:nhs:names:services:gpconnect:fhir:operation:gpc.getstructuredrecord-1";
const SPINE_ERRORS: &str = "https://fhir.nhs.uk/STU3/CodeSystem/Spine-ErrorOrWarningCode-1";
const WARNING_URL: &str =
    "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-CareConnect-GPC-ListWarningCode-1";
const CONFIDENTIAL_TEXT: &str = "Items excluded due to confidentiality and/or patient preferences.";

/// How the simulated practice system answers GP Connect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GpConnectOptions {
    /// This provider's ASID: `Ssp-To` must name it.
    pub asid: String,
    /// Patients (by NHS number) for whom the provider answers with one of the specification's
    /// errors instead of the record.
    pub errors: BTreeMap<String, GpcError>,
}

/// The patient-level errors a GP Connect provider answers with (spec: the operation's error
/// table and the error handling guidance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GpcError {
    /// The patient has dissented from sharing: `NO_PATIENT_CONSENT`, 403.
    Dissent,
    /// Not a regular patient of this practice: `PATIENT_NOT_FOUND`, 404, saying so.
    NotRegistered,
    /// No record to share: `PATIENT_NOT_FOUND`, 404.
    NotFound,
    /// The provider failed: `INTERNAL_SERVER_ERROR`, 500.
    InternalError,
}

/// An `OperationOutcome` with a Spine error code, as GP Connect providers send.
pub(crate) fn spine_error(
    status: StatusCode,
    issue: &str,
    code: &str,
    display: &str,
    diagnostics: &str,
) -> Response {
    fhir::json(
        status,
        &json!({
            "resourceType": "OperationOutcome",
            "meta": {"profile": ["https://fhir.nhs.uk/STU3/StructureDefinition/GPConnect-OperationOutcome-1"]},
            "issue": [{
                "severity": "error",
                "code": issue,
                "details": {"coding": [{"system": SPINE_ERRORS, "code": code, "display": display}]},
                "diagnostics": diagnostics,
            }],
        }),
    )
}

pub(crate) fn bad_request(why: &str) -> Response {
    spine_error(
        StatusCode::BAD_REQUEST,
        "invalid",
        "BAD_REQUEST",
        "Submitted request is malformed/invalid",
        why,
    )
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
}

/// The Spine proxy headers the specification requires, `Ssp-InteractionID` naming
/// `interaction` (the one the request's path answers). `Err` says which is wrong.
pub(crate) fn check_headers(
    headers: &HeaderMap,
    asid: &str,
    interaction: &str,
) -> Result<(), String> {
    let trace = header(headers, "Ssp-TraceID").ok_or("the Ssp-TraceID header is missing")?;
    if trace.len() > 64 {
        return Err("the Ssp-TraceID header is not a trace id".into());
    }
    header(headers, "Ssp-From").ok_or("the Ssp-From header is missing")?;
    match header(headers, "Ssp-To") {
        None => return Err("the Ssp-To header is missing".into()),
        Some(to) if to != asid => {
            return Err("the Ssp-To header does not name this provider's ASID".into())
        }
        Some(_) => {}
    }
    if header(headers, "Ssp-InteractionID") != Some(interaction) {
        return Err(format!(
            "the Ssp-InteractionID header is not {interaction}, the interaction this path answers"
        ));
    }
    Ok(())
}

/// The access token's claims as GP Connect requires them (spec: "Cross-organisation audit and
/// provenance"). The signature and audience are checked by the source's identity verifier when
/// it has one; this checks what GP Connect adds. `Err` names the claim.
pub(crate) fn check_claims(c: &Value, now: i64) -> Result<(), String> {
    let s = |path: &str| c.pointer(path).and_then(Value::as_str).unwrap_or("");
    for claim in ["iss", "sub", "aud"] {
        if s(&format!("/{claim}")).is_empty() {
            return Err(format!("the {claim} claim is missing"));
        }
    }
    let (iat, exp) = (c["iat"].as_i64(), c["exp"].as_i64());
    match (iat, exp) {
        (Some(iat), Some(exp)) if exp - iat == 300 => {
            if exp < now {
                return Err("the token has expired".into());
            }
        }
        _ => return Err("the exp claim is not five minutes after iat".into()),
    }
    if s("/reason_for_request") != "directcare" {
        return Err("the reason_for_request claim is not directcare".into());
    }
    if !s("/requested_scope")
        .split(' ')
        .any(|scope| scope == "patient/*.read")
    {
        return Err("the requested_scope claim is not patient/*.read".into());
    }
    if s("/requesting_device/resourceType") != "Device"
        || s("/requesting_device/identifier/0/value").is_empty()
        || s("/requesting_device/model").is_empty()
        || s("/requesting_device/version").is_empty()
    {
        return Err(
            "the requesting_device claim is not a Device with identifier, model and version".into(),
        );
    }
    if s("/requesting_organization/resourceType") != "Organization"
        || s("/requesting_organization/identifier/0/system")
            != "https://fhir.nhs.uk/Id/ods-organization-code"
        || s("/requesting_organization/identifier/0/value").is_empty()
    {
        return Err("the requesting_organization claim does not name an ODS code".into());
    }
    if s("/requesting_practitioner/resourceType") != "Practitioner" {
        return Err("the requesting_practitioner claim is not a Practitioner".into());
    }
    if s("/requesting_practitioner/id") != s("/sub") {
        return Err("the requesting_practitioner id is not the sub claim".into());
    }
    let ids: Vec<&str> = c
        .pointer("/requesting_practitioner/identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| i.get("system").and_then(Value::as_str))
        .collect();
    for system in [
        "https://fhir.nhs.uk/Id/sds-user-id",
        "https://fhir.nhs.uk/Id/sds-role-profile-id",
    ] {
        if !ids.contains(&system) {
            return Err(format!(
                "the requesting_practitioner has no {system} identifier"
            ));
        }
    }
    Ok(())
}

/// The token's claims, unverified (the identity verifier checks signatures when configured).
fn claims_of(headers: &HeaderMap) -> Option<Value> {
    let token = header(headers, "authorization")?.strip_prefix("Bearer ")?;
    let body = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// What was asked for: the NHS number and the clinical areas.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Asked {
    pub nhs: String,
    pub allergies: bool,
    pub medication: bool,
    pub problems: bool,
    pub consultations: bool,
    pub investigations: bool,
    pub uncategorised: bool,
}

/// Read the operation's `Parameters` (spec: payload request body), or the error to answer.
pub(crate) fn read_parameters(body: &[u8]) -> Result<Asked, Box<Response>> {
    let invalid_resource = |why: &str| {
        Box::new(spine_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "INVALID_RESOURCE",
            "Invalid validation of resource",
            why,
        ))
    };
    let invalid_parameter = |why: &str| {
        Box::new(spine_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "INVALID_PARAMETER",
            "Invalid parameter",
            why,
        ))
    };
    let p: Value = serde_json::from_slice(body)
        .map_err(|_| invalid_resource("the Parameters resource could not be parsed"))?;
    if p["resourceType"] != "Parameters" {
        return Err(invalid_resource("the body is not a Parameters resource"));
    }
    let params = p["parameter"]
        .as_array()
        .ok_or_else(|| invalid_resource("Parameters.parameter is not a list"))?;
    let mut asked = Asked::default();
    for param in params {
        let name = param["name"].as_str().unwrap_or("");
        let part = |n: &str| {
            param["part"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|x| x["name"] == n)
        };
        match name {
            "patientNHSNumber" => {
                if param["valueIdentifier"]["system"] != NhsNumber::SYSTEM {
                    return Err(invalid_parameter(
                        "patientNHSNumber is not an NHS number identifier",
                    ));
                }
                asked.nhs = param["valueIdentifier"]["value"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
            }
            "includeAllergies" => {
                if part("includeResolvedAllergies")
                    .and_then(|x| x["valueBoolean"].as_bool())
                    .is_none()
                {
                    return Err(invalid_parameter(
                        "includeAllergies without includeResolvedAllergies",
                    ));
                }
                asked.allergies = true;
            }
            "includeMedication" => asked.medication = true,
            "includeProblems" => asked.problems = true,
            "includeConsultations" => asked.consultations = true,
            "includeInvestigations" => asked.investigations = true,
            "includeUncategorisedData" => asked.uncategorised = true,
            "includeImmunisations" | "includeReferrals" | "includeDiaryEntries" => {}
            other => {
                return Err(invalid_parameter(&format!(
                    "unknown parameter `{}`",
                    other.chars().take(40).collect::<String>()
                )))
            }
        }
    }
    if asked.nhs.is_empty() {
        return Err(invalid_parameter(
            "the patientNHSNumber parameter is missing",
        ));
    }
    Ok(asked)
}

/// Answer `POST /Patient/$gpc.getstructuredrecord`.
/// The path under which the GP system answers for one practice, as the directory names it.
pub fn practice_path(ods: &str) -> String {
    format!("/{ods}/STU3/1/gpconnect")
}

/// `practice`: the practice the request was addressed to (its endpoint), when it was; a
/// patient registered elsewhere is then not found, as the specification says.
pub(crate) async fn structured(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
    practice: Option<&str>,
) -> Response {
    let options = match admit(shared, headers, practice, INTERACTION) {
        Ok(o) => o,
        Err(refused) => return *refused,
    };
    let asked = match read_parameters(body) {
        Ok(a) => a,
        Err(refused) => return *refused,
    };
    let Ok(nhs) = NhsNumber::parse(&asked.nhs) else {
        return invalid_nhs_number("the patientNHSNumber fails its format or check digit");
    };
    if let Some(e) = options.errors.get(nhs.as_str()) {
        return patient_error(*e);
    }
    let slice = &shared.slice;
    let Some(sp) = slice
        .patients()
        .iter()
        .find(|p| p.nhs_number.as_ref() == Some(&nhs))
    else {
        return patient_not_found();
    };
    let registered = slice.person(&sp.local_id).map(|p| p.gp_practice.as_str());
    if practice.is_some_and(|p| registered != Some(p)) {
        return not_registered();
    }
    structured_answer(shared, practice, &sp.local_id, &asked)
}

/// The checks every GP Connect request passes before it is answered, whichever interaction
/// (`interaction`, the one its path answers): GP Connect answered here at all, the Spine
/// proxy headers, the access token (its signature and audience when the source checks
/// identities, then its claims). The provider's options, or the refusal to send.
pub(crate) fn admit(
    shared: &Shared,
    headers: &HeaderMap,
    practice: Option<&str>,
    interaction: &str,
) -> Result<GpConnectOptions, Box<Response>> {
    let Some(options) = shared.gp_connect() else {
        return Err(Box::new(fhir::outcome(
            StatusCode::NOT_FOUND,
            "not-supported",
            "this source does not answer GP Connect",
        )));
    };
    if let Err(why) = check_headers(headers, &options.asid, interaction) {
        return Err(Box::new(bad_request(&why)));
    }
    if let Some(v) = &shared.identity {
        let mut audiences = vec![
            fhir::base_url(shared.scheme, shared.addr, headers),
            format!("{}://{}", shared.scheme, shared.addr),
        ];
        if let Some(p) = practice {
            let own: Vec<String> = audiences
                .iter()
                .map(|a| format!("{a}{}", practice_path(p)))
                .collect();
            audiences = own;
        }
        if let Err(why) = v.check(headers, &audiences) {
            return Err(Box::new(bad_request(why)));
        }
    }
    let Some(claims) = claims_of(headers) else {
        return Err(Box::new(bad_request("no access token")));
    };
    // The simulated system keeps real time, as its token verifier does.
    let now = mcr_domain::Clock::now(&mcr_domain::SystemClock).timestamp();
    if let Err(why) = check_claims(&claims, now) {
        return Err(Box::new(bad_request(&why)));
    }
    Ok(options)
}

/// `INVALID_NHS_NUMBER`, 400, saying `why`.
pub(crate) fn invalid_nhs_number(why: &str) -> Response {
    spine_error(
        StatusCode::BAD_REQUEST,
        "value",
        "INVALID_NHS_NUMBER",
        "Invalid NHS number",
        why,
    )
}

/// The answer for a patient configured with one of the specification's errors.
pub(crate) fn patient_error(e: GpcError) -> Response {
    match e {
        GpcError::Dissent => spine_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "NO_PATIENT_CONSENT",
            "Patient has not provided consent to share data",
            "the patient has dissented to sharing their clinical record",
        ),
        GpcError::NotRegistered => not_registered(),
        GpcError::NotFound => patient_not_found(),
        GpcError::InternalError => spine_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "processing",
            "INTERNAL_SERVER_ERROR",
            "Unexpected internal server error",
            "the provider system failed",
        ),
    }
}

fn structured_answer(
    shared: &Shared,
    practice: Option<&str>,
    local_id: &str,
    asked: &Asked,
) -> Response {
    // A simulated record never changes: the same question has the same answer, written once
    // (as the R4 searches' answers are), so that a benchmark measures the gateway, not this.
    let key = format!(
        "gpconnect\n{}\n{}\n{:?}",
        practice.unwrap_or(""),
        local_id,
        asked
    );
    if let Some(body) = shared.answers.get(&key) {
        return fhir::raw(StatusCode::OK, axum::body::Body::from(body));
    }
    let body = axum::body::Bytes::from(record(&shared.slice, local_id, asked).to_string());
    shared.answers.put(key, body.clone());
    fhir::raw(StatusCode::OK, axum::body::Body::from(body))
}

pub(crate) fn not_registered() -> Response {
    spine_error(
        StatusCode::NOT_FOUND,
        "not-found",
        "PATIENT_NOT_FOUND",
        "Patient not found",
        "the patient is not registered at this practice (non-regular patient)",
    )
}

pub(crate) fn patient_not_found() -> Response {
    spine_error(
        StatusCode::NOT_FOUND,
        "not-found",
        "PATIENT_NOT_FOUND",
        "Patient not found",
        "no record for this NHS number",
    )
}

pub(crate) fn profile(name: &str) -> Value {
    json!({"profile": [format!("https://fhir.nhs.uk/STU3/StructureDefinition/{name}")]})
}

fn confidential(r: &Value) -> bool {
    r.pointer("/meta/security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|s| matches!(s["code"].as_str(), Some("R" | "V")))
}

/// An R4 code-in-a-concept as the STU3 code string.
fn code_of(cc: &Value) -> Option<Value> {
    cc.pointer("/coding/0/code").cloned()
}

/// One clinical area's primary list (spec: "Using lists to return data"), with the
/// confidential-items warning if anything was excluded.
fn list(title: &str, code: &str, patient: &str, items: &[String], excluded: bool) -> Value {
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
fn record(slice: &mcr_synth::SourceSlice, local_id: &str, asked: &Asked) -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn good_claims(now: i64) -> Value {
        json!({
            "iss": "https://mcr.example", "sub": "u1", "aud": "https://gp.example",
            "iat": now, "exp": now + 300, "reason_for_request": "directcare",
            "requested_scope": "patient/*.read",
            "requesting_device": {"resourceType": "Device", "identifier": [{"system": "x", "value": "gw"}], "model": "m", "version": "1"},
            "requesting_organization": {"resourceType": "Organization", "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "RWH"}]},
            "requesting_practitioner": {"resourceType": "Practitioner", "id": "u1", "identifier": [
                {"system": "https://fhir.nhs.uk/Id/sds-user-id", "value": "UNK"},
                {"system": "https://fhir.nhs.uk/Id/sds-role-profile-id", "value": "UNK"}]},
        })
    }

    #[test]
    fn each_claim_rule_of_the_spec_is_checked() {
        let now = 1_800_000_000;
        assert_eq!(check_claims(&good_claims(now), now), Ok(()));
        let broken: [(&str, Value, &str); 8] = [
            (
                "/reason_for_request",
                json!("research"),
                "reason_for_request",
            ),
            (
                "/requested_scope",
                json!("organization/*.read"),
                "requested_scope",
            ),
            ("/exp", json!(now + 3600), "five minutes"),
            (
                "/requesting_device/resourceType",
                json!("Patient"),
                "requesting_device",
            ),
            (
                "/requesting_organization/identifier/0/value",
                json!(""),
                "ODS code",
            ),
            (
                "/requesting_practitioner/id",
                json!("someone-else"),
                "sub claim",
            ),
            (
                "/requesting_practitioner/identifier/1/system",
                json!("x"),
                "sds-role-profile-id",
            ),
            ("/sub", json!(""), "sub claim is missing"),
        ];
        for (path, value, said) in broken {
            let mut c = good_claims(now);
            *c.pointer_mut(path).expect(path) = value;
            let why = check_claims(&c, now).expect_err(path);
            assert!(why.contains(said), "{path}: {why}");
        }
        assert!(check_claims(&good_claims(now - 600), now)
            .expect_err("expired")
            .contains("expired"));
    }

    #[test]
    fn parameters_are_read_or_refused_with_the_specs_codes() {
        let ok = br#"{"resourceType":"Parameters","parameter":[
            {"name":"patientNHSNumber","valueIdentifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765919"}},
            {"name":"includeAllergies","part":[{"name":"includeResolvedAllergies","valueBoolean":true}]},
            {"name":"includeMedication"}]}"#;
        let a = read_parameters(ok).expect("reads");
        assert!(a.allergies && a.medication && !a.problems);
        assert_eq!(a.nhs, "9434765919");
        let code = |body: &[u8]| {
            let r = read_parameters(body).expect_err("refused");
            r.status().as_u16()
        };
        assert_eq!(code(b"not json"), 422);
        assert_eq!(code(br#"{"resourceType":"Patient"}"#), 422);
        assert_eq!(
            code(br#"{"resourceType":"Parameters","parameter":[{"name":"includeMedication"}]}"#),
            422
        );
        assert_eq!(
            code(br#"{"resourceType":"Parameters","parameter":[
                {"name":"patientNHSNumber","valueIdentifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765919"}},
                {"name":"includeAllergies"}]}"#),
            422
        );
    }
}
