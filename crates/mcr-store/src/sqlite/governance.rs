//! Governance records on SQLite.
//!
//! A change is written with its audit record through the audit's group commit: in the same
//! `BEGIN IMMEDIATE` transaction on the single writer connection as the records and changes
//! of the callers it was batched with, the governance rows inserted before the audit records,
//! so a failed append rolls the governance rows back.

use super::SqliteStore;
use crate::governance::{governance, governance_from};
use crate::{
    AuditAppend, AuditRow, ChainFn, GovernanceChange, GovernanceRecords, GovernanceStore, Result,
};
use async_trait::async_trait;
use mcr_domain::NhsNumber;

#[async_trait]
impl GovernanceStore for SqliteStore {
    async fn record_governance(
        &self,
        change: &GovernanceChange,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<AuditRow> {
        // Concurrent changes share one transaction with their audit records (group commit).
        self.group_append(Some(change), audit, chain).await
    }

    async fn governance(&self, nhs: &NhsNumber) -> Result<GovernanceRecords> {
        let rows = governance(nhs).query().fetch_all(&self.read).await?;
        governance_from(&rows)
    }
}
