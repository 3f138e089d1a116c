//! What the Personal Demographics Service, or a source's own security label, says of an index
//! patient: restricted (their address and registered practice are never shown) and deceased.
//! One row per NHS number, no clinical data. Both backends (`sqlite/patient_status.rs`,
//! `postgres/patient_status.rs`).

use crate::common::{parse_nhs, parse_ts};
use crate::{Result, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcr_domain::NhsNumber;
use sqlx::Row;

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
}

pub(crate) const COLUMNS: &str = "nhs_number, restricted, deceased, said_by, updated_at";

/// Keep a held restriction unless PDS itself says the patient is not restricted.
pub(crate) const UPSERT: &str = " ON CONFLICT (nhs_number) DO UPDATE SET \
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
