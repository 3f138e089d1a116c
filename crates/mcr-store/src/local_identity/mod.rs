//! Local identities (the trait, its rows and the statements: the reads run on either backend
//! through [`crate::runner::Runner`], the writes written once in `writes.rs`
//! ([`local_identity_impl`]) around each backend's batched statements).
//!
//! A source record that carries no NHS number and matches nobody becomes an index person of
//! its own: a local identity (`local_person`), with the demographics matching compares and the
//! record it was made from (its origin). Later records without an NHS number link to it
//! (`local_link`). Once the person is found to have an NHS number (a record carrying one
//! matches it, or PDS traces it), the local identity is resolved: its links move to
//! `source_link` under that number, it says where it went, and it is never matched again. The
//! resolution is written with its audit record in one transaction.
//!
//! Local identities are kept apart from `patient` on purpose: every table keyed by an NHS
//! number (opt-outs, permissions, care events and relationships, protection, patient status)
//! stays keyed by one, and a [`LocalPersonId`] is its own type, so none of them can be keyed
//! to a local identity by accident. A record is linked to an NHS number or to a local
//! identity, never both: writing one link removes the other.

use crate::common::{get, parse_nhs, parse_source, parse_ts, Statement, Value};
use crate::runner::{Reader, Runner};
use crate::{AuditAppend, AuditRow, ChainFn, LinkMethod, RecordKey, Result, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use mcr_domain::{LocalPersonId, NhsNumber, SourceId};
use sqlx::{ColumnIndex, Decode, Row, Type};
use std::sync::LazyLock;

mod writes;

pub(crate) use writes::local_identity_impl;

/// A local identity as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPerson {
    pub id: LocalPersonId,
    /// The source record it was made from.
    pub origin: RecordKey,
    pub family: String,
    pub given: String,
    pub birth_date: NaiveDate,
    pub gender: Option<String>,
    pub postcode: Option<String>,
    /// The address's first line, normalised, for matching only: never shown.
    pub address: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Where it went, once resolved.
    pub resolved: Option<LocalResolved>,
}

/// A local identity found to have an NHS number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResolved {
    pub nhs_number: NhsNumber,
    /// How: `demographics` (a record carrying the number matched it), `pds-trace`, or
    /// `nhs-number` (a record linked to it now carries the number).
    pub method: LinkMethod,
    pub at: DateTime<Utc>,
    /// Links moved to the NHS number.
    pub links_moved: u64,
}

/// A source record a local identity is made from (or, when an open one was made from it
/// already, refreshed from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPersonRecord {
    pub source: SourceId,
    pub local_id: String,
    pub family: String,
    pub given: String,
    pub birth_date: NaiveDate,
    pub gender: Option<String>,
    pub postcode: Option<String>,
    /// The address's first line, normalised, for matching only: never shown.
    pub address: Option<String>,
    pub at: DateTime<Utc>,
}

/// A source record linked to a local identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalLink {
    pub person: LocalPersonId,
    pub source: SourceId,
    pub local_id: String,
    /// [`LinkMethod::LocalIdentity`] for the record it was made from, else
    /// [`LinkMethod::Demographics`].
    pub method: LinkMethod,
    pub family: String,
    pub given: String,
    pub birth_date: Option<NaiveDate>,
    pub postcode: Option<String>,
    pub linked_at: DateTime<Utc>,
}

/// A resolution to make: the local identity is this NHS number's person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResolution {
    pub person: LocalPersonId,
    pub nhs_number: NhsNumber,
    /// `Demographics`, `PdsTrace` or `NhsNumber` (see [`LocalResolved::method`]); the moved
    /// links are written with it.
    pub method: LinkMethod,
    pub at: DateTime<Utc>,
}

/// A source record and a local identity that may be one person: for a person to look at.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalCandidateRow {
    pub source: SourceId,
    pub local_id: String,
    pub person: LocalPersonId,
    /// The match weight (log2 of the odds the comparison gives).
    pub score: f64,
    /// The comparison vector: levels, never values.
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

#[async_trait]
pub trait LocalIdentityStore: Send + Sync {
    /// For each record: a new local identity made from it, unless an open one was made from
    /// it already (then its demographics are refreshed from the record); the record is linked
    /// to it (and loses any link to an NHS number). Returns each record's local identity and
    /// whether it is new, in order. One transaction.
    async fn put_local_persons(
        &self,
        records: &[LocalPersonRecord],
    ) -> Result<Vec<(LocalPersonId, bool)>>;
    /// Every local identity not resolved: what matching compares records with.
    async fn open_local_persons(&self) -> Result<Vec<LocalPerson>>;
    async fn local_person(&self, id: LocalPersonId) -> Result<Option<LocalPerson>>;
    /// The records linked to a local identity, by source and local id.
    async fn local_links(&self, id: LocalPersonId) -> Result<Vec<LocalLink>>;
    /// Every record linked to a local identity, with it.
    async fn local_link_keys(&self) -> Result<Vec<(RecordKey, LocalPersonId)>>;
    /// Insert or replace links to local identities by `(source, local_id)`; each record's link
    /// to an NHS number, if it had one, is removed. One transaction.
    async fn upsert_local_links(&self, links: &[LocalLink]) -> Result<()>;
    /// Remove these records' links to local identities; returns how many there were.
    async fn remove_local_links(&self, records: &[RecordKey]) -> Result<u64>;
    /// Resolve a local identity to an NHS number and append `audit`, in one transaction: its
    /// links move to `source_link` under the number (through a standing merge; a record
    /// already linked to an NHS number keeps that link), its pairs in review are dropped, it
    /// says where it went. `None` (nothing written, no audit) when it is unknown or resolved already;
    /// else the links moved and the audit row.
    async fn resolve_local_person(
        &self,
        resolution: &LocalResolution,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<Option<(u64, AuditRow)>>;
    /// Forget the pairs with local identities kept before for `evaluated` records and keep
    /// `candidates` instead (one transaction).
    async fn replace_local_candidates(
        &self,
        evaluated: &[RecordKey],
        candidates: &[LocalCandidateRow],
    ) -> Result<()>;
    /// Pairs with a local identity awaiting review, highest score first, at most
    /// [`crate::MATCH_LIST_MAX`].
    async fn local_candidates(&self) -> Result<Vec<LocalCandidateRow>>;
    /// Local identities whose normalised family name equals `family`, narrowed by birth date,
    /// open ones only, at most `limit`.
    async fn search_local_persons(
        &self,
        family: &str,
        birth_date: Option<NaiveDate>,
        limit: u32,
    ) -> Result<Vec<LocalPerson>>;
}

pub(crate) const LOCAL_PERSON_COLUMNS: &str =
    "id, origin_source, origin_local_id, family, given, birth_date, gender, postcode, \
     address_line, created_at, updated_at, resolved_to, resolved_method, resolved_at, links_moved";

pub(crate) const LOCAL_LINK_COLUMNS: &str =
    "local_person, source, local_id, method, family, given, birth_date, postcode, linked_at";

pub(crate) fn local_id_from(column: &str, seq: i64) -> Result<LocalPersonId> {
    LocalPersonId::from_seq(seq)
        .map_err(|_| StoreError::Corrupt(format!("{column} is not a local person id")))
}

fn method_from(column: &str, s: &str) -> Result<LinkMethod> {
    LinkMethod::parse(s)
        .ok_or_else(|| StoreError::Corrupt(format!("{column} is not a link method")))
}

pub(crate) fn local_person_from_row<R>(row: &R) -> Result<LocalPerson>
where
    R: Row,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> NaiveDate: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    let resolved_to: Option<String> = get(row, "resolved_to")?;
    let resolved = match resolved_to {
        None => None,
        Some(nhs) => {
            let method: Option<String> = get(row, "resolved_method")?;
            let at: Option<String> = get(row, "resolved_at")?;
            let moved: Option<i64> = get(row, "links_moved")?;
            Some(LocalResolved {
                nhs_number: parse_nhs("local_person.resolved_to", &nhs)?,
                method: method_from(
                    "local_person.resolved_method",
                    method.as_deref().unwrap_or(""),
                )?,
                at: parse_ts("local_person.resolved_at", at.as_deref().unwrap_or(""))?,
                links_moved: u64::try_from(moved.unwrap_or(0)).unwrap_or(0),
            })
        }
    };
    let source: String = get(row, "origin_source")?;
    let created: String = get(row, "created_at")?;
    let updated: String = get(row, "updated_at")?;
    Ok(LocalPerson {
        id: local_id_from("local_person.id", get(row, "id")?)?,
        origin: (
            parse_source("local_person.origin_source", &source)?,
            get(row, "origin_local_id")?,
        ),
        family: get(row, "family")?,
        given: get(row, "given")?,
        birth_date: get(row, "birth_date")?,
        gender: get(row, "gender")?,
        postcode: get(row, "postcode")?,
        address: get(row, "address_line")?,
        created_at: parse_ts("local_person.created_at", &created)?,
        updated_at: parse_ts("local_person.updated_at", &updated)?,
        resolved,
    })
}

/// Where a record's link to its local identity is written: the values are source, local id,
/// local person, method, family, given, birth date, postcode, linked at.
pub(crate) const LOCAL_LINK_WRITE: &str = "local_link (source, local_id, local_person, method, \
     family, given, birth_date, postcode, linked_at)";

/// What writing a record's link to its local identity does to the link it had: the latest
/// wins.
pub(crate) const LOCAL_LINK_UPSERT: &str = " ON CONFLICT (source, local_id) DO UPDATE SET \
     local_person = excluded.local_person, method = excluded.method, \
     family = excluded.family, given = excluded.given, \
     birth_date = excluded.birth_date, postcode = excluded.postcode, \
     linked_at = excluded.linked_at";

/// A record's link to its local identity for `l`, replacing the one it had.
pub(crate) fn local_link_upsert(l: &LocalLink) -> crate::common::Statement<'_> {
    use crate::common::Value;
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "INSERT INTO {LOCAL_LINK_WRITE} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)\
             {LOCAL_LINK_UPSERT}"
        )
    });
    crate::common::Statement::new(
        SQL.as_str(),
        vec![
            Value::Text(l.source.as_str()),
            Value::Text(&l.local_id),
            Value::Int(l.person.seq()),
            Value::Text(l.method.as_str()),
            Value::Text(&l.family),
            Value::Text(&l.given),
            Value::OptDate(l.birth_date),
            Value::OptText(l.postcode.as_deref()),
            Value::Owned(crate::common::ts(&l.linked_at)),
        ],
    )
}

/// Where a new local identity is written: the values are [`LocalPersonRow`]'s, in its order
/// (its time twice, as created and updated).
pub(crate) const LOCAL_PERSON_WRITE: &str = "local_person (origin_source, origin_local_id, \
     family, given, family_norm, given_norm, birth_date, gender, postcode, postcode_norm, \
     address_line, created_at, updated_at)";

/// A local identity to write or refresh from a record: the record and the normalised forms
/// matching and search read.
pub(crate) struct LocalPersonRow<'a> {
    pub(crate) r: &'a LocalPersonRecord,
    pub(crate) family_norm: String,
    pub(crate) given_norm: String,
    pub(crate) postcode_norm: Option<String>,
    pub(crate) at: String,
}

impl<'a> LocalPersonRow<'a> {
    pub(crate) fn new(r: &'a LocalPersonRecord) -> Self {
        use mcr_domain::demographics::{normalise_name, normalise_postcode};
        LocalPersonRow {
            r,
            family_norm: normalise_name(&r.family),
            given_norm: normalise_name(&r.given),
            postcode_norm: r.postcode.as_deref().map(normalise_postcode),
            at: crate::common::ts(&r.at),
        }
    }

    /// The record's key, as the batched statements answer it.
    pub(crate) fn key(&self) -> (String, String) {
        (self.r.source.as_str().to_owned(), self.r.local_id.clone())
    }
}

/// What writing a pair with a local identity does to the pair kept already: the latest wins.
pub(crate) const LOCAL_CANDIDATE_UPSERT: &str = " ON CONFLICT (source, local_id, local_person) \
     DO UPDATE SET score = excluded.score, agreement = excluded.agreement, \
     guard = excluded.guard, family = excluded.family, given = excluded.given, \
     birth_date = excluded.birth_date, gender = excluded.gender, \
     postcode = excluded.postcode, found_at = excluded.found_at";

pub(crate) const LOCAL_CANDIDATE_COLUMNS: &str =
    "source, local_id, local_person, score, agreement, guard, family, given, birth_date, \
     gender, postcode, found_at";

pub(crate) fn local_candidate_from_row<R>(row: &R) -> Result<LocalCandidateRow>
where
    R: Row,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> f64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<NaiveDate>: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    let source: String = get(row, "source")?;
    let found: String = get(row, "found_at")?;
    Ok(LocalCandidateRow {
        source: parse_source("local_match_candidate.source", &source)?,
        local_id: get(row, "local_id")?,
        person: local_id_from(
            "local_match_candidate.local_person",
            get(row, "local_person")?,
        )?,
        score: get(row, "score")?,
        agreement: get(row, "agreement")?,
        guard: get(row, "guard")?,
        family: get(row, "family")?,
        given: get(row, "given")?,
        birth_date: get(row, "birth_date")?,
        gender: get(row, "gender")?,
        postcode: get(row, "postcode")?,
        found_at: parse_ts("local_match_candidate.found_at", &found)?,
    })
}

pub(crate) fn local_link_from_row<R>(row: &R) -> Result<LocalLink>
where
    R: Row,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<NaiveDate>: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    let source: String = get(row, "source")?;
    let method: String = get(row, "method")?;
    let linked: String = get(row, "linked_at")?;
    Ok(LocalLink {
        person: local_id_from("local_link.local_person", get(row, "local_person")?)?,
        source: parse_source("local_link.source", &source)?,
        local_id: get(row, "local_id")?,
        method: method_from("local_link.method", &method)?,
        family: get(row, "family")?,
        given: get(row, "given")?,
        birth_date: get(row, "birth_date")?,
        postcode: get(row, "postcode")?,
        linked_at: parse_ts("local_link.linked_at", &linked)?,
    })
}

/// The reads, the same on both backends: [`Runner`] says on which connection they run (the
/// macro below calls them; the writes, batched differently by each backend, stay in it).
pub(crate) async fn open_local_persons<S: Runner>(s: &S) -> Result<Vec<LocalPerson>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {LOCAL_PERSON_COLUMNS} FROM local_person WHERE resolved_to IS NULL ORDER BY id"
        )
    });
    let read = Reader::new(local_person_from_row, local_person_from_row);
    s.fetch_all(&Statement::new(SQL.as_str(), vec![]), read)
        .await
}

pub(crate) async fn local_person<S: Runner>(
    s: &S,
    id: LocalPersonId,
) -> Result<Option<LocalPerson>> {
    static SQL: LazyLock<String> =
        LazyLock::new(|| format!("SELECT {LOCAL_PERSON_COLUMNS} FROM local_person WHERE id = $1"));
    let read = Reader::new(local_person_from_row, local_person_from_row);
    let statement = Statement::new(SQL.as_str(), vec![Value::Int(id.seq())]);
    s.fetch_optional(&statement, read).await
}

pub(crate) async fn local_links<S: Runner>(s: &S, id: LocalPersonId) -> Result<Vec<LocalLink>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {LOCAL_LINK_COLUMNS} FROM local_link WHERE local_person = $1 \
             ORDER BY source, local_id"
        )
    });
    let read = Reader::new(local_link_from_row, local_link_from_row);
    let statement = Statement::new(SQL.as_str(), vec![Value::Int(id.seq())]);
    s.fetch_all(&statement, read).await
}

fn link_key_from_row<R>(row: &R) -> Result<(RecordKey, LocalPersonId)>
where
    R: Row,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    let source: String = get(row, "source")?;
    let local_id: String = get(row, "local_id")?;
    let seq: i64 = get(row, "local_person")?;
    Ok((
        (parse_source("local_link.source", &source)?, local_id),
        local_id_from("local_link.local_person", seq)?,
    ))
}

pub(crate) async fn local_link_keys<S: Runner>(s: &S) -> Result<Vec<(RecordKey, LocalPersonId)>> {
    let statement = Statement::new(
        "SELECT source, local_id, local_person FROM local_link",
        vec![],
    );
    let read = Reader::new(link_key_from_row, link_key_from_row);
    s.fetch_all(&statement, read).await
}

pub(crate) async fn local_candidates<S: Runner>(s: &S) -> Result<Vec<LocalCandidateRow>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {LOCAL_CANDIDATE_COLUMNS} FROM local_match_candidate \
             ORDER BY score DESC, source, local_id, local_person LIMIT {}",
            crate::MATCH_LIST_MAX
        )
    });
    let read = Reader::new(local_candidate_from_row, local_candidate_from_row);
    s.fetch_all(&Statement::new(SQL.as_str(), vec![]), read)
        .await
}

pub(crate) async fn search_local_persons<S: Runner>(
    s: &S,
    family: &str,
    birth_date: Option<NaiveDate>,
    limit: u32,
) -> Result<Vec<LocalPerson>> {
    let family = mcr_domain::demographics::normalise_name(family);
    if family.is_empty() {
        return Ok(Vec::new());
    }
    let by_birth = if birth_date.is_some() {
        " AND birth_date = $3"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {LOCAL_PERSON_COLUMNS} FROM local_person WHERE resolved_to IS NULL \
         AND family_norm = $1{by_birth} ORDER BY given_norm, birth_date, id LIMIT $2"
    );
    let mut values = vec![Value::Owned(family), Value::Int(i64::from(limit))];
    if let Some(d) = birth_date {
        values.push(Value::OptDate(Some(d)));
    }
    let read = Reader::new(local_person_from_row, local_person_from_row);
    s.fetch_all(&Statement::new(sql, values), read).await
}
