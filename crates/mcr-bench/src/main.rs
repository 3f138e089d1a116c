//! `mcr-bench`: see `docs/PERFORMANCE.md`. Run it with
//! `cargo run --release -p mcr-bench -- --out bench-report`, which first builds `mcr` (release)
//! so the processes under test are the same build.

use anyhow::Context;
use clap::Parser;
use mcr_bench::processes::SystemOptions;
use mcr_bench::BenchOptions;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "mcr-bench",
    about = "Benchmark My Care Record: record views over HTTP, and the patient index"
)]
struct Args {
    /// Where to write report.json, report.md and view-latency.svg.
    #[arg(long, default_value = "bench-report")]
    out: PathBuf,
    /// The `mcr` binary (default: beside this one, built first when run through cargo).
    #[arg(long)]
    mcr: Option<PathBuf>,
    /// Patients in the simulated region (the gateway's index for the record-view runs).
    #[arg(long, default_value_t = 10_000)]
    patients: usize,
    #[arg(long, default_value_t = 2017)]
    seed: u64,
    /// Source latency, min and max ms per request.
    #[arg(long, num_args = 2, default_values_t = [20u64, 80])]
    latency_ms: Vec<u64>,
    #[arg(long, default_value_t = 1_000)]
    deadline_ms: u64,
    /// Concurrent clinicians for the throughput ladder.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 64, 256])]
    clinicians: Vec<usize>,
    /// Clinicians in the slow, down, large and instant-source runs.
    #[arg(long, default_value_t = 64)]
    stress_clinicians: usize,
    /// Reading time between views in the clinicians-at-work run, ms, min and max.
    #[arg(long, num_args = 2, default_values_t = [500u64, 1500])]
    think_ms: Vec<u64>,
    /// Quiet before each scenario, ms: the last one's memory returned and its connections
    /// idle, so no scenario is measured in the wake of the one before.
    #[arg(long, default_value_t = 2_000)]
    settle_ms: u64,
    /// Seconds measured per scenario (after a 1 s warm-up).
    #[arg(long, default_value_t = 8.0)]
    seconds: f64,
    /// Sample patients (held by all four sources) the clinicians view.
    #[arg(long, default_value_t = 200)]
    sample_patients: usize,
    /// Patients in the index benchmark; 0 skips it.
    #[arg(long, default_value_t = 1_500_000)]
    index_patients: usize,
    /// Skip the PostgreSQL index benchmark.
    #[arg(long)]
    no_postgres: bool,
    /// Skip the slowed-source, dead-source and large-record runs (a quicker run while working).
    #[arg(long)]
    no_failures: bool,
    /// Gateway store URL (default: SQLite in a temporary directory).
    #[arg(long)]
    store: Option<String>,
    /// Skip the floor run (the at-work clinicians against a stand-in gateway).
    #[arg(long)]
    no_floor: bool,
    /// Have the gateway ask each source one request per search and read, not one FHIR batch
    /// per view (`batch = false` in its `[[sources]]`).
    #[arg(long)]
    no_batch: bool,
    /// The GP system answers through GP Connect Access Record: Structured and the gateway asks
    /// it that way (the other three sources stay FHIR R4).
    #[arg(long)]
    gp_connect: bool,
    /// Configure the FHIR sources as servers whose search by patient finds only relative
    /// references (`patient_search = "relative"`): each view also asks them by their own
    /// address and by NHS number. By default they are configured as what the simulated sources
    /// are, servers whose search finds every form (`"every-form"`): one search per type.
    #[arg(long)]
    relative_search: bool,
    /// The very large record's size, times a typical record (53: about 15,000 resources in
    /// the default region).
    #[arg(long, default_value_t = 53)]
    very_large_scale: usize,
    /// Views of the very large record measured, of each kind (Bundle and page).
    #[arg(long, default_value_t = 10)]
    very_large_views: usize,
    /// Skip the very large record.
    #[arg(long)]
    no_very_large: bool,
    /// Run only the very large record (a minute or two) and print its section of the report.
    #[arg(long)]
    very_large_only: bool,
    /// Run as the floor stand-in with this config (the benchmark starts it itself).
    #[arg(long, hide = true)]
    floor_proxy: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
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
    let job = async {
        match args.floor_proxy.clone() {
            Some(config) => floor_proxy(&config).await,
            None => run(args).await,
        }
    };
    match runtime.block_on(job) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The `mcr` binary: given, or beside this one. Under `cargo run`, build it first (release,
/// like this binary) so the processes measured are never stale.
fn mcr_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let me = std::env::current_exe()?;
    let dir = me.parent().context("this binary's directory")?;
    if let Ok(cargo) = std::env::var("CARGO") {
        let release = dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "-p", "mcr", "--bin", "mcr"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().context("building mcr")?;
        anyhow::ensure!(status.success(), "building mcr failed");
    }
    let p = dir.join("mcr");
    anyhow::ensure!(
        p.exists(),
        "{} not found: build it (cargo build --release -p mcr) or pass --mcr",
        p.display()
    );
    Ok(p)
}

/// The floor stand-in (`mcr_bench::floor`), serving until killed.
async fn floor_proxy(config: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read(config).with_context(|| format!("reading {}", config.display()))?;
    let config: mcr_bench::floor::FloorConfig = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a floor config", config.display()))?;
    mcr_bench::floor::serve(config).await
}

async fn run(a: Args) -> anyhow::Result<()> {
    let mcr = mcr_binary(a.mcr.clone())?;
    let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 24).context("date")?;
    let latency = (
        a.latency_ms.first().copied().unwrap_or(20),
        a.latency_ms.get(1).copied().unwrap_or(80),
    );
    let command = std::iter::once("mcr-bench".to_owned())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let very_large = (!a.no_very_large).then_some(mcr_bench::big::VeryLargeOptions {
        scale: a.very_large_scale,
        views: a.very_large_views,
    });
    let system = SystemOptions {
        mcr,
        seed: a.seed,
        patients: a.patients,
        today,
        latency_ms: latency,
        deadline_ms: a.deadline_ms,
        store: a.store.clone(),
        batch: !a.no_batch,
        gp_connect: a.gp_connect,
        relative_search: a.relative_search,
    };
    if a.very_large_only {
        let options = very_large.context("--very-large-only with --no-very-large")?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?;
        let result = mcr_bench::big::run(&system, &options, &client).await?;
        std::fs::create_dir_all(&a.out)?;
        let md = format!("`{command}`\n\n{}", mcr_bench::big::markdown(&result));
        std::fs::write(a.out.join("very-large.md"), &md)?;
        std::fs::write(a.out.join("very-large-bundle.json"), &result.bundle_body)?;
        std::fs::write(
            a.out.join("very-large.json"),
            serde_json::to_string_pretty(&result)?,
        )?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{md}")?;
        for t in mcr_bench::report::very_large_targets(&result) {
            writeln!(
                out,
                "- {}: target {}; measured {}; {}",
                t.what,
                t.target,
                t.measured,
                if t.met { "met" } else { "NOT met" }
            )?;
        }
        return Ok(());
    }
    let o = BenchOptions {
        command,
        system,
        clinicians: a.clinicians.clone(),
        stress_clinicians: a.stress_clinicians,
        think_ms: (
            a.think_ms.first().copied().unwrap_or(500),
            a.think_ms.get(1).copied().unwrap_or(1500),
        ),
        settle: Duration::from_millis(a.settle_ms),
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs_f64(a.seconds),
        failure_scenarios: !a.no_failures,
        sample_patients: a.sample_patients,
        index_patients: a.index_patients,
        index_postgres: !a.no_postgres,
        index_lookups: 2_000,
        floor_exe: if a.no_floor {
            None
        } else {
            Some(std::env::current_exe().context("this binary's path")?)
        },
        very_large,
    };
    let report = mcr_bench::run(&o).await?;
    report.write(&a.out)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", report.markdown())?;
    writeln!(out, "Report written to {}", a.out.display())?;
    Ok(())
}
