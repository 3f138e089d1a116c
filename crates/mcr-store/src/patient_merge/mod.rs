//! Merges of index persons (the trait and its rows; each backend's `patient_merge.rs` runs the
//! same steps, written once here as [`merge_steps`] and [`unmerge_steps`]).
//!
//! A merge says two NHS numbers are one person: the retired number's index row leaves
//! `patient` (kept in the merge, so matching and search see one person), and what is about the
//! person moves to the survivor, each item listed so an unmerge moves back exactly that:
//!
//! - **source links** move (the record locator must ask every source under the survivor);
//! - **care events** and **care relationships** recorded in the gateway move (they are the
//!   person's care; the ADT A40 merge moves care events the same way);
//! - a **standing objection** (opt-out) of the retired number is carried to the survivor as a
//!   new objection row, unless the survivor already objects: the stricter wins, an opt-out is
//!   never lost. The retired number's own history stays as it was;
//! - **protection** (the protected person list) is carried the same way, and so is a
//!   **restriction** (PDS's S flag in `patient_status`): a restricted person's address and
//!   practice stay withheld, and their record is viewed only by the roles the region names;
//! - **permissions to view** and **emergency accesses** do not move: a permission was given
//!   for a view of that record, so the merged record is asked again (the safe side), and an
//!   emergency access is history, already alerted;
//! - **pairs in the review queue** naming the retired number are dropped (counted): the next
//!   sync finds them again against the survivor; **match decisions** stay as people made
//!   them, and the index reads them through the merge (a "not a match" with either number
//!   holds for both).
//!
//! While a merge stands, the store writes what arrives for the retired number to the survivor:
//! links, care events and governance records (and never writes its index row back), so a
//! later sync cannot undo it. An unmerge restores the retired row, moves back the links, care
//! events and relationships the merge moved, removes what it carried, sends links that arrived
//! while merged to review (both numbers, never guessed), and carries to the retired number an
//! objection recorded on the merged person while merged. Both are written in one transaction
//! with their audit record.

use crate::common::{get, parse_nhs, parse_ts, Statement, Value};
use crate::{AuditAppend, AuditRow, IndexedPatient, Result};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use mcr_domain::NhsNumber;
use sqlx::{ColumnIndex, Decode, Row, Type};
use std::sync::LazyLock;

mod merge;
mod unmerge;

pub(crate) use merge::{merge_in_tx, merge_steps};
pub(crate) use unmerge::{unmerge_in_tx, unmerge_steps};

/// A merge to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeRequest {
    /// The number that stops being a person of its own.
    pub retired: NhsNumber,
    /// The number the person is known by from now on.
    pub survivor: NhsNumber,
    /// Why (required: shown with the merge and kept with it).
    pub reason: String,
    /// Who (user id).
    pub by: String,
    pub at: DateTime<Utc>,
}

/// What a merge moved or carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeCounts {
    pub links_moved: u64,
    pub care_events_moved: u64,
    pub relationships_moved: u64,
    /// The retired number's standing objection was carried to the survivor.
    pub objection_carried: bool,
    /// The retired number's protection was carried to the survivor.
    pub protection_carried: bool,
    /// Pairs in the review queue naming the retired number, dropped.
    pub pairs_dropped: u64,
}

/// What an unmerge moved back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnmergeCounts {
    pub links_back: u64,
    /// Links that arrived while merged, sent to review against both numbers.
    pub sent_to_review: u64,
    pub care_events_back: u64,
    pub relationships_back: u64,
    /// An objection recorded on the merged person while merged was carried to the retired
    /// number.
    pub objection_carried_back: bool,
}

/// An unmerge: who, when, why, and what it moved back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmerged {
    pub by: String,
    pub at: DateTime<Utc>,
    pub reason: String,
    pub counts: UnmergeCounts,
}

/// A merge as kept: who, when, why, the retired number's index row, what moved, and its
/// unmerge if it was undone.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeRow {
    pub id: i64,
    pub retired: NhsNumber,
    pub survivor: NhsNumber,
    pub reason: String,
    pub merged_by: String,
    pub merged_at: DateTime<Utc>,
    pub retired_patient: IndexedPatient,
    pub counts: MergeCounts,
    pub undone: Option<Unmerged>,
}

/// An unmerge to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmergeRequest {
    pub merge_id: i64,
    pub reason: String,
    pub by: String,
    pub at: DateTime<Utc>,
}

/// How a merge or an unmerge ended.
#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "returned once per merge, never stored or held in a collection"
)]
pub enum MergeOutcome<T> {
    /// Done, with its audit record.
    Done(T, AuditRow),
    /// Not done, and why (in words for the person who asked); nothing was written.
    Refused(String),
}

/// Builds the audit record once the counts are known (inside the transaction).
pub type MergeAudit<'a, C> = dyn Fn(&C) -> AuditAppend + Send + Sync + 'a;

/// The most merges one listing returns.
pub const MERGE_LIST_MAX: u32 = 500;

#[async_trait]
pub trait MergeStore: Send + Sync {
    /// Merge `retired` into `survivor` and append the audit record `audit` makes from the
    /// counts, in one transaction. Refused (nothing written) when either number is not an
    /// index person, the retired number is already merged, the survivor is itself retired,
    /// other numbers are merged into the retired one (no chains), or a person decided that a
    /// record linked to the retired number is not the survivor.
    async fn merge_patients(
        &self,
        request: &MergeRequest,
        audit: &MergeAudit<'_, MergeCounts>,
        chain: &crate::ChainFn,
    ) -> Result<MergeOutcome<MergeRow>>;
    /// Undo a standing merge and append the audit record, in one transaction.
    async fn unmerge_patients(
        &self,
        request: &UnmergeRequest,
        audit: &MergeAudit<'_, UnmergeCounts>,
        chain: &crate::ChainFn,
    ) -> Result<MergeOutcome<MergeRow>>;
    /// Merges, standing and undone, newest first, at most [`MERGE_LIST_MAX`].
    async fn merges(&self) -> Result<Vec<MergeRow>>;
    async fn merge(&self, id: i64) -> Result<Option<MergeRow>>;
    /// The standing merge that retired this number, if any.
    async fn merged_into(&self, retired: &NhsNumber) -> Result<Option<MergeRow>>;
    /// Every standing merge as (retired, survivor).
    async fn merge_redirects(&self) -> Result<Vec<(NhsNumber, NhsNumber)>>;
}

pub(crate) const MERGE_COLUMNS: &str = "id, retired, survivor, reason, merged_by, merged_at, \
     family, given, birth_date, gender, postcode, address_line, gp_practice, \
     patient_updated_at, links_moved, care_events_moved, relationships_moved, objection_carried, \
     protection_carried, pairs_dropped, undone_by, undone_at, undo_reason, links_back, \
     sent_to_review, care_events_back, relationships_back, objection_carried_back";

/// A standing merge retiring the number in the statement's `$n`: appended to a `WHERE`.
pub(crate) const STANDING: &str = "undone_at IS NULL";

/// Rewrites what was written for a retired number to its survivor. Run after each batch of
/// links or care events, in the batch's transaction.
pub(crate) fn redirect_sql(table: &str) -> String {
    format!(
        "UPDATE {table} SET nhs_number = (SELECT m.survivor FROM patient_merge m \
         WHERE m.retired = {table}.nhs_number AND m.{STANDING}) \
         WHERE nhs_number IN (SELECT retired FROM patient_merge WHERE {STANDING})"
    )
}

/// The first half of `COALESCE(survivor, number)` in an insert's `VALUES`: a governance record
/// or care event written for a retired number is written for its survivor.
pub(crate) const SURVIVOR_OF: &str =
    "COALESCE((SELECT survivor FROM patient_merge WHERE undone_at IS NULL AND retired = ";

/// Removes index rows written for a retired number (a source still sending it): run after
/// each batch of patients, in the batch's transaction.
pub(crate) const DROP_RETIRED_PATIENTS: &str =
    "DELETE FROM patient WHERE nhs_number IN (SELECT retired FROM patient_merge WHERE undone_at IS NULL)";

/// The latest merges first, at most [`MERGE_LIST_MAX`].
pub(crate) fn merges() -> Statement<'static> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!("SELECT {MERGE_COLUMNS} FROM patient_merge ORDER BY id DESC LIMIT {MERGE_LIST_MAX}")
    });
    Statement::new(SQL.as_str(), vec![])
}

/// One merge by its id.
pub(crate) fn merge_by_id(id: i64) -> Statement<'static> {
    static SQL: LazyLock<String> =
        LazyLock::new(|| format!("SELECT {MERGE_COLUMNS} FROM patient_merge WHERE id = $1"));
    Statement::new(SQL.as_str(), vec![Value::Int(id)])
}

/// One merge by its id, its row locked until the transaction ends, for an unmerge on
/// PostgreSQL (SQLite's `BEGIN IMMEDIATE` holds the whole file already, and has no
/// `FOR UPDATE`).
pub(crate) fn merge_for_update(id: i64) -> Statement<'static> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!("SELECT {MERGE_COLUMNS} FROM patient_merge WHERE id = $1 FOR UPDATE")
    });
    Statement::new(SQL.as_str(), vec![Value::Int(id)])
}

/// The standing merge that retired this number.
pub(crate) fn merged_into(retired: &NhsNumber) -> Statement<'_> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!("SELECT {MERGE_COLUMNS} FROM patient_merge WHERE retired = $1 AND {STANDING}")
    });
    Statement::new(SQL.as_str(), vec![Value::Text(retired.as_str())])
}

/// Every standing merge as (retired, survivor), read with [`redirects_from`].
pub(crate) const REDIRECTS: &str =
    "SELECT retired, survivor FROM patient_merge WHERE undone_at IS NULL ORDER BY id";

fn count<'r, R>(row: &'r R, column: &str) -> Result<u64>
where
    R: Row,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    let n: i64 = get(row, column)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

pub(crate) fn merge_from_row<R>(row: &R) -> Result<MergeRow>
where
    R: Row,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> NaiveDate: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    let retired = parse_nhs("patient_merge.retired", &get::<_, String>(row, "retired")?)?;
    let undone_at: Option<String> = get(row, "undone_at")?;
    let back = |c: &str| -> Result<u64> {
        let n: Option<i64> = get(row, c)?;
        Ok(n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
    };
    let undone = match undone_at {
        None => None,
        Some(at) => Some(Unmerged {
            by: get::<_, Option<String>>(row, "undone_by")?.unwrap_or_default(),
            at: parse_ts("patient_merge.undone_at", &at)?,
            reason: get::<_, Option<String>>(row, "undo_reason")?.unwrap_or_default(),
            counts: UnmergeCounts {
                links_back: back("links_back")?,
                sent_to_review: back("sent_to_review")?,
                care_events_back: back("care_events_back")?,
                relationships_back: back("relationships_back")?,
                objection_carried_back: back("objection_carried_back")? > 0,
            },
        }),
    };
    Ok(MergeRow {
        id: get(row, "id")?,
        survivor: parse_nhs(
            "patient_merge.survivor",
            &get::<_, String>(row, "survivor")?,
        )?,
        reason: get(row, "reason")?,
        merged_by: get(row, "merged_by")?,
        merged_at: parse_ts(
            "patient_merge.merged_at",
            &get::<_, String>(row, "merged_at")?,
        )?,
        retired_patient: IndexedPatient {
            nhs_number: retired.clone(),
            family: get(row, "family")?,
            given: get(row, "given")?,
            birth_date: get(row, "birth_date")?,
            gender: get(row, "gender")?,
            postcode: get(row, "postcode")?,
            address: get(row, "address_line")?,
            gp_practice: get(row, "gp_practice")?,
            updated_at: parse_ts(
                "patient_merge.patient_updated_at",
                &get::<_, String>(row, "patient_updated_at")?,
            )?,
        },
        retired,
        counts: MergeCounts {
            links_moved: count(row, "links_moved")?,
            care_events_moved: count(row, "care_events_moved")?,
            relationships_moved: count(row, "relationships_moved")?,
            objection_carried: count(row, "objection_carried")? > 0,
            protection_carried: count(row, "protection_carried")? > 0,
            pairs_dropped: count(row, "pairs_dropped")?,
        },
        undone,
    })
}

/// Where a number's objection register stands: the latest opt-out or opt-back-in (`$1`).
pub(crate) const STANDING_OBJECTION: &str =
    "SELECT state FROM objection WHERE nhs_number = $1 AND state IN ('active', 'withdrawn') \
     ORDER BY at DESC, id DESC LIMIT 1";

pub(crate) fn redirects_from(rows: Vec<(String, String)>) -> Result<Vec<(NhsNumber, NhsNumber)>> {
    rows.into_iter()
        .map(|(r, s)| {
            Ok((
                parse_nhs("patient_merge.retired", &r)?,
                parse_nhs("patient_merge.survivor", &s)?,
            ))
        })
        .collect()
}
