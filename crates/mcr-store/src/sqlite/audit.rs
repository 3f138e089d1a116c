//! The audit trail's appends and reads on SQLite, and the group commit that writes governance
//! changes with their audit records.

use super::{SqliteStore, IMMEDIATE};
use crate::audit::{
    audit_from_row, audit_rows, chained, head_or_genesis, insert_rows, push_search, AUDIT_HEAD,
};
use crate::{AuditAppend, AuditFilter, AuditRow, AuditStore, ChainFn, Result, StoreError};
use async_trait::async_trait;
use sqlx::{Connection as _, QueryBuilder, Sqlite, SqliteConnection};

/// Appends one audit record inside a transaction opened after [`SqliteStore::begin_append`]:
/// assigns the next sequence number, reads the previous hash, computes the new hash with
/// `chain` and inserts. The caller commits (or drops the transaction to roll back).
pub(crate) async fn append_audit_in_tx(
    conn: &mut SqliteConnection,
    record: &AuditAppend,
    chain: &ChainFn,
) -> Result<AuditRow> {
    let head = read_head(&mut *conn).await?;
    let mut rows = chained(head, std::slice::from_ref(record), chain);
    insert_audit_rows(&mut *conn, &rows).await?;
    rows.pop()
        .ok_or_else(|| StoreError::Corrupt("an audit append made no row".into()))
}

/// The chain's last record: its sequence number and hash (the genesis hash before the first).
async fn read_head(conn: &mut SqliteConnection) -> Result<(i64, String)> {
    let last = sqlx::query_as(AUDIT_HEAD).fetch_optional(conn).await?;
    Ok(head_or_genesis(last))
}

/// Inserts `rows` in one statement: outside a transaction SQLite commits it on its own, all
/// or nothing, with one sync of the log.
async fn insert_audit_rows<'c>(
    conn: impl sqlx::Executor<'c, Database = Sqlite>,
    rows: &[AuditRow],
) -> std::result::Result<(), sqlx::Error> {
    insert_rows(rows).query().execute(conn).await?;
    Ok(())
}

impl SqliteStore {
    /// Writes a batch of audit records, with the governance changes they record, and returns
    /// their rows once committed.
    ///
    /// A batch of audit records alone is usually one statement: the chain head is the one
    /// this handle last wrote. If another writer of the same file (another process) appended
    /// since, the statement meets its sequence number and fails whole; then, whenever the head
    /// is not known, and whenever the batch holds a governance change, the changes and records
    /// are written in one `BEGIN IMMEDIATE` transaction, which no other writer can come between.
    async fn write_audit_batch(
        &self,
        batch: &[crate::group_commit::Entry],
        chain: &ChainFn,
    ) -> Result<Vec<AuditRow>> {
        let written = self.try_write_audit_batch(batch, chain).await;
        if written.is_err() {
            self.writer_failed();
        }
        written
    }

    async fn try_write_audit_batch(
        &self,
        batch: &[crate::group_commit::Entry],
        chain: &ChainFn,
    ) -> Result<Vec<AuditRow>> {
        // Taken, not copied: it is put back only after a commit, so no failure leaves it stale.
        let known = self
            .head
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let records = || batch.iter().map(|e| &e.record);
        let mut writer = self.write_conn().await?;
        let changes = batch.iter().any(|e| e.change.is_some());
        if let (Some(head), false) = (known, changes) {
            let rows = chained(head, records(), chain);
            match insert_audit_rows(&mut *writer, &rows).await {
                Ok(()) => {
                    self.remember_head(&rows);
                    return Ok(rows);
                }
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut tx = writer.begin_with(IMMEDIATE).await?;
        for change in batch.iter().filter_map(|e| e.change.as_ref()) {
            let mut qb = QueryBuilder::<Sqlite>::new("");
            crate::governance::push_change(&mut qb, change);
            qb.build().execute(&mut *tx).await?;
        }
        let head = read_head(&mut tx).await?;
        let rows = chained(head, records(), chain);
        insert_audit_rows(&mut *tx, &rows).await?;
        tx.commit().await?;
        self.remember_head(&rows);
        Ok(rows)
    }

    /// Appends `record`, with the governance change it records, through the group commit.
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
                self.write_audit_batch(&batch, chain).await
            })
            .await
    }

    fn remember_head(&self, rows: &[AuditRow]) {
        if let Some(last) = rows.last() {
            *self
                .head
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some((last.seq, last.hash.clone()));
        }
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, record: &AuditAppend, chain: &ChainFn) -> Result<AuditRow> {
        // Concurrent appends share one statement (group commit); the append lock is taken by
        // the group's leader.
        self.group_append(None, record, chain).await
    }

    async fn audit_rows(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditRow>> {
        audit_rows(after_seq, limit)
            .fetch_all(&self.read, audit_from_row)
            .await
    }

    async fn search_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>> {
        let mut qb = QueryBuilder::<Sqlite>::new("");
        push_search(&mut qb, filter);
        let rows = qb.build().fetch_all(&self.read).await?;
        rows.iter().map(audit_from_row).collect()
    }
}
