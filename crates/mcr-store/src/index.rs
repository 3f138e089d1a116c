//! The patient index's rows as both backends write and read them: a patient with its
//! normalised search columns, a demographic query in normal form, and the generic readers of
//! patient, link and unmatched-record rows. The trait is [`crate::IndexStore`]; each backend's
//! `index.rs` implements it.

use crate::common::{get, parse_source, parse_ts, ts, Cells};
use crate::{IndexedPatient, LinkMethod, Result, SourceLink, StoreError, UnmatchedRecord};
use chrono::NaiveDate;
use sqlx::{ColumnIndex, Decode, Row, Type};

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

pub(crate) fn patient_from_row(row: &impl Cells) -> Result<IndexedPatient> {
    const T: &str = "patient";
    Ok(IndexedPatient {
        nhs_number: row.nhs(T)?,
        family: row.text(T, "family")?,
        given: row.text(T, "given")?,
        birth_date: row.date(T, "birth_date")?,
        gender: row.text_opt(T, "gender")?,
        postcode: row.text_opt(T, "postcode")?,
        gp_practice: row.text_opt(T, "gp_practice")?,
        updated_at: row.at(T, "updated_at")?,
    })
}

pub(crate) fn link_from_row(row: &impl Cells) -> Result<SourceLink> {
    const T: &str = "source_link";
    Ok(SourceLink {
        nhs_number: row.nhs(T)?,
        source: parse_source("source_link.source", &row.text(T, "source")?)?,
        local_id: row.text(T, "local_id")?,
        method: LinkMethod::parse(&row.text(T, "method")?)
            .ok_or_else(|| StoreError::Corrupt("source_link.method is not a link method".into()))?,
        family: row.text(T, "family")?,
        given: row.text(T, "given")?,
        birth_date: row.date_opt(T, "birth_date")?,
        postcode: row.text_opt(T, "postcode")?,
        linked_at: row.at(T, "linked_at")?,
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

pub(crate) const PATIENT_COLUMNS: &str =
    "nhs_number, family, given, birth_date, gender, postcode, gp_practice, updated_at";
pub(crate) const LINK_COLUMNS: &str =
    "nhs_number, source, local_id, method, family, given, birth_date, postcode, linked_at";

/// What writing a source link does to the record's link already there: the latest wins.
pub(crate) const LINK_UPSERT: &str =
    " ON CONFLICT (source, local_id) DO UPDATE SET nhs_number = excluded.nhs_number, \
     method = excluded.method, family = excluded.family, given = excluded.given, \
     birth_date = excluded.birth_date, postcode = excluded.postcode, \
     linked_at = excluded.linked_at";

/// What keeping an unmatched record does to one already kept: the latest reason wins.
pub(crate) const UNMATCHED_UPSERT: &str =
    " ON CONFLICT (source, local_id) DO UPDATE SET reason = excluded.reason, \
     candidates = excluded.candidates, seen_at = excluded.seen_at";
