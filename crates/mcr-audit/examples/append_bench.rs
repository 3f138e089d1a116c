//! Durable audit appends per second, on SQLite and PostgreSQL, with one writer and with 32
//! concurrent writers. Each append is one committed transaction (SQLite `synchronous=FULL`
//! in WAL mode; PostgreSQL `synchronous_commit=on`, `fsync=on`), as in the gateway.
//!
//! ```text
//! cargo run --release -p mcr-audit --example append_bench [-- APPENDS_PER_RUN]
//! ```
//!
//! PostgreSQL comes from `MCR_TEST_POSTGRES_URL` or a throwaway cluster (see mcr-testkit);
//! SQLite is a file in a temporary directory. Events are synthetic and carry no patient data.

use chrono::{DateTime, TimeZone, Utc};
use mcr_audit::{AuditEvent, SourceAudit};
use mcr_store::Store;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

fn event(i: usize, at: DateTime<Utc>) -> AuditEvent {
    AuditEvent {
        at,
        correlation_id: format!("bench-{i}"),
        system: None,
        user_id: format!("user-{}", i % 500),
        user_name: "Bench User".into(),
        role: "clinician".into(),
        org_code: "RWH".into(),
        org_name: "East and North Hertfordshire NHS Trust".into(),
        patient: Some("9990000018".into()),
        purpose: "directcare".into(),
        action: mcr_audit::Action::ViewRecord,
        outcome: mcr_audit::Outcome::Permit,
        basis: Some("relationship-and-permission".into()),
        detail: Some("They were involved in your care (open encounter) and permission was given by the patient.".into()),
        sources: ["gp", "acute", "community", "socialcare"]
            .iter()
            .map(|s| SourceAudit { source: (*s).into(), org_code: "X".into(), status: "ok".into(), items: 40, withheld: 1, not_tied: 0, not_shown: 0, unsearchable: Vec::new() })
            .collect(),
        role_profile_id: None,
    }
}

async fn run(
    store: Arc<dyn Store>,
    writers: usize,
    total: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let at = Utc
        .with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
        .single()
        .ok_or("time")?;
    let per = total / writers;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                mcr_audit::record(store.as_ref(), &event(w * per + i, at)).await?;
            }
            Ok::<_, mcr_audit::AuditError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    match mcr_audit::verify(store.as_ref()).await? {
        mcr_audit::Verification::Intact { records, .. } if records as usize >= per * writers => {}
        other => return Err(format!("chain not intact after the run: {other:?}").into()),
    }
    Ok((per * writers) as f64 / secs)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(2_000);
    let dir = tempfile::tempdir()?;
    let mut rows = Vec::new();
    for backend in ["sqlite", "postgres"] {
        for writers in [1usize, 32] {
            let url = match backend {
                "sqlite" => mcr_testkit::sqlite_url(dir.path()),
                _ => mcr_testkit::postgres_url().await,
            };
            let store = mcr_store::connect_and_migrate(&url).await?;
            let rate = run(store, writers, total).await?;
            rows.push((backend, writers, rate));
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "durable audit appends ({total} per run, each acknowledged only once committed; concurrent appends share a commit (group commit))")?;
    writeln!(
        out,
        "{:<10} {:>8} {:>14} {:>12}",
        "store", "writers", "appends/s", "ms/append"
    )?;
    for (backend, writers, rate) in rows {
        writeln!(
            out,
            "{backend:<10} {writers:>8} {rate:>14.0} {:>12.2}",
            1000.0 / rate
        )?;
    }
    Ok(())
}
