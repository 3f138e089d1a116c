use super::{bundle, fhir_json};
use crate::auth::Caller;
use crate::{ApiError, AppState};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use mcr_domain::NhsNumber;
use mcr_gateway::{PatientQuery, ViewOutcome};
use mcr_store::DemographicQuery;
use serde_json::json;
use std::collections::HashMap;

/// What this server really supports.
pub(crate) async fn metadata(State(state): State<AppState>) -> Response {
    let body = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-24",
        "kind": "instance",
        "software": {"name": "My Care Record gateway", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Regional shared care record: views records held by source systems; stores no clinical data", "url": format!("{}/fhir", state.base_url)},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json"],
        "rest": [{
            "mode": "server",
            "security": crate::smart::security(&state.base_url),
            "resource": [
                {
                    "type": "Patient",
                    "interaction": [{"code": "read"}, {"code": "search-type"}],
                    "searchParam": [
                        {"name": "identifier", "type": "token", "documentation": "https://fhir.nhs.uk/Id/nhs-number|NNNNNNNNNN"},
                        {"name": "family", "type": "string"},
                        {"name": "given", "type": "string"},
                        {"name": "birthdate", "type": "date", "documentation": "YYYY-MM-DD, exact"},
                        {"name": "address-postalcode", "type": "string"}
                    ],
                    "operation": [
                        {"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"},
                        {"name": "emergency-access", "definition": super::consent::emergency_access_url(&state.base_url), "documentation": "Break-glass access with a reason code; raises a privacy officer alert."}
                    ]
                },
                {
                    "type": "Consent",
                    "interaction": [{"code": "create"}, {"code": "search-type"}],
                    "searchParam": [{"name": "patient", "type": "reference"}]
                }
            ]
        }]
    });
    fhir_json(StatusCode::OK, &body)
}

pub(crate) fn parse_nhs(s: &str, at: &str) -> Result<NhsNumber, ApiError> {
    NhsNumber::parse(s).map_err(|e| {
        ApiError::invalid("invalid-nhs-number", format!("Invalid NHS number: {e}.")).at(at)
    })
}

const SEARCH_PARAMS: [&str; 6] = [
    "identifier",
    "family",
    "given",
    "birthdate",
    "address-postalcode",
    "_count",
];

pub(crate) async fn search(
    State(state): State<AppState>,
    Caller(ctx): Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if let Some(unknown) = params.keys().find(|k| !SEARCH_PARAMS.contains(&k.as_str())) {
        return Err(ApiError::invalid(
            "unknown-parameter",
            format!(
                "Unknown search parameter `{}`; supported: {}.",
                clip(unknown),
                SEARCH_PARAMS.join(", ")
            ),
        ));
    }
    let query = if let Some(identifier) = params.get("identifier") {
        let value = match identifier.split_once('|') {
            Some((system, value)) if system == NhsNumber::SYSTEM => value,
            Some(_) => {
                return Err(ApiError::invalid(
                    "unknown-identifier-system",
                    format!(
                        "Only NHS numbers can be searched: use identifier={}|NNNNNNNNNN.",
                        NhsNumber::SYSTEM
                    ),
                )
                .at("Patient.identifier"))
            }
            None => identifier.as_str(),
        };
        PatientQuery::NhsNumber(parse_nhs(value, "Patient.identifier")?)
    } else {
        let family = params
            .get("family")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        if family.is_empty() {
            return Err(ApiError::invalid(
                "missing-parameter",
                "Search by identifier (NHS number), or by family name with a given name or birth date.",
            ));
        }
        let birth_date = params
            .get("birthdate")
            .map(|d| {
                let d = d.strip_prefix("eq").unwrap_or(d);
                NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| {
                    ApiError::invalid(
                        "invalid-date",
                        "birthdate must be a date written YYYY-MM-DD.",
                    )
                    .at("Patient.birthDate")
                })
            })
            .transpose()?;
        PatientQuery::Demographics(DemographicQuery {
            family,
            given: params
                .get("given")
                .map(|g| g.trim().to_owned())
                .filter(|g| !g.is_empty()),
            birth_date,
            postcode: params
                .get("address-postalcode")
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty()),
        })
    };
    let matches = state.gateway.search(&ctx, &query).await?;
    let entries: Vec<_> = matches
        .iter()
        .map(|m| {
            json!({
                "fullUrl": format!("{}/fhir/Patient/{}", state.base_url, m.patient.nhs_number),
                "resource": bundle::patient_resource(m),
                "search": {"mode": "match"}
            })
        })
        .collect();
    let mut body = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": entries.len(),
    });
    // No `entry` when nothing matched: R4 allows no empty arrays.
    if !entries.is_empty() {
        body["entry"] = entries.into();
    }
    Ok(fhir_json(StatusCode::OK, &body))
}

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

/// `Patient/{nhs}`: demographics from the index (no clinical data, no source asked).
pub(crate) async fn read(
    State(state): State<AppState>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let nhs = parse_nhs(&id, "Patient.id")?;
    let matches = state
        .gateway
        .search(&ctx, &PatientQuery::NhsNumber(nhs))
        .await?;
    let m = matches.first().ok_or_else(|| {
        ApiError::not_found("No patient with that NHS number is known to My Care Record.")
    })?;
    Ok(fhir_json(StatusCode::OK, &bundle::patient_resource(m)))
}

/// The most items one page of `$everything` holds.
pub const MAX_PAGE: usize = 1_000;
/// A page's size when `_offset` is given without `_count`.
const DEFAULT_PAGE: usize = 100;

/// `$everything`'s paging parameters: `_count` (0 to [`MAX_PAGE`]) and `_offset` (from a
/// `next` or `previous` link). `None`: neither was given, the whole record in one Bundle.
fn page_of(
    params: &HashMap<String, String>,
    url: String,
) -> Result<Option<bundle::Page>, ApiError> {
    for k in params.keys() {
        if k != "_count" && k != "_offset" {
            return Err(ApiError::invalid(
                "unsupported-parameter",
                format!(
                    "`{}` is not supported by $everything here: use _count and _offset.",
                    clip(k)
                ),
            )
            .at(k));
        }
    }
    let number = |k: &str, max: usize| -> Result<Option<usize>, ApiError> {
        params
            .get(k)
            .map(|v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| *n <= max)
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "invalid-paging",
                            format!("`{k}` must be a whole number from 0 to {max}."),
                        )
                        .at(k)
                    })
            })
            .transpose()
    };
    let count = number("_count", MAX_PAGE)?;
    let offset = number("_offset", usize::MAX)?;
    if count.is_none() && offset.is_none() {
        return Ok(None);
    }
    Ok(Some(bundle::Page {
        offset: offset.unwrap_or(0),
        count: count.unwrap_or(DEFAULT_PAGE),
        url,
    }))
}

/// `Patient/{nhs}/$everything`, whole or a page at a time (`_count`, `_offset`): every page is
/// a view of its own, decided, fetched and audited again (nothing is kept between pages).
pub(crate) async fn operation(
    State(state): State<AppState>,
    arrived: Option<axum::Extension<crate::ops::Arrived>>,
    Caller(ctx): Caller,
    Path((id, operation)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    // From the router's receiving the request to here: security checks and the token check.
    let request_ms = arrived.map(|axum::Extension(a)| (started - a.0).as_secs_f64() * 1000.0);
    if operation != "$everything" {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            mcr_fhir::IssueType::NotSupported,
            "unknown-operation",
            "Unknown operation: GET supports $everything.",
        ));
    }
    let nhs = parse_nhs(&id, "Patient.id")?;
    let page = page_of(
        &params,
        format!("{}/fhir/Patient/{nhs}/$everything", state.base_url),
    )?;
    let now = state.gateway.clock().now();
    let pending = match state.gateway.view_record(&ctx, &nhs).await? {
        ViewOutcome::Record(pending) => pending,
        ViewOutcome::NotPermitted(decision) => return Err(bundle::decision_error(&decision)),
    };
    // The Bundle's first part is encoded while the audit record commits; nothing is sent
    // until it has.
    let encoding = std::time::Instant::now();
    let mut writer = bundle::BundleWriter::new(pending.view(), now, page);
    let mut first = Vec::with_capacity(
        writer
            .size_hint(pending.view())
            .min(AHEAD_BYTES + AHEAD_BYTES / 4),
    );
    let whole = writer.write(pending.view(), &mut first, AHEAD_BYTES);
    let encode_ms = encoding.elapsed().as_secs_f64() * 1000.0;
    let view = pending.committed().await?;
    let whole = whole.map_err(|_| encode_failed())?;
    let mut phases = Vec::with_capacity(view.phases.len() + 2);
    if let Some(ms) = request_ms {
        phases.push(("request", ms));
    }
    phases.extend(view.phases.iter().cloned());
    phases.push(("encode", encode_ms));
    let timings = view.timings.clone();
    let body = if whole {
        axum::body::Body::from(first)
    } else {
        axum::body::Body::from_stream(rest_of(writer, view, first))
    };
    let mut response = (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, mcr_fhir::FHIR_JSON)],
        body,
    )
        .into_response();
    crate::ops::server_timing(&mut response, &timings, &phases, started);
    Ok(response)
}

/// How much of a Bundle is encoded while its audit record commits: an ordinary record's
/// (a few hundred KiB) whole, sent as one body with its length; of a larger one, the first
/// part, and the rest as the connection takes it, so the record is never held beside its
/// whole encoding (a 15,000-item record's Bundle is about 20 MiB).
const AHEAD_BYTES: usize = 4 << 20;
/// About how much of the rest of a Bundle each part of the body holds.
const PART_BYTES: usize = 256 << 10;

/// A Bundle's body after its audit record is committed: `first` (encoded meanwhile), then
/// the rest a part at a time, each encoded when the connection is ready for it. An encoding
/// error ends the body there, so the client sees a broken answer, never a short Bundle that
/// looks whole (it cannot happen: the record is checked JSON and strings).
fn rest_of(
    writer: bundle::BundleWriter,
    view: Box<mcr_gateway::View>,
    first: Vec<u8>,
) -> impl futures::Stream<Item = Result<axum::body::Bytes, serde_json::Error>> {
    futures::stream::unfold(Some((writer, view, Some(first))), |state| async move {
        let (mut writer, view, first) = state?;
        if let Some(first) = first {
            return Some((Ok(first.into()), Some((writer, view, None))));
        }
        let mut part = Vec::with_capacity(PART_BYTES + PART_BYTES / 4);
        match writer.write(&view, &mut part, PART_BYTES) {
            Ok(done) => Some((Ok(part.into()), (!done).then_some((writer, view, None)))),
            Err(e) => {
                tracing::error!(error = %e, "the record could not be encoded: its answer is cut short");
                Some((Err(e), None))
            }
        }
    })
}

fn encode_failed() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        mcr_fhir::IssueType::Exception,
        "encode-failed",
        "The record could not be encoded.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    /// A Bundle sent in parts after its first: the body is the Bundle written whole, and comes
    /// a part at a time.
    #[tokio::test]
    async fn a_large_bundle_is_sent_a_part_at_a_time_and_whole() {
        let view = bundle::tests::view_of(400);
        let now = mcr_domain::Clock::now(&mcr_domain::SystemClock);
        let whole = bundle::everything(&view, now, None).unwrap_or_default();
        let mut writer = bundle::BundleWriter::new(&view, now, None);
        let mut first = Vec::new();
        let done = writer.write(&view, &mut first, 1024).unwrap_or(true);
        assert!(
            !done && first.len() < whole.len(),
            "more than the first part"
        );
        let parts: Vec<axum::body::Bytes> = rest_of(writer, Box::new(view), first)
            .map(|p| p.unwrap_or_default())
            .collect()
            .await;
        assert!(parts.len() > 2, "{} parts", parts.len());
        assert!(parts
            .iter()
            .skip(1)
            .all(|p| p.len() < PART_BYTES + PART_BYTES / 4));
        assert_eq!(parts.concat(), whole);
    }
}
