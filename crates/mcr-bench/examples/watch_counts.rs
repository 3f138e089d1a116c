//! What counting a view in the store costs (the watch's counters, touched on every permitted
//! record view): `count_watch_view` one view at a time, on SQLite (a file in a temporary
//! directory, as the embedded gateway's) and on PostgreSQL (a throwaway cluster on this
//! machine, over loopback). A region's ordinary load: 2,000 users, each view a random patient
//! of 1.5 million, views 0.432 s apart (a day's views from 200,000), window an hour, limit 60.
//! Prints per-view p50, p99 and max in microseconds.
//!
//! `cargo run --release -p mcr-bench --example watch_counts -- 20000`

use anyhow::Context;
use mcr_store::Store;
use std::time::Instant;

fn percentiles(mut us: Vec<f64>) -> (f64, f64, f64) {
    us.sort_by(f64::total_cmp);
    let at = |q: f64| us[((us.len() as f64 - 1.0) * q) as usize];
    (at(0.5), at(0.99), at(1.0))
}

async fn run(store: &dyn Store, n: usize) -> anyhow::Result<(f64, f64, f64, usize)> {
    let t0 = 1_800_000_000_000_i64;
    let window = 3_600_000_i64;
    let mut us = Vec::with_capacity(n);
    let mut refused = 0;
    for i in 0..n {
        let user = format!("user-{}", (i * 7919) % 2_000);
        let patient = format!(
            "{:010}",
            9_000_000_000u64 + ((i * 104_729) % 1_500_000) as u64
        );
        let at = t0 + (i as i64) * 432;
        let started = Instant::now();
        let counted = store
            .count_watch_view(&user, &patient, at, at - window, 60)
            .await?;
        us.push(started.elapsed().as_secs_f64() * 1e6);
        refused += usize::from(counted.refused);
    }
    let (p50, p99, max) = percentiles(us);
    Ok((p50, p99, max, refused))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()
        .context("the first argument is the number of views")?
        .unwrap_or(20_000);
    let dir = tempfile::tempdir()?;
    let sqlite = mcr_store::connect_and_migrate(&mcr_testkit::sqlite_url(dir.path())).await?;
    let postgres = mcr_store::connect_and_migrate(&mcr_testkit::postgres_url().await).await?;
    let mut out = Vec::new();
    for (name, store) in [("sqlite", &sqlite), ("postgres", &postgres)] {
        let (p50, p99, max, refused) = run(store.as_ref(), n).await?;
        out.push(serde_json::json!({
            "backend": name, "views": n, "refused": refused,
            "p50_us": p50, "p99_us": p99, "max_us": max,
        }));
    }
    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", serde_json::to_string_pretty(&out)?)?;
    }
    Ok(())
}
