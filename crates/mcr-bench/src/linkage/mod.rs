//! The linkage benchmark: how well the patient index links records, through the product's
//! real path (`Indexer::sync` over two FHIR sources on loopback HTTP into a fresh SQLite
//! store, links read back from the store), and Splink (PyPI, pinned) on the same data in the
//! same run. Precision, recall, false links by kind of record, and the matching pass's speed.
//!
//! Not part of the test suite: its own command (`mcr-linkage`), documented in
//! docs/PERFORMANCE.md.

pub mod data;

use anyhow::Context;
use axum::extract::Query;
use axum::routing::get;
use axum::Json;
use data::{Dataset, Rec};
use mcr_domain::{FixedClock, OdsCode, OrgKind, Organisation, SourceId};
use mcr_federation::{Federation, FederationConfig, HttpSource, Source, SourceConfig};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

/// How one linker did on one data set.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Score {
    pub linker: String,
    pub links: usize,
    pub true_links: usize,
    pub false_links: usize,
    pub matches_in_truth: usize,
    pub precision: f64,
    pub recall: f64,
    /// Recall among people who moved house (the generator's `moved*` kinds).
    pub moved_recall: Option<f64>,
    pub false_links_by_kind: BTreeMap<String, usize>,
    pub missed_by_kind: BTreeMap<String, usize>,
    /// Records sent to review (this index only).
    pub review: Option<usize>,
    /// Recall counting, beside the links, the true pairs a person is shown in review (this
    /// index only): what records staff can reach.
    pub recall_with_review: Option<f64>,
    pub note: String,
}

/// The index's run on one data set, with its timings.
#[derive(Debug, Clone, Serialize)]
pub struct IndexRun {
    pub score: Score,
    pub sync_seconds: f64,
    pub matching_records: usize,
    pub matching_index_patients: u64,
    pub matching_comparisons: u64,
    pub matching_seconds: f64,
    /// Of which reading the index and comparing (the rest is writing the outcome).
    pub matching_compare_seconds: f64,
    pub matching_records_per_second: f64,
    /// Of the pass, estimating the weights (when estimated).
    pub matching_estimate_seconds: f64,
    /// The weights the pass used.
    pub weights: mcr_index::WeightsUsed,
}

/// Score links (`b` id to the `a` id it was linked to) against the truth.
pub fn score(ds: &Dataset, linker: &str, linked: &HashMap<String, String>) -> Score {
    let mut s = Score {
        linker: linker.into(),
        matches_in_truth: ds.truth.len(),
        ..Score::default()
    };
    let (mut moved, mut moved_found) = (0usize, 0usize);
    for r in &ds.b {
        let kind = ds.kind.get(&r.id).copied().unwrap_or("unknown");
        let truth = ds.truth.get(&r.id);
        let got = linked.get(&r.id);
        if kind.starts_with("moved") || kind == "married-and-moved" {
            moved += 1;
            moved_found += usize::from(got.is_some() && got == truth);
        }
        match (got, truth) {
            (Some(g), Some(t)) if g == t => s.true_links += 1,
            (Some(_), _) => {
                s.false_links += 1;
                *s.false_links_by_kind.entry(kind.into()).or_default() += 1;
            }
            (None, Some(_)) => *s.missed_by_kind.entry(kind.into()).or_default() += 1,
            (None, None) => {}
        }
        if got.is_some() && truth.is_some() && got != truth {
            *s.missed_by_kind.entry(kind.into()).or_default() += 1;
        }
    }
    s.links = s.true_links + s.false_links;
    s.precision = if s.links == 0 {
        1.0
    } else {
        s.true_links as f64 / s.links as f64
    };
    s.recall = if s.matches_in_truth == 0 {
        1.0
    } else {
        s.true_links as f64 / s.matches_in_truth as f64
    };
    s.moved_recall = (moved > 0).then(|| moved_found as f64 / moved as f64);
    s
}

#[derive(Debug, serde::Deserialize)]
struct PageQuery {
    #[serde(default)]
    page: usize,
}

const PAGE: usize = 1_000;

/// Serve `records` as FHIR `Patient`s, a page of 1,000 at a time with `next` links.
async fn serve(records: Arc<Vec<Rec>>) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/Patient",
        get(move |Query(q): Query<PageQuery>| {
            let records = Arc::clone(&records);
            async move {
                let from = q.page * PAGE;
                let entry: Vec<serde_json::Value> = records
                    .iter()
                    .skip(from)
                    .take(PAGE)
                    .map(|r| serde_json::json!({"resource": data::patient(r)}))
                    .collect();
                let mut bundle = serde_json::json!({"resourceType": "Bundle", "type": "searchset",
                    "total": records.len(), "entry": entry});
                if from + PAGE < records.len() {
                    bundle["link"] = serde_json::json!([{"relation": "next",
                        "url": format!("http://{addr}/Patient?_count={PAGE}&page={}", q.page + 1)}]);
                }
                Json(bundle)
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("linkage source stopped: {e}");
        }
    });
    Ok(format!("http://{addr}"))
}

fn source(id: &str, code: &str, kind: OrgKind, base: &str) -> anyhow::Result<Arc<dyn Source>> {
    Ok(Arc::new(HttpSource::new(
        SourceConfig {
            id: SourceId::parse(id)?,
            organisation: Organisation {
                code: OdsCode::parse(code)?,
                name: code.into(),
                kind,
                member: true,
                suspended: false,
            },
            base_url: base.parse()?,
            resource_types: vec!["Patient".into()],
            batch: false,
            kind: mcr_federation::SourceKind::FhirR4,
            gp_connect: None,
            deadline_ms: None,
            feed_timeout_secs: None,
            patient_search: Default::default(),
            identifier_search: Default::default(),
        },
        reqwest::Client::new(),
        FederationConfig::default(),
    )))
}

/// Run the index on a data set: `a` as a GP system, `b` as a hospital, a fresh SQLite store
/// under `dir`, matching with `weights`; read the links back and score them.
pub async fn run_index(
    ds: &Dataset,
    dir: &std::path::Path,
    weights: mcr_index::matching::WeightsMode,
) -> anyhow::Result<IndexRun> {
    let gp = serve(Arc::new(ds.a.clone())).await?;
    let acute = serve(Arc::new(ds.b.clone())).await?;
    let url = format!("sqlite://{}", dir.join("linkage.db").display());
    let store = mcr_store::connect_and_migrate(&url)
        .await
        .context("opening the benchmark store")?;
    let fed = Arc::new(Federation::new(
        vec![
            source("gp", "E82001", OrgKind::GpPractice, &gp)?,
            source("acute", "RWH", OrgKind::AcuteTrust, &acute)?,
        ],
        FederationConfig {
            // A region-sized feed on a shared machine may take longer than the default.
            sync_timeout: std::time::Duration::from_secs(3_600),
            ..FederationConfig::default()
        },
    ));
    let clock = Arc::new(FixedClock::new("2026-11-24T09:00:00Z".parse()?));
    let indexer =
        mcr_index::Indexer::new(fed, Arc::clone(&store), clock).with_weights_mode(weights);
    let started = Instant::now();
    let report = indexer.sync(true).await.context("index sync")?;
    let sync_seconds = started.elapsed().as_secs_f64();
    for s in &report.sources {
        anyhow::ensure!(
            s.failed.is_none(),
            "source {} failed: {:?}",
            s.source,
            s.failed
        );
    }
    let nhs_to_a: HashMap<String, String> =
        ds.a.iter()
            .filter_map(|r| Some((r.nhs.as_ref()?.as_str().to_owned(), r.id.clone())))
            .collect();
    let acute_id = SourceId::parse("acute")?;
    let mut linked = HashMap::new();
    for r in &ds.b {
        if let Some(l) = store.link_for_local(&acute_id, &r.id).await? {
            let a = nhs_to_a
                .get(l.nhs_number.as_str())
                .cloned()
                .unwrap_or_else(|| format!("unknown:{}", l.nhs_number));
            linked.insert(r.id.clone(), a);
        }
    }
    if std::env::var_os("MCR_LINKAGE_SHOW_MISSED").is_some() {
        // Public or generated data only: show what was missed, to see why.
        let a_by_id: HashMap<&str, &Rec> = ds.a.iter().map(|r| (r.id.as_str(), r)).collect();
        for r in &ds.b {
            let (Some(got), truth) = (linked.get(&r.id), ds.truth.get(&r.id)) else {
                continue;
            };
            if Some(got) != truth {
                eprintln!("false link {r:?}\n  to {:?}", a_by_id.get(got.as_str()));
            }
        }
        for r in
            ds.b.iter()
                .filter(|r| ds.truth.contains_key(&r.id) && !linked.contains_key(&r.id))
                .take(40)
        {
            let t = ds.truth.get(&r.id).and_then(|t| a_by_id.get(t.as_str()));
            let c = store.match_candidates_of(&acute_id, &r.id).await?;
            eprintln!(
                "missed {r:?}\n  truth {t:?}\n  candidates {:?}",
                c.iter()
                    .map(|c| (c.score, c.guard.clone(), c.agreement.clone()))
                    .collect::<Vec<_>>()
            );
        }
    }
    if std::env::var_os("MCR_LINKAGE_SHOW_MISSED").is_some() {
        for (n, why) in missed_vectors(ds, &linked, &*store).await? {
            eprintln!("missed {n:5}: {why}");
        }
    }
    if let Some(path) = std::env::var_os("MCR_LINKAGE_WRITE_LINKS") {
        // Every link (`b id,a id`, sorted), to show two builds link the same records.
        let mut rows: Vec<String> = linked.iter().map(|(b, a)| format!("{b},{a}")).collect();
        rows.sort();
        rows.push(String::new());
        std::fs::write(&path, rows.join("\n"))
            .with_context(|| format!("writing the links to {}", path.to_string_lossy()))?;
    }
    let mut s = score(ds, "this index", &linked);
    let mut in_review = 0usize;
    for r in ds.b.iter().filter(|r| !linked.contains_key(&r.id)) {
        let Some(truth) = ds.truth.get(&r.id) else {
            continue;
        };
        let shown = store.match_candidates_of(&acute_id, &r.id).await?;
        if shown
            .iter()
            .any(|c| nhs_to_a.get(c.nhs_number.as_str()) == Some(truth))
        {
            in_review += 1;
        }
    }
    s.recall_with_review = Some(if s.matches_in_truth == 0 {
        1.0
    } else {
        (s.true_links + in_review) as f64 / s.matches_in_truth as f64
    });
    let acute_report = report
        .sources
        .iter()
        .find(|r| r.source == "acute")
        .context("acute reported")?;
    s.review =
        Some(acute_report.review + acute_report.ambiguous + acute_report.possible_wrong_nhs_number);
    // Links to local identities: a record linked to a local identity made from another
    // person's record is a false link too (counted here, beside the table's false links).
    let mut homes: HashMap<mcr_domain::LocalPersonId, Vec<String>> = HashMap::new();
    for ((source, local_id), person) in store.local_link_keys().await? {
        if source == acute_id {
            homes.entry(person).or_default().push(local_id);
        }
    }
    let mut false_local = 0usize;
    for (person, members) in &homes {
        let Some(l) = store.local_person(*person).await? else {
            continue;
        };
        let origin = ds.who.get(&l.origin.1);
        false_local += members.iter().filter(|m| ds.who.get(*m) != origin).count();
    }
    s.note = format!(
        "rejected {}, unmatched {} (local identities made {}, linked to one {}, of which \
         another person's {}), by NHS number {}, by demographics {}",
        acute_report.rejected,
        acute_report.unmatched,
        acute_report.local_identities,
        acute_report.linked_to_local_identity,
        false_local,
        acute_report.linked_by_nhs_number,
        acute_report.linked_by_demographics
    );
    let m = report.matching;
    s.linker = match &m.weights {
        mcr_index::WeightsUsed::Configured => "this index".into(),
        mcr_index::WeightsUsed::Estimated(_) => "this index, estimated weights".into(),
        mcr_index::WeightsUsed::ConfiguredNotEstimated { .. } => {
            "this index (weights not estimated: configured)".into()
        }
    };
    let matching_seconds = m.millis as f64 / 1000.0;
    Ok(IndexRun {
        score: s,
        sync_seconds,
        matching_records: m.records,
        matching_index_patients: m.index_patients,
        matching_comparisons: m.comparisons,
        matching_seconds,
        matching_compare_seconds: m.compare_millis as f64 / 1000.0,
        matching_estimate_seconds: m.estimate_millis as f64 / 1000.0,
        matching_records_per_second: if matching_seconds > 0.0 {
            m.records as f64 / matching_seconds
        } else {
            0.0
        },
        weights: m.weights,
    })
}

/// Why the true pairs the index did not link were missed, most common first: each pair's
/// comparison vector under the configured weights, its safety rule, and whether the pair waits
/// in review; or that a record was never compared (no valid birth date). Public or generated
/// data only.
async fn missed_vectors(
    ds: &Dataset,
    linked: &HashMap<String, String>,
    store: &dyn mcr_store::Store,
) -> anyhow::Result<Vec<(usize, String)>> {
    use mcr_index::matching::{compare, Prepared, Weights};
    let prepared = |r: &Rec| {
        Prepared::new(
            &r.family,
            &r.given,
            chrono::NaiveDate::parse_from_str(&r.dob, "%Y-%m-%d").ok(),
            Some(r.sex.as_str()).filter(|s| !s.is_empty()),
            Some(r.postcode.as_str()).filter(|p| !p.is_empty()),
            None,
        )
        .with_address(Some(r.address.as_str()))
    };
    let a_by_id: HashMap<&str, &Rec> = ds.a.iter().map(|r| (r.id.as_str(), r)).collect();
    let nhs_of: HashMap<&str, &str> =
        ds.a.iter()
            .filter_map(|r| Some((r.id.as_str(), r.nhs.as_ref()?.as_str())))
            .collect();
    let acute_id = SourceId::parse("acute")?;
    let w = Weights::default();
    let mut why: HashMap<String, usize> = HashMap::new();
    for r in &ds.b {
        let Some(t) = ds.truth.get(&r.id).and_then(|t| a_by_id.get(t.as_str())) else {
            continue;
        };
        if linked.get(&r.id) == Some(&t.id) {
            continue;
        }
        let reason = if r.dob.is_empty() {
            "rejected: the hospital record has no valid birth date".to_owned()
        } else if t.dob.is_empty() {
            "not in the index: the GP record has no valid birth date".to_owned()
        } else {
            let s = compare(&prepared(r), &prepared(t), &w);
            let shown = store.match_candidates_of(&acute_id, &r.id).await?;
            let in_review = shown
                .iter()
                .any(|c| Some(c.nhs_number.as_str()) == nhs_of.get(t.id.as_str()).copied());
            let outcome = match (linked.contains_key(&r.id), in_review) {
                (true, _) => "linked to another",
                (false, true) => "in review",
                (false, false) => "not offered",
            };
            format!(
                "{outcome}: {} guard={} weight {:.1}",
                s.agreement,
                s.guard.map_or("none", |g| g.code()),
                s.weight
            )
        };
        *why.entry(format!(
            "{} {reason}",
            ds.kind.get(&r.id).copied().unwrap_or("?")
        ))
        .or_default() += 1;
    }
    let mut out: Vec<(usize, String)> = why.into_iter().map(|(k, n)| (n, k)).collect();
    out.sort_by(|x, y| y.0.cmp(&x.0).then_with(|| x.1.cmp(&y.1)));
    Ok(out)
}

/// Splink's predictions: `(b id, a id, match probability)`, read from the script's output.
fn read_predictions(path: &std::path::Path) -> anyhow::Result<Vec<(String, String, f64)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading Splink's predictions {}", path.display()))?;
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        anyhow::ensure!(
            f.len() == 3,
            "Splink output: expected b_id,a_id,probability"
        );
        out.push((f[0].to_owned(), f[1].to_owned(), f[2].parse()?));
    }
    Ok(out)
}

/// Run Splink on the same data (the script `linkage/splink_link.py` beside this crate, with
/// the given Python, which must have `splink==5.0.0`), take each hospital record's best
/// candidate, and report Splink at the threshold with the highest recall whose precision is
/// at least `precision` (the index's own, so the two are compared at the same precision), and
/// at its own 0.99 probability.
pub fn run_splink(
    ds: &Dataset,
    dir: &std::path::Path,
    python: &std::path::Path,
    precision: f64,
) -> anyhow::Result<Vec<Score>> {
    let (a, b, out) = (dir.join("a.csv"), dir.join("b.csv"), dir.join("splink.csv"));
    data::write_csv(&ds.a, &a)?;
    data::write_csv(&ds.b, &b)?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("linkage/splink_link.py");
    let use_sex = ds.a.iter().any(|r| !r.sex.is_empty());
    let status = std::process::Command::new(python)
        .arg(&script)
        .arg(&a)
        .arg(&b)
        .arg(&out)
        .arg(if use_sex { "sex" } else { "no-sex" })
        .status()
        .with_context(|| {
            format!(
                "running {} (create it with: python3 -m venv target/linkage-venv && target/linkage-venv/bin/pip install splink==5.0.0 recordlinkage==0.16)",
                python.display()
            )
        })?;
    anyhow::ensure!(status.success(), "Splink failed: {status}");
    let mut best: HashMap<String, (String, f64)> = HashMap::new();
    for (b_id, a_id, p) in read_predictions(&out)? {
        let e = best.entry(b_id).or_insert((a_id.clone(), p));
        if p > e.1 {
            *e = (a_id, p);
        }
    }
    let at = |threshold: f64| -> HashMap<String, String> {
        best.iter()
            .filter(|(_, (_, p))| *p >= threshold)
            .map(|(b, (a, _))| (b.clone(), a.clone()))
            .collect()
    };
    let mut thresholds: Vec<f64> = best.values().map(|(_, p)| *p).collect();
    thresholds.sort_by(|x, y| y.total_cmp(x));
    thresholds.dedup();
    // Walk down from the most confident: the lowest threshold still at the precision wanted.
    let mut chosen: Option<(f64, Score)> = None;
    let step = (thresholds.len() / 400).max(1);
    for t in thresholds.iter().step_by(step) {
        let s = score(ds, "Splink 5.0.0", &at(*t));
        if s.precision >= precision && chosen.as_ref().is_none_or(|(_, c)| s.recall > c.recall) {
            chosen = Some((*t, s));
        }
    }
    let mut out = Vec::new();
    if let Some((t, mut s)) = chosen {
        s.note = format!("best recall at precision >= {precision:.4} (probability >= {t:.4})");
        out.push(s);
    }
    let mut default = score(ds, "Splink 5.0.0", &at(0.99));
    default.note = "match probability >= 0.99".into();
    out.push(default);
    Ok(out)
}
