//! PostgreSQL stops, restarts and fails over under the store, which recovers by itself: a
//! cluster the test owns (`mcr_testkit::PgCluster`) and a streaming standby of it
//! (`pg_basebackup`). The store is opened with both hosts and
//! `target_session_attrs=read-write`. While the primary is down, appends and the readiness
//! probe fail; once it is back, they succeed on the same handle. Then the primary stops for
//! good and the standby is promoted: the store carries on against it by configuration alone,
//! and every acknowledged audit record is there, in one unbroken chain.

use chrono::{TimeZone, Utc};
use mcr_store::{AuditAppend, Store};
use sqlx::Connection;
use std::time::{Duration, Instant};

fn chain(seq: i64, prev_hash: &str, record: &AuditAppend) -> String {
    format!(
        "{seq}:{}:{}",
        &prev_hash[..prev_hash.len().min(12)],
        record.correlation_id
    )
}

fn at() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, 9, 0, 0)
        .single()
        .expect("time")
}

fn audit(id: &str) -> AuditAppend {
    AuditAppend {
        role_profile_id: None,
        at: Utc
            .with_ymd_and_hms(2026, 12, 4, 9, 0, 0)
            .single()
            .expect("time"),
        correlation_id: id.into(),
        user_id: "gp.one".into(),
        org_code: "E82000".into(),
        patient: Some("9434765919".into()),
        action: "view-record".into(),
        outcome: "permit".into(),
        payload: "{}".into(),
    }
}

/// Append `id`, retrying for up to 30 seconds; the attempts that failed.
async fn append_eventually(store: &dyn Store, id: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut failed = 0;
    loop {
        match store.append_audit(&audit(id), &chain).await {
            Ok(_) => return failed,
            Err(e) => {
                failed += 1;
                assert!(Instant::now() < deadline, "{id} never written: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_carries_on_through_a_restart_and_a_promoted_standby() {
    let primary = tokio::task::spawn_blocking(mcr_testkit::PgCluster::start)
        .await
        .expect("primary");
    let mut admin = sqlx::PgConnection::connect(&primary.url())
        .await
        .expect("admin");
    sqlx::query("CREATE DATABASE mcr")
        .execute(&mut admin)
        .await
        .expect("db");
    admin.close().await.expect("close");
    let standby = {
        let p = &primary;
        std::thread::scope(|s| s.spawn(|| p.standby()).join().expect("standby"))
    };
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/mcr?target_session_attrs=read-write",
        primary.port(),
        standby.port()
    );
    let store = mcr_store::connect_and_migrate(&url).await.expect("open");
    let mut acknowledged = Vec::new();
    for i in 0..5 {
        let id = format!("first-{i}");
        store
            .append_audit(&audit(&id), &chain)
            .await
            .expect("append");
        acknowledged.push(id);
    }
    store.probe_write("gw", at()).await.expect("writable");

    // The primary restarts.
    primary.stop("fast");
    assert!(store
        .append_audit(&audit("while-down"), &chain)
        .await
        .is_err());
    let reason = store
        .probe_write("gw", at())
        .await
        .expect_err("down")
        .to_string();
    assert!(reason.contains("unavailable"), "{reason}");
    primary.start_again();
    append_eventually(store.as_ref(), "after-restart").await;
    acknowledged.push("after-restart".into());
    for i in 0..5 {
        let id = format!("second-{i}");
        store
            .append_audit(&audit(&id), &chain)
            .await
            .expect("append");
        acknowledged.push(id);
    }

    // The primary goes for good (a fast stop sends the standby everything first); the standby
    // is promoted, and the same store handle writes on it.
    primary.stop("fast");
    let refused = store.probe_write("gw", at()).await;
    assert!(
        refused.is_err(),
        "nothing takes writes before the promotion"
    );
    standby.promote();
    let failed = append_eventually(store.as_ref(), "after-failover").await;
    acknowledged.push("after-failover".into());
    println!("failover: {failed} appends refused before the promoted standby took them");
    store
        .probe_write("gw", at())
        .await
        .expect("writable on the new primary");

    let rows = store.audit_rows(0, 1_000).await.expect("rows");
    let mut prev = mcr_store::AUDIT_GENESIS_HASH.to_owned();
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.seq, i64::try_from(i).expect("small") + 1, "no gap");
        assert_eq!(row.prev_hash, prev, "record {} follows", row.seq);
        prev = row.hash.clone();
    }
    let ids: Vec<String> = rows.into_iter().map(|r| r.record.correlation_id).collect();
    assert_eq!(
        ids, acknowledged,
        "every acknowledged record, and no refused one"
    );
    drop(store);
    drop(standby);
    drop(primary);
}
