//! Opt-out verification letters and the attempts at their codes on PostgreSQL.

use super::audit::append_audit_in_tx;
use super::PostgresStore;
use crate::opt_out_letter::{
    insert_letter, letter_attempt, letter_from_row, LetterAttempt, OptOutLetterRow,
    OptOutLetterStore, BY_REFERENCE, INSERT_LETTER,
};
use crate::{AuditAppend, AuditRow, ChainFn, Result};
use async_trait::async_trait;

#[async_trait]
impl OptOutLetterStore for PostgresStore {
    async fn add_opt_out_letter(
        &self,
        l: &OptOutLetterRow,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<Option<AuditRow>> {
        let mut tx = self.pool.begin().await?;
        let done = insert_letter(sqlx::query(&INSERT_LETTER), l)
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
        sqlx::query(BY_REFERENCE.as_str())
            .bind(reference)
            .fetch_optional(&self.pool)
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
        let mut tx = self.pool.begin().await?;
        let q = letter_attempt(sqlx::query, reference, attempt);
        if q.execute(&mut *tx).await?.rows_affected() != 1 {
            return Ok(None);
        }
        let row = append_audit_in_tx(&mut tx, audit, chain).await?;
        tx.commit().await?;
        Ok(Some(row))
    }
}
