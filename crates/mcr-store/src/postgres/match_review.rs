//! What probabilistic matching keeps (review candidates, decisions, batched index reads and writes)
//! on PostgreSQL.

use super::audit::append_audit_in_tx;
use super::PostgresStore;
use crate::common::{last_per_key, ts};
use crate::index::{patient_from_row, PATIENT_COLUMNS};
use crate::match_review::{
    candidate_from_row, check_decision, decision_from_row, MatchCandidateRow, MatchDecisionRow,
    MatchStore, RecordKey, CANDIDATE_COLUMNS, DECISION_COLUMNS, MATCH_LIST_MAX,
};
use crate::{AuditAppend, AuditRow, ChainFn, IndexedPatient, Result, SourceLink, UnmatchedRecord};
use async_trait::async_trait;
use chrono::NaiveDate;
use mcr_domain::{NhsNumber, SourceId};

fn split_keys(records: &[RecordKey]) -> (Vec<&str>, Vec<&str>) {
    records
        .iter()
        .map(|(s, l)| (s.as_str(), l.as_str()))
        .unzip()
}

#[async_trait]
impl MatchStore for PostgresStore {
    async fn patients_after(
        &self,
        after: Option<&NhsNumber>,
        limit: u32,
    ) -> Result<Vec<IndexedPatient>> {
        let sql = format!(
            "SELECT {PATIENT_COLUMNS} FROM patient WHERE nhs_number > $1 \
             ORDER BY nhs_number LIMIT $2"
        );
        sqlx::query(&sql)
            .bind(after.map_or("", NhsNumber::as_str))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(patient_from_row)
            .collect()
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
        let (source, local_id) = split_keys(records);
        let done = sqlx::query(
            "DELETE FROM source_link WHERE (source, local_id) IN \
             (SELECT * FROM UNNEST($1::text[], $2::text[]))",
        )
        .bind(&source)
        .bind(&local_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn replace_match_candidates(
        &self,
        evaluated: &[RecordKey],
        candidates: &[MatchCandidateRow],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let (source, local_id) = split_keys(evaluated);
        sqlx::query(
            "DELETE FROM match_candidate WHERE (source, local_id) IN \
             (SELECT * FROM UNNEST($1::text[], $2::text[]))",
        )
        .bind(&source)
        .bind(&local_id)
        .execute(&mut *tx)
        .await?;
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
                 $13::text[])"
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

    async fn match_candidates(&self) -> Result<Vec<MatchCandidateRow>> {
        sqlx::query(&format!(
            "SELECT {CANDIDATE_COLUMNS} FROM match_candidate \
             ORDER BY score DESC, source, local_id, nhs_number LIMIT {MATCH_LIST_MAX}"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(candidate_from_row)
        .collect()
    }

    async fn match_candidates_for(&self, nhs: &NhsNumber) -> Result<Vec<MatchCandidateRow>> {
        sqlx::query(&format!(
            "SELECT {CANDIDATE_COLUMNS} FROM match_candidate WHERE nhs_number = $1 \
             ORDER BY source, local_id"
        ))
        .bind(nhs.as_str())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(candidate_from_row)
        .collect()
    }

    async fn match_candidates_of(
        &self,
        source: &SourceId,
        local_id: &str,
    ) -> Result<Vec<MatchCandidateRow>> {
        sqlx::query(&format!(
            "SELECT {CANDIDATE_COLUMNS} FROM match_candidate WHERE source = $1 AND local_id = $2 \
             ORDER BY score DESC, nhs_number"
        ))
        .bind(source.as_str())
        .bind(local_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(candidate_from_row)
        .collect()
    }

    async fn match_decisions(&self) -> Result<Vec<MatchDecisionRow>> {
        sqlx::query(&format!(
            "SELECT {DECISION_COLUMNS} FROM match_decision ORDER BY source, local_id, nhs_number"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(decision_from_row)
        .collect()
    }

    async fn decide_match(
        &self,
        d: &MatchDecisionRow,
        link: Option<&SourceLink>,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<AuditRow> {
        check_decision(d, link)?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO match_decision ({DECISION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (source, local_id, nhs_number) DO UPDATE SET \
             decision = excluded.decision, decided_by = excluded.decided_by, \
             decided_at = excluded.decided_at"
        ))
        .bind(d.source.as_str())
        .bind(&d.local_id)
        .bind(d.nhs_number.as_str())
        .bind(&d.decision)
        .bind(&d.decided_by)
        .bind(ts(&d.decided_at))
        .execute(&mut *tx)
        .await?;
        match link {
            Some(l) => {
                sqlx::query("DELETE FROM match_candidate WHERE source = $1 AND local_id = $2")
                    .bind(d.source.as_str())
                    .bind(&d.local_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO source_link (source, local_id, nhs_number, method, family, \
                     given, birth_date, postcode, linked_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (source, local_id) DO UPDATE SET \
                     nhs_number = excluded.nhs_number, method = excluded.method, \
                     family = excluded.family, given = excluded.given, \
                     birth_date = excluded.birth_date, postcode = excluded.postcode, \
                     linked_at = excluded.linked_at",
                )
                .bind(l.source.as_str())
                .bind(&l.local_id)
                .bind(l.nhs_number.as_str())
                .bind(l.method.as_str())
                .bind(&l.family)
                .bind(&l.given)
                .bind(l.birth_date)
                .bind(l.postcode.as_deref())
                .bind(ts(&l.linked_at))
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM unmatched_record WHERE source = $1 AND local_id = $2")
                    .bind(d.source.as_str())
                    .bind(&d.local_id)
                    .execute(&mut *tx)
                    .await?;
                // Linked to an NHS number: no longer linked to a local identity.
                sqlx::query("DELETE FROM local_link WHERE source = $1 AND local_id = $2")
                    .bind(d.source.as_str())
                    .bind(&d.local_id)
                    .execute(&mut *tx)
                    .await?;
            }
            None => {
                for table in ["match_candidate", "source_link"] {
                    sqlx::query(&format!(
                        "DELETE FROM {table} WHERE source = $1 AND local_id = $2 \
                         AND nhs_number = $3"
                    ))
                    .bind(d.source.as_str())
                    .bind(&d.local_id)
                    .bind(d.nhs_number.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        let row = append_audit_in_tx(&mut tx, audit, chain).await?;
        tx.commit().await?;
        Ok(row)
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
        sqlx::query(
            "INSERT INTO unmatched_record (source, local_id, reason, candidates, seen_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[]) \
             ON CONFLICT (source, local_id) DO UPDATE SET reason = excluded.reason, \
             candidates = excluded.candidates, seen_at = excluded.seen_at",
        )
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
        let (source, local_id) = split_keys(records);
        sqlx::query(
            "DELETE FROM unmatched_record WHERE (source, local_id) IN \
             (SELECT * FROM UNNEST($1::text[], $2::text[]))",
        )
        .bind(&source)
        .bind(&local_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
