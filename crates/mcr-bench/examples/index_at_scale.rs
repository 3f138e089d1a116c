//! The patient index on PostgreSQL at regional-to-national size: load N synthetic people
//! (`mcr_synth::demographics`) with `COPY` ([`mcr_store::PostgresStore::copy_patients`]),
//! `ANALYZE`, then time the two lookups every view and search starts with, through the same
//! `IndexStore` calls the gateway makes: by NHS number, and by family + given + birth date +
//! postcode (and family + given only, the broadest search the API accepts). Prints JSON.
//!
//! `cargo run --release -p mcr-bench --example index_at_scale -- 10000000`
//!
//! The database is a throwaway cluster (`mcr-testkit`), deleted with its data when this
//! exits; with `MCR_TEST_POSTGRES_URL` set, a fresh database on that server, whose patients
//! are deleted at the end.

use anyhow::Context;
use mcr_store::{IndexedPatient, PostgresStore, Store};
use std::time::Instant;

const CHUNK: usize = 100_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let people_n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()
        .context("the first argument is the number of people")?
        .unwrap_or(10_000_000);
    let lookups = 2_000;
    let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 4).context("date")?;
    let at = today.and_hms_opt(0, 0, 0).context("midnight")?.and_utc();

    let url = mcr_testkit::postgres_url().await;
    let store = PostgresStore::open(&url).await?;
    store.migrate().await?;

    let started = Instant::now();
    let people = mcr_synth::demographics(2017, people_n, today);
    let generate_seconds = started.elapsed().as_secs_f64();
    eprintln!("generated {people_n} people in {generate_seconds:.1} s");

    let started = Instant::now();
    let mut copied = 0u64;
    for (i, chunk) in people.chunks(CHUNK).enumerate() {
        let batch: Vec<IndexedPatient> = chunk
            .iter()
            .map(|p| mcr_bench::index::indexed(p, at))
            .collect();
        copied += store.copy_patients(&batch).await?;
        if i % 10 == 9 {
            eprintln!(
                "copied {copied} in {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let load_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let pool = sqlx::PgPool::connect(&url).await?;
    sqlx::query("ANALYZE patient").execute(&pool).await?;
    let analyze_seconds = started.elapsed().as_secs_f64();
    let (table_bytes, index_bytes): (i64, i64) =
        sqlx::query_as("SELECT pg_table_size('patient'), pg_indexes_size('patient')")
            .fetch_one(&pool)
            .await?;

    let timed = mcr_bench::index::time_lookups(&store, &people, lookups).await?;
    let result = serde_json::json!({
        "patients": copied,
        "generate_seconds": generate_seconds,
        "copy_seconds": load_seconds,
        "copy_rows_per_second": copied as f64 / load_seconds,
        "analyze_seconds": analyze_seconds,
        "table_mib": table_bytes as f64 / 1_048_576.0,
        "indexes_mib": index_bytes as f64 / 1_048_576.0,
        "nhs_lookup": timed.nhs_lookup,
        "demographic_search": timed.demographic_search,
        "broad_search": timed.broad_search,
    });
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", serde_json::to_string_pretty(&result)?)?;
    }
    // Delete the data (the throwaway cluster goes with its directory at exit too).
    sqlx::query("TRUNCATE patient").execute(&pool).await?;
    Ok(())
}
