//! [`Runner`] on SQLite: reads on the reader pool; a write with its audit record in one
//! `BEGIN IMMEDIATE` transaction on the chain's writer.

use super::audit::append_audit_in_tx;
use super::{SqliteStore, IMMEDIATE};
use crate::common::Statement;
use crate::runner::{id_from_row, Reader, Runner, WritesAfter};
use crate::{AuditAppend, AuditRow, ChainFn, Result};
use async_trait::async_trait;
use sqlx::Connection as _;

#[async_trait]
impl Runner for SqliteStore {
    async fn fetch_all<T: Send>(
        &self,
        statement: &Statement<'_>,
        read: Reader<T>,
    ) -> Result<Vec<T>> {
        statement.fetch_all(&self.read, read.sqlite).await
    }

    async fn fetch_optional<T: Send>(
        &self,
        statement: &Statement<'_>,
        read: Reader<T>,
    ) -> Result<Option<T>> {
        statement.fetch_optional(&self.read, read.sqlite).await
    }

    async fn written(&self, writes: &[Statement<'_>]) -> Result<()> {
        let mut writer = self.write_conn().await?;
        let mut tx = writer.begin().await?;
        for write in writes {
            write.query().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn audited(
        &self,
        writes: &[Statement<'_>],
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<AuditRow> {
        let (_one_chain, mut writer) = self.begin_append().await?;
        let mut tx = writer.begin_with(IMMEDIATE).await?;
        for write in writes {
            write.query().execute(&mut *tx).await?;
        }
        let row = append_audit_in_tx(&mut tx, audit, chain).await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn audited_if_one(
        &self,
        write: Statement<'_>,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<Option<AuditRow>> {
        let (_one_chain, mut writer) = self.begin_append().await?;
        let mut tx = writer.begin_with(IMMEDIATE).await?;
        if write.query().execute(&mut *tx).await?.rows_affected() != 1 {
            return Ok(None);
        }
        let row = append_audit_in_tx(&mut tx, audit, chain).await?;
        tx.commit().await?;
        Ok(Some(row))
    }

    async fn audited_after_ids(
        &self,
        reads: &[Statement<'_>],
        writes: &WritesAfter<'_, '_>,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<Option<AuditRow>> {
        let (_one_chain, mut writer) = self.begin_append().await?;
        let mut tx = writer.begin_with(IMMEDIATE).await?;
        let mut found = Vec::with_capacity(reads.len());
        for read in reads {
            found.push(read.fetch_optional(&mut *tx, id_from_row).await?);
        }
        let Some(writes) = writes(&found)? else {
            return Ok(None);
        };
        for write in &writes {
            write.query().execute(&mut *tx).await?;
        }
        let row = append_audit_in_tx(&mut tx, audit, chain).await?;
        tx.commit().await?;
        Ok(Some(row))
    }
}
