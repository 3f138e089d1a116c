//! State the gateways of a region share through the store, so any gateway serves any
//! request: page sessions and sign-ins in progress (keyed by a hash of the cookie's id; what
//! they hold is the web layer's own JSON), rate-limit token buckets, and leases for work done
//! by one gateway at a time (the index sync). Both backends, one
//! statement per call: a session is read and marked used in one `UPDATE .. RETURNING`, a
//! sign-in taken in one `DELETE .. RETURNING`, a token taken in one conditional upsert.
//! Times are Unix milliseconds from the caller's clock.

use crate::{PostgresStore, Result, SqliteStore};
use async_trait::async_trait;

/// A token bucket: `burst` tokens at most, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub burst: u32,
    pub per_minute: u32,
}

impl Bucket {
    fn burst(self) -> f64 {
        f64::from(self.burst.max(1))
    }

    fn per_ms(self) -> f64 {
        f64::from(self.per_minute.max(1)) / 60_000.0
    }

    /// Whole seconds until a bucket holding `tokens` has one again (at least 1, at most 3600).
    fn wait_seconds(self, tokens: f64) -> u64 {
        let wait = ((1.0 - tokens) / (self.per_ms() * 1000.0)).ceil();
        if (1.0..3600.0).contains(&wait) {
            wait as u64
        } else if wait < 1.0 {
            1
        } else {
            // Also NaN and infinity: the values are small and positive in practice.
            3600
        }
    }
}

#[async_trait]
pub trait SharedStateStore: Send + Sync {
    /// Store a new page session; forgets sessions idle longer than `idle_ms` or older than
    /// `max_ms` on the way.
    async fn put_session(
        &self,
        id_hash: &str,
        data: &str,
        now_ms: i64,
        idle_ms: i64,
        max_ms: i64,
    ) -> Result<()>;
    /// The session's data if it is still alive (used within `idle_ms`, created within
    /// `max_ms`), marking it used at `now_ms`.
    async fn touch_session(
        &self,
        id_hash: &str,
        now_ms: i64,
        idle_ms: i64,
        max_ms: i64,
    ) -> Result<Option<String>>;
    /// End a session (sign-out).
    async fn end_session(&self, id_hash: &str) -> Result<()>;
    /// Store a sign-in in progress; forgets those older than `max_ms` on the way.
    async fn put_login(&self, id_hash: &str, data: &str, now_ms: i64, max_ms: i64) -> Result<()>;
    /// Take a sign-in in progress (it can be taken once): its data if younger than `max_ms`.
    async fn take_login(&self, id_hash: &str, now_ms: i64, max_ms: i64) -> Result<Option<String>>;
    /// Take one token from `key`'s bucket: `Ok(Ok(()))`, or `Ok(Err(seconds))` until one is
    /// there.
    async fn take_token(
        &self,
        key: &str,
        bucket: Bucket,
        now_ms: i64,
    ) -> Result<std::result::Result<(), u64>>;
    /// Forget buckets untouched since `before_ms` (full again by then).
    async fn forget_buckets(&self, before_ms: i64) -> Result<u64>;
    /// Take or renew the lease `name` for `holder` until `now_ms + ttl_ms`: `true` when it is
    /// free, expired, or already `holder`'s; `false` while another holds it.
    async fn take_lease(&self, name: &str, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<bool>;
    /// Give the lease up, if `holder` has it.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
    /// Use a one-time value (a SMART `launch`, by its hash) until `now_ms + ttl_ms`: `true`
    /// the first time, `false` while an earlier use has not expired. Forgets expired uses
    /// on the way.
    async fn use_once(&self, key_hash: &str, now_ms: i64, ttl_ms: i64) -> Result<bool>;
}

/// The take-or-renew upsert, with the backend's placeholders.
fn take_lease_sql(p: [&str; 4]) -> String {
    let [name, holder, now, until] = p;
    format!(
        "INSERT INTO lease (name, holder, expires_ms) VALUES ({name}, {holder}, {until}) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms \
         WHERE lease.holder = excluded.holder OR lease.expires_ms < {now} RETURNING holder"
    )
}

/// The take-a-token upsert; `{min}`/`{max}` are the backend's two-argument minimum/maximum.
fn take_token_sql(p: [&str; 4], min: &str, max: &str) -> String {
    let [key, burst, now, per_ms] = p;
    let refilled = format!(
        "{min}({burst}, rate_bucket.tokens + {max}(0, {now} - rate_bucket.at_ms) * {per_ms})"
    );
    format!(
        "INSERT INTO rate_bucket (key, tokens, at_ms) VALUES ({key}, {burst} - 1, {now}) \
         ON CONFLICT (key) DO UPDATE SET tokens = {refilled} - 1, at_ms = {max}(rate_bucket.at_ms, {now}) \
         WHERE {refilled} >= 1 RETURNING tokens"
    )
}

#[async_trait]
impl SharedStateStore for SqliteStore {
    async fn put_session(
        &self,
        id_hash: &str,
        data: &str,
        now_ms: i64,
        idle_ms: i64,
        max_ms: i64,
    ) -> Result<()> {
        let mut writer = self.write_conn().await?;
        sqlx::query("DELETE FROM web_session WHERE last_seen_ms < ?1 OR created_ms < ?2")
            .bind(now_ms - idle_ms)
            .bind(now_ms - max_ms)
            .execute(&mut *writer)
            .await?;
        sqlx::query(
            "INSERT INTO web_session (id_hash, data, created_ms, last_seen_ms) VALUES (?1, ?2, ?3, ?3)",
        )
        .bind(id_hash)
        .bind(data)
        .bind(now_ms)
        .execute(&mut *writer)
        .await?;
        Ok(())
    }

    async fn touch_session(
        &self,
        id_hash: &str,
        now_ms: i64,
        idle_ms: i64,
        max_ms: i64,
    ) -> Result<Option<String>> {
        let data: Option<(String,)> = sqlx::query_as(
            "UPDATE web_session SET last_seen_ms = MAX(last_seen_ms, ?2) \
             WHERE id_hash = ?1 AND last_seen_ms >= ?3 AND created_ms >= ?4 RETURNING data",
        )
        .bind(id_hash)
        .bind(now_ms)
        .bind(now_ms - idle_ms)
        .bind(now_ms - max_ms)
        .fetch_optional(&mut *self.write_conn().await?)
        .await?;
        Ok(data.map(|(d,)| d))
    }

    async fn end_session(&self, id_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM web_session WHERE id_hash = ?1")
            .bind(id_hash)
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(())
    }

    async fn put_login(&self, id_hash: &str, data: &str, now_ms: i64, max_ms: i64) -> Result<()> {
        let mut writer = self.write_conn().await?;
        sqlx::query("DELETE FROM web_login WHERE created_ms < ?1")
            .bind(now_ms - max_ms)
            .execute(&mut *writer)
            .await?;
        sqlx::query("INSERT INTO web_login (id_hash, data, created_ms) VALUES (?1, ?2, ?3)")
            .bind(id_hash)
            .bind(data)
            .bind(now_ms)
            .execute(&mut *writer)
            .await?;
        Ok(())
    }

    async fn take_login(&self, id_hash: &str, now_ms: i64, max_ms: i64) -> Result<Option<String>> {
        let row: Option<(String, i64)> =
            sqlx::query_as("DELETE FROM web_login WHERE id_hash = ?1 RETURNING data, created_ms")
                .bind(id_hash)
                .fetch_optional(&mut *self.write_conn().await?)
                .await?;
        Ok(row.and_then(|(data, created)| (created >= now_ms - max_ms).then_some(data)))
    }

    async fn take_token(
        &self,
        key: &str,
        bucket: Bucket,
        now_ms: i64,
    ) -> Result<std::result::Result<(), u64>> {
        let sql = take_token_sql(["?1", "?2", "?3", "?4"], "MIN", "MAX");
        let mut writer = self.write_conn().await?;
        let taken: Option<(f64,)> = sqlx::query_as(&sql)
            .bind(key)
            .bind(bucket.burst())
            .bind(now_ms)
            .bind(bucket.per_ms())
            .fetch_optional(&mut *writer)
            .await?;
        if taken.is_some() {
            return Ok(Ok(()));
        }
        let (tokens,): (f64,) = sqlx::query_as(
            "SELECT MIN(?2, tokens + MAX(0, ?3 - at_ms) * ?4) FROM rate_bucket WHERE key = ?1",
        )
        .bind(key)
        .bind(bucket.burst())
        .bind(now_ms)
        .bind(bucket.per_ms())
        .fetch_one(&mut *writer)
        .await?;
        Ok(Err(bucket.wait_seconds(tokens)))
    }

    async fn forget_buckets(&self, before_ms: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM rate_bucket WHERE at_ms < ?1")
            .bind(before_ms)
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(done.rows_affected())
    }

    async fn take_lease(&self, name: &str, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<bool> {
        let taken: Option<(String,)> = sqlx::query_as(&take_lease_sql(["?1", "?2", "?3", "?4"]))
            .bind(name)
            .bind(holder)
            .bind(now_ms)
            .bind(now_ms + ttl_ms)
            .fetch_optional(&mut *self.write_conn().await?)
            .await?;
        Ok(taken.is_some())
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM lease WHERE name = ?1 AND holder = ?2")
            .bind(name)
            .bind(holder)
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(())
    }

    async fn use_once(&self, key_hash: &str, now_ms: i64, ttl_ms: i64) -> Result<bool> {
        let mut writer = self.write_conn().await?;
        sqlx::query("DELETE FROM launch_used WHERE expires_ms < ?1")
            .bind(now_ms)
            .execute(&mut *writer)
            .await?;
        let done = sqlx::query(
            "INSERT INTO launch_used (key_hash, expires_ms) VALUES (?1, ?2) \
             ON CONFLICT (key_hash) DO NOTHING",
        )
        .bind(key_hash)
        .bind(now_ms + ttl_ms)
        .execute(&mut *writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[async_trait]
impl SharedStateStore for PostgresStore {
    async fn put_session(
        &self,
        id_hash: &str,
        data: &str,
        now_ms: i64,
        idle_ms: i64,
        max_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "WITH gone AS (DELETE FROM web_session WHERE last_seen_ms < $4 OR created_ms < $5) \
             INSERT INTO web_session (id_hash, data, created_ms, last_seen_ms) VALUES ($1, $2, $3, $3)",
        )
        .bind(id_hash)
        .bind(data)
        .bind(now_ms)
        .bind(now_ms - idle_ms)
        .bind(now_ms - max_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn touch_session(
        &self,
        id_hash: &str,
        now_ms: i64,
        idle_ms: i64,
        max_ms: i64,
    ) -> Result<Option<String>> {
        let data: Option<(String,)> = sqlx::query_as(
            "UPDATE web_session SET last_seen_ms = GREATEST(last_seen_ms, $2) \
             WHERE id_hash = $1 AND last_seen_ms >= $3 AND created_ms >= $4 RETURNING data",
        )
        .bind(id_hash)
        .bind(now_ms)
        .bind(now_ms - idle_ms)
        .bind(now_ms - max_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(data.map(|(d,)| d))
    }

    async fn end_session(&self, id_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM web_session WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn put_login(&self, id_hash: &str, data: &str, now_ms: i64, max_ms: i64) -> Result<()> {
        sqlx::query(
            "WITH gone AS (DELETE FROM web_login WHERE created_ms < $4) \
             INSERT INTO web_login (id_hash, data, created_ms) VALUES ($1, $2, $3)",
        )
        .bind(id_hash)
        .bind(data)
        .bind(now_ms)
        .bind(now_ms - max_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn take_login(&self, id_hash: &str, now_ms: i64, max_ms: i64) -> Result<Option<String>> {
        let row: Option<(String, i64)> =
            sqlx::query_as("DELETE FROM web_login WHERE id_hash = $1 RETURNING data, created_ms")
                .bind(id_hash)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.and_then(|(data, created)| (created >= now_ms - max_ms).then_some(data)))
    }

    async fn take_token(
        &self,
        key: &str,
        bucket: Bucket,
        now_ms: i64,
    ) -> Result<std::result::Result<(), u64>> {
        let sql = take_token_sql(
            ["$1", "$2::float8", "$3::int8", "$4::float8"],
            "LEAST",
            "GREATEST",
        );
        let taken: Option<(f64,)> = sqlx::query_as(&sql)
            .bind(key)
            .bind(bucket.burst())
            .bind(now_ms)
            .bind(bucket.per_ms())
            .fetch_optional(&self.pool)
            .await?;
        if taken.is_some() {
            return Ok(Ok(()));
        }
        let (tokens,): (f64,) = sqlx::query_as(
            "SELECT LEAST($2::float8, tokens + GREATEST(0, $3::int8 - at_ms) * $4::float8) \
             FROM rate_bucket WHERE key = $1",
        )
        .bind(key)
        .bind(bucket.burst())
        .bind(now_ms)
        .bind(bucket.per_ms())
        .fetch_one(&self.pool)
        .await?;
        Ok(Err(bucket.wait_seconds(tokens)))
    }

    async fn forget_buckets(&self, before_ms: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM rate_bucket WHERE at_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn take_lease(&self, name: &str, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<bool> {
        let taken: Option<(String,)> =
            sqlx::query_as(&take_lease_sql(["$1", "$2", "$3::int8", "$4::int8"]))
                .bind(name)
                .bind(holder)
                .bind(now_ms)
                .bind(now_ms + ttl_ms)
                .fetch_optional(&self.pool)
                .await?;
        Ok(taken.is_some())
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM lease WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn use_once(&self, key_hash: &str, now_ms: i64, ttl_ms: i64) -> Result<bool> {
        sqlx::query("DELETE FROM launch_used WHERE expires_ms < $1")
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        let done = sqlx::query(
            "INSERT INTO launch_used (key_hash, expires_ms) VALUES ($1, $2) \
             ON CONFLICT (key_hash) DO NOTHING",
        )
        .bind(key_hash)
        .bind(now_ms + ttl_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
