//! The patient index's batches on PostgreSQL ([`IndexBatches`]): written as arrays (`UNNEST`)
//! or copied (`COPY`), where SQLite binds rows in chunks.

use super::PostgresStore;
use crate::common::{last_per_key, ts};
use crate::index::{IndexBatches, NormalQuery, PatientRow, LINK_UPSERT, LINK_WRITE, PATIENT_WRITE};
use crate::{IndexedPatient, Result, SourceLink};
use async_trait::async_trait;
use chrono::NaiveDate;

/// Rows per `UNNEST` statement.
const CHUNK: usize = 10_000;

#[async_trait]
impl IndexBatches for PostgresStore {
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
            let address: Vec<Option<&str>> = chunk.iter().map(|r| r.p.address.as_deref()).collect();
            let gp: Vec<Option<&str>> = chunk.iter().map(|r| r.p.gp_practice.as_deref()).collect();
            let updated: Vec<&str> = chunk.iter().map(|r| r.updated_at.as_str()).collect();
            let sql = format!(
                "INSERT INTO {PATIENT_WRITE} \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                 $6::date[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], \
                 $12::text[]){on_conflict}"
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
                .bind(&address)
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

    /// Links in batches of arrays ([`CHUNK`] rows), one transaction per call.
    async fn write_links(&self, links: &[SourceLink]) -> Result<()> {
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

    fn search_index(_: &NormalQuery) -> Option<&'static str> {
        // PostgreSQL has statistics and chooses well itself.
        None
    }
}

impl PostgresStore {
    /// Load patients into an index that holds none of them yet, with `COPY .. FROM STDIN`
    /// (text format): the fastest way in for a region's first load (tens of millions). Fails
    /// whole if any NHS number is already there; use [`crate::IndexStore::upsert_patients`] for
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
                p.address.as_deref(),
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
