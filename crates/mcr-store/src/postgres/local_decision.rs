//! What people decide about a source record and a local identity, on PostgreSQL: the
//! statements of [`crate::local_decision`] on the pool, a decision in one transaction with its
//! audit record (the audit advisory lock taken by the append).

use super::audit::append_audit_in_tx;
use super::PostgresStore;
use crate::local_decision::{
    candidates_of, check_local_decision, check_origin, decision_writes, decisions, id_from_row,
    link_of, local_decision_from_row, open_person, origin_of, LocalDecisionRow, LocalDecisionStore,
};
use crate::local_identity::{local_candidate_from_row, local_link_from_row};
use crate::{AuditAppend, AuditRow, ChainFn, LocalCandidateRow, LocalLink, Result};
use async_trait::async_trait;
use mcr_domain::SourceId;

#[async_trait]
impl LocalDecisionStore for PostgresStore {
    async fn local_decisions(&self) -> Result<Vec<LocalDecisionRow>> {
        decisions()
            .fetch_all(&self.pool, local_decision_from_row)
            .await
    }

    async fn local_candidates_of(
        &self,
        source: &SourceId,
        local_id: &str,
    ) -> Result<Vec<LocalCandidateRow>> {
        candidates_of(source, local_id)
            .fetch_all(&self.pool, local_candidate_from_row)
            .await
    }

    async fn local_link_of(&self, source: &SourceId, local_id: &str) -> Result<Option<LocalLink>> {
        link_of(source, local_id)
            .fetch_optional(&self.pool, local_link_from_row)
            .await
    }

    async fn decide_local_match(
        &self,
        d: &LocalDecisionRow,
        link: Option<&LocalLink>,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<Option<AuditRow>> {
        check_local_decision(d, link)?;
        let mut tx = self.pool.begin().await?;
        if open_person(d)
            .fetch_optional(&mut *tx, id_from_row)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        check_origin(d, origin_of(d).fetch_optional(&mut *tx, id_from_row).await?)?;
        for write in decision_writes(d, link) {
            write.query().execute(&mut *tx).await?;
        }
        let row = append_audit_in_tx(&mut tx, audit, chain).await?;
        tx.commit().await?;
        Ok(Some(row))
    }
}
