//! The watch's counters on SQLite.

use super::SqliteStore;
use crate::watch_counts::{
    claim_flag_sql, claimed, view_upsert_tail, WatchCount, WatchCountStore, WatchFlag, WatchView,
    FLAGS_SINCE, FLAG_UPSERT_HEAD, FLAG_UPSERT_TAIL, VIEWS_SINCE, VIEW_UPSERT_HEAD,
};
use crate::Result;
use async_trait::async_trait;

/// One view counted on SQLite's watch connection (the caller holds the write connection).
async fn count_on(
    conn: &mut sqlx::SqliteConnection,
    user_id: &str,
    patient: &str,
    at_ms: i64,
    since_ms: i64,
    limit: u64,
) -> Result<WatchCount> {
    sqlx::query("DELETE FROM watch_view WHERE user_id = ?1 AND seen_ms <= ?2")
        .bind(user_id)
        .bind(since_ms)
        .execute(&mut *conn)
        .await?;
    let (n, seen, oldest): (i64, Option<bool>, Option<i64>) = sqlx::query_as(
        "SELECT count(*), max(patient = ?2), min(seen_ms) FROM watch_view WHERE user_id = ?1",
    )
    .bind(user_id)
    .bind(patient)
    .fetch_one(&mut *conn)
    .await?;
    let n = u64::try_from(n).unwrap_or(0);
    if seen == Some(true) {
        sqlx::query(
            "UPDATE watch_view SET seen_ms = MAX(seen_ms, ?3) WHERE user_id = ?1 AND patient = ?2",
        )
        .bind(user_id)
        .bind(patient)
        .bind(at_ms)
        .execute(&mut *conn)
        .await?;
        return Ok(WatchCount {
            distinct: n,
            refused: false,
            oldest_ms: oldest,
        });
    }
    if n >= limit {
        return Ok(WatchCount {
            distinct: n + 1,
            refused: true,
            oldest_ms: oldest,
        });
    }
    sqlx::query("INSERT INTO watch_view (user_id, patient, seen_ms) VALUES (?1, ?2, ?3)")
        .bind(user_id)
        .bind(patient)
        .bind(at_ms)
        .execute(&mut *conn)
        .await?;
    Ok(WatchCount {
        distinct: n + 1,
        refused: false,
        oldest_ms: oldest.or(Some(at_ms)),
    })
}

#[async_trait]
impl WatchCountStore for SqliteStore {
    async fn count_watch_view(
        &self,
        user_id: &str,
        patient: &str,
        at_ms: i64,
        since_ms: i64,
        limit: u64,
    ) -> Result<WatchCount> {
        let _writer = self.write_conn().await?;
        let mut slot = self.watch_conn().await?;
        let counted = match slot.as_mut() {
            Some(conn) => count_on(conn, user_id, patient, at_ms, since_ms, limit).await,
            None => Err(crate::StoreError::Unavailable("no watch connection".into())),
        };
        if counted.is_err() {
            // Replaced, never reused, after a failure: opened again by the next view.
            *slot = None;
        }
        counted
    }

    async fn claim_watch_flag(
        &self,
        user_id: &str,
        rule: &str,
        patient: &str,
        at_ms: i64,
        since_ms: i64,
    ) -> Result<Option<u64>> {
        let _writer = self.write_conn().await?;
        let mut slot = self.watch_conn().await?;
        let claimed_row = match slot.as_mut() {
            Some(conn) => sqlx::query_as(&claim_flag_sql(["?1", "?2", "?3", "?4", "?5"]))
                .bind(user_id)
                .bind(rule)
                .bind(patient)
                .bind(at_ms)
                .bind(since_ms)
                .fetch_one(conn)
                .await
                .map_err(crate::StoreError::from),
            None => Err(crate::StoreError::Unavailable("no watch connection".into())),
        };
        if claimed_row.is_err() {
            *slot = None;
        }
        Ok(claimed(claimed_row?))
    }

    async fn forget_watch(&self, before_ms: i64) -> Result<u64> {
        let mut writer = self.write_conn().await?;
        let views = sqlx::query("DELETE FROM watch_view WHERE seen_ms <= ?1")
            .bind(before_ms)
            .execute(&mut *writer)
            .await?;
        let flags = sqlx::query("DELETE FROM watch_flag WHERE last_ms <= ?1 AND held = 0")
            .bind(before_ms)
            .execute(&mut *writer)
            .await?;
        Ok(views.rows_affected() + flags.rows_affected())
    }

    async fn record_watch_views(&self, views: &[WatchView]) -> Result<()> {
        if views.is_empty() {
            return Ok(());
        }
        let _writer = self.write_conn().await?;
        let mut slot = self.watch_conn().await?;
        let written = match slot.as_mut() {
            Some(conn) => record_on(conn, views).await,
            None => Err(crate::StoreError::Unavailable("no watch connection".into())),
        };
        if written.is_err() {
            *slot = None;
        }
        written
    }

    async fn watch_views_since(&self, since_ms: i64) -> Result<Vec<WatchView>> {
        Ok(sqlx::query_as(&format!("{VIEWS_SINCE}?1"))
            .bind(since_ms)
            .fetch_all(&self.read)
            .await?)
    }

    async fn record_watch_flags(&self, flags: &[WatchFlag]) -> Result<()> {
        if flags.is_empty() {
            return Ok(());
        }
        let _writer = self.write_conn().await?;
        let mut slot = self.watch_conn().await?;
        let written = match slot.as_mut() {
            Some(conn) => record_flags_on(conn, flags).await,
            None => Err(crate::StoreError::Unavailable("no watch connection".into())),
        };
        if written.is_err() {
            *slot = None;
        }
        written
    }

    async fn watch_flags_since(&self, since_ms: i64) -> Result<Vec<WatchFlag>> {
        Ok(sqlx::query_as(&format!("{FLAGS_SINCE}?1"))
            .bind(since_ms)
            .fetch_all(&self.read)
            .await?)
    }
}

/// Rows per statement when writing behind: a few statements per batch, not one per row (each
/// statement is a round trip to SQLite's worker thread), well under SQLite's 32,766 parameters.
const ROWS_PER_STATEMENT: usize = 200;

/// Written-behind flag states in one transaction on SQLite's watch connection, in order (a
/// key given twice ends with its last state: SQLite applies an upsert's rows one by one).
async fn record_flags_on(conn: &mut sqlx::SqliteConnection, flags: &[WatchFlag]) -> Result<()> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    for chunk in flags.chunks(ROWS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(FLAG_UPSERT_HEAD);
        q.push_values(chunk, |mut row, f| {
            row.push_bind(&f.user_id)
                .push_bind(&f.rule)
                .push_bind(&f.patient)
                .push_bind(f.last_ms)
                .push_bind(f.held)
                .push("0");
        });
        q.push(FLAG_UPSERT_TAIL);
        q.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Written-behind views in one transaction on SQLite's watch connection: each user and
/// patient keeps the later of its stored and given times.
async fn record_on(conn: &mut sqlx::SqliteConnection, views: &[WatchView]) -> Result<()> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    for chunk in views.chunks(ROWS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(VIEW_UPSERT_HEAD);
        q.push_values(chunk, |mut row, v| {
            row.push_bind(&v.user_id)
                .push_bind(&v.patient)
                .push_bind(v.seen_ms);
        });
        q.push(view_upsert_tail("MAX"));
        q.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}
