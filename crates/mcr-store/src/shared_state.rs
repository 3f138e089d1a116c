//! State the gateways of a region share through the store, so any gateway serves any request: page
//! sessions and sign-ins in progress (keyed by a hash of the cookie's id; what they hold is the web
//! layer's own JSON), rate-limit token buckets, and leases for work done by one gateway at a time
//! (the index sync). The trait and the SQL both backends share; each backend's `shared_state.rs`
//! implements it, one statement per call: a session is read and marked used in one `UPDATE ..
//! RETURNING`, a sign-in taken in one `DELETE .. RETURNING`, a token taken in one conditional
//! upsert. Times are Unix milliseconds from the caller's clock.

use crate::common::{Statement, Value};
use crate::Result;
use async_trait::async_trait;

/// A token bucket: `burst` tokens at most, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub burst: u32,
    pub per_minute: u32,
}

impl Bucket {
    pub(crate) fn burst(self) -> f64 {
        f64::from(self.burst.max(1))
    }

    pub(crate) fn per_ms(self) -> f64 {
        f64::from(self.per_minute.max(1)) / 60_000.0
    }

    /// Whole seconds until a bucket holding `tokens` has one again (at least 1, at most 3600).
    pub(crate) fn wait_seconds(self, tokens: f64) -> u64 {
        let wait = ((1.0 - tokens) / (self.per_ms() * 1000.0)).ceil();
        if (1.0..3600.0).contains(&wait) {
            wait as u64
        } else if wait < 1.0 {
            1
        } else {
            // Also NaN and infinity: the values are small and positive in practice.
            3600
        }
    }
}

#[async_trait]
pub trait SharedStateStore: Send + Sync {
    /// Store a new page session; forgets sessions idle longer than `idle_ms` or older than
    /// `max_ms` on the way.
    async fn put_session(
        &self,
        id_hash: &str,
        data: &str,
        now_ms: i64,
        idle_ms: i64,
        max_ms: i64,
    ) -> Result<()>;
    /// The session's data if it is still alive (used within `idle_ms`, created within
    /// `max_ms`), marking it used at `now_ms`.
    async fn touch_session(
        &self,
        id_hash: &str,
        now_ms: i64,
        idle_ms: i64,
        max_ms: i64,
    ) -> Result<Option<String>>;
    /// End a session (sign-out).
    async fn end_session(&self, id_hash: &str) -> Result<()>;
    /// Store a sign-in in progress; forgets those older than `max_ms` on the way.
    async fn put_login(&self, id_hash: &str, data: &str, now_ms: i64, max_ms: i64) -> Result<()>;
    /// Take a sign-in in progress (it can be taken once): its data if younger than `max_ms`.
    async fn take_login(&self, id_hash: &str, now_ms: i64, max_ms: i64) -> Result<Option<String>>;
    /// Take one token from `key`'s bucket: `Ok(Ok(()))`, or `Ok(Err(seconds))` until one is
    /// there.
    async fn take_token(
        &self,
        key: &str,
        bucket: Bucket,
        now_ms: i64,
    ) -> Result<std::result::Result<(), u64>>;
    /// Forget buckets untouched since `before_ms` (full again by then).
    async fn forget_buckets(&self, before_ms: i64) -> Result<u64>;
    /// Take or renew the lease `name` for `holder` until `now_ms + ttl_ms`: `true` when it is
    /// free, expired, or already `holder`'s; `false` while another holds it.
    async fn take_lease(&self, name: &str, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<bool>;
    /// Give the lease up, if `holder` has it.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
    /// Use a one-time value (a SMART `launch`, by its hash) until `now_ms + ttl_ms`: `true`
    /// the first time, `false` while an earlier use has not expired. Forgets expired uses
    /// on the way.
    async fn use_once(&self, key_hash: &str, now_ms: i64, ttl_ms: i64) -> Result<bool>;
}

/// The take-or-renew upsert, with the backend's placeholders.
pub(crate) fn take_lease_sql(p: [&str; 4]) -> String {
    let [name, holder, now, until] = p;
    format!(
        "INSERT INTO lease (name, holder, expires_ms) VALUES ({name}, {holder}, {until}) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms \
         WHERE lease.holder = excluded.holder OR lease.expires_ms < {now} RETURNING holder"
    )
}

/// The take-a-token upsert; `{min}`/`{max}` are the backend's two-argument minimum/maximum.
pub(crate) fn take_token_sql(p: [&str; 4], min: &str, max: &str) -> String {
    let [key, burst, now, per_ms] = p;
    let refilled = format!(
        "{min}({burst}, rate_bucket.tokens + {max}(0, {now} - rate_bucket.at_ms) * {per_ms})"
    );
    format!(
        "INSERT INTO rate_bucket (key, tokens, at_ms) VALUES ({key}, {burst} - 1, {now}) \
         ON CONFLICT (key) DO UPDATE SET tokens = {refilled} - 1, at_ms = {max}(rate_bucket.at_ms, {now}) \
         WHERE {refilled} >= 1 RETURNING tokens"
    )
}

/// [`take_token_sql`]'s values, in the order of its placeholders; [`tokens_left_sql`] takes
/// the same.
pub(crate) fn token_values(key: &str, bucket: Bucket, now_ms: i64) -> Vec<Value<'_>> {
    vec![
        Value::Text(key),
        Value::Real(bucket.burst()),
        Value::Int(now_ms),
        Value::Real(bucket.per_ms()),
    ]
}

/// The tokens a bucket holds now, when none could be taken (placeholders and functions as
/// [`take_token_sql`]'s).
pub(crate) fn tokens_left_sql(p: [&str; 4], min: &str, max: &str) -> String {
    let [key, burst, now, per_ms] = p;
    format!("SELECT {min}({burst}, tokens + {max}(0, {now} - at_ms) * {per_ms}) FROM rate_bucket WHERE key = {key}")
}

/// [`take_lease_sql`]'s values, in the order of its placeholders.
pub(crate) fn lease_values<'a>(
    name: &'a str,
    holder: &'a str,
    now_ms: i64,
    ttl_ms: i64,
) -> Vec<Value<'a>> {
    vec![
        Value::Text(name),
        Value::Text(holder),
        Value::Int(now_ms),
        Value::Int(now_ms + ttl_ms),
    ]
}

/// Keep a session alive, unless it has been idle or open too long: what it holds, if kept.
/// `max` is the backend's two-argument maximum (`MAX` on SQLite, `GREATEST` on PostgreSQL).
pub(crate) fn touch_session_sql(max: &str) -> String {
    format!(
        "UPDATE web_session SET last_seen_ms = {max}(last_seen_ms, $2) \
         WHERE id_hash = $1 AND last_seen_ms >= $3 AND created_ms >= $4 RETURNING data"
    )
}

/// [`touch_session_sql`]'s values.
pub(crate) fn touch_values(
    id_hash: &str,
    now_ms: i64,
    idle_ms: i64,
    max_ms: i64,
) -> Vec<Value<'_>> {
    vec![
        Value::Text(id_hash),
        Value::Int(now_ms),
        Value::Int(now_ms - idle_ms),
        Value::Int(now_ms - max_ms),
    ]
}

pub(crate) fn end_session(id_hash: &str) -> Statement<'_> {
    Statement::new(
        "DELETE FROM web_session WHERE id_hash = $1",
        vec![Value::Text(id_hash)],
    )
}

/// A sign-in's state, gone once read: what it holds and when it was made.
pub(crate) fn take_login(id_hash: &str) -> Statement<'_> {
    Statement::new(
        "DELETE FROM web_login WHERE id_hash = $1 RETURNING data, created_ms",
        vec![Value::Text(id_hash)],
    )
}

pub(crate) fn forget_buckets(before_ms: i64) -> Statement<'static> {
    Statement::new(
        "DELETE FROM rate_bucket WHERE at_ms < $1",
        vec![Value::Int(before_ms)],
    )
}

pub(crate) fn release_lease<'a>(name: &'a str, holder: &'a str) -> Statement<'a> {
    Statement::new(
        "DELETE FROM lease WHERE name = $1 AND holder = $2",
        vec![Value::Text(name), Value::Text(holder)],
    )
}

/// Forget the launch keys past their expiry.
pub(crate) fn forget_launches(now_ms: i64) -> Statement<'static> {
    Statement::new(
        "DELETE FROM launch_used WHERE expires_ms < $1",
        vec![Value::Int(now_ms)],
    )
}

/// Use a launch key: one row written the first time, none while an earlier use stands.
pub(crate) fn use_launch(key_hash: &str, expires_ms: i64) -> Statement<'_> {
    Statement::new(
        "INSERT INTO launch_used (key_hash, expires_ms) VALUES ($1, $2) \
         ON CONFLICT (key_hash) DO NOTHING",
        vec![Value::Text(key_hash), Value::Int(expires_ms)],
    )
}
