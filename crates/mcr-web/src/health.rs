//! Liveness and readiness, for a load balancer and a process supervisor.
//!
//! - `GET /livez`: 200 while the process answers HTTP at all. Touches nothing else: a
//!   supervisor restarts a gateway that fails it, and a store outage is no reason to restart.
//! - `GET /readyz`: 200 `ready` when this gateway can serve record views now; otherwise 503
//!   with one line saying why: it is draining (stopping after the views in flight), or its
//!   store does not take writes (unreachable, disk full, read-only, a PostgreSQL standby). A
//!   view's audit record is written before any data leaves, so a store that cannot write means
//!   views are refused: the load balancer should send them elsewhere. The write is a real one
//!   ([`mcr_store::Store::probe_write`]), made at most once a second whatever the polling.
//! - `GET /healthz` (older, kept for existing checks): 200 while the store answers a read.

use crate::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long one store write probe answers readiness for.
const PROBE_FRESH: Duration = Duration::from_secs(1);

/// This gateway's readiness: draining or not, and the last store write probe.
#[derive(Debug)]
pub struct Readiness {
    /// This instance's name in the store's probe table (its base URL).
    instance: String,
    draining: AtomicBool,
    last_probe: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl Readiness {
    pub fn new(instance: impl Into<String>) -> Self {
        Self {
            instance: instance.into(),
            draining: AtomicBool::new(false),
            last_probe: tokio::sync::Mutex::new(None),
        }
    }

    /// From now on `/readyz` says this gateway is draining.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// `Ok` when ready, else the one-line reason.
    pub async fn check(&self, state: &AppState) -> Result<(), String> {
        if self.is_draining() {
            state.gateway.metrics().readiness(Err("draining"));
            return Err("draining: this gateway is stopping after the views in flight".into());
        }
        let mut last = self.last_probe.lock().await;
        if let Some((at, result)) = &*last {
            if at.elapsed() < PROBE_FRESH {
                return result.clone();
            }
        }
        let now = state.gateway.clock().now();
        let result = state
            .gateway
            .store()
            .probe_write(&self.instance, now)
            .await
            .map_err(|e| {
                let reason = one_line(&e.to_string());
                tracing::warn!(reason = %reason, "not ready: the store does not take writes");
                format!("the store does not take writes: {reason}")
            });
        state
            .gateway
            .metrics()
            .readiness(result.as_ref().map(|_| ()).map_err(|_| "store-unwritable"));
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

/// The first line of `text`, at most 300 characters.
fn one_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect()
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
}

async fn livez() -> Response {
    text(StatusCode::OK, "live".into())
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.readiness.check(&state).await {
        Ok(()) => text(StatusCode::OK, "ready".into()),
        Err(reason) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}"),
        ),
    }
}

fn text(status: StatusCode, line: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        line + "\n",
    )
        .into_response()
}
