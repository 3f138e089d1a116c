//! Whether the store takes writes now, for readiness (`/readyz`), on both backends: a real
//! write of one small row per gateway instance (`store_probe`), through the same connection
//! (SQLite) or pool (PostgreSQL) the audit trail writes with. A full disk, a read-only file, a
//! PostgreSQL standby or an unreachable server make it fail with the reason.

use crate::common::ts;
use crate::{PostgresStore, Result, SqliteStore};
use chrono::{DateTime, Utc};

/// The SQLite probe's row carries this many random bytes: about a busy moment's batch of audit
/// records. A full disk can still take a tiny row into log space a failed write left
/// allocated; a probe this size fits only where an audit write would. Random, because SQLite
/// does not rewrite overflow pages whose content an update leaves the same.
const SQLITE_PAD_BYTES: i64 = 64 * 1024;

pub(crate) async fn probe_sqlite(
    store: &SqliteStore,
    instance: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    let written = async {
        let mut writer = store.write_conn().await?;
        sqlx::query(
            "INSERT INTO store_probe (instance, probed_at, pad) VALUES (?1, ?2, randomblob(?3)) \
             ON CONFLICT (instance) DO UPDATE SET probed_at = excluded.probed_at, pad = excluded.pad",
        )
        .bind(instance)
        .bind(ts(&at))
        .bind(SQLITE_PAD_BYTES)
        .execute(&mut *writer)
        .await?;
        Ok(())
    }
    .await;
    if written.is_err() {
        store.writer_failed();
    }
    written
}

pub(crate) async fn probe_postgres(
    store: &PostgresStore,
    instance: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO store_probe (instance, probed_at) VALUES ($1, $2) \
         ON CONFLICT (instance) DO UPDATE SET probed_at = excluded.probed_at",
    )
    .bind(instance)
    .bind(ts(&at))
    .execute(&store.pool)
    .await?;
    Ok(())
}
