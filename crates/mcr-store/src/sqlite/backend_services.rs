//! What the gateways share for SMART backend services (assertion `jti`s, issued tokens) on SQLite.

use super::SqliteStore;
use crate::backend_services::{
    forget_assertions, remember_assertion, system_token, BackendServicesStore,
};
use crate::Result;
use async_trait::async_trait;

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
        forget_assertions(now_ms)
            .query()
            .execute(&mut *writer)
            .await?;
        let new: Option<(String,)> = remember_assertion(client_id, jti, expires_ms)
            .query_as()
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
        Ok(system_token(id_hash, now_ms)
            .query_as()
            .fetch_optional(&self.read)
            .await?)
    }
}
