//! A store that breaks recovers by itself. SQLite: the store's file lives on a small `tmpfs`
//! the test fills up; while it is full, audit appends and the readiness probe fail (and
//! nothing half-written stays behind); once space returns they succeed again on the same
//! store handle, with no reopening, and the chain is unbroken. PostgreSQL: the readiness probe
//! writes on a primary and fails, saying why, where writes are refused (a database in
//! read-only mode, as a standby is).

use chrono::{DateTime, TimeZone, Utc};
use mcr_store::{AuditAppend, Store};
use sqlx::Connection;

fn chain(seq: i64, prev_hash: &str, record: &AuditAppend) -> String {
    format!(
        "{seq}:{}:{}",
        &prev_hash[..prev_hash.len().min(12)],
        record.correlation_id
    )
}

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, 9, 0, 0)
        .single()
        .expect("valid time")
}

fn audit(id: &str) -> AuditAppend {
    AuditAppend {
        role_profile_id: None,
        at: at(),
        correlation_id: id.into(),
        user_id: "gp.one".into(),
        org_code: "E82000".into(),
        patient: Some("9434765919".into()),
        action: "view-record".into(),
        outcome: "permit".into(),
        // A few KiB, so a full disk is met within a few appends.
        payload: format!("{{\"pad\":\"{}\"}}", "x".repeat(3000)),
    }
}

/// Every row follows the one before it, from the first.
async fn assert_chain_unbroken(store: &dyn Store) -> Vec<String> {
    let rows = store.audit_rows(0, 10_000).await.expect("rows");
    let mut prev = mcr_store::AUDIT_GENESIS_HASH.to_owned();
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.seq, i64::try_from(i).expect("small") + 1, "no gap");
        assert_eq!(
            row.prev_hash, prev,
            "record {} follows the one before",
            row.seq
        );
        assert_eq!(row.hash, chain(row.seq, &row.prev_hash, &row.record));
        prev = row.hash.clone();
    }
    rows.into_iter().map(|r| r.record.correlation_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_whose_disk_fills_writes_again_once_space_returns() {
    let fs = mcr_testkit::SmallFs::mount(8);
    let url = format!("sqlite://{}", fs.path().join("mcr.db").display());
    let store = mcr_store::connect_and_migrate(&url).await.expect("open");
    let mut acknowledged = Vec::new();
    for i in 0..10 {
        let id = format!("before-{i}");
        store
            .append_audit(&audit(&id), &chain)
            .await
            .expect("append");
        acknowledged.push(id);
    }
    store.probe_write("gw-1", at()).await.expect("writable");

    // Empty the write-ahead log into the database file, so the next write must grow a file,
    // then take every free byte.
    let mut side = sqlx::SqliteConnection::connect(&url).await.expect("side");
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut side)
        .await
        .expect("checkpoint");
    side.close().await.expect("close");
    let filled = fs.fill();
    assert!(filled > 0, "the filesystem had space to take");

    // Appends fail while the disk is full, through both of the store's write paths (the
    // one-statement append and the `BEGIN IMMEDIATE` one taken after a failure).
    let mut refused = 0;
    for i in 0..40 {
        let id = format!("full-{i}");
        match store.append_audit(&audit(&id), &chain).await {
            Ok(_) => acknowledged.push(id),
            Err(e) => {
                refused += 1;
                assert!(e.to_string().contains("unavailable"), "{e}");
            }
        }
    }
    assert!(
        refused >= 5,
        "appends were refused while the disk was full: {refused}"
    );
    let probe = store.probe_write("gw-1", at()).await;

    let reason = probe
        .expect_err("the probe fails while the disk is full")
        .to_string();
    assert!(
        reason.contains("full") || reason.contains("disk"),
        "{reason}"
    );

    // Space returns: the same handle writes again, on every path.
    fs.free();
    for i in 0..10 {
        let id = format!("after-{i}");
        store
            .append_audit(&audit(&id), &chain)
            .await
            .unwrap_or_else(|e| panic!("append {i} after the disk was freed: {e}"));
        acknowledged.push(id);
    }
    store
        .probe_write("gw-1", at())
        .await
        .expect("writable again");
    store
        .upsert_patients(&[])
        .await
        .expect("a transaction on the write connection");

    // Every acknowledged record is there, in an unbroken chain, and no refused one is.
    let stored = assert_chain_unbroken(store.as_ref()).await;
    assert_eq!(stored, acknowledged);
    drop(store);
}

#[tokio::test]
async fn the_postgres_probe_writes_on_a_primary_and_says_why_it_cannot_elsewhere() {
    let url = mcr_testkit::postgres_url().await;
    let store = mcr_store::connect_and_migrate(&url).await.expect("open");
    store.probe_write("gw-1", at()).await.expect("writable");
    store.probe_write("gw-2", at()).await.expect("writable");
    store
        .probe_write("gw-1", at())
        .await
        .expect("rewrites its row");

    // A database that refuses writes, as a standby does: new connections are read-only.
    let db = url.rsplit('/').next().expect("database name").to_owned();
    let mut admin = sqlx::PgConnection::connect(&url).await.expect("admin");
    sqlx::query(&format!(
        "ALTER DATABASE {db} SET default_transaction_read_only = on"
    ))
    .execute(&mut admin)
    .await
    .expect("read-only");
    admin.close().await.expect("close");
    let read_only = mcr_store::connect(&url).await.expect("open");
    let reason = read_only
        .probe_write("gw-1", at())
        .await
        .expect_err("refused")
        .to_string();
    assert!(reason.contains("read-only"), "{reason}");
    read_only.ping().await.expect("reads still answer");
}
