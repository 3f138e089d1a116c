//! The patient index's rows as both backends write and read them: a patient with its
//! normalised search columns, a demographic query in normal form, and the generic readers of
//! patient, link and unmatched-record rows; and [`crate::IndexStore`], implemented here once for
//! both backends through [`Runner`], but for the batch writes, which each backend's `index.rs`
//! writes its own way ([`IndexBatches`]).

use crate::common::{get, parse_source, parse_ts, ts, Cells, Statement, Value};
use crate::runner::{Reader, Runner};
use crate::{
    DemographicQuery, IndexStore, IndexedPatient, LinkMethod, Result, SourceLink, StoreError,
    UnmatchedRecord,
};
use async_trait::async_trait;
use chrono::NaiveDate;
use mcr_domain::{NhsNumber, SourceId};
use sqlx::{ColumnIndex, Decode, Row, Type};
use std::fmt::Write as _;
use std::sync::LazyLock;

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
        address: row.text_opt(T, "address_line")?,
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
    "nhs_number, family, given, birth_date, gender, postcode, address_line, gp_practice, \
     updated_at";
/// [`PATIENT_COLUMNS`] one by one, for a patient row the database sends as JSON.
pub(crate) const PATIENT_COLUMN_NAMES: [&str; 9] = [
    "nhs_number",
    "family",
    "given",
    "birth_date",
    "gender",
    "postcode",
    "address_line",
    "gp_practice",
    "updated_at",
];
pub(crate) const LINK_COLUMNS: &str =
    "nhs_number, source, local_id, method, family, given, birth_date, postcode, linked_at";

/// The table and columns a batch of patients is written to, in the order each backend binds
/// them (a batch is many rows per statement: SQLite binds rows, PostgreSQL binds arrays or
/// copies text).
pub(crate) const PATIENT_WRITE: &str =
    "patient (nhs_number, family, given, family_norm, given_norm, birth_date, gender, \
     postcode, postcode_norm, address_line, gp_practice, updated_at)";

/// The table and columns a batch of source links is written to (see [`PATIENT_WRITE`]).
pub(crate) const LINK_WRITE: &str =
    "source_link (source, local_id, nhs_number, method, family, given, birth_date, postcode, \
     linked_at)";

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

/// One patient by NHS number.
pub(crate) fn patient(nhs: &NhsNumber) -> Statement<'_> {
    static SQL: LazyLock<String> =
        LazyLock::new(|| format!("SELECT {PATIENT_COLUMNS} FROM patient WHERE nhs_number = $1"));
    Statement::new(SQL.as_str(), vec![Value::Text(nhs.as_str())])
}

/// A patient's source links, by source and local id.
pub(crate) fn links(nhs: &NhsNumber) -> Statement<'_> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {LINK_COLUMNS} FROM source_link WHERE nhs_number = $1 ORDER BY source, local_id"
        )
    });
    Statement::new(SQL.as_str(), vec![Value::Text(nhs.as_str())])
}

/// The link of one source record.
pub(crate) fn link_for_local<'a>(source: &'a SourceId, local_id: &'a str) -> Statement<'a> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!("SELECT {LINK_COLUMNS} FROM source_link WHERE source = $1 AND local_id = $2")
    });
    Statement::new(
        SQL.as_str(),
        vec![Value::Text(source.as_str()), Value::Text(local_id)],
    )
}

/// Patients matching a query in normal form, at most `limit`. Only the given conditions appear
/// in the SQL, so the planner can use the (family_norm, birth_date) index for both
/// equalities. `indexed_by` names the index to use (SQLite's `INDEXED BY`; PostgreSQL has
/// statistics and chooses well itself).
pub(crate) fn search<'a>(
    q: &'a NormalQuery,
    limit: u32,
    indexed_by: Option<&str>,
) -> Statement<'a> {
    let mut sql = format!("SELECT {PATIENT_COLUMNS} FROM patient");
    if let Some(index) = indexed_by {
        let _ = write!(sql, " INDEXED BY {index}");
    }
    sql.push_str(" WHERE family_norm = $1");
    let mut values = vec![Value::Text(&q.family)];
    let mut and = |sql: &mut String, condition: &str, value: Value<'a>| {
        values.push(value);
        let _ = write!(sql, " AND {condition} ${}", values.len());
    };
    if let Some(birth_date) = q.birth_date {
        and(&mut sql, "birth_date =", Value::OptDate(Some(birth_date)));
    }
    if let Some((from, to)) = &q.given_range {
        and(&mut sql, "given_norm >=", Value::Text(from));
        and(&mut sql, "given_norm <", Value::Text(to));
    }
    if let Some(postcode) = &q.postcode {
        and(&mut sql, "postcode_norm =", Value::Text(postcode));
    }
    values.push(Value::Int(i64::from(limit)));
    let _ = write!(
        sql,
        " ORDER BY family_norm, given_norm, birth_date, nhs_number LIMIT ${}",
        values.len()
    );
    Statement::new(sql, values)
}

/// Keep a source record that could not be linked (see [`UNMATCHED_UPSERT`]).
pub(crate) fn record_unmatched(r: &UnmatchedRecord) -> Statement<'_> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "INSERT INTO unmatched_record (source, local_id, reason, candidates, seen_at) \
             VALUES ($1, $2, $3, $4, $5){UNMATCHED_UPSERT}"
        )
    });
    Statement::new(
        SQL.as_str(),
        vec![
            Value::Text(r.source.as_str()),
            Value::Text(&r.local_id),
            Value::Text(&r.reason),
            Value::Int(i64::from(r.candidates)),
            Value::Owned(ts(&r.seen_at)),
        ],
    )
}

/// Drop a record's unmatched entry.
pub(crate) fn clear_unmatched<'a>(source: &'a SourceId, local_id: &'a str) -> Statement<'a> {
    Statement::new(
        "DELETE FROM unmatched_record WHERE source = $1 AND local_id = $2",
        vec![Value::Text(source.as_str()), Value::Text(local_id)],
    )
}

/// The unmatched records of a source (of all sources when `None`), by source and local id.
pub(crate) fn unmatched(source: Option<&SourceId>) -> Statement<'_> {
    Statement::new(
        // The cast gives the parameter its type where it is only tested for NULL.
        "SELECT source, local_id, reason, candidates, seen_at FROM unmatched_record \
         WHERE CAST($1 AS TEXT) IS NULL OR source = $1 ORDER BY source, local_id",
        vec![Value::OptText(source.map(SourceId::as_str))],
    )
}

/// `reason IN (...)` over [`crate::UNREADABLE_REASONS`] (constants, not input).
fn unreadable_filter() -> String {
    let reasons: Vec<String> = crate::UNREADABLE_REASONS
        .iter()
        .map(|r| format!("'{r}'"))
        .collect();
    format!("reason IN ({})", reasons.join(", "))
}

pub(crate) static UNREADABLE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT source, local_id, reason, candidates, seen_at FROM unmatched_record \
         WHERE source = $1 AND {} ORDER BY local_id LIMIT $2",
        unreadable_filter()
    )
});

pub(crate) static UNREADABLE_COUNT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT COUNT(*) AS n FROM unmatched_record WHERE source = $1 AND {}",
        unreadable_filter()
    )
});

/// A source's sync high-water mark.
pub(crate) fn sync_watermark(source: &SourceId) -> Statement<'_> {
    Statement::new(
        "SELECT watermark FROM sync_state WHERE source = $1",
        vec![Value::Text(source.as_str())],
    )
}

pub(crate) fn watermark_from_row(row: &impl Cells) -> Result<String> {
    row.text("sync_state", "watermark")
}

/// Set a source's sync high-water mark.
pub(crate) fn set_sync_watermark<'a>(source: &'a SourceId, watermark: &'a str) -> Statement<'a> {
    Statement::new(
        "INSERT INTO sync_state (source, watermark) VALUES ($1, $2) \
         ON CONFLICT (source) DO UPDATE SET watermark = excluded.watermark",
        vec![Value::Text(source.as_str()), Value::Text(watermark)],
    )
}

pub(crate) const PATIENT_COUNT: &str = "SELECT COUNT(*) AS n FROM patient";

/// A `COUNT(*) AS n`.
fn count_from_row<R>(row: &R) -> Result<i64>
where
    R: Row,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    get(row, "n")
}

/// What differs by backend in the patient index: the batch writes (SQLite binds rows in
/// chunks, PostgreSQL binds arrays) and the index a search names.
#[async_trait]
pub(crate) trait IndexBatches: Runner {
    /// Patients, the last given for each NHS number, in one transaction, with `on_conflict`
    /// ([`crate::PATIENT_REPLACE`] or [`crate::PATIENT_KEEP`]); a number merged into another
    /// is never an index person again while the merge stands.
    async fn write_patients(&self, patients: &[IndexedPatient], on_conflict: &str) -> Result<()>;

    /// Links, the last given for each source record, in one transaction; a record of a
    /// number merged into another goes to the survivor.
    async fn write_links(&self, links: &[SourceLink]) -> Result<()>;

    /// The index a demographic search names (see [`search`]).
    fn search_index(q: &NormalQuery) -> Option<&'static str>;
}

/// Both backends run the same statements but for the batches: [`Runner`] says on which
/// connection.
#[async_trait]
impl<S: IndexBatches> IndexStore for S {
    async fn upsert_patients(&self, patients: &[IndexedPatient]) -> Result<()> {
        self.write_patients(patients, crate::PATIENT_REPLACE).await
    }

    async fn insert_missing_patients(&self, patients: &[IndexedPatient]) -> Result<()> {
        self.write_patients(patients, crate::PATIENT_KEEP).await
    }

    async fn upsert_links(&self, links: &[SourceLink]) -> Result<()> {
        self.write_links(links).await
    }

    async fn patient(&self, nhs: &NhsNumber) -> Result<Option<IndexedPatient>> {
        let read = Reader::new(patient_from_row, patient_from_row);
        self.fetch_optional(&patient(nhs), read).await
    }

    async fn links(&self, nhs: &NhsNumber) -> Result<Vec<SourceLink>> {
        let read = Reader::new(link_from_row, link_from_row);
        self.fetch_all(&links(nhs), read).await
    }

    async fn link_for_local(
        &self,
        source: &SourceId,
        local_id: &str,
    ) -> Result<Option<SourceLink>> {
        let read = Reader::new(link_from_row, link_from_row);
        self.fetch_optional(&link_for_local(source, local_id), read)
            .await
    }

    async fn search_patients(
        &self,
        query: &DemographicQuery,
        limit: u32,
    ) -> Result<Vec<IndexedPatient>> {
        let Some(q) = NormalQuery::new(query) else {
            return Ok(Vec::new());
        };
        let read = Reader::new(patient_from_row, patient_from_row);
        self.fetch_all(&search(&q, limit, S::search_index(&q)), read)
            .await
    }

    async fn record_unmatched(&self, record: &UnmatchedRecord) -> Result<()> {
        self.written(&[record_unmatched(record)]).await
    }

    async fn clear_unmatched(&self, source: &SourceId, local_id: &str) -> Result<()> {
        self.written(&[clear_unmatched(source, local_id)]).await
    }

    async fn unmatched(&self, source: Option<&SourceId>) -> Result<Vec<UnmatchedRecord>> {
        let read = Reader::new(unmatched_from_row, unmatched_from_row);
        self.fetch_all(&unmatched(source), read).await
    }

    async fn unreadable(
        &self,
        source: &SourceId,
        limit: u32,
    ) -> Result<(Vec<UnmatchedRecord>, u64)> {
        let read = Reader::new(unmatched_from_row, unmatched_from_row);
        let page = Statement::new(
            UNREADABLE.as_str(),
            vec![Value::Text(source.as_str()), Value::Int(i64::from(limit))],
        );
        let rows = self.fetch_all(&page, read).await?;
        let read = Reader::new(count_from_row, count_from_row);
        let count = Statement::new(
            UNREADABLE_COUNT.as_str(),
            vec![Value::Text(source.as_str())],
        );
        let n = self.fetch_optional(&count, read).await?.unwrap_or_default();
        let n = u64::try_from(n)
            .map_err(|_| StoreError::Corrupt("negative count of unreadable records".into()))?;
        Ok((rows, n))
    }

    async fn sync_watermark(&self, source: &SourceId) -> Result<Option<String>> {
        let read = Reader::new(watermark_from_row, watermark_from_row);
        self.fetch_optional(&sync_watermark(source), read).await
    }

    async fn set_sync_watermark(&self, source: &SourceId, watermark: &str) -> Result<()> {
        self.written(&[set_sync_watermark(source, watermark)]).await
    }

    async fn patient_count(&self) -> Result<u64> {
        let read = Reader::new(count_from_row, count_from_row);
        let n = self
            .fetch_optional(&Statement::sql(PATIENT_COUNT), read)
            .await?
            .unwrap_or_default();
        u64::try_from(n).map_err(|_| StoreError::Corrupt("negative patient count".into()))
    }
}
