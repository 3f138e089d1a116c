//! Simulated FHIR R4 source systems (GP, acute, community and mental health, social care), each
//! an independent HTTP server on its own listener serving only its own [`SourceSlice`].
//!
//! This crate owns the *outside world* the gateway talks to: it answers FHIR reads and searches
//! the way a real source would, and can be told to misbehave (slow, failing, malformed, huge,
//! hanging, dropping connections) so tests and benchmarks can prove the gateway copes. It must
//! never be used as a real data store, and never serves more than its one slice.

mod behaviour;
pub mod directory;
mod fhir;
pub mod gpconnect;
mod handlers;
mod identity;
pub mod pds;

use mcr_domain::SourceId;
use mcr_synth::SourceSlice;
use mcr_tls::MaybeTlsStream;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use behaviour::{Behaviour, Documents, Failure};
pub use fhir::{References, FHIR_JSON};
pub use gpconnect::{GpConnectOptions, GpcError};
pub use identity::IdentityCheck;

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
    let app = handlers::router(Arc::clone(&shared)).into_make_service_with_connect_info::<Peer>();
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
                            tokio::spawn(behaviour::drop_after_request(stream, Arc::clone(&shared)));
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
                                    behaviour::drop_after_request(tls, shared).await;
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
