//! Concurrent clinicians, each a closed loop over the real HTTP API: find the patient by NHS
//! number, then open their record (`$everything`). Latency is from send to the body's last byte.

use crate::machine;
use crate::processes::{Metrics, System};
use crate::stats::{round3, Percentiles};
use anyhow::Context;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One scenario's settings.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub name: String,
    pub clinicians: usize,
    /// Quiet before the warm-up: the previous scenario's connections idle and its memory
    /// returned (the gateway's allocator gives freed memory back after 1 s), so each scenario
    /// starts from the same state and not in the wake of the one before.
    pub settle: Duration,
    pub warmup: Duration,
    pub duration: Duration,
    /// NHS numbers to view (permission already recorded).
    pub patients: Arc<Vec<String>>,
    /// Search for the patient before each view, as a clinician does.
    pub search_first: bool,
    /// Reading time between one view and the next, uniform in `[min, max]`; `None` is back to
    /// back (a closed loop with no pause: a throughput test).
    pub think: Option<(Duration, Duration)>,
    /// Clinicians start spread evenly over this much time (then each keeps its own pace), so
    /// that they do not all press the button in the same millisecond.
    pub stagger: Duration,
}

/// What one scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub name: String,
    pub clinicians: usize,
    pub seconds: f64,
    pub views: usize,
    pub views_per_second: f64,
    /// Anything but a 200, by status (or `transport`); never in the latency figures.
    pub errors: BTreeMap<String, usize>,
    pub error_count: usize,
    pub view_latency: Percentiles,
    /// View latency minus the slowest source's own time for that view.
    pub gateway_overhead: Percentiles,
    /// The slowest source's own time per view.
    pub slowest_source: Percentiles,
    /// The gateway's own account of each view (`Server-Timing`): `access` (index, governance,
    /// decision), `fetch` (sources asked, answers read and digested), `merge`, `audit`,
    /// `encode`, and `fetch after slowest source` (fetch minus the slowest source's own time).
    pub phases: BTreeMap<String, Percentiles>,
    pub search_latency: Percentiles,
    /// Resources per view (entries other than Provenance and OperationOutcome), mean.
    pub resources_per_view: f64,
    pub response_kib_mean: f64,
    /// Gateway CPU seconds per wall second (1.0 = one core busy).
    pub gateway_cpu_cores: f64,
    /// Sources process CPU seconds per wall second.
    pub sources_cpu_cores: f64,
    pub gateway_rss_mib: f64,
    /// Peak resident memory during this scenario's measured window.
    pub gateway_peak_rss_mib: f64,
    /// True when the kernel would not reset the peak: the figure is then the peak since the
    /// gateway started (index sync and earlier scenarios included).
    pub peak_rss_since_start: bool,
    /// Read back from the gateway's `/metrics` over the same interval.
    pub gateway_metrics: MetricsCheck,
    /// Raw view latencies (ms) for the histogram picture; not written to JSON.
    #[serde(skip)]
    pub latencies_ms: Vec<f64>,
}

/// The gateway's own account of the same interval.
#[derive(Debug, Clone, Serialize, Default)]
pub struct MetricsCheck {
    /// `mcr_view_duration_seconds_count{outcome="permit"}` delta.
    pub views_permitted: f64,
    /// Mean in-gateway view time (from the histogram's sum / count), ms.
    pub view_mean_ms: f64,
    /// True when the gateway counted exactly the views we counted.
    pub agrees_with_client: bool,
    /// `mcr_source_failures_total` deltas, `source/reason` → count.
    pub source_failures: BTreeMap<String, f64>,
    /// Mean audit append, ms.
    pub audit_append_mean_ms: f64,
}

#[derive(Default)]
struct Tally {
    latencies: Vec<f64>,
    overheads: Vec<f64>,
    slowest: Vec<f64>,
    phases: BTreeMap<String, Vec<f64>>,
    searches: Vec<f64>,
    errors: BTreeMap<String, usize>,
    bytes: u64,
    /// A few answers kept whole, to count their resources once the measured window is over.
    samples: Vec<bytes::Bytes>,
}

/// Answers kept per scenario for [`ScenarioResult::resources_per_view`].
const SAMPLES: usize = 32;

/// Where the clinicians' requests go, and whose CPU and memory are measured.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub url: &'a str,
    pub token: &'a str,
    /// The process answering the clinicians (CPU, memory).
    pub pid: u32,
    pub sources_pid: u32,
    /// The system whose gateway's `/metrics` are checked against our count; `None` for a
    /// stand-in without them (the floor).
    pub metrics: Option<&'a System>,
}

impl<'a> Target<'a> {
    pub fn gateway(system: &'a System) -> Self {
        Self {
            url: &system.gateway_url,
            token: &system.token,
            pid: system.gateway_pid,
            sources_pid: system.sources_pid,
            metrics: Some(system),
        }
    }
}

/// Run one scenario against a running system's gateway.
pub async fn run_load(
    system: &System,
    client: &reqwest::Client,
    o: &LoadOptions,
) -> anyhow::Result<ScenarioResult> {
    run_load_on(Target::gateway(system), client, o).await
}

/// Run one scenario against `target`.
pub async fn run_load_on(
    target: Target<'_>,
    client: &reqwest::Client,
    o: &LoadOptions,
) -> anyhow::Result<ScenarioResult> {
    tokio::time::sleep(o.settle).await;
    // Warm-up: the same loop, results dropped.
    if !o.warmup.is_zero() {
        drive(target, client, o, o.warmup).await;
    }
    // Peak memory of the measured window only: not start-up's (the index sync, reported
    // apart) nor an earlier run's memory the allocator has not yet given back.
    let peak_is_scenarios = machine::reset_peak_rss(target.pid);
    let before = match target.metrics {
        Some(system) => Some(system.metrics(client).await.context("reading /metrics")?),
        None => None,
    };
    let cpu0 = (
        machine::cpu_seconds(target.pid),
        machine::cpu_seconds(target.sources_pid),
    );
    let started = Instant::now();
    let tally = drive(target, client, o, o.duration).await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu1 = (
        machine::cpu_seconds(target.pid),
        machine::cpu_seconds(target.sources_pid),
    );
    let after = match target.metrics {
        Some(system) => Some(system.metrics(client).await.context("reading /metrics")?),
        None => None,
    };
    let (peak, rss) = machine::memory_mib(target.pid).unwrap_or((0.0, 0.0));
    let cores = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => round3((b - a) / seconds),
        _ => 0.0,
    };
    // Counted now, on the harness's own time: parsed during the window, every answer cost the
    // load generator a millisecond or more of the two cores the gateway is measured on, right
    // as other clinicians' views were finishing.
    let resources_per_view = if tally.samples.is_empty() {
        0.0
    } else {
        let total: u64 = tally.samples.iter().map(|b| resources_in(b)).sum();
        round3(total as f64 / tally.samples.len() as f64)
    };
    let views = tally.latencies.len();
    let gateway_metrics = match (&before, &after) {
        (Some(before), Some(after)) => check(&after.delta(before), views),
        _ => MetricsCheck::default(),
    };
    Ok(ScenarioResult {
        name: o.name.clone(),
        clinicians: o.clinicians,
        seconds: round3(seconds),
        views,
        views_per_second: round3(views as f64 / seconds),
        error_count: tally.errors.values().sum(),
        errors: tally.errors,
        view_latency: Percentiles::of(&tally.latencies),
        gateway_overhead: Percentiles::of(&tally.overheads),
        slowest_source: Percentiles::of(&tally.slowest),
        phases: tally
            .phases
            .iter()
            .map(|(k, v)| (k.clone(), Percentiles::of(v)))
            .collect(),
        search_latency: Percentiles::of(&tally.searches),
        resources_per_view,
        response_kib_mean: if views == 0 {
            0.0
        } else {
            round3(tally.bytes as f64 / views as f64 / 1024.0)
        },
        gateway_cpu_cores: cores(cpu0.0, cpu1.0),
        sources_cpu_cores: cores(cpu0.1, cpu1.1),
        gateway_rss_mib: round3(rss),
        gateway_peak_rss_mib: round3(peak),
        peak_rss_since_start: !peak_is_scenarios,
        gateway_metrics,
        latencies_ms: tally.latencies,
    })
}

fn check(d: &Metrics, views: usize) -> MetricsCheck {
    let permitted = d.get("mcr_view_duration_seconds_count{outcome=\"permit\"}");
    let sum = d.get("mcr_view_duration_seconds_sum{outcome=\"permit\"}");
    let audit_n = d.get("mcr_audit_append_duration_seconds_count{outcome=\"ok\"}");
    let audit_sum = d.get("mcr_audit_append_duration_seconds_sum{outcome=\"ok\"}");
    let source_failures = d
        .samples
        .iter()
        .filter(|(k, _)| k.starts_with("mcr_source_failures_total{"))
        .map(|(k, v)| {
            let label = |name: &str| {
                k.split(&format!("{name}=\""))
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or("?")
                    .to_owned()
            };
            (format!("{}/{}", label("source"), label("reason")), *v)
        })
        .collect();
    MetricsCheck {
        views_permitted: permitted,
        view_mean_ms: if permitted > 0.0 {
            round3(sum / permitted * 1000.0)
        } else {
            0.0
        },
        // Views the gateway finished but whose last byte we did not read before the end are
        // not ours: allow the in-flight ones at the boundary (at most one per clinician).
        agrees_with_client: (permitted - views as f64).abs() < 0.5,
        source_failures,
        audit_append_mean_ms: if audit_n > 0.0 {
            round3(audit_sum / audit_n * 1000.0)
        } else {
            0.0
        },
    }
}

/// Every clinician loops until `for_how_long` has passed, then finishes the request in hand.
async fn drive(
    target: Target<'_>,
    client: &reqwest::Client,
    o: &LoadOptions,
    for_how_long: Duration,
) -> Tally {
    let end = Instant::now() + for_how_long;
    // Answers still to keep for counting, shared by every clinician.
    let to_keep = Arc::new(std::sync::atomic::AtomicUsize::new(SAMPLES));
    let mut tasks = Vec::new();
    for c in 0..o.clinicians {
        let client = client.clone();
        let patients = Arc::clone(&o.patients);
        let base = target.url.to_owned();
        let token = target.token.to_owned();
        let search_first = o.search_first;
        let think = o.think;
        let stagger = o.stagger.mul_f64(c as f64 / o.clinicians.max(1) as f64);
        let to_keep = Arc::clone(&to_keep);
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::default();
            tokio::time::sleep(stagger).await;
            // Each clinician walks the patient list from its own starting point.
            let mut i = c.wrapping_mul(7919);
            let mut counted = std::collections::HashSet::new();
            while Instant::now() < end {
                i = i.wrapping_add(1);
                let Some(nhs) = patients.get(i % patients.len().max(1)) else {
                    break;
                };
                if search_first {
                    let url = format!(
                        "{base}/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}"
                    );
                    let s = Instant::now();
                    match get(&client, &url, &token).await {
                        Ok((200, _, _)) => t.searches.push(ms(s.elapsed())),
                        Ok((status, _, _)) => {
                            *t.errors.entry(format!("search-{status}")).or_default() += 1
                        }
                        Err(e) => *t.errors.entry(format!("search-{e}")).or_default() += 1,
                    }
                }
                let url = format!("{base}/fhir/Patient/{nhs}/$everything");
                let s = Instant::now();
                match get(&client, &url, &token).await {
                    Ok((200, timing, body)) => {
                        let took = ms(s.elapsed());
                        t.latencies.push(took);
                        let slowest = slowest_source(&timing);
                        t.slowest.push(slowest);
                        t.overheads.push((took - slowest).max(0.0));
                        if let Some(handler) = handler_ms(&timing) {
                            // Request and response on the wire, the HTTP layers and middleware
                            // before the handler: everything the gateway's own clock misses.
                            t.phases
                                .entry("outside the handler".to_owned())
                                .or_default()
                                .push((took - handler).max(0.0));
                        }
                        for (name, ms) in phases(&timing) {
                            t.phases.entry(name.to_owned()).or_default().push(ms);
                            if name == "fetch" {
                                t.phases
                                    .entry("fetch after slowest source".to_owned())
                                    .or_default()
                                    .push((ms - slowest).max(0.0));
                            }
                        }
                        t.bytes += body.len() as u64;
                        // A few patients' answers are kept (not copied) and counted after the
                        // window: parsing here would take the cores the gateway is measured on.
                        if !counted.contains(nhs)
                            && to_keep
                                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                                    n.checked_sub(1)
                                })
                                .is_ok()
                        {
                            counted.insert(nhs.clone());
                            t.samples.push(body);
                        }
                    }
                    Ok((status, _, _)) => *t.errors.entry(status.to_string()).or_default() += 1,
                    Err(e) => *t.errors.entry(e).or_default() += 1,
                }
                if let Some((lo, hi)) = think {
                    let pause = if hi > lo {
                        rand::Rng::gen_range(&mut rand::thread_rng(), lo..=hi)
                    } else {
                        lo
                    };
                    tokio::time::sleep(pause.min(end.saturating_duration_since(Instant::now())))
                        .await;
                }
            }
            t
        }));
    }
    let mut all = Tally::default();
    for task in tasks {
        if let Ok(t) = task.await {
            all.latencies.extend(t.latencies);
            all.overheads.extend(t.overheads);
            all.slowest.extend(t.slowest);
            for (k, v) in t.phases {
                all.phases.entry(k).or_default().extend(v);
            }
            all.searches.extend(t.searches);
            for (k, v) in t.errors {
                *all.errors.entry(k).or_default() += v;
            }
            all.bytes += t.bytes;
            all.samples.extend(t.samples);
        }
    }
    all
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Status, `Server-Timing` header, and the whole body (read to its last byte).
async fn get(
    client: &reqwest::Client,
    url: &str,
    token: &str,
) -> Result<(u16, String, bytes::Bytes), String> {
    let r = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|_| "transport".to_owned())?;
    let status = r.status().as_u16();
    let timing = r
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = r.bytes().await.map_err(|_| "transport-body".to_owned())?;
    Ok((status, timing, body))
}

/// Every `name;dur=<ms>` metric of a `Server-Timing` header, in order; others are skipped.
fn durations(header: &str) -> impl Iterator<Item = (&str, f64)> {
    header.split(',').filter_map(|m| {
        let mut parts = m.split(';').map(str::trim);
        let name = parts.next().filter(|n| !n.is_empty())?;
        let ms = parts
            .find_map(|p| p.strip_prefix("dur="))
            .and_then(|d| d.parse::<f64>().ok())?;
        Some((name, ms))
    })
}

/// The gateway's phases in a `Server-Timing` header: every metric but `source-*` and `mcr`.
pub fn phases(header: &str) -> impl Iterator<Item = (&str, f64)> {
    durations(header).filter(|(name, _)| !name.starts_with("source-") && *name != "mcr")
}

/// The gateway's `mcr;dur=` (its handler's start to the body ready), ms.
pub fn handler_ms(header: &str) -> Option<f64> {
    durations(header).find_map(|(name, ms)| (name == "mcr").then_some(ms))
}

/// The largest `source-*;dur=` in a `Server-Timing` header, ms (0 when none).
pub fn slowest_source(header: &str) -> f64 {
    durations(header)
        .filter(|(name, _)| name.starts_with("source-"))
        .fold(0.0, |max, (_, ms)| max.max(ms))
}

fn resources_in(body: &[u8]) -> u64 {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return 0;
    };
    v.get("entry")
        .and_then(serde_json::Value::as_array)
        .map_or(0, |entries| {
            entries
                .iter()
                .filter(|e| {
                    let t = e
                        .get("resource")
                        .and_then(|r| r.get("resourceType"))
                        .and_then(serde_json::Value::as_str);
                    !matches!(t, Some("Provenance" | "OperationOutcome") | None)
                })
                .count() as u64
        })
}

#[cfg(test)]
mod tests {
    use super::{handler_ms, phases, slowest_source};

    #[test]
    fn slowest_source_from_server_timing() {
        assert_eq!(
            slowest_source("source-gp;dur=51.5, source-acute;dur=70.25, mcr;dur=80"),
            70.25
        );
        assert_eq!(slowest_source("mcr;dur=3"), 0.0);
        assert_eq!(slowest_source(""), 0.0);
    }

    #[test]
    fn phases_from_server_timing() {
        let h = "source-gp;dur=51.5, access;dur=0.9, fetch;dur=52.25, audit;dur=0.4, mcr;dur=80";
        let got: Vec<_> = phases(h).collect();
        assert_eq!(got, [("access", 0.9), ("fetch", 52.25), ("audit", 0.4)]);
        assert_eq!(phases("mcr;dur=3, junk;x").count(), 0);
        assert_eq!(handler_ms(h), Some(80.0));
        assert_eq!(handler_ms("access;dur=1"), None);
    }
}
