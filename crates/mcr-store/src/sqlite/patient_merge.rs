//! Merges of index persons on SQLite: the steps of [`crate::patient_merge`] in one
//! `BEGIN IMMEDIATE` transaction on the writer, with the audit record.

use super::audit::append_audit_in_tx;
use super::{SqliteStore, IMMEDIATE};
use crate::patient_merge::{
    merge_by_id, merge_from_row, merge_in_tx, merged_into, merges, redirects_from, unmerge_in_tx,
    MergeAudit, MergeCounts, MergeOutcome, MergeRequest, MergeRow, MergeStore, UnmergeCounts,
    UnmergeRequest, REDIRECTS,
};
use crate::{ChainFn, Result};
use async_trait::async_trait;
use mcr_domain::NhsNumber;

#[async_trait]
impl MergeStore for SqliteStore {
    async fn merge_patients(
        &self,
        request: &MergeRequest,
        audit: &MergeAudit<'_, MergeCounts>,
        chain: &ChainFn,
    ) -> Result<MergeOutcome<MergeRow>> {
        let (_one_chain, mut writer) = self.begin_append().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *writer, IMMEDIATE).await?;
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
        let (_one_chain, mut writer) = self.begin_append().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *writer, IMMEDIATE).await?;
        let done = unmerge_in_tx!(
            tx,
            append_audit_in_tx,
            request,
            merge_by_id(request.merge_id),
            audit,
            chain
        )?;
        if let MergeOutcome::Done(..) = done {
            tx.commit().await?;
        }
        Ok(done)
    }

    async fn merges(&self) -> Result<Vec<MergeRow>> {
        merges().fetch_all(&self.read, merge_from_row).await
    }

    async fn merge(&self, id: i64) -> Result<Option<MergeRow>> {
        merge_by_id(id)
            .fetch_optional(&self.read, merge_from_row)
            .await
    }

    async fn merged_into(&self, retired: &NhsNumber) -> Result<Option<MergeRow>> {
        merged_into(retired)
            .fetch_optional(&self.read, merge_from_row)
            .await
    }

    async fn merge_redirects(&self) -> Result<Vec<(NhsNumber, NhsNumber)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(REDIRECTS).fetch_all(&self.read).await?;
        redirects_from(rows)
    }
}
