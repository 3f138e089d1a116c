//! What both backends share: how values are written and read back, and batch preparation.

use crate::{
    AuditAppend, AuditRow, IndexedPatient, LinkMethod, Result, SourceLink, StoreError,
    UnmatchedRecord,
};
use chrono::{DateTime, NaiveDate, Utc};
use mcr_domain::{NhsNumber, SourceId};
use sqlx::{ColumnIndex, Decode, Row, Type};
use std::collections::HashMap;
use std::hash::Hash;

/// Timestamps are stored as UTC text of one fixed width, so text order is time order and the
/// value reads back exactly (nanoseconds included: the audit hash covers `at`).
pub(crate) fn ts(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

pub(crate) fn parse_ts(column: &str, s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt(format!("{column} is not an RFC 3339 timestamp")))
}

pub(crate) fn parse_nhs(column: &str, s: &str) -> Result<NhsNumber> {
    // Never echo the value: it is patient data.
    NhsNumber::parse(s)
        .map_err(|_| StoreError::Corrupt(format!("{column} is not a valid NHS number")))
}

pub(crate) fn parse_source(column: &str, s: &str) -> Result<SourceId> {
    SourceId::parse(s)
        .map_err(|_| StoreError::Corrupt(format!("{column} is not a valid source id")))
}

/// Keeps the last occurrence of each key, in first-seen order: a batch behaves like the same
/// upserts applied one after another (and PostgreSQL refuses to update one row twice in one
/// statement).
pub(crate) fn last_per_key<T, K: Eq + Hash>(items: &[T], key: impl Fn(&T) -> K) -> Vec<&T> {
    let mut slot: HashMap<K, usize> = HashMap::with_capacity(items.len());
    let mut out: Vec<&T> = Vec::with_capacity(items.len());
    for item in items {
        match slot.get(&key(item)) {
            Some(&i) => out[i] = item,
            None => {
                slot.insert(key(item), out.len());
                out.push(item);
            }
        }
    }
    out
}

/// A patient with its normalised search columns, ready to bind.
pub(crate) struct PatientRow<'a> {
    pub p: &'a IndexedPatient,
    pub family_norm: String,
    pub given_norm: String,
    pub postcode_norm: Option<String>,
    pub updated_at: String,
}

impl<'a> PatientRow<'a> {
    pub fn new(p: &'a IndexedPatient) -> Self {
        Self {
            p,
            family_norm: mcr_domain::demographics::normalise_name(&p.family),
            given_norm: mcr_domain::demographics::normalise_name(&p.given),
            postcode_norm: p
                .postcode
                .as_deref()
                .map(mcr_domain::demographics::normalise_postcode),
            updated_at: ts(&p.updated_at),
        }
    }
}

/// A demographic query in normal form; `None` when it can match nothing.
pub(crate) struct NormalQuery {
    pub family: String,
    /// The normalised given-name prefix as a half-open range `[from, to)` of byte-ordered
    /// text, so an index on `(family_norm, given_norm, ..)` serves it (a `LIKE` would not,
    /// on SQLite).
    pub given_range: Option<(String, String)>,
    pub birth_date: Option<NaiveDate>,
    pub postcode: Option<String>,
}

impl NormalQuery {
    pub fn new(q: &crate::DemographicQuery) -> Option<Self> {
        let family = mcr_domain::demographics::normalise_name(&q.family);
        if family.is_empty() {
            return None;
        }
        let given_range = q
            .given
            .as_deref()
            .map(mcr_domain::demographics::normalise_name)
            .filter(|g| !g.is_empty())
            .map(|g| {
                let to = format!("{g}{}", char::MAX);
                (g, to)
            });
        let postcode = match q
            .postcode
            .as_deref()
            .map(mcr_domain::demographics::normalise_postcode)
        {
            Some(p) if p.is_empty() => return None,
            other => other,
        };
        Some(Self {
            family,
            given_range,
            birth_date: q.birth_date,
            postcode,
        })
    }
}

/// Audit search page size when the filter gives none, and the most one page may hold.
pub(crate) const AUDIT_DEFAULT_LIMIT: u32 = 100;
pub(crate) const AUDIT_MAX_LIMIT: u32 = 10_000;

pub(crate) fn audit_limit(limit: u32) -> i64 {
    i64::from(if limit == 0 {
        AUDIT_DEFAULT_LIMIT
    } else {
        limit.min(AUDIT_MAX_LIMIT)
    })
}

fn get<'r, R, T>(row: &'r R, column: &str) -> Result<T>
where
    R: Row,
    T: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    row.try_get(column)
        .map_err(|_| StoreError::Corrupt(format!("column {column} cannot be read")))
}

pub(crate) fn patient_from_row<R>(row: &R) -> Result<IndexedPatient>
where
    R: Row,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> NaiveDate: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    let nhs: String = get(row, "nhs_number")?;
    let updated: String = get(row, "updated_at")?;
    Ok(IndexedPatient {
        nhs_number: parse_nhs("patient.nhs_number", &nhs)?,
        family: get(row, "family")?,
        given: get(row, "given")?,
        birth_date: get(row, "birth_date")?,
        gender: get(row, "gender")?,
        postcode: get(row, "postcode")?,
        gp_practice: get(row, "gp_practice")?,
        updated_at: parse_ts("patient.updated_at", &updated)?,
    })
}

pub(crate) fn link_from_row<R>(row: &R) -> Result<SourceLink>
where
    R: Row,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<NaiveDate>: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    let nhs: String = get(row, "nhs_number")?;
    let source: String = get(row, "source")?;
    let method: String = get(row, "method")?;
    let linked: String = get(row, "linked_at")?;
    Ok(SourceLink {
        nhs_number: parse_nhs("source_link.nhs_number", &nhs)?,
        source: parse_source("source_link.source", &source)?,
        local_id: get(row, "local_id")?,
        method: LinkMethod::parse(&method)
            .ok_or_else(|| StoreError::Corrupt("source_link.method is not a link method".into()))?,
        family: get(row, "family")?,
        given: get(row, "given")?,
        birth_date: get(row, "birth_date")?,
        postcode: get(row, "postcode")?,
        linked_at: parse_ts("source_link.linked_at", &linked)?,
    })
}

pub(crate) fn unmatched_from_row<R>(row: &R) -> Result<UnmatchedRecord>
where
    R: Row,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    let source: String = get(row, "source")?;
    let seen: String = get(row, "seen_at")?;
    let candidates: i64 = get(row, "candidates")?;
    Ok(UnmatchedRecord {
        source: parse_source("unmatched_record.source", &source)?,
        local_id: get(row, "local_id")?,
        reason: get(row, "reason")?,
        candidates: u32::try_from(candidates).map_err(|_| {
            StoreError::Corrupt("unmatched_record.candidates is out of range".into())
        })?,
        seen_at: parse_ts("unmatched_record.seen_at", &seen)?,
    })
}

pub(crate) fn audit_from_row<R>(row: &R) -> Result<AuditRow>
where
    R: Row,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    let at: String = get(row, "at")?;
    Ok(AuditRow {
        seq: get(row, "seq")?,
        prev_hash: get(row, "prev_hash")?,
        hash: get(row, "hash")?,
        record: AuditAppend {
            at: parse_ts("audit_log.at", &at)?,
            correlation_id: get(row, "correlation_id")?,
            user_id: get(row, "user_id")?,
            org_code: get(row, "org_code")?,
            patient: get(row, "patient")?,
            action: get(row, "action")?,
            outcome: get(row, "outcome")?,
            payload: get(row, "payload")?,
            role_profile_id: get(row, "role_profile_id")?,
        },
    })
}

pub(crate) const PATIENT_COLUMNS: &str =
    "nhs_number, family, given, birth_date, gender, postcode, gp_practice, updated_at";
pub(crate) const LINK_COLUMNS: &str =
    "nhs_number, source, local_id, method, family, given, birth_date, postcode, linked_at";
pub(crate) const AUDIT_COLUMNS: &str =
    "seq, at, correlation_id, user_id, org_code, patient, action, outcome, payload, prev_hash, hash, \
     role_profile_id";

/// Maps a failure to open a pool to a store error without echoing the URL (it may hold a
/// password).
pub(crate) fn open_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Configuration(_) => {
            StoreError::Config("the store URL or its options are not valid".into())
        }
        other => StoreError::from(other),
    }
}
