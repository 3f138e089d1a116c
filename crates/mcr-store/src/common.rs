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

/// One table's part of a [`union_sql`] statement.
struct UnionTable {
    name: &'static str,
    /// The `t` its rows are tagged with.
    tag: i32,
    columns: &'static [&'static str],
    /// Rows of this table in this column's order, then by `id`; `None`: no order (the reader
    /// sorts them) and no `id`.
    order: Option<&'static str>,
}

const GOVERNANCE_TABLES: [UnionTable; 5] = [
    UnionTable {
        name: "permission",
        tag: 1,
        columns: &[
            "nhs_number",
            "org_code",
            "user_id",
            "decision",
            "given_by",
            "at",
            "reason_code",
            "reason_text",
        ],
        order: Some("at"),
    },
    UnionTable {
        name: "relationship",
        tag: 2,
        columns: &[
            "nhs_number",
            "org_code",
            "kind",
            "user_id",
            "reason",
            "start",
            "end",
            "recorded_by",
        ],
        order: Some("start"),
    },
    UnionTable {
        name: "objection",
        tag: 3,
        columns: &[
            "nhs_number",
            "state",
            "recorded_by",
            "on_whose_word",
            "override_reason",
            "by_role",
            "note",
            "at",
            "ends_at",
        ],
        order: Some("at"),
    },
    UnionTable {
        name: "emergency_access",
        tag: 4,
        columns: &[
            "nhs_number",
            "user_id",
            "org_code",
            "reason_code",
            "reason_text",
            "started_at",
        ],
        order: Some("started_at"),
    },
    UnionTable {
        name: "care_event",
        tag: 7,
        columns: &[
            "nhs_number",
            "org_code",
            "kind",
            "ward",
            "team",
            "service",
            "start",
            "end",
            "origin",
            "source_event_id",
            "received_at",
        ],
        order: Some("start"),
    },
];

/// The index's rows of a patient: tag 5 the patient, tag 6 their source links (sorted by the
/// reader: source, then local id).
const INDEX_TABLES: [UnionTable; 2] = [
    UnionTable {
        name: "patient",
        tag: 5,
        columns: &[
            "nhs_number",
            "family",
            "given",
            "birth_date",
            "gender",
            "postcode",
            "gp_practice",
            "updated_at",
        ],
        order: None,
    },
    UnionTable {
        name: "source_link",
        tag: 6,
        columns: &[
            "nhs_number",
            "source",
            "local_id",
            "method",
            "family",
            "given",
            "birth_date",
            "postcode",
            "linked_at",
        ],
        order: None,
    },
];

/// Rows of several tables for one patient, as one statement (one round trip, one snapshot):
/// every table's rows under the union of their column names (`NULL` where a table has no such
/// column), tagged by `t`, in each table's own order. `param` is the backend's first
/// placeholder.
fn union_sql(tables: &[&UnionTable], param: &str) -> String {
    let mut all: Vec<&str> = Vec::new();
    for table in tables {
        for c in table.columns {
            if !all.contains(c) {
                all.push(c);
            }
        }
    }
    let selects: Vec<String> = tables
        .iter()
        .map(|table| {
            let list: Vec<String> = all
                .iter()
                .map(|c| {
                    let value = if table.columns.contains(c) {
                        format!("\"{c}\"")
                    } else {
                        "NULL".into()
                    };
                    format!("{value} AS \"{c}\"")
                })
                .collect();
            let (order, id) = match table.order {
                Some(o) => (format!("\"{o}\""), "id"),
                None => ("NULL".to_owned(), "0"),
            };
            format!(
                "SELECT {} AS t, {}, {order} AS o, {id} AS id FROM {} WHERE nhs_number = {param}",
                table.tag,
                list.join(", "),
                table.name
            )
        })
        .collect();
    format!("{} ORDER BY t, o, id", selects.join(" UNION ALL "))
}

/// The five governance lists of one patient, as one statement, so one round trip and one
/// snapshot: rows tagged 1 permission, 2 relationship, 3 objection, 4 emergency access,
/// 7 care event.
pub(crate) fn governance_sql(param: &str) -> String {
    union_sql(&GOVERNANCE_TABLES.iter().collect::<Vec<_>>(), param)
}

/// What a record view reads before deciding, as one statement: the patient (tag 5), their
/// source links (tag 6) and the five governance lists (tags 1-4 and 7). The index's tables come
/// first: PostgreSQL types a union's columns from left to right, and a column that is only
/// `NULL` so far is taken as text, which a later `date` column (a birth date) could not join.
pub(crate) fn view_inputs_sql(param: &str) -> String {
    let tables: Vec<&UnionTable> = INDEX_TABLES.iter().chain(&GOVERNANCE_TABLES).collect();
    union_sql(&tables, param)
}

/// How one backend reads each table's row of [`governance_sql`]'s answer.
pub(crate) struct GovernanceReaders<R> {
    pub permission: fn(&R) -> Result<crate::PermissionRow>,
    pub relationship: fn(&R) -> Result<crate::RelationshipRow>,
    pub objection: fn(&R) -> Result<crate::ObjectionRow>,
    pub emergency: fn(&R) -> Result<crate::EmergencyRow>,
    pub care_event: fn(&R) -> Result<crate::CareEventRow>,
}

/// Sorts [`governance_sql`]'s rows into the four lists by their tag `t`.
pub(crate) fn governance_from_rows<'r, R: 'r>(
    rows: impl IntoIterator<Item = &'r R>,
    tag: impl Fn(&R) -> Result<i32>,
    read: &GovernanceReaders<R>,
) -> Result<crate::GovernanceRecords> {
    let mut records = crate::GovernanceRecords::default();
    for row in rows {
        match tag(row)? {
            1 => records.permissions.push((read.permission)(row)?),
            2 => records.relationships.push((read.relationship)(row)?),
            3 => records.objections.push((read.objection)(row)?),
            4 => records.emergencies.push((read.emergency)(row)?),
            7 => records.care_events.push((read.care_event)(row)?),
            _ => {
                return Err(StoreError::Corrupt(
                    "governance row of no known table".into(),
                ))
            }
        }
    }
    Ok(records)
}

/// How one backend reads the index's rows of [`view_inputs_sql`]'s answer.
pub(crate) struct IndexReaders<R> {
    pub patient: fn(&R) -> Result<crate::IndexedPatient>,
    pub link: fn(&R) -> Result<crate::SourceLink>,
}

/// Sorts [`view_inputs_sql`]'s rows: the patient, their links (by source, then local id, in
/// byte order as both stores sort them), and the governance lists.
pub(crate) fn view_inputs_from_rows<R>(
    rows: &[R],
    tag: impl Fn(&R) -> Result<i32>,
    index: &IndexReaders<R>,
    governance: &GovernanceReaders<R>,
) -> Result<crate::ViewInputs> {
    let mut patient = None;
    let mut links = Vec::new();
    let mut rest = Vec::with_capacity(rows.len());
    for row in rows {
        match tag(row)? {
            5 if patient.is_some() => {
                return Err(StoreError::Corrupt(
                    "two patients with one NHS number".into(),
                ))
            }
            5 => patient = Some((index.patient)(row)?),
            6 => links.push((index.link)(row)?),
            _ => rest.push(row),
        }
    }
    links.sort_by(|a: &crate::SourceLink, b| {
        (a.source.as_str(), a.local_id.as_str()).cmp(&(b.source.as_str(), b.local_id.as_str()))
    });
    let governance = governance_from_rows(rest, &tag, governance)?;
    Ok(crate::ViewInputs {
        patient,
        links,
        governance,
    })
}
