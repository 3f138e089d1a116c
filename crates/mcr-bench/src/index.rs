//! The patient index at regional size: build it from `mcr_synth::demographics`, then time the
//! two lookups every view and search starts with, through the same `IndexStore` calls the
//! gateway makes.

use crate::stats::{round3, Percentiles};
use anyhow::Context;
use mcr_store::{DemographicQuery, IndexedPatient, Store};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct IndexResult {
    pub backend: String,
    pub patients: usize,
    pub build_seconds: f64,
    pub patients_per_second: f64,
    /// Size of the index on disk (SQLite: database + WAL files; PostgreSQL: the database).
    pub storage_mib: f64,
    /// Lookup by NHS number (`IndexStore::patient`), one at a time.
    pub nhs_lookup: Percentiles,
    /// Family + given + birth date + postcode, as a clinician searches (`search_patients`).
    pub demographic_search: Percentiles,
    /// Family + given only, no date (the broadest search the API accepts), first 20 matches.
    pub broad_search: Percentiles,
}

const BATCH: usize = 20_000;

/// A synthetic person as the index holds them, updated `at`.
pub fn indexed(p: &mcr_synth::Person, at: chrono::DateTime<chrono::Utc>) -> IndexedPatient {
    IndexedPatient {
        nhs_number: p.nhs_number.clone(),
        family: p.family.clone(),
        given: p.given.join(" "),
        birth_date: p.birth_date,
        gender: Some(p.gender.to_owned()),
        postcode: Some(p.postcode.clone()),
        address: None,
        gp_practice: Some(p.gp_practice.to_string()),
        updated_at: at,
    }
}

/// Build an index of `people` in the store at `url`, then time lookups.
pub async fn bench_index(
    url: &str,
    people: &[mcr_synth::Person],
    today: chrono::NaiveDate,
    lookups: usize,
    storage: &Storage,
) -> anyhow::Result<IndexResult> {
    let store: Arc<dyn Store> = mcr_store::connect_and_migrate(url)
        .await
        .context("opening the index store")?;
    let at = today.and_hms_opt(0, 0, 0).context("midnight")?.and_utc();
    let started = Instant::now();
    for chunk in people.chunks(BATCH) {
        let batch: Vec<IndexedPatient> = chunk.iter().map(|p| indexed(p, at)).collect();
        store
            .upsert_patients(&batch)
            .await
            .context("upserting patients")?;
    }
    let build_seconds = started.elapsed().as_secs_f64();
    let count = store.patient_count().await?;
    anyhow::ensure!(
        count as usize >= people.len(),
        "index holds {count} patients, expected {}",
        people.len()
    );

    let timed = time_lookups(store.as_ref(), people, lookups).await?;
    Ok(IndexResult {
        backend: store.backend().to_string(),
        patients: people.len(),
        build_seconds: round3(build_seconds),
        patients_per_second: round3(people.len() as f64 / build_seconds),
        storage_mib: round3(storage.size_mib().await),
        nhs_lookup: timed.nhs_lookup,
        demographic_search: timed.demographic_search,
        broad_search: timed.broad_search,
    })
}

/// The index's lookups, timed one at a time, in ms.
#[derive(Debug, Clone, Serialize)]
pub struct Lookups {
    /// By NHS number (`IndexStore::patient`).
    pub nhs_lookup: Percentiles,
    /// Family + given + birth date + postcode, as a clinician searches.
    pub demographic_search: Percentiles,
    /// Family + given only, first 20 matches.
    pub broad_search: Percentiles,
}

/// Time `lookups` of each kind for people drawn from `people` (seeded, so runs compare): each
/// must find its person, or the figure would time a miss.
pub async fn time_lookups(
    store: &dyn Store,
    people: &[mcr_synth::Person],
    lookups: usize,
) -> anyhow::Result<Lookups> {
    anyhow::ensure!(!people.is_empty(), "no people to look up");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut nhs = Vec::with_capacity(lookups);
    let mut demo = Vec::with_capacity(lookups);
    let mut broad = Vec::with_capacity(lookups);
    for _ in 0..lookups {
        let p = &people[rng.gen_range(0..people.len())];
        let s = Instant::now();
        let found = store.patient(&p.nhs_number).await?;
        nhs.push(s.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(found.is_some(), "an indexed patient was not found");

        let q = DemographicQuery {
            family: p.family.clone(),
            given: p.given.first().cloned(),
            birth_date: Some(p.birth_date),
            postcode: Some(p.postcode.clone()),
        };
        let s = Instant::now();
        let hits = store.search_patients(&q, 20).await?;
        demo.push(s.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(
            hits.iter().any(|h| h.nhs_number == p.nhs_number),
            "a demographic search missed its patient"
        );

        let q = DemographicQuery {
            birth_date: None,
            postcode: None,
            ..q
        };
        let s = Instant::now();
        store.search_patients(&q, 20).await?;
        broad.push(s.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(Lookups {
        nhs_lookup: Percentiles::of(&nhs),
        demographic_search: Percentiles::of(&demo),
        broad_search: Percentiles::of(&broad),
    })
}

/// Where the index's bytes are, to report its size.
#[derive(Debug, Clone)]
pub enum Storage {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Storage {
    async fn size_mib(&self) -> f64 {
        match self {
            Storage::Sqlite(path) => sqlite_size_mib(path),
            Storage::Postgres(url) => postgres_size_mib(url).await,
        }
    }
}

/// Bytes of a SQLite database and its WAL, MiB.
pub fn sqlite_size_mib(db: &std::path::Path) -> f64 {
    let size = |p: std::path::PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    (size(db.to_path_buf()) + size(wal.into())) as f64 / (1024.0 * 1024.0)
}

/// `pg_database_size` of the database at `url`, MiB.
pub async fn postgres_size_mib(url: &str) -> f64 {
    use sqlx::Connection;
    let Ok(mut conn) = sqlx::PgConnection::connect(url).await else {
        return 0.0;
    };
    let size: Result<i64, _> = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(&mut conn)
        .await;
    let _ = conn.close().await;
    size.map_or(0.0, |b| b as f64 / (1024.0 * 1024.0))
}
