//! The audit trail's searches and signed checkpoints on PostgreSQL.

use super::PostgresStore;
use crate::audit::{audit_from_row, AUDIT_COLUMNS};
use crate::audit_trail::{checkpoint_from, limit, AuditCheckpoint, AuditQuery, AuditTrailStore};
use crate::common::ts;
use crate::{AuditRow, Result};
use async_trait::async_trait;
use sqlx::{Postgres, QueryBuilder};

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
