//! The whole store on SQLite: its schema, its health and the record view's one read.
//!
//! Whether the store takes writes (`probe_write`, for `/readyz`) is a real write of one row
//! per gateway instance (`store_probe`) through the connection the audit trail writes with: a
//! full disk or a read-only file makes it fail with the reason.

use super::SqliteStore;
use crate::common::ts;
use crate::common::Dialect;
use crate::governance::{view_inputs_from, view_inputs_sql};
use crate::{Result, Store, StoreError};
use async_trait::async_trait;
use mcr_domain::NhsNumber;

/// The probe's row carries this many random bytes: about a busy moment's batch of audit
/// records. A full disk can still take a tiny row into log space a failed write left
/// allocated; a probe this size fits only where an audit write would. Random, because SQLite
/// does not rewrite overflow pages whose content an update leaves the same.
const PROBE_PAD_BYTES: i64 = 64 * 1024;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<()> {
        MIGRATOR
            .run_direct(&mut *self.write_conn().await?)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    async fn view_inputs(&self, nhs: &NhsNumber) -> Result<crate::ViewInputs> {
        static SQL: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| view_inputs_sql(Dialect::Sqlite));
        let answer = self.read_for_view(SQL.as_str(), nhs.as_str())?;
        view_inputs_from(&answer)
    }

    async fn probe_write(&self, instance: &str, at: chrono::DateTime<chrono::Utc>) -> Result<()> {
        let written = async {
            let mut writer = self.write_conn().await?;
            sqlx::query(
                "INSERT INTO store_probe (instance, probed_at, pad) \
                 VALUES (?1, ?2, randomblob(?3)) ON CONFLICT (instance) \
                 DO UPDATE SET probed_at = excluded.probed_at, pad = excluded.pad",
            )
            .bind(instance)
            .bind(ts(&at))
            .bind(PROBE_PAD_BYTES)
            .execute(&mut *writer)
            .await?;
            Ok(())
        }
        .await;
        if written.is_err() {
            self.writer_failed();
        }
        written
    }
}
