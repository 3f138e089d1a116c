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
mod record;
#[cfg(test)]
mod tests;

use record::record;

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
