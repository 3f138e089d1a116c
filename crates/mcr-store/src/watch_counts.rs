//! The watch's counters in the store (a restart forgets nothing, and every gateway on
//! PostgreSQL counts a user's views together): the distinct patients each user viewed within
//! the window, and when a flag was last written per user and rule.
//!
//! - SQLite holds one gateway: it counts in its memory and writes the views behind, in
//!   batches ([`WatchCountStore::record_watch_views`], and its flags' state with
//!   [`WatchCountStore::record_watch_flags`]: one transaction on a connection of its own with
//!   `synchronous = NORMAL`, taken while holding the write connection), and reads the window
//!   back when it starts ([`WatchCountStore::watch_views_since`], `watch_flags_since`). The batches reach
//!   the disk with the next durable commit to the same write-ahead log (an audit record).
//! - PostgreSQL counts every view in the store: one call of `watch_count_view` (migration
//!   0110), one round trip, the user's views counted one at a time across gateways (a lock on
//!   the user for the transaction), committed without waiting for the disk; the view's
//!   durable audit commit, later in the same write-ahead log, flushes it.
//!
//! [`WatchCountStore::count_watch_view`] also works on SQLite (the same statements, on the
//! watch connection).
//!
//! Times are Unix milliseconds from the caller's clock.

use crate::{PostgresStore, Result, SqliteStore};
use async_trait::async_trait;

/// A user's distinct patients within the window, as counted for one view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchCount {
    /// Distinct patients in the window, this one included (also when refused).
    pub distinct: u64,
    /// This patient would have made more than the limit: not counted.
    pub refused: bool,
    /// When the oldest view still in the window was made.
    pub oldest_ms: Option<i64>,
}

#[async_trait]
pub trait WatchCountStore: Send + Sync {
    /// Count `patient` among the distinct patients `user_id` viewed after `since_ms` (the
    /// window's start), as seen at `at_ms`, unless that would make more than `limit` (then it
    /// is not counted: refused). Views of one user are counted one at a time.
    async fn count_watch_view(
        &self,
        user_id: &str,
        patient: &str,
        at_ms: i64,
        since_ms: i64,
        limit: u64,
    ) -> Result<WatchCount>;

    /// Whether to write the flag for `user_id`, `rule` and `patient` (`""` for rules about the
    /// user) at `at_ms`: `Some(held back since the last one written)` for the first after
    /// `since_ms`; `None` for later ones, which are counted and handed to the next one written.
    async fn claim_watch_flag(
        &self,
        user_id: &str,
        rule: &str,
        patient: &str,
        at_ms: i64,
        since_ms: i64,
    ) -> Result<Option<u64>>;

    /// Forget views seen at or before `before_ms`, and flags written then with none held back
    /// since. Returns the rows deleted.
    async fn forget_watch(&self, before_ms: i64) -> Result<u64>;

    /// Record views a gateway counted in its own memory (written behind the views, in
    /// batches): each user and patient keeps the later of its stored and given time.
    async fn record_watch_views(&self, views: &[WatchView]) -> Result<()>;

    /// The views seen after `since_ms`: what a gateway counting in memory starts from.
    async fn watch_views_since(&self, since_ms: i64) -> Result<Vec<WatchView>>;

    /// Record the flags' state as a gateway claiming them in memory holds it (written behind,
    /// in order): each flag's last written time and how many were held back since.
    async fn record_watch_flags(&self, flags: &[WatchFlag]) -> Result<()>;

    /// The flags written after `since_ms` or with some held back since: what a gateway
    /// claiming flags in memory starts from.
    async fn watch_flags_since(&self, since_ms: i64) -> Result<Vec<WatchFlag>>;
}

/// One flag's state: when it was last written for a user and rule (and patient, `""` for
/// rules about the user), and how many like it were held back since.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WatchFlag {
    pub user_id: String,
    pub rule: String,
    pub patient: String,
    pub last_ms: i64,
    pub held: i64,
}

/// The upsert of one written-behind flag state, with the backend's placeholders.
fn record_flag_sql(p: [&str; 5]) -> String {
    let [user, rule, patient, last, held] = p;
    format!(
        "INSERT INTO watch_flag (user_id, rule, patient, last_ms, held, held_before) \
         VALUES ({user}, {rule}, {patient}, {last}, {held}, 0) \
         ON CONFLICT (user_id, rule, patient) DO UPDATE SET \
         last_ms = excluded.last_ms, held = excluded.held"
    )
}

const FLAGS_SINCE: &str =
    "SELECT user_id, rule, patient, last_ms, held FROM watch_flag WHERE held > 0 OR last_ms > ";

/// One user's latest view of one patient.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WatchView {
    pub user_id: String,
    pub patient: String,
    pub seen_ms: i64,
}

/// The upsert of one written-behind view, with the backend's placeholders and `max`.
fn record_view_sql(max: &str, p: [&str; 3]) -> String {
    let [user, patient, at] = p;
    format!(
        "INSERT INTO watch_view (user_id, patient, seen_ms) VALUES ({user}, {patient}, {at}) \
         ON CONFLICT (user_id, patient) DO UPDATE SET \
         seen_ms = {max}(watch_view.seen_ms, excluded.seen_ms)"
    )
}

const VIEWS_SINCE: &str = "SELECT user_id, patient, seen_ms FROM watch_view WHERE seen_ms > ";

/// The flag upsert, with the backend's placeholders: `held` 0 after it means it is written.
fn claim_flag_sql(p: [&str; 5]) -> String {
    let [user, rule, patient, at, since] = p;
    format!(
        "INSERT INTO watch_flag (user_id, rule, patient, last_ms, held, held_before) \
         VALUES ({user}, {rule}, {patient}, {at}, 0, 0) \
         ON CONFLICT (user_id, rule, patient) DO UPDATE SET \
         held_before = CASE WHEN watch_flag.last_ms > {since} THEN watch_flag.held_before ELSE watch_flag.held END, \
         held = CASE WHEN watch_flag.last_ms > {since} THEN watch_flag.held + 1 ELSE 0 END, \
         last_ms = CASE WHEN watch_flag.last_ms > {since} THEN watch_flag.last_ms ELSE {at} END \
         RETURNING held, held_before"
    )
}

fn claimed((held, before): (i64, i64)) -> Option<u64> {
    (held == 0).then(|| u64::try_from(before).unwrap_or(0))
}

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

/// Written-behind flag states in one transaction on SQLite's watch connection.
async fn record_flags_on(conn: &mut sqlx::SqliteConnection, flags: &[WatchFlag]) -> Result<()> {
    let sql = record_flag_sql(["?1", "?2", "?3", "?4", "?5"]);
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    for f in flags {
        sqlx::query(&sql)
            .bind(&f.user_id)
            .bind(&f.rule)
            .bind(&f.patient)
            .bind(f.last_ms)
            .bind(f.held)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Written-behind views in one transaction on SQLite's watch connection.
async fn record_on(conn: &mut sqlx::SqliteConnection, views: &[WatchView]) -> Result<()> {
    let sql = record_view_sql("MAX", ["?1", "?2", "?3"]);
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    for v in views {
        sqlx::query(&sql)
            .bind(&v.user_id)
            .bind(&v.patient)
            .bind(v.seen_ms)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

#[async_trait]
impl WatchCountStore for PostgresStore {
    async fn count_watch_view(
        &self,
        user_id: &str,
        patient: &str,
        at_ms: i64,
        since_ms: i64,
        limit: u64,
    ) -> Result<WatchCount> {
        let (distinct, refused, oldest_ms): (i64, bool, Option<i64>) = sqlx::query_as(
            "SELECT distinct_patients, refused, oldest_ms FROM watch_count_view($1, $2, $3, $4, $5)",
        )
        .bind(user_id)
        .bind(patient)
        .bind(at_ms)
        .bind(since_ms)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_one(&self.pool)
        .await?;
        Ok(WatchCount {
            distinct: u64::try_from(distinct).unwrap_or(0),
            refused,
            oldest_ms,
        })
    }

    async fn claim_watch_flag(
        &self,
        user_id: &str,
        rule: &str,
        patient: &str,
        at_ms: i64,
        since_ms: i64,
    ) -> Result<Option<u64>> {
        let row: (i64, i64) =
            sqlx::query_as(&claim_flag_sql(["$1", "$2", "$3", "$4::int8", "$5::int8"]))
                .bind(user_id)
                .bind(rule)
                .bind(patient)
                .bind(at_ms)
                .bind(since_ms)
                .fetch_one(&self.pool)
                .await?;
        Ok(claimed(row))
    }

    async fn forget_watch(&self, before_ms: i64) -> Result<u64> {
        let done = sqlx::query(
            "WITH views AS (DELETE FROM watch_view WHERE seen_ms <= $1 RETURNING 1), \
             flags AS (DELETE FROM watch_flag WHERE last_ms <= $1 AND held = 0 RETURNING 1) \
             SELECT (SELECT count(*) FROM views) + (SELECT count(*) FROM flags)",
        )
        .bind(before_ms)
        .fetch_one(&self.pool)
        .await?;
        let n: i64 = sqlx::Row::try_get(&done, 0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn record_watch_views(&self, views: &[WatchView]) -> Result<()> {
        if views.is_empty() {
            return Ok(());
        }
        let sql = record_view_sql("GREATEST", ["$1", "$2", "$3"]);
        let mut tx = self.pool.begin().await?;
        for v in views {
            sqlx::query(&sql)
                .bind(&v.user_id)
                .bind(&v.patient)
                .bind(v.seen_ms)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn watch_views_since(&self, since_ms: i64) -> Result<Vec<WatchView>> {
        Ok(sqlx::query_as(&format!("{VIEWS_SINCE}$1"))
            .bind(since_ms)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn record_watch_flags(&self, flags: &[WatchFlag]) -> Result<()> {
        if flags.is_empty() {
            return Ok(());
        }
        let sql = record_flag_sql(["$1", "$2", "$3", "$4::int8", "$5::int8"]);
        let mut tx = self.pool.begin().await?;
        for f in flags {
            sqlx::query(&sql)
                .bind(&f.user_id)
                .bind(&f.rule)
                .bind(&f.patient)
                .bind(f.last_ms)
                .bind(f.held)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn watch_flags_since(&self, since_ms: i64) -> Result<Vec<WatchFlag>> {
        Ok(sqlx::query_as(&format!("{FLAGS_SINCE}$1"))
            .bind(since_ms)
            .fetch_all(&self.pool)
            .await?)
    }
}
