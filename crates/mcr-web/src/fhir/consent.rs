//! Governance records as FHIR `Consent`: permission to view, opt-out (objection) and its
//! withdrawal or override, and self-claimed care relationships; plus emergency access and the
//! access explanation.
//!
//! A Consent we accept names its kind in `category[0].coding[0].code` (system
//! [`CATEGORY_SYSTEM`]): `permission-to-view` (`provision.type` permit = given, deny =
//! refused; extension `given-by`; an answer on the patient's behalf also `reason-code` and
//! `reason`), `opt-out` (deny = opted out, extension `reason` says on whose word; permit =
//! withdrawn, for privacy officers and Caldicott guardians only, extension `written-request`
//! with the reference of the patient's written request), `opt-out-override` (extension
//! `override-reason` and `reason`, optional `provision.period.end`), `care-relationship`
//! (extension `reason`, optional `provision.period`).

use super::fhir_json;
use super::patient::parse_nhs;
use crate::auth::Caller;
use crate::{ApiError, AppState};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Utc};
use mcr_domain::NhsNumber;
use mcr_gateway::{EmergencyRequest, ObjectionRequest, PermissionRequest, RelationshipClaim};
use serde_json::{json, Value};
use std::collections::HashMap;

pub(crate) const CATEGORY_SYSTEM: &str =
    "https://mycarerecord.example/fhir/CodeSystem/consent-category";
const EXT: &str = "https://mycarerecord.example/fhir/StructureDefinition/";

fn ext<'a>(r: &'a Value, name: &str) -> Option<&'a Value> {
    let url = format!("{EXT}{name}");
    r.get("extension")?
        .as_array()?
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(url.as_str()))
}

fn ext_str(r: &Value, name: &str) -> Option<String> {
    let e = ext(r, name)?;
    e.get("valueString")
        .or_else(|| e.get("valueCode"))?
        .as_str()
        .map(str::to_owned)
}

fn patient_of(r: &Value) -> Result<NhsNumber, ApiError> {
    let p = r.get("patient").ok_or_else(|| {
        ApiError::invalid("missing-patient", "Consent.patient is required.").at("Consent.patient")
    })?;
    let value = p
        .get("reference")
        .and_then(Value::as_str)
        .and_then(|s| s.strip_prefix("Patient/"))
        .or_else(|| p.get("identifier")?.get("value")?.as_str())
        .ok_or_else(|| {
            ApiError::invalid(
                "missing-patient",
                "Consent.patient must be Patient/{NHS number} or an NHS number identifier.",
            )
            .at("Consent.patient")
        })?;
    parse_nhs(value, "Consent.patient")
}

fn instant(r: &Value, path: &[&str], at: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    mcr_fhir::str_at(r, path)
        .map(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|d| d.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::invalid(
                        "invalid-date",
                        format!("{at} must be an instant like 2026-11-24T10:00:00Z."),
                    )
                    .at(at)
                })
        })
        .transpose()
}

/// `POST /fhir/Consent`.
pub(crate) async fn create(
    State(state): State<AppState>,
    Caller(ctx): Caller,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(r) = body?;
    if mcr_fhir::resource_type(&r) != Some("Consent") {
        return Err(ApiError::invalid(
            "wrong-resource-type",
            "The body must be a Consent resource.",
        ));
    }
    let category = r
        .get("category")
        .and_then(|c| c.get(0))
        .and_then(|c| c.get("coding"))
        .and_then(|c| c.get(0))
        .filter(|c| c.get("system").and_then(Value::as_str) == Some(CATEGORY_SYSTEM))
        .and_then(|c| c.get("code"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::invalid(
                "missing-category",
                format!("Consent.category must carry a code from {CATEGORY_SYSTEM}: permission-to-view, opt-out, opt-out-override or care-relationship."),
            )
            .at("Consent.category")
        })?
        .to_owned();
    let nhs = patient_of(&r)?;
    let provision = mcr_fhir::str_at(&r, &["provision", "type"]);
    let seq = match category.as_str() {
        "permission-to-view" => {
            let decision = match provision {
                Some("permit") => "given",
                Some("deny") => "refused",
                _ => {
                    return Err(ApiError::invalid(
                        "invalid-provision",
                        "provision.type must be permit (given) or deny (refused).",
                    )
                    .at("Consent.provision.type"))
                }
            };
            let given_by = ext_str(&r, "given-by").ok_or_else(|| {
                ApiError::invalid("missing-given-by", "Say who answered: extension given-by = patient, representative or best-interests.")
            })?;
            state
                .gateway
                .record_permission(
                    &ctx,
                    &PermissionRequest {
                        nhs_number: nhs.clone(),
                        decision: decision.into(),
                        given_by,
                        reason_code: ext_str(&r, "reason-code"),
                        reason_text: ext_str(&r, "reason"),
                    },
                )
                .await?
        }
        "opt-out" => {
            let req = match provision {
                Some("deny") => ObjectionRequest::Record {
                    nhs_number: nhs.clone(),
                    on_whose_word: ext_str(&r, "reason").unwrap_or_default(),
                    note: None,
                },
                Some("permit") => ObjectionRequest::Withdraw {
                    nhs_number: nhs.clone(),
                    written_request: ext_str(&r, "written-request").unwrap_or_default(),
                    note: ext_str(&r, "reason"),
                },
                _ => {
                    return Err(ApiError::invalid(
                        "invalid-provision",
                        "provision.type must be deny (opt out) or permit (opt back in).",
                    )
                    .at("Consent.provision.type"))
                }
            };
            state.gateway.record_objection(&ctx, &req).await?
        }
        "opt-out-override" => {
            let reason = ext_str(&r, "override-reason").unwrap_or_default();
            let note = ext_str(&r, "reason").unwrap_or_default();
            state
                .gateway
                .record_objection(
                    &ctx,
                    &ObjectionRequest::Override {
                        nhs_number: nhs.clone(),
                        reason,
                        note,
                        until: instant(
                            &r,
                            &["provision", "period", "end"],
                            "Consent.provision.period.end",
                        )?,
                    },
                )
                .await?
        }
        "care-relationship" => {
            let reason = ext_str(&r, "reason").unwrap_or_default();
            let start = instant(
                &r,
                &["provision", "period", "start"],
                "Consent.provision.period.start",
            )?;
            let end = instant(
                &r,
                &["provision", "period", "end"],
                "Consent.provision.period.end",
            )?;
            state
                .gateway
                .claim_relationship(
                    &ctx,
                    &RelationshipClaim {
                        nhs_number: nhs.clone(),
                        reason,
                        start,
                        end,
                    },
                )
                .await?
        }
        other => {
            return Err(ApiError::invalid(
                "unknown-category",
                format!(
                    "Unknown Consent category `{}`.",
                    other.chars().take(40).collect::<String>()
                ),
            )
            .at("Consent.category"))
        }
    };
    // The request as recorded, with what R4 requires of a Consent that the request may leave
    // out: its scope and the policy it records (ppc-1).
    let mut out = r.clone();
    out["id"] = json!(format!("audit-{seq}"));
    out["status"] = json!("active");
    out["scope"] = privacy_scope();
    out["policyRule"] = policy_rule(provision.unwrap_or("permit"));
    Ok(fhir_json(StatusCode::CREATED, &out))
}

/// Every Consent we record is about privacy: who may see the record.
fn privacy_scope() -> Value {
    json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]})
}

/// The policy a Consent records (R4 invariant ppc-1): the patient opted in to sharing (a
/// permission given, an objection withdrawn or overridden, a care relationship) or out of it.
fn policy_rule(provision: &str) -> Value {
    let (code, display) = if provision == "deny" {
        ("OPTOUT", "opt-out")
    } else {
        ("OPTIN", "opt-in")
    };
    json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": code, "display": display}]})
}

fn consent(
    nhs: &NhsNumber,
    category: &str,
    provision: &str,
    at: DateTime<Utc>,
    extensions: Vec<Value>,
) -> Value {
    json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": privacy_scope(),
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": category}]}],
        "patient": {"reference": format!("Patient/{nhs}")},
        "dateTime": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "policyRule": policy_rule(provision),
        "provision": {"type": provision},
        "extension": extensions,
    })
}

fn e(name: &str, value: &str) -> Value {
    json!({"url": format!("{EXT}{name}"), "valueString": value})
}

/// `GET /fhir/Consent?patient=Patient/{nhs}`.
pub(crate) async fn search(
    State(state): State<AppState>,
    Caller(ctx): Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let p = params.get("patient").ok_or_else(|| {
        ApiError::invalid(
            "missing-parameter",
            "Search Consent by patient=Patient/{NHS number}.",
        )
    })?;
    let nhs = parse_nhs(p.strip_prefix("Patient/").unwrap_or(p), "Consent.patient")?;
    let records = state.gateway.governance_records(&ctx, &nhs).await?;
    let mut resources = Vec::new();
    for p in &records.permissions {
        let provision = if p.decision == "given" {
            "permit"
        } else {
            "deny"
        };
        resources.push(consent(
            &nhs,
            "permission-to-view",
            provision,
            p.at,
            [
                Some(e("given-by", &p.given_by)),
                Some(e("organisation", &p.org_code)),
                p.reason_code.as_deref().map(|c| e("reason-code", c)),
            ]
            .into_iter()
            .flatten()
            .collect(),
        ));
    }
    for o in &records.objections {
        let (category, provision) = match o.state.as_str() {
            "active" => ("opt-out", "deny"),
            "withdrawn" => ("opt-out", "permit"),
            _ => ("opt-out-override", "permit"),
        };
        let mut exts = vec![e("on-whose-word", &o.on_whose_word)];
        if let Some(r) = &o.override_reason {
            exts.push(e("override-reason", r));
        }
        let mut c = consent(&nhs, category, provision, o.at, exts);
        if let Some(end) = o.ends_at {
            c["provision"]["period"] = json!({
                "start": o.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "end": end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            });
        }
        resources.push(c);
    }
    for r in &records.relationships {
        let mut c = consent(
            &nhs,
            "care-relationship",
            "permit",
            r.start,
            vec![e("organisation", &r.org_code), e("kind", &r.kind)],
        );
        c["provision"]["period"] =
            json!({"start": r.start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)});
        if let Some(end) = r.end {
            c["provision"]["period"]["end"] =
                json!(end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        resources.push(c);
    }
    let mut body = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": resources.len(),
    });
    // No `entry` when there is none: R4 allows no empty arrays.
    if !resources.is_empty() {
        body["entry"] = resources
            .into_iter()
            .map(|r| json!({"resource": r, "search": {"mode": "match"}}))
            .collect::<Vec<_>>()
            .into();
    }
    Ok(fhir_json(StatusCode::OK, &body))
}

/// The canonical URL of the `$emergency-access` OperationDefinition, served at that address.
pub(crate) fn emergency_access_url(base_url: &str) -> String {
    format!("{base_url}/fhir/OperationDefinition/emergency-access")
}

/// `GET /fhir/OperationDefinition/{id}`: the operations this server defines itself.
pub(crate) async fn operation_definition(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if id != "emergency-access" {
        return Err(ApiError::not_found(
            "No such OperationDefinition: this server defines emergency-access.",
        ));
    }
    let param = |name: &str, use_: &str, ty: &str, doc: &str| json!({"name": name, "use": use_, "min": 1, "max": "1", "type": ty, "documentation": doc});
    let body = json!({
        "resourceType": "OperationDefinition",
        "id": "emergency-access",
        "url": emergency_access_url(&state.base_url),
        "name": "EmergencyAccess",
        "title": "Emergency (break-glass) access to a patient's record",
        "status": "active",
        "kind": "operation",
        "affectsState": true,
        "description": "Records that the caller needs the patient's record in an emergency, without the patient's permission or a care relationship. The access is audited and raises an alert a privacy officer reviews; once recorded, the caller may view the record.",
        "code": "emergency-access",
        "resource": ["Patient"],
        "system": false,
        "type": false,
        "instance": true,
        "parameter": [
            param("reason", "in", "code", "Why: one of the programme's emergency reason codes."),
            param("text", "in", "string", "The caller's own words: what the emergency is."),
            param("return", "out", "OperationOutcome", "That the emergency access was recorded, with its audit record."),
        ]
    });
    Ok(fhir_json(StatusCode::OK, &body))
}

/// `POST /fhir/Patient/{nhs}/$emergency-access` with a `Parameters` body: `reason` (code)
/// and `text` (string).
pub(crate) async fn patient_operation(
    State(state): State<AppState>,
    Caller(ctx): Caller,
    Path((id, operation)): Path<(String, String)>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    if operation != "$emergency-access" {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            mcr_fhir::IssueType::NotSupported,
            "unknown-operation",
            "Unknown operation: POST supports $emergency-access.",
        ));
    }
    let nhs = parse_nhs(&id, "Patient.id")?;
    let Json(body) = body?;
    if mcr_fhir::resource_type(&body) != Some("Parameters") {
        return Err(ApiError::invalid(
            "wrong-resource-type",
            "The body must be a Parameters resource.",
        ));
    }
    let param = |name: &str, field: &str| -> Option<String> {
        body.get("parameter")?
            .as_array()?
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))?
            .get(field)?
            .as_str()
            .map(str::to_owned)
    };
    let reason_code = param("reason", "valueCode").unwrap_or_default();
    let reason_text = param("text", "valueString").unwrap_or_default();
    let seq = state
        .gateway
        .emergency_access(
            &ctx,
            &EmergencyRequest {
                nhs_number: nhs,
                reason_code,
                reason_text,
            },
        )
        .await?;
    let outcome = mcr_fhir::operation_outcome(&[mcr_fhir::Issue {
        severity: mcr_fhir::IssueSeverity::Information,
        code: mcr_fhir::IssueType::Informational,
        detail_code: Some("emergency-access-recorded".into()),
        text: format!("Emergency access recorded (audit record {seq}); a privacy officer will review it. You may now view the record."),
        expression: None,
    }]);
    Ok(fhir_json(StatusCode::OK, &outcome))
}

/// `GET /access/explain?patient={nhs}`: the decision for the caller and every rule behind it.
pub(crate) async fn explain(
    State(state): State<AppState>,
    Caller(ctx): Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let p = params.get("patient").ok_or_else(|| {
        ApiError::invalid(
            "missing-parameter",
            "Say which patient: ?patient={NHS number}.",
        )
    })?;
    let nhs = parse_nhs(p, "patient")?;
    let x = state.gateway.explain(&ctx, &nhs).await?;
    let body = json!({
        "decision": x.decision.code(),
        "sentence": x.decision.sentence(),
        "dataClasses": x.decision.grant().map(|g| g.data_classes().iter().map(|c| c.as_str()).collect::<Vec<_>>()),
        "steps": x.steps.iter().map(|s| json!({"rule": s.rule.as_str(), "passed": s.passed, "sentence": s.sentence})).collect::<Vec<_>>(),
    });
    Ok((
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response())
}

use axum::response::IntoResponse;
