//! The protected person list as a FHIR `List` (`/fhir/List/protected-persons`): privacy
//! officers read it (`GET`), put a patient on it (`POST` a `Parameters` with `patient`,
//! `category` and `note`) and take one off (`DELETE …/{nhs}`). Who may is decided in the
//! gateway, which audits every read, change and refusal.

use super::fhir_json;
use super::patient::parse_nhs;
use crate::auth::Caller;
use crate::{ApiError, AppState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use mcr_domain::NhsNumber;
use serde_json::{json, Value};

const CATEGORY_SYSTEM: &str = "https://mycarerecord.example/fhir/CodeSystem/protected-category";

pub(crate) async fn list(
    State(state): State<AppState>,
    Caller(ctx): Caller,
) -> Result<Response, ApiError> {
    let people = state.gateway.protected_persons(&ctx).await?;
    let entries: Vec<Value> = people
        .iter()
        .map(|p| {
            json!({
                "item": {"identifier": {"system": NhsNumber::SYSTEM, "value": p.nhs_number}},
                "date": p.added_at,
                "flag": {"coding": [{"system": CATEGORY_SYSTEM, "code": p.category}], "text": p.note},
                "extension": [{"url": "https://mycarerecord.example/fhir/StructureDefinition/added-by", "valueString": p.added_by}]
            })
        })
        .collect();
    Ok(fhir_json(
        StatusCode::OK,
        &json!({
            "resourceType": "List",
            "id": "protected-persons",
            "status": "current",
            "mode": "working",
            "title": "Protected person list: a view of anyone on it is flagged for the privacy officer",
            "entry": entries,
        }),
    ))
}

fn param<'a>(body: &'a Value, name: &str) -> Option<&'a Value> {
    body.get("parameter")?
        .as_array()?
        .iter()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
}

fn param_str<'a>(body: &'a Value, name: &str, keys: &[&str]) -> Option<&'a str> {
    let p = param(body, name)?;
    keys.iter().find_map(|k| p.get(*k)?.as_str())
}

pub(crate) async fn add(
    State(state): State<AppState>,
    Caller(ctx): Caller,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    if mcr_fhir::resource_type(&body) != Some("Parameters") {
        return Err(ApiError::invalid(
            "wrong-resource-type",
            "The body must be a Parameters resource with patient, category and note.",
        ));
    }
    let nhs = param(&body, "patient")
        .and_then(|p| {
            p.get("valueIdentifier")
                .and_then(|i| i.get("value"))
                .or_else(|| p.get("valueString"))
        })
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::invalid(
                "missing-patient",
                "Give the patient's NHS number as parameter `patient` (valueIdentifier or valueString).",
            )
            .at("Parameters.parameter[patient]")
        })?;
    let nhs = parse_nhs(nhs, "Parameters.parameter[patient]")?;
    let category = param_str(&body, "category", &["valueCode", "valueString"]).unwrap_or("");
    let note = param_str(&body, "note", &["valueString"]).unwrap_or("");
    let seq = state
        .gateway
        .add_protected_person(&ctx, &nhs, category, note)
        .await?;
    Ok(fhir_json(
        StatusCode::CREATED,
        &mcr_fhir::operation_outcome(&[mcr_fhir::Issue {
            severity: mcr_fhir::IssueSeverity::Information,
            ..mcr_fhir::Issue::error(
                mcr_fhir::IssueType::Informational,
                "protected",
                format!("On the protected person list (audit record {seq})."),
            )
        }]),
    ))
}

pub(crate) async fn remove(
    State(state): State<AppState>,
    Caller(ctx): Caller,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let nhs = parse_nhs(&raw, "nhs")?;
    match state.gateway.remove_protected_person(&ctx, &nhs).await? {
        Some(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        None => Err(ApiError::not_found(
            "That NHS number is not on the protected person list.",
        )),
    }
}
