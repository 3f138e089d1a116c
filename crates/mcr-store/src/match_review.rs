//! What probabilistic matching keeps (both backends): the pairs of a source record and an
//! index patient that a person must look at (`match_candidate`), the decisions people made
//! about pairs (`match_decision`, which a later sync never overrides), and the batched reads
//! and writes the matching pass needs (the index read in pages, links removed, unmatched
//! records kept, a batch at a time). A decision is written with its audit record in one
//! transaction.

use crate::common::{
    last_per_key, parse_nhs, parse_source, parse_ts, patient_from_row, ts, PATIENT_COLUMNS,
};
use crate::{
    AuditAppend, AuditRow, ChainFn, IndexedPatient, PostgresStore, Result, SourceLink, SqliteStore,
    StoreError, UnmatchedRecord,
};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use mcr_domain::{NhsNumber, SourceId};
use sqlx::Row;

/// A source record and an index patient that may be one person.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchCandidateRow {
    pub source: SourceId,
    pub local_id: String,
    pub nhs_number: NhsNumber,
    /// `review` or `possible-wrong-nhs-number`.
    pub kind: String,
    /// The match weight (log2 of the odds the comparison gives).
    pub score: f64,
    /// The comparison vector (`family=exact given=typo …`): levels, never values.
    pub agreement: String,
    /// `possible-twin`, `possible-parent-child`, `ambiguous`, or none.
    pub guard: Option<String>,
    /// The source record's demographics.
    pub family: String,
    pub given: String,
    pub birth_date: Option<NaiveDate>,
    pub gender: Option<String>,
    pub postcode: Option<String>,
    pub found_at: DateTime<Utc>,
}

/// What a person decided about a pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchDecisionRow {
    pub source: SourceId,
    pub local_id: String,
    pub nhs_number: NhsNumber,
    /// `link` or `not-a-match`.
    pub decision: String,
    pub decided_by: String,
    pub decided_at: DateTime<Utc>,
}

/// The most candidates one listing returns.
pub const MATCH_LIST_MAX: u32 = 1_000;

/// A source record, by its source and local id.
pub type RecordKey = (SourceId, String);

#[async_trait]
pub trait MatchStore: Send + Sync {
    /// Index patients with an NHS number after `after`, in NHS number order, at most `limit`:
    /// the index read a page at a time.
    async fn patients_after(
        &self,
        after: Option<&NhsNumber>,
        limit: u32,
    ) -> Result<Vec<IndexedPatient>>;
    /// The index patients with these NHS numbers (those not held are left out).
    async fn patients_by_nhs(&self, nhs: &[NhsNumber]) -> Result<Vec<IndexedPatient>>;
    /// Remove these records' links; returns how many there were.
    async fn remove_links(&self, records: &[RecordKey]) -> Result<u64>;
    /// Forget what matching said before about `evaluated` records and keep `candidates`
    /// instead (one transaction).
    async fn replace_match_candidates(
        &self,
        evaluated: &[RecordKey],
        candidates: &[MatchCandidateRow],
    ) -> Result<()>;
    /// Pairs awaiting review, highest score first, at most [`MATCH_LIST_MAX`].
    async fn match_candidates(&self) -> Result<Vec<MatchCandidateRow>>;
    /// Pairs awaiting review that name this patient.
    async fn match_candidates_for(&self, nhs: &NhsNumber) -> Result<Vec<MatchCandidateRow>>;
    /// One source record's pairs awaiting review.
    async fn match_candidates_of(
        &self,
        source: &SourceId,
        local_id: &str,
    ) -> Result<Vec<MatchCandidateRow>>;
    /// Every decision people have made.
    async fn match_decisions(&self) -> Result<Vec<MatchDecisionRow>>;
    /// Record a decision and append `audit`, in one transaction: the pair leaves the queue; a
    /// `link` writes `link` (and the record's other pairs leave the queue); a `not-a-match`
    /// removes the record's link to that patient if it had one.
    async fn decide_match(
        &self,
        decision: &MatchDecisionRow,
        link: Option<&SourceLink>,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<AuditRow>;
    /// [`crate::IndexStore::record_unmatched`] for many records, one transaction.
    async fn record_unmatched_batch(&self, records: &[UnmatchedRecord]) -> Result<()>;
    /// [`crate::IndexStore::clear_unmatched`] for many records, one transaction.
    async fn clear_unmatched_batch(&self, records: &[RecordKey]) -> Result<()>;
}

const CANDIDATE_COLUMNS: &str = "source, local_id, nhs_number, kind, score, agreement, guard, \
     family, given, birth_date, gender, postcode, found_at";
const DECISION_COLUMNS: &str = "source, local_id, nhs_number, decision, decided_by, decided_at";

fn candidate_from_row<R>(row: &R) -> Result<MatchCandidateRow>
where
    R: Row,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<NaiveDate>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    let bad = |c: &str| StoreError::Corrupt(format!("match_candidate.{c} cannot be read"));
    let text = |c: &str| -> Result<String> { row.try_get::<String, _>(c).map_err(|_| bad(c)) };
    let opt = |c: &str| -> Result<Option<String>> {
        row.try_get::<Option<String>, _>(c).map_err(|_| bad(c))
    };
    Ok(MatchCandidateRow {
        source: parse_source("match_candidate.source", &text("source")?)?,
        local_id: text("local_id")?,
        nhs_number: parse_nhs("match_candidate.nhs_number", &text("nhs_number")?)?,
        kind: text("kind")?,
        score: row.try_get("score").map_err(|_| bad("score"))?,
        agreement: text("agreement")?,
        guard: opt("guard")?,
        family: text("family")?,
        given: text("given")?,
        birth_date: row.try_get("birth_date").map_err(|_| bad("birth_date"))?,
        gender: opt("gender")?,
        postcode: opt("postcode")?,
        found_at: parse_ts("match_candidate.found_at", &text("found_at")?)?,
    })
}

fn decision_from_row<R>(row: &R) -> Result<MatchDecisionRow>
where
    R: Row,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    let text = |c: &str| -> Result<String> {
        row.try_get::<String, _>(c)
            .map_err(|_| StoreError::Corrupt(format!("match_decision.{c} cannot be read")))
    };
    Ok(MatchDecisionRow {
        source: parse_source("match_decision.source", &text("source")?)?,
        local_id: text("local_id")?,
        nhs_number: parse_nhs("match_decision.nhs_number", &text("nhs_number")?)?,
        decision: text("decision")?,
        decided_by: text("decided_by")?,
        decided_at: parse_ts("match_decision.decided_at", &text("decided_at")?)?,
    })
}

fn check_decision(d: &MatchDecisionRow, link: Option<&SourceLink>) -> Result<()> {
    match (d.decision.as_str(), link) {
        ("link", Some(l))
            if l.source == d.source && l.local_id == d.local_id && l.nhs_number == d.nhs_number =>
        {
            Ok(())
        }
        ("not-a-match", None) => Ok(()),
        _ => Err(StoreError::Config(
            "a match decision is `link` with the link it makes, or `not-a-match` without one"
                .into(),
        )),
    }
}

/// Record keys per statement on SQLite (two parameters each, well under its limit).
const KEYS_PER_STATEMENT: usize = 400;

/// Delete `records` from `table` by `(source, local_id)`, many per statement, in `tx`.
async fn sqlite_delete_keys(
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
        let sql = format!(
            "SELECT {PATIENT_COLUMNS} FROM patient WHERE nhs_number > ?1 \
             ORDER BY nhs_number LIMIT ?2"
        );
        sqlx::query(&sql)
            .bind(after.map_or("", NhsNumber::as_str))
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(patient_from_row)
            .collect()
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
        for c in rows {
            sqlx::query(&format!(
                "INSERT INTO match_candidate ({CANDIDATE_COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
                 ON CONFLICT (source, local_id, nhs_number) DO UPDATE SET kind = excluded.kind, \
                 score = excluded.score, agreement = excluded.agreement, guard = excluded.guard, \
                 family = excluded.family, given = excluded.given, \
                 birth_date = excluded.birth_date, gender = excluded.gender, \
                 postcode = excluded.postcode, found_at = excluded.found_at"
            ))
            .bind(c.source.as_str())
            .bind(&c.local_id)
            .bind(c.nhs_number.as_str())
            .bind(&c.kind)
            .bind(c.score)
            .bind(&c.agreement)
            .bind(c.guard.as_deref())
            .bind(&c.family)
            .bind(&c.given)
            .bind(c.birth_date)
            .bind(c.gender.as_deref())
            .bind(c.postcode.as_deref())
            .bind(ts(&c.found_at))
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
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(candidate_from_row)
        .collect()
    }

    async fn match_candidates_for(&self, nhs: &NhsNumber) -> Result<Vec<MatchCandidateRow>> {
        sqlx::query(&format!(
            "SELECT {CANDIDATE_COLUMNS} FROM match_candidate WHERE nhs_number = ?1 \
             ORDER BY source, local_id"
        ))
        .bind(nhs.as_str())
        .fetch_all(&self.read)
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
            "SELECT {CANDIDATE_COLUMNS} FROM match_candidate WHERE source = ?1 AND local_id = ?2 \
             ORDER BY score DESC, nhs_number"
        ))
        .bind(source.as_str())
        .bind(local_id)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(candidate_from_row)
        .collect()
    }

    async fn match_decisions(&self) -> Result<Vec<MatchDecisionRow>> {
        sqlx::query(&format!(
            "SELECT {DECISION_COLUMNS} FROM match_decision ORDER BY source, local_id, nhs_number"
        ))
        .fetch_all(&self.read)
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
        let (_one_chain, mut writer) = self.begin_append().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *writer, crate::sqlite::IMMEDIATE).await?;
        sqlx::query(&format!(
            "INSERT INTO match_decision ({DECISION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
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
                sqlx::query("DELETE FROM match_candidate WHERE source = ?1 AND local_id = ?2")
                    .bind(d.source.as_str())
                    .bind(&d.local_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO source_link (source, local_id, nhs_number, method, family, \
                     given, birth_date, postcode, linked_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
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
                sqlx::query("DELETE FROM unmatched_record WHERE source = ?1 AND local_id = ?2")
                    .bind(d.source.as_str())
                    .bind(&d.local_id)
                    .execute(&mut *tx)
                    .await?;
            }
            None => {
                sqlx::query(
                    "DELETE FROM match_candidate WHERE source = ?1 AND local_id = ?2 \
                     AND nhs_number = ?3",
                )
                .bind(d.source.as_str())
                .bind(&d.local_id)
                .bind(d.nhs_number.as_str())
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "DELETE FROM source_link WHERE source = ?1 AND local_id = ?2 \
                     AND nhs_number = ?3",
                )
                .bind(d.source.as_str())
                .bind(&d.local_id)
                .bind(d.nhs_number.as_str())
                .execute(&mut *tx)
                .await?;
            }
        }
        let row = crate::sqlite::append_audit_in_tx(&mut tx, audit, chain).await?;
        tx.commit().await?;
        Ok(row)
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
            qb.push(
                " ON CONFLICT (source, local_id) DO UPDATE SET reason = excluded.reason, \
                 candidates = excluded.candidates, seen_at = excluded.seen_at",
            );
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
        let row = crate::postgres::append_audit_in_tx(&mut tx, audit, chain).await?;
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
