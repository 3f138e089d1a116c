//! Care events and held feed messages: the trait, the rows, and how both backends write and
//! read them (`sqlite/care_event.rs`, `postgres/care_event.rs` run the statements).
//!
//! A care event is when a patient's care at an organisation started and (once known) ended, as
//! that organisation's systems announced it: an HL7 v2 ADT message, FHIR care-event metadata
//! read with the index sync, or a GP registration. One row per event in its source, keyed by
//! (`origin`, `org_code`, `source_event_id`), so a repeated or updated message replaces the row
//! and a cancel removes it. The view path reads care events with the other governance records
//! in one statement ([`crate::Store::view_inputs`]).
//!
//! Never clinical content: a ward, team or service name at most. A held message keeps only its
//! envelope (sender, type, control id) and the reason it was not applied.

use crate::common::{last_per_key, parse_ts, ts, Bind, Cells, Statement, Value};
use crate::{Result, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcr_domain::NhsNumber;
use sqlx::{QueryBuilder, Row};
use std::sync::LazyLock;

/// One care event as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CareEventRow {
    pub nhs_number: NhsNumber,
    /// The organisation the care is at (ODS code).
    pub org_code: String,
    /// `admission`, `encounter`, `episode`, `referral`, `appointment`, `case-allocation` or
    /// `gp-registration`.
    pub kind: String,
    pub ward: Option<String>,
    pub team: Option<String>,
    pub service: Option<String>,
    pub start: DateTime<Utc>,
    /// `None`: still open (or, for an appointment, its end not given).
    pub end: Option<DateTime<Utc>>,
    /// Where it came from: `adt`, `fhir` or `gp-registration`.
    pub origin: String,
    /// The source's own id for the event (a visit number, a FHIR resource id).
    pub source_event_id: String,
    pub received_at: DateTime<Utc>,
}

/// A feed message that was answered with an error and kept for review: its envelope only.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeldMessage {
    pub received_at: DateTime<Utc>,
    /// Which feed: e.g. `adt`.
    pub channel: String,
    /// The sending facility as the message named it, if it could be read.
    pub sender: Option<String>,
    /// e.g. `ADT^A01`, if it could be read.
    pub message_type: Option<String>,
    /// The message control id (MSH-10), if it could be read.
    pub control_id: Option<String>,
    /// What the sender was answered: `AE` or `AR`.
    pub ack_code: String,
    pub reason: String,
}

/// The most held messages one listing returns.
pub const HELD_LIST_MAX: u32 = 1_000;

/// The identity of one event in its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CareEventKey<'a> {
    pub origin: &'a str,
    pub org_code: &'a str,
    pub source_event_id: &'a str,
}

#[async_trait]
pub trait CareEventStore: Send + Sync {
    /// Insert or replace events by (`origin`, `org_code`, `source_event_id`); in one call,
    /// the last of several with one key wins.
    async fn upsert_care_events(&self, events: &[CareEventRow]) -> Result<()>;
    /// The event with this key, if held.
    async fn care_event(&self, key: CareEventKey<'_>) -> Result<Option<CareEventRow>>;
    /// Remove an event (a cancelled admission). False when there was none.
    async fn cancel_care_event(&self, key: CareEventKey<'_>) -> Result<bool>;
    /// Set (or, with `None`, clear: a cancelled discharge) an event's end. False when there
    /// was none.
    async fn set_care_event_end(
        &self,
        key: CareEventKey<'_>,
        end: Option<DateTime<Utc>>,
    ) -> Result<bool>;
    /// Move every event of `from` to `to` (a patient merge). Returns how many moved.
    async fn merge_care_events(&self, from: &NhsNumber, to: &NhsNumber) -> Result<u64>;
    /// Keep a message that was not applied.
    async fn hold_message(&self, message: &HeldMessage) -> Result<()>;
    /// Held messages, newest first, at most `limit` (0: 100).
    async fn held_messages(&self, limit: u32) -> Result<Vec<HeldMessage>>;
    /// Remove events that ended before `ended_before` (they no longer make a relationship);
    /// open events are kept. Returns how many were removed.
    async fn prune_care_events(&self, ended_before: DateTime<Utc>) -> Result<u64>;
}

pub(crate) const EVENT_COLUMNS: &str =
    "nhs_number, org_code, kind, ward, team, service, \"start\", \"end\", \
     origin, source_event_id, received_at";

const UPSERT_TAIL: &str = " ON CONFLICT (origin, org_code, source_event_id) DO UPDATE SET \
     nhs_number = excluded.nhs_number, kind = excluded.kind, ward = excluded.ward, \
     team = excluded.team, service = excluded.service, \"start\" = excluded.\"start\", \
     \"end\" = excluded.\"end\", received_at = excluded.received_at";

pub(crate) const HELD_COLUMNS: &str =
    "received_at, channel, sender, message_type, control_id, ack_code, reason";

/// Rows per multi-row statement.
pub(crate) const CHUNK: usize = 400;

pub(crate) fn limit(l: u32) -> i64 {
    i64::from(if l == 0 { 100 } else { l.min(HELD_LIST_MAX) })
}

/// One care event from a row of either backend (its own table or a union statement).
pub(crate) fn care_event_from_row(row: &impl Cells) -> Result<CareEventRow> {
    const T: &str = "care_event";
    Ok(CareEventRow {
        nhs_number: row.nhs(T)?,
        org_code: row.text(T, "org_code")?,
        kind: row.text(T, "kind")?,
        ward: row.text_opt(T, "ward")?,
        team: row.text_opt(T, "team")?,
        service: row.text_opt(T, "service")?,
        start: row.at(T, "start")?,
        end: row.at_opt(T, "end")?,
        origin: row.text(T, "origin")?,
        source_event_id: row.text(T, "source_event_id")?,
        received_at: row.at(T, "received_at")?,
    })
}

pub(crate) fn held_from_row<R>(row: &R) -> Result<HeldMessage>
where
    R: Row,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    let bad = |c: &str| StoreError::Corrupt(format!("column held_message.{c} cannot be read"));
    let text = |c: &str| -> Result<String> { row.try_get::<String, _>(c).map_err(|_| bad(c)) };
    let opt = |c: &str| -> Result<Option<String>> {
        row.try_get::<Option<String>, _>(c).map_err(|_| bad(c))
    };
    Ok(HeldMessage {
        received_at: parse_ts("held_message.received_at", &text("received_at")?)?,
        channel: text("channel")?,
        sender: opt("sender")?,
        message_type: opt("message_type")?,
        control_id: opt("control_id")?,
        ack_code: text("ack_code")?,
        reason: text("reason")?,
    })
}

/// The `INSERT … VALUES …` of a chunk of events, for either backend.
pub(crate) fn push_events<DB: sqlx::Database>(
    qb: &mut QueryBuilder<'_, DB>,
    chunk: &[&CareEventRow],
) where
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    qb.push(format!("INSERT INTO care_event ({EVENT_COLUMNS}) "));
    qb.push_values(chunk, |mut b, e| {
        b.push(crate::patient_merge::SURVIVOR_OF)
            .push_bind_unseparated(e.nhs_number.as_str().to_owned())
            .push_unseparated("), ")
            .push_bind_unseparated(e.nhs_number.as_str().to_owned())
            .push_unseparated(")")
            .push_bind(e.org_code.clone())
            .push_bind(e.kind.clone())
            .push_bind(e.ward.clone())
            .push_bind(e.team.clone())
            .push_bind(e.service.clone())
            .push_bind(ts(&e.start))
            .push_bind(e.end.as_ref().map(ts))
            .push_bind(e.origin.clone())
            .push_bind(e.source_event_id.clone())
            .push_bind(ts(&e.received_at));
    });
    qb.push(UPSERT_TAIL);
}

pub(crate) fn keyed(events: &[CareEventRow]) -> Vec<&CareEventRow> {
    last_per_key(events, |e| {
        (
            e.origin.clone(),
            e.org_code.clone(),
            e.source_event_id.clone(),
        )
    })
}

/// Statements naming one event by its source key (`$1` origin, `$2` organisation, `$3` the
/// source's id for it).
pub(crate) fn by_key<Q: Bind>(q: Q, key: CareEventKey<'_>) -> Q {
    q.text(key.origin)
        .text(key.org_code)
        .text(key.source_event_id)
}

pub(crate) static EVENT_BY_KEY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {EVENT_COLUMNS} FROM care_event WHERE origin = $1 AND org_code = $2 \
         AND source_event_id = $3"
    )
});

pub(crate) const CANCEL_EVENT: &str =
    "DELETE FROM care_event WHERE origin = $1 AND org_code = $2 AND source_event_id = $3";

/// With [`by_key`]'s values, then `$4` the end (or none).
pub(crate) const SET_EVENT_END: &str = "UPDATE care_event SET \"end\" = $4 WHERE origin = $1 \
     AND org_code = $2 AND source_event_id = $3";

pub(crate) const MERGE_EVENTS: &str = "UPDATE care_event SET nhs_number = $2 WHERE nhs_number = $1";

pub(crate) const PRUNE_EVENTS: &str =
    "DELETE FROM care_event WHERE \"end\" IS NOT NULL AND \"end\" < $1";

/// A message held for review.
pub(crate) fn insert_held<Q: Bind>(q: Q, m: &HeldMessage) -> Q {
    q.text(ts(&m.received_at))
        .text(&m.channel)
        .opt_text(m.sender.as_deref())
        .opt_text(m.message_type.as_deref())
        .opt_text(m.control_id.as_deref())
        .text(&m.ack_code)
        .text(&m.reason)
}

pub(crate) static INSERT_HELD: LazyLock<String> = LazyLock::new(|| {
    format!("INSERT INTO held_message ({HELD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)")
});

pub(crate) static HELD_NEWEST_FIRST: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {HELD_COLUMNS} FROM held_message ORDER BY received_at DESC, id DESC LIMIT $1")
});

/// One event by its source key.
pub(crate) fn event(key: CareEventKey<'_>) -> Statement<'static> {
    by_key(Statement::sql(EVENT_BY_KEY.as_str()), key)
}

/// The held messages, newest first, at most `l` (see [`limit`]).
pub(crate) fn held_newest_first(l: u32) -> Statement<'static> {
    Statement::new(HELD_NEWEST_FIRST.as_str(), vec![Value::Int(limit(l))])
}
