//! What the Personal Demographics Service, or a source's own security label, says of an index
//! patient: restricted (their address and registered practice are never shown) and deceased.
//! One row per NHS number, no clinical data. The trait, its rows and the statements, run on
//! either backend through [`crate::runner::Runner`].

use crate::common::{parse_nhs, parse_ts, ts, Statement, Value};
use crate::runner::{Reader, Runner};
use crate::{Result, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcr_domain::NhsNumber;
use sqlx::Row;
use std::collections::HashSet;
use std::sync::LazyLock;

/// One patient's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientStatusRow {
    pub nhs_number: NhsNumber,
    /// Restricted (PDS `meta.security` R, or a source's R/V label).
    pub restricted: bool,
    /// `deceasedDateTime` as PDS sent it.
    pub deceased: Option<String>,
    /// `pds` or `source-label`.
    pub said_by: String,
    pub updated_at: DateTime<Utc>,
}

#[async_trait]
pub trait PatientStatusStore: Send + Sync {
    /// Write these statuses, replacing what was held for each NHS number, in one transaction.
    /// A restriction is never lifted by a row that does not say so itself: a `source-label`
    /// row that is not restricted leaves a held restriction in place.
    async fn put_patient_statuses(&self, rows: &[PatientStatusRow]) -> Result<()>;
    /// What is held for one patient.
    async fn patient_status(&self, nhs: &NhsNumber) -> Result<Option<PatientStatusRow>>;
    /// Which of these patients are restricted, in as few reads as the backend allows (a
    /// page listing many patients asks once).
    async fn restricted_among(&self, nhs: &[NhsNumber]) -> Result<HashSet<NhsNumber>>;
}

/// How many NHS numbers one `restricted_among` statement names.
pub(crate) const AMONG_CHUNK: usize = 500;

/// `SELECT nhs_number … WHERE restricted AND nhs_number IN (…)` for `chunk` (each row read
/// with [`restricted_number`]).
pub(crate) fn restricted_among(chunk: &[NhsNumber]) -> Statement<'_> {
    let list: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
    Statement::new(
        format!(
            "SELECT nhs_number FROM patient_status WHERE restricted AND nhs_number IN ({})",
            list.join(", ")
        ),
        chunk.iter().map(|n| Value::Text(n.as_str())).collect(),
    )
}

/// An NHS number a [`restricted_among`] statement returned.
pub(crate) fn restricted_number<R>(row: &R) -> Result<NhsNumber>
where
    R: Row,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    let s: String = row
        .try_get("nhs_number")
        .map_err(|_| StoreError::Corrupt("patient_status.nhs_number cannot be read".into()))?;
    parse_nhs("patient_status.nhs_number", &s)
}

pub(crate) const COLUMNS: &str = "nhs_number, restricted, deceased, said_by, updated_at";

/// Keep a held restriction unless PDS itself says the patient is not restricted.
const UPSERT: &str = " ON CONFLICT (nhs_number) DO UPDATE SET \
     restricted = CASE WHEN excluded.said_by = 'pds' THEN excluded.restricted \
                       ELSE (patient_status.restricted OR excluded.restricted) END, \
     deceased = COALESCE(excluded.deceased, patient_status.deceased), \
     said_by = excluded.said_by, updated_at = excluded.updated_at";

pub(crate) fn status_from_row<R>(row: &R) -> Result<PatientStatusRow>
where
    R: Row,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    let bad = |c: &str| StoreError::Corrupt(format!("patient_status.{c} cannot be read"));
    let text = |c: &str| -> Result<String> { row.try_get::<String, _>(c).map_err(|_| bad(c)) };
    Ok(PatientStatusRow {
        nhs_number: parse_nhs("patient_status.nhs_number", &text("nhs_number")?)?,
        restricted: row
            .try_get::<bool, _>("restricted")
            .map_err(|_| bad("restricted"))?,
        deceased: row
            .try_get::<Option<String>, _>("deceased")
            .map_err(|_| bad("deceased"))?,
        said_by: text("said_by")?,
        updated_at: parse_ts("patient_status.updated_at", &text("updated_at")?)?,
    })
}

/// One patient's status written (see [`UPSERT`]).
pub(crate) fn put_status(r: &PatientStatusRow) -> Statement<'_> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!("INSERT INTO patient_status ({COLUMNS}) VALUES ($1, $2, $3, $4, $5){UPSERT}")
    });
    Statement::new(
        SQL.as_str(),
        vec![
            Value::Text(r.nhs_number.as_str()),
            Value::Flag(r.restricted),
            Value::OptText(r.deceased.as_deref()),
            Value::Text(&r.said_by),
            Value::Owned(ts(&r.updated_at)),
        ],
    )
}

/// One patient's status.
pub(crate) fn status_of(nhs: &NhsNumber) -> Statement<'_> {
    static SQL: LazyLock<String> =
        LazyLock::new(|| format!("SELECT {COLUMNS} FROM patient_status WHERE nhs_number = $1"));
    Statement::new(SQL.as_str(), vec![Value::Text(nhs.as_str())])
}

/// Both backends run the same statements: [`Runner`] says on which connection.
#[async_trait]
impl<S: Runner> PatientStatusStore for S {
    async fn put_patient_statuses(&self, rows: &[PatientStatusRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let writes: Vec<Statement<'_>> = rows.iter().map(put_status).collect();
        self.written(&writes).await
    }

    async fn patient_status(&self, nhs: &NhsNumber) -> Result<Option<PatientStatusRow>> {
        let read = Reader::new(status_from_row, status_from_row);
        self.fetch_optional(&status_of(nhs), read).await
    }

    async fn restricted_among(&self, nhs: &[NhsNumber]) -> Result<HashSet<NhsNumber>> {
        let mut out = HashSet::new();
        for chunk in nhs.chunks(AMONG_CHUNK) {
            let read = Reader::new(restricted_number, restricted_number);
            out.extend(self.fetch_all(&restricted_among(chunk), read).await?);
        }
        Ok(out)
    }
}
