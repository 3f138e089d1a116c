//! The protected person list on PostgreSQL.

use super::audit::append_audit_in_tx;
use super::PostgresStore;
use crate::protected::{
    insert_person, person_from_row, ProtectedPersonRow, ProtectedPersonStore, INSERT_PERSON, LIST,
    REMOVE_PERSON,
};
use crate::{AuditAppend, AuditRow, ChainFn, Result};
use async_trait::async_trait;
use mcr_domain::NhsNumber;

#[async_trait]
impl ProtectedPersonStore for PostgresStore {
    async fn add_protected_person(
        &self,
        p: &ProtectedPersonRow,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<AuditRow> {
        let mut tx = self.pool.begin().await?;
        insert_person(sqlx::query(&INSERT_PERSON), p)
            .execute(&mut *tx)
            .await?;
        let row = append_audit_in_tx(&mut tx, audit, chain).await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn remove_protected_person(
        &self,
        nhs: &NhsNumber,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<Option<AuditRow>> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(REMOVE_PERSON)
            .bind(nhs.as_str())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        let row = append_audit_in_tx(&mut tx, audit, chain).await?;
        tx.commit().await?;
        Ok(Some(row))
    }

    async fn protected_persons(&self) -> Result<Vec<ProtectedPersonRow>> {
        sqlx::query(&LIST)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(person_from_row)
            .collect()
    }
}
