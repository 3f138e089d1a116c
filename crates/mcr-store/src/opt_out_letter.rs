//! Verification letters for opt-out requests (the trait, its rows and the
//! statements, run on either backend through [`crate::runner::Runner`]): the letter sent (a hash of its
//! one-time code, never the code), each attempt to enter the code, and its confirmation, each
//! written in one transaction with its audit record.

use crate::common::{parse_nhs, parse_ts, ts, Bind, Statement, Value};
use crate::runner::{Reader, Runner};
use crate::{AuditAppend, AuditRow, ChainFn, Result, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcr_domain::NhsNumber;
use sqlx::Row;
use std::sync::LazyLock;

/// A letter posted for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptOutLetterRow {
    /// The request it verifies.
    pub reference: String,
    /// The patient the privacy officer matched the request to (the letter went to their address).
    pub nhs_number: NhsNumber,
    /// A hash of the one-time code (see the gateway); the code itself is never stored.
    pub code_hash: String,
    /// Where it went, in words (e.g. the postcode of the address the index holds).
    pub sent_to: String,
    pub sent_by: String,
    pub sent_at: DateTime<Utc>,
    pub wrong_attempts: i64,
    pub confirmed_at: Option<DateTime<Utc>>,
}

/// The outcome of one attempt at the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LetterAttempt {
    Wrong,
    Confirmed(DateTime<Utc>),
}

#[async_trait]
pub trait OptOutLetterStore: Send + Sync {
    /// Record a letter and append `audit` in one transaction. `None` (nothing written) when
    /// the request already has a letter.
    async fn add_opt_out_letter(
        &self,
        letter: &OptOutLetterRow,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<Option<AuditRow>>;
    async fn opt_out_letter(&self, reference: &str) -> Result<Option<OptOutLetterRow>>;
    /// Count a wrong code, or confirm the letter, and append `audit`, in one transaction.
    /// `None` (nothing written) when there is no unconfirmed letter for `reference`.
    async fn record_letter_attempt(
        &self,
        reference: &str,
        attempt: LetterAttempt,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<Option<AuditRow>>;
}

pub(crate) const COLUMNS: &str = "reference, nhs_number, code_hash, sent_to, sent_by, sent_at, \
                       wrong_attempts, confirmed_at";

pub(crate) fn letter_from_row<R>(row: &R) -> Result<OptOutLetterRow>
where
    R: Row,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    let bad = |c: &str| StoreError::Corrupt(format!("opt_out_letter.{c} cannot be read"));
    let text = |c: &str| -> Result<String> { row.try_get::<String, _>(c).map_err(|_| bad(c)) };
    Ok(OptOutLetterRow {
        reference: text("reference")?,
        nhs_number: parse_nhs("opt_out_letter.nhs_number", &text("nhs_number")?)?,
        code_hash: text("code_hash")?,
        sent_to: text("sent_to")?,
        sent_by: text("sent_by")?,
        sent_at: parse_ts("opt_out_letter.sent_at", &text("sent_at")?)?,
        wrong_attempts: row
            .try_get::<i64, _>("wrong_attempts")
            .map_err(|_| bad("wrong_attempts"))?,
        confirmed_at: row
            .try_get::<Option<String>, _>("confirmed_at")
            .map_err(|_| bad("confirmed_at"))?
            .map(|t| parse_ts("opt_out_letter.confirmed_at", &t))
            .transpose()?,
    })
}

/// A new letter (no row written: its reference is taken).
pub(crate) fn insert_letter<Q: Bind>(q: Q, l: &OptOutLetterRow) -> Q {
    q.text(&l.reference)
        .text(l.nhs_number.as_str())
        .text(&l.code_hash)
        .text(&l.sent_to)
        .text(&l.sent_by)
        .text(ts(&l.sent_at))
}

pub(crate) static INSERT_LETTER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO opt_out_letter ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, 0, NULL) \
         ON CONFLICT (reference) DO NOTHING"
    )
});

/// One letter by its reference.
pub(crate) static BY_REFERENCE: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {COLUMNS} FROM opt_out_letter WHERE reference = $1"));

/// An attempt at a letter's code while it is unconfirmed: its statement and values. A wrong
/// code counts, a right one confirms; only an unconfirmed letter changes.
pub(crate) fn letter_attempt<Q: Bind>(
    query: impl FnOnce(&'static str) -> Q,
    reference: &str,
    attempt: LetterAttempt,
) -> Q {
    match attempt {
        LetterAttempt::Wrong => query(
            "UPDATE opt_out_letter SET wrong_attempts = wrong_attempts + 1 \
             WHERE reference = $1 AND confirmed_at IS NULL",
        )
        .text(reference),
        LetterAttempt::Confirmed(at) => query(
            "UPDATE opt_out_letter SET confirmed_at = $2 \
             WHERE reference = $1 AND confirmed_at IS NULL",
        )
        .text(reference)
        .text(ts(&at)),
    }
}

/// Both backends run the same statements: [`Runner`] says on which connection.
#[async_trait]
impl<S: Runner> OptOutLetterStore for S {
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
        let one = Statement::new(BY_REFERENCE.as_str(), vec![Value::Text(reference)]);
        let read = Reader::new(letter_from_row, letter_from_row);
        self.fetch_optional(&one, read).await
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
