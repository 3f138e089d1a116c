//! Simulated FHIR R4 source systems (GP, acute, community and mental health, social care), each
//! an independent HTTP server on its own listener serving only its own [`SourceSlice`].
//!
//! This crate owns the *outside world* the gateway talks to: it answers FHIR reads and searches
//! the way a real source would, and can be told to misbehave (slow, failing, malformed, huge,
//! hanging, dropping connections) so tests and benchmarks can prove the gateway copes. It must
//! never be used as a real data store, and never serves more than its one slice.

pub mod directory;
mod fhir;
pub mod gpconnect;
mod identity;
pub mod pds;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use mcr_domain::SourceId;
use mcr_synth::SourceSlice;
use mcr_tls::MaybeTlsStream;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use fhir::FHIR_JSON;
pub use gpconnect::{GpConnectOptions, GpcError};
pub use identity::IdentityCheck;

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

/// How a source server is reached and whom it accepts, beyond its [`Behaviour`].
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// Serve HTTPS, requiring a client certificate from the regional CA (mutual TLS).
    pub tls: Option<SourceTls>,
    /// Check the end user's identity token on every FHIR request.
    pub identity: Option<IdentityCheck>,
    /// Answer GP Connect too: Access Record: Structured (`POST /Patient/$gpc.getstructuredrecord`)
    /// and Access Document (`/documents/…`), at the base and at each practice's endpoint.
    pub gp_connect: Option<GpConnectOptions>,
}

/// A source's TLS: its own certificate, the CA its clients' certificates must chain to, and the
/// organisations (ODS codes) whose certificates it refuses from the start.
#[derive(Debug, Clone)]
pub struct SourceTls {
    pub identity: mcr_tls::Identity,
    pub client_ca: Arc<mcr_tls::rustls::RootCertStore>,
    pub refused: Vec<String>,
}

struct Shared {
    slice: Arc<SourceSlice>,
    scheme: &'static str,
    identity: Option<identity::Verifier>,
    refused: mcr_tls::RefusedOrgs,
    behaviour: RwLock<Behaviour>,
    served: AtomicU64,
    addr: SocketAddr,
    shutdown: watch::Receiver<bool>,
    answers: AnswerCache,
    feeds: fhir::FeedCache,
    gp_connect: RwLock<Option<GpConnectOptions>>,
}

/// Search answers already written, by request. A simulated record never changes, so the same
/// search always has the same answer; without this, every page of a search would generate the
/// patient's whole record again and encode it (a 3,000-resource record, paged by 100, is 30
/// generations), and the simulator, not the gateway, would be what a benchmark measures.
/// Bounded: emptied when it holds more than [`AnswerCache::MAX_BYTES`].
#[derive(Default)]
struct AnswerCache {
    inner: std::sync::Mutex<(std::collections::HashMap<String, axum::body::Bytes>, usize)>,
}

impl AnswerCache {
    const MAX_BYTES: usize = 256 * 1024 * 1024;

    fn get(&self, key: &str) -> Option<axum::body::Bytes> {
        let guard = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.0.get(key).cloned()
    }

    fn put(&self, key: String, body: axum::body::Bytes) {
        let mut guard = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (map, bytes) = &mut *guard;
        if *bytes + body.len() > Self::MAX_BYTES {
            map.clear();
            *bytes = 0;
        }
        *bytes += body.len();
        if let Some(old) = map.insert(key, body) {
            *bytes -= old.len();
        }
    }
}

impl Shared {
    fn behaviour(&self) -> Behaviour {
        self.behaviour
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn gp_connect(&self) -> Option<GpConnectOptions> {
        self.gp_connect
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_behaviour(&self, b: Behaviour) {
        *self
            .behaviour
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = b;
    }
}

/// A running source server. Dropping the handle shuts the server down.
pub struct SourceHandle {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
    acceptor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SourceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceHandle")
            .field("source", &self.shared.slice.id)
            .field("addr", &self.shared.addr)
            .finish_non_exhaustive()
    }
}

impl SourceHandle {
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://127.0.0.1:port` (or `https://`), no trailing slash.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.shared.scheme, self.shared.addr)
    }

    /// Refuse (or accept again) client certificates of an organisation, as when it is
    /// suspended from the programme. Takes effect for new connections.
    pub fn set_org_refused(&self, ods_code: &str, refused: bool) {
        if refused {
            self.shared.refused.refuse(ods_code);
        } else {
            self.shared.refused.allow(ods_code);
        }
    }

    pub fn source_id(&self) -> &SourceId {
        &self.shared.slice.id
    }

    pub fn slice(&self) -> &Arc<SourceSlice> {
        &self.shared.slice
    }

    pub fn behaviour(&self) -> Behaviour {
        self.shared.behaviour()
    }

    /// Takes effect for the next request. (`Failure::Drop` closes new connections at once and
    /// aborts the answer on connections already open.)
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.shared.set_behaviour(behaviour);
    }

    /// Answer GP Connect as `options` say (`None`: not at all). Takes effect for the next request.
    pub fn set_gp_connect(&self, options: Option<GpConnectOptions>) {
        *self
            .shared
            .gp_connect
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = options;
    }

    /// The most recent verified identity tokens' claims (up to 64), oldest first.
    pub fn identities_seen(&self) -> Vec<serde_json::Value> {
        self.shared
            .identity
            .as_ref()
            .map(identity::Verifier::recent)
            .unwrap_or_default()
    }

    /// FHIR requests with a valid identity token, and without one (missing or invalid).
    pub fn identity_counts(&self) -> (u64, u64) {
        self.shared.identity.as_ref().map_or((0, 0), |v| {
            (
                v.verified.load(Ordering::Relaxed),
                v.rejected.load(Ordering::Relaxed),
            )
        })
    }

    /// FHIR requests received so far (control endpoints excluded), including those that were
    /// answered with a failure.
    pub fn requests_served(&self) -> u64 {
        self.shared.served.load(Ordering::Relaxed)
    }

    /// Stop accepting, release hanging requests, and wait for the server to finish.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(a) = self.acceptor.take() {
            let _ = a.await;
        }
        if let Some(s) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), s).await;
        }
    }
}

impl Drop for SourceHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Start serving `slice` on `listener`. Returns once the server is accepting.
pub async fn serve(
    slice: Arc<SourceSlice>,
    listener: TcpListener,
    behaviour: Behaviour,
) -> std::io::Result<SourceHandle> {
    serve_with(slice, listener, behaviour, SourceOptions::default()).await
}

/// Start serving `slice` on `listener` with TLS and identity checks as `options` say.
pub async fn serve_with(
    slice: Arc<SourceSlice>,
    listener: TcpListener,
    behaviour: Behaviour,
    options: SourceOptions,
) -> std::io::Result<SourceHandle> {
    let addr = listener.local_addr()?;
    let (stop, shutdown) = watch::channel(false);
    let refused = mcr_tls::RefusedOrgs::default();
    let acceptor = match &options.tls {
        Some(t) => {
            for code in &t.refused {
                refused.refuse(code);
            }
            let config = mcr_tls::mtls_server_config(
                t.identity.clone(),
                t.client_ca.clone(),
                refused.clone(),
            )
            .map_err(std::io::Error::other)?;
            Some(tokio_rustls::TlsAcceptor::from(config))
        }
        None => None,
    };
    let identity = match &options.identity {
        Some(check) => Some(identity::Verifier::new(check).map_err(std::io::Error::other)?),
        None => None,
    };
    let shared = Arc::new(Shared {
        slice,
        scheme: if acceptor.is_some() { "https" } else { "http" },
        identity,
        refused,
        behaviour: RwLock::new(behaviour),
        served: AtomicU64::new(0),
        addr,
        shutdown: shutdown.clone(),
        answers: AnswerCache::default(),
        feeds: fhir::FeedCache::default(),
        gp_connect: RwLock::new(options.gp_connect.clone()),
    });
    let (conn_tx, conn_rx) = mpsc::channel::<(MaybeTlsStream, Peer)>(256);
    let acceptor = tokio::spawn(accept_loop(
        listener,
        acceptor,
        Arc::clone(&shared),
        conn_tx,
        shutdown.clone(),
    ));
    let app = router(Arc::clone(&shared)).into_make_service_with_connect_info::<Peer>();
    let mut on_stop = shutdown;
    let server = tokio::spawn(async move {
        let result = axum::serve(ChannelListener { rx: conn_rx, addr }, app)
            .with_graceful_shutdown(async move {
                let _ = on_stop.wait_for(|stopped| *stopped).await;
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "source server stopped with an error");
        }
    });
    tracing::debug!(source = %shared.slice.id, %addr, "source listening");
    Ok(SourceHandle {
        shared,
        stop,
        server: Some(server),
        acceptor: Some(acceptor),
    })
}

/// Accepts connections (completing the TLS handshake, which refuses unknown and suspended
/// client certificates, when serving HTTPS); hands them to axum, or drops them when told to.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    conn_tx: mpsc::Sender<(MaybeTlsStream, Peer)>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    mcr_tls::no_delay(&stream);
                    let dropping = shared.behaviour().failure == Failure::Drop;
                    match (&tls, dropping) {
                        (None, true) => {
                            tokio::spawn(drop_after_request(stream, Arc::clone(&shared)));
                        }
                        (None, false) => {
                            if conn_tx.send((MaybeTlsStream::Plain(stream), Peer { org: None })).await.is_err() {
                                break;
                            }
                        }
                        (Some(acceptor), _) => {
                            let (acceptor, shared, conn_tx) = (acceptor.clone(), Arc::clone(&shared), conn_tx.clone());
                            tokio::spawn(async move {
                                let Some(tls) = mcr_tls::accept_tls(&acceptor, stream, peer).await else { return };
                                if dropping {
                                    drop_after_request(tls, shared).await;
                                } else {
                                    // The handshake checked the organisation; each request checks it again.
                                    let org = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(mcr_tls::org_of);
                                    let _ = conn_tx.send((MaybeTlsStream::Tls(Box::new(tls)), Peer { org })).await;
                                }
                            });
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            () = async { let _ = shutdown.wait_for(|stopped| *stopped).await; } => break,
        }
    }
}

/// Read the request (so it counts as received), then close without a word.
async fn drop_after_request<S: tokio::io::AsyncRead + Unpin>(mut stream: S, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 16 * 1024];
    if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
        if n > 0 && !buf[..n].windows(10).any(|w| w == b"/_control/") {
            shared.served.fetch_add(1, Ordering::Relaxed);
        }
    }
    drop(stream);
}

/// Who is at the other end of a connection: the organisation its client certificate names.
#[derive(Clone, Debug)]
struct Peer {
    org: Option<String>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, ChannelListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, ChannelListener>) -> Self {
        stream.remote_addr().clone()
    }
}

struct ChannelListener {
    rx: mpsc::Receiver<(MaybeTlsStream, Peer)>,
    addr: SocketAddr,
}

impl axum::serve::Listener for ChannelListener {
    type Io = MaybeTlsStream;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The acceptor has stopped: wait for graceful shutdown to end the serve loop.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Err(std::io::Error::other(format!(
            "a source on {} hands out connections, not an address",
            self.addr
        )))
    }
}

fn router(shared: Arc<Shared>) -> Router {
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

/// Count the request, wait the latency, and answer with the failure if there is one.
/// `headers` is `None` for requests that need no identity token (the CapabilityStatement).
async fn gate(shared: &Shared, headers: Option<&HeaderMap>) -> Option<Response> {
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
fn huge_body(n: usize) -> Vec<u8> {
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
