//! What probabilistic matching keeps (the traits and their rows: [`MatchStore`], which each
//! backend's `match_review.rs` implements, and [`MatchReviewStore`], implemented here once
//! through [`Runner`]): the pairs of a source record and an
//! index patient that a person must look at (`match_candidate`), the decisions people made
//! about pairs (`match_decision`, which a later sync never overrides), and the batched reads
//! and writes the matching pass needs (the index read in pages, links removed, unmatched
//! records kept, a batch at a time). A decision is written with its audit record in one
//! transaction.

use crate::common::{
    parse_nhs, parse_source, parse_ts, ts, Cells, Dialect, JsonRow, Statement, Value,
};
use crate::index::{patient_from_row, LINK_COLUMNS, LINK_UPSERT, PATIENT_COLUMN_NAMES};
use crate::runner::{Reader, Runner};
use crate::{
    AuditAppend, AuditRow, ChainFn, IndexedPatient, Result, SourceLink, StoreError, UnmatchedRecord,
};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use mcr_domain::{NhsNumber, SourceId};
use sqlx::Row;
use std::sync::LazyLock;

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

/// What a matching pass reads and writes a batch at a time; each backend's `match_review.rs`
/// implements it its own way (SQLite binds rows in chunks, PostgreSQL binds arrays).
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
    /// [`crate::IndexStore::record_unmatched`] for many records, one transaction.
    async fn record_unmatched_batch(&self, records: &[UnmatchedRecord]) -> Result<()>;
    /// [`crate::IndexStore::clear_unmatched`] for many records, one transaction.
    async fn clear_unmatched_batch(&self, records: &[RecordKey]) -> Result<()>;
}

/// The review queue: the pairs people must look at, and what they decided.
#[async_trait]
pub trait MatchReviewStore: Send + Sync {
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
}

pub(crate) const CANDIDATE_COLUMNS: &str =
    "source, local_id, nhs_number, kind, score, agreement, guard, \
     family, given, birth_date, gender, postcode, found_at";

/// A candidate written again replaces the one held for its record and patient, on both
/// backends (a batch has one row per key: `last_per_key`).
pub(crate) const CANDIDATE_UPSERT: &str =
    " ON CONFLICT (source, local_id, nhs_number) DO UPDATE SET \
     kind = excluded.kind, score = excluded.score, agreement = excluded.agreement, \
     guard = excluded.guard, family = excluded.family, given = excluded.given, \
     birth_date = excluded.birth_date, gender = excluded.gender, \
     postcode = excluded.postcode, found_at = excluded.found_at";

pub(crate) const DECISION_COLUMNS: &str =
    "source, local_id, nhs_number, decision, decided_by, decided_at";

/// The columns [`candidate_from_row`] reads, in [`CANDIDATE_COLUMNS`]' order.
pub(crate) const CANDIDATE_FIELDS: &[&str] = &[
    "source",
    "local_id",
    "nhs_number",
    "kind",
    "score",
    "agreement",
    "guard",
    "family",
    "given",
    "birth_date",
    "gender",
    "postcode",
    "found_at",
];

pub(crate) fn candidate_from_row(row: &impl Cells) -> Result<MatchCandidateRow> {
    const T: &str = "match_candidate";
    Ok(MatchCandidateRow {
        source: parse_source("match_candidate.source", &row.text(T, "source")?)?,
        local_id: row.text(T, "local_id")?,
        nhs_number: row.nhs(T)?,
        kind: row.text(T, "kind")?,
        score: row.real(T, "score")?,
        agreement: row.text(T, "agreement")?,
        guard: row.text_opt(T, "guard")?,
        family: row.text(T, "family")?,
        given: row.text(T, "given")?,
        birth_date: row.date_opt(T, "birth_date")?,
        gender: row.text_opt(T, "gender")?,
        postcode: row.text_opt(T, "postcode")?,
        found_at: row.at(T, "found_at")?,
    })
}

pub(crate) fn decision_from_row<R>(row: &R) -> Result<MatchDecisionRow>
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

pub(crate) fn check_decision(d: &MatchDecisionRow, link: Option<&SourceLink>) -> Result<()> {
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

/// Index patients with an NHS number after `$1`, in NHS number order, at most `$2`, as one
/// statement answering one value: a JSON array of the patients, each an array of
/// [`PATIENT_COLUMN_NAMES`] in order (read with [`patients_from_json`]). One value rather
/// than a row per patient: the matching pass reads the whole index this way, and the driver
/// handing each row across from the database one at a time, not the SQL, was most of that
/// read's time.
pub(crate) fn patients_after_sql(dialect: Dialect) -> String {
    let columns = PATIENT_COLUMN_NAMES.join(", ");
    let page = format!(
        "(SELECT {columns} FROM patient WHERE nhs_number > $1 ORDER BY nhs_number LIMIT $2) page"
    );
    match dialect {
        Dialect::Sqlite => format!(
            "SELECT json_group_array(json_array({columns}) ORDER BY nhs_number) FROM {page}"
        ),
        Dialect::Postgres => format!(
            "SELECT coalesce(json_agg(json_build_array({columns}) ORDER BY nhs_number), \
             '[]'::json)::text FROM {page}"
        ),
    }
}

/// The values of [`patients_after_sql`]: the NHS number after which the page starts, and the
/// page's size.
pub(crate) fn patients_after_values(after: Option<&NhsNumber>, limit: u32) -> Vec<Value<'_>> {
    vec![
        Value::Text(after.map_or("", NhsNumber::as_str)),
        Value::Int(i64::from(limit)),
    ]
}

/// [`patients_after_sql`]'s answer, read (in its order).
pub(crate) fn patients_from_json(answer: &str) -> Result<Vec<IndexedPatient>> {
    let rows: Vec<Vec<serde_json::Value>> = serde_json::from_str(answer).map_err(|_| {
        StoreError::Corrupt("the index page's read is not the JSON it should be".into())
    })?;
    rows.iter()
        .map(|values| {
            patient_from_row(&JsonRow {
                columns: &PATIENT_COLUMN_NAMES,
                values,
            })
        })
        .collect()
}

/// Pairs awaiting review, highest score first, at most [`MATCH_LIST_MAX`].
pub(crate) fn candidates() -> Statement<'static> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {CANDIDATE_COLUMNS} FROM match_candidate \
             ORDER BY score DESC, source, local_id, nhs_number LIMIT {MATCH_LIST_MAX}"
        )
    });
    Statement::new(SQL.as_str(), vec![])
}

/// Pairs awaiting review that name this patient.
pub(crate) fn candidates_for(nhs: &NhsNumber) -> Statement<'_> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {CANDIDATE_COLUMNS} FROM match_candidate WHERE nhs_number = $1 \
             ORDER BY source, local_id"
        )
    });
    Statement::new(SQL.as_str(), vec![Value::Text(nhs.as_str())])
}

/// One source record's pairs awaiting review.
pub(crate) fn candidates_of<'a>(source: &'a SourceId, local_id: &'a str) -> Statement<'a> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {CANDIDATE_COLUMNS} FROM match_candidate WHERE source = $1 AND local_id = $2 \
             ORDER BY score DESC, nhs_number"
        )
    });
    Statement::new(
        SQL.as_str(),
        vec![Value::Text(source.as_str()), Value::Text(local_id)],
    )
}

/// Every decision people have made.
pub(crate) fn decisions() -> Statement<'static> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {DECISION_COLUMNS} FROM match_decision ORDER BY source, local_id, nhs_number"
        )
    });
    Statement::new(SQL.as_str(), vec![])
}

/// What recording a decision writes, in order, before its audit record (all in one
/// transaction): the decision; then for a `link`, the link, with the record's pairs, its
/// unmatched entry and any link to a local identity gone; for a `not-a-match`, that pair and
/// the record's link to that patient gone. Call [`check_decision`] first.
pub(crate) fn decision_writes<'a>(
    d: &'a MatchDecisionRow,
    link: Option<&'a SourceLink>,
) -> Vec<Statement<'a>> {
    static DECISION: LazyLock<String> = LazyLock::new(|| {
        format!(
            "INSERT INTO match_decision ({DECISION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (source, local_id, nhs_number) DO UPDATE SET \
             decision = excluded.decision, decided_by = excluded.decided_by, \
             decided_at = excluded.decided_at"
        )
    });
    static LINK: LazyLock<String> = LazyLock::new(|| {
        format!(
            "INSERT INTO source_link ({LINK_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9){LINK_UPSERT}"
        )
    });
    let record = || vec![Value::Text(d.source.as_str()), Value::Text(&d.local_id)];
    let pair = || {
        vec![
            Value::Text(d.source.as_str()),
            Value::Text(&d.local_id),
            Value::Text(d.nhs_number.as_str()),
        ]
    };
    let mut writes = vec![Statement::new(
        DECISION.as_str(),
        vec![
            Value::Text(d.source.as_str()),
            Value::Text(&d.local_id),
            Value::Text(d.nhs_number.as_str()),
            Value::Text(&d.decision),
            Value::Text(&d.decided_by),
            Value::Owned(ts(&d.decided_at)),
        ],
    )];
    match link {
        Some(l) => writes.extend([
            Statement::new(
                "DELETE FROM match_candidate WHERE source = $1 AND local_id = $2",
                record(),
            ),
            Statement::new(
                LINK.as_str(),
                vec![
                    Value::Text(l.nhs_number.as_str()),
                    Value::Text(l.source.as_str()),
                    Value::Text(&l.local_id),
                    Value::Text(l.method.as_str()),
                    Value::Text(&l.family),
                    Value::Text(&l.given),
                    Value::OptDate(l.birth_date),
                    Value::OptText(l.postcode.as_deref()),
                    Value::Owned(ts(&l.linked_at)),
                ],
            ),
            Statement::new(
                "DELETE FROM unmatched_record WHERE source = $1 AND local_id = $2",
                record(),
            ),
            // Linked to an NHS number: no longer linked to a local identity.
            Statement::new(
                "DELETE FROM local_link WHERE source = $1 AND local_id = $2",
                record(),
            ),
        ]),
        None => writes.extend([
            Statement::new(
                "DELETE FROM match_candidate WHERE source = $1 AND local_id = $2 \
                 AND nhs_number = $3",
                pair(),
            ),
            Statement::new(
                "DELETE FROM source_link WHERE source = $1 AND local_id = $2 \
                 AND nhs_number = $3",
                pair(),
            ),
        ]),
    }
    writes
}

/// Both backends run the same statements for the review queue: [`Runner`] says on which
/// connection.
#[async_trait]
impl<S: Runner> MatchReviewStore for S {
    async fn match_candidates(&self) -> Result<Vec<MatchCandidateRow>> {
        let read = Reader::new(candidate_from_row, candidate_from_row);
        self.fetch_all(&candidates(), read).await
    }

    async fn match_candidates_for(&self, nhs: &NhsNumber) -> Result<Vec<MatchCandidateRow>> {
        let read = Reader::new(candidate_from_row, candidate_from_row);
        self.fetch_all(&candidates_for(nhs), read).await
    }

    async fn match_candidates_of(
        &self,
        source: &SourceId,
        local_id: &str,
    ) -> Result<Vec<MatchCandidateRow>> {
        let read = Reader::new(candidate_from_row, candidate_from_row);
        self.fetch_all(&candidates_of(source, local_id), read).await
    }

    async fn match_decisions(&self) -> Result<Vec<MatchDecisionRow>> {
        let read = Reader::new(decision_from_row, decision_from_row);
        self.fetch_all(&decisions(), read).await
    }

    async fn decide_match(
        &self,
        d: &MatchDecisionRow,
        link: Option<&SourceLink>,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<AuditRow> {
        check_decision(d, link)?;
        self.audited(&decision_writes(d, link), audit, chain).await
    }
}
