//! The audit trail's searches and signed checkpoints on PostgreSQL.

use super::PostgresStore;
use crate::audit::AUDIT_HEAD;
use crate::audit_trail::{
    add_checkpoint, checkpoint_from, push_query, query_rows, AuditCheckpoint, AuditQuery,
    AuditTrailStore, QueryDialect, CHECKPOINTS,
};
use crate::{AuditRow, Result};
use async_trait::async_trait;
use sqlx::{Postgres, QueryBuilder};

#[async_trait]
impl AuditTrailStore for PostgresStore {
    async fn add_checkpoint(&self, cp: &AuditCheckpoint) -> Result<bool> {
        let done = add_checkpoint(cp).query().execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn checkpoints(&self) -> Result<Vec<AuditCheckpoint>> {
        let rows = sqlx::query(CHECKPOINTS).fetch_all(&self.pool).await?;
        rows.iter().map(checkpoint_from).collect()
    }

    async fn audit_head(&self) -> Result<Option<(i64, String)>> {
        Ok(sqlx::query_as(AUDIT_HEAD)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditRow>> {
        let mut qb = QueryBuilder::<Postgres>::new("");
        push_query(&mut qb, q, &DIALECT);
        let rows = qb.build().fetch_all(&self.pool).await?;
        query_rows(q, &rows)
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
