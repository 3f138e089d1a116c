//! State the gateways of a region share (sessions, sign-ins, token buckets, leases) on PostgreSQL.

use super::PostgresStore;
use crate::shared_state::{take_lease_sql, take_token_sql, Bucket, SharedStateStore};
use crate::Result;
use async_trait::async_trait;

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
