//! The protected person list (staff members, public figures) that privacy officers keep: a view
//! of one of them raises a flag: the trait, its rows and the statements,
//! run on either backend through [`crate::runner::Runner`]. Each change is written with its audit record in
//! one transaction, so neither exists without the other.

use crate::common::{parse_nhs, parse_ts, ts, Bind, Statement, Value};
use crate::runner::{Reader, Runner};
use crate::{AuditAppend, AuditRow, ChainFn, Result, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcr_domain::NhsNumber;
use sqlx::Row;
use std::sync::LazyLock;

/// One person on the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedPersonRow {
    pub nhs_number: NhsNumber,
    /// `staff`, `public-figure` or `other` (the gateway checks).
    pub category: String,
    /// Why they are on the list, in the privacy officer's words (no clinical data).
    pub note: String,
    pub added_by: String,
    pub added_at: DateTime<Utc>,
}

/// The most people one listing returns.
pub const PROTECTED_LIST_MAX: u32 = 100_000;

#[async_trait]
pub trait ProtectedPersonStore: Send + Sync {
    /// Put a person on the list (or replace their category and note) and append `audit`, in
    /// one transaction.
    async fn add_protected_person(
        &self,
        person: &ProtectedPersonRow,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<AuditRow>;
    /// Take a person off the list and append `audit`, in one transaction. `None` (and nothing
    /// written) when they were not on it.
    async fn remove_protected_person(
        &self,
        nhs: &NhsNumber,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<Option<AuditRow>>;
    /// Everyone on the list, by NHS number, at most [`PROTECTED_LIST_MAX`].
    async fn protected_persons(&self) -> Result<Vec<ProtectedPersonRow>>;
}

pub(crate) const COLUMNS: &str = "nhs_number, category, note, added_by, added_at";

pub(crate) fn person_from_row<R>(row: &R) -> Result<ProtectedPersonRow>
where
    R: Row,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    let text = |c: &str| -> Result<String> {
        row.try_get::<String, _>(c)
            .map_err(|_| StoreError::Corrupt(format!("protected_person.{c} cannot be read")))
    };
    Ok(ProtectedPersonRow {
        nhs_number: parse_nhs("protected_person.nhs_number", &text("nhs_number")?)?,
        category: text("category")?,
        note: text("note")?,
        added_by: text("added_by")?,
        added_at: parse_ts("protected_person.added_at", &text("added_at")?)?,
    })
}

pub(crate) const UPSERT: &str =
    " ON CONFLICT (nhs_number) DO UPDATE SET category = excluded.category, \
     note = excluded.note, added_by = excluded.added_by, added_at = excluded.added_at";

/// A person put on the list (or their entry replaced).
pub(crate) fn insert_person<Q: Bind>(q: Q, p: &ProtectedPersonRow) -> Q {
    q.text(p.nhs_number.as_str())
        .text(&p.category)
        .text(&p.note)
        .text(&p.added_by)
        .text(ts(&p.added_at))
}

pub(crate) static INSERT_PERSON: LazyLock<String> = LazyLock::new(|| {
    format!("INSERT INTO protected_person ({COLUMNS}) VALUES ($1, $2, $3, $4, $5){UPSERT}")
});

pub(crate) const REMOVE_PERSON: &str = "DELETE FROM protected_person WHERE nhs_number = $1";

pub(crate) static LIST: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {COLUMNS} FROM protected_person ORDER BY nhs_number LIMIT {PROTECTED_LIST_MAX}")
});

/// Both backends run the same statements: [`Runner`] says on which connection.
#[async_trait]
impl<S: Runner> ProtectedPersonStore for S {
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
        let read = Reader::new(person_from_row, person_from_row);
        self.fetch_all(&Statement::sql(LIST.as_str()), read).await
    }
}
