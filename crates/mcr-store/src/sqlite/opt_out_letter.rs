//! Opt-out verification letters and the attempts at their codes on SQLite.

use super::audit::append_audit_in_tx;
use super::{SqliteStore, IMMEDIATE};
use crate::common::ts;
use crate::opt_out_letter::{
    attempt_sql, confirmed_at, letter_from_row, LetterAttempt, OptOutLetterRow, OptOutLetterStore,
    COLUMNS,
};
use crate::{AuditAppend, AuditRow, ChainFn, Result};
use async_trait::async_trait;

#[async_trait]
impl OptOutLetterStore for SqliteStore {
    async fn add_opt_out_letter(
        &self,
        l: &OptOutLetterRow,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<Option<AuditRow>> {
        let (_one_chain, mut writer) = self.begin_append().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *writer, IMMEDIATE).await?;
        let done = sqlx::query(&format!(
            "INSERT INTO opt_out_letter ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, NULL) \
             ON CONFLICT (reference) DO NOTHING"
        ))
        .bind(&l.reference)
        .bind(l.nhs_number.as_str())
        .bind(&l.code_hash)
        .bind(&l.sent_to)
        .bind(&l.sent_by)
        .bind(ts(&l.sent_at))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        let row = append_audit_in_tx(&mut tx, audit, chain).await?;
        tx.commit().await?;
        Ok(Some(row))
    }

    async fn opt_out_letter(&self, reference: &str) -> Result<Option<OptOutLetterRow>> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM opt_out_letter WHERE reference = ?1"
        ))
        .bind(reference)
        .fetch_optional(&self.read)
        .await?
        .as_ref()
        .map(letter_from_row)
        .transpose()
    }

    async fn record_letter_attempt(
        &self,
        reference: &str,
        attempt: LetterAttempt,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<Option<AuditRow>> {
        let (_one_chain, mut writer) = self.begin_append().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *writer, IMMEDIATE).await?;
        let sql = attempt_sql(attempt, |n| format!("?{n}"));
        let mut q = sqlx::query(&sql).bind(reference);
        if let Some(at) = confirmed_at(attempt) {
            q = q.bind(at);
        }
        if q.execute(&mut *tx).await?.rows_affected() != 1 {
            return Ok(None);
        }
        let row = append_audit_in_tx(&mut tx, audit, chain).await?;
        tx.commit().await?;
        Ok(Some(row))
    }
}
