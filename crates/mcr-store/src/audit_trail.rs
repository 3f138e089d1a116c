//! Reading the audit trail beyond the chain walk (searches for the FHIR API, the privacy
//! officer's review queue and a patient's access history), and the signed checkpoints of the
//! chain: the trait and its rows. Each backend implements it in its `audit_trail.rs` and appends
//! the chain in its `audit.rs`.

use crate::audit::AUDIT_COLUMNS;
use crate::common::{parse_ts, ts, Statement, Value};
use crate::{AuditRow, Result, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{Database, Encode, QueryBuilder, Row, Type};

/// A signed statement "the chain's record `seq` has hash `hash`", made at `at` with the
/// Ed25519 key whose public half is `public_key` (hex). The audit crate decides what is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCheckpoint {
    pub seq: i64,
    pub hash: String,
    pub at: DateTime<Utc>,
    /// Hex of the 32-byte Ed25519 public key.
    pub public_key: String,
    /// Hex of the 64-byte Ed25519 signature.
    pub signature: String,
}

/// A search of the trail, newest first; every field narrows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub patient: Option<String>,
    pub user_id: Option<String>,
    /// The acting user's organisation.
    pub org_code: Option<String>,
    /// Only records whose per-source list names this organisation: the accesses that touched
    /// its data.
    pub source_org: Option<String>,
    /// Any of these actions (empty: every action).
    pub actions: Vec<String>,
    /// Any of these outcomes (empty: every outcome).
    pub outcomes: Vec<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Only the record with this sequence number.
    pub seq: Option<i64>,
    /// Only records older than this one (paging).
    pub before_seq: Option<i64>,
    /// Only records newer than this one (paging back): the `limit` oldest of them, still
    /// returned newest first.
    pub after_seq: Option<i64>,
    /// At most this many (0: the default page; capped).
    pub limit: u32,
}

/// The most one audit query returns.
pub const AUDIT_QUERY_MAX: u32 = 100_000;

pub(crate) fn limit(l: u32) -> i64 {
    i64::from(if l == 0 { 100 } else { l.min(AUDIT_QUERY_MAX) })
}

/// Checkpoints and searches of the audit trail.
#[async_trait]
pub trait AuditTrailStore: Send + Sync {
    /// Store a checkpoint; `false` when one already exists for that record (kept as it was).
    async fn add_checkpoint(&self, checkpoint: &AuditCheckpoint) -> Result<bool>;
    /// Every checkpoint, in sequence order.
    async fn checkpoints(&self) -> Result<Vec<AuditCheckpoint>>;
    /// The last record's sequence number and hash, if any.
    async fn audit_head(&self) -> Result<Option<(i64, String)>>;
    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRow>>;
}

pub(crate) fn checkpoint_from<R>(row: &R) -> Result<AuditCheckpoint>
where
    R: Row,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    let bad = |c: &str| StoreError::Corrupt(format!("audit_checkpoint.{c} cannot be read"));
    let at: String = row.try_get("at").map_err(|_| bad("at"))?;
    Ok(AuditCheckpoint {
        seq: row.try_get("seq").map_err(|_| bad("seq"))?,
        hash: row.try_get("hash").map_err(|_| bad("hash"))?,
        at: parse_ts("audit_checkpoint.at", &at)?,
        public_key: row.try_get("public_key").map_err(|_| bad("public_key"))?,
        signature: row.try_get("signature").map_err(|_| bad("signature"))?,
    })
}

/// How a backend writes the two conditions of [`AuditTrailStore::query_audit`] it says its own
/// way.
pub(crate) struct QueryDialect<'a, DB: Database> {
    /// The record's per-source list names this organisation.
    pub source_org: fn(&mut QueryBuilder<'a, DB>, String),
    /// The column's value is one of these.
    pub any_of: fn(&mut QueryBuilder<'a, DB>, &str, &[String]),
}

/// Appends to `qb` (empty) [`AuditTrailStore::query_audit`]'s statement: each field of `q`
/// given narrowing, newest first (oldest first when paging back, which the caller reverses).
pub(crate) fn push_query<'a, DB: Database>(
    qb: &mut QueryBuilder<'a, DB>,
    q: &AuditQuery,
    dialect: &QueryDialect<'a, DB>,
) where
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    qb.push(format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE 1 = 1"));
    let equal = [
        ("patient", &q.patient),
        ("user_id", &q.user_id),
        ("org_code", &q.org_code),
    ];
    for (column, value) in equal {
        if let Some(value) = value {
            qb.push(format!(" AND {column} = "))
                .push_bind(value.clone());
        }
    }
    if let Some(v) = &q.source_org {
        (dialect.source_org)(qb, v.clone());
    }
    for (column, values) in [("action", &q.actions), ("outcome", &q.outcomes)] {
        if !values.is_empty() {
            (dialect.any_of)(qb, column, values);
        }
    }
    if let Some(from) = &q.from {
        qb.push(" AND at >= ").push_bind(ts(from));
    }
    if let Some(to) = &q.to {
        qb.push(" AND at <= ").push_bind(ts(to));
    }
    if let Some(before) = q.before_seq {
        qb.push(" AND seq < ").push_bind(before);
    }
    if let Some(seq) = q.seq {
        qb.push(" AND seq = ").push_bind(seq);
    }
    if let Some(after) = q.after_seq {
        qb.push(" AND seq > ").push_bind(after);
    }
    qb.push(if q.after_seq.is_some() {
        " ORDER BY seq ASC LIMIT "
    } else {
        " ORDER BY seq DESC LIMIT "
    })
    .push_bind(limit(q.limit));
}

/// Keep a checkpoint; no row changed when one is kept at that sequence number already.
pub(crate) fn add_checkpoint(cp: &AuditCheckpoint) -> Statement<'_> {
    Statement::new(
        "INSERT INTO audit_checkpoint (seq, hash, at, public_key, signature) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO NOTHING",
        vec![
            Value::Int(cp.seq),
            Value::Text(&cp.hash),
            Value::Owned(ts(&cp.at)),
            Value::Text(&cp.public_key),
            Value::Text(&cp.signature),
        ],
    )
}

pub(crate) const CHECKPOINTS: &str =
    "SELECT seq, hash, at, public_key, signature FROM audit_checkpoint ORDER BY seq";

/// The rows of a query built by [`push_query`], oldest first when it pages forward.
pub(crate) fn query_rows<R>(q: &AuditQuery, rows: &[R]) -> Result<Vec<AuditRow>>
where
    R: Row,
    for<'r> String: sqlx::Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    let mut rows: Vec<AuditRow> = rows
        .iter()
        .map(crate::audit::audit_from_row)
        .collect::<Result<_>>()?;
    if q.after_seq.is_some() {
        rows.reverse();
    }
    Ok(rows)
}
