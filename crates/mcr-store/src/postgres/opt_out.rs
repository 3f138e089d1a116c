//! Opt-out requests and the decisions on them on PostgreSQL.

use super::audit::append_audit_in_tx;
use super::PostgresStore;
use crate::opt_out::{
    decide_request, insert_request, list_limit, request_from_row, OptOutDecision, OptOutRequestRow,
    OptOutState, OptOutStore, BY_REFERENCE, COLUMNS, DECIDE_REQUEST, INSERT_REQUEST,
};
use crate::{AuditAppend, AuditRow, ChainFn, Result};
use async_trait::async_trait;
use sqlx::{Postgres, QueryBuilder};

#[async_trait]
impl OptOutStore for PostgresStore {
    async fn add_opt_out_request(
        &self,
        r: &OptOutRequestRow,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<AuditRow> {
        let mut tx = self.pool.begin().await?;
        insert_request(sqlx::query(INSERT_REQUEST), r)
            .execute(&mut *tx)
            .await?;
        let row = append_audit_in_tx(&mut tx, audit, chain).await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn opt_out_requests(
        &self,
        state: Option<OptOutState>,
        limit: u32,
    ) -> Result<Vec<OptOutRequestRow>> {
        let mut qb =
            QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM opt_out_request"));
        if let Some(s) = state {
            qb.push(" WHERE state = ").push_bind(s.as_str());
        }
        qb.push(" ORDER BY received_at, reference LIMIT ")
            .push_bind(list_limit(limit));
        qb.build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(request_from_row)
            .collect()
    }

    async fn opt_out_request(&self, reference: &str) -> Result<Option<OptOutRequestRow>> {
        sqlx::query(BY_REFERENCE.as_str())
            .bind(reference)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(request_from_row)
            .transpose()
    }

    async fn decide_opt_out_request(
        &self,
        d: &OptOutDecision,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<Option<AuditRow>> {
        let mut tx = self.pool.begin().await?;
        let done = decide_request(sqlx::query(DECIDE_REQUEST), d)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        let row = append_audit_in_tx(&mut tx, audit, chain).await?;
        tx.commit().await?;
        Ok(Some(row))
    }
}
