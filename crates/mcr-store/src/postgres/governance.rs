//! Governance records on PostgreSQL.
//!
//! A change is written with its audit record through the audit's group commit: in one
//! transaction with the changes and records of the callers it was batched with, the governance
//! rows inserted first, then the audit records appended under the audit advisory lock exactly
//! as `append_audit` does (same sequencing and hashing); the commit releases the lock. A failed
//! append rolls the governance rows back.

use super::PostgresStore;
use crate::governance::{governance, governance_from};
use crate::{
    AuditAppend, AuditRow, ChainFn, GovernanceChange, GovernanceRecords, GovernanceStore, Result,
};
use async_trait::async_trait;
use mcr_domain::NhsNumber;

#[async_trait]
impl GovernanceStore for PostgresStore {
    async fn record_governance(
        &self,
        change: &GovernanceChange,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<AuditRow> {
        // Concurrent changes in this process share one transaction with their audit records
        // (group commit).
        self.group_append(Some(change), audit, chain).await
    }

    async fn governance(&self, nhs: &NhsNumber) -> Result<GovernanceRecords> {
        let rows = governance(nhs).query().fetch_all(&self.pool).await?;
        governance_from(&rows)
    }
}
