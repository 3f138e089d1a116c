//! The floor under the gateway's overhead on this machine: a stand-in gateway that does, for
//! each view, only what any gateway of this design must, and none of the gateway's own work.
//!
//! Per `GET /fhir/Patient/{nhs}/$everything` it asks every source as many requests at once as
//! the real gateway does per view (`GET /metadata`, which the simulated sources delay exactly
//! as they delay a search), reads every answer, writes one line to a file and flushes it to
//! disk (`fdatasync`, on a blocking thread, as an audit commit is), and answers with a body as
//! large as the real gateway's mean answer and the same `Server-Timing` (`source-<id>;dur=`,
//! `mcr;dur=`). No token check, index, governance, decision, parsing, merge or encoding.
//!
//! It runs as its own process (`mcr-bench --floor-proxy CONFIG`), so that the load generator,
//! the sources and it share the cores as they do with the gateway. Its overhead, measured the
//! same way as the gateway's, is what the machine itself costs a view.

use anyhow::Context;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What the stand-in does per view.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloorConfig {
    pub listen: SocketAddr,
    /// Each source: id, base URL, and how many requests the real gateway sends it per view.
    pub sources: Vec<FloorSource>,
    /// Bytes in each answer (the real gateway's mean answer).
    pub body_bytes: usize,
    /// The file each view's line is written to and flushed.
    pub log: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloorSource {
    pub id: String,
    pub base_url: String,
    pub requests_per_view: usize,
}

struct Floor {
    client: reqwest::Client,
    sources: Vec<FloorSource>,
    body: bytes::Bytes,
    log: Arc<Mutex<std::fs::File>>,
}

/// Serve until the process is killed.
pub async fn serve(config: FloorConfig) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    serve_on(listener, config).await
}

/// [`serve`] on a listener already bound.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    config: FloorConfig,
) -> anyhow::Result<()> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&config.log)
        .with_context(|| format!("opening {}", config.log.display()))?;
    let floor = Arc::new(Floor {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()?,
        sources: config.sources,
        body: bytes::Bytes::from(vec![b' '; config.body_bytes]),
        log: Arc::new(Mutex::new(log)),
    });
    let app = axum::Router::new()
        .route("/ready", get(|| async { "ready" }))
        .route("/fhir/Patient/{id}/{operation}", get(view))
        .with_state(floor);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn view(State(f): State<Arc<Floor>>, Path((id, _)): Path<(String, String)>) -> Response {
    let started = Instant::now();
    let client = &f.client;
    let mut asks = Vec::new();
    for s in &f.sources {
        for _ in 0..s.requests_per_view {
            let url = format!("{}/metadata", s.base_url);
            asks.push(async move {
                let r = client.get(&url).send().await.ok()?;
                let own = r
                    .headers()
                    .get("server-timing")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("app;dur="))
                    .and_then(|v| v.parse::<f64>().ok());
                r.bytes().await.ok()?;
                Some((s.id.as_str(), own?))
            });
        }
    }
    let answers = futures::future::join_all(asks).await;
    let mut slowest: Vec<(&str, f64)> = Vec::new();
    for answer in answers {
        let Some((source, ms)) = answer else {
            return (StatusCode::BAD_GATEWAY, "a source did not answer").into_response();
        };
        match slowest.iter_mut().find(|(s, _)| *s == source) {
            Some((_, worst)) => *worst = worst.max(ms),
            None => slowest.push((source, ms)),
        }
    }
    let log = Arc::clone(&f.log);
    let line = format!("{id} {}\n", slowest.len());
    let written = tokio::task::spawn_blocking(move || {
        let mut file = log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        file.write_all(line.as_bytes())?;
        file.sync_data()
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        return (StatusCode::SERVICE_UNAVAILABLE, "the line was not written").into_response();
    }
    let mut timing: Vec<String> = slowest
        .iter()
        .map(|(s, ms)| format!("source-{s};dur={ms:.3}"))
        .collect();
    timing.push(format!(
        "mcr;dur={:.3}",
        started.elapsed().as_secs_f64() * 1000.0
    ));
    let mut response = (StatusCode::OK, f.body.clone()).into_response();
    if let Ok(v) = HeaderValue::from_str(&timing.join(", ")) {
        response.headers_mut().insert("server-timing", v);
    }
    response
}
