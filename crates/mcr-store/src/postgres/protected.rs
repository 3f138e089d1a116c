//! The protected person list on PostgreSQL.

use super::PostgresStore;
use crate::common::{Statement, Value};
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
        let write = insert_person(Statement::sql(INSERT_PERSON.as_str()), p);
        self.audited(&[write], audit, chain).await
    }

    async fn remove_protected_person(
        &self,
        nhs: &NhsNumber,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<Option<AuditRow>> {
        let write = Statement::new(REMOVE_PERSON, vec![Value::Text(nhs.as_str())]);
        self.audited_if_one(write, audit, chain).await
    }

    async fn protected_persons(&self) -> Result<Vec<ProtectedPersonRow>> {
        Statement::sql(LIST.as_str())
            .fetch_all(&self.pool, person_from_row)
            .await
    }
}
