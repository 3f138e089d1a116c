//! What a matching pass reads and writes on SQLite ([`MatchStore`]): batches as rows bound in
//! chunks (SQLite has no arrays; PostgreSQL binds a batch as arrays, one statement each). The
//! review queue is [`crate::match_review::MatchReviewStore`], the same on both backends.

use super::SqliteStore;
use crate::common::{last_per_key, ts, Dialect, Statement};
use crate::index::{patient_from_row, PATIENT_COLUMNS, UNMATCHED_UPSERT};
use crate::match_review::{
    patients_after_sql, patients_after_values, patients_from_json, MatchCandidateRow, MatchStore,
    RecordKey, CANDIDATE_COLUMNS, CANDIDATE_UPSERT,
};
use crate::{IndexedPatient, Result, UnmatchedRecord};
use async_trait::async_trait;
use mcr_domain::NhsNumber;
use sqlx::Row;
use std::sync::LazyLock;

/// Record keys per statement on SQLite (two parameters each, well under its limit).
const KEYS_PER_STATEMENT: usize = 400;

/// Review pairs per statement on SQLite.
const CANDIDATES_PER_STATEMENT: usize = 400;

/// Delete `records` from `table` by `(source, local_id)`, many per statement, in `tx`.
pub(super) async fn sqlite_delete_keys(
    tx: &mut sqlx::SqliteConnection,
    table: &str,
    records: &[RecordKey],
) -> Result<u64> {
    let mut removed = 0;
    for chunk in records.chunks(KEYS_PER_STATEMENT) {
        let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!(
            "DELETE FROM {table} WHERE (source, local_id) IN (VALUES "
        ));
        let mut sep = qb.separated(", ");
        for (source, local_id) in chunk {
            sep.push("(")
                .push_bind_unseparated(source.as_str())
                .push_unseparated(", ")
                .push_bind_unseparated(local_id.as_str())
                .push_unseparated(")");
        }
        qb.push(")");
        removed += qb.build().execute(&mut *tx).await?.rows_affected();
    }
    Ok(removed)
}

#[async_trait]
impl MatchStore for SqliteStore {
    async fn patients_after(
        &self,
        after: Option<&NhsNumber>,
        limit: u32,
    ) -> Result<Vec<IndexedPatient>> {
        static SQL: LazyLock<String> = LazyLock::new(|| patients_after_sql(Dialect::Sqlite));
        let page = Statement::new(SQL.as_str(), patients_after_values(after, limit));
        let answer: String = page
            .query::<sqlx::Sqlite>()
            .fetch_one(&self.read)
            .await?
            .try_get(0)?;
        patients_from_json(&answer)
    }

    async fn patients_by_nhs(&self, nhs: &[NhsNumber]) -> Result<Vec<IndexedPatient>> {
        let mut out = Vec::with_capacity(nhs.len());
        for chunk in nhs.chunks(500) {
            let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!(
                "SELECT {PATIENT_COLUMNS} FROM patient WHERE nhs_number IN ("
            ));
            let mut sep = qb.separated(", ");
            for n in chunk {
                sep.push_bind(n.as_str());
            }
            qb.push(")");
            for row in qb.build().fetch_all(&self.read).await? {
                out.push(patient_from_row(&row)?);
            }
        }
        Ok(out)
    }

    async fn remove_links(&self, records: &[RecordKey]) -> Result<u64> {
        if records.is_empty() {
            return Ok(0);
        }
        let mut writer = self.write_conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *writer).await?;
        let removed = sqlite_delete_keys(&mut tx, "source_link", records).await?;
        tx.commit().await?;
        Ok(removed)
    }

    async fn replace_match_candidates(
        &self,
        evaluated: &[RecordKey],
        candidates: &[MatchCandidateRow],
    ) -> Result<()> {
        let mut writer = self.write_conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *writer).await?;
        sqlite_delete_keys(&mut tx, "match_candidate", evaluated).await?;
        let rows = last_per_key(candidates, |c| {
            (c.source.clone(), c.local_id.clone(), c.nhs_number.clone())
        });
        // Many rows per statement (13 values each, well under SQLite's limit): a pass at a
        // region's size keeps tens of thousands of pairs.
        for chunk in rows.chunks(CANDIDATES_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!(
                "INSERT INTO match_candidate ({CANDIDATE_COLUMNS}) "
            ));
            qb.push_values(chunk, |mut b, c| {
                b.push_bind(c.source.as_str())
                    .push_bind(c.local_id.as_str())
                    .push_bind(c.nhs_number.as_str())
                    .push_bind(c.kind.as_str())
                    .push_bind(c.score)
                    .push_bind(c.agreement.as_str())
                    .push_bind(c.guard.as_deref())
                    .push_bind(c.family.as_str())
                    .push_bind(c.given.as_str())
                    .push_bind(c.birth_date)
                    .push_bind(c.gender.as_deref())
                    .push_bind(c.postcode.as_deref())
                    .push_bind(ts(&c.found_at));
            });
            qb.push(CANDIDATE_UPSERT);
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn record_unmatched_batch(&self, records: &[UnmatchedRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let rows = last_per_key(records, |r| (r.source.clone(), r.local_id.clone()));
        let mut writer = self.write_conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *writer).await?;
        for chunk in rows.chunks(KEYS_PER_STATEMENT / 2) {
            let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO unmatched_record (source, local_id, reason, candidates, seen_at) ",
            );
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(r.source.as_str())
                    .push_bind(r.local_id.as_str())
                    .push_bind(r.reason.as_str())
                    .push_bind(i64::from(r.candidates))
                    .push_bind(ts(&r.seen_at));
            });
            qb.push(UNMATCHED_UPSERT);
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn clear_unmatched_batch(&self, records: &[RecordKey]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut writer = self.write_conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *writer).await?;
        sqlite_delete_keys(&mut tx, "unmatched_record", records).await?;
        tx.commit().await?;
        Ok(())
    }
}
