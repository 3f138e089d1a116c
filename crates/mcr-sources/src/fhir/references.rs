//! A search's answer with its patient references rewritten as a source's configuration says
//! (relative, absolute, on another server, by identifier or contained), as real systems send
//! them.

use super::{outcome, raw};
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use mcr_synth::SourceSlice;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// How a source writes the patient reference (`subject` or `patient`) of the resources it
/// sends. R4 allows each of the first four, and real servers write each; the last cannot be
/// tied to the patient by anyone. From TOML: `references = "absolute"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum References {
    /// `Patient/123`.
    #[default]
    Relative,
    /// `https://host/fhir/Patient/123`: this server's own base URL.
    Absolute,
    /// `#p`, a contained `Patient` carrying the NHS number.
    Contained,
    /// No reference: an `identifier` with the NHS number (a logical reference).
    Identifier,
    /// `https://elsewhere.example/fhir/Patient/123`: another server's patient.
    OtherServer,
}

/// A search's answer with each resource's patient reference written as `style` says
/// (see [`References`]). Anything but a 200 Bundle is passed on as it is.
pub(crate) async fn rewrite_references(
    slice: &SourceSlice,
    base: &str,
    answer: Response,
    style: References,
) -> Response {
    if answer.status() != StatusCode::OK {
        return answer;
    }
    let Ok(bytes) = axum::body::to_bytes(answer.into_body(), usize::MAX).await else {
        return outcome(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            "the answer could not be written",
        );
    };
    let Ok(mut bundle) = serde_json::from_slice::<Value>(&bytes) else {
        return raw(StatusCode::OK, Body::from(bytes));
    };
    for entry in bundle["entry"].as_array_mut().into_iter().flatten() {
        let r = &mut entry["resource"];
        let field = if r.get("subject").is_some() {
            "subject"
        } else {
            "patient"
        };
        let Some(local) = r[field]["reference"]
            .as_str()
            .and_then(|x| x.strip_prefix("Patient/"))
            .map(str::to_owned)
        else {
            continue;
        };
        let nhs = slice
            .patient(&local)
            .and_then(|p| p.nhs_number.as_ref())
            .map(|n| n.as_str().to_owned());
        let identifier = |n: &str| json!({"system": mcr_domain::NhsNumber::SYSTEM, "value": n});
        r[field] = match (style, nhs.as_deref()) {
            (References::Relative, _) => continue,
            (References::Absolute, _) => {
                json!({"reference": format!("{base}/Patient/{local}")})
            }
            (References::OtherServer, _) => {
                json!({"reference": format!("https://elsewhere.example/fhir/Patient/{local}")})
            }
            (References::Identifier, Some(n)) => json!({"identifier": identifier(n)}),
            (References::Contained, Some(n)) => {
                r["contained"] =
                    json!([{"resourceType": "Patient", "id": "p", "identifier": [identifier(n)]}]);
                json!({"reference": "#p"})
            }
            // Without an NHS number there is nothing to write but the id.
            (References::Identifier | References::Contained, None) => continue,
        };
    }
    match serde_json::to_vec(&bundle) {
        Ok(body) => raw(StatusCode::OK, Body::from(body)),
        Err(_) => outcome(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            "the answer could not be written",
        ),
    }
}
