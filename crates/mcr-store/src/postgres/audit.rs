//! The audit trail's appends and reads on PostgreSQL, and the group commit that writes
//! governance changes with their audit records.

use super::PostgresStore;
use crate::audit::{
    audit_from_row, audit_rows, chained, head_or_genesis, insert_rows, push_search, AUDIT_HEAD,
};
use crate::{AuditAppend, AuditFilter, AuditRow, AuditStore, ChainFn, Result, StoreError};
use async_trait::async_trait;
use sqlx::{PgConnection, Postgres, QueryBuilder};

/// The advisory lock key that serialises audit appends ("MCRAUDIT" in ASCII).
const AUDIT_LOCK_KEY: i64 = 0x4D43_5241_5544_4954;

/// Appends one audit record inside the caller's transaction: takes the audit advisory lock
/// (held until that transaction ends), assigns the next sequence number, reads the previous
/// hash, computes the new hash with `chain` and inserts. The caller commits (or drops the
/// transaction to roll back).
pub(crate) async fn append_audit_in_tx(
    conn: &mut PgConnection,
    record: &AuditAppend,
    chain: &ChainFn,
) -> Result<AuditRow> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(AUDIT_LOCK_KEY)
        .execute(&mut *conn)
        .await?;
    let head = head_or_genesis(
        sqlx::query_as(AUDIT_HEAD)
            .fetch_optional(&mut *conn)
            .await?,
    );
    let mut rows = chained(head, [record], chain);
    insert_rows(&rows).query().execute(&mut *conn).await?;
    rows.pop()
        .ok_or_else(|| StoreError::Corrupt("an audit append made no row".into()))
}

impl PostgresStore {
    /// Appends `record`, with the governance change it records, through the group commit:
    /// the batch's changes and records in one transaction.
    pub(crate) async fn group_append(
        &self,
        change: Option<&crate::GovernanceChange>,
        record: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<AuditRow> {
        let entry = crate::group_commit::Entry {
            change: change.cloned(),
            record: record.clone(),
        };
        self.group
            .append(&self.append, entry, |batch| async move {
                let mut tx = self.pool.begin().await?;
                for change in batch.iter().filter_map(|e| e.change.as_ref()) {
                    let mut qb = QueryBuilder::<Postgres>::new("");
                    crate::governance::push_change(&mut qb, change);
                    qb.build().execute(&mut *tx).await?;
                }
                let mut rows = Vec::with_capacity(batch.len());
                for e in &batch {
                    rows.push(append_audit_in_tx(&mut tx, &e.record, chain).await?);
                }
                // synchronous_commit is left at the server's setting (on by default): the
                // commit returns once the records are on disk.
                tx.commit().await?;
                Ok(rows)
            })
            .await
    }
}

#[async_trait]
impl AuditStore for PostgresStore {
    async fn append_audit(&self, record: &AuditAppend, chain: &ChainFn) -> Result<AuditRow> {
        // Concurrent appends in this process share one transaction (group commit).
        self.group_append(None, record, chain).await
    }

    async fn audit_rows(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditRow>> {
        audit_rows(after_seq, limit)
            .fetch_all(&self.pool, audit_from_row)
            .await
    }

    async fn search_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>> {
        let mut qb = QueryBuilder::<Postgres>::new("");
        push_search(&mut qb, filter);
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter().map(audit_from_row).collect()
    }
}
