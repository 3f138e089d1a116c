//! The watch's counters on PostgreSQL.

use super::PostgresStore;
use crate::watch_counts::{
    claim_flag_sql, claimed, record_flag_sql, record_view_sql, WatchCount, WatchCountStore,
    WatchFlag, WatchView, FLAGS_SINCE, VIEWS_SINCE,
};
use crate::Result;
use async_trait::async_trait;

#[async_trait]
impl WatchCountStore for PostgresStore {
    async fn count_watch_view(
        &self,
        user_id: &str,
        patient: &str,
        at_ms: i64,
        since_ms: i64,
        limit: u64,
    ) -> Result<WatchCount> {
        let (distinct, refused, oldest_ms): (i64, bool, Option<i64>) = sqlx::query_as(
            "SELECT distinct_patients, refused, oldest_ms FROM watch_count_view($1, $2, $3, $4, $5)",
        )
        .bind(user_id)
        .bind(patient)
        .bind(at_ms)
        .bind(since_ms)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_one(&self.pool)
        .await?;
        Ok(WatchCount {
            distinct: u64::try_from(distinct).unwrap_or(0),
            refused,
            oldest_ms,
        })
    }

    async fn claim_watch_flag(
        &self,
        user_id: &str,
        rule: &str,
        patient: &str,
        at_ms: i64,
        since_ms: i64,
    ) -> Result<Option<u64>> {
        let row: (i64, i64) =
            sqlx::query_as(&claim_flag_sql(["$1", "$2", "$3", "$4::int8", "$5::int8"]))
                .bind(user_id)
                .bind(rule)
                .bind(patient)
                .bind(at_ms)
                .bind(since_ms)
                .fetch_one(&self.pool)
                .await?;
        Ok(claimed(row))
    }

    async fn forget_watch(&self, before_ms: i64) -> Result<u64> {
        let done = sqlx::query(
            "WITH views AS (DELETE FROM watch_view WHERE seen_ms <= $1 RETURNING 1), \
             flags AS (DELETE FROM watch_flag WHERE last_ms <= $1 AND held = 0 RETURNING 1) \
             SELECT (SELECT count(*) FROM views) + (SELECT count(*) FROM flags)",
        )
        .bind(before_ms)
        .fetch_one(&self.pool)
        .await?;
        let n: i64 = sqlx::Row::try_get(&done, 0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn record_watch_views(&self, views: &[WatchView]) -> Result<()> {
        if views.is_empty() {
            return Ok(());
        }
        let sql = record_view_sql("GREATEST", ["$1", "$2", "$3"]);
        let mut tx = self.pool.begin().await?;
        for v in views {
            sqlx::query(&sql)
                .bind(&v.user_id)
                .bind(&v.patient)
                .bind(v.seen_ms)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn watch_views_since(&self, since_ms: i64) -> Result<Vec<WatchView>> {
        Ok(sqlx::query_as(&format!("{VIEWS_SINCE}$1"))
            .bind(since_ms)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn record_watch_flags(&self, flags: &[WatchFlag]) -> Result<()> {
        if flags.is_empty() {
            return Ok(());
        }
        let sql = record_flag_sql(["$1", "$2", "$3", "$4::int8", "$5::int8"]);
        let mut tx = self.pool.begin().await?;
        for f in flags {
            sqlx::query(&sql)
                .bind(&f.user_id)
                .bind(&f.rule)
                .bind(&f.patient)
                .bind(f.last_ms)
                .bind(f.held)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn watch_flags_since(&self, since_ms: i64) -> Result<Vec<WatchFlag>> {
        Ok(sqlx::query_as(&format!("{FLAGS_SINCE}$1"))
            .bind(since_ms)
            .fetch_all(&self.pool)
            .await?)
    }
}
