//! One settings struct, layered: defaults, then a TOML file, then `MCR_*` environment
//! variables. Secrets are held in `secrecy` types and never printed.

use anyhow::{bail, Context};
use mcr_domain::Organisation;
use mcr_federation::SourceConfig;
use mcr_policy::{PolicyConfig, SharingAgreement};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address the gateway listens on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The URL users reach the gateway at (default `http://{listen}`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Where the embedded store and demo keys live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; default: `sqlite://{data_dir}/mcr.db`.
    #[serde(default)]
    pub store: Option<secrecy::SecretString>,
    #[serde(default)]
    pub federation: FederationSettings,
    pub auth: mcr_web::AuthConfig,
    /// `[smart]`: host systems (GP systems, hospital EPRs) that may launch the viewer.
    #[serde(default)]
    pub smart: mcr_web::SmartSettings,
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Organisations known to the programme (members and others).
    #[serde(default)]
    pub organisations: Vec<Organisation>,
    pub sources: Vec<SourceConfig>,
    /// Source organisations' data sharing agreements.
    #[serde(default)]
    pub sharing: Vec<SharingAgreement>,
    /// The audit trail: checkpoint signing key and interval, trusted keys, review thresholds.
    #[serde(default)]
    pub audit: crate::audit_cmd::AuditSettings,
    /// HTTPS for browsers and API clients.
    #[serde(default)]
    pub tls: TlsSettings,
    /// Mutual TLS towards `https://` sources, and the end user's identity sent to each source.
    #[serde(default)]
    pub sources_tls: SourcesTlsSettings,
    /// Re-read every source's patients when the gateway starts.
    #[serde(default)]
    pub sync_on_start: bool,
    /// The watch on every permitted view, and how privacy officers are told of its flags.
    #[serde(default)]
    pub watch: crate::watch_settings::WatchSettings,
    /// The HL7 v2 ADT listener over MLLP (absent: none).
    #[serde(default)]
    pub adt: Option<AdtSettings>,
    /// Demo only: the sample patients the public site's patient sign-in offers (never from a
    /// config file; empty: no patient sign-in).
    #[serde(skip)]
    pub demo_patients: Vec<mcr_web::DemoPatient>,
    /// Development only: patients sign in by picking one of `demo_patients`, with no NHS login
    /// (never from a config file; off unless the demo is started with it, and ignored when
    /// `[auth.nhs_login]` is configured).
    #[serde(skip)]
    pub patient_stand_in: bool,
    /// `[http]`: what the gateway may believe about the proxies in front of it.
    #[serde(default)]
    pub http: HttpSettings,
    /// `[backend_services]`: systems that may ask the token endpoint for access tokens
    /// (SMART backend services), their keys, scopes and organisations.
    #[serde(default)]
    pub backend_services: mcr_web::BackendServicesConfig,
    /// `[pds]`: the Personal Demographics Service the index traces the records it cannot link
    /// against (absent: no trace).
    #[serde(default)]
    pub pds: Option<mcr_index::pds::PdsSettings>,
    /// `[matching]`: the weights the index matches records without an NHS number with
    /// (`weights = "configured"`, the default, or `"estimated"` from each sync's own pairs).
    #[serde(default)]
    pub matching: mcr_index::matching::MatchingSettings,
}

/// `[http]`: `trusted_proxy_hops` is how many reverse proxies (load balancer, TLS
/// terminator) stand in front of the gateway and each append the address they were reached
/// from to `X-Forwarded-For`. 0 (the default): the header is ignored and the connecting
/// address is the client's. Only raise it when every request really passes those proxies,
/// or clients can choose their own address for the anonymous rate limits.
///
/// `refusal_flush_seconds` (default 60): refusals made before the gateway (CSRF, a failed NHS
/// number check, 413/414/431, 429) are audited in aggregate, one record per kind and source
/// per this many seconds, and at shutdown.
///
/// `drain_seconds` (default 25): on `SIGTERM` (or Ctrl-C) the gateway stops accepting, says
/// so on `/readyz`, and waits this long at most for the requests in flight before it exits.
/// Keep the supervisor's stop timeout above it (systemd `TimeoutStopSec`, a container
/// runtime's grace period). `drain_notice_seconds` (default 0): before it stops accepting, the
/// gateway keeps serving this long while `/readyz` already says draining, so a load balancer
/// polling readiness takes it out of rotation before connections are refused (set it to the
/// balancer's check interval times its failure threshold).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    pub trusted_proxy_hops: u8,
    pub refusal_flush_seconds: u64,
    pub drain_seconds: u64,
    pub drain_notice_seconds: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            trusted_proxy_hops: 0,
            refusal_flush_seconds: 60,
            drain_seconds: 25,
            drain_notice_seconds: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationSettings {
    /// How long a view waits for any one source, in milliseconds.
    pub deadline_ms: u64,
    /// The most one source may send for one view, in MiB.
    pub max_source_mib: u64,
    pub page_size: u32,
    /// How often each source's CapabilityStatement is read again, in seconds (it is read at
    /// start-up too).
    pub capabilities_every_secs: u64,
}

impl Default for FederationSettings {
    fn default() -> Self {
        Self {
            deadline_ms: 3_000,
            max_source_mib: 8,
            page_size: 200,
            capabilities_every_secs: 3_600,
        }
    }
}

/// `[tls]`: the gateway's HTTPS certificate and key (PEM). Plain HTTP only with `disabled = true`
/// (or `mcr serve --insecure-http`), and then only on a loopback address.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    #[serde(default)]
    pub disabled: bool,
}

/// `[sources_tls]`: how the gateway talks to sources.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesTlsSettings {
    /// The regional CA (PEM): the only trust anchor for `https://` sources' certificates.
    pub ca: Option<PathBuf>,
    /// This gateway's organisation certificate and key (PEM), presented to sources.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Ed25519 PKCS#8 key that signs the end user's identity sent with every request to a
    /// source (created if missing). Default: `{data_dir}/source-identity-key.p8`.
    pub identity_key: Option<PathBuf>,
    /// `iss` of those identity tokens. Default: the gateway's base URL.
    pub identity_issuer: Option<String>,
}

/// `[adt]`: the HL7 v2 ADT listener. Mutual TLS with the gateway's `[tls]` certificate, taking
/// client certificates from the regional CA (`[sources_tls] ca`); plain TCP only with
/// `insecure_loopback = true` on a loopback address.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdtSettings {
    pub listen: SocketAddr,
    /// Plain TCP instead of TLS: only on a loopback address (tests, the demo).
    #[serde(default)]
    pub insecure_loopback: bool,
    /// Which sending facilities (MSH-4) may send, as which member organisation.
    #[serde(default)]
    pub senders: Vec<mcr_adt::SenderConfig>,
    /// The largest message taken, in bytes.
    #[serde(default = "default_adt_max_bytes")]
    pub max_message_bytes: usize,
    /// A connection idle this long is closed.
    #[serde(default = "default_adt_idle_secs")]
    pub idle_timeout_secs: u64,
    #[serde(default = "default_adt_connections")]
    pub max_connections: usize,
}

fn default_adt_max_bytes() -> usize {
    64 * 1024
}

fn default_adt_idle_secs() -> u64 {
    300
}

fn default_adt_connections() -> usize {
    256
}

impl AdtSettings {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.insecure_loopback && !self.listen.ip().is_loopback() {
            bail!(
                "config: [adt] insecure_loopback needs a loopback listen address, not {}",
                self.listen
            );
        }
        if self.senders.is_empty() {
            bail!("config: [adt] needs at least one [[adt.senders]] entry (facility and org)");
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_message_bytes) {
            bail!("config: [adt] max_message_bytes must be between 1024 and 16777216");
        }
        if self.idle_timeout_secs == 0 || self.max_connections == 0 {
            bail!("config: [adt] idle_timeout_secs and max_connections must be at least 1");
        }
        Ok(())
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

impl Settings {
    /// Read a TOML file, then apply `MCR_LISTEN`, `MCR_DATA_DIR`, `MCR_STORE`, `MCR_BASE_URL`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let mut s: Settings = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?;
        s.apply_env(|k| std::env::var(k).ok())?;
        s.validate()?;
        Ok(s)
    }

    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        if let Some(v) = get("MCR_LISTEN") {
            self.listen = v.parse().with_context(|| {
                format!("MCR_LISTEN `{v}` is not an address like 127.0.0.1:8080")
            })?;
        }
        if let Some(v) = get("MCR_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("MCR_STORE") {
            self.store = Some(v.into());
        }
        if let Some(v) = get("MCR_BASE_URL") {
            self.base_url = Some(v);
        }
        if let Some(v) = get("MCR_AUTH_CLIENT_SECRET") {
            self.auth.client_secret = v.into();
        }
        Ok(())
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.sources.is_empty() {
            bail!("config: at least one [[sources]] entry is needed");
        }
        let mut seen = std::collections::BTreeSet::new();
        for s in &self.sources {
            if !seen.insert(s.id.clone()) {
                bail!("config: source id `{}` appears twice", s.id);
            }
            if !matches!(s.base_url.scheme(), "http" | "https") {
                bail!("config: source `{}` base_url must be http or https", s.id);
            }
            match (s.kind, &s.gp_connect) {
                (mcr_federation::SourceKind::GpConnect, None) => bail!(
                    "config: source `{}` is kind = \"gp-connect\": set [sources.gp_connect] consumer_asid (and provider_asid or a directory)",
                    s.id
                ),
                (mcr_federation::SourceKind::GpConnect, Some(g))
                    if g.consumer_asid.trim().is_empty()
                        || (g.directory.is_none() && g.provider_asid.trim().is_empty()) =>
                {
                    bail!(
                        "config: source `{}`: [sources.gp_connect] needs consumer_asid, and provider_asid unless [sources.gp_connect.directory] finds it",
                        s.id
                    )
                }
                (mcr_federation::SourceKind::FhirR4, Some(_)) => bail!(
                    "config: source `{}` has [sources.gp_connect] but is not kind = \"gp-connect\"",
                    s.id
                ),
                _ => {}
            }
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            bail!("config: [tls] needs both cert and key");
        }
        if self.sources_tls.cert.is_some() != self.sources_tls.key.is_some() {
            bail!("config: [sources_tls] needs both cert and key");
        }
        if self.sources_tls.ca.is_none() {
            if let Some(s) = self.sources.iter().find(|s| s.base_url.scheme() == "https") {
                bail!("config: source `{}` is https: set [sources_tls] ca to the regional CA certificate", s.id);
            }
        }
        if self.federation.deadline_ms == 0 || self.federation.deadline_ms > 60_000 {
            bail!("config: federation.deadline_ms must be between 1 and 60000");
        }
        if !(60..=604_800).contains(&self.federation.capabilities_every_secs) {
            bail!("config: federation.capabilities_every_secs must be between 60 (a minute) and 604800 (a week)");
        }
        for s in &self.sources {
            if s.deadline_ms.is_some_and(|ms| ms == 0 || ms > 60_000) {
                bail!(
                    "config: source `{}` deadline_ms must be between 1 and 60000",
                    s.id
                );
            }
            if s.feed_timeout_secs
                .is_some_and(|secs| secs == 0 || secs > 86_400)
            {
                bail!(
                    "config: source `{}` feed_timeout_secs must be between 1 and 86400 (a day)",
                    s.id
                );
            }
        }
        if self.federation.max_source_mib == 0 {
            bail!("config: federation.max_source_mib must be at least 1");
        }
        self.audit.validate()?;
        self.watch.validate()?;
        if let Some(adt) = &self.adt {
            adt.validate()?;
            if !adt.insecure_loopback && (self.tls.cert.is_none() || self.sources_tls.ca.is_none())
            {
                bail!("config: [adt] over TLS needs [tls] cert and key and [sources_tls] ca (the regional CA its senders' certificates chain to)");
            }
        }
        if let Some(pds) = &self.pds {
            pds.validate()
                .map_err(|e| anyhow::anyhow!("config: [pds] {e}"))?;
        }
        if !(1..=1000).contains(&self.federation.page_size) {
            bail!("config: federation.page_size must be between 1 and 1000");
        }
        Ok(())
    }

    pub fn store_url(&self) -> String {
        use secrecy::ExposeSecret;
        match &self.store {
            Some(s) => s.expose_secret().to_owned(),
            None => format!("sqlite://{}", self.data_dir.join("mcr.db").display()),
        }
    }

    pub fn base_url(&self) -> String {
        let scheme = if self.tls.disabled { "http" } else { "https" };
        self.base_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{}", self.listen))
    }
}
