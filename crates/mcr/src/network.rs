//! The network around the gateway: HTTPS for browsers and API clients, mutual TLS towards
//! sources, and `mcr pki` (a demo regional CA and organisation certificates).

use crate::config::Settings;
use anyhow::{bail, Context};
use mcr_tls::rustls::ServerConfig;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How the gateway serves: TLS with this configuration, or plain HTTP (loopback only).
#[derive(Debug, Clone)]
pub enum Serving {
    Tls(Arc<ServerConfig>),
    PlainHttpOnLoopback,
}

impl Serving {
    pub fn scheme(&self) -> &'static str {
        match self {
            Self::Tls(_) => "https",
            Self::PlainHttpOnLoopback => "http",
        }
    }
}

/// Decide how to serve on `addr` from `[tls]`. Plain HTTP only when explicitly configured, and
/// then only on a loopback address: a clear error otherwise.
pub fn serving(s: &Settings, addr: SocketAddr) -> anyhow::Result<Serving> {
    if s.tls.disabled {
        if !addr.ip().is_loopback() {
            bail!(
                "refusing to serve plain HTTP on {addr}: plain HTTP ([tls] disabled = true or --insecure-http) is allowed \
                 only on a loopback address such as 127.0.0.1; configure [tls] cert and key to listen elsewhere"
            );
        }
        tracing::warn!(%addr, "serving plain HTTP on loopback (local development only)");
        return Ok(Serving::PlainHttpOnLoopback);
    }
    let (Some(cert), Some(key)) = (&s.tls.cert, &s.tls.key) else {
        bail!(
            "no TLS certificate: set [tls] cert and key (PEM files; `mcr pki issue` makes demo ones), \
             or [tls] disabled = true / --insecure-http for plain HTTP on loopback"
        );
    };
    let identity =
        mcr_tls::Identity::load(cert, key).context("loading the gateway's TLS certificate")?;
    Ok(Serving::Tls(mcr_tls::server_config(identity)?))
}

/// The HTTP client the gateway asks sources with: one connection pool; for `https://`
/// sources, trust only the regional CA and present this gateway's organisation certificate.
pub fn sources_client(s: &Settings) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("my-care-record/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &s.sources_tls.ca {
        let roots = mcr_tls::load_roots(ca).context("[sources_tls] ca")?;
        let identity = match (&s.sources_tls.cert, &s.sources_tls.key) {
            (Some(cert), Some(key)) => Some(
                mcr_tls::Identity::load(cert, key)
                    .context("loading the gateway's organisation certificate")?,
            ),
            _ => {
                tracing::warn!("no [sources_tls] cert: sources that require client certificates will refuse the gateway");
                None
            }
        };
        builder = builder.use_preconfigured_tls(mcr_tls::client_config(roots, identity)?);
    }
    builder
        .build()
        .context("building the HTTP client for sources")
}

/// Serve `router` on `listener` (TLS or plain) until the task is aborted, or until `stop`
/// turns true: then it stops accepting, lets the requests in flight finish and closes idle
/// connections, and the task ends. The peer's address is available to handlers as
/// `ConnectInfo<SocketAddr>`.
pub fn spawn_server(
    listener: tokio::net::TcpListener,
    serving: Serving,
    router: axum::Router,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use axum::serve::ListenerExt;
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    let stopped = async move {
        let mut stop = stop;
        // An error means the sender is gone: nobody can ask to stop any more.
        if stop.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    Ok(match serving {
        Serving::Tls(config) => {
            let listener = mcr_tls::TlsListener::new(listener, config)?.tap_io(|_| ());
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, service)
                    .with_graceful_shutdown(stopped)
                    .await
                {
                    tracing::error!(error = %e, "gateway server stopped");
                }
            })
        }
        Serving::PlainHttpOnLoopback => tokio::spawn(async move {
            let listener = listener.tap_io(|tcp| mcr_tls::no_delay(tcp));
            if let Err(e) = axum::serve(listener, service)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::error!(error = %e, "gateway server stopped");
            }
        }),
    })
}

/// `mcr pki init`: a demo regional CA in `dir`.
pub fn pki_init(dir: &Path, today: chrono::NaiveDate) -> anyhow::Result<String> {
    let files = mcr_tls::pki::init_ca(dir, today)?;
    Ok(format!(
        "regional CA created\n  certificate (give to sources and clients): {}\n  private key (keep safe):                   {}",
        files.cert.display(),
        files.key.display()
    ))
}

/// `mcr pki issue ORG`: an organisation certificate from the CA in `dir`.
pub fn pki_issue(
    dir: &Path,
    org: &str,
    name: Option<String>,
    server_names: Vec<String>,
    today: chrono::NaiveDate,
) -> anyhow::Result<String> {
    if !mcr_tls::pki::ca_files(dir).key.exists() {
        bail!(
            "no CA in {}: run `mcr pki init --dir {}` first",
            dir.display(),
            dir.display()
        );
    }
    let req = mcr_tls::pki::IssueRequest {
        org: org.to_owned(),
        org_name: name,
        server_names,
    };
    let files = mcr_tls::pki::issue(dir, &req, today)?;
    Ok(format!(
        "certificate for {org} (client and server, SAN urn:ods:{org})\n  certificate: {}\n  private key: {}",
        files.cert.display(),
        files.key.display()
    ))
}

/// The gateway's key for signing the end user's identity to sources: an Ed25519 PKCS#8 file,
/// created (mode 0600) when missing. Returns the key and its public half as a JWK `x`.
pub fn identity_key(path: &Path) -> anyhow::Result<(Vec<u8>, String)> {
    use base64::Engine;
    use ring::signature::{Ed25519KeyPair, KeyPair};
    let pkcs8 = if path.exists() {
        std::fs::read(path)
            .with_context(|| format!("reading the identity signing key {}", path.display()))?
    } else {
        let doc = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("generating the identity signing key failed"))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        write_private(path, doc.as_ref())?;
        doc.as_ref().to_vec()
    };
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8)
        .map_err(|_| anyhow::anyhow!("{} is not an Ed25519 PKCS#8 key", path.display()))?;
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    Ok((pkcs8, x))
}

/// Where the identity signing key lives under these settings.
pub fn identity_key_path(s: &Settings) -> std::path::PathBuf {
    s.sources_tls
        .identity_key
        .clone()
        .unwrap_or_else(|| s.data_dir.join("source-identity-key.p8"))
}

/// The signer of the end user's identity for every request to a source.
pub fn identity_signer(
    s: &Settings,
    clock: Arc<dyn mcr_domain::Clock>,
) -> anyhow::Result<Arc<mcr_federation::IdentitySigner>> {
    let (pkcs8, _) = identity_key(&identity_key_path(s))?;
    let issuer = s
        .sources_tls
        .identity_issuer
        .clone()
        .unwrap_or_else(|| s.base_url());
    let org = match (&s.sources_tls.cert, &s.sources_tls.key) {
        (Some(cert), Some(key)) => mcr_tls::Identity::load(cert, key)?.org(),
        _ => None,
    };
    let org = mcr_domain::OdsCode::parse(org.as_deref().unwrap_or("UNKNOWN")).map_err(|_| {
        anyhow::anyhow!("[sources_tls] cert names an organisation that is not an ODS code")
    })?;
    let signer = mcr_federation::IdentitySigner::new(&pkcs8, issuer, org, clock)
        .map_err(|e| anyhow::anyhow!("{}: {e}", identity_key_path(s).display()))?;
    Ok(Arc::new(signer))
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("creating {}", path.display()))
}
