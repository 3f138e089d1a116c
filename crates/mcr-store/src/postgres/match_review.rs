//! What a matching pass reads and writes on PostgreSQL ([`MatchStore`]): batches as arrays
//! (`UNNEST`, `ANY`), one statement per batch where SQLite binds rows in chunks. The review
//! queue is [`crate::match_review::MatchReviewStore`], the same on both backends.

use super::PostgresStore;
use crate::common::{last_per_key, ts, Dialect, Statement};
use crate::index::{patient_from_row, PATIENT_COLUMNS, UNMATCHED_UPSERT};
use crate::match_review::{
    patients_after_sql, patients_after_values, patients_from_json, MatchCandidateRow, MatchStore,
    RecordKey, CANDIDATE_COLUMNS, CANDIDATE_UPSERT,
};
use crate::{IndexedPatient, Result, UnmatchedRecord};
use async_trait::async_trait;
use chrono::NaiveDate;
use mcr_domain::NhsNumber;
use sqlx::Row;
use std::sync::LazyLock;

/// Delete `records` from `table` by `(source, local_id)`, in one statement (the keys as two
/// arrays: SQLite, which has none, binds them in chunks of rows instead).
pub(super) async fn delete_keys<'e>(
    e: impl sqlx::PgExecutor<'e>,
    table: &str,
    records: &[RecordKey],
) -> Result<u64> {
    let (source, local_id): (Vec<&str>, Vec<&str>) = records
        .iter()
        .map(|(s, l)| (s.as_str(), l.as_str()))
        .unzip();
    let done = sqlx::query(&format!(
        "DELETE FROM {table} WHERE (source, local_id) IN \
         (SELECT * FROM UNNEST($1::text[], $2::text[]))"
    ))
    .bind(&source)
    .bind(&local_id)
    .execute(e)
    .await?;
    Ok(done.rows_affected())
}

#[async_trait]
impl MatchStore for PostgresStore {
    async fn patients_after(
        &self,
        after: Option<&NhsNumber>,
        limit: u32,
    ) -> Result<Vec<IndexedPatient>> {
        static SQL: LazyLock<String> = LazyLock::new(|| patients_after_sql(Dialect::Postgres));
        let page = Statement::new(SQL.as_str(), patients_after_values(after, limit));
        let answer: String = page
            .query::<sqlx::Postgres>()
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        patients_from_json(&answer)
    }

    async fn patients_by_nhs(&self, nhs: &[NhsNumber]) -> Result<Vec<IndexedPatient>> {
        let keys: Vec<&str> = nhs.iter().map(NhsNumber::as_str).collect();
        sqlx::query(&format!(
            "SELECT {PATIENT_COLUMNS} FROM patient WHERE nhs_number = ANY($1::text[])"
        ))
        .bind(&keys)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(patient_from_row)
        .collect()
    }

    async fn remove_links(&self, records: &[RecordKey]) -> Result<u64> {
        if records.is_empty() {
            return Ok(0);
        }
        delete_keys(&self.pool, "source_link", records).await
    }

    async fn replace_match_candidates(
        &self,
        evaluated: &[RecordKey],
        candidates: &[MatchCandidateRow],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        delete_keys(&mut *tx, "match_candidate", evaluated).await?;
        let rows = last_per_key(candidates, |c| {
            (c.source.clone(), c.local_id.clone(), c.nhs_number.clone())
        });
        for chunk in rows.chunks(5_000) {
            let col = |f: &dyn Fn(&MatchCandidateRow) -> Option<String>| -> Vec<Option<String>> {
                chunk.iter().map(|c| f(c)).collect()
            };
            let score: Vec<f64> = chunk.iter().map(|c| c.score).collect();
            let birth: Vec<Option<NaiveDate>> = chunk.iter().map(|c| c.birth_date).collect();
            sqlx::query(&format!(
                "INSERT INTO match_candidate ({CANDIDATE_COLUMNS}) SELECT * FROM UNNEST(\
                 $1::text[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::text[], \
                 $7::text[], $8::text[], $9::text[], $10::date[], $11::text[], $12::text[], \
                 $13::text[]){CANDIDATE_UPSERT}"
            ))
            .bind(col(&|c| Some(c.source.to_string())))
            .bind(col(&|c| Some(c.local_id.clone())))
            .bind(col(&|c| Some(c.nhs_number.to_string())))
            .bind(col(&|c| Some(c.kind.clone())))
            .bind(&score)
            .bind(col(&|c| Some(c.agreement.clone())))
            .bind(col(&|c| c.guard.clone()))
            .bind(col(&|c| Some(c.family.clone())))
            .bind(col(&|c| Some(c.given.clone())))
            .bind(&birth)
            .bind(col(&|c| c.gender.clone()))
            .bind(col(&|c| c.postcode.clone()))
            .bind(col(&|c| Some(ts(&c.found_at))))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn record_unmatched_batch(&self, records: &[UnmatchedRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let rows = last_per_key(records, |r| (r.source.clone(), r.local_id.clone()));
        let source: Vec<&str> = rows.iter().map(|r| r.source.as_str()).collect();
        let local_id: Vec<&str> = rows.iter().map(|r| r.local_id.as_str()).collect();
        let reason: Vec<&str> = rows.iter().map(|r| r.reason.as_str()).collect();
        let candidates: Vec<i64> = rows.iter().map(|r| i64::from(r.candidates)).collect();
        let seen: Vec<String> = rows.iter().map(|r| ts(&r.seen_at)).collect();
        sqlx::query(&format!(
            "INSERT INTO unmatched_record (source, local_id, reason, candidates, seen_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[])\
             {UNMATCHED_UPSERT}"
        ))
        .bind(&source)
        .bind(&local_id)
        .bind(&reason)
        .bind(&candidates)
        .bind(&seen)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn clear_unmatched_batch(&self, records: &[RecordKey]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        delete_keys(&self.pool, "unmatched_record", records).await?;
        Ok(())
    }
}
