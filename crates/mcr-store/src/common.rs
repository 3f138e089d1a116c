//! What both backends share: how values are written and read back, and batch preparation.

use crate::{Result, StoreError};
use chrono::{DateTime, Utc};
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

/// A column of a row of either backend; a value that cannot be read is named, never echoed.
pub(crate) fn get<'r, R, T>(row: &'r R, column: &str) -> Result<T>
where
    R: Row,
    T: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    row.try_get(column)
        .map_err(|_| StoreError::Corrupt(format!("column {column} cannot be read")))
}

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

/// A statement's values bound the same way on both backends, so a topic writes each
/// statement and its values once (in `<topic>.rs`) and each backend only runs it. The SQL
/// uses PostgreSQL's `$1`, `$2`, … placeholders, which sqlx's SQLite driver reads as the
/// same numbered parameters. Values are bound owned: these statements are not on a hot path.
pub(crate) trait Bind: Sized {
    fn text(self, v: impl Into<String>) -> Self;
    fn opt_text(self, v: Option<impl Into<String>>) -> Self;
}

impl<'q> Bind for sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    fn text(self, v: impl Into<String>) -> Self {
        self.bind(v.into())
    }
    fn opt_text(self, v: Option<impl Into<String>>) -> Self {
        self.bind(v.map(Into::into))
    }
}

impl Bind for sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments> {
    fn text(self, v: impl Into<String>) -> Self {
        self.bind(v.into())
    }
    fn opt_text(self, v: Option<impl Into<String>>) -> Self {
        self.bind(v.map(Into::into))
    }
}
