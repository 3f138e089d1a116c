//! The FHIR R4 API under `/fhir`: CapabilityStatement, Patient search and read, the merged
//! record as `$everything`, Consent (permission, objection, relationship) records, emergency
//! access, and the access explanation. Every handler authenticates first ([`Caller`]) and
//! makes one gateway call.

mod audit;
pub(crate) mod binary;
mod bundle;
mod consent;
mod feeds;
mod patient;
mod protected;

use crate::AppState;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use serde_json::Value;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/fhir/metadata", get(patient::metadata))
        .route("/fhir/Patient", get(patient::search))
        .route("/fhir/Patient/{id}", get(patient::read))
        .route(
            "/fhir/Patient/{id}/{operation}",
            get(patient::operation).post(consent::patient_operation),
        )
        .route(
            "/fhir/OperationDefinition/{id}",
            get(consent::operation_definition),
        )
        .route("/fhir/Consent", post(consent::create).get(consent::search))
        .route("/fhir/AuditEvent", get(audit::search))
        .route("/fhir/Binary/{id}", get(binary::read))
        .route(
            "/fhir/List/protected-persons",
            get(protected::list).post(protected::add),
        )
        .route(
            "/fhir/List/protected-persons/{nhs}",
            delete(protected::remove),
        )
        .route("/access/explain", get(consent::explain))
        .route("/feeds/held", get(feeds::held))
}

/// A FHIR JSON response.
pub(crate) fn fhir_json(status: axum::http::StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, mcr_fhir::FHIR_JSON)],
        body.to_string(),
    )
        .into_response()
}
