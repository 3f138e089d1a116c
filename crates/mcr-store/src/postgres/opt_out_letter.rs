//! Opt-out verification letters and the attempts at their codes on PostgreSQL.

use super::PostgresStore;
use crate::common::{Statement, Value};
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
        let write = insert_letter(Statement::sql(INSERT_LETTER.as_str()), l);
        self.audited_if_one(write, audit, chain).await
    }

    async fn opt_out_letter(&self, reference: &str) -> Result<Option<OptOutLetterRow>> {
        Statement::new(BY_REFERENCE.as_str(), vec![Value::Text(reference)])
            .fetch_optional(&self.pool, letter_from_row)
            .await
    }

    async fn record_letter_attempt(
        &self,
        reference: &str,
        attempt: LetterAttempt,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<Option<AuditRow>> {
        let write = letter_attempt(Statement::sql, reference, attempt);
        self.audited_if_one(write, audit, chain).await
    }
}
