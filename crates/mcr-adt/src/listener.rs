//! The MLLP listener: frames (`0x0B` message `0x1C 0x0D`) over mutual TLS from the regional CA
//! (or plain TCP on loopback only, when configured), one task per connection, a cap on
//! connections and on a message's size, an idle timeout. Each message is answered with an ACK;
//! what is refused is kept for review; a frame cut short is kept too (there is no one left to
//! answer).

use crate::adt::{ack, envelope, interpret, AckCode, Envelope, Interpreted, Refusal};
use crate::parse::parse;
use mcr_domain::{OdsCode, Organisation};
use mcr_gateway::{CareEventAction, CareEventNotice, CareEventRefusal, Gateway};
use mcr_store::HeldMessage;
use rustls::ServerConfig;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

const START: u8 = 0x0B;
const END: u8 = 0x1C;
const CR: u8 = 0x0D;

/// A sending facility (MSH-4) allowed on this listener, and the member organisation it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderConfig {
    /// MSH-4 as the sender fills it (its namespace id).
    pub facility: String,
    /// The organisation's ODS code; it must be configured, and over TLS the client
    /// certificate must name it.
    pub org: OdsCode,
}

/// How one listener behaves.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub senders: Vec<SenderConfig>,
    pub max_message_bytes: usize,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// MSH-3 and MSH-4 of our ACKs.
    pub receiving_application: String,
    pub receiving_facility: String,
}

/// TLS with client certificates from the regional CA, or plain TCP (loopback only).
#[derive(Debug, Clone)]
pub enum Transport {
    Tls(Arc<ServerConfig>),
    PlainLoopback,
}

/// What the listener has done since it started.
#[derive(Debug, Default)]
pub struct Counts {
    pub accepted: AtomicU64,
    pub errors: AtomicU64,
    pub rejected: AtomicU64,
    pub held: AtomicU64,
    pub truncated: AtomicU64,
    pub oversized: AtomicU64,
    /// Bytes outside any frame, discarded.
    pub stray_bytes: AtomicU64,
    pub connections: AtomicU64,
}

/// A running listener. Dropping it leaves it running; call `stop`.
#[derive(Debug)]
pub struct AdtListener {
    pub addr: SocketAddr,
    pub counts: Arc<Counts>,
    task: JoinHandle<()>,
}

impl AdtListener {
    pub fn stop(&self) {
        self.task.abort();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("plain TCP for the ADT listener is only allowed on a loopback address, not {0}")]
    PlainNotLoopback(SocketAddr),
    #[error("the ADT listener names sending facility `{facility}` as {org}, an organisation the programme does not know")]
    UnknownOrg { facility: String, org: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

struct Shared {
    gateway: Gateway,
    config: ListenerConfig,
    senders: Vec<(String, Organisation)>,
    counts: Arc<Counts>,
    next_ack: AtomicU64,
}

/// Start listening on `listener`.
pub fn serve(
    listener: TcpListener,
    transport: Transport,
    config: ListenerConfig,
    gateway: Gateway,
) -> Result<AdtListener, ListenError> {
    let addr = listener.local_addr()?;
    if matches!(transport, Transport::PlainLoopback) && !addr.ip().is_loopback() {
        return Err(ListenError::PlainNotLoopback(addr));
    }
    let mut senders = Vec::new();
    for s in &config.senders {
        let org = gateway
            .orgs()
            .get(&s.org)
            .cloned()
            .ok_or_else(|| ListenError::UnknownOrg {
                facility: s.facility.clone(),
                org: s.org.to_string(),
            })?;
        senders.push((s.facility.clone(), org));
    }
    let counts = Arc::new(Counts::default());
    let shared = Arc::new(Shared {
        gateway,
        senders,
        counts: Arc::clone(&counts),
        next_ack: AtomicU64::new(1),
        config,
    });
    let task = tokio::spawn(accept_loop(listener, transport, shared));
    tracing::info!(%addr, "ADT listener (HL7 v2 over MLLP) started");
    Ok(AdtListener { addr, counts, task })
}

async fn accept_loop(listener: TcpListener, transport: Transport, shared: Arc<Shared>) {
    let permits = Arc::new(Semaphore::new(shared.config.max_connections.max(1)));
    let acceptor = match &transport {
        Transport::Tls(c) => Some(tokio_rustls::TlsAcceptor::from(Arc::clone(c))),
        Transport::PlainLoopback => None,
    };
    loop {
        // At most `max_connections` at once: the next waits in the backlog.
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "ADT accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        mcr_tls::no_delay(&stream);
        shared.counts.connections.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::clone(&shared);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                None => connection(stream, None, &shared).await,
                Some(acceptor) => {
                    let Some(tls) = mcr_tls::accept_tls(&acceptor, stream, peer).await else {
                        return;
                    };
                    let org = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(mcr_tls::org_of);
                    connection(tls, org, &shared).await;
                }
            }
        });
    }
}

/// What reading the next frame gave.
enum Frame {
    Message(Vec<u8>),
    /// Longer than the cap: the first bytes (to read the envelope from); the rest is skipped.
    TooLarge(Vec<u8>),
    /// The connection closed, or went idle, part way through a frame.
    Truncated(Vec<u8>),
    /// Closed (or idle) between frames.
    Done,
}

struct FrameReader<S> {
    stream: S,
    buf: Vec<u8>,
    max: usize,
    idle: Duration,
}

impl<S: AsyncRead + Unpin> FrameReader<S> {
    /// More bytes; false at end of stream, on error, or when idle too long.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(self.idle, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => false,
            Ok(Ok(n)) => {
                self.buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default());
                true
            }
        }
    }

    async fn next(&mut self, counts: &Counts) -> Frame {
        // Find the start block; bytes before it are stray.
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == START) {
                if i > 0 {
                    counts.stray_bytes.fetch_add(i as u64, Ordering::Relaxed);
                }
                self.buf.drain(..=i);
                break;
            }
            if !self.buf.is_empty() {
                counts
                    .stray_bytes
                    .fetch_add(self.buf.len() as u64, Ordering::Relaxed);
                self.buf.clear();
            }
            if !self.fill().await {
                return Frame::Done;
            }
        }
        // Read to the end block.
        let mut searched = 0;
        loop {
            if let Some(i) = self.buf[searched..]
                .windows(2)
                .position(|w| w[0] == END && w[1] == CR)
                .map(|i| i + searched)
            {
                let message: Vec<u8> = self.buf.drain(..i + 2).take(i).collect();
                if message.len() > self.max {
                    return Frame::TooLarge(message.into_iter().take(self.max).collect());
                }
                return Frame::Message(message);
            }
            searched = self.buf.len().saturating_sub(1);
            if self.buf.len() > self.max {
                // Keep the head for the envelope and skip to the end of this frame.
                let head: Vec<u8> = self.buf.iter().take(self.max).copied().collect();
                loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w[0] == END && w[1] == CR) {
                        self.buf.drain(..i + 2);
                        return Frame::TooLarge(head);
                    }
                    let keep = self.buf.last().copied();
                    self.buf.clear();
                    self.buf.extend(keep);
                    if !self.fill().await {
                        return Frame::Truncated(head);
                    }
                }
            }
            if !self.fill().await {
                return Frame::Truncated(std::mem::take(&mut self.buf));
            }
        }
    }
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    cert_org: Option<String>,
    shared: &Shared,
) {
    let mut reader = FrameReader {
        stream,
        buf: Vec::new(),
        max: shared.config.max_message_bytes,
        idle: shared.config.idle_timeout,
    };
    loop {
        let answer = match reader.next(&shared.counts).await {
            Frame::Done => return,
            Frame::Message(bytes) => shared.handle(&bytes, cert_org.as_deref()).await,
            Frame::TooLarge(head) => {
                shared.counts.oversized.fetch_add(1, Ordering::Relaxed);
                let env = head_envelope(&head);
                let refusal = Refusal::ar(
                    100,
                    format!(
                        "the message is larger than {} bytes, the most this listener takes",
                        shared.config.max_message_bytes
                    ),
                );
                shared.refuse(&env, &refusal).await
            }
            Frame::Truncated(head) => {
                shared.counts.truncated.fetch_add(1, Ordering::Relaxed);
                let env = head_envelope(&head);
                let refusal = Refusal::ar(
                    100,
                    "the connection closed or went idle before the end of the message (a truncated frame)",
                );
                shared.hold(&env, &refusal).await;
                return;
            }
        };
        let mut framed = Vec::with_capacity(answer.len() + 3);
        framed.push(START);
        framed.extend_from_slice(answer.as_bytes());
        framed.extend_from_slice(&[END, CR]);
        if reader.stream.write_all(&framed).await.is_err() || reader.stream.flush().await.is_err() {
            return;
        }
    }
}

/// The envelope of the first segment of a message cut short, as far as it can be read.
fn head_envelope(head: &[u8]) -> Envelope {
    let text = String::from_utf8_lossy(head);
    let first = text.split(['\r', '\n']).next().unwrap_or_default();
    parse(first).map(|m| envelope(&m)).unwrap_or_default()
}

impl Shared {
    fn ack_id(&self) -> String {
        format!("MCRACK{}", self.next_ack.fetch_add(1, Ordering::Relaxed))
    }

    fn ack(&self, env: &Envelope, refusal: Option<&Refusal>) -> String {
        ack(
            env,
            &self.config.receiving_application,
            &self.config.receiving_facility,
            self.gateway.clock().now(),
            &self.ack_id(),
            refusal,
        )
    }

    /// Keep a refused message's envelope and reason for review.
    async fn hold(&self, env: &Envelope, refusal: &Refusal) {
        match refusal.code {
            AckCode::Ar => self.counts.rejected.fetch_add(1, Ordering::Relaxed),
            _ => self.counts.errors.fetch_add(1, Ordering::Relaxed),
        };
        let held = HeldMessage {
            received_at: self.gateway.clock().now(),
            channel: "adt".into(),
            sender: env.sending_facility.clone(),
            message_type: env.type_label(),
            control_id: env.control_id.clone(),
            ack_code: refusal.code.as_str().into(),
            reason: refusal.reason.clone(),
        };
        if self.gateway.hold_feed_message(&held).await.is_ok() {
            self.counts.held.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn refuse(&self, env: &Envelope, refusal: &Refusal) -> String {
        self.hold(env, refusal).await;
        self.ack(env, Some(refusal))
    }

    /// One message: read, check the sender, apply, answer.
    async fn handle(&self, bytes: &[u8], cert_org: Option<&str>) -> String {
        let Ok(text) = std::str::from_utf8(bytes) else {
            let env = head_envelope(bytes);
            return self
                .refuse(&env, &Refusal::ar(102, "the message is not UTF-8 text"))
                .await;
        };
        let (env, read) = interpret(text);
        let facility = env.sending_facility.clone().unwrap_or_default();
        let Some((_, org)) = self.senders.iter().find(|(f, _)| *f == facility) else {
            let refusal = Refusal::ar(
                204,
                format!(
                    "sending facility `{facility}` (MSH-4) is not allowed to send on this listener"
                ),
            );
            return self.refuse(&env, &refusal).await;
        };
        if let Some(cert) = cert_org {
            if cert != org.code.as_str() {
                let refusal = Refusal::ar(
                    204,
                    format!(
                        "sending facility `{facility}` is {}, but the connection's certificate is {cert}'s",
                        org.code
                    ),
                );
                return self.refuse(&env, &refusal).await;
            }
        }
        let msg = match read {
            Ok(m) => m,
            Err(refusal) => return self.refuse(&env, &refusal).await,
        };
        let action = match msg.action {
            Interpreted::Event(a) => a,
            Interpreted::Person => CareEventAction::Noted,
        };
        let notice = CareEventNotice {
            nhs_number: msg.nhs_number,
            org: org.clone(),
            origin: "adt",
            source_event_id: msg.visit,
            action,
            message_type: env.type_label().unwrap_or_default(),
        };
        let correlation = format!(
            "adt-{}-{}",
            org.code,
            env.control_id.as_deref().unwrap_or_default()
        );
        match self.gateway.record_care_event(&notice, &correlation).await {
            Ok(_) => {
                self.counts.accepted.fetch_add(1, Ordering::Relaxed);
                self.ack(&env, None)
            }
            Err(e) => {
                let code = match e {
                    CareEventRefusal::UnknownPatient | CareEventRefusal::NoSuchEvent => 204,
                    CareEventRefusal::EndsBeforeStart => 102,
                    CareEventRefusal::Unavailable => 207,
                };
                self.refuse(&env, &Refusal::ae(code, e.to_string())).await
            }
        }
    }
}

/// The sending side, for the demo, tests and the benchmark: send `message` framed, read the
/// framed answer (the ACK) and return its text.
pub async fn send_framed<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    message: &str,
) -> std::io::Result<String> {
    let mut framed = Vec::with_capacity(message.len() + 3);
    framed.push(START);
    framed.extend_from_slice(message.as_bytes());
    framed.extend_from_slice(&[END, CR]);
    stream.write_all(&framed).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if buf.ends_with(&[END, CR]) {
            let body = buf.get(1..buf.len() - 2).unwrap_or_default();
            return Ok(String::from_utf8_lossy(body).into_owned());
        }
    }
}
