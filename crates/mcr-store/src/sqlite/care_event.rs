//! Care events and held feed messages on SQLite.

use super::SqliteStore;
use crate::care_event::{
    by_key, care_event_from_row, event, held_from_row, held_newest_first, insert_held, keyed,
    push_events, CareEventKey, CareEventRow, CareEventStore, HeldMessage, CANCEL_EVENT, CHUNK,
    INSERT_HELD, MERGE_EVENTS, PRUNE_EVENTS, SET_EVENT_END,
};
use crate::common::ts;
use crate::Result;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcr_domain::NhsNumber;
use sqlx::{QueryBuilder, Sqlite};

#[async_trait]
impl CareEventStore for SqliteStore {
    async fn upsert_care_events(&self, events: &[CareEventRow]) -> Result<()> {
        let rows = keyed(events);
        let mut writer = self.write_conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *writer).await?;
        for chunk in rows.chunks(CHUNK) {
            let mut qb = QueryBuilder::<Sqlite>::new("");
            push_events(&mut qb, chunk);
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn care_event(&self, key: CareEventKey<'_>) -> Result<Option<CareEventRow>> {
        event(key)
            .fetch_optional(&self.read, care_event_from_row)
            .await
    }

    async fn cancel_care_event(&self, key: CareEventKey<'_>) -> Result<bool> {
        let done = by_key(sqlx::query(CANCEL_EVENT), key)
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_care_event_end(
        &self,
        key: CareEventKey<'_>,
        end: Option<DateTime<Utc>>,
    ) -> Result<bool> {
        let done = by_key(sqlx::query(SET_EVENT_END), key)
            .bind(end.as_ref().map(ts))
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn merge_care_events(&self, from: &NhsNumber, to: &NhsNumber) -> Result<u64> {
        let done = sqlx::query(MERGE_EVENTS)
            .bind(from.as_str())
            .bind(to.as_str())
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(done.rows_affected())
    }

    async fn prune_care_events(&self, ended_before: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query(PRUNE_EVENTS)
            .bind(ts(&ended_before))
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(done.rows_affected())
    }

    async fn hold_message(&self, m: &HeldMessage) -> Result<()> {
        insert_held(sqlx::query(&INSERT_HELD), m)
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(())
    }

    async fn held_messages(&self, l: u32) -> Result<Vec<HeldMessage>> {
        held_newest_first(l)
            .fetch_all(&self.read, held_from_row)
            .await
    }
}
