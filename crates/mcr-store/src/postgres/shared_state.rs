//! State the gateways of a region share (sessions, sign-ins, token buckets, leases) on PostgreSQL.

use super::PostgresStore;
use crate::common::Statement;
use crate::shared_state::{
    end_session, forget_buckets, forget_launches, lease_values, release_lease, take_lease_sql,
    take_login, take_token_sql, token_values, tokens_left_sql, touch_session_sql, touch_values,
    use_launch, Bucket, SharedStateStore,
};
use crate::Result;
use async_trait::async_trait;
use std::sync::LazyLock;

/// The placeholders of [`take_token_sql`] and [`tokens_left_sql`] (key, burst, now, rate), typed where PostgreSQL cannot infer a type from arithmetic.
const TOKEN_PARAMS: [&str; 4] = ["$1", "$2::float8", "$3::int8", "$4::float8"];
/// The placeholders of [`take_lease_sql`] (name, holder, now, until), typed likewise.
const LEASE_PARAMS: [&str; 4] = ["$1", "$2", "$3::int8", "$4::int8"];

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
        static SQL: LazyLock<String> = LazyLock::new(|| touch_session_sql("GREATEST"));
        let data: Option<(String,)> =
            Statement::new(SQL.as_str(), touch_values(id_hash, now_ms, idle_ms, max_ms))
                .query_as()
                .fetch_optional(&self.pool)
                .await?;
        Ok(data.map(|(d,)| d))
    }

    async fn end_session(&self, id_hash: &str) -> Result<()> {
        end_session(id_hash).query().execute(&self.pool).await?;
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
        let row: Option<(String, i64)> = take_login(id_hash)
            .query_as()
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
        static TAKE: LazyLock<String> =
            LazyLock::new(|| take_token_sql(TOKEN_PARAMS, "LEAST", "GREATEST"));
        static LEFT: LazyLock<String> =
            LazyLock::new(|| tokens_left_sql(TOKEN_PARAMS, "LEAST", "GREATEST"));
        let taken: Option<(f64,)> =
            Statement::new(TAKE.as_str(), token_values(key, bucket, now_ms))
                .query_as()
                .fetch_optional(&self.pool)
                .await?;
        if taken.is_some() {
            return Ok(Ok(()));
        }
        let (tokens,): (f64,) = Statement::new(LEFT.as_str(), token_values(key, bucket, now_ms))
            .query_as()
            .fetch_one(&self.pool)
            .await?;
        Ok(Err(bucket.wait_seconds(tokens)))
    }

    async fn forget_buckets(&self, before_ms: i64) -> Result<u64> {
        let done = forget_buckets(before_ms)
            .query()
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn take_lease(&self, name: &str, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<bool> {
        static SQL: LazyLock<String> = LazyLock::new(|| take_lease_sql(LEASE_PARAMS));
        let taken: Option<(String,)> =
            Statement::new(SQL.as_str(), lease_values(name, holder, now_ms, ttl_ms))
                .query_as()
                .fetch_optional(&self.pool)
                .await?;
        Ok(taken.is_some())
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        release_lease(name, holder)
            .query()
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn use_once(&self, key_hash: &str, now_ms: i64, ttl_ms: i64) -> Result<bool> {
        forget_launches(now_ms).query().execute(&self.pool).await?;
        let done = use_launch(key_hash, now_ms + ttl_ms)
            .query()
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
