//! The benchmark a user can trust: `mcr sources` and `mcr serve` started as separate processes
//! on loopback, many concurrent clinicians driven through the real HTTP API (token, search,
//! decision, audit, fan-out, merge, JSON out), and the patient index at 1.5 million people on
//! SQLite and PostgreSQL. See `docs/PERFORMANCE.md` for what each figure means.
//!
//! Counting: each virtual clinician runs a closed loop (send, read the body to its last byte,
//! then the next request); latency is from send to last byte; anything but a 200 is an error,
//! counted apart and never in the latency figures. The gateway's overhead per view is the view
//! latency minus the slowest source's own time for that view (each source says it in
//! `Server-Timing: app;dur=`, the gateway passes it on as `source-<id>;dur=`). After every
//! scenario the gateway's own `/metrics` are read back and their view count compared with ours.
//!
//! This crate is a tool, not part of the product: nothing in the gateway depends on it.

pub mod big;
pub mod floor;
pub mod index;
pub mod linkage;
pub mod load;
pub mod machine;
pub mod processes;
pub mod report;
pub mod stats;

pub use load::{run_load, LoadOptions};
pub use report::Report;

use anyhow::Context;
use load::ScenarioResult;
use processes::{System, SystemOptions};
use report::Target;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Clinicians start spread over this long at the start of each scenario (part of the measured
/// time, so throughput is if anything understated).
const STAGGER: Duration = Duration::from_millis(250);

/// Everything one run does.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// How the run was started, for the report.
    pub command: String,
    pub system: SystemOptions,
    /// Concurrent clinicians for the throughput ladder.
    pub clinicians: Vec<usize>,
    /// Clinicians for the slow-source, dead-source, instant-source, large-record and
    /// clinicians-at-work runs.
    pub stress_clinicians: usize,
    /// Reading time between views in the clinicians-at-work run, ms, min and max.
    pub think_ms: (u64, u64),
    /// Quiet before each scenario (see [`load::LoadOptions::settle`]).
    pub settle: Duration,
    pub warmup: Duration,
    pub duration: Duration,
    /// Run the slow-source, dead-source and large-record scenarios.
    pub failure_scenarios: bool,
    /// Sample patients viewed (all four sources hold them).
    pub sample_patients: usize,
    /// Patients in the index benchmark (0: skip it).
    pub index_patients: usize,
    pub index_postgres: bool,
    pub index_lookups: usize,
    /// This binary, to start the floor stand-in from (`--floor-proxy`); `None` skips the floor.
    pub floor_exe: Option<std::path::PathBuf>,
    /// View one very large record alone, on a system of its own (`big`); `None` skips it.
    pub very_large: Option<big::VeryLargeOptions>,
}

/// Run everything, in an order that keeps the measurements apart: record views first, then
/// the index (which takes the cores for itself).
pub async fn run(o: &BenchOptions) -> anyhow::Result<Report> {
    let started = Instant::now();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(60))
        .build()?;
    let sys = &o.system;
    let region = mcr_synth::generate(&mcr_synth::SynthConfig {
        seed: sys.seed,
        patients: sys.patients,
        today: sys.today,
    });
    let typical: Vec<String> = region
        .samples
        .all_four
        .iter()
        .take(o.sample_patients)
        .map(ToString::to_string)
        .collect();
    let large: Vec<String> = region
        .samples
        .large
        .iter()
        .take(8)
        .map(ToString::to_string)
        .collect();
    anyhow::ensure!(
        !typical.is_empty(),
        "the region has no patient held by all four sources; raise --patients"
    );

    let system = System::start(sys, &client)
        .await
        .context("starting the sources and the gateway")?;
    // Start-up's own peak (the patient index synced from every source), before any view.
    let startup_peak_rss_mib =
        machine::memory_mib(system.gateway_pid).map_or(0.0, |(peak, _)| stats::round3(peak));
    for nhs in typical.iter().chain(&large) {
        system.admit(nhs).await?;
        system.record_permission(&client, nhs).await?;
    }
    // Patient search is rate-limited per user and per address (a clinician searches a few
    // times a minute), so it is timed apart, within the burst allowance, not in the view loop.
    let mut searches = Vec::new();
    for nhs in typical.iter().take(20) {
        let url = format!(
            "{}/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}",
            system.gateway_url
        );
        let s = Instant::now();
        let r = client.get(url).bearer_auth(&system.token).send().await?;
        let ok = r.status().is_success();
        r.bytes().await?;
        if ok {
            searches.push(s.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let search = stats::Percentiles::of(&searches);
    let loopback = loopback_round_trip(&client, &system).await?;
    let flush = disk_flush(system.dir().join("flush-probe")).await?;
    let typical = Arc::new(typical);
    let scenario = |name: &str, clinicians: usize, patients: &Arc<Vec<String>>| load::LoadOptions {
        name: name.to_owned(),
        clinicians,
        settle: o.settle,
        warmup: o.warmup,
        duration: o.duration,
        patients: Arc::clone(patients),
        search_first: false,
        think: None,
        stagger: STAGGER,
    };
    let (lo, hi) = sys.latency_ms;
    let mut scenarios: Vec<ScenarioResult> = Vec::new();
    let base_name = format!("sources {lo}-{hi} ms");
    // Rungs above the at-work clinician count (`--stress-clinicians`, 64) run later, after
    // every run at that count: the allocator keeps some of what their many views in flight
    // took for a while, and it would show in the memory of the runs after (as the large
    // records' would, which run last).
    let (ladder, heavier): (Vec<usize>, Vec<usize>) = o
        .clinicians
        .iter()
        .partition(|&&c| c <= o.stress_clinicians);
    for c in ladder {
        scenarios.push(run_load(&system, &client, &scenario(&base_name, c, &typical)).await?);
    }
    let (think_lo, think_hi) = o.think_ms;
    scenarios.push(
        run_load(
            &system,
            &client,
            &load::LoadOptions {
                think: Some((
                    Duration::from_millis(think_lo),
                    Duration::from_millis(think_hi),
                )),
                ..scenario(
                    &format!("{base_name}, clinicians at work (reading {think_lo}-{think_hi} ms between views)"),
                    o.stress_clinicians,
                    &typical,
                )
            },
        )
        .await?,
    );
    // The floor: the same clinicians at work against a stand-in that does only what any
    // gateway of this design must (see `floor`), on the same sources and cores.
    let mut floor = None;
    if let Some(exe) = &o.floor_exe {
        let calibrate: Vec<String> = typical.iter().take(5).cloned().collect();
        let stand_in = system
            .start_floor(&client, exe, &calibrate)
            .await
            .context("starting the floor stand-in")?;
        let at_work = scenarios.last().context("the at-work run")?;
        let options = load::LoadOptions {
            think: Some((
                Duration::from_millis(think_lo),
                Duration::from_millis(think_hi),
            )),
            ..scenario(&at_work.name, o.stress_clinicians, &typical)
        };
        let target = load::Target {
            url: &stand_in.url,
            token: &system.token,
            pid: stand_in.pid,
            sources_pid: system.sources_pid,
            metrics: None,
        };
        let result = load::run_load_on(target, &client, &options).await?;
        floor = Some(Floor {
            config: stand_in.config.clone(),
            result,
        });
    }
    if o.failure_scenarios {
        let slow = sys.deadline_ms + 1_000;
        system
            .set_behaviour(
                &client,
                "acute",
                serde_json::json!({"latency_ms": [slow, slow]}),
            )
            .await?;
        let name = format!(
            "acute slowed to {slow} ms (deadline {} ms)",
            sys.deadline_ms
        );
        scenarios.push(
            run_load(
                &system,
                &client,
                &scenario(&name, o.stress_clinicians, &typical),
            )
            .await?,
        );
        system
            .set_behaviour(
                &client,
                "acute",
                serde_json::json!({"latency_ms": [lo, hi], "failure": "drop"}),
            )
            .await?;
        scenarios.push(
            run_load(
                &system,
                &client,
                &scenario(
                    "acute down (connections dropped)",
                    o.stress_clinicians,
                    &typical,
                ),
            )
            .await?,
        );
        system.all_sources(&client, (lo, hi)).await?;
    }
    system.all_sources(&client, (0, 0)).await?;
    scenarios.push(
        run_load(
            &system,
            &client,
            &scenario("sources instant (0 ms)", o.stress_clinicians, &typical),
        )
        .await?,
    );
    system.all_sources(&client, (lo, hi)).await?;
    for c in heavier {
        scenarios.push(run_load(&system, &client, &scenario(&base_name, c, &typical)).await?);
    }
    // Last: the allocator keeps some of what these views took for a while, which would show in
    // the memory of whatever ran next.
    if o.failure_scenarios && !large.is_empty() {
        let large = Arc::new(large);
        let name = format!("large records (~3,000 resources), sources {lo}-{hi} ms");
        scenarios.push(
            run_load(
                &system,
                &client,
                &scenario(&name, o.stress_clinicians, &large),
            )
            .await?,
        );
    }
    drop(system);
    // On a system of its own, started afresh: its memory is this record's alone.
    let very_large = match &o.very_large {
        Some(v) => Some(big::run(sys, v, &client).await?),
        None => None,
    };

    let mut index = Vec::new();
    if o.index_patients > 0 {
        let people = mcr_synth::demographics(sys.seed, o.index_patients, sys.today);
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("index.db");
        let url = format!("sqlite://{}", db.display());
        index.push(
            index::bench_index(
                &url,
                &people,
                sys.today,
                o.index_lookups,
                &index::Storage::Sqlite(db),
            )
            .await?,
        );
        if o.index_postgres {
            // The throwaway cluster panics when PostgreSQL cannot be started: keep that a
            // failure of this part only.
            let url = tokio::spawn(mcr_testkit::postgres_url())
                .await
                .context("starting PostgreSQL for the index benchmark")?;
            index.push(
                index::bench_index(
                    &url,
                    &people,
                    sys.today,
                    o.index_lookups,
                    &index::Storage::Postgres(url.clone()),
                )
                .await?,
            );
        }
    }

    let settings = serde_json::json!({
        "region_patients": sys.patients, "seed": sys.seed, "today": sys.today.to_string(),
        "source_latency_ms": [lo, hi], "deadline_ms": sys.deadline_ms,
        "sample_patients": o.sample_patients, "seconds_per_scenario": o.duration.as_secs_f64(),
        "settle_seconds": o.settle.as_secs_f64(), "warmup_seconds": o.warmup.as_secs_f64(), "store": sys.store.as_deref().unwrap_or("sqlite (gateway data dir)"),
        "sources_asked": if sys.batch { "one FHIR batch per source per view" } else { "one request per search and read" },
        "gp_source": if sys.gp_connect { "GP Connect Access Record: Structured (one $gpc.getstructuredrecord per view)" } else { "FHIR R4 like the others" },
    });
    let mut targets = targets(
        &scenarios,
        &index,
        sys.deadline_ms,
        &base_name,
        floor.as_ref(),
    );
    targets.extend(very_large.iter().flat_map(report::very_large_targets));
    Ok(Report {
        command: o.command.clone(),
        machine: machine::Machine::describe(),
        settings,
        search,
        loopback,
        flush,
        floor,
        startup_peak_rss_mib,
        scenarios,
        very_large,
        index,
        targets,
        total_seconds: stats::round3(started.elapsed().as_secs_f64()),
    })
}

/// `probe` (which times itself, ms) 20 times to warm up, then 100 times back to back, with the
/// cores kept awake, and 100 times after 30 ms of quiet each, as when a view's slowest source
/// answers after its wait and the processes have gone idle.
async fn busy_and_idle<F, Fut>(mut probe: F) -> anyhow::Result<Probe>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<f64>>,
{
    for _ in 0..20 {
        probe().await?;
    }
    let mut busy = Vec::with_capacity(100);
    for _ in 0..100 {
        busy.push(probe().await?);
    }
    let mut idle = Vec::with_capacity(100);
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        idle.push(probe().await?);
    }
    Ok(Probe {
        back_to_back: stats::Percentiles::of(&busy),
        after_idle: stats::Percentiles::of(&idle),
    })
}

/// The floor under every overhead figure: one small HTTP exchange on loopback between two
/// processes on this machine (the load generator and a simulated source's `/_control/stats`,
/// a few hundred bytes, no latency added), one at a time, by [`busy_and_idle`]. A view's
/// overhead holds two such exchanges after the sources' wait: clinician and gateway, gateway
/// and its slowest source.
async fn loopback_round_trip(client: &reqwest::Client, system: &System) -> anyhow::Result<Probe> {
    let (_, source) = system
        .source_urls
        .first()
        .context("the bench starts at least one source")?;
    let url = format!("{source}/_control/stats");
    busy_and_idle(|| async {
        let s = Instant::now();
        let r = client.get(&url).send().await?.error_for_status()?;
        r.bytes().await?;
        anyhow::Ok(s.elapsed().as_secs_f64() * 1000.0)
    })
    .await
}

/// The disk under every audit commit: 4 KiB written to a file beside the gateway's data
/// directory and flushed (`fdatasync`), one at a time, by [`busy_and_idle`] (a view's audit
/// commit comes after the sources' wait). Each flush runs and is timed on a blocking thread.
/// On a virtual machine a flush after quiet can cost several times one back to back: the
/// host's disk path has gone idle too.
async fn disk_flush(path: std::path::PathBuf) -> anyhow::Result<Probe> {
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let file = Arc::new(std::sync::Mutex::new(file));
    let timed = busy_and_idle(|| {
        let file = Arc::clone(&file);
        async move {
            tokio::task::spawn_blocking(move || {
                use std::io::Write as _;
                let mut file = file
                    .lock()
                    .map_err(|_| anyhow::anyhow!("the probe file's lock was poisoned"))?;
                let s = Instant::now();
                file.write_all(&[b'x'; 4096])?;
                file.sync_data()?;
                anyhow::Ok(s.elapsed().as_secs_f64() * 1000.0)
            })
            .await
            .context("the disk flush probe stopped")?
        }
    })
    .await;
    drop(file);
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    timed
}

/// The clinicians-at-work run against the floor stand-in.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Floor {
    /// What the stand-in did per view (requests per source, answer size).
    pub config: floor::FloorConfig,
    pub result: ScenarioResult,
}

/// A small operation (one HTTP exchange on loopback, one flush to disk), timed back to back
/// and after the machine went idle.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Probe {
    pub back_to_back: stats::Percentiles,
    pub after_idle: stats::Percentiles,
}

/// The overhead target: the gateway's at-work overhead within this many times the floor
/// measured in the same run, at p50 and at p99. A fixed figure in milliseconds passes on one
/// machine and fails on another whose floor alone is three times as high.
pub const OVERHEAD_RATIO_TARGET: f64 = 3.0;

fn targets(
    scenarios: &[ScenarioResult],
    index: &[index::IndexResult],
    deadline_ms: u64,
    base: &str,
    floor: Option<&Floor>,
) -> Vec<Target> {
    let mut t = Vec::new();
    let mut add = |what: &str, target: &str, measured: String, met: bool| {
        t.push(Target {
            what: what.into(),
            target: target.into(),
            measured,
            met,
        });
    };
    // The overhead target: clinicians at work (reading between views), against the floor
    // stand-in run the same way on the same machine in the same run. Without a floor there is
    // nothing to hold the figure to, and the report says so rather than passing it.
    for r in scenarios
        .iter()
        .filter(|r| r.name.starts_with(base) && r.name.contains("at work"))
    {
        let what = format!("gateway overhead, {} clinicians at work", r.clinicians);
        let (p50, p99) = (r.gateway_overhead.p50_ms, r.gateway_overhead.p99_ms);
        let target = format!("p50 and p99 <= {OVERHEAD_RATIO_TARGET}x the floor in the same run");
        match floor {
            Some(f) => {
                let (f50, f99) = (
                    f.result.gateway_overhead.p50_ms,
                    f.result.gateway_overhead.p99_ms,
                );
                let ratio = |x: f64, base: f64| if base > 0.0 { x / base } else { f64::INFINITY };
                add(
                    &what,
                    &target,
                    format!(
                        "p50 {p50:.2} ms = {:.1}x floor {f50:.2} ms; p99 {p99:.2} ms = {:.1}x floor {f99:.2} ms ({:.0} views/s)",
                        ratio(p50, f50),
                        ratio(p99, f99),
                        r.views_per_second
                    ),
                    ratio(p50, f50) <= OVERHEAD_RATIO_TARGET
                        && ratio(p99, f99) <= OVERHEAD_RATIO_TARGET,
                );
            }
            None => add(
                &what,
                &target,
                format!("p50 {p50:.2} ms, p99 {p99:.2} ms; no floor measured (--no-floor)"),
                false,
            ),
        }
    }
    if let Some(r) = scenarios
        .iter()
        .find(|r| r.name.starts_with("sources instant"))
    {
        add(
            "views/s with instant sources",
            ">= 250/s, no errors",
            format!("{:.0}/s, {} errors", r.views_per_second, r.error_count),
            r.views_per_second >= 250.0 && r.error_count == 0,
        );
    }
    // "Under that load": up to 64 clinicians on ~300-resource records. Heavier runs (256
    // clinicians, large records) are reported beside it, not against it.
    let under_load = |r: &&ScenarioResult| !r.name.starts_with("large") && r.clinicians <= 64;
    let usual = scenarios
        .iter()
        .filter(under_load)
        .map(|r| r.gateway_peak_rss_mib)
        .fold(0.0, f64::max);
    let large = scenarios
        .iter()
        .filter(|r| !under_load(r))
        .map(|r| {
            let what = if r.name.starts_with("large") {
                "large records".to_owned()
            } else {
                format!("{} clinicians", r.clinicians)
            };
            format!("; {what}: {:.0} MiB", r.gateway_peak_rss_mib)
        })
        .collect::<String>();
    let since_start = if scenarios.iter().any(|r| r.peak_rss_since_start) {
        ", peak since start-up: the kernel would not reset it"
    } else {
        ""
    };
    add(
        "gateway peak RSS, up to 64 clinicians, ~300-resource records",
        "<= 300 MB",
        format!("{usual:.0} MiB{since_start}{large}"),
        usual * 1.048_576 <= 300.0,
    );
    for r in scenarios
        .iter()
        .filter(|r| r.name.contains("slowed") || r.name.contains("down"))
    {
        let limit = deadline_ms as f64 + 50.0;
        add(
            &r.name,
            &format!("every view <= deadline + 50 ms = {limit:.0} ms"),
            format!(
                "max {:.0} ms, p99 {:.0} ms, {} errors",
                r.view_latency.max_ms, r.view_latency.p99_ms, r.error_count
            ),
            r.view_latency.max_ms <= limit && r.error_count == 0,
        );
    }
    for i in index {
        add(
            &format!("{} index, {} patients", i.backend, i.patients),
            "NHS lookup p99 <= 1 ms, demographic search p99 <= 20 ms",
            format!(
                "{:.3} ms, {:.3} ms",
                i.nhs_lookup.p99_ms, i.demographic_search.p99_ms
            ),
            i.nhs_lookup.p99_ms <= 1.0 && i.demographic_search.p99_ms <= 20.0,
        );
    }
    t
}
