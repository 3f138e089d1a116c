//! `GET /fhir/Binary/{nhs}.{source}.{id}`: one document of a patient's record, opened through
//! the gateway exactly as the record page opens it (decided, checked against the source's own
//! `DocumentReference` `{id}`, audited as `open-document` before any byte leaves). The id names
//! the patient and the source, so a caller can ask only for a document that the patient's
//! record at that source lists and that they may see; never for any `Binary` a source holds.
//!
//! With `Accept: application/fhir+json` the answer is a FHIR `Binary` resource (the bytes in
//! base64); otherwise the bytes themselves, as a download, under a sandboxing policy.

use super::fhir_json;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::pages::document::{org_name, pass_on, refusal_words};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use mcr_domain::{NhsNumber, SourceId};
use mcr_fhir::IssueType;
use mcr_gateway::DocumentOutcome;
use serde_json::json;

/// The parts of a `Binary` id: NHS number, source, the source's `DocumentReference` id.
pub(crate) fn parse_binary_id(id: &str) -> Option<(NhsNumber, SourceId, &str)> {
    let mut parts = id.splitn(3, '.');
    let nhs = NhsNumber::parse(parts.next()?).ok()?;
    let source = SourceId::parse(parts.next()?).ok()?;
    let doc = parts.next().filter(|d| !d.is_empty())?;
    Some((nhs, source, doc))
}

pub(crate) async fn read(
    State(state): State<AppState>,
    Caller(ctx): Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (nhs, source, doc_id) = parse_binary_id(&id).ok_or_else(|| {
        ApiError::invalid(
            "invalid-binary-id",
            "A Binary id here is {NHS number}.{source}.{DocumentReference id}, as the record's documents name it.",
        )
        .at("Binary.id")
    })?;
    let opened = state
        .gateway
        .open_document(&ctx, &nhs, &source, doc_id)
        .await?;
    let doc = match opened {
        DocumentOutcome::Opened(doc) => doc,
        DocumentOutcome::NotPermitted(decision) => {
            return Err(ApiError::forbidden(decision.code(), decision.sentence()))
        }
        DocumentOutcome::Refused(refusal) => {
            let (status, words) = refusal_words(&refusal, &org_name(&state.gateway, &source));
            let kind = match status {
                StatusCode::NOT_FOUND => IssueType::NotFound,
                StatusCode::FORBIDDEN => IssueType::Forbidden,
                _ => IssueType::Exception,
            };
            return Err(ApiError::new(status, kind, refusal.code(), words));
        }
    };
    let wants_resource = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/fhir+json"));
    if !wants_resource {
        return Ok(pass_on(state.gateway.clone(), doc, "attachment"));
    }
    let content_type = doc.content_type.clone();
    let bytes = doc.body.collect().await.map_err(|cut| {
        state.gateway.document_cut_off(&cut);
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            IssueType::Exception,
            "document-cut-off",
            format!("{cut}."),
        )
    })?;
    Ok(fhir_json(
        StatusCode::OK,
        &json!({
            "resourceType": "Binary",
            "id": id,
            "contentType": content_type,
            "data": base64::engine::general_purpose::STANDARD.encode(bytes),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_id_names_the_patient_the_source_and_the_document() {
        let (nhs, source, doc) = parse_binary_id("9434765919.acute.123-doc7").expect("parsed");
        assert_eq!(nhs.as_str(), "9434765919");
        assert_eq!(source.as_str(), "acute");
        assert_eq!(doc, "123-doc7");
        // A document id may itself hold dots.
        assert_eq!(
            parse_binary_id("9434765919.gp.a.b").map(|p| p.2.to_owned()),
            Some("a.b".into())
        );
        for bad in [
            "9434765918.acute.1",
            "9434765919.Acute.1",
            "9434765919.acute.",
            "x",
        ] {
            assert!(parse_binary_id(bad).is_none(), "{bad}");
        }
    }
}
