//! The simulated source's HTTP routes: FHIR (CapabilityStatement, search, batch, read,
//! `Binary`), GP Connect (structured record and documents, at the base and per practice) and
//! the `/_control` endpoints tests and benchmarks use to change its behaviour; and the
//! middleware that refuses suspended organisations and writes `Server-Timing`.

use crate::behaviour::{gate, Behaviour, Documents};
use crate::References;
use crate::{fhir, gpconnect, Peer, Shared};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_control/behaviour", get(get_behaviour).put(put_behaviour))
        .route("/_control/stats", get(stats))
        .route("/metadata", get(metadata))
        .route("/", post(batch))
        .route("/Patient/$gpc.getstructuredrecord", post(structured_record))
        .route(
            "/{practice}/STU3/1/gpconnect/Patient/$gpc.getstructuredrecord",
            post(practice_structured_record),
        )
        .route("/documents/Patient", get(gpc_find_patient))
        .route(
            "/documents/Patient/{id}/DocumentReference",
            get(gpc_search_documents),
        )
        .route("/documents/Binary/{id}", get(gpc_read_binary))
        .route(
            "/{practice}/STU3/1/gpconnect/documents/Patient",
            get(practice_find_patient),
        )
        .route(
            "/{practice}/STU3/1/gpconnect/documents/Patient/{id}/DocumentReference",
            get(practice_search_documents),
        )
        .route(
            "/{practice}/STU3/1/gpconnect/documents/Binary/{id}",
            get(practice_read_binary),
        )
        .route("/{resource_type}", get(search))
        .route("/{resource_type}/{id}", get(read))
        .fallback(fallback)
        .layer(axum::middleware::from_fn(server_timing))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            refuse_suspended,
        ))
        .with_state(shared)
}

/// An organisation suspended after it connected is refused on its open connections too, as
/// new handshakes refuse it: a 403, and the connection closed.
async fn refuse_suspended(
    State(s): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<Peer>>()
        .and_then(|p| p.0.org.as_deref());
    if peer.is_some_and(|org| s.refused.contains(org)) {
        let mut refused = fhir::outcome(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this organisation is suspended",
        );
        refused.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        return refused;
    }
    next.run(request).await
}

/// Say how long this source spent on each request (simulated latency included) in a
/// `Server-Timing: app;dur=<ms>` header, as real FHIR servers often do. The gateway reads it to
/// report its own overhead separately from the sources' time.
async fn server_timing(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let started = std::time::Instant::now();
    let mut response = next.run(request).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("app;dur={ms:.3}")) {
        response.headers_mut().insert("server-timing", v);
    }
    response
}

type Params = Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;

async fn metadata(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(r) = gate(&s, None).await {
        return r;
    }
    let base = fhir::base_url(s.scheme, s.addr, &headers);
    fhir::json(StatusCode::OK, &fhir::capability_statement(&s.slice, &base))
}

async fn search(
    State(s): State<Arc<Shared>>,
    Path(resource_type): Path<String>,
    headers: HeaderMap,
    params: Params,
) -> Response {
    if let Some(r) = gate(&s, Some(&headers)).await {
        return r;
    }
    let Ok(Query(params)) = params else {
        return fhir::outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            "the query string could not be read",
        );
    };
    let base = fhir::base_url(s.scheme, s.addr, &headers);
    search_answer(&s, &base, &resource_type, &params).await
}

/// A search's answer, from the cache when the same search was answered before.
async fn search_answer(
    s: &Shared,
    base: &str,
    resource_type: &str,
    params: &[(String, String)],
) -> Response {
    // Patient searches (the index's sync, by `_lastUpdated`) are few; clinical searches are
    // what every record view asks, several pages each.
    let cacheable = resource_type != "Patient" && !fhir::is_care_event_feed(resource_type, params);
    let references = s.behaviour().references;
    let key = cacheable.then(|| {
        let mut k = format!("{base}\n{resource_type}\n{references:?}");
        for (name, value) in params {
            k.push_str(&format!("\n{name}={value}"));
        }
        k
    });
    if let Some(body) = key.as_deref().and_then(|k| s.answers.get(k)) {
        return fhir::raw(StatusCode::OK, Body::from(body));
    }
    let answer = fhir::search(&s.slice, base, resource_type, params, &s.feeds);
    let answer = if references == References::Relative || resource_type == "Patient" {
        answer
    } else {
        fhir::rewrite_references(&s.slice, base, answer, references).await
    };
    let Some(key) = key.filter(|_| answer.status() == StatusCode::OK) else {
        return answer;
    };
    let (parts, body) = answer.into_parts();
    match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => {
            s.answers.put(key, bytes.clone());
            Response::from_parts(parts, Body::from(bytes))
        }
        Err(_) => fhir::outcome(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            "the answer could not be written",
        ),
    }
}

/// A FHIR `batch` (`POST` to the base URL): each entry a `GET` of a search or a read, answered
/// in order in one `batch-response`, as servers that declare `batch` do. One request: one
/// identity check, one wait (the simulated latency), one answer for all of it.
async fn batch(State(s): State<Arc<Shared>>, headers: HeaderMap, body: bytes::Bytes) -> Response {
    if let Some(r) = gate(&s, Some(&headers)).await {
        return r;
    }
    let requests = match fhir::batch_requests(&body) {
        Ok(r) => r,
        Err(refused) => return *refused,
    };
    let base = fhir::base_url(s.scheme, s.addr, &headers);
    let mut entries = Vec::with_capacity(requests.len());
    for request in requests {
        let answer = match request {
            fhir::BatchGet::Search {
                resource_type,
                params,
            } => search_answer(&s, &base, &resource_type, &params).await,
            fhir::BatchGet::Read { resource_type, id } => fhir::read(&s.slice, &resource_type, &id),
            fhir::BatchGet::Refused(answer) => answer,
        };
        let status = answer.status();
        match axum::body::to_bytes(answer.into_body(), usize::MAX).await {
            Ok(bytes) => entries.push((status, bytes)),
            Err(_) => {
                return fhir::outcome(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "exception",
                    "the answer could not be written",
                )
            }
        }
    }
    fhir::raw(StatusCode::OK, Body::from(fhir::batch_response(&entries)))
}

/// GP Connect Access Record: Structured ([`gpconnect`]): the simulated latency and failures
/// apply as to every request; the identity token is checked the GP Connect way there.
async fn structured_record(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    if let Some(r) = gate(&s, None).await {
        return r;
    }
    gpconnect::structured(&s, &headers, &body, None).await
}

/// [`structured_record`] at one practice's endpoint (as the directory names it): only that
/// practice's registered patients are found there.
async fn practice_structured_record(
    State(s): State<Arc<Shared>>,
    Path(practice): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    if let Some(r) = gate(&s, None).await {
        return r;
    }
    gpconnect::structured(&s, &headers, &body, Some(&practice)).await
}

/// The query string, or the refusal to send when it cannot be read.
fn query_or_refuse(params: Params) -> Result<Vec<(String, String)>, Box<Response>> {
    params.map(|Query(p)| p).map_err(|_| {
        Box::new(fhir::outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            "the query string could not be read",
        ))
    })
}

/// GP Connect Access Document ([`gpconnect::documents`]): Find a patient. The simulated
/// latency and failures apply as to every request; the token is checked the GP Connect way.
async fn gpc_find_patient(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    params: Params,
) -> Response {
    find_patient_at(&s, &headers, None, params).await
}

async fn practice_find_patient(
    State(s): State<Arc<Shared>>,
    Path(practice): Path<String>,
    headers: HeaderMap,
    params: Params,
) -> Response {
    find_patient_at(&s, &headers, Some(&practice), params).await
}

async fn find_patient_at(
    s: &Shared,
    headers: &HeaderMap,
    practice: Option<&str>,
    params: Params,
) -> Response {
    if let Some(r) = gate(s, None).await {
        return r;
    }
    match query_or_refuse(params) {
        Ok(p) => gpconnect::documents::find_patient(s, headers, practice, &p),
        Err(refused) => *refused,
    }
}

/// Access Document: Search for a patient's documents.
async fn gpc_search_documents(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: Params,
) -> Response {
    search_documents_at(&s, &headers, None, &id, params).await
}

async fn practice_search_documents(
    State(s): State<Arc<Shared>>,
    Path((practice, id)): Path<(String, String)>,
    headers: HeaderMap,
    params: Params,
) -> Response {
    search_documents_at(&s, &headers, Some(&practice), &id, params).await
}

async fn search_documents_at(
    s: &Shared,
    headers: &HeaderMap,
    practice: Option<&str>,
    id: &str,
    params: Params,
) -> Response {
    if let Some(r) = gate(s, None).await {
        return r;
    }
    match query_or_refuse(params) {
        Ok(p) => gpconnect::documents::search_documents(s, headers, practice, id, &p),
        Err(refused) => *refused,
    }
}

/// Access Document: Retrieve a document.
async fn gpc_read_binary(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = gate(&s, None).await {
        return r;
    }
    gpconnect::documents::read_binary(&s, &headers, None, &id)
}

async fn practice_read_binary(
    State(s): State<Arc<Shared>>,
    Path((practice, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = gate(&s, None).await {
        return r;
    }
    gpconnect::documents::read_binary(&s, &headers, Some(&practice), &id)
}

async fn read(
    State(s): State<Arc<Shared>>,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = gate(&s, Some(&headers)).await {
        return r;
    }
    if resource_type == "Binary" {
        return binary(&s, &id);
    }
    fhir::read(&s.slice, &resource_type, &id)
}

/// A document's bytes, with its own `Content-Type`, as R4 servers answer a `Binary` read
/// asked for other than FHIR JSON; or as the behaviour says.
fn binary(s: &Shared, id: &str) -> Response {
    let Some((content_type, mut bytes)) = s.slice.binary(id) else {
        return fhir::outcome(
            StatusCode::NOT_FOUND,
            "not-found",
            "no resource with that id",
        );
    };
    match s.behaviour().documents {
        Documents::AsHeld => {}
        Documents::WrongType => {
            bytes = b"<html><body><h1>Service unavailable</h1></body></html>".to_vec();
        }
        Documents::Padded(n) => {
            // PDF readers ignore what follows `%%EOF`.
            bytes.resize(n.max(bytes.len()), b' ');
        }
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(axum::http::header::CONTENT_TYPE, content_type)
        .header(axum::http::header::CONTENT_LENGTH, bytes.len())
        .body(Body::from(bytes))
        .unwrap_or_else(|_| {
            fhir::outcome(
                StatusCode::INTERNAL_SERVER_ERROR,
                "exception",
                "the answer could not be written",
            )
        })
}

async fn fallback(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(r) = gate(&s, Some(&headers)).await {
        return r;
    }
    fhir::outcome(
        StatusCode::NOT_FOUND,
        "not-found",
        "no such endpoint on this server",
    )
}

async fn get_behaviour(State(s): State<Arc<Shared>>) -> Json<Behaviour> {
    Json(s.behaviour())
}

async fn put_behaviour(
    State(s): State<Arc<Shared>>,
    body: Result<Json<Behaviour>, axum::extract::rejection::JsonRejection>,
) -> Response {
    match body {
        Ok(Json(b)) => {
            tracing::info!(source = %s.slice.id, behaviour = ?b, "behaviour changed");
            s.set_behaviour(b.clone());
            Json(b).into_response()
        }
        Err(_) => fhir::outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            "body is not a Behaviour",
        ),
    }
}

async fn stats(State(s): State<Arc<Shared>>) -> Response {
    Json(serde_json::json!({
        "source": s.slice.id.as_str(),
        "organisation": s.slice.organisation.code.as_str(),
        "patients": s.slice.patients().len(),
        "requests_served": s.served.load(Ordering::Relaxed),
        "identity_tokens": s.identity.as_ref().map(|v| serde_json::json!({
            "verified": v.verified.load(Ordering::Relaxed),
            "rejected": v.rejected.load(Ordering::Relaxed),
        })),
        "behaviour": s.behaviour(),
    }))
    .into_response()
}
