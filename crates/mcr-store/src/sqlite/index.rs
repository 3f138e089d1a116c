//! The patient index on SQLite.

use super::SqliteStore;
use crate::common::{last_per_key, ts};
use crate::index::{
    link_from_row, patient_from_row, unmatched_from_row, NormalQuery, PatientRow, LINK_COLUMNS,
    PATIENT_COLUMNS,
};
use crate::{
    DemographicQuery, IndexStore, IndexedPatient, Result, SourceLink, StoreError, UnmatchedRecord,
};
use async_trait::async_trait;
use mcr_domain::{NhsNumber, SourceId};
use sqlx::{Connection as _, QueryBuilder, Row, Sqlite};

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
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO patient (nhs_number, family, given, family_norm, given_norm, \
                 birth_date, gender, postcode, postcode_norm, gp_practice, updated_at) ",
            );
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
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO source_link (source, local_id, nhs_number, method, family, given, \
                 birth_date, postcode, linked_at) ",
            );
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
            qb.push(
                " ON CONFLICT (source, local_id) DO UPDATE SET nhs_number = excluded.nhs_number, \
                 method = excluded.method, family = excluded.family, given = excluded.given, \
                 birth_date = excluded.birth_date, postcode = excluded.postcode, \
                 linked_at = excluded.linked_at",
            );
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
        let sql = format!("SELECT {PATIENT_COLUMNS} FROM patient WHERE nhs_number = ?1");
        let row = sqlx::query(&sql)
            .bind(nhs.as_str())
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(patient_from_row).transpose()
    }

    async fn links(&self, nhs: &NhsNumber) -> Result<Vec<SourceLink>> {
        let sql = format!(
            "SELECT {LINK_COLUMNS} FROM source_link WHERE nhs_number = ?1 ORDER BY source, local_id"
        );
        let rows = sqlx::query(&sql)
            .bind(nhs.as_str())
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(link_from_row).collect()
    }

    async fn link_for_local(
        &self,
        source: &SourceId,
        local_id: &str,
    ) -> Result<Option<SourceLink>> {
        let sql =
            format!("SELECT {LINK_COLUMNS} FROM source_link WHERE source = ?1 AND local_id = ?2");
        let row = sqlx::query(&sql)
            .bind(source.as_str())
            .bind(local_id)
            .fetch_optional(&self.read)
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
        // Without statistics SQLite prefers the index that avoids the sort even when a birth
        // date makes (family_norm, birth_date) far more selective; say which to use.
        let index = if q.birth_date.is_some() {
            "patient_family_birth"
        } else {
            "patient_family_given"
        };
        let mut qb = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {PATIENT_COLUMNS} FROM patient INDEXED BY {index} WHERE family_norm = "
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
        let rows = qb.build().fetch_all(&self.read).await?;
        rows.iter().map(patient_from_row).collect()
    }

    async fn record_unmatched(&self, record: &UnmatchedRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO unmatched_record (source, local_id, reason, candidates, seen_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (source, local_id) DO UPDATE SET reason = excluded.reason, \
             candidates = excluded.candidates, seen_at = excluded.seen_at",
        )
        .bind(record.source.as_str())
        .bind(&record.local_id)
        .bind(&record.reason)
        .bind(i64::from(record.candidates))
        .bind(ts(&record.seen_at))
        .execute(&mut *self.write_conn().await?)
        .await?;
        Ok(())
    }

    async fn clear_unmatched(&self, source: &SourceId, local_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM unmatched_record WHERE source = ?1 AND local_id = ?2")
            .bind(source.as_str())
            .bind(local_id)
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(())
    }

    async fn unmatched(&self, source: Option<&SourceId>) -> Result<Vec<UnmatchedRecord>> {
        let rows = sqlx::query(
            "SELECT source, local_id, reason, candidates, seen_at FROM unmatched_record \
             WHERE ?1 IS NULL OR source = ?1 ORDER BY source, local_id",
        )
        .bind(source.map(SourceId::as_str))
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(unmatched_from_row).collect()
    }

    async fn sync_watermark(&self, source: &SourceId) -> Result<Option<String>> {
        let row = sqlx::query("SELECT watermark FROM sync_state WHERE source = ?1")
            .bind(source.as_str())
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| r.try_get("watermark")).transpose()?)
    }

    async fn set_sync_watermark(&self, source: &SourceId, watermark: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO sync_state (source, watermark) VALUES (?1, ?2) \
             ON CONFLICT (source) DO UPDATE SET watermark = excluded.watermark",
        )
        .bind(source.as_str())
        .bind(watermark)
        .execute(&mut *self.write_conn().await?)
        .await?;
        Ok(())
    }

    async fn patient_count(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM patient")
            .fetch_one(&self.read)
            .await?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt("negative patient count".into()))
    }
}
