//! What the gateways share for SMART backend services (assertion `jti`s, issued tokens) on
//! PostgreSQL.

use super::PostgresStore;
use crate::backend_services::{
    forget_assertions, remember_assertion, system_token, BackendServicesStore,
};
use crate::Result;
use async_trait::async_trait;

#[async_trait]
impl BackendServicesStore for PostgresStore {
    async fn remember_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<bool> {
        forget_assertions(now_ms)
            .query()
            .execute(&self.pool)
            .await?;
        let new: Option<(String,)> = remember_assertion(client_id, jti, expires_ms)
            .query_as()
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
        // The expired tokens go in the same statement (a data-modifying WITH, which SQLite
        // does not have: it runs the two on its one writer).
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
        Ok(system_token(id_hash, now_ms)
            .query_as()
            .fetch_optional(&self.pool)
            .await?)
    }
}
