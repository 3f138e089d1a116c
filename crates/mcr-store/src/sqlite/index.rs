//! The patient index's batches on SQLite ([`IndexBatches`]): rows bound in chunks (PostgreSQL
//! binds them as arrays), and the index each search names.

use super::SqliteStore;
use crate::common::{last_per_key, ts};
use crate::index::{IndexBatches, NormalQuery, PatientRow, LINK_UPSERT, LINK_WRITE, PATIENT_WRITE};
use crate::{IndexedPatient, Result, SourceLink};
use async_trait::async_trait;
use sqlx::{Connection as _, QueryBuilder, Sqlite};

/// Rows per multi-row `INSERT` (11 parameters each, far below SQLite's 32766 limit). Every
/// full chunk has the same SQL, so its prepared statement is reused from the cache.
const CHUNK: usize = 500;

#[async_trait]
impl IndexBatches for SqliteStore {
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
                    .push_bind(r.p.address.as_deref())
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

    /// Links in multi-row statements of [`CHUNK`], one transaction per call.
    async fn write_links(&self, links: &[SourceLink]) -> Result<()> {
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

    fn search_index(q: &NormalQuery) -> Option<&'static str> {
        // Without statistics SQLite prefers the index that avoids the sort even when a birth
        // date makes (family_norm, birth_date) far more selective; say which to use.
        Some(if q.birth_date.is_some() {
            "patient_family_birth"
        } else {
            "patient_family_given"
        })
    }
}
