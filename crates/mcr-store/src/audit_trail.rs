//! Reading the audit trail beyond the chain walk (searches for the FHIR API, the privacy
//! officer's review queue and a patient's access history), and the signed checkpoints of the
//! chain. Both backends; the chain itself is appended in `sqlite.rs` / `postgres.rs`.

use crate::common::{audit_from_row, parse_ts, ts, AUDIT_COLUMNS};
use crate::{AuditRow, PostgresStore, Result, SqliteStore, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder, Row, Sqlite};

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

fn limit(l: u32) -> i64 {
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

fn checkpoint_from<R>(row: &R) -> Result<AuditCheckpoint>
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

#[async_trait]
impl AuditTrailStore for SqliteStore {
    async fn add_checkpoint(&self, cp: &AuditCheckpoint) -> Result<bool> {
        let (_one_chain, mut writer) = self.begin_append().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *writer, crate::sqlite::IMMEDIATE).await?;
        let done = sqlx::query(
            "INSERT INTO audit_checkpoint (seq, hash, at, public_key, signature) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (seq) DO NOTHING",
        )
        .bind(cp.seq)
        .bind(&cp.hash)
        .bind(ts(&cp.at))
        .bind(&cp.public_key)
        .bind(&cp.signature)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn checkpoints(&self) -> Result<Vec<AuditCheckpoint>> {
        let rows = sqlx::query(
            "SELECT seq, hash, at, public_key, signature FROM audit_checkpoint ORDER BY seq",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(checkpoint_from).collect()
    }

    async fn audit_head(&self) -> Result<Option<(i64, String)>> {
        Ok(
            sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&self.read)
                .await?,
        )
    }

    async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditRow>> {
        let mut qb = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE 1 = 1"
        ));
        if let Some(v) = &q.patient {
            qb.push(" AND patient = ").push_bind(v.clone());
        }
        if let Some(v) = &q.user_id {
            qb.push(" AND user_id = ").push_bind(v.clone());
        }
        if let Some(v) = &q.org_code {
            qb.push(" AND org_code = ").push_bind(v.clone());
        }
        if let Some(v) = &q.source_org {
            qb.push(
                " AND EXISTS (SELECT 1 FROM json_each(audit_log.payload, '$.sources') s \
                 WHERE json_extract(s.value, '$.org_code') = ",
            )
            .push_bind(v.clone())
            .push(")");
        }
        for (column, values) in [("action", &q.actions), ("outcome", &q.outcomes)] {
            if !values.is_empty() {
                qb.push(format!(" AND {column} IN ("));
                let mut list = qb.separated(", ");
                for v in values {
                    list.push_bind(v.clone());
                }
                qb.push(")");
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
        let rows = qb.build().fetch_all(&self.read).await?;
        let mut rows: Vec<AuditRow> = rows.iter().map(audit_from_row).collect::<Result<_>>()?;
        if q.after_seq.is_some() {
            rows.reverse();
        }
        Ok(rows)
    }
}

#[async_trait]
impl AuditTrailStore for PostgresStore {
    async fn add_checkpoint(&self, cp: &AuditCheckpoint) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO audit_checkpoint (seq, hash, at, public_key, signature) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO NOTHING",
        )
        .bind(cp.seq)
        .bind(&cp.hash)
        .bind(ts(&cp.at))
        .bind(&cp.public_key)
        .bind(&cp.signature)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn checkpoints(&self) -> Result<Vec<AuditCheckpoint>> {
        let rows = sqlx::query(
            "SELECT seq, hash, at, public_key, signature FROM audit_checkpoint ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(checkpoint_from).collect()
    }

    async fn audit_head(&self) -> Result<Option<(i64, String)>> {
        Ok(
            sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditRow>> {
        let mut qb = QueryBuilder::<Postgres>::new(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE TRUE"
        ));
        if let Some(v) = &q.patient {
            qb.push(" AND patient = ").push_bind(v.clone());
        }
        if let Some(v) = &q.user_id {
            qb.push(" AND user_id = ").push_bind(v.clone());
        }
        if let Some(v) = &q.org_code {
            qb.push(" AND org_code = ").push_bind(v.clone());
        }
        if let Some(v) = &q.source_org {
            qb.push(" AND (payload::jsonb -> 'sources') @> jsonb_build_array(jsonb_build_object('org_code', ")
                .push_bind(v.clone())
                .push("::text))");
        }
        for (column, values) in [("action", &q.actions), ("outcome", &q.outcomes)] {
            if !values.is_empty() {
                qb.push(format!(" AND {column} = ANY("))
                    .push_bind(values.clone())
                    .push(")");
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
        let rows = qb.build().fetch_all(&self.pool).await?;
        let mut rows: Vec<AuditRow> = rows.iter().map(audit_from_row).collect::<Result<_>>()?;
        if q.after_seq.is_some() {
            rows.reverse();
        }
        Ok(rows)
    }
}
