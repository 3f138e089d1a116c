//! GP Connect Access Document (1.x) as the simulated practice system answers it, at
//! `{endpoint}/documents`: Find a patient (`GET /Patient?identifier=…`), Search for a
//! patient's documents (`GET /Patient/{id}/DocumentReference?…`) and Retrieve a document
//! (`GET /Binary/{id}`), from the letters the synthetic practice holds for the patient
//! ([`mcr_synth::SourceSlice::practice_documents`]).
//!
//! Each request is checked as Access Record: Structured's are (`super::admit`: the Spine
//! proxy headers with this interaction's `Ssp-InteractionID`, the access token's claims), and
//! refused with the specification's Spine error codes: `INVALID_PARAMETER` (a missing
//! `identifier` or mandatory `_include`, an `author` or `facility` that is not an ODS code, a
//! `created` without `ge`/`le`), `INVALID_IDENTIFIER_SYSTEM`, `INVALID_NHS_NUMBER`,
//! `PATIENT_NOT_FOUND` (an unknown id, a patient registered at another practice),
//! `NO_PATIENT_CONSENT` (a patient configured as dissenting), `NO_RECORD_FOUND` (a `Binary`
//! this practice does not hold for a patient of its own). As the specification says, Find a
//! patient answers a patient it does not hold as a registered patient with an empty `Bundle`,
//! not an error.

use super::{
    admit, not_registered, patient_error, patient_not_found, practice_path, profile, spine_error,
    GpcError,
};
use crate::{fhir, Shared};
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use mcr_domain::NhsNumber;
use serde_json::{json, Value};

/// `Ssp-InteractionID` of Access Document's Find a patient.
pub const INTERACTION_FIND_PATIENT: &str =
    "urn:nhs:names:services:gpconnect:documents:fhir:rest:search:patient-1";
/// `Ssp-InteractionID` of Search for a patient's documents.
pub const INTERACTION_SEARCH_DOCUMENTS: &str =
    "urn:nhs:names:services:gpconnect:documents:fhir:rest:search:documentreference-1";
/// `Ssp-InteractionID` of Retrieve a document.
pub const INTERACTION_READ_BINARY: &str =
    "urn:nhs:names:services:gpconnect:documents:fhir:rest:read:binary-1";

/// The parameters a consumer must send with a document search (spec: "Search for a
/// patient's documents").
const MANDATORY_INCLUDES: [(&str, &str); 5] = [
    ("_include", "DocumentReference:subject:Patient"),
    ("_include", "DocumentReference:custodian:Organization"),
    ("_include", "DocumentReference:author:Organization"),
    ("_include", "DocumentReference:author:Practitioner"),
    ("_revinclude:recurse", "PractitionerRole:practitioner"),
];

const ODS_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";

/// Bytes of a document per chunk of the streamed `Binary` (a multiple of three, so that each
/// chunk's base64 joins the next's without padding).
const CHUNK: usize = 3 * 16 * 1024;

fn invalid_parameter(why: &str) -> Response {
    spine_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
        "INVALID_PARAMETER",
        "Invalid parameter",
        why,
    )
}

fn no_record_found() -> Response {
    spine_error(
        StatusCode::NOT_FOUND,
        "not-found",
        "NO_RECORD_FOUND",
        "No record found",
        "no document with that id is held by this practice",
    )
}

/// The Access Document service root the request came to: documents' addresses are under it.
fn documents_root(shared: &Shared, headers: &HeaderMap, practice: Option<&str>) -> String {
    format!(
        "{}{}/documents",
        fhir::base_url(shared.scheme, shared.addr, headers),
        practice.map(practice_path).unwrap_or_default()
    )
}

/// The patient with `local_id`, when this practice holds them as a registered patient (any
/// practice's, when the request was not addressed to one).
fn registered_here(shared: &Shared, local_id: &str, practice: Option<&str>) -> bool {
    let registered = shared
        .slice
        .person(local_id)
        .map(|p| p.gp_practice.as_str());
    registered.is_some() && practice.is_none_or(|p| registered == Some(p))
}

fn searchset(resources: Vec<Value>) -> Value {
    json!({
        "resourceType": "Bundle",
        "meta": profile("GPConnect-Searchset-Bundle-1"),
        "type": "searchset",
        "total": resources.iter().filter(|r| r["resourceType"] == "DocumentReference").count(),
        "entry": resources.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>(),
    })
}

/// The patient as Access Document returns them (CareConnect-GPC-Patient-1), managed by the
/// practice asked.
fn stu3_patient(shared: &Shared, local_id: &str) -> Option<Value> {
    let mut p = shared
        .slice
        .resources(local_id, "Patient")
        .into_iter()
        .next()?;
    p["meta"] =
        json!({"versionId": "1", "profile": profile("CareConnect-GPC-Patient-1")["profile"]});
    if let Some(code) = shared
        .slice
        .person(local_id)
        .map(|p| p.gp_practice.as_str())
    {
        p["managingOrganization"] = json!({"reference": format!("Organization/{code}")});
        p["generalPractitioner"] = json!([{"reference": format!("Organization/{code}")}]);
    }
    Some(p)
}

fn stu3_organisation(shared: &Shared, local_id: &str) -> Option<Value> {
    let person = shared.slice.person(local_id)?;
    let org = shared.slice.practice(&person.gp_practice)?;
    Some(json!({
        "resourceType": "Organization", "id": org.code.as_str(),
        "meta": profile("CareConnect-GPC-Organization-1"),
        "identifier": [{"system": ODS_SYSTEM, "value": org.code.as_str()}],
        "name": org.name,
    }))
}

/// `GET {endpoint}/documents/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{n}`.
pub(crate) fn find_patient(
    shared: &Shared,
    headers: &HeaderMap,
    practice: Option<&str>,
    params: &[(String, String)],
) -> Response {
    let options = match admit(shared, headers, practice, INTERACTION_FIND_PATIENT) {
        Ok(o) => o,
        Err(refused) => return *refused,
    };
    let Some((_, identifier)) = params.iter().find(|(k, _)| k == "identifier") else {
        return invalid_parameter("the identifier parameter is missing");
    };
    let (system, value) = identifier.split_once('|').unwrap_or(("", identifier));
    if system != NhsNumber::SYSTEM {
        return spine_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "INVALID_IDENTIFIER_SYSTEM",
            "Invalid identifier system",
            "the identifier parameter's system is not https://fhir.nhs.uk/Id/nhs-number",
        );
    }
    let Ok(nhs) = NhsNumber::parse(value) else {
        return super::invalid_nhs_number(
            "the identifier parameter's NHS number fails its format or check digit",
        );
    };
    match options.errors.get(nhs.as_str()) {
        Some(GpcError::InternalError) => return patient_error(GpcError::InternalError),
        // Only registered patients are found here; anyone else is "no match", not an error.
        Some(GpcError::NotRegistered | GpcError::NotFound) => {
            return fhir::json(StatusCode::OK, &searchset(Vec::new()))
        }
        // A dissenting patient is found; their documents are refused.
        Some(GpcError::Dissent) | None => {}
    }
    let found = shared
        .slice
        .patients()
        .iter()
        .find(|p| p.nhs_number.as_ref() == Some(&nhs))
        .filter(|sp| registered_here(shared, &sp.local_id, practice))
        .and_then(|sp| stu3_patient(shared, &sp.local_id));
    fhir::json(StatusCode::OK, &searchset(found.into_iter().collect()))
}

/// What a document search asked for beyond the mandatory `_include`s.
#[derive(Debug, Default)]
struct Filters {
    created_from: Option<String>,
    created_to: Option<String>,
    types: Vec<String>,
    author: Option<String>,
    facility: Option<String>,
    description: Option<String>,
}

fn read_filters(params: &[(String, String)]) -> Result<Filters, String> {
    for (name, value) in MANDATORY_INCLUDES {
        if !params.iter().any(|(k, v)| k == name && v == value) {
            return Err(format!("the mandatory parameter {name}={value} is missing"));
        }
    }
    let ods = |name: &str, v: &str| -> Result<String, String> {
        match v.split_once('|') {
            Some((ODS_SYSTEM, code)) if !code.is_empty() => Ok(code.to_owned()),
            _ => Err(format!(
                "the {name} parameter is not an ODS code ({ODS_SYSTEM}|code)"
            )),
        }
    };
    let mut f = Filters::default();
    for (name, value) in params {
        match name.as_str() {
            "_include" | "_revinclude:recurse" => {}
            "created" => {
                // Dates compare as text: the same ISO form on both sides, at day precision.
                if let Some(d) = value.strip_prefix("ge") {
                    f.created_from = Some(d.chars().take(10).collect());
                } else if let Some(d) = value.strip_prefix("le") {
                    f.created_to = Some(d.chars().take(10).collect());
                } else {
                    return Err("the created parameter has no ge or le prefix".into());
                }
            }
            "type" => f
                .types
                .push(value.rsplit('|').next().unwrap_or("").to_owned()),
            "author" => f.author = Some(ods("author", value)?),
            "facility" => f.facility = Some(ods("facility", value)?),
            "description" => f.description = Some(value.to_lowercase()),
            other => {
                return Err(format!(
                    "the {} parameter is not supported",
                    other.chars().take(40).collect::<String>()
                ))
            }
        }
    }
    Ok(f)
}

/// `GET {endpoint}/documents/Patient/{id}/DocumentReference?…`.
pub(crate) fn search_documents(
    shared: &Shared,
    headers: &HeaderMap,
    practice: Option<&str>,
    patient: &str,
    params: &[(String, String)],
) -> Response {
    let options = match admit(shared, headers, practice, INTERACTION_SEARCH_DOCUMENTS) {
        Ok(o) => o,
        Err(refused) => return *refused,
    };
    let filters = match read_filters(params) {
        Ok(f) => f,
        Err(why) => return invalid_parameter(&why),
    };
    let Some(sp) = shared.slice.patient(patient) else {
        return patient_not_found();
    };
    if let Some(e) = sp
        .nhs_number
        .as_ref()
        .and_then(|n| options.errors.get(n.as_str()))
    {
        return patient_error(*e);
    }
    if !registered_here(shared, patient, practice) {
        return not_registered();
    }
    let root = documents_root(shared, headers, practice);
    // A simulated record never changes: one answer per question, written once.
    let key = format!("gpc-documents\n{root}\n{patient}\n{filters:?}");
    if let Some(body) = shared.answers.get(&key) {
        return fhir::raw(StatusCode::OK, Body::from(body));
    }
    let mut resources: Vec<Value> = stu3_patient(shared, patient).into_iter().collect();
    resources.extend(stu3_organisation(shared, patient));
    for d in shared.slice.practice_documents(patient) {
        if let Some(doc) = stu3_document(shared, &d, patient, &root) {
            if matches(&doc, &filters) {
                resources.push(doc);
            }
        }
    }
    let body = axum::body::Bytes::from(searchset(resources).to_string());
    shared.answers.put(key, body.clone());
    fhir::raw(StatusCode::OK, Body::from(body))
}

fn matches(doc: &Value, f: &Filters) -> bool {
    let created = doc["created"].as_str().unwrap_or("");
    let day = created.get(..10).unwrap_or(created);
    let org = |path: &str| {
        doc.pointer(path)
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("Organization/"))
            .map(str::to_owned)
    };
    f.created_from.as_deref().is_none_or(|from| day >= from)
        && f.created_to.as_deref().is_none_or(|to| day <= to)
        && (f.types.is_empty()
            || doc
                .pointer("/type/coding/0/code")
                .and_then(Value::as_str)
                .is_some_and(|c| f.types.iter().any(|t| t == c)))
        && f.author
            .as_ref()
            .is_none_or(|a| org("/author/0/reference").as_ref() == Some(a))
        && f.facility
            .as_ref()
            .is_none_or(|a| org("/custodian/reference").as_ref() == Some(a))
        && f.description.as_ref().is_none_or(|d| {
            doc["description"]
                .as_str()
                .is_some_and(|t| t.to_lowercase().contains(d.as_str()))
        })
}

/// A held letter (R4, as the synthetic practice keeps it) as CareConnect-GPC-DocumentReference-1:
/// `created` and `indexed` for `date`, `class` for the category, the practice as custodian and
/// author, and an attachment naming its `Binary` at `root` with its size and type.
fn stu3_document(shared: &Shared, d: &Value, patient: &str, root: &str) -> Option<Value> {
    let id = d["id"].as_str()?;
    let (content_type, bytes) = shared.slice.binary(id)?;
    let code = shared
        .slice
        .person(patient)
        .map(|p| p.gp_practice.to_string())?;
    let att = d.pointer("/content/0/attachment")?;
    Some(json!({
        "resourceType": "DocumentReference",
        "id": id,
        "meta": {"versionId": "1", "profile": profile("CareConnect-GPC-DocumentReference-1")["profile"]},
        "identifier": [{"system": "https://fhir.hertsgp.example/Id/document", "value": id}],
        "status": "current",
        "type": d["type"],
        "class": d.pointer("/category/0").cloned().unwrap_or(Value::Null),
        "subject": {"reference": format!("Patient/{patient}")},
        "created": d["date"],
        "indexed": d["date"],
        "author": [{"reference": format!("Organization/{code}")}],
        "custodian": {"reference": format!("Organization/{code}")},
        "description": d["description"],
        "content": [{"attachment": {
            "contentType": content_type,
            "url": format!("{root}/Binary/{id}"),
            "size": bytes.len(),
            "title": att["title"],
            "creation": att["creation"],
        }}],
        "context": {"practiceSetting": {"coding": [{
            "system": "http://snomed.info/sct",
            "code": "1060971000000108",
            "display": "General practice service",
        }]}},
    }))
}

/// `GET {endpoint}/documents/Binary/{id}`: a FHIR `Binary` with the bytes in base64. The
/// practice holds the document; its base64 is written chunk by chunk as the answer is sent
/// (its length known beforehand), never built whole.
pub(crate) fn read_binary(
    shared: &Shared,
    headers: &HeaderMap,
    practice: Option<&str>,
    id: &str,
) -> Response {
    let options = match admit(shared, headers, practice, INTERACTION_READ_BINARY) {
        Ok(o) => o,
        Err(refused) => return *refused,
    };
    let Some((local, _)) = id.rsplit_once('-') else {
        return no_record_found();
    };
    let Some(sp) = shared.slice.patient(local) else {
        return no_record_found();
    };
    if !registered_here(shared, local, practice) {
        return no_record_found();
    }
    match sp
        .nhs_number
        .as_ref()
        .and_then(|n| options.errors.get(n.as_str()))
    {
        Some(e @ (GpcError::Dissent | GpcError::InternalError)) => return patient_error(*e),
        // Not a patient this practice shares documents for: it holds none of theirs.
        Some(GpcError::NotRegistered | GpcError::NotFound) => return no_record_found(),
        None => {}
    }
    let Some((content_type, bytes)) = shared.slice.binary(id) else {
        return no_record_found();
    };
    let head = format!(
        r#"{{"resourceType":"Binary","id":{},"meta":{{"versionId":"1"}},"contentType":"{content_type}","content":""#,
        Value::from(id)
    );
    let tail = "\"}";
    let length = head.len() + bytes.len().div_ceil(3) * 4 + tail.len();
    // Each chunk is encoded as the body is polled for it.
    let n = bytes.len();
    let chunks = (0..n.div_ceil(CHUNK)).map(move |i| {
        base64::engine::general_purpose::STANDARD.encode(&bytes[i * CHUNK..n.min((i + 1) * CHUNK)])
    });
    let stream = futures::stream::iter(
        std::iter::once(head)
            .chain(chunks)
            .chain(std::iter::once(tail.to_owned()))
            .map(|s| Ok::<_, std::io::Error>(bytes::Bytes::from(s))),
    );
    let mut r = fhir::raw(StatusCode::OK, Body::from_stream(stream));
    r.headers_mut()
        .insert(axum::http::header::CONTENT_LENGTH, length.into());
    r
}
