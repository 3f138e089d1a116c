//! How a simulated source behaves, and misbehaves: its latency, the failures it can be told
//! to show (an HTTP error, a body that is not JSON, a huge body, a hang, a dropped connection),
//! how it writes patient references and how it sends documents; and [`gate`], which applies
//! the behaviour to each request.

use crate::{fhir, References, Shared};
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// How a source behaves: its latency and, optionally, how it fails.
///
/// From TOML: `latency_ms = [20, 80]` and `failure = "none" | { status = 500 } | "malformed" |
/// { huge = 10485760 } | "hang" | "drop"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Behaviour {
    /// Uniform random delay, min..=max milliseconds, before answering each FHIR request.
    pub latency_ms: (u64, u64),
    pub failure: Failure,
    /// How the resources it sends name their patient.
    pub references: References,
    /// How it answers `GET /Binary/{id}` (a document's bytes).
    pub documents: Documents,
}

/// How a source sends documents' bytes (`Binary`). From TOML: `documents = "wrong-type"` or
/// `documents = { padded = 25000000 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Documents {
    /// As held, with their own type.
    #[default]
    AsHeld,
    /// An HTML page labelled with the document's type (what a misconfigured proxy sends).
    WrongType,
    /// The document padded to this many bytes, with its `Content-Length`.
    Padded(usize),
}

impl Behaviour {
    /// Answers at once, correctly.
    pub fn healthy() -> Self {
        Self::default()
    }

    pub fn with_latency(min_ms: u64, max_ms: u64) -> Self {
        Self {
            latency_ms: (min_ms, max_ms),
            ..Self::default()
        }
    }

    pub fn failing(failure: Failure) -> Self {
        Self {
            failure,
            ..Self::default()
        }
    }
}

/// How a source fails, if it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Failure {
    #[default]
    None,
    /// Answer every FHIR request with this HTTP status and an OperationOutcome.
    Status(u16),
    /// 200 with a body that is not JSON.
    Malformed,
    /// 200 with a body of this many bytes.
    Huge(usize),
    /// Accept the request and never answer (until the server shuts down).
    Hang,
    /// Close the connection without answering.
    Drop,
}

/// Count the request, wait the latency, and answer with the failure if there is one.
/// `headers` is `None` for requests that need no identity token (the CapabilityStatement).
pub(crate) async fn gate(shared: &Shared, headers: Option<&HeaderMap>) -> Option<Response> {
    shared.served.fetch_add(1, Ordering::Relaxed);
    if let (Some(v), Some(headers)) = (&shared.identity, headers) {
        let audiences = [
            fhir::base_url(shared.scheme, shared.addr, headers),
            format!("{}://{}", shared.scheme, shared.addr),
        ];
        if let Err(why) = v.check(headers, &audiences) {
            if v.required {
                return Some(fhir::outcome(StatusCode::UNAUTHORIZED, "login", why));
            }
        }
    }
    let b = shared.behaviour();
    let (lo, hi) = (
        b.latency_ms.0.min(b.latency_ms.1),
        b.latency_ms.0.max(b.latency_ms.1),
    );
    if hi > 0 {
        let ms = rand::thread_rng().gen_range(lo..=hi);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    match b.failure {
        Failure::None => None,
        Failure::Status(code) => {
            let status = StatusCode::from_u16(code)
                .ok()
                .filter(|s| !s.is_informational())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Some(fhir::outcome(
                status,
                "transient",
                "the source system is not able to answer",
            ))
        }
        Failure::Malformed => Some(fhir::raw(
            StatusCode::OK,
            Body::from(
                "{\"resourceType\": \"Bundle\", \"entry\": [ <html><body>Proxy error</body></html>",
            ),
        )),
        Failure::Huge(n) => Some(fhir::raw(StatusCode::OK, Body::from(huge_body(n)))),
        Failure::Hang => {
            let mut stop = shared.shutdown.clone();
            let _ = stop.wait_for(|stopped| *stopped).await;
            Some(fhir::outcome(
                StatusCode::SERVICE_UNAVAILABLE,
                "transient",
                "shutting down",
            ))
        }
        Failure::Drop => {
            // On a connection that was already open: send the head, then abort the body, which
            // makes the server close the connection mid-answer.
            let stream = futures::stream::once(async {
                Err::<bytes::Bytes, std::io::Error>(std::io::Error::other("dropped"))
            });
            Some(fhir::raw(StatusCode::OK, Body::from_stream(stream)))
        }
    }
}

/// A syntactically valid Bundle of exactly `n` bytes (or `n` spaces when too short for one).
pub(crate) fn huge_body(n: usize) -> Vec<u8> {
    let head = b"{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"total\":0,\"padding\":\"";
    let tail = b"\"}";
    if n < head.len() + tail.len() {
        return vec![b' '; n];
    }
    let mut v = Vec::with_capacity(n);
    v.extend_from_slice(head);
    v.resize(n - tail.len(), b'x');
    v.extend_from_slice(tail);
    v
}

/// Read the request (so it counts as received), then close without a word.
pub(crate) async fn drop_after_request<S: tokio::io::AsyncRead + Unpin>(
    mut stream: S,
    shared: Arc<Shared>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
        if n > 0 && !buf[..n].windows(10).any(|w| w == b"/_control/") {
            shared.served.fetch_add(1, Ordering::Relaxed);
        }
    }
    drop(stream);
}
