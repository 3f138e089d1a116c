//! Audit rows as both backends read them, and the search's page size. The traits are
//! [`crate::AuditStore`] (appends and reads of the chain) and [`crate::AuditTrailStore`]; each
//! backend's `audit.rs` appends.

use crate::common::{get, parse_ts, ts, Statement, Value};
use crate::{AuditAppend, AuditFilter, AuditRow, ChainFn, Result, AUDIT_GENESIS_HASH};
use sqlx::{ColumnIndex, Database, Decode, Encode, QueryBuilder, Row, Type};
use std::fmt::Write as _;
use std::sync::LazyLock;

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

/// The chain's last record: its sequence number and hash.
pub(crate) const AUDIT_HEAD: &str = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1";

/// [`AUDIT_HEAD`]'s answer, or before the first record the genesis hash after sequence 0.
pub(crate) fn head_or_genesis(last: Option<(i64, String)>) -> (i64, String) {
    last.unwrap_or_else(|| (0, AUDIT_GENESIS_HASH.to_owned()))
}

/// `records` as the rows that follow `head` in the chain.
pub(crate) fn chained<'a>(
    head: (i64, String),
    records: impl IntoIterator<Item = &'a AuditAppend>,
    chain: &ChainFn,
) -> Vec<AuditRow> {
    let (mut seq, mut prev_hash) = head;
    records
        .into_iter()
        .map(|record| {
            seq += 1;
            let hash = chain(seq, &prev_hash, record);
            AuditRow {
                seq,
                prev_hash: std::mem::replace(&mut prev_hash, hash.clone()),
                hash,
                record: record.clone(),
            }
        })
        .collect()
}

/// `rows` inserted in one statement.
pub(crate) fn insert_rows(rows: &[AuditRow]) -> Statement<'_> {
    const PER_ROW: usize = 12;
    let mut sql = String::from(
        "INSERT INTO audit_log (seq, at, correlation_id, user_id, org_code, patient, action, \
         outcome, payload, prev_hash, hash, role_profile_id) VALUES ",
    );
    let mut values = Vec::with_capacity(rows.len() * PER_ROW);
    for (i, row) in rows.iter().enumerate() {
        let r = &row.record;
        values.extend([
            Value::Int(row.seq),
            Value::Owned(ts(&r.at)),
            Value::Text(&r.correlation_id),
            Value::Text(&r.user_id),
            Value::Text(&r.org_code),
            Value::OptText(r.patient.as_deref()),
            Value::Text(&r.action),
            Value::Text(&r.outcome),
            Value::Text(&r.payload),
            Value::Text(&row.prev_hash),
            Value::Text(&row.hash),
            Value::OptText(r.role_profile_id.as_deref()),
        ]);
        let first = i * PER_ROW;
        let params: Vec<String> = (first + 1..=first + PER_ROW)
            .map(|n| format!("${n}"))
            .collect();
        let _ = write!(
            sql,
            "{}({})",
            if i == 0 { "" } else { ", " },
            params.join(", ")
        );
    }
    Statement::new(sql, values)
}

/// Records with `seq > after_seq`, in sequence order, at most `limit`.
pub(crate) fn audit_rows(after_seq: i64, limit: u32) -> Statement<'static> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2")
    });
    Statement::new(
        SQL.as_str(),
        vec![Value::Int(after_seq), Value::Int(i64::from(limit))],
    )
}
