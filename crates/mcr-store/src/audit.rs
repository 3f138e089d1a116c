//! Audit rows as both backends read them, and the search's page size. The traits are
//! [`crate::AuditStore`] (appends and reads of the chain) and [`crate::AuditTrailStore`]; each
//! backend's `audit.rs` appends.

use crate::common::{get, parse_ts, ts};
use crate::{AuditAppend, AuditFilter, AuditRow, Result};
use sqlx::{ColumnIndex, Database, Decode, Encode, QueryBuilder, Row, Type};

/// Audit search page size when the filter gives none, and the most one page may hold.
pub(crate) const AUDIT_DEFAULT_LIMIT: u32 = 100;
pub(crate) const AUDIT_MAX_LIMIT: u32 = 10_000;

pub(crate) fn audit_limit(limit: u32) -> i64 {
    i64::from(if limit == 0 {
        AUDIT_DEFAULT_LIMIT
    } else {
        limit.min(AUDIT_MAX_LIMIT)
    })
}
pub(crate) fn audit_from_row<R>(row: &R) -> Result<AuditRow>
where
    R: Row,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    let at: String = get(row, "at")?;
    Ok(AuditRow {
        seq: get(row, "seq")?,
        prev_hash: get(row, "prev_hash")?,
        hash: get(row, "hash")?,
        record: AuditAppend {
            at: parse_ts("audit_log.at", &at)?,
            correlation_id: get(row, "correlation_id")?,
            user_id: get(row, "user_id")?,
            org_code: get(row, "org_code")?,
            patient: get(row, "patient")?,
            action: get(row, "action")?,
            outcome: get(row, "outcome")?,
            payload: get(row, "payload")?,
            role_profile_id: get(row, "role_profile_id")?,
        },
    })
}

pub(crate) const AUDIT_COLUMNS: &str =
    "seq, at, correlation_id, user_id, org_code, patient, action, outcome, payload, prev_hash, hash, \
     role_profile_id";

/// Appends to `qb` (empty) [`crate::AuditStore::search_audit`]'s statement, the same on both
/// backends: newest first, each field of `filter` given narrowing.
pub(crate) fn push_search<DB: Database>(qb: &mut QueryBuilder<'_, DB>, filter: &AuditFilter)
where
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    qb.push(format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE 1 = 1"));
    let equal = [
        ("patient", &filter.patient),
        ("user_id", &filter.user_id),
        ("org_code", &filter.org_code),
        ("outcome", &filter.outcome),
    ];
    for (column, value) in equal {
        if let Some(value) = value {
            qb.push(format!(" AND {column} = "))
                .push_bind(value.clone());
        }
    }
    if let Some(from) = &filter.from {
        qb.push(" AND at >= ").push_bind(ts(from));
    }
    if let Some(to) = &filter.to {
        qb.push(" AND at <= ").push_bind(ts(to));
    }
    qb.push(" ORDER BY seq DESC LIMIT ")
        .push_bind(audit_limit(filter.limit));
}
