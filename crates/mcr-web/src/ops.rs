//! For operators: `GET /metrics` (Prometheus text format) and the `Server-Timing` header on a
//! record view. Neither carries patient data: series are labelled with codes and source ids,
//! and the header with source ids and durations.

use crate::AppState;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use mcr_gateway::SourceTiming;
use std::fmt::Write;
use std::time::Instant;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// Every series the gateway keeps. Unauthenticated, like most Prometheus endpoints: it holds
/// counts and durations only; restrict it at the network where that matters.
async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.gateway.metrics().encode(),
    )
        .into_response()
}

/// When the router received a request, for the `request` phase of a record view's
/// `Server-Timing`: the security checks and the token check before the handler.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrived(pub(crate) std::time::Instant);

/// Stamp each request with [`Arrived`] (the router's outermost layer).
pub(crate) async fn stamp(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    request
        .extensions_mut()
        .insert(Arrived(std::time::Instant::now()));
    next.run(request).await
}

/// `Server-Timing: source-gp;dur=51.2, …, access;dur=0.9, fetch;dur=60.1, …, mcr;dur=63.0`: each
/// source's own time for this view as it reported it (slowest search path), the gateway's
/// phases, and its time from the handler's start to the body ready. A client subtracts the
/// slowest source from what it measured to get the gateway's overhead for that request.
pub(crate) fn server_timing(
    response: &mut Response,
    timings: &[SourceTiming],
    phases: &[(&str, f64)],
    started: Instant,
) {
    let mut value = String::new();
    for t in timings {
        if let Some(ms) = t.source_ms {
            let _ = write!(value, "source-{};dur={ms:.3}, ", t.source);
        }
    }
    for (name, ms) in phases {
        let _ = write!(value, "{name};dur={ms:.3}, ");
    }
    let _ = write!(
        value,
        "mcr;dur={:.3}",
        started.elapsed().as_secs_f64() * 1000.0
    );
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().insert("server-timing", v);
    }
}
