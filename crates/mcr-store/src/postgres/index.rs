//! The patient index on PostgreSQL.

use super::PostgresStore;
use crate::common::{last_per_key, ts};
use crate::index::{
    link_from_row, patient_from_row, unmatched_from_row, NormalQuery, PatientRow, LINK_COLUMNS,
    PATIENT_COLUMNS,
};
use crate::{
    DemographicQuery, IndexStore, IndexedPatient, Result, SourceLink, StoreError, UnmatchedRecord,
};
use async_trait::async_trait;
use chrono::NaiveDate;
use mcr_domain::{NhsNumber, SourceId};
use sqlx::{Postgres, QueryBuilder, Row};

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
                "INSERT INTO patient (nhs_number, family, given, family_norm, given_norm, \
                 birth_date, gender, postcode, postcode_norm, gp_practice, updated_at) \
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
            .copy_in_raw(
                "COPY patient (nhs_number, family, given, family_norm, given_norm, birth_date, \
                 gender, postcode, postcode_norm, gp_practice, updated_at) FROM STDIN",
            )
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
            sqlx::query(
                "INSERT INTO source_link (source, local_id, nhs_number, method, family, given, \
                 birth_date, postcode, linked_at) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                 $6::text[], $7::date[], $8::text[], $9::text[]) \
                 ON CONFLICT (source, local_id) DO UPDATE SET nhs_number = excluded.nhs_number, \
                 method = excluded.method, family = excluded.family, given = excluded.given, \
                 birth_date = excluded.birth_date, postcode = excluded.postcode, \
                 linked_at = excluded.linked_at",
            )
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
        let sql = format!("SELECT {PATIENT_COLUMNS} FROM patient WHERE nhs_number = $1");
        let row = sqlx::query(&sql)
            .bind(nhs.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(patient_from_row).transpose()
    }

    async fn links(&self, nhs: &NhsNumber) -> Result<Vec<SourceLink>> {
        let sql = format!(
            "SELECT {LINK_COLUMNS} FROM source_link WHERE nhs_number = $1 ORDER BY source, local_id"
        );
        let rows = sqlx::query(&sql)
            .bind(nhs.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(link_from_row).collect()
    }

    async fn link_for_local(
        &self,
        source: &SourceId,
        local_id: &str,
    ) -> Result<Option<SourceLink>> {
        let sql =
            format!("SELECT {LINK_COLUMNS} FROM source_link WHERE source = $1 AND local_id = $2");
        let row = sqlx::query(&sql)
            .bind(source.as_str())
            .bind(local_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(link_from_row).transpose()
    }

    async fn search_patients(
        &self,
        query: &DemographicQuery,
        limit: u32,
    ) -> Result<Vec<IndexedPatient>> {
        let Some(q) = NormalQuery::new(query) else {
            return Ok(Vec::new());
        };
        // Only the given conditions appear in the SQL, so the planner can use the
        // (family_norm, birth_date) index for both equalities.
        let mut qb = QueryBuilder::<Postgres>::new(format!(
            "SELECT {PATIENT_COLUMNS} FROM patient WHERE family_norm = "
        ));
        qb.push_bind(&q.family);
        if let Some(birth_date) = q.birth_date {
            qb.push(" AND birth_date = ").push_bind(birth_date);
        }
        if let Some((from, to)) = &q.given_range {
            qb.push(" AND given_norm >= ").push_bind(from);
            qb.push(" AND given_norm < ").push_bind(to);
        }
        if let Some(postcode) = &q.postcode {
            qb.push(" AND postcode_norm = ").push_bind(postcode);
        }
        qb.push(" ORDER BY family_norm, given_norm, birth_date, nhs_number LIMIT ")
            .push_bind(i64::from(limit));
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter().map(patient_from_row).collect()
    }

    async fn record_unmatched(&self, record: &UnmatchedRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO unmatched_record (source, local_id, reason, candidates, seen_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (source, local_id) DO UPDATE SET reason = excluded.reason, \
             candidates = excluded.candidates, seen_at = excluded.seen_at",
        )
        .bind(record.source.as_str())
        .bind(&record.local_id)
        .bind(&record.reason)
        .bind(i64::from(record.candidates))
        .bind(ts(&record.seen_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn clear_unmatched(&self, source: &SourceId, local_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM unmatched_record WHERE source = $1 AND local_id = $2")
            .bind(source.as_str())
            .bind(local_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn unmatched(&self, source: Option<&SourceId>) -> Result<Vec<UnmatchedRecord>> {
        let rows = sqlx::query(
            "SELECT source, local_id, reason, candidates, seen_at FROM unmatched_record \
             WHERE $1::text IS NULL OR source = $1 ORDER BY source, local_id",
        )
        .bind(source.map(SourceId::as_str))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(unmatched_from_row).collect()
    }

    async fn sync_watermark(&self, source: &SourceId) -> Result<Option<String>> {
        let row = sqlx::query("SELECT watermark FROM sync_state WHERE source = $1")
            .bind(source.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("watermark")).transpose()?)
    }

    async fn set_sync_watermark(&self, source: &SourceId, watermark: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO sync_state (source, watermark) VALUES ($1, $2) \
             ON CONFLICT (source) DO UPDATE SET watermark = excluded.watermark",
        )
        .bind(source.as_str())
        .bind(watermark)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn patient_count(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM patient")
            .fetch_one(&self.pool)
            .await?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt("negative patient count".into()))
    }
}
