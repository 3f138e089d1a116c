//! Merges of index persons on PostgreSQL: the steps of [`crate::patient_merge`] in one
//! transaction (the audit advisory lock taken first), with the audit record.

use super::audit::append_audit_in_tx;
use super::PostgresStore;
use crate::patient_merge::{
    merge_by_id, merge_for_update, merge_from_row, merge_in_tx, merged_into, merges,
    redirects_from, unmerge_in_tx, MergeAudit, MergeCounts, MergeOutcome, MergeRequest, MergeRow,
    MergeStore, UnmergeCounts, UnmergeRequest, REDIRECTS,
};
use crate::{ChainFn, Result};
use async_trait::async_trait;
use mcr_domain::NhsNumber;

#[async_trait]
impl MergeStore for PostgresStore {
    async fn merge_patients(
        &self,
        request: &MergeRequest,
        audit: &MergeAudit<'_, MergeCounts>,
        chain: &ChainFn,
    ) -> Result<MergeOutcome<MergeRow>> {
        let mut tx = self.pool.begin().await?;
        // One merge at a time: the checks below hold until the commit.
        take_merge_lock(&mut tx).await?;
        let done = merge_in_tx!(tx, append_audit_in_tx, request, audit, chain)?;
        if let MergeOutcome::Done(..) = done {
            tx.commit().await?;
        }
        Ok(done)
    }

    async fn unmerge_patients(
        &self,
        request: &UnmergeRequest,
        audit: &MergeAudit<'_, UnmergeCounts>,
        chain: &ChainFn,
    ) -> Result<MergeOutcome<MergeRow>> {
        let mut tx = self.pool.begin().await?;
        take_merge_lock(&mut tx).await?;
        let done = unmerge_in_tx!(
            tx,
            append_audit_in_tx,
            request,
            merge_for_update(request.merge_id),
            audit,
            chain
        )?;
        if let MergeOutcome::Done(..) = done {
            tx.commit().await?;
        }
        Ok(done)
    }

    async fn merges(&self) -> Result<Vec<MergeRow>> {
        merges().fetch_all(&self.pool, merge_from_row).await
    }

    async fn merge(&self, id: i64) -> Result<Option<MergeRow>> {
        merge_by_id(id)
            .fetch_optional(&self.pool, merge_from_row)
            .await
    }

    async fn merged_into(&self, retired: &NhsNumber) -> Result<Option<MergeRow>> {
        merged_into(retired)
            .fetch_optional(&self.pool, merge_from_row)
            .await
    }

    async fn merge_redirects(&self) -> Result<Vec<(NhsNumber, NhsNumber)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(REDIRECTS).fetch_all(&self.pool).await?;
        redirects_from(rows)
    }
}

/// Merges and unmerges one at a time across processes ("MCRMERGE" in ASCII), so two at once
/// cannot make a chain; taken before the audit lock, never after it.
const MERGE_LOCK_KEY: i64 = 0x4D43_524D_4552_4745;

async fn take_merge_lock(tx: &mut sqlx::PgConnection) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MERGE_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
