//! `mcr`: the My Care Record command line.

use anyhow::Context;

mod allocator;

/// mimalloc: a view parses, merges and writes a few hundred kilobytes of JSON as many small
/// values from every worker thread at once; glibc's allocator spent about 40% of the gateway's
/// CPU there (arena lock contention) in the benchmark's profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};
use mcr::config::Settings;
#[cfg(feature = "demo")]
use mcr::demo::{self, DemoOptions};
use mcr_domain::{Clock, SystemClock};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(
    name = "mcr",
    version,
    about = "My Care Record: a regional shared care record gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the demo: four simulated source systems and the gateway on an embedded store.
    #[cfg(feature = "demo")]
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// Synthetic patients in the region.
        #[arg(long, default_value_t = 10_000)]
        patients: usize,
        #[arg(long, default_value_t = 2017)]
        seed: u64,
        /// How long a view waits for any one source, in milliseconds.
        #[arg(long, default_value_t = 3_000)]
        deadline_ms: u64,
        /// Serve plain HTTP instead of HTTPS (local development; loopback addresses only).
        #[arg(long)]
        insecure_http: bool,
    },
    /// Run the gateway alone, against the sources named in a TOML config.
    Serve {
        #[arg(long)]
        config: PathBuf,
        /// Serve plain HTTP instead of HTTPS (local development; loopback addresses only).
        #[arg(long)]
        insecure_http: bool,
    },
    /// A demo public key infrastructure: a regional CA and organisation certificates.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
    /// Run the simulated source systems alone (TOML config: seed, patients, [[source]] id/listen/behaviour).
    #[cfg(feature = "demo")]
    Sources {
        #[arg(long)]
        config: PathBuf,
    },
    /// The patient index.
    Index {
        #[command(subcommand)]
        command: IndexCommand,
    },
    /// Bring the store's schema up to date.
    Migrate {
        #[arg(long)]
        config: PathBuf,
    },
    /// Print a token for a demo user (run `mcr demo` first).
    #[cfg(feature = "demo")]
    DemoToken {
        user: String,
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
    },
    /// Print a client assertion signed by the demo's backend services client (the acute
    /// trust's EPR), naming a demo user as the end user it acts for: POST it to the token
    /// endpoint (`demo.json` → `system_client`).
    #[cfg(feature = "demo")]
    DemoAssertion {
        /// The demo user the system acts for; none with `--no-user`.
        #[arg(default_value = "ae.okafor")]
        user: String,
        #[arg(long)]
        no_user: bool,
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PkiCommand {
    /// Create a demo regional CA in DIR (ca.pem, ca.key.pem).
    Init {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Issue a certificate for an organisation (by ODS code) from the CA in DIR: a client
    /// certificate towards sources and a server certificate for the given names.
    Issue {
        /// ODS code, e.g. RWH.
        org: String,
        #[arg(long)]
        dir: PathBuf,
        /// The organisation's name, for the certificate subject.
        #[arg(long)]
        name: Option<String>,
        /// A DNS name or IP address the certificate may serve as (repeatable; default
        /// localhost and 127.0.0.1).
        #[arg(long = "server-name")]
        server_names: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum IndexCommand {
    /// Read every source's patients and update the index. Prints the report (JSON); exits 1
    /// when a source could not be read or a PDS trace failed (the report says why).
    Sync {
        #[arg(long)]
        config: PathBuf,
        /// Only patients changed since the last sync.
        #[arg(long)]
        incremental: bool,
    },
}

/// Which store an `mcr audit` command reads: a gateway's config, or the data directory
/// `mcr demo` ran in (its SQLite store and its audit signing key).
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct StoreArgs {
    /// The gateway's TOML config.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The data directory `mcr demo --data-dir` used.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl StoreArgs {
    fn load(&self) -> anyhow::Result<(String, mcr::audit_cmd::AuditSettings)> {
        match (&self.config, &self.data_dir) {
            (Some(config), _) => {
                let settings = Settings::load(config)?;
                Ok((settings.store_url(), settings.audit))
            }
            (None, Some(dir)) => mcr::audit_cmd::demo_store(dir),
            (None, None) => anyhow::bail!("give --config or --data-dir"),
        }
    }
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the whole hash chain and every signed checkpoint; exit 1 if it is broken.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Sign the head of the chain now (needs audit.signing_key).
    Checkpoint {
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn main() -> ExitCode {
    allocator::tune();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MCR_LOG")
                .unwrap_or_else(|_| "info,sqlx=warn,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Waits for `SIGTERM` (systemd, a container runtime) or Ctrl-C (`SIGINT`); says which.
async fn stop_signal() -> anyhow::Result<&'static str> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    tokio::select! {
        _ = term.recv() => Ok("SIGTERM"),
        interrupted = tokio::signal::ctrl_c() => {
            interrupted.context("listening for Ctrl-C")?;
            Ok("SIGINT")
        }
    }
}

fn out(s: &str) -> anyhow::Result<()> {
    let mut o = std::io::stdout().lock();
    writeln!(o, "{s}")?;
    o.flush()?;
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        #[cfg(feature = "demo")]
        Command::Demo {
            listen,
            data_dir,
            patients,
            seed,
            deadline_ms,
            insecure_http,
        } => {
            if !(100..=20_000_000).contains(&patients) {
                anyhow::bail!("--patients must be between 100 and 20000000");
            }
            let opts = DemoOptions {
                listen,
                data_dir: data_dir.clone(),
                seed,
                patients,
                deadline_ms,
                store: None,
                insecure_http,
                ..DemoOptions::default()
            };
            let d = demo::start(&opts).await?;
            out(&format!("My Care Record demo is running.\n\n  Viewer and public site: {}/\n  FHIR API:               {}\n", d.info.gateway_url, d.info.fhir_base))?;
            for s in &d.info.sources {
                out(&format!("  source {:<11} {}  ({})", s.id, s.url, s.name))?;
            }
            out(&format!(
                "  identity provider  {}  (demo: its sign-in page lists the demo users)",
                d.info.token_issuer
            ))?;
            if let Some(adt) = &d.info.adt_address {
                out(&format!(
                    "  HL7 v2 ADT (MLLP)  {adt}  (plain TCP on loopback; sending facility RWH)"
                ))?;
            }
            if let Some(ca) = &d.info.ca_cert {
                out(&format!(
                    "\n  HTTPS certificates come from a demo CA made for this data directory: {}\n  Trust it in your client (curl --cacert {}) or import it into the browser.",
                    ca.display(),
                    ca.display()
                ))?;
            }
            out(&format!(
                "\n  Demo users, patients and URLs: {}\n  A token for the API:  mcr demo-token gp.patel --data-dir {}\n  Sample patient in all four sources: {}\n\nPress Ctrl-C to stop.",
                demo::info_path(&data_dir).display(),
                data_dir.display(),
                d.info.patients.get("all_four_sources").and_then(|v| v.first()).map_or("", String::as_str)
            ))?;
            let signal = stop_signal().await?;
            tracing::info!(signal, "stopping");
            d.gateway.drain().await;
            d.stop().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            config,
            insecure_http,
        } => {
            let mut settings = Settings::load(&config)?;
            settings.tls.disabled |= insecure_http;
            let listener = tokio::net::TcpListener::bind(settings.listen)
                .await
                .with_context(|| format!("cannot listen on {}", settings.listen))?;
            let running = mcr::app::serve(&settings, listener).await?;
            out(&format!(
                "gateway listening on {}",
                settings.base_url.clone().unwrap_or_else(|| format!(
                    "{}://{}",
                    if settings.tls.disabled {
                        "http"
                    } else {
                        "https"
                    },
                    running.addr
                ))
            ))?;
            let signal = stop_signal().await?;
            tracing::info!(signal, "stopping");
            running.drain().await;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "demo")]
        Command::Sources { config } => {
            let c = mcr::sources_cmd::SourcesConfig::load(&config)?;
            let handles = mcr::sources_cmd::start(&c, SystemClock.now().date_naive()).await?;
            for (h, e) in handles.iter().zip(&c.sources) {
                out(&format!("source {:<11} {}", e.id, h.base_url()))?;
            }
            tokio::signal::ctrl_c().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Pki {
            command: PkiCommand::Init { dir },
        } => {
            out(&mcr::network::pki_init(
                &dir,
                SystemClock.now().date_naive(),
            )?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Pki {
            command:
                PkiCommand::Issue {
                    org,
                    dir,
                    name,
                    server_names,
                },
        } => {
            out(&mcr::network::pki_issue(
                &dir,
                &org,
                name,
                server_names,
                SystemClock.now().date_naive(),
            )?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Index {
            command:
                IndexCommand::Sync {
                    config,
                    incremental,
                },
        } => {
            let settings = Settings::load(&config)?;
            let gateway = mcr::app::gateway(&settings, Arc::new(SystemClock)).await?;
            let holder = format!("mcr-index-sync#{}", std::process::id());
            let Some(report) = gateway.indexer().sync_once(!incremental, &holder).await? else {
                out("another gateway is syncing the index now (it holds the index-sync lease): nothing done")?;
                return Ok(ExitCode::from(3));
            };
            out(&serde_json::to_string_pretty(&report)?)?;
            // A source not read, or PDS traces that failed (the token endpoint refusing the
            // signed JWT among them): said in the report, and in the exit code.
            let failed = report
                .sources
                .iter()
                .any(|s| s.failed.is_some() || s.pds.failed > 0);
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Migrate { config } => {
            let settings = Settings::load(&config)?;
            if settings.store.is_none() {
                std::fs::create_dir_all(&settings.data_dir).with_context(|| {
                    format!(
                        "creating the data directory {}",
                        settings.data_dir.display()
                    )
                })?;
            }
            let store = mcr_store::connect_and_migrate(&settings.store_url()).await?;
            out(&format!("{} store is up to date", store.backend()))?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "demo")]
        Command::DemoToken { user, data_dir } => {
            let info = demo::read_info(&data_dir)?;
            out(&demo::token_for(&info, &user)?)?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "demo")]
        Command::DemoAssertion {
            user,
            no_user,
            data_dir,
        } => {
            let info = demo::read_info(&data_dir)?;
            let system = info
                .system_client
                .as_ref()
                .context("demo.json names no system client: start the demo again")?;
            let user =
                if no_user {
                    None
                } else {
                    Some(info.users.iter().find(|u| u.id == user).with_context(|| {
                        format!("no demo user `{user}` (see demo.json → users)")
                    })?)
                };
            out(&mcr::demo::system::assertion(system, user, &SystemClock)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Verify { store },
        } => {
            let (url, audit) = store.load()?;
            let store = mcr_store::connect(&url).await?;
            let (line, intact) = mcr::audit_cmd::verify(store.as_ref(), &audit).await?;
            out(&line)?;
            Ok(if intact {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Audit {
            command: AuditCommand::Checkpoint { store },
        } => {
            let (url, audit) = store.load()?;
            let store = mcr_store::connect_and_migrate(&url).await?;
            out(&mcr::audit_cmd::checkpoint(store.as_ref(), &audit, &SystemClock).await?)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
