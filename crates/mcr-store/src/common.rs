//! What both backends share: how values are written and read back, and batch preparation.

use crate::{Result, StoreError};
use chrono::{DateTime, NaiveDate, Utc};
use mcr_domain::{NhsNumber, SourceId};
use sqlx::{ColumnIndex, Decode, Row, Type};
use std::borrow::Cow;
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

/// A timestamp column's value; the column is named only when it cannot be read (a row of the
/// index is read a million times in a matching pass).
fn at_of(table: &str, column: &str, s: &str) -> Result<DateTime<Utc>> {
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) => Ok(t.with_timezone(&Utc)),
        Err(_) => parse_ts(&format!("{table}.{column}"), s),
    }
}

/// One row's values by table and column name, from either backend's row or from a row the
/// database sent as JSON ([`JsonRow`]): what the model's readers take, so each says only which
/// column goes where. A value that cannot be read is named by table and column, never echoed
/// (it may be patient data).
pub(crate) trait Cells {
    fn text(&self, table: &str, column: &str) -> Result<String>;
    fn text_opt(&self, table: &str, column: &str) -> Result<Option<String>>;
    fn date_opt(&self, table: &str, column: &str) -> Result<Option<NaiveDate>>;
    fn flag(&self, table: &str, column: &str) -> Result<bool>;
    fn real(&self, table: &str, column: &str) -> Result<f64>;

    fn date(&self, table: &str, column: &str) -> Result<NaiveDate> {
        self.date_opt(table, column)?
            .ok_or_else(|| unreadable(table, column))
    }

    fn at(&self, table: &str, column: &str) -> Result<DateTime<Utc>> {
        at_of(table, column, &self.text(table, column)?)
    }

    fn at_opt(&self, table: &str, column: &str) -> Result<Option<DateTime<Utc>>> {
        self.text_opt(table, column)?
            .map(|s| at_of(table, column, &s))
            .transpose()
    }

    fn nhs(&self, table: &str) -> Result<NhsNumber> {
        parse_nhs(
            &format!("{table}.nhs_number"),
            &self.text(table, "nhs_number")?,
        )
    }
}

fn unreadable(table: &str, column: &str) -> StoreError {
    StoreError::Corrupt(format!("column {table}.{column} cannot be read"))
}

impl<R> Cells for R
where
    R: Row,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<NaiveDate>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> f64: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    fn text(&self, table: &str, column: &str) -> Result<String> {
        self.try_get(column).map_err(|_| unreadable(table, column))
    }

    fn text_opt(&self, table: &str, column: &str) -> Result<Option<String>> {
        self.try_get(column).map_err(|_| unreadable(table, column))
    }

    fn date_opt(&self, table: &str, column: &str) -> Result<Option<NaiveDate>> {
        self.try_get(column).map_err(|_| unreadable(table, column))
    }

    fn flag(&self, table: &str, column: &str) -> Result<bool> {
        self.try_get(column).map_err(|_| unreadable(table, column))
    }

    fn real(&self, table: &str, column: &str) -> Result<f64> {
        self.try_get(column).map_err(|_| unreadable(table, column))
    }
}

/// Which SQL a statement is written in.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A row the database sent as a JSON array, its values in the order of `columns` (the
/// statement built them that way): strings, `null`, and a flag as `true`/`false` (PostgreSQL)
/// or `1`/`0` (SQLite). Dates are `YYYY-MM-DD` text on both.
pub(crate) struct JsonRow<'a> {
    pub columns: &'a [&'a str],
    pub values: &'a [serde_json::Value],
}

impl JsonRow<'_> {
    fn value(&self, table: &str, column: &str) -> Result<&serde_json::Value> {
        self.columns
            .iter()
            .position(|c| *c == column)
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| unreadable(table, column))
    }
}

impl Cells for JsonRow<'_> {
    fn text(&self, table: &str, column: &str) -> Result<String> {
        self.text_opt(table, column)?
            .ok_or_else(|| unreadable(table, column))
    }

    fn text_opt(&self, table: &str, column: &str) -> Result<Option<String>> {
        match self.value(table, column)? {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::String(s) => Ok(Some(s.clone())),
            _ => Err(unreadable(table, column)),
        }
    }

    fn date_opt(&self, table: &str, column: &str) -> Result<Option<NaiveDate>> {
        self.text_opt(table, column)?
            .map(|s| {
                // ISO 8601's calendar date, as the store writes it (`1950-05-07`).
                s.parse::<NaiveDate>()
                    .map_err(|_| unreadable(table, column))
            })
            .transpose()
    }

    fn flag(&self, table: &str, column: &str) -> Result<bool> {
        match self.value(table, column)? {
            serde_json::Value::Bool(b) => Ok(*b),
            serde_json::Value::Number(n) if n.as_i64() == Some(0) => Ok(false),
            serde_json::Value::Number(n) if n.as_i64() == Some(1) => Ok(true),
            _ => Err(unreadable(table, column)),
        }
    }

    fn real(&self, table: &str, column: &str) -> Result<f64> {
        self.value(table, column)?
            .as_f64()
            .ok_or_else(|| unreadable(table, column))
    }
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
/// same numbered parameters. Values are bound owned (a copy of each text value, small beside
/// the round trip); the batch writes, which bind thousands of rows, bind their own per backend.
pub(crate) trait Bind: Sized {
    fn text(self, v: impl Into<String>) -> Self;
    fn opt_text(self, v: Option<impl Into<String>>) -> Self;
    fn int(self, v: i64) -> Self;
    fn real(self, v: f64) -> Self;
    fn flag(self, v: bool) -> Self;
    fn opt_date(self, v: Option<NaiveDate>) -> Self;

    /// One [`Value`] of a [`Statement`].
    fn value(self, v: &Value<'_>) -> Self {
        match v {
            Value::Text(t) => self.text(*t),
            Value::OptText(t) => self.opt_text(*t),
            Value::Int(i) => self.int(*i),
            Value::Real(r) => self.real(*r),
            Value::Flag(b) => self.flag(*b),
            Value::OptDate(d) => self.opt_date(*d),
            Value::Owned(t) => self.text(t.as_str()),
            Value::OptOwned(t) => self.opt_text(t.as_deref()),
        }
    }
}

macro_rules! bind_impl {
    ($db:ty, $args:ty) => {
        bind_impl!($db, $args, sqlx::query::Query<'q, $db, $args>,);
        bind_impl!($db, $args, sqlx::query::QueryAs<'q, $db, O, $args>, O);
    };
    ($db:ty, $args:ty, $query:ty, $($o:ident)?) => {
        impl<'q, $($o)?> Bind for $query {
            fn text(self, v: impl Into<String>) -> Self {
                self.bind(v.into())
            }
            fn opt_text(self, v: Option<impl Into<String>>) -> Self {
                self.bind(v.map(Into::into))
            }
            fn int(self, v: i64) -> Self {
                self.bind(v)
            }
            fn real(self, v: f64) -> Self {
                self.bind(v)
            }
            fn flag(self, v: bool) -> Self {
                self.bind(v)
            }
            fn opt_date(self, v: Option<NaiveDate>) -> Self {
                self.bind(v)
            }
        }
    };
}

bind_impl!(sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>);
bind_impl!(sqlx::Postgres, sqlx::postgres::PgArguments);

/// A value of a [`Statement`], bound by [`Bind::value`].
pub(crate) enum Value<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
    Real(f64),
    Flag(bool),
    OptDate(Option<NaiveDate>),
    /// Text made for the statement (e.g. a timestamp written by [`ts`]).
    Owned(String),
    OptOwned(Option<String>),
}

/// A statement's values gathered by a topic's binding function (`fn bind<Q: Bind>(q: Q, …)`),
/// so a backend can hand the statement on whole (e.g. to run with its audit record).
impl Bind for Statement<'_> {
    fn text(mut self, v: impl Into<String>) -> Self {
        self.values.push(Value::Owned(v.into()));
        self
    }
    fn opt_text(mut self, v: Option<impl Into<String>>) -> Self {
        self.values.push(Value::OptOwned(v.map(Into::into)));
        self
    }
    fn int(mut self, v: i64) -> Self {
        self.values.push(Value::Int(v));
        self
    }
    fn real(mut self, v: f64) -> Self {
        self.values.push(Value::Real(v));
        self
    }
    fn flag(mut self, v: bool) -> Self {
        self.values.push(Value::Flag(v));
        self
    }
    fn opt_date(mut self, v: Option<NaiveDate>) -> Self {
        self.values.push(Value::OptDate(v));
        self
    }
}

/// One statement and its values, written once in a topic's file; a backend runs it with
/// [`Statement::query`] on whichever connection and transaction it chooses.
pub(crate) struct Statement<'a> {
    pub sql: Cow<'static, str>,
    pub values: Vec<Value<'a>>,
}

impl<'a> Statement<'a> {
    /// A statement whose values a binding function gives (see [`Bind`]).
    pub fn sql(sql: impl Into<Cow<'static, str>>) -> Self {
        Self::new(sql, Vec::new())
    }

    pub fn new(sql: impl Into<Cow<'static, str>>, values: Vec<Value<'a>>) -> Self {
        Self {
            sql: sql.into(),
            values,
        }
    }

    /// Runs the statement on `e` (a pool or a connection of either backend): its rows, each
    /// read with `read`.
    pub async fn fetch_all<'s, 'e, 'c: 'e, DB, E, T>(
        &'s self,
        e: E,
        read: impl Fn(&DB::Row) -> Result<T>,
    ) -> Result<Vec<T>>
    where
        's: 'e,
        DB: sqlx::Database,
        E: 'e + sqlx::Executor<'c, Database = DB>,
        sqlx::query::Query<'s, DB, DB::Arguments<'s>>: Bind,
        DB::Arguments<'s>: sqlx::IntoArguments<'s, DB> + 'e,
    {
        self.query::<DB>()
            .fetch_all(e)
            .await?
            .iter()
            .map(read)
            .collect()
    }

    /// Runs the statement on `e`: its one row, if any, read with `read`.
    pub async fn fetch_optional<'s, 'e, 'c: 'e, DB, E, T>(
        &'s self,
        e: E,
        read: impl Fn(&DB::Row) -> Result<T>,
    ) -> Result<Option<T>>
    where
        's: 'e,
        DB: sqlx::Database,
        E: 'e + sqlx::Executor<'c, Database = DB>,
        sqlx::query::Query<'s, DB, DB::Arguments<'s>>: Bind,
        DB::Arguments<'s>: sqlx::IntoArguments<'s, DB> + 'e,
    {
        self.query::<DB>()
            .fetch_optional(e)
            .await?
            .as_ref()
            .map(read)
            .transpose()
    }

    /// The statement with its values bound, its rows read as `O`.
    pub fn query_as<'s, DB: sqlx::Database, O>(
        &'s self,
    ) -> sqlx::query::QueryAs<'s, DB, O, DB::Arguments<'s>>
    where
        O: for<'r> sqlx::FromRow<'r, DB::Row>,
        sqlx::query::QueryAs<'s, DB, O, DB::Arguments<'s>>: Bind,
    {
        self.values
            .iter()
            .fold(sqlx::query_as(&self.sql), |q, v| q.value(v))
    }

    /// The statement with its values bound, for either backend (the executor it runs on says
    /// which).
    pub fn query<'s, DB: sqlx::Database>(&'s self) -> sqlx::query::Query<'s, DB, DB::Arguments<'s>>
    where
        sqlx::query::Query<'s, DB, DB::Arguments<'s>>: Bind,
    {
        self.values
            .iter()
            .fold(sqlx::query(&self.sql), |q, v| q.value(v))
    }
}
