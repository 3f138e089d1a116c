//! The patient index on PostgreSQL: the statements of [`crate::index`] on the pool, and batches
//! written as arrays (`UNNEST`) or copied (`COPY`), where SQLite binds rows in chunks.

use super::PostgresStore;
use crate::common::{last_per_key, ts};
use crate::index::{
    self, link_from_row, patient_from_row, unmatched_from_row, watermark_from_row, NormalQuery,
    PatientRow, LINK_UPSERT, LINK_WRITE, PATIENT_COUNT, PATIENT_WRITE,
};
use crate::{
    DemographicQuery, IndexStore, IndexedPatient, Result, SourceLink, StoreError, UnmatchedRecord,
};
use async_trait::async_trait;
use chrono::NaiveDate;
use mcr_domain::{NhsNumber, SourceId};

/// Rows per `UNNEST` statement.
const CHUNK: usize = 10_000;
impl PostgresStore {
    /// Patients in batches of arrays ([`CHUNK`] rows), one transaction per call.
    async fn write_patients(&self, patients: &[IndexedPatient], on_conflict: &str) -> Result<()> {
        let rows: Vec<PatientRow<'_>> = last_per_key(patients, |p| p.nhs_number.clone())
            .into_iter()
            .map(PatientRow::new)
            .collect();
        let mut tx = self.pool.begin().await?;
        for chunk in rows.chunks(CHUNK) {
            let nhs: Vec<&str> = chunk.iter().map(|r| r.p.nhs_number.as_str()).collect();
            let family: Vec<&str> = chunk.iter().map(|r| r.p.family.as_str()).collect();
            let given: Vec<&str> = chunk.iter().map(|r| r.p.given.as_str()).collect();
            let family_norm: Vec<&str> = chunk.iter().map(|r| r.family_norm.as_str()).collect();
            let given_norm: Vec<&str> = chunk.iter().map(|r| r.given_norm.as_str()).collect();
            let birth_date: Vec<NaiveDate> = chunk.iter().map(|r| r.p.birth_date).collect();
            let gender: Vec<Option<&str>> = chunk.iter().map(|r| r.p.gender.as_deref()).collect();
            let postcode: Vec<Option<&str>> =
                chunk.iter().map(|r| r.p.postcode.as_deref()).collect();
            let postcode_norm: Vec<Option<&str>> =
                chunk.iter().map(|r| r.postcode_norm.as_deref()).collect();
            let gp: Vec<Option<&str>> = chunk.iter().map(|r| r.p.gp_practice.as_deref()).collect();
            let updated: Vec<&str> = chunk.iter().map(|r| r.updated_at.as_str()).collect();
            let sql = format!(
                "INSERT INTO {PATIENT_WRITE} \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                 $6::date[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[]){on_conflict}"
            );
            sqlx::query(&sql)
                .bind(&nhs)
                .bind(&family)
                .bind(&given)
                .bind(&family_norm)
                .bind(&given_norm)
                .bind(&birth_date)
                .bind(&gender)
                .bind(&postcode)
                .bind(&postcode_norm)
                .bind(&gp)
                .bind(&updated)
                .execute(&mut *tx)
                .await?;
        }
        // A number merged into another is never an index person again while the merge stands.
        sqlx::query(crate::patient_merge::DROP_RETIRED_PATIENTS)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

impl PostgresStore {
    /// Load patients into an index that holds none of them yet, with `COPY .. FROM STDIN`
    /// (text format): the fastest way in for a region's first load (tens of millions). Fails
    /// whole if any NHS number is already there; use [`IndexStore::upsert_patients`] for
    /// updates. Returns the rows copied.
    pub async fn copy_patients(&self, patients: &[IndexedPatient]) -> Result<u64> {
        fn field(out: &mut String, value: Option<&str>) {
            match value {
                None => out.push_str("\\N"),
                Some(v) => {
                    for c in v.chars() {
                        match c {
                            '\\' => out.push_str("\\\\"),
                            '\t' => out.push_str("\\t"),
                            '\n' => out.push_str("\\n"),
                            '\r' => out.push_str("\\r"),
                            c => out.push(c),
                        }
                    }
                }
            }
        }
        let mut text = String::with_capacity(patients.len() * 160);
        for p in patients {
            let r = PatientRow::new(p);
            let birth = p.birth_date.to_string();
            let cols = [
                Some(p.nhs_number.as_str()),
                Some(p.family.as_str()),
                Some(p.given.as_str()),
                Some(r.family_norm.as_str()),
                Some(r.given_norm.as_str()),
                Some(birth.as_str()),
                p.gender.as_deref(),
                p.postcode.as_deref(),
                r.postcode_norm.as_deref(),
                p.gp_practice.as_deref(),
                Some(r.updated_at.as_str()),
            ];
            for (i, c) in cols.iter().enumerate() {
                if i > 0 {
                    text.push('\t');
                }
                field(&mut text, *c);
            }
            text.push('\n');
        }
        let mut conn = self.pool.acquire().await?;
        let mut copy = conn
            .copy_in_raw(&format!("COPY {PATIENT_WRITE} FROM STDIN"))
            .await?;
        copy.send(text.into_bytes()).await?;
        Ok(copy.finish().await?)
    }
}

#[async_trait]
impl IndexStore for PostgresStore {
    async fn upsert_patients(&self, patients: &[IndexedPatient]) -> Result<()> {
        self.write_patients(patients, crate::PATIENT_REPLACE).await
    }

    async fn insert_missing_patients(&self, patients: &[IndexedPatient]) -> Result<()> {
        self.write_patients(patients, crate::PATIENT_KEEP).await
    }

    async fn upsert_links(&self, links: &[SourceLink]) -> Result<()> {
        let rows = last_per_key(links, |l| (l.source.clone(), l.local_id.clone()));
        let mut tx = self.pool.begin().await?;
        for chunk in rows.chunks(CHUNK) {
            let source: Vec<&str> = chunk.iter().map(|l| l.source.as_str()).collect();
            let local_id: Vec<&str> = chunk.iter().map(|l| l.local_id.as_str()).collect();
            let nhs: Vec<&str> = chunk.iter().map(|l| l.nhs_number.as_str()).collect();
            let method: Vec<&str> = chunk.iter().map(|l| l.method.as_str()).collect();
            let family: Vec<&str> = chunk.iter().map(|l| l.family.as_str()).collect();
            let given: Vec<&str> = chunk.iter().map(|l| l.given.as_str()).collect();
            let birth_date: Vec<Option<NaiveDate>> = chunk.iter().map(|l| l.birth_date).collect();
            let postcode: Vec<Option<&str>> = chunk.iter().map(|l| l.postcode.as_deref()).collect();
            let linked: Vec<String> = chunk.iter().map(|l| ts(&l.linked_at)).collect();
            sqlx::query(&format!(
                "INSERT INTO {LINK_WRITE} \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                 $6::text[], $7::date[], $8::text[], $9::text[]){LINK_UPSERT}"
            ))
            .bind(&source)
            .bind(&local_id)
            .bind(&nhs)
            .bind(&method)
            .bind(&family)
            .bind(&given)
            .bind(&birth_date)
            .bind(&postcode)
            .bind(&linked)
            .execute(&mut *tx)
            .await?;
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
            .fetch_optional(&self.pool, patient_from_row)
            .await
    }

    async fn links(&self, nhs: &NhsNumber) -> Result<Vec<SourceLink>> {
        index::links(nhs).fetch_all(&self.pool, link_from_row).await
    }

    async fn link_for_local(
        &self,
        source: &SourceId,
        local_id: &str,
    ) -> Result<Option<SourceLink>> {
        index::link_for_local(source, local_id)
            .fetch_optional(&self.pool, link_from_row)
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
        index::search(&q, limit, None)
            .fetch_all(&self.pool, patient_from_row)
            .await
    }

    async fn record_unmatched(&self, record: &UnmatchedRecord) -> Result<()> {
        index::record_unmatched(record)
            .query()
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn clear_unmatched(&self, source: &SourceId, local_id: &str) -> Result<()> {
        index::clear_unmatched(source, local_id)
            .query()
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn unmatched(&self, source: Option<&SourceId>) -> Result<Vec<UnmatchedRecord>> {
        index::unmatched(source)
            .fetch_all(&self.pool, unmatched_from_row)
            .await
    }

    async fn sync_watermark(&self, source: &SourceId) -> Result<Option<String>> {
        index::sync_watermark(source)
            .fetch_optional(&self.pool, watermark_from_row)
            .await
    }

    async fn set_sync_watermark(&self, source: &SourceId, watermark: &str) -> Result<()> {
        index::set_sync_watermark(source, watermark)
            .query()
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn patient_count(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(PATIENT_COUNT)
            .fetch_one(&self.pool)
            .await?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt("negative patient count".into()))
    }
}
