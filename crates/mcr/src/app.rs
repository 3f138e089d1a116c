//! Assembling the gateway from settings and serving it.

use crate::config::Settings;
use anyhow::Context;
use mcr_domain::{Clock, SystemClock};
use mcr_federation::gpconnect::GpConnectSource;
use mcr_federation::{Federation, FederationConfig, HttpSource, Source, SourceKind};
use mcr_gateway::{Gateway, OrgRegistry};
use mcr_web::{AppState, Authenticator};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The ODS-style code of the gateway's own organisation (the regional programme): the
/// receiving facility of its ADT feed, and in the demo the name in the client certificate it
/// presents to sources.
pub const GATEWAY_ORG: &str = "MCR01";

/// The federation limits from settings.
pub fn federation_config(s: &Settings) -> FederationConfig {
    FederationConfig {
        deadline: Duration::from_millis(s.federation.deadline_ms),
        max_bytes_per_source: s.federation.max_source_mib * 1024 * 1024,
        page_size: s.federation.page_size,
        ..FederationConfig::default()
    }
}

/// The sources, over HTTP (mutual TLS for `https://` ones), sharing one connection pool; every
/// request carries the end user's identity, signed.
pub fn federation(s: &Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Federation> {
    let limits = federation_config(s);
    let client = crate::network::sources_client(s)?;
    let signer = crate::network::identity_signer(s, clock)?;
    let sources: Vec<Arc<dyn Source>> = s
        .sources
        .iter()
        .map(|c| match c.kind {
            SourceKind::FhirR4 => Arc::new(
                HttpSource::new(c.clone(), client.clone(), limits.clone())
                    .with_identity(signer.clone()),
            ) as Arc<dyn Source>,
            SourceKind::GpConnect => Arc::new(
                GpConnectSource::new(c.clone(), client.clone(), limits.clone())
                    .with_identity(signer.clone()),
            ) as Arc<dyn Source>,
        })
        .collect();
    Ok(Federation::new(sources, limits))
}

/// Organisations: the configured ones, plus every source's organisation.
pub fn registry(s: &Settings) -> OrgRegistry {
    let mut orgs = s.organisations.clone();
    for src in &s.sources {
        if !orgs.iter().any(|o| o.code == src.organisation.code) {
            orgs.push(src.organisation.clone());
        }
    }
    OrgRegistry::new(orgs)
}

/// The systems registered for SMART backend services, each run by a member organisation
/// that may view records (never a private company or third party).
fn backend_services(s: &Settings) -> anyhow::Result<mcr_web::SystemAccess> {
    let systems = mcr_web::SystemAccess::new(&s.backend_services)
        .map_err(|e| anyhow::anyhow!("config: {e}"))?;
    let orgs = registry(s);
    for (client, code) in systems.organisations() {
        let known = mcr_domain::OdsCode::parse(code)
            .ok()
            .and_then(|c| orgs.get(&c).cloned());
        if !known
            .as_ref()
            .is_some_and(mcr_web::system::may_run_a_system)
        {
            anyhow::bail!(
                "config: [[backend_services.clients]] `{client}` belongs to `{code}`, which is not a member organisation that may view records"
            );
        }
    }
    Ok(systems)
}

/// Open (and migrate) the store and build the gateway.
pub async fn gateway(s: &Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Gateway> {
    if s.store.is_none() {
        std::fs::create_dir_all(&s.data_dir)
            .with_context(|| format!("creating the data directory {}", s.data_dir.display()))?;
    }
    let store = mcr_store::connect_and_migrate(&s.store_url())
        .await
        .context("opening the gateway's store")?;
    let federation = Arc::new(federation(s, clock.clone())?);
    // The watch's counters live in the store (see `counters_for`): a restart forgets nothing,
    // and on PostgreSQL every gateway counts a user's views together.
    let counters = mcr_gateway::counters_for(store.clone());
    let mut gateway = Gateway::new(
        store,
        federation,
        clock.clone(),
        s.policy.clone(),
        registry(s),
    )
    .with_sharing(s.sharing.clone())
    .with_audit(s.audit.gateway_config()?)
    .with_watch(mcr_gateway::Watch::new(s.watch.config()?).with_counters(counters))
    .with_match_weights(s.matching.weights);
    if let Some(pds) = &s.pds {
        let client = mcr_index::pds::PdsClient::new(pds.clone(), clock.clone())?;
        gateway = gateway.with_pds(Arc::new(client));
    }
    Ok(gateway)
}

/// The gateway as an OpenID Connect relying party of the configured provider.
/// `[auth.cis2]`: the national RBAC mapping (the file it names, else the shipped one), checked.
pub fn cis2_rules(s: &Settings) -> anyhow::Result<Option<mcr_web::cis2::Cis2Rules>> {
    let Some(cfg) = &s.auth.cis2 else {
        return Ok(None);
    };
    let text = match &cfg.mapping {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("[auth.cis2] mapping {}: {e}", path.display()))?,
        None => mcr_oidc::RbacMapping::DEFAULT_TOML.to_owned(),
    };
    mcr_web::cis2::Cis2Rules::new(cfg, &text)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("[auth.cis2]: {e}"))
}

/// The HTTP client for an identity service (`what`: the region's provider, NHS login, the
/// host systems): short timeouts, no redirects followed, the gateway named as its agent.
fn identity_client(what: &str) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("my-care-record/", env!("CARGO_PKG_VERSION")))
        .build()
        .with_context(|| format!("building the HTTP client for {what}"))
}

pub fn relying_party(s: &Settings, base_url: &str) -> anyhow::Result<mcr_oidc::RelyingParty> {
    let http = identity_client("the identity provider")?;
    mcr_oidc::RelyingParty::new(s.auth.clone(), base_url, http)
        .map_err(|e| anyhow::anyhow!("[auth]: {e}"))
}

/// How patients sign in to `/my-record`: NHS login when `[auth.nhs_login]` is configured;
/// else the development stand-in when the demo's patients are given and its switch is on;
/// else not at all.
pub fn patient_access(s: &Settings, base_url: &str) -> anyhow::Result<mcr_web::PatientAccess> {
    let Some(cfg) = &s.auth.nhs_login else {
        return Ok(if s.patient_stand_in {
            mcr_web::PatientAccess::demo(s.demo_patients.clone())
        } else {
            mcr_web::PatientAccess::default()
        });
    };
    let http = identity_client("NHS login")?;
    let login = mcr_oidc::NhsLogin::new(cfg, base_url, http).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(mcr_web::PatientAccess::nhs_login(
        Arc::new(login),
        s.demo_patients.clone(),
    ))
}

/// The host systems that may launch the viewer (`[smart]`), each reached as a SMART client.
pub fn launcher(s: &Settings, base_url: &str) -> anyhow::Result<mcr_web::Launcher> {
    let http = identity_client("launching host systems")?;
    mcr_web::Launcher::new(&s.smart, base_url, http).map_err(|e| anyhow::anyhow!("{e}"))
}

/// A running gateway.
#[derive(Debug)]
pub struct Running {
    pub addr: std::net::SocketAddr,
    pub gateway: Gateway,
    pub task: tokio::task::JoinHandle<()>,
    /// Refusals before the gateway not yet audited ([`Running::stop`] writes them).
    pub refusals: Arc<mcr_web::RefusalTally>,
    /// The HL7 v2 ADT listener, when `[adt]` is configured.
    pub adt: Option<mcr_adt::AdtListener>,
    /// Draining or not (`/readyz`).
    pub readiness: Arc<mcr_web::Readiness>,
    /// Turned true to stop accepting and let the requests in flight finish.
    stop_accepting: tokio::sync::watch::Sender<bool>,
    /// How long [`Running::drain`] waits for the requests in flight (`[http] drain_seconds`).
    pub drain_limit: Duration,
    /// How long [`Running::drain`] keeps accepting after `/readyz` says draining
    /// (`[http] drain_notice_seconds`).
    pub drain_notice: Duration,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every request in flight was answered.
    Finished,
    /// The limit passed first; the requests still in flight were cut off.
    CutOff,
}

impl Running {
    /// A graceful stop (on `SIGTERM` or Ctrl-C): `/readyz` says draining (and the gateway
    /// keeps serving for [`Running::drain_notice`], for the load balancer to notice), the
    /// listener stops accepting, the requests in flight finish (each view's audit record is committed before
    /// its answer starts, so a finished view is an audited one), up to [`Running::drain_limit`];
    /// then the ADT listener stops and the refusals counted since the last flush are audited.
    pub async fn drain(&self) -> Drained {
        self.readiness.start_draining();
        if !self.drain_notice.is_zero() {
            tracing::info!(
                notice_seconds = self.drain_notice.as_secs(),
                "draining: /readyz says so; still serving while the load balancer notices"
            );
            tokio::time::sleep(self.drain_notice).await;
        }
        let started = std::time::Instant::now();
        tracing::info!(
            limit_seconds = self.drain_limit.as_secs(),
            "draining: no new connections; finishing the requests in flight"
        );
        let _ = self.stop_accepting.send(true);
        let finished = tokio::time::timeout(self.drain_limit, async {
            while !self.task.is_finished() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .is_ok();
        let outcome = if finished {
            tracing::info!(
                millis = started.elapsed().as_millis() as u64,
                "drained: every request in flight was answered"
            );
            Drained::Finished
        } else {
            tracing::warn!(
                limit_seconds = self.drain_limit.as_secs(),
                "drain limit reached: requests still in flight are cut off"
            );
            Drained::CutOff
        };
        self.stop().await;
        outcome
    }

    /// Stop serving, then audit the refusals counted since the last flush.
    pub async fn stop(&self) {
        self.task.abort();
        if let Some(adt) = &self.adt {
            adt.stop();
        }
        self.refusals.flush(&self.gateway).await;
    }
}

/// Start the ADT listener `[adt]` describes.
pub async fn adt_listener(
    s: &Settings,
    gateway: &Gateway,
) -> anyhow::Result<Option<mcr_adt::AdtListener>> {
    let Some(a) = &s.adt else {
        return Ok(None);
    };
    let transport = if a.insecure_loopback {
        mcr_adt::Transport::PlainLoopback
    } else {
        let (Some(cert), Some(key), Some(ca)) = (&s.tls.cert, &s.tls.key, &s.sources_tls.ca) else {
            anyhow::bail!("[adt] over TLS needs [tls] cert and key and [sources_tls] ca");
        };
        let identity = mcr_tls::Identity::load(cert, key)?;
        let roots = mcr_tls::load_roots(ca)?;
        mcr_adt::Transport::Tls(mcr_tls::mtls_server_config(
            identity,
            roots,
            mcr_tls::RefusedOrgs::default(),
        )?)
    };
    let listener = TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("[adt]: cannot listen on {}", a.listen))?;
    let config = mcr_adt::ListenerConfig {
        senders: a.senders.clone(),
        max_message_bytes: a.max_message_bytes,
        idle_timeout: Duration::from_secs(a.idle_timeout_secs),
        max_connections: a.max_connections,
        receiving_application: "MCR".into(),
        receiving_facility: GATEWAY_ORG.into(),
    };
    Ok(Some(mcr_adt::serve(
        listener,
        transport,
        config,
        gateway.clone(),
    )?))
}

/// Build the gateway and serve it on `listener` until the task is aborted.
pub async fn serve(s: &Settings, listener: TcpListener) -> anyhow::Result<Running> {
    let addr = listener.local_addr()?;
    let serving = crate::network::serving(s, addr)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut gateway = gateway(s, clock.clone()).await?;
    // What each source can be asked for, before the index's first sync asks any of them.
    let read = gateway.discover_capabilities().await;
    tracing::info!(
        read,
        sources = gateway.federation().sources().count(),
        "sources' capability statements read"
    );
    if s.sync_on_start {
        // Incremental: from each source's watermark (a source never synced is read whole), so
        // a restart does not rewrite the index; and on one gateway of a region at a time.
        let holder = format!("{}#{}", s.base_url(), std::process::id());
        let report = gateway
            .indexer()
            .sync_once(false, &holder)
            .await
            .context("initial index sync")?;
        for r in report.iter().flat_map(|r| &r.sources) {
            if let Some(f) = &r.failed {
                tracing::warn!(source = %r.source, reason = %f.describe(), "source not indexed at start-up");
            }
            if let Some(why) = &r.pds.failure {
                // In the platform's or PDS's words: no patient data.
                tracing::warn!(source = %r.source, failed = r.pds.failed, reason = %why, "PDS traces failed at start-up");
            }
        }
    }
    let base_url = s
        .base_url
        .clone()
        .unwrap_or_else(|| format!("{}://{addr}", serving.scheme()));
    gateway = notifying(s, gateway, &base_url, clock.clone())?;
    let mut auth = Authenticator::new(Arc::new(relying_party(s, &base_url)?), registry(s));
    if let Some(rules) = cis2_rules(s)? {
        auth = auth.with_cis2(rules);
    }
    let systems = backend_services(s)?;
    let secure_cookies = matches!(serving, crate::network::Serving::Tls(_));
    let launcher = launcher(s, &base_url)?;
    let patients = patient_access(s, &base_url)?;
    let state = AppState::new(gateway.clone(), auth, base_url, secure_cookies)
        .with_launcher(launcher)
        .with_patient_access(patients)
        .with_trusted_proxy_hops(s.http.trusted_proxy_hops)
        .with_backend_services(systems);
    let refusals = state.refusals.clone();
    let readiness = state.readiness.clone();
    let flusher = refusals.spawn_flush(
        gateway.clone(),
        Duration::from_secs(s.http.refusal_flush_seconds.max(1)),
    );
    // A record that the gateway started, and a signed checkpoint at once; then one on a timer
    // whenever the trail has moved (and every `checkpoint_every` records, as they are written).
    let interval = s.audit.checkpoint_interval();
    gateway
        .start_audit(interval)
        .await
        .map_err(|e| anyhow::anyhow!("writing the start-up audit record: {e}"))?;
    let timer = gateway.spawn_checkpoints(interval);
    let pruning = gateway.spawn_care_event_pruning(mcr_gateway::CARE_EVENT_PRUNE_INTERVAL);
    let discovery = spawn_discovery(
        gateway.clone(),
        Duration::from_secs(s.federation.capabilities_every_secs),
    );
    let router = mcr_web::router(state).layer(tower_http::trace::TraceLayer::new_for_http());
    // The ADT listener first: once the gateway answers HTTP, its feed is open too.
    let adt = adt_listener(s, &gateway).await?;
    let (stop_accepting, stop) = tokio::sync::watch::channel(false);
    let server = crate::network::spawn_server(listener, serving, router, stop)?;
    // One task to abort: aborting it aborts the server and the timer with it.
    let task = tokio::spawn(async move {
        let _timer = timer.map(AbortOnDrop);
        let _flusher = AbortOnDrop(flusher);
        let _pruning = AbortOnDrop(pruning);
        let _discovery = AbortOnDrop(discovery);
        let mut server = AbortOnDrop(server);
        if let Err(e) = (&mut server.0).await {
            tracing::error!(error = %e, "gateway server task failed");
        }
    });
    Ok(Running {
        addr,
        gateway,
        task,
        refusals,
        adt,
        readiness,
        stop_accepting,
        drain_limit: Duration::from_secs(s.http.drain_seconds),
        drain_notice: Duration::from_secs(s.http.drain_notice_seconds),
    })
}

/// Read every source's CapabilityStatement again every `every` (the first tick is after
/// `every`: start-up has just read them).
fn spawn_discovery(gateway: Gateway, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            gateway.discover_capabilities().await;
        }
    })
}

/// Aborts a task when dropped (when the task holding it is aborted).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The watch, telling privacy officers of each flag over the configured channels (a signed
/// webhook, email), when any is configured.
pub fn notifying(
    s: &Settings,
    gateway: Gateway,
    base_url: &str,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Gateway> {
    let n = &s.watch.notify;
    if n.webhook.is_none() && n.email.is_none() {
        return Ok(gateway);
    }
    let config = s.watch.notify_config(base_url)?;
    let (notifier, _tasks) = mcr_notify::start(&config, gateway.shared_metrics(), clock)
        .map_err(|e| anyhow::anyhow!("config: watch.notify: {e}"))?;
    tracing::info!(
        webhook = config.webhook.is_some(),
        email = config.email.is_some(),
        batch_seconds = config.batch.as_secs(),
        "privacy officers are told of anomaly flags"
    );
    let counters = gateway.watch().counters();
    Ok(gateway.with_watch(
        mcr_gateway::Watch::new(s.watch.config()?)
            .with_counters(counters)
            .with_sink(notifier),
    ))
}
