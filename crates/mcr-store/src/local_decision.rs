//! What people decide about a source record and a local identity (the trait and its rows; both
//! backends run the same statements, written once here in [`local_decision_impl`]).
//!
//! The same three decisions as about an index patient, kept apart in `local_match_decision`
//! (a local identity is never written where an NHS number belongs): `link` (a pair in review
//! is one person: the record joins the local identity), `not-a-match` (a pair in review is
//! not) and `unlink` (a record linked to the local identity is not its person). Each is
//! written with its audit record in one transaction, and no later sync overrides it.

use crate::common::{get, parse_source, parse_ts};
use crate::local_identity::local_id_from;
use crate::{AuditAppend, AuditRow, ChainFn, LocalLink, Result, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcr_domain::{LocalPersonId, SourceId};
use sqlx::{ColumnIndex, Decode, Row, Type};

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

/// The statements both backends run, written with `$n` parameters. `$read` is the pool reads
/// use; `$append` opens a transaction that may append to the audit trail; `$append_in_tx`
/// appends in it.
macro_rules! local_decision_impl {
    ($store:ty, $read:ident, $append:ident, $append_in_tx:path) => {
        #[async_trait::async_trait]
        impl $crate::local_decision::LocalDecisionStore for $store {
            async fn local_decisions(
                &self,
            ) -> $crate::Result<Vec<$crate::local_decision::LocalDecisionRow>> {
                sqlx::query(&format!(
                    "SELECT {} FROM local_match_decision ORDER BY source, local_id, local_person",
                    $crate::local_decision::LOCAL_DECISION_COLUMNS
                ))
                .fetch_all(&self.$read)
                .await?
                .iter()
                .map($crate::local_decision::local_decision_from_row)
                .collect()
            }

            async fn local_candidates_of(
                &self,
                source: &mcr_domain::SourceId,
                local_id: &str,
            ) -> $crate::Result<Vec<$crate::LocalCandidateRow>> {
                sqlx::query(&format!(
                    "SELECT {} FROM local_match_candidate WHERE source = $1 AND local_id = $2 \
                     ORDER BY score DESC, local_person",
                    $crate::local_identity::LOCAL_CANDIDATE_COLUMNS
                ))
                .bind(source.as_str())
                .bind(local_id)
                .fetch_all(&self.$read)
                .await?
                .iter()
                .map($crate::local_identity::local_candidate_from_row)
                .collect()
            }

            async fn local_link_of(
                &self,
                source: &mcr_domain::SourceId,
                local_id: &str,
            ) -> $crate::Result<Option<$crate::LocalLink>> {
                sqlx::query(&format!(
                    "SELECT {} FROM local_link WHERE source = $1 AND local_id = $2",
                    $crate::local_identity::LOCAL_LINK_COLUMNS
                ))
                .bind(source.as_str())
                .bind(local_id)
                .fetch_optional(&self.$read)
                .await?
                .as_ref()
                .map($crate::local_identity::local_link_from_row)
                .transpose()
            }

            async fn decide_local_match(
                &self,
                d: &$crate::local_decision::LocalDecisionRow,
                link: Option<&$crate::LocalLink>,
                audit: &$crate::AuditAppend,
                chain: &$crate::ChainFn,
            ) -> $crate::Result<Option<$crate::AuditRow>> {
                use $crate::common::ts;
                $crate::local_decision::check_local_decision(d, link)?;
                let this = self;
                let mut done = None;
                $append!(this, tx, {
                    let sql = "SELECT id FROM local_person WHERE id = $1 AND resolved_to IS NULL";
                    let open: Option<i64> = sqlx::query_scalar(&sql)
                        .bind(d.person.seq())
                        .fetch_optional(&mut *tx)
                        .await?;
                    if open.is_some() {
                        // The record another open local identity was made from is that
                        // identity: linking it here would make one person of two.
                        let sql = "SELECT id FROM local_person WHERE origin_source = $1 \
                                   AND origin_local_id = $2 AND resolved_to IS NULL";
                        let made: Option<i64> = sqlx::query_scalar(&sql)
                            .bind(d.source.as_str())
                            .bind(&d.local_id)
                            .fetch_optional(&mut *tx)
                            .await?;
                        match (d.decision.as_str(), made) {
                            ("link", Some(other)) if other != d.person.seq() => {
                                return Err($crate::StoreError::Config(
                                    "the record another local identity was made from cannot \
                                     be linked to this one"
                                        .into(),
                                ));
                            }
                            ("not-a-match" | "unlink", Some(this_one))
                                if this_one == d.person.seq() =>
                            {
                                return Err($crate::StoreError::Config(
                                    "the record a local identity was made from cannot be \
                                     unlinked from it"
                                        .into(),
                                ));
                            }
                            _ => {}
                        }
                        sqlx::query(&format!(
                            "INSERT INTO local_match_decision ({}) \
                             VALUES ($1, $2, $3, $4, $5, $6) \
                             ON CONFLICT (source, local_id, local_person) DO UPDATE SET \
                             decision = excluded.decision, decided_by = excluded.decided_by, \
                             decided_at = excluded.decided_at",
                            $crate::local_decision::LOCAL_DECISION_COLUMNS
                        ))
                        .bind(d.source.as_str())
                        .bind(&d.local_id)
                        .bind(d.person.seq())
                        .bind(&d.decision)
                        .bind(&d.decided_by)
                        .bind(ts(&d.decided_at))
                        .execute(&mut *tx)
                        .await?;
                        match link {
                            Some(l) => {
                                // Its other pairs, its link to an NHS number and its unmatched
                                // entry go: the record has its person.
                                for table in [
                                    "local_match_candidate",
                                    "match_candidate",
                                    "source_link",
                                    "unmatched_record",
                                ] {
                                    sqlx::query(&format!(
                                        "DELETE FROM {table} WHERE source = $1 AND local_id = $2"
                                    ))
                                    .bind(d.source.as_str())
                                    .bind(&d.local_id)
                                    .execute(&mut *tx)
                                    .await?;
                                }
                                $crate::local_identity::local_link_upsert(l)
                                    .query()
                                    .execute(&mut *tx)
                                    .await?;
                            }
                            None => {
                                for table in ["local_match_candidate", "local_link"] {
                                    sqlx::query(&format!(
                                        "DELETE FROM {table} WHERE source = $1 AND local_id = $2 \
                                         AND local_person = $3"
                                    ))
                                    .bind(d.source.as_str())
                                    .bind(&d.local_id)
                                    .bind(d.person.seq())
                                    .execute(&mut *tx)
                                    .await?;
                                }
                            }
                        }
                        done = Some($append_in_tx(&mut tx, audit, chain).await?);
                    }
                });
                Ok(done)
            }
        }
    };
}
pub(crate) use local_decision_impl;
