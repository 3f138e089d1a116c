//! `mcr demo`: the four simulated sources and the gateway on an embedded SQLite store, with
//! demo users and patients for every interesting case, described in `DATA_DIR/demo.json`.
//!
//! [`start`] runs the steps in turn: the simulated systems ([`sources`]), who is in the demo
//! ([`cast`]), the gateway, then the demo's cases ([`cases`]).

mod cases;
mod cast;
pub mod pds_key;
mod sources;
pub mod system;
pub mod tokens;

use crate::app::{self, Running};
use crate::audit_cmd::audit_key_path;
use crate::config::{FederationSettings, Settings};
use anyhow::Context;
use mcr_domain::{Clock, Role, SystemClock};
use mcr_sources::SourceHandle;
use mcr_synth::{Region, SynthConfig};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub seed: u64,
    pub patients: usize,
    pub deadline_ms: u64,
    /// Store URL; default: SQLite under the data directory.
    pub store: Option<String>,
    /// Serve the gateway over plain HTTP (loopback only) instead of HTTPS.
    pub insecure_http: bool,
    /// Ask each source for a view in one FHIR batch (the simulated sources answer one); off:
    /// one request per search and read.
    pub source_batch: bool,
    /// Proxies in front of the gateway whose `X-Forwarded-For` entries are trusted (`[http]
    /// trusted_proxy_hops`; 0: the header is ignored).
    pub trusted_proxy_hops: u8,
    /// How often refusals before the gateway are audited in aggregate, seconds.
    pub refusal_flush_seconds: u64,
    /// The watch on views and its notifier (tests lower the limits and point the notifier at
    /// their own receivers).
    pub watch: crate::watch_settings::WatchSettings,
    /// The GP system answers the gateway through GP Connect Access Record: Structured (STU3),
    /// as English practices do; off: plain FHIR R4 searches, as the other sources.
    pub gp_connect: bool,
    /// Systems registered for SMART backend services besides the demo's own (tests).
    pub system_clients: Vec<mcr_web::system::SystemClientConfig>,
    /// The day the synthetic records are written as of (their dates and which items they
    /// hold follow from it); `None`: today. A test that compares output with a stored
    /// snapshot names the day the snapshot was taken.
    pub records_as_of: Option<chrono::NaiveDate>,
}

/// The demo's ASIDs (Spine accredited system ids): the gateway's and the GP system's.
pub const GATEWAY_ASID: &str = "200000000115";
pub const GP_SYSTEM_ASID: &str = "200000000116";
/// The demo endpoint directory's API key.
pub const DIRECTORY_API_KEY: &str = "demo-directory-key";

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            seed: 2017,
            patients: 10_000,
            deadline_ms: 3_000,
            store: None,
            insecure_http: false,
            source_batch: true,
            trusted_proxy_hops: 0,
            refusal_flush_seconds: 60,
            watch: crate::watch_settings::WatchSettings::default(),
            gp_connect: true,
            system_clients: Vec::new(),
            records_as_of: None,
        }
    }
}

/// One demo user, as listed in `demo.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoUser {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub org_code: String,
    pub org_name: String,
    /// What this user shows.
    pub shows: String,
    /// A second NHS CIS2 role profile (role and organisation code): the user chooses which
    /// to work in after signing in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_profile: Option<(Role, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoSource {
    pub id: String,
    pub name: String,
    pub url: String,
}

/// `demo.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoInfo {
    pub gateway_url: String,
    pub fhir_base: String,
    pub sources: Vec<DemoSource>,
    pub users: Vec<DemoUser>,
    /// Sample NHS numbers by case.
    pub patients: std::collections::BTreeMap<String, Vec<String>>,
    pub token_issuer: String,
    pub token_audience: String,
    pub signing_key: PathBuf,
    /// The demo regional CA certificate: trust it to reach the gateway over HTTPS
    /// (`curl --cacert`); it also signs the sources' and the gateway's organisation certificates.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// The HL7 v2 ADT listener (MLLP, plain TCP on loopback in the demo), `host:port`; the
    /// acute trust's sending facility is `RWH`.
    #[serde(default)]
    pub adt_address: Option<String>,
    /// Host systems that may launch the viewer (SMART App Launch): open `url`, sign in, and
    /// open a patient in My Care Record.
    #[serde(default)]
    pub launch_hosts: Vec<DemoLaunchHost>,
    /// The demo's backend services client (the acute trust's EPR) and its key.
    #[serde(default)]
    pub system_client: Option<system::DemoSystem>,
    /// The demo patients' NHS login accounts at the demo provider: who they are and the level
    /// NHS login proofed them to (P9: sees who viewed their record; P5: general information).
    #[serde(default)]
    pub patient_logins: Vec<DemoPatientLogin>,
}

/// A demo patient's NHS login account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoPatientLogin {
    /// The account's id (`sub`) at the demo provider.
    pub login_id: String,
    pub label: String,
    pub nhs_number: String,
    /// `P9` or `P5`.
    pub level: String,
}

/// A host system of the demo that may launch the viewer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoLaunchHost {
    pub name: String,
    /// Its FHIR base URL, the `iss` it launches with.
    pub iss: String,
    /// Its own page (sign in, the patient list).
    pub url: String,
    /// NHS numbers on its patient list.
    pub patients: Vec<String>,
}

pub use crate::app::GATEWAY_ORG;

/// The demo PKI under `DATA_DIR/pki`: the regional CA (kept between runs, so browsers and
/// `curl --cacert` keep trusting it) and a fresh certificate per organisation.
#[derive(Debug)]
pub struct DemoPki {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub roots: Arc<mcr_tls::rustls::RootCertStore>,
    today: chrono::NaiveDate,
}

impl DemoPki {
    pub fn open(data_dir: &Path, today: chrono::NaiveDate) -> anyhow::Result<Self> {
        let dir = data_dir.join("pki");
        let ca = mcr_tls::pki::ensure_ca(&dir, today).context("creating the demo regional CA")?;
        let roots = mcr_tls::load_roots(&ca.cert)?;
        Ok(Self {
            dir,
            ca_cert: ca.cert,
            roots,
            today,
        })
    }

    /// Issue (again) a certificate for `org`, for localhost and 127.0.0.1 plus `extra_names`.
    pub fn issue(
        &self,
        org: &str,
        name: &str,
        extra_names: &[String],
    ) -> anyhow::Result<(mcr_tls::pki::CertFiles, mcr_tls::Identity)> {
        let mut server_names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        server_names.extend(extra_names.iter().cloned());
        let req = mcr_tls::pki::IssueRequest {
            org: org.into(),
            org_name: Some(name.into()),
            server_names,
        };
        let files = mcr_tls::pki::issue(&self.dir, &req, self.today)
            .with_context(|| format!("issuing the demo certificate for {org}"))?;
        let identity = mcr_tls::Identity::load(&files.cert, &files.key)?;
        Ok((files, identity))
    }
}

/// A running demo: sources, identity provider and gateway. Dropping it leaves them running;
/// call `stop`.
#[derive(Debug)]
pub struct Demo {
    pub gateway: Running,
    pub sources: Vec<SourceHandle>,
    pub info: DemoInfo,
    pub region: Arc<Region>,
    /// The demo identity provider the gateway signs users in with.
    pub idp: Arc<mcr_idp::Idp>,
    pub idp_task: tokio::task::JoinHandle<()>,
    /// The gateway's client secret at the demo provider (tests use it to talk to the provider).
    pub gateway_client_secret: secrecy::SecretString,
    /// The endpoint directory the gateway finds GP practices' GP Connect endpoints in.
    pub directory: mcr_sources::directory::DirectoryHandle,
    /// The simulated Personal Demographics Service the index traces against.
    pub pds: mcr_sources::pds::PdsHandle,
}

impl Demo {
    pub fn source(&self, id: &str) -> Option<&SourceHandle> {
        self.info
            .sources
            .iter()
            .position(|s| s.id == id)
            .and_then(|i| self.sources.get(i))
    }

    /// An API access token for a demo user from the demo identity provider, valid for 12 hours.
    pub fn token(&self, user_id: &str) -> anyhow::Result<String> {
        self.idp
            .access_token(
                user_id,
                mcr_idp::DEFAULT_API_SCOPES,
                tokens::DEMO_TOKEN_CLIENT,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// A token with the given scopes and SMART `patient` claim (tests of patient-level scopes).
    pub fn token_with(
        &self,
        user_id: &str,
        scope: &str,
        patient: Option<&str>,
    ) -> anyhow::Result<String> {
        self.idp
            .access_token_for(user_id, scope, tokens::DEMO_TOKEN_CLIENT, patient)
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    pub async fn stop(self) {
        self.gateway.stop().await;
        self.idp_task.abort();
        self.directory.stop();
        for s in self.sources {
            s.shutdown().await;
        }
    }
}

/// An API token for a demo user, signed with the demo identity provider's key (what
/// `mcr demo-token` prints; the provider need not be running).
pub fn token_for(info: &DemoInfo, user_id: &str) -> anyhow::Result<String> {
    if !info.users.iter().any(|u| u.id == user_id) {
        anyhow::bail!(
            "no demo user `{user_id}`; the demo users are: {}",
            info.users
                .iter()
                .map(|u| u.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let key = mcr_idp::SigningKey::load_or_create(&info.signing_key)?;
    let idp = tokens::demo_idp(&info.token_issuer, key, &info.users, Vec::new());
    idp.access_token(
        user_id,
        mcr_idp::DEFAULT_API_SCOPES,
        tokens::DEMO_TOKEN_CLIENT,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Start the whole demo.
pub async fn start(opts: &DemoOptions) -> anyhow::Result<Demo> {
    std::fs::create_dir_all(&opts.data_dir)
        .with_context(|| format!("creating the data directory {}", opts.data_dir.display()))?;
    let key_path = opts.data_dir.join("demo").join("idp-signing-key.p8");
    let key = mcr_idp::SigningKey::load_or_create(&key_path)?;
    // The audit checkpoint key: an Ed25519 PKCS#8 file like the token key, never the same one.
    let audit_key_path = audit_key_path(&opts.data_dir);
    mcr_idp::SigningKey::load_or_create(&audit_key_path)?;
    let today = SystemClock.now().date_naive();
    let region = Arc::new(mcr_synth::generate(&SynthConfig {
        seed: opts.seed,
        patients: opts.patients,
        today: opts.records_as_of.unwrap_or(today),
    }));

    // Every source serves HTTPS with a certificate from the regional CA and accepts only
    // client certificates from it: the gateway reaches them over mutual TLS.
    let pki = DemoPki::open(&opts.data_dir, today)?;
    // Each source requires the end user's identity, signed with the gateway's key, on every request.
    let identity_key_path = opts.data_dir.join("source-identity-key.p8");
    let (_, identity_x) = crate::network::identity_key(&identity_key_path)?;
    // The GP system's GP Connect cases: a patient who has dissented from sharing their GP
    // record, and one the practice asked does not hold as a registered patient.
    let gp_errors = cast::gp_connect_cases(&region);
    // The gateway's key for PDS's signed-JWT access, and its public half for the platform.
    let pds_key_path = opts.data_dir.join("pds-jwt-key.pem");
    let pds_jwks = pds_key::load_or_create(&pds_key_path)?;
    let sources::Simulated {
        sources,
        source_configs,
        directory,
        pds,
    } = sources::start(opts, &region, &pki, &identity_x, &gp_errors, pds_jwks).await?;
    let cast = cast::cast(&region)?;
    let (organisations, users, acute) = (
        cast.organisations.clone(),
        cast.users.clone(),
        cast.acute.clone(),
    );

    // The gateway's address first: the identity provider must know where to send users back.
    let listener = TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let addr = listener.local_addr()?;
    // HTTPS with a certificate from the demo CA, naming the listen address too when it is a
    // specific one; the same organisation certificate is the gateway's client certificate
    // towards sources.
    let scheme = if opts.insecure_http { "http" } else { "https" };
    let extra_names: Vec<String> = if addr.ip().is_unspecified() || addr.ip().is_loopback() {
        Vec::new()
    } else {
        vec![addr.ip().to_string()]
    };
    let (gateway_cert, _) = pki.issue(
        GATEWAY_ORG,
        "My Care Record regional gateway (demo)",
        &extra_names,
    )?;
    let ehr_list = cast::ehr_patients(&region)?;
    let patient_logins = cast::patient_logins(&region)?;
    let (idp, idp_task, auth, smart) = tokens::start_idp(
        addr,
        key,
        &users,
        &format!("{scheme}://{addr}"),
        ehr_list.clone(),
        &patient_logins,
        &opts.data_dir.join("nhs-login-client.pem"),
    )
    .await?;
    let gateway_client_secret = auth.client_secret.clone();
    let (demo_system, system_client) = system::load_or_create(
        &opts.data_dir,
        acute.code.as_str(),
        &format!("{scheme}://{addr}"),
    )?;
    let mut system_clients = vec![demo_system];
    system_clients.extend(opts.system_clients.iter().cloned());
    let settings = Settings {
        listen: opts.listen,
        base_url: None,
        data_dir: opts.data_dir.clone(),
        store: opts.store.clone().map(Into::into),
        federation: FederationSettings {
            deadline_ms: opts.deadline_ms,
            ..FederationSettings::default()
        },
        auth,
        smart,
        policy: mcr_policy::PolicyConfig::default(),
        organisations,
        sources: source_configs,
        sharing: Vec::new(),
        audit: crate::audit_cmd::AuditSettings {
            signing_key: Some(audit_key_path),
            ..Default::default()
        },
        sync_on_start: true,
        watch: opts.watch.clone(),
        // The ADT listener on loopback, plain TCP: the demo sends the acute trust's messages.
        adt: Some(crate::config::AdtSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            insecure_loopback: true,
            senders: vec![mcr_adt::SenderConfig {
                facility: acute.code.to_string(),
                org: acute.code.clone(),
            }],
            max_message_bytes: 64 * 1024,
            idle_timeout_secs: 30,
            max_connections: 64,
        }),
        demo_patients: cast::demo_patients(&region)?,
        patient_stand_in: false,
        http: crate::config::HttpSettings {
            trusted_proxy_hops: opts.trusted_proxy_hops,
            refusal_flush_seconds: opts.refusal_flush_seconds,
            ..crate::config::HttpSettings::default()
        },
        tls: crate::config::TlsSettings {
            cert: Some(gateway_cert.cert.clone()),
            key: Some(gateway_cert.key.clone()),
            disabled: opts.insecure_http,
        },
        sources_tls: crate::config::SourcesTlsSettings {
            ca: Some(pki.ca_cert.clone()),
            cert: Some(gateway_cert.cert.clone()),
            key: Some(gateway_cert.key.clone()),
            identity_key: Some(identity_key_path.clone()),
            identity_issuer: Some(format!("{scheme}://{addr}")),
        },
        backend_services: mcr_web::BackendServicesConfig {
            clients: system_clients,
            ..Default::default()
        },
        pds: Some(mcr_index::pds::PdsSettings {
            base_url: pds.base_url(),
            token_url: pds.token_url(),
            api_key: pds_key::API_KEY.to_owned().into(),
            key_id: pds_key::KEY_ID.into(),
            private_key: pds_key_path,
            link_score: 1.0,
            timeout_ms: 5000,
        }),
        matching: mcr_index::matching::MatchingSettings::default(),
    };
    settings.validate()?;

    let mut info = DemoInfo {
        gateway_url: format!("{scheme}://{addr}"),
        fhir_base: format!("{scheme}://{addr}/fhir"),
        sources: region
            .sources
            .iter()
            .zip(&sources)
            .map(|(s, h)| DemoSource {
                id: s.id.to_string(),
                name: s.organisation.name.clone(),
                url: h.base_url(),
            })
            .collect(),
        users,
        patients: Default::default(),
        token_issuer: idp.issuer().to_owned(),
        token_audience: tokens::DEMO_AUDIENCE.into(),
        signing_key: key_path.clone(),
        ca_cert: Some(pki.ca_cert.clone()),
        adt_address: None,
        launch_hosts: vec![DemoLaunchHost {
            name: tokens::DEMO_EHR_NAME.into(),
            iss: mcr_idp::ehr::fhir_base(idp.issuer()),
            url: format!("{}/ehr", idp.issuer()),
            patients: ehr_list.iter().map(|p| p.nhs_number.clone()).collect(),
        }],
        system_client: Some(system_client),
        patient_logins,
    };
    let gateway = app::serve(&settings, listener).await?;
    let adt_addr = gateway
        .adt
        .as_ref()
        .map(|a| a.addr)
        .context("the demo's ADT listener")?;
    info.adt_address = Some(adt_addr.to_string());

    cases::set_up(
        opts, &region, &gateway, &mut info, &cast, &gp_errors, adt_addr,
    )
    .await?;
    write_info(&opts.data_dir, &info)?;
    Ok(Demo {
        gateway,
        sources,
        info,
        region,
        idp,
        idp_task,
        gateway_client_secret,
        directory,
        pds,
    })
}

/// Where the demo writes its users, sample patients and URLs.
pub fn info_path(data_dir: &Path) -> PathBuf {
    data_dir.join("demo.json")
}

fn write_info(data_dir: &Path, info: &DemoInfo) -> anyhow::Result<()> {
    let path = info_path(data_dir);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(info)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

pub fn read_info(data_dir: &Path) -> anyhow::Result<DemoInfo> {
    let path = info_path(data_dir);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: has `mcr demo --data-dir {}` been run?",
            path.display(),
            data_dir.display()
        )
    })?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a demo description", path.display()))
}
