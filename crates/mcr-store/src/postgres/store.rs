//! The whole store on PostgreSQL: its schema, its health and the record view's one read.
//!
//! Whether the store takes writes (`probe_write`, for `/readyz`) is a real write of one row
//! per gateway instance (`store_probe`) through the pool the audit trail writes with: a
//! standby or an unreachable server makes it fail with the reason.

use super::PostgresStore;
use crate::common::ts;
use crate::common::Dialect;
use crate::governance::{view_inputs_from, view_inputs_sql};
use crate::{Result, Store, StoreError};
use async_trait::async_trait;
use mcr_domain::NhsNumber;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[async_trait]
impl Store for PostgresStore {
    async fn migrate(&self) -> Result<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn view_inputs(&self, nhs: &NhsNumber) -> Result<crate::ViewInputs> {
        static SQL: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| view_inputs_sql(Dialect::Postgres));
        let answer: String = sqlx::query_scalar(SQL.as_str())
            .bind(nhs.as_str())
            .fetch_one(&self.pool)
            .await?;
        view_inputs_from(&answer)
    }

    async fn probe_write(&self, instance: &str, at: chrono::DateTime<chrono::Utc>) -> Result<()> {
        sqlx::query(
            "INSERT INTO store_probe (instance, probed_at) VALUES ($1, $2) \
             ON CONFLICT (instance) DO UPDATE SET probed_at = excluded.probed_at",
        )
        .bind(instance)
        .bind(ts(&at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
