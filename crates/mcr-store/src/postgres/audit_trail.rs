//! The audit trail's searches and signed checkpoints on PostgreSQL.

use super::PostgresStore;
use crate::audit::audit_from_row;
use crate::audit_trail::{
    checkpoint_from, push_query, AuditCheckpoint, AuditQuery, AuditTrailStore, QueryDialect,
};
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
        let mut qb = QueryBuilder::<Postgres>::new("");
        push_query(&mut qb, q, &DIALECT);
        let rows = qb.build().fetch_all(&self.pool).await?;
        let mut rows: Vec<AuditRow> = rows.iter().map(audit_from_row).collect::<Result<_>>()?;
        if q.after_seq.is_some() {
            rows.reverse();
        }
        Ok(rows)
    }
}

/// How PostgreSQL says the conditions of an audit query it says its own way.
const DIALECT: QueryDialect<'static, Postgres> = QueryDialect {
    source_org: |qb, org| {
        qb.push(
            " AND (payload::jsonb -> 'sources') @> \
             jsonb_build_array(jsonb_build_object('org_code', ",
        )
        .push_bind(org)
        .push("::text))");
    },
    any_of: |qb, column, values| {
        qb.push(format!(" AND {column} = ANY("))
            .push_bind(values.to_vec())
            .push(")");
    },
};
