//! The system under test: `mcr sources` and `mcr serve`, each its own process on loopback,
//! configured from files this module writes, and the API token the clinicians use.

use anyhow::{bail, Context};
use mcr_idp::{ClientRegistration, Idp, IdpConfig, IdpUser};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

pub const AUDIENCE: &str = "mcr-gateway";
pub const CLIENT: &str = "mcr-gateway";
pub const USER: &str = "bench.clinician";
pub const SOURCES: [&str; 4] = ["gp", "acute", "community", "socialcare"];

/// What the system under test is made of.
#[derive(Debug, Clone)]
pub struct SystemOptions {
    /// The `mcr` binary.
    pub mcr: PathBuf,
    pub seed: u64,
    /// Synthetic patients in the region (the index the gateway syncs at start-up).
    pub patients: usize,
    pub today: chrono::NaiveDate,
    /// Latency of every source, min..=max ms, per request.
    pub latency_ms: (u64, u64),
    /// The gateway's per-source deadline.
    pub deadline_ms: u64,
    /// `sqlite://…` (default: under the work directory) or `postgres://…`.
    pub store: Option<String>,
    /// The gateway asks each source for a view in one FHIR batch (`batch = true`).
    pub batch: bool,
    /// The GP system answers through GP Connect Access Record: Structured (STU3), and the
    /// gateway asks it that way (`kind = "gp-connect"`).
    pub gp_connect: bool,
    /// The FHIR sources are configured as finding only relative references by patient
    /// (`patient_search = "relative"`: each view also asks by their own address and by NHS
    /// number); otherwise as what the simulated sources are, finding every form.
    pub relative_search: bool,
}

/// What a run of one very large record changes in the system under test (the defaults are
/// every other scenario's).
#[derive(Debug, Clone, Default)]
pub struct Tuning {
    /// Very large records the sources hold besides: (patients, scale), `mcr_synth::VeryLarge`.
    pub very_large: Option<(usize, usize)>,
    /// The gateway serves HTTPS with a certificate from a regional CA made for the run (the
    /// `mcr pki` commands), which the harness's clients trust.
    pub tls: bool,
    /// `[federation] deadline_ms`, `max_source_mib` and `page_size`, when not the run's own.
    pub deadline_ms: Option<u64>,
    pub max_source_mib: Option<u64>,
    pub page_size: Option<u32>,
}

/// The bench's ASIDs when the GP system answers GP Connect.
const GATEWAY_ASID: &str = "200000000115";
const GP_ASID: &str = "200000000116";

/// The running processes; killed when dropped.
#[derive(Debug)]
pub struct System {
    pub gateway_url: String,
    pub source_urls: Vec<(String, String)>,
    pub gateway_pid: u32,
    pub sources_pid: u32,
    pub token: String,
    /// ODS code of the bench clinicians' organisation (the acute trust).
    pub org: String,
    /// The gateway's HL7 v2 ADT listener (plain TCP on loopback): the acute trust admits the
    /// patients its clinicians view, so they have a care relationship.
    pub adt_addr: String,
    /// A client for the gateway: the caller's, or one that trusts the run's CA under TLS.
    pub gateway_client: reqwest::Client,
    /// The identity provider the gateway trusts (in this process), for signing in to pages.
    pub idp_url: String,
    _gateway: Child,
    _sources: Child,
    _idp: tokio::task::JoinHandle<()>,
    dir: tempfile::TempDir,
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn spawn(mcr: &Path, args: &[&str], log: &Path) -> anyhow::Result<Child> {
    let log = std::fs::File::create(log)?;
    Command::new(mcr)
        .args(args)
        .env("MCR_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", mcr.display()))
}

async fn wait_ok(
    client: &reqwest::Client,
    url: &str,
    child: &mut Child,
    within: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(url).timeout(Duration::from_secs(2)).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if let Some(status) = child.try_wait()? {
            bail!("the process serving {url} exited ({status}) before it was ready");
        }
        if started.elapsed() > within {
            bail!("{url} not ready after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl System {
    /// The run's own directory, on the file system that holds the gateway's data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Write the configs, start both processes, wait until the gateway has synced its index
    /// and answers, and mint the clinicians' token.
    pub async fn start(o: &SystemOptions, client: &reqwest::Client) -> anyhow::Result<Self> {
        Self::start_with(o, &Tuning::default(), client).await
    }

    /// [`System::start`], with what `tuning` changes.
    pub async fn start_with(
        o: &SystemOptions,
        tuning: &Tuning,
        client: &reqwest::Client,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut sources_toml = format!(
            "seed = {}\npatients = {}\ntoday = \"{}\"\n",
            o.seed, o.patients, o.today
        );
        if let Some((patients, scale)) = tuning.very_large {
            sources_toml.push_str(&format!(
                "very_large = {{ patients = {patients}, scale = {scale} }}\n"
            ));
        }
        let mut source_urls = Vec::new();
        for id in SOURCES {
            let port = free_port()?;
            sources_toml.push_str(&format!(
                "\n[[source]]\nid = \"{id}\"\nlisten = \"127.0.0.1:{port}\"\nbehaviour = {{ latency_ms = [{}, {}] }}\n",
                o.latency_ms.0, o.latency_ms.1
            ));
            if o.gp_connect && id == "gp" {
                sources_toml.push_str(&format!("[source.gp_connect]\nasid = \"{GP_ASID}\"\n"));
            }
            source_urls.push((id.to_owned(), format!("http://127.0.0.1:{port}")));
        }
        let sources_path = dir.path().join("sources.toml");
        std::fs::write(&sources_path, sources_toml)?;

        // The sources' organisations and the types they hold, as the region generates them (a
        // region with a very large record holds more types: its reports and prescriptions).
        let region = mcr_synth::generate_with(
            &mcr_synth::SynthConfig {
                seed: o.seed,
                patients: 100,
                today: o.today,
            },
            mcr_synth::VeryLarge {
                patients: usize::from(tuning.very_large.is_some()),
                scale: 1,
            },
        );
        let port = free_port()?;
        let scheme = if tuning.tls { "https" } else { "http" };
        let acute_org = region
            .source("acute")
            .context("the acute source")?
            .organisation
            .code
            .to_string();
        // The identity provider the gateway trusts: the demo one, in this process, with one
        // clinician at the acute trust.
        let idp_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let issuer = format!("http://{}", idp_listener.local_addr()?);
        let secret = format!("bench-{}", rand::random::<u64>());
        let idp = Arc::new(Idp::new(
            IdpConfig {
                issuer: issuer.clone(),
                api_audience: AUDIENCE.into(),
                clients: vec![ClientRegistration {
                    client_id: CLIENT.into(),
                    client_secret: secret.clone().into(),
                    redirect_uris: vec![format!("{scheme}://127.0.0.1:{port}/signin/callback")],
                }],
                users: vec![IdpUser {
                    id: USER.into(),
                    name: "Dr Bench Clinician".into(),
                    role: "clinician".into(),
                    org: acute_org.clone(),
                    label: "Benchmark clinician".into(),
                    role_profiles: Vec::new(),
                }],
                token_seconds: 86_400,
            },
            mcr_idp::SigningKey::generate().map_err(|e| anyhow::anyhow!("signing key: {e}"))?,
            Arc::new(mcr_domain::SystemClock),
        ));
        let idp_task = mcr_idp::serve(Arc::clone(&idp), idp_listener);
        let mut gw = format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nsync_on_start = true\n",
            dir.path().join("gateway").display()
        );
        if let Some(store) = &o.store {
            gw.push_str(&format!("store = \"{store}\"\n"));
        }
        let mut gateway_client = client.clone();
        if tuning.tls {
            // HTTPS with a certificate from a regional CA made for this run.
            let pki = dir.path().join("pki");
            let pki_arg = pki.display().to_string();
            for args in [
                vec!["pki", "init", "--dir", pki_arg.as_str()],
                vec![
                    "pki",
                    "issue",
                    acute_org.as_str(),
                    "--dir",
                    pki_arg.as_str(),
                ],
            ] {
                let status = std::process::Command::new(&o.mcr)
                    .args(&args)
                    .stdout(Stdio::null())
                    .status()
                    .with_context(|| format!("mcr {}", args.join(" ")))?;
                anyhow::ensure!(status.success(), "mcr {} failed", args.join(" "));
            }
            gw.push_str(&format!(
                "\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                pki.join(format!("{acute_org}.pem")).display(),
                pki.join(format!("{acute_org}.key.pem")).display()
            ));
            let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.join("ca.pem"))?)?;
            gateway_client = reqwest::Client::builder()
                .add_root_certificate(ca)
                .pool_max_idle_per_host(64)
                .timeout(Duration::from_secs(120))
                .build()?;
        } else {
            // Plain HTTP: everything is on loopback, and TLS would be measured as gateway overhead.
            gw.push_str("\n[tls]\ndisabled = true\n");
        }
        // One clinician views every patient, over and over: the watch runs on each view (its
        // cost is part of what is measured) but its hard limit must not refuse the load.
        gw.push_str("\n[watch]\nrefuse_patients = 1000000\n");
        gw.push_str(&format!(
            "\n[federation]\ndeadline_ms = {}\nmax_source_mib = {}\npage_size = {}\n\n[auth]\nissuer = \"{issuer}\"\nclient_id = \"{CLIENT}\"\nclient_secret = \"{secret}\"\napi_audience = \"{AUDIENCE}\"\nalgorithms = [\"EdDSA\"]\n\n[policy]\nconsent_model = \"ask-once-record\"\npermission_episode_hours = 24\n",
            tuning.deadline_ms.unwrap_or(o.deadline_ms),
            tuning.max_source_mib.unwrap_or(8),
            tuning.page_size.unwrap_or(200),
        ));
        let adt_port = free_port()?;
        gw.push_str(&format!(
            "\n[adt]\nlisten = \"127.0.0.1:{adt_port}\"\ninsecure_loopback = true\n\n[[adt.senders]]\nfacility = \"{acute_org}\"\norg = \"{acute_org}\"\n"
        ));
        let org = acute_org;
        for (id, url) in &source_urls {
            let slice = region.source(id).with_context(|| format!("source {id}"))?;
            let gp_connect = o.gp_connect && id == "gp";
            let mut types: Vec<String> = slice
                .resource_types
                .iter()
                .map(|t| format!("\"{t}\""))
                .collect();
            // Through GP Connect the practice's letters come too (Access Document), as in the demo.
            if gp_connect && !slice.resource_types.contains(&"DocumentReference") {
                types.push("\"DocumentReference\"".into());
            }
            let org_toml = toml_org(&slice.organisation)?;
            gw.push_str(&format!(
                "\n[[sources]]\nid = \"{id}\"\nbase_url = \"{url}\"\nresource_types = [{}]\nbatch = {}\npatient_search = \"{}\"\norganisation = {org_toml}\n",
                types.join(", "),
                o.batch && !gp_connect,
                if o.relative_search { "relative" } else { "every-form" }
            ));
            if gp_connect {
                gw.push_str(&format!(
                    "kind = \"gp-connect\"\n[sources.gp_connect]\nconsumer_asid = \"{GATEWAY_ASID}\"\nprovider_asid = \"{GP_ASID}\"\n"
                ));
            }
        }
        let gateway_path = dir.path().join("gateway.toml");
        std::fs::write(&gateway_path, gw)?;

        let sources_arg = sources_path.display().to_string();
        let mut sources = spawn(
            &o.mcr,
            &["sources", "--config", &sources_arg],
            &dir.path().join("sources.log"),
        )?;
        for (_, url) in &source_urls {
            wait_ok(
                client,
                &format!("{url}/_control/behaviour"),
                &mut sources,
                Duration::from_secs(120),
            )
            .await?;
        }
        let gateway_arg = gateway_path.display().to_string();
        let mut gateway = spawn(
            &o.mcr,
            &["serve", "--config", &gateway_arg],
            &dir.path().join("gateway.log"),
        )?;
        let gateway_url = format!("{scheme}://127.0.0.1:{port}");
        if let Err(e) = wait_ok(
            &gateway_client,
            &format!("{gateway_url}/healthz"),
            &mut gateway,
            Duration::from_secs(300),
        )
        .await
        {
            let log = std::fs::read_to_string(dir.path().join("gateway.log")).unwrap_or_default();
            bail!("{e}\ngateway log:\n{}", tail(&log, 2000));
        }
        let token = idp
            .access_token(USER, mcr_idp::DEFAULT_API_SCOPES, CLIENT)
            .map_err(|e| anyhow::anyhow!("minting the bench token: {e}"))?;
        Ok(Self {
            gateway_url,
            source_urls,
            gateway_pid: gateway.id().context("gateway pid")?,
            sources_pid: sources.id().context("sources pid")?,
            token,
            org,
            adt_addr: format!("127.0.0.1:{adt_port}"),
            gateway_client,
            idp_url: issuer,
            _gateway: gateway,
            _sources: sources,
            _idp: idp_task,
            dir,
        })
    }

    /// Change one source's behaviour (`PUT /_control/behaviour`).
    pub async fn set_behaviour(
        &self,
        client: &reqwest::Client,
        source: &str,
        behaviour: serde_json::Value,
    ) -> anyhow::Result<()> {
        let url = self
            .source_urls
            .iter()
            .find(|(id, _)| id == source)
            .map(|(_, u)| format!("{u}/_control/behaviour"))
            .context("no such source")?;
        let r = client.put(url).json(&behaviour).send().await?;
        if !r.status().is_success() {
            bail!("setting {source}'s behaviour: HTTP {}", r.status());
        }
        Ok(())
    }

    /// Every source back to the given latency, no failures.
    pub async fn all_sources(
        &self,
        client: &reqwest::Client,
        latency_ms: (u64, u64),
    ) -> anyhow::Result<()> {
        for id in SOURCES {
            self.set_behaviour(
                client,
                id,
                serde_json::json!({"latency_ms": [latency_ms.0, latency_ms.1]}),
            )
            .await?;
        }
        Ok(())
    }

    /// The acute trust's PAS admits the patient (HL7 v2 A01 over MLLP), so its clinicians have
    /// a care relationship; the ACK must be AA.
    pub async fn admit(&self, nhs: &str) -> anyhow::Result<()> {
        use mcr_domain::Clock;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let now = mcr_domain::SystemClock.now().format("%Y%m%d%H%M%S+0000");
        let org = &self.org;
        let message = format!(
            "\u{b}MSH|^~\\&|PAS|{org}|MCR|MCR01|{now}||ADT^A01^ADT_A01|BENCH{nhs}|P|2.5.1\r\
             EVN|A01|{now}\r\
             PID|1||{nhs}^^^NHS^NH\r\
             PV1|1|I|WARD1|||||||MED|||||||||BENCH{nhs}|||||||||||||||||||||||||{now}\r\u{1c}\r"
        );
        let mut stream = tokio::net::TcpStream::connect(&self.adt_addr)
            .await
            .context("connecting to the gateway's ADT listener")?;
        stream.write_all(message.as_bytes()).await?;
        let mut answer = Vec::new();
        while !answer.ends_with(&[0x1c, b'\r']) {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await?;
            anyhow::ensure!(n > 0, "the ADT listener closed without an ACK");
            answer.extend_from_slice(&chunk[..n]);
        }
        let answer = String::from_utf8_lossy(&answer);
        anyhow::ensure!(
            answer.contains("MSA|AA|"),
            "the ADT listener did not accept the admission: {answer}"
        );
        Ok(())
    }

    /// Record the patient's permission to view (one step, as a clinician does).
    pub async fn record_permission(
        &self,
        client: &reqwest::Client,
        nhs: &str,
    ) -> anyhow::Result<()> {
        let consent = serde_json::json!({
            "resourceType": "Consent",
            "status": "active",
            "category": [{"coding": [{"system": "https://mycarerecord.example/fhir/CodeSystem/consent-category", "code": "permission-to-view"}]}],
            "patient": {"reference": format!("Patient/{nhs}")},
            "provision": {"type": "permit"},
            "extension": [{"url": "https://mycarerecord.example/fhir/StructureDefinition/given-by", "valueCode": "patient"}]
        });
        let r = client
            .post(format!("{}/fhir/Consent", self.gateway_url))
            .bearer_auth(&self.token)
            .header("content-type", "application/fhir+json")
            .body(consent.to_string())
            .send()
            .await?;
        if !r.status().is_success() {
            bail!(
                "recording permission: HTTP {}: {}",
                r.status(),
                tail(&r.text().await.unwrap_or_default(), 300)
            );
        }
        Ok(())
    }

    /// Requests each source has served since it started (`/_control/stats`).
    pub async fn requests_served(
        &self,
        client: &reqwest::Client,
    ) -> anyhow::Result<Vec<(String, u64)>> {
        let mut served = Vec::new();
        for (id, url) in &self.source_urls {
            let stats: serde_json::Value = client
                .get(format!("{url}/_control/stats"))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let n = stats["requests_served"]
                .as_u64()
                .with_context(|| format!("{id}'s stats have no requests_served"))?;
            served.push((id.clone(), n));
        }
        Ok(served)
    }

    /// Start the floor stand-in (`floor_exe --floor-proxy CONFIG`, see [`crate::floor`]) in
    /// place of the gateway: for each source as many requests per view as the gateway sent it
    /// in `views` one-at-a-time views of `nhs`, and the gateway's mean answer size.
    pub async fn start_floor(
        &self,
        client: &reqwest::Client,
        floor_exe: &Path,
        nhs: &[String],
    ) -> anyhow::Result<FloorProcess> {
        anyhow::ensure!(!nhs.is_empty(), "no patient to calibrate the floor with");
        let before = self.requests_served(client).await?;
        let mut bytes = 0usize;
        for n in nhs {
            let r = client
                .get(format!("{}/fhir/Patient/{n}/$everything", self.gateway_url))
                .bearer_auth(&self.token)
                .send()
                .await?
                .error_for_status()?;
            bytes += r.bytes().await?.len();
        }
        let after = self.requests_served(client).await?;
        let sources = self
            .source_urls
            .iter()
            .map(|(id, url)| {
                let count = |list: &[(String, u64)]| {
                    list.iter().find(|(s, _)| s == id).map_or(0, |(_, n)| *n)
                };
                let asked = count(&after).saturating_sub(count(&before));
                crate::floor::FloorSource {
                    id: id.clone(),
                    base_url: url.clone(),
                    requests_per_view: (asked as f64 / nhs.len() as f64).round() as usize,
                }
            })
            .collect();
        let port = free_port()?;
        let config = crate::floor::FloorConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            sources,
            body_bytes: bytes / nhs.len(),
            log: self.dir.path().join("floor.log"),
        };
        let config_path = self.dir.path().join("floor.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
        let config_arg = config_path.to_string_lossy().into_owned();
        let mut child = spawn(
            floor_exe,
            &["--floor-proxy", &config_arg],
            &self.dir.path().join("floor.stderr"),
        )?;
        let url = format!("http://127.0.0.1:{port}");
        wait_ok(
            client,
            &format!("{url}/ready"),
            &mut child,
            Duration::from_secs(30),
        )
        .await?;
        let pid = child.id().context("the floor stand-in's pid")?;
        Ok(FloorProcess {
            url,
            pid,
            config,
            _child: child,
        })
    }

    /// The gateway's `/metrics`, parsed into series → value.
    pub async fn metrics(&self, client: &reqwest::Client) -> anyhow::Result<Metrics> {
        let text = client
            .get(format!("{}/metrics", self.gateway_url))
            .send()
            .await?
            .text()
            .await?;
        Ok(Metrics::parse(&text))
    }
}

/// The floor stand-in, running; killed when dropped.
#[derive(Debug)]
pub struct FloorProcess {
    pub url: String,
    pub pid: u32,
    pub config: crate::floor::FloorConfig,
    _child: Child,
}

fn toml_org(org: &mcr_domain::Organisation) -> anyhow::Result<String> {
    let v = serde_json::to_value(org)?;
    let obj = v.as_object().context("an organisation is an object")?;
    let fields: Vec<String> = obj
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| format!("{k} = {v}"))
        .collect();
    Ok(format!("{{ {} }}", fields.join(", ")))
}

fn tail(s: &str, n: usize) -> &str {
    let start = s.len().saturating_sub(n);
    let start = (start..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    &s[start..]
}

/// A scrape of Prometheus text: each sample line as `name{labels}` → value.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub samples: std::collections::BTreeMap<String, f64>,
}

impl Metrics {
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_owned(), v.parse().ok()?))
            })
            .collect();
        Self { samples }
    }

    pub fn get(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }

    /// Sum of every series whose name (before `{`) is `name` and whose labels contain `has`.
    pub fn sum(&self, name: &str, has: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(k, _)| k.split('{').next() == Some(name) && k.contains(has))
            .map(|(_, v)| v)
            .sum()
    }

    /// `after − before` for every series that changed.
    pub fn delta(&self, before: &Metrics) -> Metrics {
        let samples = self
            .samples
            .iter()
            .map(|(k, v)| (k.clone(), v - before.get(k)))
            .filter(|(_, d)| *d != 0.0)
            .collect();
        Metrics { samples }
    }
}
