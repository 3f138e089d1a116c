//! Opt-out requests and the decisions on them on SQLite.

use super::SqliteStore;
use crate::common::{Statement, Value};
use crate::opt_out::{
    decide_request, insert_request, request_from_row, requests, OptOutDecision, OptOutRequestRow,
    OptOutState, OptOutStore, BY_REFERENCE, DECIDE_REQUEST, INSERT_REQUEST,
};
use crate::{AuditAppend, AuditRow, ChainFn, Result};
use async_trait::async_trait;

#[async_trait]
impl OptOutStore for SqliteStore {
    async fn add_opt_out_request(
        &self,
        r: &OptOutRequestRow,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<AuditRow> {
        let write = insert_request(Statement::sql(INSERT_REQUEST), r);
        self.audited(&[write], audit, chain).await
    }

    async fn opt_out_requests(
        &self,
        state: Option<OptOutState>,
        limit: u32,
    ) -> Result<Vec<OptOutRequestRow>> {
        requests(state, limit)
            .fetch_all(&self.read, request_from_row)
            .await
    }

    async fn opt_out_request(&self, reference: &str) -> Result<Option<OptOutRequestRow>> {
        Statement::new(BY_REFERENCE.as_str(), vec![Value::Text(reference)])
            .fetch_optional(&self.read, request_from_row)
            .await
    }

    async fn decide_opt_out_request(
        &self,
        d: &OptOutDecision,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<Option<AuditRow>> {
        let write = decide_request(Statement::sql(DECIDE_REQUEST), d);
        self.audited_if_one(write, audit, chain).await
    }
}
