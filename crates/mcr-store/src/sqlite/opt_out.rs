//! Opt-out requests and the decisions on them on SQLite.

use super::audit::append_audit_in_tx;
use super::{SqliteStore, IMMEDIATE};
use crate::common::ts;
use crate::opt_out::{
    birth, list_limit, request_from_row, OptOutDecision, OptOutRequestRow, OptOutState,
    OptOutStore, COLUMNS,
};
use crate::{AuditAppend, AuditRow, ChainFn, Result};
use async_trait::async_trait;
use mcr_domain::NhsNumber;
use sqlx::{QueryBuilder, Sqlite};

#[async_trait]
impl OptOutStore for SqliteStore {
    async fn add_opt_out_request(
        &self,
        r: &OptOutRequestRow,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<AuditRow> {
        let (_one_chain, mut writer) = self.begin_append().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *writer, IMMEDIATE).await?;
        sqlx::query(
            "INSERT INTO opt_out_request (reference, received_at, given_name, family_name, birth_date, \
             nhs_number, postcode, contact, state, kind) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'received', ?9)",
        )
        .bind(&r.reference)
        .bind(ts(&r.received_at))
        .bind(&r.given_name)
        .bind(&r.family_name)
        .bind(birth(r))
        .bind(r.nhs_number.as_ref().map(NhsNumber::as_str))
        .bind(&r.postcode)
        .bind(&r.contact)
        .bind(r.kind.as_str())
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
        let mut qb = QueryBuilder::<Sqlite>::new(format!("SELECT {COLUMNS} FROM opt_out_request"));
        if let Some(s) = state {
            qb.push(" WHERE state = ").push_bind(s.as_str());
        }
        qb.push(" ORDER BY received_at, reference LIMIT ")
            .push_bind(list_limit(limit));
        qb.build()
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(request_from_row)
            .collect()
    }

    async fn opt_out_request(&self, reference: &str) -> Result<Option<OptOutRequestRow>> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM opt_out_request WHERE reference = ?1"
        ))
        .bind(reference)
        .fetch_optional(&self.read)
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
        let (_one_chain, mut writer) = self.begin_append().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *writer, IMMEDIATE).await?;
        let done = sqlx::query(
            "UPDATE opt_out_request SET state = ?2, matched_nhs = ?3, decided_by = ?4, decided_at = ?5, \
             decision_note = ?6 WHERE reference = ?1 AND state = 'received'",
        )
        .bind(&d.reference)
        .bind(d.state.as_str())
        .bind(d.matched_nhs.as_ref().map(NhsNumber::as_str))
        .bind(&d.decided_by)
        .bind(ts(&d.decided_at))
        .bind(d.note.as_deref())
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
