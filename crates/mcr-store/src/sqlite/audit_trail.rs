//! The audit trail's searches and signed checkpoints on SQLite.

use super::{SqliteStore, IMMEDIATE};
use crate::audit::AUDIT_HEAD;
use crate::audit_trail::{
    add_checkpoint, checkpoint_from, push_query, query_rows, AuditCheckpoint, AuditQuery,
    AuditTrailStore, QueryDialect, CHECKPOINTS,
};
use crate::{AuditRow, Result};
use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite};

#[async_trait]
impl AuditTrailStore for SqliteStore {
    async fn add_checkpoint(&self, cp: &AuditCheckpoint) -> Result<bool> {
        let (_one_chain, mut writer) = self.begin_append().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *writer, IMMEDIATE).await?;
        let done = add_checkpoint(cp).query().execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn checkpoints(&self) -> Result<Vec<AuditCheckpoint>> {
        let rows = sqlx::query(CHECKPOINTS).fetch_all(&self.read).await?;
        rows.iter().map(checkpoint_from).collect()
    }

    async fn audit_head(&self) -> Result<Option<(i64, String)>> {
        Ok(sqlx::query_as(AUDIT_HEAD)
            .fetch_optional(&self.read)
            .await?)
    }

    async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditRow>> {
        let mut qb = QueryBuilder::<Sqlite>::new("");
        push_query(&mut qb, q, &DIALECT);
        let rows = qb.build().fetch_all(&self.read).await?;
        query_rows(q, &rows)
    }
}

/// How SQLite says the conditions of an audit query it says its own way.
const DIALECT: QueryDialect<'static, Sqlite> = QueryDialect {
    source_org: |qb, org| {
        qb.push(
            " AND EXISTS (SELECT 1 FROM json_each(audit_log.payload, '$.sources') s \
             WHERE json_extract(s.value, '$.org_code') = ",
        )
        .push_bind(org)
        .push(")");
    },
    any_of: |qb, column, values| {
        qb.push(format!(" AND {column} IN ("));
        let mut list = qb.separated(", ");
        for v in values {
            list.push_bind(v.clone());
        }
        qb.push(")");
    },
};
