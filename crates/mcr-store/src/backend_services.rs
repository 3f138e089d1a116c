//! What the gateways of a region share for SMART backend services (system-to-system callers):
//! the `jti` of every client assertion until its `exp`, so a replay is refused by whichever
//! gateway it reaches, and the access tokens issued (by hash; what they hold is the web
//! layer's own JSON), so any gateway accepts a token another issued. Both backends, one
//! statement per call. Times are Unix milliseconds from the caller's clock.

use crate::{PostgresStore, Result, SqliteStore};
use async_trait::async_trait;

#[async_trait]
pub trait BackendServicesStore: Send + Sync {
    /// Remember `client_id`'s assertion `jti` until `expires_ms`: `true` the first time,
    /// `false` when it is already remembered (a replay). Forgets expired ones on the way.
    async fn remember_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<bool>;
    /// Keep an issued access token's data until `expires_ms`; forgets expired tokens on the way.
    async fn put_system_token(
        &self,
        id_hash: &str,
        data: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<()>;
    /// An issued token's data with its expiry, while it has not expired at `now_ms`.
    async fn system_token(&self, id_hash: &str, now_ms: i64) -> Result<Option<(String, i64)>>;
}

#[async_trait]
impl BackendServicesStore for SqliteStore {
    async fn remember_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<bool> {
        let mut writer = self.write_conn().await?;
        sqlx::query("DELETE FROM client_assertion WHERE expires_ms < ?1")
            .bind(now_ms)
            .execute(&mut *writer)
            .await?;
        let new: Option<(String,)> = sqlx::query_as(
            "INSERT INTO client_assertion (client_id, jti, expires_ms) VALUES (?1, ?2, ?3) \
             ON CONFLICT (client_id, jti) DO NOTHING RETURNING jti",
        )
        .bind(client_id)
        .bind(jti)
        .bind(expires_ms)
        .fetch_optional(&mut *writer)
        .await?;
        Ok(new.is_some())
    }

    async fn put_system_token(
        &self,
        id_hash: &str,
        data: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<()> {
        let mut writer = self.write_conn().await?;
        sqlx::query("DELETE FROM system_token WHERE expires_ms < ?1")
            .bind(now_ms)
            .execute(&mut *writer)
            .await?;
        sqlx::query("INSERT INTO system_token (id_hash, data, expires_ms) VALUES (?1, ?2, ?3)")
            .bind(id_hash)
            .bind(data)
            .bind(expires_ms)
            .execute(&mut *writer)
            .await?;
        Ok(())
    }

    async fn system_token(&self, id_hash: &str, now_ms: i64) -> Result<Option<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT data, expires_ms FROM system_token WHERE id_hash = ?1 AND expires_ms > ?2",
        )
        .bind(id_hash)
        .bind(now_ms)
        .fetch_optional(&self.read)
        .await?)
    }
}

#[async_trait]
impl BackendServicesStore for PostgresStore {
    async fn remember_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<bool> {
        sqlx::query("DELETE FROM client_assertion WHERE expires_ms < $1")
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        let new: Option<(String,)> = sqlx::query_as(
            "INSERT INTO client_assertion (client_id, jti, expires_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (client_id, jti) DO NOTHING RETURNING jti",
        )
        .bind(client_id)
        .bind(jti)
        .bind(expires_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(new.is_some())
    }

    async fn put_system_token(
        &self,
        id_hash: &str,
        data: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "WITH gone AS (DELETE FROM system_token WHERE expires_ms < $4) \
             INSERT INTO system_token (id_hash, data, expires_ms) VALUES ($1, $2, $3)",
        )
        .bind(id_hash)
        .bind(data)
        .bind(expires_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn system_token(&self, id_hash: &str, now_ms: i64) -> Result<Option<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT data, expires_ms FROM system_token WHERE id_hash = $1 AND expires_ms > $2",
        )
        .bind(id_hash)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?)
    }
}
