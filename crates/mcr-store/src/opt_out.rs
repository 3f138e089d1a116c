//! Opt-out requests from the public site, waiting for staff to verify them against the patient
//! index. Both backends. A request and its audit record are written in one transaction, and so
//! is each decision on it (verified or rejected), which can be made once.

use crate::common::{parse_nhs, parse_ts, ts};
use crate::{AuditAppend, AuditRow, ChainFn, PostgresStore, Result, SqliteStore, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use mcr_domain::NhsNumber;
use sqlx::{Postgres, QueryBuilder, Row, Sqlite};

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OptOutState {
    /// Waiting for staff.
    Received,
    /// Matched to a patient in the index; the objection is in the register.
    Verified,
    /// Could not be matched (or was not a genuine request).
    Rejected,
}

impl OptOutState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Verified => "verified",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "received" => Some(Self::Received),
            "verified" => Some(Self::Verified),
            "rejected" => Some(Self::Rejected),
            _ => None,
        }
    }
}

/// What a request from the public site asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OptOutKind {
    /// Stop sharing my record: record an objection.
    OptOut,
    /// Share my record again: lift my objection.
    OptIn,
}

impl OptOutKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OptOut => "opt-out",
            Self::OptIn => "opt-in",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "opt-out" => Some(Self::OptOut),
            "opt-in" => Some(Self::OptIn),
            _ => None,
        }
    }
}

/// One request as received, and what staff decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptOutRequestRow {
    /// What the person was shown, e.g. `OPT-7K3M-9QXD`.
    pub reference: String,
    /// To opt out, or to opt back in.
    pub kind: OptOutKind,
    pub received_at: DateTime<Utc>,
    pub given_name: String,
    pub family_name: String,
    pub birth_date: NaiveDate,
    /// The NHS number the person gave, if they knew it (already checked for its check digit).
    pub nhs_number: Option<NhsNumber>,
    pub postcode: String,
    /// How to reach the person: an email address, a phone number or a postal address.
    pub contact: String,
    pub state: OptOutState,
    /// The patient the request was verified against.
    pub matched_nhs: Option<NhsNumber>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decision_note: Option<String>,
}

/// Staff's decision on a received request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptOutDecision {
    pub reference: String,
    /// `Verified` or `Rejected`.
    pub state: OptOutState,
    pub matched_nhs: Option<NhsNumber>,
    pub decided_by: String,
    pub decided_at: DateTime<Utc>,
    pub note: Option<String>,
}

/// The most requests one listing returns.
pub const OPT_OUT_LIST_MAX: u32 = 1_000;

fn list_limit(l: u32) -> i64 {
    i64::from(if l == 0 { 100 } else { l.min(OPT_OUT_LIST_MAX) })
}

#[async_trait]
pub trait OptOutStore: Send + Sync {
    /// Store a new request and append `audit` (chained with `chain`) in one transaction. A
    /// reference already used is refused with [`StoreError::Unavailable`] and nothing written.
    async fn add_opt_out_request(
        &self,
        request: &OptOutRequestRow,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<AuditRow>;
    /// Requests in `state` (all when `None`), oldest first, at most `limit` (0: 100).
    async fn opt_out_requests(
        &self,
        state: Option<OptOutState>,
        limit: u32,
    ) -> Result<Vec<OptOutRequestRow>>;
    async fn opt_out_request(&self, reference: &str) -> Result<Option<OptOutRequestRow>>;
    /// Decide a request that is still `received`, and append `audit`, in one transaction.
    /// `None` (and nothing written) when there is no such request or it was already decided.
    async fn decide_opt_out_request(
        &self,
        decision: &OptOutDecision,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<Option<AuditRow>>;
}

const COLUMNS: &str =
    "reference, received_at, given_name, family_name, birth_date, nhs_number, postcode, \
     contact, state, matched_nhs, decided_by, decided_at, decision_note, kind";

fn request_from_row<R>(row: &R) -> Result<OptOutRequestRow>
where
    R: Row,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    let bad = |c: &str| StoreError::Corrupt(format!("opt_out_request.{c} cannot be read"));
    let text = |c: &str| -> Result<String> { row.try_get::<String, _>(c).map_err(|_| bad(c)) };
    let opt = |c: &str| -> Result<Option<String>> {
        row.try_get::<Option<String>, _>(c).map_err(|_| bad(c))
    };
    let birth = text("birth_date")?;
    Ok(OptOutRequestRow {
        reference: text("reference")?,
        kind: OptOutKind::parse(&text("kind")?).ok_or_else(|| bad("kind"))?,
        received_at: parse_ts("opt_out_request.received_at", &text("received_at")?)?,
        given_name: text("given_name")?,
        family_name: text("family_name")?,
        birth_date: NaiveDate::parse_from_str(&birth, "%Y-%m-%d").map_err(|_| bad("birth_date"))?,
        nhs_number: opt("nhs_number")?
            .map(|n| parse_nhs("opt_out_request.nhs_number", &n))
            .transpose()?,
        postcode: text("postcode")?,
        contact: text("contact")?,
        state: OptOutState::parse(&text("state")?).ok_or_else(|| bad("state"))?,
        matched_nhs: opt("matched_nhs")?
            .map(|n| parse_nhs("opt_out_request.matched_nhs", &n))
            .transpose()?,
        decided_by: opt("decided_by")?,
        decided_at: opt("decided_at")?
            .map(|t| parse_ts("opt_out_request.decided_at", &t))
            .transpose()?,
        decision_note: opt("decision_note")?,
    })
}

/// The values of a new request in column order (after `reference`, `received_at`).
fn birth(r: &OptOutRequestRow) -> String {
    r.birth_date.format("%Y-%m-%d").to_string()
}

#[async_trait]
impl OptOutStore for SqliteStore {
    async fn add_opt_out_request(
        &self,
        r: &OptOutRequestRow,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<AuditRow> {
        let (_one_chain, mut writer) = self.begin_append().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *writer, crate::sqlite::IMMEDIATE).await?;
        sqlx::query(
            "INSERT INTO opt_out_request (reference, received_at, given_name, family_name, birth_date, \
             nhs_number, postcode, contact, state, kind) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'received', ?9)",
        )
        .bind(&r.reference)
        .bind(ts(&r.received_at))
        .bind(&r.given_name)
        .bind(&r.family_name)
        .bind(birth(r))
        .bind(r.nhs_number.as_ref().map(NhsNumber::as_str))
        .bind(&r.postcode)
        .bind(&r.contact)
        .bind(r.kind.as_str())
        .execute(&mut *tx)
        .await?;
        let row = crate::sqlite::append_audit_in_tx(&mut tx, audit, chain).await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn opt_out_requests(
        &self,
        state: Option<OptOutState>,
        limit: u32,
    ) -> Result<Vec<OptOutRequestRow>> {
        let mut qb = QueryBuilder::<Sqlite>::new(format!("SELECT {COLUMNS} FROM opt_out_request"));
        if let Some(s) = state {
            qb.push(" WHERE state = ").push_bind(s.as_str());
        }
        qb.push(" ORDER BY received_at, reference LIMIT ")
            .push_bind(list_limit(limit));
        qb.build()
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(request_from_row)
            .collect()
    }

    async fn opt_out_request(&self, reference: &str) -> Result<Option<OptOutRequestRow>> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM opt_out_request WHERE reference = ?1"
        ))
        .bind(reference)
        .fetch_optional(&self.read)
        .await?
        .as_ref()
        .map(request_from_row)
        .transpose()
    }

    async fn decide_opt_out_request(
        &self,
        d: &OptOutDecision,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<Option<AuditRow>> {
        let (_one_chain, mut writer) = self.begin_append().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *writer, crate::sqlite::IMMEDIATE).await?;
        let done = sqlx::query(
            "UPDATE opt_out_request SET state = ?2, matched_nhs = ?3, decided_by = ?4, decided_at = ?5, \
             decision_note = ?6 WHERE reference = ?1 AND state = 'received'",
        )
        .bind(&d.reference)
        .bind(d.state.as_str())
        .bind(d.matched_nhs.as_ref().map(NhsNumber::as_str))
        .bind(&d.decided_by)
        .bind(ts(&d.decided_at))
        .bind(d.note.as_deref())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        let row = crate::sqlite::append_audit_in_tx(&mut tx, audit, chain).await?;
        tx.commit().await?;
        Ok(Some(row))
    }
}

#[async_trait]
impl OptOutStore for PostgresStore {
    async fn add_opt_out_request(
        &self,
        r: &OptOutRequestRow,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<AuditRow> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO opt_out_request (reference, received_at, given_name, family_name, birth_date, \
             nhs_number, postcode, contact, state, kind) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'received', $9)",
        )
        .bind(&r.reference)
        .bind(ts(&r.received_at))
        .bind(&r.given_name)
        .bind(&r.family_name)
        .bind(birth(r))
        .bind(r.nhs_number.as_ref().map(NhsNumber::as_str))
        .bind(&r.postcode)
        .bind(&r.contact)
        .bind(r.kind.as_str())
        .execute(&mut *tx)
        .await?;
        let row = crate::postgres::append_audit_in_tx(&mut tx, audit, chain).await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn opt_out_requests(
        &self,
        state: Option<OptOutState>,
        limit: u32,
    ) -> Result<Vec<OptOutRequestRow>> {
        let mut qb =
            QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM opt_out_request"));
        if let Some(s) = state {
            qb.push(" WHERE state = ").push_bind(s.as_str());
        }
        qb.push(" ORDER BY received_at, reference LIMIT ")
            .push_bind(list_limit(limit));
        qb.build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(request_from_row)
            .collect()
    }

    async fn opt_out_request(&self, reference: &str) -> Result<Option<OptOutRequestRow>> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM opt_out_request WHERE reference = $1"
        ))
        .bind(reference)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(request_from_row)
        .transpose()
    }

    async fn decide_opt_out_request(
        &self,
        d: &OptOutDecision,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<Option<AuditRow>> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE opt_out_request SET state = $2, matched_nhs = $3, decided_by = $4, decided_at = $5, \
             decision_note = $6 WHERE reference = $1 AND state = 'received'",
        )
        .bind(&d.reference)
        .bind(d.state.as_str())
        .bind(d.matched_nhs.as_ref().map(NhsNumber::as_str))
        .bind(&d.decided_by)
        .bind(ts(&d.decided_at))
        .bind(d.note.as_deref())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        let row = crate::postgres::append_audit_in_tx(&mut tx, audit, chain).await?;
        tx.commit().await?;
        Ok(Some(row))
    }
}
