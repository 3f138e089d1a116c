//! The FHIR side of a source: its answers (a resource, an OperationOutcome), the
//! CapabilityStatement and reads here; searches, the care-event feed, batches and the
//! references' rewriting each in a file of its own. Plain functions over the slice; no I/O.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use mcr_synth::SourceSlice;
use serde_json::{json, Value};
use std::net::SocketAddr;

mod batch;
mod feed;
mod references;
pub use references::References;
mod search;

pub(crate) use batch::{batch_requests, batch_response, BatchGet};
pub(crate) use feed::{is_care_event_feed, FeedCache};
pub(crate) use references::rewrite_references;
pub(crate) use search::search;

pub const FHIR_JSON: &str = "application/fhir+json";

pub(crate) fn raw(status: StatusCode, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    r
}

pub(crate) fn json(status: StatusCode, value: &Value) -> Response {
    raw(status, Body::from(value.to_string()))
}

pub(crate) fn outcome(status: StatusCode, code: &str, diagnostics: &str) -> Response {
    json(
        status,
        &json!({
            "resourceType": "OperationOutcome",
            "issue": [{ "severity": "error", "code": code, "diagnostics": diagnostics }],
        }),
    )
}

/// The base URL the client used (Host header), or the listener's address.
pub(crate) fn base_url(scheme: &str, addr: SocketAddr, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() < 256
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        });
    match host {
        Some(h) => format!("{scheme}://{h}"),
        None => format!("{scheme}://{addr}"),
    }
}

pub(crate) fn capability_statement(slice: &SourceSlice, base: &str) -> Value {
    let resources: Vec<Value> = slice
        .resource_types
        .iter()
        .map(|t| {
            let params = if *t == "Patient" {
                json!([
                    { "name": "identifier", "type": "token", "documentation": "system|value, e.g. https://fhir.nhs.uk/Id/nhs-number|9990000018" },
                    { "name": "family", "type": "string", "documentation": "starts with, ignoring case, spaces and punctuation" },
                    { "name": "given", "type": "string", "documentation": "starts with, ignoring case, spaces and punctuation" },
                    { "name": "birthdate", "type": "date", "documentation": "exact day, YYYY-MM-DD" },
                    { "name": "_lastUpdated", "type": "date", "documentation": "gt, ge, lt, le or eq an instant or a day" },
                ])
            } else {
                json!([
                    { "name": "patient", "type": "reference", "definition": "#patient", "documentation": "required: {id}, Patient/{id} or this server's absolute URL for it; or, with :identifier, an NHS number" },
                    { "name": "subject", "type": "reference", "documentation": "alternative to patient" },
                ])
            };
            json!({
                "type": t,
                "interaction": [{ "code": "read" }, { "code": "search-type" }],
                "searchParam": params,
            })
        })
        .collect();
    // The patient parameter as this server implements it: with the `:identifier` modifier.
    let clinical_types: Vec<&str> = slice
        .resource_types
        .iter()
        .copied()
        .filter(|t| *t != "Patient")
        .collect();
    let patient_param = json!({
        "resourceType": "SearchParameter",
        "id": "patient",
        "url": format!("{base}/SearchParameter/patient"),
        "name": "patient",
        "status": "active",
        "description": "The patient an item is about: by id, by reference, or (with :identifier) by NHS number.",
        "code": "patient",
        "base": clinical_types,
        "type": "reference",
        "target": ["Patient"],
        "modifier": ["identifier"],
    });
    json!({
        "resourceType": "CapabilityStatement",
        "contained": [patient_param],
        "status": "active",
        "date": slice.today().format("%Y-%m-%d").to_string(),
        "publisher": slice.organisation.name,
        "kind": "instance",
        "software": { "name": "My Care Record simulated source", "version": env!("CARGO_PKG_VERSION") },
        "implementation": {
            "description": format!("{} ({}), source `{}`", slice.organisation.name, slice.organisation.code, slice.id),
            "url": base,
        },
        "fhirVersion": "4.0.1",
        "format": [FHIR_JSON, "json"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": [{ "code": "batch", "documentation": "GET entries only: searches and reads, at most 100" }],
            "searchParam": [
                { "name": "_count", "type": "number", "documentation": "page size, default 50, at most 1000" },
            ],
        }],
    })
}

pub(crate) fn read(slice: &SourceSlice, resource_type: &str, id: &str) -> Response {
    if !slice.holds_type(resource_type) {
        return outcome(
            StatusCode::NOT_FOUND,
            "not-supported",
            "resource type not held by this server",
        );
    }
    let found = if resource_type == "Patient" {
        slice.patient(id).map(|p| p.resource.clone())
    } else {
        // Resource ids are `{patient local id}-{abbreviation}{n}`.
        id.rsplit_once('-').and_then(|(local, _)| {
            slice
                .resources(local, resource_type)
                .into_iter()
                .find(|r| r["id"] == id)
        })
    };
    match found {
        Some(r) => json(StatusCode::OK, &r),
        None => outcome(
            StatusCode::NOT_FOUND,
            "not-found",
            "no resource with that id",
        ),
    }
}

type Params = [(String, String)];

/// A search the server will not run; becomes a 400 OperationOutcome.
struct Bad(&'static str);

fn bad(msg: &'static str) -> Bad {
    Bad(msg)
}

fn invalid(Bad(msg): Bad) -> Response {
    outcome(StatusCode::BAD_REQUEST, "invalid", msg)
}
