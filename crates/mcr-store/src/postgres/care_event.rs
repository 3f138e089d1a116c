//! Care events and held feed messages on PostgreSQL.

use super::PostgresStore;
use crate::care_event::{
    care_event_from_row, held_from_row, keyed, limit, push_events, CareEventKey, CareEventRow,
    CareEventStore, HeldMessage, CHUNK, EVENT_COLUMNS, HELD_COLUMNS,
};
use crate::common::ts;
use crate::Result;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcr_domain::NhsNumber;
use sqlx::{Postgres, QueryBuilder};

#[async_trait]
impl CareEventStore for PostgresStore {
    async fn upsert_care_events(&self, events: &[CareEventRow]) -> Result<()> {
        let rows = keyed(events);
        let mut tx = self.pool.begin().await?;
        for chunk in rows.chunks(CHUNK) {
            let mut qb = QueryBuilder::<Postgres>::new("");
            push_events(&mut qb, chunk);
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn care_event(&self, key: CareEventKey<'_>) -> Result<Option<CareEventRow>> {
        let row = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM care_event WHERE origin = $1 AND org_code = $2 \
             AND source_event_id = $3"
        ))
        .bind(key.origin)
        .bind(key.org_code)
        .bind(key.source_event_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(care_event_from_row).transpose()
    }

    async fn cancel_care_event(&self, key: CareEventKey<'_>) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM care_event WHERE origin = $1 AND org_code = $2 AND source_event_id = $3",
        )
        .bind(key.origin)
        .bind(key.org_code)
        .bind(key.source_event_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_care_event_end(
        &self,
        key: CareEventKey<'_>,
        end: Option<DateTime<Utc>>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE care_event SET \"end\" = $4 WHERE origin = $1 AND org_code = $2 \
             AND source_event_id = $3",
        )
        .bind(key.origin)
        .bind(key.org_code)
        .bind(key.source_event_id)
        .bind(end.as_ref().map(ts))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn merge_care_events(&self, from: &NhsNumber, to: &NhsNumber) -> Result<u64> {
        let done = sqlx::query("UPDATE care_event SET nhs_number = $2 WHERE nhs_number = $1")
            .bind(from.as_str())
            .bind(to.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn prune_care_events(&self, ended_before: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query("DELETE FROM care_event WHERE \"end\" IS NOT NULL AND \"end\" < $1")
            .bind(ts(&ended_before))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn hold_message(&self, m: &HeldMessage) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO held_message ({HELD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(ts(&m.received_at))
        .bind(&m.channel)
        .bind(m.sender.as_deref())
        .bind(m.message_type.as_deref())
        .bind(m.control_id.as_deref())
        .bind(&m.ack_code)
        .bind(&m.reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn held_messages(&self, l: u32) -> Result<Vec<HeldMessage>> {
        let rows = sqlx::query(&format!(
            "SELECT {HELD_COLUMNS} FROM held_message ORDER BY received_at DESC, id DESC LIMIT $1"
        ))
        .bind(limit(l))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(held_from_row).collect()
    }
}
