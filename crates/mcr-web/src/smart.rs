//! How a standard SMART client finds out how to be authorised here: the SMART configuration
//! at `/fhir/.well-known/smart-configuration` (SMART App Launch 2.x, "Conformance") and the
//! same token endpoint in the CapabilityStatement's `rest.security` (the `oauth-uris`
//! extension). Both say only what is true: this gateway's own token endpoint serves SMART
//! backend services (client credentials with `private_key_jwt`, RS384 or ES384); people's
//! tokens come from the region's identity provider, and the API accepts SMART v1 and v2
//! `patient/`, `user/` and `system/` scopes.

use crate::system::TOKEN_PATH;
use crate::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

/// The scopes the API understands (each also with a single resource type and a subset of
/// `cruds`); `system/` scopes are what the token endpoint issues, within each client's own.
pub const SCOPES_SUPPORTED: [&str; 9] = [
    "system/*.rs",
    "system/*.read",
    "system/Patient.rs",
    "system/Consent.cu",
    "user/*.rs",
    "user/*.read",
    "user/Consent.cu",
    "patient/*.rs",
    "patient/*.read",
];

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/fhir/.well-known/smart-configuration",
            get(smart_configuration),
        )
        .route(TOKEN_PATH, post(crate::system::token))
}

/// The SMART configuration document.
pub fn configuration(base_url: &str) -> Value {
    json!({
        "token_endpoint": format!("{base_url}{TOKEN_PATH}"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": SCOPES_SUPPORTED,
        "capabilities": [
            "client-confidential-asymmetric",
            "permission-v1",
            "permission-v2",
            "permission-patient",
            "permission-user"
        ]
    })
}

async fn smart_configuration(State(state): State<AppState>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        configuration(&state.base_url).to_string(),
    )
        .into_response()
}

/// The CapabilityStatement's `rest.security`.
pub(crate) fn security(base_url: &str) -> Value {
    json!({
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [{"url": "token", "valueUri": format!("{base_url}{TOKEN_PATH}")}]
        }],
        "service": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
            "code": "SMART-on-FHIR"
        }]}],
        "description": "SMART on FHIR. People: a bearer access token from the region's identity provider (SMART v1 or v2 patient/ and user/ scopes). Systems: SMART backend services at the token endpoint (client credentials, private_key_jwt with RS384 or ES384), naming the end user they act for. Every request is checked against the programme's access rules and audited."
    })
}
