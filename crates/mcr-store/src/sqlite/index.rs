//! The patient index on SQLite: the statements of [`crate::index`] on the reader or the writer,
//! and batches written as rows bound in chunks (PostgreSQL binds them as arrays).

use super::SqliteStore;
use crate::common::{last_per_key, ts};
use crate::index::{
    self, link_from_row, patient_from_row, unmatched_from_row, watermark_from_row, NormalQuery,
    PatientRow, LINK_UPSERT, LINK_WRITE, PATIENT_COUNT, PATIENT_WRITE,
};
use crate::{
    DemographicQuery, IndexStore, IndexedPatient, Result, SourceLink, StoreError, UnmatchedRecord,
};
use async_trait::async_trait;
use mcr_domain::{NhsNumber, SourceId};
use sqlx::{Connection as _, QueryBuilder, Sqlite};

/// Rows per multi-row `INSERT` (11 parameters each, far below SQLite's 32766 limit). Every
/// full chunk has the same SQL, so its prepared statement is reused from the cache.
const CHUNK: usize = 500;
impl SqliteStore {
    /// Patients in multi-row statements of [`CHUNK`], one transaction per call.
    async fn write_patients(&self, patients: &[IndexedPatient], on_conflict: &str) -> Result<()> {
        let rows: Vec<PatientRow<'_>> = last_per_key(patients, |p| p.nhs_number.clone())
            .into_iter()
            .map(PatientRow::new)
            .collect();
        let mut writer = self.write_conn().await?;
        let mut tx = writer.begin().await?;
        for chunk in rows.chunks(CHUNK) {
            let mut qb = QueryBuilder::<Sqlite>::new(format!("INSERT INTO {PATIENT_WRITE} "));
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(r.p.nhs_number.as_str())
                    .push_bind(r.p.family.as_str())
                    .push_bind(r.p.given.as_str())
                    .push_bind(r.family_norm.as_str())
                    .push_bind(r.given_norm.as_str())
                    .push_bind(r.p.birth_date)
                    .push_bind(r.p.gender.as_deref())
                    .push_bind(r.p.postcode.as_deref())
                    .push_bind(r.postcode_norm.as_deref())
                    .push_bind(r.p.gp_practice.as_deref())
                    .push_bind(r.updated_at.as_str());
            });
            qb.push(on_conflict);
            qb.build().execute(&mut *tx).await?;
        }
        // A number merged into another is never an index person again while the merge stands.
        sqlx::query(crate::patient_merge::DROP_RETIRED_PATIENTS)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl IndexStore for SqliteStore {
    async fn upsert_patients(&self, patients: &[IndexedPatient]) -> Result<()> {
        self.write_patients(patients, crate::PATIENT_REPLACE).await
    }

    async fn insert_missing_patients(&self, patients: &[IndexedPatient]) -> Result<()> {
        self.write_patients(patients, crate::PATIENT_KEEP).await
    }

    async fn upsert_links(&self, links: &[SourceLink]) -> Result<()> {
        let rows = last_per_key(links, |l| (l.source.clone(), l.local_id.clone()));
        let mut writer = self.write_conn().await?;
        let mut tx = writer.begin().await?;
        for chunk in rows.chunks(CHUNK) {
            let mut qb = QueryBuilder::<Sqlite>::new(format!("INSERT INTO {LINK_WRITE} "));
            qb.push_values(chunk, |mut b, l| {
                b.push_bind(l.source.as_str())
                    .push_bind(l.local_id.as_str())
                    .push_bind(l.nhs_number.as_str())
                    .push_bind(l.method.as_str())
                    .push_bind(l.family.as_str())
                    .push_bind(l.given.as_str())
                    .push_bind(l.birth_date)
                    .push_bind(l.postcode.as_deref())
                    .push_bind(ts(&l.linked_at));
            });
            qb.push(LINK_UPSERT);
            qb.build().execute(&mut *tx).await?;
        }
        // A record of a number merged into another goes to the survivor.
        sqlx::query(&crate::patient_merge::redirect_sql("source_link"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn patient(&self, nhs: &NhsNumber) -> Result<Option<IndexedPatient>> {
        index::patient(nhs)
            .fetch_optional(&self.read, patient_from_row)
            .await
    }

    async fn links(&self, nhs: &NhsNumber) -> Result<Vec<SourceLink>> {
        index::links(nhs).fetch_all(&self.read, link_from_row).await
    }

    async fn link_for_local(
        &self,
        source: &SourceId,
        local_id: &str,
    ) -> Result<Option<SourceLink>> {
        index::link_for_local(source, local_id)
            .fetch_optional(&self.read, link_from_row)
            .await
    }

    async fn search_patients(
        &self,
        query: &DemographicQuery,
        limit: u32,
    ) -> Result<Vec<IndexedPatient>> {
        let Some(q) = NormalQuery::new(query) else {
            return Ok(Vec::new());
        };
        // Without statistics SQLite prefers the index that avoids the sort even when a birth
        // date makes (family_norm, birth_date) far more selective; say which to use.
        let index = if q.birth_date.is_some() {
            "patient_family_birth"
        } else {
            "patient_family_given"
        };
        index::search(&q, limit, Some(index))
            .fetch_all(&self.read, patient_from_row)
            .await
    }

    async fn record_unmatched(&self, record: &UnmatchedRecord) -> Result<()> {
        index::record_unmatched(record)
            .query()
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(())
    }

    async fn clear_unmatched(&self, source: &SourceId, local_id: &str) -> Result<()> {
        index::clear_unmatched(source, local_id)
            .query()
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(())
    }

    async fn unmatched(&self, source: Option<&SourceId>) -> Result<Vec<UnmatchedRecord>> {
        index::unmatched(source)
            .fetch_all(&self.read, unmatched_from_row)
            .await
    }

    async fn sync_watermark(&self, source: &SourceId) -> Result<Option<String>> {
        index::sync_watermark(source)
            .fetch_optional(&self.read, watermark_from_row)
            .await
    }

    async fn set_sync_watermark(&self, source: &SourceId, watermark: &str) -> Result<()> {
        index::set_sync_watermark(source, watermark)
            .query()
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(())
    }

    async fn patient_count(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(PATIENT_COUNT)
            .fetch_one(&self.read)
            .await?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt("negative patient count".into()))
    }
}
