//! `mcr demo`: the four simulated sources and the gateway on an embedded SQLite store, with
//! demo users and patients for every interesting case, described in `DATA_DIR/demo.json`.

use crate::app::{self, Running};
use crate::audit_cmd::audit_key_path;
use crate::config::{FederationSettings, Settings};
use crate::tokens;
use anyhow::Context;
use mcr_domain::{Clock, NhsNumber, OdsCode, OrgKind, Organisation, Principal, Role, SystemClock};
use mcr_gateway::{ObjectionRequest, RequestContext};
use mcr_sources::{Behaviour, SourceHandle};
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
}

/// The demo's ASIDs (Spine accredited system ids): the gateway's and the GP system's.
pub const GATEWAY_ASID: &str = "200000000115";
pub const GP_SYSTEM_ASID: &str = "200000000116";
/// The demo endpoint directory's API key.
pub const DIRECTORY_API_KEY: &str = "demo-directory-key";
/// The access token the demo's simulated PDS accepts (application-restricted access stand-in).
pub const PDS_TOKEN: &str = "demo-pds-token";

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
    pub system_client: Option<crate::demo_system::DemoSystem>,
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

fn org(code: &str, name: &str, kind: OrgKind, member: bool) -> Organisation {
    Organisation {
        code: OdsCode::parse(code).expect("demo ODS codes are well-formed constants"),
        name: name.into(),
        kind,
        member,
        suspended: false,
    }
}

fn user(id: &str, name: &str, role: Role, o: &Organisation, shows: &str) -> DemoUser {
    DemoUser {
        id: id.into(),
        name: name.into(),
        role,
        org_code: o.code.to_string(),
        org_name: o.name.clone(),
        shows: shows.into(),
        second_profile: None,
    }
}

fn first(list: &[NhsNumber]) -> anyhow::Result<&NhsNumber> {
    list.first()
        .context("the synthetic region lacks a sample patient; use more patients")
}

/// The sample patients the public site's demo patient sign-in offers ("who viewed my record").
/// The demo host system's patient list: sample patients the record has, by case.
fn ehr_patients(region: &Region) -> anyhow::Result<Vec<mcr_idp::ehr::EhrPatient>> {
    let s = &region.samples;
    let picks = [
        (s.all_four.first(), "records in every source"),
        (s.hostile.first(), "hostile text from a source"),
        (s.gp_only.first(), "GP record only"),
    ];
    picks
        .into_iter()
        .filter_map(|(nhs, note)| nhs.map(|n| (n, note)))
        .enumerate()
        .map(|(i, (nhs, note))| {
            let p = region.person(nhs).context("sample patient")?;
            Ok(mcr_idp::ehr::EhrPatient {
                id: format!("bss-{}", i + 1),
                nhs_number: nhs.to_string(),
                name: format!("{} {}", p.given.join(" "), p.family),
                note: note.into(),
            })
        })
        .collect()
}

/// The demo patients' NHS login accounts: the sample patients at P9, and one more at P5.
fn patient_logins(region: &Region) -> anyhow::Result<Vec<DemoPatientLogin>> {
    let mut out: Vec<DemoPatientLogin> = demo_patients(region)?
        .into_iter()
        .enumerate()
        .map(|(i, p)| DemoPatientLogin {
            login_id: format!("nhs-login-p9-{}", i + 1),
            label: p.label,
            nhs_number: p.nhs_number.to_string(),
            level: "P9".into(),
        })
        .collect();
    if let Some(nhs) = region.samples.all_four.get(1) {
        let p = region.person(nhs).context("sample patient")?;
        out.push(DemoPatientLogin {
            login_id: "nhs-login-p5-1".into(),
            label: format!(
                "{} {}, born {}",
                p.given.join(" "),
                p.family,
                p.birth_date.format("%-d %B %Y")
            ),
            nhs_number: nhs.to_string(),
            level: "P5".into(),
        });
    }
    Ok(out)
}

fn demo_patients(region: &Region) -> anyhow::Result<Vec<mcr_web::DemoPatient>> {
    let s = &region.samples;
    let picks = [
        s.all_four.first(),
        s.all_four.get(3),
        s.hostile.first(),
        s.gp_only.first(),
    ];
    picks
        .into_iter()
        .flatten()
        .map(|nhs| {
            let p = region.person(nhs).context("sample patient")?;
            Ok(mcr_web::DemoPatient {
                nhs_number: nhs.clone(),
                label: format!(
                    "{} {}, born {}",
                    p.given.join(" "),
                    p.family,
                    p.birth_date.format("%-d %B %Y")
                ),
            })
        })
        .collect()
}

/// The GP system's configured GP Connect errors: GP-only sample patients past those the demo
/// lists as `gp_only` (which stay ordinary).
fn gp_connect_cases(region: &Region) -> Vec<(NhsNumber, mcr_sources::GpcError)> {
    let s = &region.samples.gp_only;
    [
        (s.get(3), mcr_sources::GpcError::Dissent),
        (s.get(4), mcr_sources::GpcError::NotRegistered),
    ]
    .into_iter()
    .filter_map(|(nhs, e)| Some((nhs?.clone(), e)))
    .collect()
}

/// A sample patient whose GP record holds items labelled confidential: the GP Connect provider
/// leaves them out and says so.
fn confidential_at_gp(region: &Region) -> Option<NhsNumber> {
    let gp = region.source("gp")?;
    region.samples.sensitive.iter().find_map(|nhs| {
        let sp = gp
            .patients()
            .iter()
            .find(|p| p.nhs_number.as_ref() == Some(nhs))?;
        let labelled = gp.resource_types.iter().any(|t| {
            *t != "Patient"
                && gp.resources(&sp.local_id, t).iter().any(|r| {
                    r.pointer("/meta/security")
                        .and_then(serde_json::Value::as_array)
                        .is_some_and(|s| s.iter().any(|x| x["code"] == "R"))
                })
        });
        labelled.then(|| nhs.clone())
    })
}

/// Patients the acute trust holds a PDF document for (a `DocumentReference` whose content is
/// a `Binary` on the source), among those every source holds, at most `n`.
fn with_pdf_documents(region: &Region, n: usize) -> Vec<String> {
    let Some(acute) = region.source("acute") else {
        return Vec::new();
    };
    acute
        .patients()
        .iter()
        .filter(|sp| {
            sp.nhs_number
                .as_ref()
                .is_some_and(|nhs| region.samples.all_four.contains(nhs))
        })
        .filter(|sp| {
            acute
                .resources(&sp.local_id, "DocumentReference")
                .iter()
                .any(|r| r.pointer("/content/0/attachment/url").is_some())
        })
        .filter_map(|sp| sp.nhs_number.as_ref().map(ToString::to_string))
        .take(n)
        .collect()
}

/// Sample patients whose record carries legal and end-of-life decisions: a DNACPR flag at the
/// community trust, or a lasting power of attorney or an advance decision at social care.
fn with_legal_decisions(region: &Region, n: usize) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for (source, rt) in [("community", "Flag"), ("socialcare", "Consent")] {
        let Some(slice) = region.source(source) else {
            continue;
        };
        for sp in slice.patients() {
            if found.len() >= n {
                return found;
            }
            let Some(nhs) = sp.nhs_number.as_ref().map(ToString::to_string) else {
                continue;
            };
            let legal = slice
                .resources(&sp.local_id, rt)
                .iter()
                .any(|r| mcr_fhir::classify(r) == Some(mcr_domain::DataClass::LegalEndOfLife));
            if legal && !found.contains(&nhs) {
                found.push(nhs);
            }
        }
    }
    found
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
        today,
    }));

    // Every source serves HTTPS with a certificate from the regional CA and accepts only
    // client certificates from it: the gateway reaches them over mutual TLS.
    let pki = DemoPki::open(&opts.data_dir, today)?;
    // Each source requires the end user's identity, signed with the gateway's key, on every request.
    let identity_key_path = opts.data_dir.join("source-identity-key.p8");
    let (_, identity_x) = crate::network::identity_key(&identity_key_path)?;
    let mut sources = Vec::new();
    let mut source_configs = Vec::new();
    // The GP system's GP Connect cases: a patient who has dissented from sharing their GP
    // record, and one the practice asked does not hold as a registered patient.
    let gp_errors = gp_connect_cases(&region);
    // The endpoint directory (shaped like the Spine Directory Service FHIR API) the gateway
    // asks for each patient's registered practice's GP Connect endpoint.
    let directory_listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("binding the directory port")?;
    let directory_url = url::Url::parse(&format!("http://{}", directory_listener.local_addr()?))
        .context("directory URL")?;
    let mut directory_entries = Vec::new();
    for slice in &region.sources {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding a source port")?;
        let (_, identity) = pki.issue(
            slice.organisation.code.as_str(),
            &slice.organisation.name,
            &[],
        )?;
        let tls = mcr_sources::SourceTls {
            identity,
            client_ca: pki.roots.clone(),
            refused: Vec::new(),
        };
        let identity = mcr_sources::IdentityCheck {
            ed25519_keys: vec![identity_x.clone()],
            issuer: None,
            required: true,
        };
        let gp_connect = opts.gp_connect && slice.kind == mcr_synth::SourceKind::Gp;
        let options = mcr_sources::SourceOptions {
            tls: Some(tls),
            identity: Some(identity),
            gp_connect: gp_connect.then(|| mcr_sources::GpConnectOptions {
                asid: GP_SYSTEM_ASID.into(),
                errors: gp_errors
                    .iter()
                    .map(|(nhs, e)| (nhs.to_string(), *e))
                    .collect(),
            }),
        };
        let handle =
            mcr_sources::serve_with(slice.clone(), listener, Behaviour::default(), options)
                .await
                .with_context(|| format!("starting source {}", slice.id))?;
        source_configs.push(mcr_federation::SourceConfig {
            id: slice.id.clone(),
            organisation: slice.organisation.clone(),
            base_url: url::Url::parse(&handle.base_url()).context("source URL")?,
            // The practices share their letters through GP Connect Access Document (their
            // R4 interface lists none).
            resource_types: slice
                .resource_types
                .iter()
                .map(|t| (*t).to_owned())
                .chain(gp_connect.then(|| "DocumentReference".to_owned()))
                .collect(),
            batch: opts.source_batch && !gp_connect,
            kind: if gp_connect {
                mcr_federation::SourceKind::GpConnect
            } else {
                mcr_federation::SourceKind::FhirR4
            },
            gp_connect: gp_connect.then(|| mcr_federation::gpconnect::GpConnectConfig {
                ssp_prefix: None,
                consumer_asid: GATEWAY_ASID.into(),
                provider_asid: GP_SYSTEM_ASID.into(),
                directory: Some(mcr_federation::gpconnect::DirectoryConfig {
                    url: directory_url.clone(),
                    api_key: DIRECTORY_API_KEY.into(),
                    ttl_secs: 3600,
                }),
            }),
            deadline_ms: None,
            feed_timeout_secs: None,
        });
        if gp_connect {
            // The one GP system answers for every practice, each at its own endpoint.
            for practice in &region.gp_practices {
                directory_entries.push(mcr_sources::directory::DirectoryEntry {
                    ods: practice.code.to_string(),
                    interaction: mcr_federation::gpconnect::INTERACTION_STRUCTURED.into(),
                    address: format!(
                        "{}{}",
                        handle.base_url(),
                        mcr_sources::gpconnect::practice_path(practice.code.as_str())
                    ),
                    asid: GP_SYSTEM_ASID.into(),
                });
            }
        }
        sources.push(handle);
    }
    let directory =
        mcr_sources::directory::serve(directory_listener, directory_entries, DIRECTORY_API_KEY)
            .await
            .context("starting the endpoint directory")?;
    // The Personal Demographics Service, simulated: its demo people (one restricted, one
    // deceased, one whose old NHS number was superseded) for the index's trace.
    let pds = mcr_sources::pds::serve(
        TcpListener::bind(("127.0.0.1", 0)).await?,
        mcr_sources::pds::PdsData::demo(),
        PDS_TOKEN,
    )
    .await
    .context("starting the PDS simulator")?;

    // Organisations beyond the sources: the practices, a hospice with no patients in common,
    // and a private company that is never a member.
    let hospice = org("G9H01", "Garden House Hospice Care", OrgKind::Hospice, true);
    let private = org(
        "PRV01",
        "Acme Health Analytics Ltd",
        OrgKind::PrivateCompany,
        false,
    );
    // A community pharmacy whose membership the programme has suspended: its staff are
    // refused before anything about a patient is read.
    let suspended = Organisation {
        suspended: true,
        ..org(
            "FSP01",
            "Station Road Pharmacy",
            OrgKind::CommunityPharmacy,
            true,
        )
    };
    let mut organisations = region.gp_practices.clone();
    organisations.push(hospice.clone());
    organisations.push(private.clone());
    organisations.push(suspended.clone());

    let all_four = first(&region.samples.all_four)?.clone();
    let practice_code = region
        .person(&all_four)
        .context("sample patient")?
        .gp_practice
        .clone();
    let practice = organisations
        .iter()
        .find(|o| o.code == practice_code)
        .cloned()
        .context("the sample patient's practice")?;
    let src_org = |id: &str| -> anyhow::Result<Organisation> {
        Ok(region.source(id).context("source")?.organisation.clone())
    };
    let (acute, community, social) = (
        src_org("acute")?,
        src_org("community")?,
        src_org("socialcare")?,
    );
    let users = vec![
        user(
            "gp.patel",
            "Dr Asha Patel",
            Role::Clinician,
            &practice,
            "GP at the sample patients' practice: registration relationship",
        ),
        user(
            "ae.okafor",
            "Dr Chidi Okafor",
            Role::Clinician,
            &acute,
            "A&E doctor at the acute trust",
        ),
        user(
            "nurse.evans",
            "Megan Evans",
            Role::Nurse,
            &community,
            "Community nurse at the community and mental health trust",
        ),
        user(
            "sw.khan",
            "Imran Khan",
            Role::SocialCarePractitioner,
            &social,
            "Social worker: the care-relevant subset only",
        ),
        user(
            "rec.murphy",
            "Siobhan Murphy",
            Role::Admin,
            &practice,
            "Receptionist: demographics and care team only",
        ),
        user(
            "rec.obi",
            "Grace Obi",
            Role::Admin,
            &acute,
            "Records officer at the acute trust: reviews the trust's patient matching",
        ),
        user(
            "po.wright",
            "Helen Wright",
            Role::PrivacyOfficer,
            &acute,
            "Privacy officer: audit, no clinical data; can override objections",
        ),
        user(
            "cg.shah",
            "Dr Priya Shah",
            Role::CaldicottGuardian,
            &acute,
            "Caldicott guardian: lifts objections on the patient's written request; no clinical data",
        ),
        user(
            "acme.jones",
            "Tom Jones",
            Role::Clinician,
            &private,
            "Works for a private company: always denied",
        ),
        user(
            "hospice.ali",
            "Dr Sara Ali",
            Role::Clinician,
            &hospice,
            "Clinician at a member organisation with no relationship: must claim one",
        ),
        DemoUser {
            second_profile: Some((Role::Clinician, acute.code.to_string())),
            ..user(
                "locum.reid",
                "Dr Alex Reid",
                Role::Clinician,
                &practice,
                "Two NHS CIS2 role profiles (GP at the sample patients' practice, A&E doctor at the acute trust): chooses one after signing in",
            )
        },
        user(
            "pharm.lee",
            "Daniel Lee",
            Role::Pharmacist,
            &suspended,
            "Pharmacist at a member organisation whose access is suspended: always denied",
        ),
    ];

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
    let ehr_list = ehr_patients(&region)?;
    let patient_logins = patient_logins(&region)?;
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
    let (demo_system, system_client) = crate::demo_system::load_or_create(
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
        demo_patients: demo_patients(&region)?,
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
            access_token: PDS_TOKEN.to_owned().into(),
            link_score: 1.0,
            timeout_ms: 5000,
        }),
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

    // Patients for each case. Governance cases are recorded through the gateway, like any
    // change, and only once per data directory.
    let s = &region.samples;
    let pick = |list: &[NhsNumber], n: usize| {
        list.iter()
            .take(n)
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
    };
    let opted_out = s
        .all_four
        .get(1)
        .cloned()
        .context("need a second all-four patient")?;
    let overridden = s
        .all_four
        .get(2)
        .cloned()
        .context("need a third all-four patient")?;
    let officer = info
        .users
        .iter()
        .find(|u| u.role == Role::PrivacyOfficer)
        .cloned()
        .context("privacy officer")?;
    let ctx = RequestContext {
        principal: Principal {
            role_profile: None,
            user_id: officer.id.clone(),
            name: officer.name.clone(),
            role: officer.role,
            organisation: acute.clone(),
        },
        correlation_id: "demo-setup".into(),
        system: None,
    };
    let records = gateway.gateway.store().governance(&opted_out).await?;
    if records.objections.is_empty() {
        gateway
            .gateway
            .record_objection(
                &ctx,
                &ObjectionRequest::Record {
                    nhs_number: opted_out.clone(),
                    on_whose_word: "patient (letter to GP)".into(),
                    note: None,
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("recording the demo opt-out: {e}"))?;
    }
    // The override runs out (at most `override_max_days`): a demo data directory older than
    // that gets a fresh one, so the sample stays "overridden".
    let records = gateway.gateway.store().governance(&overridden).await?;
    let now = gateway.gateway.clock().now();
    let mut steps = Vec::new();
    if records.objections.is_empty() {
        steps.push(ObjectionRequest::Record {
            nhs_number: overridden.clone(),
            on_whose_word: "patient (opt-out form)".into(),
            note: None,
        });
    }
    let in_force = records
        .objections
        .last()
        .is_some_and(|o| o.state == "overridden" && o.ends_at.is_some_and(|e| e > now));
    if !in_force {
        steps.push(ObjectionRequest::Override {
            nhs_number: overridden.clone(),
            reason: "safeguarding".into(),
            note: "Child protection case conference: records needed by the care team.".into(),
            until: Some(now + chrono::Duration::days(28)),
        });
    }
    for req in steps {
        gateway
            .gateway
            .record_objection(&ctx, &req)
            .await
            .map_err(|e| anyhow::anyhow!("recording the demo override: {e}"))?;
    }
    info.patients
        .insert("all_four_sources".into(), vec![all_four.to_string()]);
    info.patients
        .insert("needs_permission".into(), pick(&s.all_four[3..], 3));
    info.patients.insert("gp_only".into(), pick(&s.gp_only, 3));
    // Patient matching: a twin's hospital record in review against this patient, and a
    // parent's hospital record carrying this patient's NHS number (the record view warns).
    info.patients
        .insert("matching_twin".into(), pick(&s.acute_twin, 2));
    info.patients.insert(
        "matching_wrong_nhs_number".into(),
        pick(&s.acute_wrong_nhs_number, 2),
    );
    info.patients.insert(
        "matched_by_demographics_only".into(),
        pick(&s.demographics_only, 3),
    );
    info.patients.insert(
        "name_differs_between_sources".into(),
        pick(&s.name_differs, 3),
    );
    info.patients
        .insert("duplicated_items".into(), pick(&s.duplicated_items, 3));
    info.patients
        .insert("dose_discrepancy".into(), pick(&s.dose_discrepancy, 3));
    info.patients
        .insert("sensitive_items".into(), pick(&s.sensitive, 3));
    info.patients
        .insert("large_record".into(), pick(&s.large, 3));
    info.patients
        .insert("hostile_text".into(), pick(&s.hostile, 3));
    info.patients
        .insert("pdf_documents".into(), with_pdf_documents(&region, 3));
    info.patients
        .insert("legal_end_of_life".into(), with_legal_decisions(&region, 3));
    if opts.gp_connect {
        for (nhs, e) in &gp_errors {
            let case = match e {
                mcr_sources::GpcError::Dissent => "gp_connect_dissent",
                mcr_sources::GpcError::NotRegistered => "gp_connect_not_registered",
                mcr_sources::GpcError::NotFound | mcr_sources::GpcError::InternalError => continue,
            };
            info.patients.insert(case.into(), vec![nhs.to_string()]);
        }
        if let Some(nhs) = confidential_at_gp(&region) {
            info.patients.insert(
                "gp_connect_confidential_excluded".into(),
                vec![nhs.to_string()],
            );
        }
    }
    // The acute trust's patient administration system announces admissions, attendances,
    // discharges and a pre-admission over the ADT feed, as a real one would: the acute
    // relationships of the sample patients come from these, the community, social care and
    // GP ones from the sources' own care-event data read by the index sync.
    let now = gateway.gateway.clock().now();
    let mut feed = crate::demo_adt::Feed::connect(adt_addr, acute.code.as_str(), now).await?;
    let day = chrono::Duration::days(1);
    feed.admit(&all_four, now - day * 2).await?;
    for list in [&s.all_four[3..], &s.name_differs, &s.dose_discrepancy] {
        for nhs in list.iter().take(3) {
            feed.attendance(nhs, now - day * 10).await?;
        }
    }
    for list in [
        &s.sensitive,
        &s.duplicated_items,
        &s.hostile,
        &s.large,
        &s.demographics_only,
    ] {
        for nhs in list.iter().take(3) {
            feed.admit(nhs, now - day * 25).await?;
            feed.discharge(nhs, now - day * 25, now - day * 20).await?;
        }
    }
    // The GP Connect cases attend A&E, so the A&E doctor may look (and see what GP Connect says).
    let gp_cases = gp_errors
        .iter()
        .map(|(nhs, _)| nhs.clone())
        .chain(confidential_at_gp(&region).filter(|_| opts.gp_connect));
    for nhs in gp_cases {
        // A small region may not hold every sample in the index.
        if gateway.gateway.store().patient(&nhs).await?.is_some() {
            feed.attendance(&nhs, now - day * 10).await?;
        }
    }
    feed.admit(&opted_out, now - day * 3).await?;
    feed.admit(&overridden, now - day * 3).await?;
    let appointment = first(&s.gp_only)?.clone();
    feed.pre_admit(&appointment, now + day * 10).await?;
    // Discharged long ago, and nothing since at the acute trust: no relationship any more.
    // Held by the acute trust if the region is large enough, and not one sent for above.
    let mut gone = None;
    let candidates = s
        .all_four
        .iter()
        .skip(6)
        .chain(region.people.iter().map(|p| &p.nhs_number))
        .take(400);
    for nhs in candidates {
        let events = gateway.gateway.store().governance(nhs).await?.care_events;
        let acute_now = events.iter().any(|e| {
            e.origin == "adt"
                || (e.org_code == acute.code.as_str()
                    && e.end.is_none_or(|end| end > now - day * 90))
        });
        if !acute_now && gateway.gateway.store().patient(nhs).await?.is_some() {
            feed.admit(nhs, now - day * 200).await?;
            feed.discharge(nhs, now - day * 200, now - day * 190)
                .await?;
            gone = Some(nhs.clone());
            break;
        }
    }
    let gone = gone.context("no patient without a recent acute event; use more patients")?;
    // Referred to the acute trust's clinics (the trust's own records, read by the index sync),
    // and not admitted there now: the referral is their relationship with the trust.
    let mut referred = None;
    for nhs in region.people.iter().map(|p| &p.nhs_number).take(2_000) {
        let events = gateway.gateway.store().governance(nhs).await?.care_events;
        let at_acute = |e: &&mcr_store::CareEventRow| e.org_code == acute.code.as_str();
        let referral = events
            .iter()
            .filter(at_acute)
            .any(|e| e.kind == "referral" && e.end.is_none());
        let outranked = events
            .iter()
            .filter(at_acute)
            .any(|e| e.origin == "adt" || (e.kind != "referral" && e.end.is_none()));
        if referral && !outranked && *nhs != gone {
            referred = Some(nhs.clone());
            break;
        }
    }
    let referred = referred.context("no patient with an open referral to the acute trust")?;
    info.patients
        .insert("relationship_referral".into(), vec![referred.to_string()]);
    info.patients
        .insert("relationship_admitted".into(), vec![all_four.to_string()]);
    info.patients.insert(
        "relationship_recent_attendance".into(),
        pick(&s.all_four[3..], 3),
    );
    info.patients.insert(
        "relationship_recent_discharge".into(),
        pick(&s.sensitive, 3),
    );
    info.patients.insert(
        "relationship_upcoming_appointment".into(),
        vec![appointment.to_string()],
    );
    info.patients.insert(
        "relationship_open_community_episode".into(),
        vec![all_four.to_string()],
    );
    info.patients.insert(
        "relationship_social_care_allocation".into(),
        vec![all_four.to_string()],
    );
    // Registered at the practice of the demo's GP and receptionist.
    info.patients.insert(
        "relationship_gp_registration".into(),
        vec![all_four.to_string()],
    );
    info.patients
        .insert("no_relationship_any_more".into(), vec![gone.to_string()]);
    info.patients
        .insert("opted_out".into(), vec![opted_out.to_string()]);
    info.patients
        .insert("objection_overridden".into(), vec![overridden.to_string()]);

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
