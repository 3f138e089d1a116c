//! Opt-out requests from the public site, waiting for staff to verify them against the patient
//! index: the trait, its rows and the statements, run on either backend through
//! [`crate::runner::Runner`]. A request and its audit record are written in one transaction, and so is each decision on it (verified or
//! rejected), which can be made once.

use crate::common::{parse_nhs, parse_ts, ts, Bind, Statement, Value};
use crate::runner::{Reader, Runner};
use crate::{AuditAppend, AuditRow, ChainFn, Result, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use mcr_domain::NhsNumber;
use sqlx::Row;

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

pub(crate) fn list_limit(l: u32) -> i64 {
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

pub(crate) const COLUMNS: &str =
    "reference, received_at, given_name, family_name, birth_date, nhs_number, postcode, \
     contact, state, matched_nhs, decided_by, decided_at, decision_note, kind";

pub(crate) fn request_from_row<R>(row: &R) -> Result<OptOutRequestRow>
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

/// A new request, `received`.
pub(crate) fn insert_request<Q: Bind>(q: Q, r: &OptOutRequestRow) -> Q {
    q.text(&r.reference)
        .text(ts(&r.received_at))
        .text(&r.given_name)
        .text(&r.family_name)
        .text(r.birth_date.format("%Y-%m-%d").to_string())
        .opt_text(r.nhs_number.as_ref().map(NhsNumber::as_str))
        .text(&r.postcode)
        .text(&r.contact)
        .text(r.kind.as_str())
}

pub(crate) const INSERT_REQUEST: &str =
    "INSERT INTO opt_out_request (reference, received_at, given_name, family_name, birth_date, \
     nhs_number, postcode, contact, state, kind) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'received', $9)";

/// The decision on a request still `received` (no row changed: none such).
pub(crate) fn decide_request<Q: Bind>(q: Q, d: &OptOutDecision) -> Q {
    q.text(&d.reference)
        .text(d.state.as_str())
        .opt_text(d.matched_nhs.as_ref().map(NhsNumber::as_str))
        .text(&d.decided_by)
        .text(ts(&d.decided_at))
        .opt_text(d.note.as_deref())
}

pub(crate) const DECIDE_REQUEST: &str =
    "UPDATE opt_out_request SET state = $2, matched_nhs = $3, decided_by = $4, decided_at = $5, \
     decision_note = $6 WHERE reference = $1 AND state = 'received'";

/// One request by its reference.
pub(crate) static BY_REFERENCE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("SELECT {COLUMNS} FROM opt_out_request WHERE reference = $1")
});

/// Requests in `state` (all when `None`), oldest first, at most `limit` (0: 100).
pub(crate) fn requests(state: Option<OptOutState>, limit: u32) -> Statement<'static> {
    let (filter, mut values) = match state {
        Some(s) => (" WHERE state = $1", vec![Value::Text(s.as_str())]),
        None => ("", Vec::new()),
    };
    values.push(Value::Int(list_limit(limit)));
    Statement::new(
        format!(
            "SELECT {COLUMNS} FROM opt_out_request{filter} \
             ORDER BY received_at, reference LIMIT ${}",
            values.len()
        ),
        values,
    )
}

/// Both backends run the same statements: [`Runner`] says on which connection.
#[async_trait]
impl<S: Runner> OptOutStore for S {
    async fn add_opt_out_request(
        &self,
        r: &OptOutRequestRow,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<AuditRow> {
        let write = insert_request(Statement::sql(INSERT_REQUEST), r);
        self.audited(&[write], audit, chain).await
    }

    async fn opt_out_requests(
        &self,
        state: Option<OptOutState>,
        limit: u32,
    ) -> Result<Vec<OptOutRequestRow>> {
        let read = Reader::new(request_from_row, request_from_row);
        self.fetch_all(&requests(state, limit), read).await
    }

    async fn opt_out_request(&self, reference: &str) -> Result<Option<OptOutRequestRow>> {
        let one = Statement::new(BY_REFERENCE.as_str(), vec![Value::Text(reference)]);
        let read = Reader::new(request_from_row, request_from_row);
        self.fetch_optional(&one, read).await
    }

    async fn decide_opt_out_request(
        &self,
        d: &OptOutDecision,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<Option<AuditRow>> {
        let write = decide_request(Statement::sql(DECIDE_REQUEST), d);
        self.audited_if_one(write, audit, chain).await
    }
}
