//! The report: `report.json` (everything), `report.md` (the short table), and
//! `view-latency.svg` (a histogram of view latencies per scenario, drawn by hand: no plotting
//! crate needed for a few rectangles).

use crate::big::{self, VeryLargeResult, MEMORY_TARGET_RATIO, OVERHEAD_TARGET_MS};
use crate::index::IndexResult;
use crate::load::ScenarioResult;
use crate::machine::Machine;
use serde::Serialize;
use std::fmt::Write;
use std::path::Path;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub command: String,
    pub machine: Machine,
    pub settings: serde_json::Value,
    /// `GET /fhir/Patient?identifier=…` one at a time (20, within the search rate limit).
    pub search: crate::stats::Percentiles,
    /// A small GET to a simulated source, one at a time: the cost of one HTTP exchange on
    /// loopback here, which every view's overhead pays twice.
    pub loopback: crate::Probe,
    /// 4 KiB written and flushed to disk beside the gateway's data directory: every view's
    /// audit commit holds one (the floor's stand-in too).
    pub flush: crate::Probe,
    /// The at-work clinicians against the floor stand-in, when run.
    pub floor: Option<crate::Floor>,
    /// The gateway's peak resident memory at start-up (index sync), before any view, MiB.
    pub startup_peak_rss_mib: f64,
    pub scenarios: Vec<ScenarioResult>,
    /// One very large record viewed alone (`crate::big`), when run.
    pub very_large: Option<VeryLargeResult>,
    pub index: Vec<IndexResult>,
    /// The targets of issue 7 and whether this run met them.
    pub targets: Vec<Target>,
    pub total_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub what: String,
    pub target: String,
    pub measured: String,
    pub met: bool,
}

impl Report {
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(self)?)?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        std::fs::write(dir.join("view-latency.svg"), self.svg())?;
        Ok(())
    }

    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut s = String::new();
        let _ = writeln!(s, "# My Care Record benchmark\n");
        let _ = writeln!(s, "`{}`  ", self.command);
        let _ = writeln!(
            s,
            "Machine: {} CPUs ({}), {} MiB memory, Linux {}. Whole run: {:.0} s.\n",
            m.cpus, m.cpu_model, m.memory_mib, m.kernel, self.total_seconds
        );
        let _ = writeln!(s, "Settings: `{}`\n", self.settings);
        let _ = writeln!(
            s,
            "Patient search by NHS number over HTTP: p50 {:.2} ms, p99 {:.2} ms ({} searches, one at a time).\n",
            self.search.p50_ms, self.search.p99_ms, self.search.count
        );
        let _ = writeln!(
            s,
            "One HTTP exchange on loopback (a small GET to a simulated source, one at a time), p50 / p99: back to back {:.2} / {:.2} ms; after 30 ms idle {:.2} / {:.2} ms. Every view's overhead includes two, after the sources' wait: clinician and gateway, gateway and its slowest source.\n",
            self.loopback.back_to_back.p50_ms, self.loopback.back_to_back.p99_ms,
            self.loopback.after_idle.p50_ms, self.loopback.after_idle.p99_ms,
        );
        let _ = writeln!(
            s,
            "One flush to disk (4 KiB written and `fdatasync`ed beside the gateway's data directory, one at a time), p50 / p99: back to back {:.2} / {:.2} ms; after 30 ms idle {:.2} / {:.2} ms. Every view's audit commit holds one, after the sources' wait.\n",
            self.flush.back_to_back.p50_ms, self.flush.back_to_back.p99_ms,
            self.flush.after_idle.p50_ms, self.flush.after_idle.p99_ms,
        );
        if let Some(f) = &self.floor {
            let r = &f.result;
            let asks: Vec<String> = f
                .config
                .sources
                .iter()
                .map(|s| format!("{} {}", s.id, s.requests_per_view))
                .collect();
            let _ = writeln!(
                s,
                "Floor: the clinicians-at-work run against a stand-in gateway that only asks the sources as often as the gateway does ({}), reads the answers, flushes one line to disk and answers {:.0} KiB: overhead p50 {:.2} ms, p99 {:.2} ms ({:.0} views/s, {} errors). What any gateway of this design costs on this machine; the gateway's own work is its overhead minus this.\n",
                asks.join(", "),
                f.config.body_bytes as f64 / 1024.0,
                r.gateway_overhead.p50_ms,
                r.gateway_overhead.p99_ms,
                r.views_per_second,
                r.error_count,
            );
        }
        let _ = writeln!(
            s,
            "Gateway peak memory at start-up (index synced from the sources, before any view): {:.0} MiB.\n",
            self.startup_peak_rss_mib
        );
        let _ = writeln!(
            s,
            "## Record views (sources and gateway as separate processes on loopback)\n"
        );
        let _ = writeln!(
            s,
            "| scenario | clinicians | views/s | errors | p50 ms | p95 ms | p99 ms | max ms | overhead p50 ms | overhead p99 ms | resources/view | gateway CPU (cores) | sources CPU (cores) | gateway peak RSS MiB | /metrics agrees |"
        );
        let _ = writeln!(
            s,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        for r in &self.scenarios {
            let _ = writeln!(
                s,
                "| {} | {} | {:.1} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.0} | {} |",
                r.name,
                r.clinicians,
                r.views_per_second,
                r.error_count,
                r.view_latency.p50_ms,
                r.view_latency.p95_ms,
                r.view_latency.p99_ms,
                r.view_latency.max_ms,
                r.gateway_overhead.p50_ms,
                r.gateway_overhead.p99_ms,
                r.resources_per_view,
                r.gateway_cpu_cores,
                r.sources_cpu_cores,
                r.gateway_peak_rss_mib,
                if r.gateway_metrics.agrees_with_client { "yes" } else { "NO" },
            );
        }
        let _ = writeln!(
            s,
            "\n### Where the gateway's time goes (its `Server-Timing`, p50 / p99 ms)\n"
        );
        let _ = writeln!(
            s,
            "| scenario | clinicians | access | fetch after slowest source | merge | audit | encode | outside the handler | of which request |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &self.scenarios {
            let p = |name: &str| {
                r.phases.get(name).map_or_else(
                    || "-".to_owned(),
                    |p| format!("{:.2} / {:.2}", p.p50_ms, p.p99_ms),
                )
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.name,
                r.clinicians,
                p("access"),
                p("fetch after slowest source"),
                p("merge"),
                p("audit"),
                p("encode"),
                p("outside the handler"),
                p("request"),
            );
        }
        let failures: Vec<String> = self
            .scenarios
            .iter()
            .filter(|r| !r.gateway_metrics.source_failures.is_empty())
            .map(|r| format!("{}: {:?}", r.name, r.gateway_metrics.source_failures))
            .collect();
        if !failures.is_empty() {
            let _ = writeln!(
                s,
                "\nSource failures the gateway counted (`mcr_source_failures_total`): {}",
                failures.join("; ")
            );
        }
        if !self.index.is_empty() {
            let _ = writeln!(s, "\n## Patient index\n");
            let _ = writeln!(s, "| backend | patients | build s | patients/s | on disk MiB | NHS lookup p50 / p99 ms | demographic search p50 / p99 ms | family+given only p50 / p99 ms |");
            let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
            for i in &self.index {
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.1} | {:.0} | {:.0} | {:.3} / {:.3} | {:.3} / {:.3} | {:.3} / {:.3} |",
                    i.backend,
                    i.patients,
                    i.build_seconds,
                    i.patients_per_second,
                    i.storage_mib,
                    i.nhs_lookup.p50_ms,
                    i.nhs_lookup.p99_ms,
                    i.demographic_search.p50_ms,
                    i.demographic_search.p99_ms,
                    i.broad_search.p50_ms,
                    i.broad_search.p99_ms,
                );
            }
        }
        if let Some(v) = &self.very_large {
            let _ = writeln!(s, "\n{}", big::markdown(v));
        }
        if !self.targets.is_empty() {
            let _ = writeln!(
                s,
                "\n## Targets\n\n| what | target | measured | met |\n|---|---|---|---|"
            );
            for t in &self.targets {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} |",
                    t.what,
                    t.target,
                    t.measured,
                    if t.met { "yes" } else { "**no**" }
                );
            }
        }
        s
    }

    /// One histogram panel per scenario with views.
    pub fn svg(&self) -> String {
        const W: f64 = 760.0;
        const PANEL: f64 = 150.0;
        const LEFT: f64 = 60.0;
        const BINS: usize = 60;
        let panels: Vec<&ScenarioResult> = self
            .scenarios
            .iter()
            .filter(|r| !r.latencies_ms.is_empty())
            .collect();
        let h = PANEL * panels.len().max(1) as f64 + 20.0;
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        );
        for (n, r) in panels.iter().enumerate() {
            let top = n as f64 * PANEL + 10.0;
            let hi = (r.view_latency.p99_ms * 1.2)
                .max(r.view_latency.p50_ms * 2.0)
                .max(1.0);
            let width = hi / BINS as f64;
            let mut bins = [0usize; BINS];
            let mut over = 0usize;
            for &l in &r.latencies_ms {
                let b = (l / width) as usize;
                if b < BINS {
                    bins[b] += 1;
                } else {
                    over += 1;
                }
            }
            let most = bins.iter().copied().max().unwrap_or(1).max(1) as f64;
            let plot_w = W - LEFT - 20.0;
            let plot_h = PANEL - 50.0;
            let base = top + 20.0 + plot_h;
            let _ = writeln!(
                s,
                "<text x=\"{LEFT}\" y=\"{}\" font-weight=\"bold\">{} — {} clinicians: {} views, p50 {:.1} ms, p99 {:.1} ms{}</text>",
                top + 12.0,
                xml(&r.name),
                r.clinicians,
                r.views,
                r.view_latency.p50_ms,
                r.view_latency.p99_ms,
                if over > 0 { format!(", {over} beyond the axis (max {:.0} ms)", r.view_latency.max_ms) } else { String::new() }
            );
            for (i, &c) in bins.iter().enumerate() {
                if c == 0 {
                    continue;
                }
                let bh = c as f64 / most * plot_h;
                let _ = writeln!(
                    s,
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#005eb8\"/>",
                    LEFT + i as f64 * plot_w / BINS as f64,
                    base - bh,
                    (plot_w / BINS as f64 - 1.0).max(1.0),
                    bh
                );
            }
            let _ = writeln!(
                s,
                "<line x1=\"{LEFT}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"black\"/>",
                LEFT + plot_w
            );
            for t in 0..=5 {
                let x = LEFT + plot_w * f64::from(t) / 5.0;
                let _ = writeln!(
                    s,
                    "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.0} ms</text>",
                    base + 14.0,
                    hi * f64::from(t) / 5.0
                );
            }
            let _ = writeln!(
                s,
                "<text x=\"5\" y=\"{:.1}\">{} max</text>",
                top + 25.0,
                most as usize
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The very large record's targets for this run ([`crate::big`]).
pub fn very_large_targets(r: &VeryLargeResult) -> Vec<Target> {
    let answer_mib = r.answer_bytes as f64 / 1_048_576.0;
    let mut t = Vec::new();
    for (what, f) in [("`$everything`", &r.bundle), ("record page", &r.page)] {
        t.push(Target {
            what: format!("{} resources, {what}: gateway overhead", r.resources_held),
            target: format!("p50 and p95 < {OVERHEAD_TARGET_MS} ms"),
            measured: format!(
                "p50 {:.0} ms, p95 {:.0} ms",
                f.overhead.p50_ms, f.overhead.p95_ms
            ),
            met: f.errors == 0 && f.overhead.count > 0 && f.overhead.p95_ms < OVERHEAD_TARGET_MS,
        });
        t.push(Target {
            what: format!(
                "{} resources, {what}: gateway peak memory",
                r.resources_held
            ),
            target: format!("< {MEMORY_TARGET_RATIO}x the sources' answer ({answer_mib:.1} MiB)"),
            measured: format!(
                "{:.1} MiB over the resident memory before it, the first view on a fresh gateway ({:.2}x)",
                f.first_view_mib,
                f.first_view_mib / answer_mib.max(f64::MIN_POSITIVE)
            ),
            met: f.first_view_mib < MEMORY_TARGET_RATIO * answer_mib,
        });
    }
    t
}
