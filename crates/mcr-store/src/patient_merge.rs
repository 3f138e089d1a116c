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
     family, given, birth_date, gender, postcode, gp_practice, patient_updated_at, \
     links_moved, care_events_moved, relationships_moved, objection_carried, \
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

/// The merge's steps inside a transaction, for either backend: `$tx` is the open transaction
/// (`&mut *tx` is a connection), `$append` is the backend's `append_audit_in_tx`; the
/// statements' `$n` parameters serve both backends. Evaluates to
/// `Result<MergeOutcome<i64>>` (the merge's id); the caller commits on `Done`.
macro_rules! merge_steps {
    ($tx:ident, $append:path, $req:expr, $audit:expr, $chain:expr) => {{
        use $crate::common::ts;
        use $crate::patient_merge::{MergeCounts, MergeOutcome};
        let req = $req;
        let (retired, survivor) = (req.retired.as_str(), req.survivor.as_str());
        let refuse = |why: String| Ok::<_, $crate::StoreError>(MergeOutcome::Refused(why));
        loop {
            if retired == survivor {
                break refuse("A number cannot be merged into itself.".into());
            }
            let held: Vec<(String,)> = sqlx::query_as(
                "SELECT nhs_number FROM patient WHERE nhs_number IN ($1, $2)",
            )
            .bind(retired)
            .bind(survivor)
            .fetch_all(&mut *$tx)
            .await?;
            let into: Option<(String,)> = sqlx::query_as(
                "SELECT survivor FROM patient_merge WHERE retired = $1 AND undone_at IS NULL",
            )
            .bind(retired)
            .fetch_optional(&mut *$tx)
            .await?;
            if let Some((s,)) = into {
                break refuse(format!(
                    "NHS number {} is already merged into {}.",
                    req.retired.formatted(),
                    mcr_domain::NhsNumber::parse(&s).map(|n| n.formatted()).unwrap_or(s)
                ));
            }
            let survivor_retired: Option<(String,)> = sqlx::query_as(
                "SELECT survivor FROM patient_merge WHERE retired = $1 AND undone_at IS NULL",
            )
            .bind(survivor)
            .fetch_optional(&mut *$tx)
            .await?;
            if survivor_retired.is_some() {
                break refuse(format!(
                    "NHS number {} was itself merged into another record: merge into that one.",
                    req.survivor.formatted()
                ));
            }
            let chained: (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM patient_merge WHERE survivor = $1 AND undone_at IS NULL",
            )
            .bind(retired)
            .fetch_one(&mut *$tx)
            .await?;
            if chained.0 > 0 {
                break refuse(format!(
                    "Other NHS numbers are merged into {}: undo those merges first, or merge them into {} directly.",
                    req.retired.formatted(),
                    req.survivor.formatted()
                ));
            }
            if held.len() < 2 {
                break refuse(format!(
                    "Both NHS numbers must be patients in the index ({} and {}).",
                    req.retired.formatted(),
                    req.survivor.formatted()
                ));
            }
            let ruled_out: (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM match_decision d JOIN source_link l \
                 ON l.source = d.source AND l.local_id = d.local_id \
                 WHERE l.nhs_number = $1 AND d.nhs_number = $2 AND d.decision = 'not-a-match'",
            )
            .bind(retired)
            .bind(survivor)
            .fetch_one(&mut *$tx)
            .await?;
            if ruled_out.0 > 0 {
                break refuse(format!(
                    "{} record(s) linked to {} were decided not a match for {}: they cannot be one person unless that decision is wrong.",
                    ruled_out.0,
                    req.retired.formatted(),
                    req.survivor.formatted()
                ));
            }

            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO patient_merge (retired, survivor, reason, merged_by, merged_at, \
                 family, given, family_norm, given_norm, birth_date, gender, postcode, \
                 postcode_norm, gp_practice, patient_updated_at) \
                 SELECT nhs_number, $2, $3, $4, $5, family, given, family_norm, given_norm, \
                 birth_date, gender, postcode, postcode_norm, gp_practice, updated_at \
                 FROM patient WHERE nhs_number = $1 RETURNING id",
            )
            .bind(retired)
            .bind(survivor)
            .bind(&req.reason)
            .bind(&req.by)
            .bind(ts(&req.at))
            .fetch_one(&mut *$tx)
            .await?;
            let mut counts = MergeCounts::default();
            // The survivor's own links (kept, so an unmerge can tell what arrived later),
            // then the retired number's (moved).
            for (kind, of) in [("kept-link", survivor), ("link", retired)] {
                sqlx::query(
                    "INSERT INTO patient_merge_item (merge_id, kind, source, local_id) \
                     SELECT $1, $2, source, local_id FROM source_link WHERE nhs_number = $3",
                )
                .bind(id)
                .bind(kind)
                .bind(of)
                .execute(&mut *$tx)
                .await?;
            }
            counts.links_moved = sqlx::query(
                "UPDATE source_link SET nhs_number = $2 WHERE nhs_number = $1",
            )
            .bind(retired)
            .bind(survivor)
            .execute(&mut *$tx)
            .await?
            .rows_affected();
            for (kind, table) in [("care-event", "care_event"), ("relationship", "relationship")] {
                sqlx::query(&format!(
                    "INSERT INTO patient_merge_item (merge_id, kind, row_id) \
                     SELECT $1, $2, id FROM {table} WHERE nhs_number = $3"
                ))
                .bind(id)
                .bind(kind)
                .bind(retired)
                .execute(&mut *$tx)
                .await?;
                let moved = sqlx::query(&format!(
                    "UPDATE {table} SET nhs_number = $2 WHERE nhs_number = $1"
                ))
                .bind(retired)
                .bind(survivor)
                .execute(&mut *$tx)
                .await?
                .rows_affected();
                if table == "care_event" {
                    counts.care_events_moved = moved;
                } else {
                    counts.relationships_moved = moved;
                }
            }
            // The stricter wins: the retired number's standing objection holds on the
            // merged person unless the survivor already objects.
            let standing = $crate::patient_merge::STANDING_OBJECTION;
            let retired_objects: Option<(String,)> = sqlx::query_as(standing)
                .bind(retired)
                .fetch_optional(&mut *$tx)
                .await?;
            let survivor_objects: Option<(String,)> = sqlx::query_as(standing)
                .bind(survivor)
                .fetch_optional(&mut *$tx)
                .await?;
            let active = |o: &Option<(String,)>| o.as_ref().is_some_and(|(s,)| s == "active");
            if active(&retired_objects) && !active(&survivor_objects) {
                let (oid,): (i64,) = sqlx::query_as(
                    "INSERT INTO objection (nhs_number, state, recorded_by, on_whose_word, \
                     override_reason, by_role, note, at, ends_at) \
                     VALUES ($1, 'active', $2, $3, NULL, NULL, $4, $5, NULL) RETURNING id",
                )
                .bind(survivor)
                .bind(&req.by)
                .bind(format!("merged-record:{retired}"))
                .bind(format!(
                    "Carried from NHS number {} when it was merged into this record.",
                    req.retired.formatted()
                ))
                .bind(ts(&req.at))
                .fetch_one(&mut *$tx)
                .await?;
                sqlx::query(
                    "INSERT INTO patient_merge_item (merge_id, kind, row_id) VALUES ($1, 'objection', $2)",
                )
                .bind(id)
                .bind(oid)
                .execute(&mut *$tx)
                .await?;
                counts.objection_carried = true;
            }
            counts.protection_carried = sqlx::query(
                "INSERT INTO protected_person (nhs_number, category, note, added_by, added_at) \
                 SELECT $2, category, note, $3, $4 FROM protected_person p WHERE p.nhs_number = $1 \
                 AND NOT EXISTS (SELECT 1 FROM protected_person s WHERE s.nhs_number = $2)",
            )
            .bind(retired)
            .bind(survivor)
            .bind(&req.by)
            .bind(ts(&req.at))
            .execute(&mut *$tx)
            .await?
            .rows_affected()
                > 0;
            if counts.protection_carried {
                sqlx::query(
                    "INSERT INTO patient_merge_item (merge_id, kind) VALUES ($1, 'protection')",
                )
                .bind(id)
                .execute(&mut *$tx)
                .await?;
            }
            // A restriction (PDS's S flag) holds on the merged person too: the retired
            // number's restricted status is carried to the survivor unless it is restricted
            // already, listed (with whether the survivor had a status row) for the unmerge.
            let retired_restricted: Option<(bool,)> = sqlx::query_as(
                "SELECT restricted FROM patient_status WHERE nhs_number = $1",
            )
            .bind(retired)
            .fetch_optional(&mut *$tx)
            .await?;
            let survivor_status: Option<(bool,)> = sqlx::query_as(
                "SELECT restricted FROM patient_status WHERE nhs_number = $1",
            )
            .bind(survivor)
            .fetch_optional(&mut *$tx)
            .await?;
            if retired_restricted.is_some_and(|(r,)| r) && !survivor_status.is_some_and(|(r,)| r) {
                sqlx::query(
                    "INSERT INTO patient_status (nhs_number, restricted, deceased, said_by, updated_at) \
                     VALUES ($1, TRUE, NULL, 'merge', $2) ON CONFLICT (nhs_number) DO UPDATE SET \
                     restricted = TRUE, said_by = 'merge', updated_at = excluded.updated_at",
                )
                .bind(survivor)
                .bind(ts(&req.at))
                .execute(&mut *$tx)
                .await?;
                sqlx::query(
                    "INSERT INTO patient_merge_item (merge_id, kind, row_id) VALUES ($1, 'restriction', $2)",
                )
                .bind(id)
                .bind(i64::from(survivor_status.is_some()))
                .execute(&mut *$tx)
                .await?;
            }
            counts.pairs_dropped = sqlx::query("DELETE FROM match_candidate WHERE nhs_number = $1")
                .bind(retired)
                .execute(&mut *$tx)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM patient WHERE nhs_number = $1")
                .bind(retired)
                .execute(&mut *$tx)
                .await?;
            let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            sqlx::query(
                "UPDATE patient_merge SET links_moved = $2, care_events_moved = $3, \
                 relationships_moved = $4, objection_carried = $5, protection_carried = $6, \
                 pairs_dropped = $7 WHERE id = $1",
            )
            .bind(id)
            .bind(n(counts.links_moved))
            .bind(n(counts.care_events_moved))
            .bind(n(counts.relationships_moved))
            .bind(i64::from(counts.objection_carried))
            .bind(i64::from(counts.protection_carried))
            .bind(n(counts.pairs_dropped))
            .execute(&mut *$tx)
            .await?;
            let row = $append(&mut *$tx, &($audit)(&counts), $chain).await?;
            break Ok(MergeOutcome::Done(id, row));
        }
    }};
}
pub(crate) use merge_steps;

/// The unmerge's steps inside a transaction, as [`merge_steps`]. `$merge` is the merge as
/// read in the transaction (a standing one).
macro_rules! unmerge_steps {
    ($tx:ident, $append:path, $req:expr, $merge:expr, $audit:expr, $chain:expr) => {{
        use $crate::common::ts;
        use $crate::patient_merge::{MergeOutcome, UnmergeCounts};
        let req = $req;
        let merge: &$crate::patient_merge::MergeRow = $merge;
        let id = merge.id;
        let (retired, survivor) = (merge.retired.as_str(), merge.survivor.as_str());
        let mut counts = UnmergeCounts::default();
        sqlx::query(
            "INSERT INTO patient (nhs_number, family, given, family_norm, given_norm, \
             birth_date, gender, postcode, postcode_norm, gp_practice, updated_at) \
             SELECT retired, family, given, family_norm, given_norm, birth_date, gender, \
             postcode, postcode_norm, gp_practice, patient_updated_at FROM patient_merge \
             WHERE id = $1 ON CONFLICT (nhs_number) DO NOTHING",
        )
        .bind(id)
        .execute(&mut *$tx)
        .await?;
        counts.links_back = sqlx::query(
            "UPDATE source_link SET nhs_number = $2 WHERE nhs_number = $3 AND EXISTS \
             (SELECT 1 FROM patient_merge_item i WHERE i.merge_id = $1 AND i.kind = 'link' \
             AND i.source = source_link.source AND i.local_id = source_link.local_id)",
        )
        .bind(id)
        .bind(retired)
        .bind(survivor)
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        // Links that arrived while merged: whose they are is not known. Sent to review
        // against both numbers, never guessed.
        let arrived: Vec<(String, String, String, String, Option<chrono::NaiveDate>, Option<String>)> =
            sqlx::query_as(
                "SELECT source, local_id, family, given, birth_date, postcode FROM source_link \
                 WHERE nhs_number = $2 AND NOT EXISTS (SELECT 1 FROM patient_merge_item i \
                 WHERE i.merge_id = $1 AND i.kind IN ('link', 'kept-link') \
                 AND i.source = source_link.source AND i.local_id = source_link.local_id)",
            )
            .bind(id)
            .bind(survivor)
            .fetch_all(&mut *$tx)
            .await?;
        for (source, local_id, family, given, birth_date, postcode) in &arrived {
            for nhs in [survivor, retired] {
                sqlx::query(
                    "INSERT INTO match_candidate (source, local_id, nhs_number, kind, score, \
                     agreement, guard, family, given, birth_date, gender, postcode, found_at) \
                     VALUES ($1, $2, $3, 'unmerged', 0, 'linked-while-merged', NULL, $4, $5, $6, \
                     NULL, $7, $8) ON CONFLICT (source, local_id, nhs_number) DO UPDATE SET \
                     kind = excluded.kind, agreement = excluded.agreement, found_at = excluded.found_at",
                )
                .bind(source)
                .bind(local_id)
                .bind(nhs)
                .bind(family)
                .bind(given)
                .bind(*birth_date)
                .bind(postcode)
                .bind(ts(&req.at))
                .execute(&mut *$tx)
                .await?;
            }
            sqlx::query(
                "INSERT INTO unmatched_record (source, local_id, reason, candidates, seen_at) \
                 VALUES ($1, $2, 'unmerged', 2, $3) ON CONFLICT (source, local_id) DO UPDATE SET \
                 reason = excluded.reason, candidates = excluded.candidates, seen_at = excluded.seen_at",
            )
            .bind(source)
            .bind(local_id)
            .bind(ts(&req.at))
            .execute(&mut *$tx)
            .await?;
            sqlx::query("DELETE FROM source_link WHERE source = $1 AND local_id = $2")
                .bind(source)
                .bind(local_id)
                .execute(&mut *$tx)
                .await?;
            sqlx::query(
                "INSERT INTO patient_merge_item (merge_id, kind, source, local_id) \
                 VALUES ($1, 'review', $2, $3)",
            )
            .bind(id)
            .bind(source)
            .bind(local_id)
            .execute(&mut *$tx)
            .await?;
        }
        counts.sent_to_review = u64::try_from(arrived.len()).unwrap_or(u64::MAX);
        for (kind, table) in [("care-event", "care_event"), ("relationship", "relationship")] {
            let back = sqlx::query(&format!(
                "UPDATE {table} SET nhs_number = $2 WHERE nhs_number = $3 AND id IN \
                 (SELECT row_id FROM patient_merge_item WHERE merge_id = $1 AND kind = $4)"
            ))
            .bind(id)
            .bind(retired)
            .bind(survivor)
            .bind(kind)
            .execute(&mut *$tx)
            .await?
            .rows_affected();
            if table == "care_event" {
                counts.care_events_back = back;
            } else {
                counts.relationships_back = back;
            }
        }
        // What the merge carried goes: the survivor's own history is as it was.
        sqlx::query(
            "DELETE FROM objection WHERE nhs_number = $2 AND id IN \
             (SELECT row_id FROM patient_merge_item WHERE merge_id = $1 AND kind = 'objection')",
        )
        .bind(id)
        .bind(survivor)
        .execute(&mut *$tx)
        .await?;
        if merge.counts.protection_carried {
            sqlx::query("DELETE FROM protected_person WHERE nhs_number = $1")
                .bind(survivor)
                .execute(&mut *$tx)
                .await?;
        }
        // A restriction the merge carried goes, unless PDS has spoken of the survivor since.
        let carried: Option<(Option<i64>,)> = sqlx::query_as(
            "SELECT row_id FROM patient_merge_item WHERE merge_id = $1 AND kind = 'restriction'",
        )
        .bind(id)
        .fetch_optional(&mut *$tx)
        .await?;
        if let Some((had_row,)) = carried {
            let restore = if had_row == Some(1) {
                "UPDATE patient_status SET restricted = FALSE WHERE nhs_number = $1 AND said_by = 'merge'"
            } else {
                "DELETE FROM patient_status WHERE nhs_number = $1 AND said_by = 'merge'"
            };
            sqlx::query(restore)
                .bind(survivor)
                .execute(&mut *$tx)
                .await?;
        }
        // An objection recorded on the merged person while merged may have been either
        // person's: it holds for both (never lose an opt-out).
        let during: (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM objection WHERE nhs_number = $1 AND at >= $2",
        )
        .bind(survivor)
        .bind(ts(&merge.merged_at))
        .fetch_one(&mut *$tx)
        .await?;
        let standing = $crate::patient_merge::STANDING_OBJECTION;
        let active = |o: &Option<(String,)>| o.as_ref().is_some_and(|(s,)| s == "active");
        let survivor_objects: Option<(String,)> = sqlx::query_as(standing)
            .bind(survivor)
            .fetch_optional(&mut *$tx)
            .await?;
        let retired_objects: Option<(String,)> = sqlx::query_as(standing)
            .bind(retired)
            .fetch_optional(&mut *$tx)
            .await?;
        if during.0 > 0 && active(&survivor_objects) && !active(&retired_objects) {
            let (oid,): (i64,) = sqlx::query_as(
                "INSERT INTO objection (nhs_number, state, recorded_by, on_whose_word, \
                 override_reason, by_role, note, at, ends_at) \
                 VALUES ($1, 'active', $2, $3, NULL, NULL, $4, $5, NULL) RETURNING id",
            )
            .bind(retired)
            .bind(&req.by)
            .bind(format!("merged-record:{survivor}"))
            .bind(format!(
                "Recorded on the merged record {} while this number was merged into it; kept when the merge was undone.",
                merge.survivor.formatted()
            ))
            .bind(ts(&req.at))
            .fetch_one(&mut *$tx)
            .await?;
            sqlx::query(
                "INSERT INTO patient_merge_item (merge_id, kind, row_id) VALUES ($1, 'objection-back', $2)",
            )
            .bind(id)
            .bind(oid)
            .execute(&mut *$tx)
            .await?;
            counts.objection_carried_back = true;
        }
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        sqlx::query(
            "UPDATE patient_merge SET undone_by = $2, undone_at = $3, undo_reason = $4, \
             links_back = $5, sent_to_review = $6, care_events_back = $7, \
             relationships_back = $8, objection_carried_back = $9 WHERE id = $1",
        )
        .bind(id)
        .bind(&req.by)
        .bind(ts(&req.at))
        .bind(&req.reason)
        .bind(n(counts.links_back))
        .bind(n(counts.sent_to_review))
        .bind(n(counts.care_events_back))
        .bind(n(counts.relationships_back))
        .bind(i64::from(counts.objection_carried_back))
        .execute(&mut *$tx)
        .await?;
        let row = $append(&mut *$tx, &($audit)(&counts), $chain).await?;
        Ok::<_, $crate::StoreError>(MergeOutcome::Done(id, row))
    }};
}
pub(crate) use unmerge_steps;

/// [`merge_steps`], then the merge read back: evaluates to `Result<MergeOutcome<MergeRow>>`;
/// the caller commits on `Done` (and drops the transaction on a refusal).
macro_rules! merge_in_tx {
    ($tx:ident, $append:path, $req:expr, $audit:expr, $chain:expr) => {{
        use $crate::patient_merge::{merge_by_id, merge_from_row, MergeOutcome};
        match $crate::patient_merge::merge_steps!($tx, $append, $req, $audit, $chain)? {
            MergeOutcome::Done(id, row) => {
                let merge = merge_by_id(id).query().fetch_one(&mut *$tx).await?;
                Ok::<_, $crate::StoreError>(MergeOutcome::Done(merge_from_row(&merge)?, row))
            }
            MergeOutcome::Refused(why) => Ok(MergeOutcome::Refused(why)),
        }
    }};
}
pub(crate) use merge_in_tx;

/// An unmerge in the backend's open transaction: the merge read with `$select` (the backend's
/// [`merge_by_id`], or [`merge_for_update`]), refused when there is none or it is undone
/// already, then [`unmerge_steps`] and the merge read back. Evaluates to
/// `Result<MergeOutcome<MergeRow>>`; the caller commits on `Done`.
macro_rules! unmerge_in_tx {
    ($tx:ident, $append:path, $req:expr, $select:expr, $audit:expr, $chain:expr) => {{
        use $crate::patient_merge::{merge_by_id, merge_from_row, MergeOutcome};
        'unmerge: {
            let merge = match $select.query().fetch_optional(&mut *$tx).await? {
                Some(r) => merge_from_row(&r)?,
                None => break 'unmerge Ok(MergeOutcome::Refused("There is no such merge.".into())),
            };
            if merge.undone.is_some() {
                break 'unmerge Ok(MergeOutcome::Refused(
                    "This merge has already been undone.".into(),
                ));
            }
            match $crate::patient_merge::unmerge_steps!($tx, $append, $req, &merge, $audit, $chain)?
            {
                MergeOutcome::Done(id, row) => {
                    let merge = merge_by_id(id).query().fetch_one(&mut *$tx).await?;
                    Ok::<_, $crate::StoreError>(MergeOutcome::Done(merge_from_row(&merge)?, row))
                }
                MergeOutcome::Refused(why) => Ok(MergeOutcome::Refused(why)),
            }
        }
    }};
}
pub(crate) use unmerge_in_tx;

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
