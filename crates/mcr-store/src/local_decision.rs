//! What people decide about a source record and a local identity (the trait, its rows and the
//! statements, run on either backend through [`crate::runner::Runner`]).
//!
//! The same three decisions as about an index patient, kept apart in `local_match_decision`
//! (a local identity is never written where an NHS number belongs): `link` (a pair in review
//! is one person: the record joins the local identity), `not-a-match` (a pair in review is
//! not) and `unlink` (a record linked to the local identity is not its person). Each is
//! written with its audit record in one transaction, and no later sync overrides it.

use crate::common::{get, parse_source, parse_ts, ts, Statement, Value};
use crate::local_identity::{
    local_candidate_from_row, local_id_from, local_link_from_row, local_link_upsert,
    LOCAL_CANDIDATE_COLUMNS, LOCAL_LINK_COLUMNS,
};
use crate::runner::{Reader, Runner};
use crate::{AuditAppend, AuditRow, ChainFn, LocalLink, Result, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcr_domain::{LocalPersonId, SourceId};
use sqlx::{ColumnIndex, Decode, Row, Type};
use std::sync::LazyLock;

/// What a person decided about a source record and a local identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalDecisionRow {
    pub source: SourceId,
    pub local_id: String,
    pub person: LocalPersonId,
    /// `link`, `not-a-match` or `unlink`.
    pub decision: String,
    pub decided_by: String,
    pub decided_at: DateTime<Utc>,
}

impl LocalDecisionRow {
    /// `link`: the record is the local identity's person. The others keep it from them.
    pub fn links(&self) -> bool {
        self.decision == "link"
    }
}

#[async_trait]
pub trait LocalDecisionStore: Send + Sync {
    /// Every decision people made about records and local identities.
    async fn local_decisions(&self) -> Result<Vec<LocalDecisionRow>>;
    /// One source record's pairs with local identities awaiting review.
    async fn local_candidates_of(
        &self,
        source: &SourceId,
        local_id: &str,
    ) -> Result<Vec<crate::LocalCandidateRow>>;
    /// The local identity a source record is linked to, if any.
    async fn local_link_of(&self, source: &SourceId, local_id: &str) -> Result<Option<LocalLink>>;
    /// Record a decision and append `audit`, in one transaction. `link` (with the link it
    /// makes) writes the link to the local identity, and the record's pairs in review (with
    /// local identities and index patients), its link to an NHS number and its unmatched entry
    /// go; `not-a-match` and `unlink` (without one) drop that pair and the record's link to that
    /// local identity. `None` (nothing written, no audit) when the local identity is not open
    /// (unknown, or resolved to an NHS number since). Refused: linking the record another open
    /// local identity was made from, and unlinking the record this one was made from.
    async fn decide_local_match(
        &self,
        decision: &LocalDecisionRow,
        link: Option<&LocalLink>,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<Option<AuditRow>>;
}

pub(crate) const LOCAL_DECISION_COLUMNS: &str =
    "source, local_id, local_person, decision, decided_by, decided_at";

pub(crate) fn local_decision_from_row<R>(row: &R) -> Result<LocalDecisionRow>
where
    R: Row,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    let source: String = get(row, "source")?;
    let at: String = get(row, "decided_at")?;
    Ok(LocalDecisionRow {
        source: parse_source("local_match_decision.source", &source)?,
        local_id: get(row, "local_id")?,
        person: local_id_from(
            "local_match_decision.local_person",
            get(row, "local_person")?,
        )?,
        decision: get(row, "decision")?,
        decided_by: get(row, "decided_by")?,
        decided_at: parse_ts("local_match_decision.decided_at", &at)?,
    })
}

/// A decision is `link` with the link it makes (this record, this local identity), or
/// `not-a-match` / `unlink` without one.
pub(crate) fn check_local_decision(d: &LocalDecisionRow, link: Option<&LocalLink>) -> Result<()> {
    match (d.decision.as_str(), link) {
        ("link", Some(l))
            if l.source == d.source && l.local_id == d.local_id && l.person == d.person =>
        {
            Ok(())
        }
        ("not-a-match" | "unlink", None) => Ok(()),
        _ => Err(StoreError::Config(
            "a local identity decision is `link` with the link it makes, or `not-a-match` or \
             `unlink` without one"
                .into(),
        )),
    }
}

/// Every decision people made about records and local identities.
pub(crate) fn decisions() -> Statement<'static> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {LOCAL_DECISION_COLUMNS} FROM local_match_decision \
             ORDER BY source, local_id, local_person"
        )
    });
    Statement::new(SQL.as_str(), vec![])
}

/// One source record's pairs with local identities awaiting review (read with
/// [`local_candidate_from_row`]).
pub(crate) fn candidates_of<'a>(source: &'a SourceId, local_id: &'a str) -> Statement<'a> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {LOCAL_CANDIDATE_COLUMNS} FROM local_match_candidate \
             WHERE source = $1 AND local_id = $2 ORDER BY score DESC, local_person"
        )
    });
    Statement::new(
        SQL.as_str(),
        vec![Value::Text(source.as_str()), Value::Text(local_id)],
    )
}

/// The local identity a source record is linked to (read with [`local_link_from_row`]).
pub(crate) fn link_of<'a>(source: &'a SourceId, local_id: &'a str) -> Statement<'a> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!("SELECT {LOCAL_LINK_COLUMNS} FROM local_link WHERE source = $1 AND local_id = $2")
    });
    Statement::new(
        SQL.as_str(),
        vec![Value::Text(source.as_str()), Value::Text(local_id)],
    )
}

/// The decision's local identity, if it is open (an `id`): a decision about
/// one that is unknown or resolved to an NHS number since writes nothing.
pub(crate) fn open_person(d: &LocalDecisionRow) -> Statement<'_> {
    Statement::new(
        "SELECT id FROM local_person WHERE id = $1 AND resolved_to IS NULL",
        vec![Value::Int(d.person.seq())],
    )
}

/// The open local identity the decision's record was made from, if any (an `id`;
/// judged by [`check_origin`]).
pub(crate) fn origin_of(d: &LocalDecisionRow) -> Statement<'_> {
    Statement::new(
        "SELECT id FROM local_person WHERE origin_source = $1 \
         AND origin_local_id = $2 AND resolved_to IS NULL",
        vec![Value::Text(d.source.as_str()), Value::Text(&d.local_id)],
    )
}

/// The record another open local identity was made from is that identity: linking it here
/// would make one person of two; and the record this one was made from stays its own.
/// `made` is what [`origin_of`] read.
pub(crate) fn check_origin(d: &LocalDecisionRow, made: Option<i64>) -> Result<()> {
    match (d.decision.as_str(), made) {
        ("link", Some(other)) if other != d.person.seq() => Err(StoreError::Config(
            "the record another local identity was made from cannot be linked to this one".into(),
        )),
        ("not-a-match" | "unlink", Some(this_one)) if this_one == d.person.seq() => {
            Err(StoreError::Config(
                "the record a local identity was made from cannot be unlinked from it".into(),
            ))
        }
        _ => Ok(()),
    }
}

/// What recording a decision writes, in order, before its audit record (all in one
/// transaction, after [`open_person`] found the identity open and [`check_origin`] passed):
/// the decision; then for a `link`, the record's other pairs, its link to an NHS number and
/// its unmatched entry gone (the record has its person) and its link to the local identity
/// written; for `not-a-match` and `unlink`, that pair and the record's link to that local
/// identity gone. Call [`check_local_decision`] first.
pub(crate) fn decision_writes<'a>(
    d: &'a LocalDecisionRow,
    link: Option<&'a LocalLink>,
) -> Vec<Statement<'a>> {
    static DECISION: LazyLock<String> = LazyLock::new(|| {
        format!(
            "INSERT INTO local_match_decision ({LOCAL_DECISION_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (source, local_id, local_person) DO UPDATE SET \
             decision = excluded.decision, decided_by = excluded.decided_by, \
             decided_at = excluded.decided_at"
        )
    });
    let record = || vec![Value::Text(d.source.as_str()), Value::Text(&d.local_id)];
    let pair = || {
        vec![
            Value::Text(d.source.as_str()),
            Value::Text(&d.local_id),
            Value::Int(d.person.seq()),
        ]
    };
    let mut writes = vec![Statement::new(
        DECISION.as_str(),
        vec![
            Value::Text(d.source.as_str()),
            Value::Text(&d.local_id),
            Value::Int(d.person.seq()),
            Value::Text(&d.decision),
            Value::Text(&d.decided_by),
            Value::Owned(ts(&d.decided_at)),
        ],
    )];
    match link {
        Some(l) => {
            writes.extend(
                [
                    "DELETE FROM local_match_candidate WHERE source = $1 AND local_id = $2",
                    "DELETE FROM match_candidate WHERE source = $1 AND local_id = $2",
                    "DELETE FROM source_link WHERE source = $1 AND local_id = $2",
                    "DELETE FROM unmatched_record WHERE source = $1 AND local_id = $2",
                ]
                .map(|sql| Statement::new(sql, record())),
            );
            writes.push(local_link_upsert(l));
        }
        None => writes.extend(
            [
                "DELETE FROM local_match_candidate WHERE source = $1 AND local_id = $2 \
                 AND local_person = $3",
                "DELETE FROM local_link WHERE source = $1 AND local_id = $2 \
                 AND local_person = $3",
            ]
            .map(|sql| Statement::new(sql, pair())),
        ),
    }
    writes
}

/// What a decision writes once [`open_person`] and [`origin_of`] have read (`found`, in that
/// order): nothing when the local identity is not open, a refusal when [`check_origin`] says
/// so, else [`decision_writes`].
fn writes_if_open<'a>(
    d: &'a LocalDecisionRow,
    link: Option<&'a LocalLink>,
    found: &[Option<i64>],
) -> Result<Option<Vec<Statement<'a>>>> {
    let (open, made) = match found {
        [open, made] => (*open, *made),
        _ => {
            return Err(StoreError::Corrupt(
                "a local decision's reads went astray".into(),
            ))
        }
    };
    if open.is_none() {
        return Ok(None);
    }
    check_origin(d, made)?;
    Ok(Some(decision_writes(d, link)))
}

/// Both backends run the same statements: [`Runner`] says on which connection, and opens the
/// transaction a decision is written in with its audit record.
#[async_trait]
impl<S: Runner> LocalDecisionStore for S {
    async fn local_decisions(&self) -> Result<Vec<LocalDecisionRow>> {
        let read = Reader::new(local_decision_from_row, local_decision_from_row);
        self.fetch_all(&decisions(), read).await
    }

    async fn local_candidates_of(
        &self,
        source: &SourceId,
        local_id: &str,
    ) -> Result<Vec<crate::LocalCandidateRow>> {
        let read = Reader::new(local_candidate_from_row, local_candidate_from_row);
        self.fetch_all(&candidates_of(source, local_id), read).await
    }

    async fn local_link_of(&self, source: &SourceId, local_id: &str) -> Result<Option<LocalLink>> {
        let read = Reader::new(local_link_from_row, local_link_from_row);
        self.fetch_optional(&link_of(source, local_id), read).await
    }

    async fn decide_local_match(
        &self,
        d: &LocalDecisionRow,
        link: Option<&LocalLink>,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<Option<AuditRow>> {
        check_local_decision(d, link)?;
        let reads = [open_person(d), origin_of(d)];
        let writes = move |found: &[Option<i64>]| writes_if_open(d, link, found);
        self.audited_after_ids(&reads, &writes, audit, chain).await
    }
}
