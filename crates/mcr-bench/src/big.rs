//! The very large record: one patient whose record across the GP, the acute trust and the
//! community trust holds about 15,000 resources (`mcr_synth::VeryLarge`, scale 53), the
//! acute trust holding copies of part of the GP record. A fresh `mcr sources` and `mcr serve`
//! (HTTPS, a regional CA made for the run), one clinician opening the record again and again,
//! one view at a time: the FHIR `$everything` Bundle and the record page.
//!
//! Measured per view: latency to the body's last byte; the gateway's overhead (latency minus
//! the slowest source's own time, from `Server-Timing`, as every scenario counts it; the
//! record page is streamed, so carries no `Server-Timing`: its slowest source is read from
//! the gateway's `/metrics`, the growth of each source's `mcr_source_reported_duration_seconds`
//! sum over that one view: the sources' own time, as `Server-Timing` gives it); the gateway's
//! peak resident memory
//! (`VmHWM`, reset just before each view). What one view takes is the first view's peak over
//! the resident memory just before it, on a fresh gateway (the Bundle's on this system, the
//! page's on a second one started for it): later views reuse the heap the first grew. The
//! answer's size is what the sources send for one view, read by asking them as the gateway
//! does (every type, every page). The merge rate is scored from
//! the Bundle's Provenances against the generator's list of copies (`Region::copies`).

use crate::machine;
use crate::processes::{System, SystemOptions, Tuning};
use crate::stats::{round3, Percentiles};
use anyhow::Context;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// The targets of issue 18 for a 15,000-resource view.
pub const OVERHEAD_TARGET_MS: f64 = 150.0;
pub const MEMORY_TARGET_RATIO: f64 = 4.0;

#[derive(Debug, Clone)]
pub struct VeryLargeOptions {
    /// Times a typical record (75: about 15,000 resources).
    pub scale: usize,
    /// Views of each kind measured (after one of each to warm up).
    pub views: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct VeryLargeResult {
    pub scale: usize,
    /// Clinical resources each source holds for the patient (Patient resources apart).
    pub held_by_source: BTreeMap<String, usize>,
    pub resources_held: usize,
    /// Bytes the sources send for one view (every type, every page, as the gateway asks).
    pub answer_bytes: u64,
    /// The gateway's resident memory after start-up, before the first view, MiB.
    pub rss_before_mib: f64,
    pub bundle: ViewFigures,
    pub page: ViewFigures,
    /// Items in the view (each source's copy of an item counted), by source.
    pub shown_by_source: BTreeMap<String, usize>,
    pub merge: Vec<MergeRate>,
    /// The last `$everything` Bundle, as received (written beside the report).
    #[serde(skip)]
    pub bundle_body: bytes::Bytes,
}

/// One kind of view, measured `views` times.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ViewFigures {
    pub latency: Percentiles,
    pub slowest_source: Percentiles,
    pub overhead: Percentiles,
    /// The gateway's CPU time (user + system, `/proc/<pid>/stat`) from sending the request to
    /// the body's last byte, per view: its own work, whatever else the machine runs. In ticks
    /// of 10 ms, so read the mean.
    pub cpu: Percentiles,
    /// The gateway's own phases (`Server-Timing`), where it sends them.
    pub phases: BTreeMap<String, Percentiles>,
    pub body_bytes: u64,
    /// The highest `VmHWM` of any view, the warm-up's included (reset before each), MiB.
    pub peak_rss_mib: f64,
    /// The first view on a fresh gateway (its own system, just started): its peak resident
    /// memory (`VmHWM`) over its resident memory just before, MiB. Later views reuse the heap
    /// the first one grew, so only the first says what one view takes.
    pub first_view_mib: f64,
    pub errors: usize,
}

/// Of the items two sources both hold, how many the view shows once.
#[derive(Debug, Clone, Serialize)]
pub struct MergeRate {
    pub resource_type: String,
    pub copies: usize,
    pub shown_once: usize,
    /// Shown once, with the other copy of an entry the GP holds twice (the same drug over the
    /// same dates, say): the two GP entries cannot be told apart, and the view pairs the
    /// hospital's copy with the first.
    pub with_an_identical_entry: usize,
    /// Shown as two items (each with one source).
    pub shown_twice: usize,
    /// A side missing from the view altogether.
    pub missing: usize,
    /// The first few copies shown twice: the GP's item and the other source's, as the view
    /// names them.
    pub shown_twice_examples: Vec<(String, String)>,
}

impl MergeRate {
    pub fn rate(&self) -> f64 {
        if self.copies == 0 {
            0.0
        } else {
            (self.shown_once + self.with_an_identical_entry) as f64 / self.copies as f64
        }
    }
}

/// Start the system with one very large record, view it, score it, stop.
pub async fn run(
    sys: &SystemOptions,
    o: &VeryLargeOptions,
    client: &reqwest::Client,
) -> anyhow::Result<VeryLargeResult> {
    let region = mcr_synth::generate_with(
        &mcr_synth::SynthConfig {
            seed: sys.seed,
            patients: sys.patients,
            today: sys.today,
        },
        mcr_synth::VeryLarge {
            patients: 1,
            scale: o.scale,
        },
    );
    let nhs = region
        .samples
        .very_large
        .first()
        .context("the region has no very large record")?
        .clone();
    let tuning = Tuning {
        very_large: Some((1, o.scale)),
        tls: true,
        // Every page of every source, whatever it takes: this run measures the gateway's
        // work on the whole record, not a deadline.
        deadline_ms: Some(60_000),
        max_source_mib: Some(256),
        page_size: Some(1000),
    };
    let system = System::start_with(sys, &tuning, client)
        .await
        .context("starting the sources and the gateway with a very large record")?;
    let gw = system.gateway_client.clone();
    system.admit(nhs.as_str()).await?;
    system.record_permission(&gw, nhs.as_str()).await?;

    // What the sources hold and send for one view.
    let mut held_by_source = BTreeMap::new();
    let mut bases = HashMap::new();
    let mut answer_bytes = 0u64;
    for (id, url) in &system.source_urls {
        let Some(slice) = region.source(id) else {
            continue;
        };
        let Some(sp) = slice
            .patients()
            .iter()
            .find(|p| p.nhs_number.as_ref() == Some(&nhs))
        else {
            continue;
        };
        bases.insert(id.clone(), url.trim_end_matches('/').to_owned());
        held_by_source.insert(id.clone(), slice.resource_count(&sp.local_id));
        for rt in &slice.resource_types {
            let mut next = Some(if *rt == "Patient" {
                format!("{url}/Patient/{}", sp.local_id)
            } else {
                format!("{url}/{rt}?patient={}&_count=1000", sp.local_id)
            });
            while let Some(u) = next.take() {
                let body = client
                    .get(&u)
                    .send()
                    .await?
                    .error_for_status()?
                    .bytes()
                    .await?;
                answer_bytes += body.len() as u64;
                let page: serde_json::Value = serde_json::from_slice(&body)?;
                next = page["link"].as_array().and_then(|links| {
                    links
                        .iter()
                        .find(|l| l["relation"] == "next")
                        .and_then(|l| l["url"].as_str())
                        .map(str::to_owned)
                });
            }
        }
    }
    let resources_held = held_by_source.values().sum();
    let browser = sign_in(&system).await.context("signing in to the pages")?;

    let pid = system.gateway_pid;
    let bundle_url = format!("{}/fhir/Patient/{nhs}/$everything", system.gateway_url);
    let page_base = system.gateway_url.clone();
    let page_url = format!("{page_base}/app/patient/{nhs}");
    // Before any view: what the fresh gateway holds after start-up (the index sync).
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let rss_before_mib = machine::memory_mib(pid).map_or(0.0, |(_, rss)| rss);
    // One of each to warm up (connections, the sources' first generation of the record),
    // counted in the peak: the first views grow the heap that later ones reuse.
    let warm_bundle = view(&gw, &bundle_url, Some(&system.token), None, pid).await?;
    let warm_page = view(&browser.http, &page_url, None, Some(&browser.cookie), pid).await?;

    let mut bundles = Vec::new();
    let mut pages = Vec::new();
    // Each page view's slowest source, as the gateway saw it.
    let mut page_slowest = Vec::new();
    let mut last_bundle = bytes::Bytes::new();
    for _ in 0..o.views {
        let b = view(&gw, &bundle_url, Some(&system.token), None, pid).await?;
        if b.status == 200 {
            last_bundle = b.body.clone();
        }
        bundles.push(b);
        let before = system.metrics(&gw).await.context("reading /metrics")?;
        pages.push(view(&browser.http, &page_url, None, Some(&browser.cookie), pid).await?);
        let after = system.metrics(&gw).await.context("reading /metrics")?;
        page_slowest.push(slowest_between(&before, &after));
    }
    let mut bundle = figures(&bundles, None);
    let mut page = figures(&pages, Some(&page_slowest));
    for (f, warm) in [(&mut bundle, &warm_bundle), (&mut page, &warm_page)] {
        f.peak_rss_mib = f.peak_rss_mib.max(round3(warm.peak_mib));
    }
    bundle.first_view_mib = round3((warm_bundle.peak_mib - rss_before_mib).max(0.0));
    anyhow::ensure!(
        !last_bundle.is_empty(),
        "no view of the very large record succeeded: {:?}",
        bundles.iter().map(|b| b.status).collect::<Vec<_>>()
    );
    let (shown_by_source, merge) = score(&last_bundle, &region, &nhs, &bases)?;
    drop(system);
    // The page's first view, on a fresh system of its own.
    let system = System::start_with(sys, &tuning, client).await?;
    system.admit(nhs.as_str()).await?;
    system
        .record_permission(&system.gateway_client, nhs.as_str())
        .await?;
    let browser = sign_in(&system).await.context("signing in to the pages")?;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let before = machine::memory_mib(system.gateway_pid).map_or(0.0, |(_, rss)| rss);
    let first = view(
        &browser.http,
        &page_url.replace(&page_base, &system.gateway_url),
        None,
        Some(&browser.cookie),
        system.gateway_pid,
    )
    .await?;
    anyhow::ensure!(
        first.status == 200,
        "the record page: HTTP {}",
        first.status
    );
    page.first_view_mib = round3((first.peak_mib - before).max(0.0));
    drop(system);
    Ok(VeryLargeResult {
        scale: o.scale,
        held_by_source,
        resources_held,
        answer_bytes,
        rss_before_mib: round3(rss_before_mib),
        bundle,
        page,
        shown_by_source,
        merge,
        bundle_body: last_bundle,
    })
}

struct Viewed {
    status: u16,
    ms: f64,
    timing: String,
    body: bytes::Bytes,
    /// `VmHWM` over the view, MiB.
    peak_mib: f64,
    /// The gateway's CPU time over the view, ms.
    cpu_ms: f64,
}

/// One view, alone: the gateway's peak memory counted afresh from just before it.
async fn view(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    cookie: Option<&str>,
    pid: u32,
) -> anyhow::Result<Viewed> {
    machine::reset_peak_rss(pid);
    let cpu_before = machine::cpu_seconds(pid);
    let mut req = http.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let s = Instant::now();
    let r = req.send().await?;
    let status = r.status().as_u16();
    let timing = r
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = r.bytes().await?;
    let ms = s.elapsed().as_secs_f64() * 1000.0;
    let peak_mib = machine::memory_mib(pid).map_or(0.0, |(peak, _)| peak);
    let cpu_ms = match (cpu_before, machine::cpu_seconds(pid)) {
        (Some(before), Some(after)) => (after - before) * 1000.0,
        _ => 0.0,
    };
    Ok(Viewed {
        status,
        ms,
        timing,
        body,
        peak_mib,
        cpu_ms,
    })
}

/// The slowest source of the one view between two scrapes of the gateway's `/metrics`, ms:
/// the largest growth of a source's `mcr_source_reported_duration_seconds` sum.
fn slowest_between(before: &crate::processes::Metrics, after: &crate::processes::Metrics) -> f64 {
    after
        .samples
        .iter()
        .filter(|(k, _)| k.starts_with("mcr_source_reported_duration_seconds_sum{"))
        .map(|(k, v)| (v - before.get(k)) * 1000.0)
        .fold(0.0, f64::max)
}

/// `slowest`: each view's slowest source where the answer does not say it (the page), in
/// the order of `views`.
fn figures(views: &[Viewed], slowest: Option<&[f64]>) -> ViewFigures {
    let mut phases: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut slowests = Vec::new();
    let mut overheads = Vec::new();
    let mut ok = Vec::new();
    for (i, v) in views.iter().enumerate() {
        if v.status != 200 {
            continue;
        }
        ok.push(v);
        let s = match slowest {
            Some(each) => each.get(i).copied().unwrap_or(0.0),
            None => crate::load::slowest_source(&v.timing),
        };
        slowests.push(s);
        overheads.push((v.ms - s).max(0.0));
        for (name, ms) in crate::load::phases(&v.timing) {
            phases.entry(name.to_owned()).or_default().push(ms);
        }
    }
    let peak = ok.iter().map(|v| v.peak_mib).fold(0.0, f64::max);
    ViewFigures {
        latency: Percentiles::of(&ok.iter().map(|v| v.ms).collect::<Vec<_>>()),
        slowest_source: Percentiles::of(&slowests),
        overhead: Percentiles::of(&overheads),
        cpu: Percentiles::of(&ok.iter().map(|v| v.cpu_ms).collect::<Vec<_>>()),
        phases: phases
            .iter()
            .map(|(k, v)| (k.clone(), Percentiles::of(v)))
            .collect(),
        body_bytes: ok.last().map_or(0, |v| v.body.len() as u64),
        peak_rss_mib: round3(peak),
        first_view_mib: 0.0,
        errors: views.len() - ok.len(),
    }
}

type Scored = (BTreeMap<String, usize>, Vec<MergeRate>);

/// Read the Bundle's Provenances (each item's sources) and score the copies against them.
fn score(
    body: &[u8],
    region: &mcr_synth::Region,
    nhs: &mcr_domain::NhsNumber,
    bases: &HashMap<String, String>,
) -> anyhow::Result<Scored> {
    let bundle: serde_json::Value = serde_json::from_slice(body)?;
    // Each source's URL of an item → the item (its Provenance's position).
    let mut item_of: HashMap<String, usize> = HashMap::new();
    let mut shown_by_source: BTreeMap<String, usize> = BTreeMap::new();
    let entries = bundle["entry"]
        .as_array()
        .context("the Bundle has entries")?;
    for (n, e) in entries.iter().enumerate() {
        let r = &e["resource"];
        if r["resourceType"] != "Provenance" {
            continue;
        }
        for entity in r["entity"].as_array().into_iter().flatten() {
            let Some(url) = entity["what"]["reference"].as_str() else {
                continue;
            };
            if let Some((id, _)) = bases.iter().find(|(_, b)| url.starts_with(b.as_str())) {
                *shown_by_source.entry(id.clone()).or_default() += 1;
            }
            item_of.insert(url.to_owned(), n);
        }
    }
    // The GP's items of the copied types, but for id and meta, to tell an entry it holds twice.
    let mut gp_items: HashMap<String, serde_json::Value> = HashMap::new();
    if let (Some(gp), Some(sp)) = (
        region.source("gp"),
        region.source("gp").and_then(|g| {
            g.patients()
                .iter()
                .find(|p| p.nhs_number.as_ref() == Some(nhs))
        }),
    ) {
        for rt in [
            "Observation",
            "Condition",
            "MedicationStatement",
            "AllergyIntolerance",
            "DiagnosticReport",
            "MedicationRequest",
        ] {
            for mut r in gp.resources(&sp.local_id, rt) {
                let id = r["id"].as_str().unwrap_or_default().to_owned();
                if let Some(o) = r.as_object_mut() {
                    o.remove("id");
                    o.remove("meta");
                }
                gp_items.insert(id, r);
            }
        }
    }
    let mut rates: BTreeMap<&str, MergeRate> = BTreeMap::new();
    for c in region.copies(nhs) {
        let (Some(gp), Some(other)) = (bases.get("gp"), bases.get(c.source)) else {
            continue;
        };
        let gp_url = format!("{gp}/{}/{}", c.resource_type, c.gp_id);
        let other_url = format!("{other}/{}/{}", c.resource_type, c.id);
        let (a, b) = (item_of.get(&gp_url), item_of.get(&other_url));
        let rate = rates.entry(c.resource_type).or_insert_with(|| MergeRate {
            resource_type: c.resource_type.to_owned(),
            copies: 0,
            shown_once: 0,
            with_an_identical_entry: 0,
            shown_twice: 0,
            missing: 0,
            shown_twice_examples: Vec::new(),
        });
        rate.copies += 1;
        match (a, b) {
            (Some(a), Some(b)) if a == b => rate.shown_once += 1,
            (Some(_), Some(b)) if beside_identical(entries, *b, &c.gp_id, gp, &gp_items) => {
                rate.with_an_identical_entry += 1;
            }
            (Some(_), Some(_)) => {
                rate.shown_twice += 1;
                if rate.shown_twice_examples.len() < 5 {
                    rate.shown_twice_examples.push((gp_url, other_url));
                }
            }
            _ => rate.missing += 1,
        }
    }
    Ok((shown_by_source, rates.into_values().collect()))
}

/// Whether the item whose Provenance is at `at` also holds a GP entry (another than
/// `gp_id`) that is the same as `gp_id` but for its id and meta: the GP holds it twice.
fn beside_identical(
    entries: &[serde_json::Value],
    at: usize,
    gp_id: &str,
    gp_base: &str,
    gp_items: &HashMap<String, serde_json::Value>,
) -> bool {
    let Some(this) = gp_items.get(gp_id) else {
        return false;
    };
    entries[at]["resource"]["entity"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["what"]["reference"].as_str())
        .filter(|u| u.starts_with(gp_base))
        .filter_map(|u| u.rsplit('/').next())
        .any(|other| other != gp_id && gp_items.get(other) == Some(this))
}

struct Browser {
    http: reqwest::Client,
    cookie: String,
}

/// Sign in to the pages as the bench clinician, through the identity provider, as a browser.
async fn sign_in(system: &System) -> anyhow::Result<Browser> {
    let ca = std::fs::read(system.dir().join("pki").join("ca.pem"))?;
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(120))
        .build()?;
    let cookie_of = |r: &reqwest::Response, name: &str| -> anyhow::Result<String> {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(&format!("{name}=")))
            .and_then(|c| c.split(';').next())
            .map(str::to_owned)
            .with_context(|| format!("no {name} cookie"))
    };
    let location = |r: &reqwest::Response| -> anyhow::Result<String> {
        Ok(r.headers()
            .get("location")
            .context("a redirect without a Location")?
            .to_str()?
            .to_owned())
    };
    let start = http
        .post(format!("{}/signin", system.gateway_url))
        .send()
        .await?;
    anyhow::ensure!(start.status() == 303, "POST /signin: {}", start.status());
    let login = cookie_of(&start, "mcr_login")?;
    let authorize = reqwest::Url::parse(&location(&start)?)?;
    let mut form: Vec<(String, String)> = authorize
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    form.push(("user".into(), crate::processes::USER.into()));
    let mut post = authorize.clone();
    post.set_query(None);
    let back = http.post(post).form(&form).send().await?;
    anyhow::ensure!(back.status() == 303, "the provider: {}", back.status());
    let callback = http
        .get(location(&back)?)
        .header("cookie", &login)
        .send()
        .await?;
    anyhow::ensure!(
        callback.status() == 303,
        "the sign-in callback: {}",
        callback.status()
    );
    Ok(Browser {
        cookie: cookie_of(&callback, "mcr_session")?,
        http,
    })
}

/// The run as a section of `report.md`.
pub fn markdown(r: &VeryLargeResult) -> String {
    use std::fmt::Write as _;
    let mib = |b: u64| b as f64 / 1_048_576.0;
    let mut s = String::new();
    let held: Vec<String> = r
        .held_by_source
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let shown: Vec<String> = r
        .shown_by_source
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(
        s,
        "## One very large record ({} resources: {}), one view at a time, over HTTPS\n",
        r.resources_held,
        held.join(", ")
    );
    let _ = writeln!(
        s,
        "The sources send {:.1} MiB for one view (every type, every page). The gateway's resident memory before the first view: {:.1} MiB. Items in the Bundle, each source's copy counted: {}.\n",
        mib(r.answer_bytes),
        r.rss_before_mib,
        shown.join(", ")
    );
    let _ = writeln!(
        s,
        "| view | views | latency p50 / p95 ms | slowest source p50 ms | overhead p50 / p95 ms | gateway CPU ms a view, mean | answer MiB | peak RSS MiB | first view on a fresh gateway MiB | x the sources' answer |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, f) in [
        ("`$everything` Bundle", &r.bundle),
        (
            "record page (overhead: latency − its slowest source, from the gateway's `/metrics`)",
            &r.page,
        ),
    ] {
        let _ = writeln!(
            s,
            "| {name} | {}{} | {:.0} / {:.0} | {:.0} | {:.0} / {:.0} | {:.0} | {:.1} | {:.0} | {:.0} | {:.2} |",
            f.latency.count,
            if f.errors > 0 { format!(" ({} errors)", f.errors) } else { String::new() },
            f.latency.p50_ms,
            f.latency.p95_ms,
            f.slowest_source.p50_ms,
            f.overhead.p50_ms,
            f.overhead.p95_ms,
            f.cpu.mean_ms,
            mib(f.body_bytes),
            f.peak_rss_mib,
            f.first_view_mib,
            f.first_view_mib / mib(r.answer_bytes).max(f64::MIN_POSITIVE),
        );
    }
    if !r.bundle.phases.is_empty() {
        let phases: Vec<String> = r
            .bundle
            .phases
            .iter()
            .map(|(k, p)| format!("{k} {:.1}", p.p50_ms))
            .collect();
        let _ = writeln!(
            s,
            "\nThe Bundle's phases, p50 ms (`Server-Timing`): {}.\n",
            phases.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "Merge rate: of the items the GP and another source both hold (the generator's list), the share the view shows once with both sources.\n"
    );
    let _ = writeln!(
        s,
        "| resource type | held by two sources | shown once | shown once, beside the GP's identical other entry | shown twice | missing | merge rate |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
    for m in &r.merge {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.1}% |",
            m.resource_type,
            m.copies,
            m.shown_once,
            m.with_an_identical_entry,
            m.shown_twice,
            m.missing,
            100.0 * m.rate()
        );
    }
    s
}
