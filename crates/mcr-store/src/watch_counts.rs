//! The watch's counters in the store (a restart forgets nothing, and every gateway on
//! PostgreSQL counts a user's views together): the distinct patients each user viewed within
//! the window, and when a flag was last written per user and rule.
//!
//! - SQLite holds one gateway: it counts in its memory and writes the views behind, in
//!   batches ([`WatchCountStore::record_watch_views`], and its flags' state with
//!   [`WatchCountStore::record_watch_flags`]: one transaction on a connection of its own with
//!   `synchronous = NORMAL`, taken while holding the write connection), and reads the window
//!   back when it starts ([`WatchCountStore::watch_views_since`], `watch_flags_since`). The batches reach
//!   the disk with the next durable commit to the same write-ahead log (an audit record).
//! - PostgreSQL counts every view in the store: one call of `watch_count_view` (migration
//!   0110), one round trip, the user's views counted one at a time across gateways (a lock on
//!   the user for the transaction), committed without waiting for the disk; the view's
//!   durable audit commit, later in the same write-ahead log, flushes it.
//!
//! [`WatchCountStore::count_watch_view`] also works on SQLite (the same statements, on the
//! watch connection).
//!
//! Times are Unix milliseconds from the caller's clock.

use crate::Result;
use async_trait::async_trait;

/// A user's distinct patients within the window, as counted for one view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchCount {
    /// Distinct patients in the window, this one included (also when refused).
    pub distinct: u64,
    /// This patient would have made more than the limit: not counted.
    pub refused: bool,
    /// When the oldest view still in the window was made.
    pub oldest_ms: Option<i64>,
}

#[async_trait]
pub trait WatchCountStore: Send + Sync {
    /// Count `patient` among the distinct patients `user_id` viewed after `since_ms` (the
    /// window's start), as seen at `at_ms`, unless that would make more than `limit` (then it
    /// is not counted: refused). Views of one user are counted one at a time.
    async fn count_watch_view(
        &self,
        user_id: &str,
        patient: &str,
        at_ms: i64,
        since_ms: i64,
        limit: u64,
    ) -> Result<WatchCount>;

    /// Whether to write the flag for `user_id`, `rule` and `patient` (`""` for rules about the
    /// user) at `at_ms`: `Some(held back since the last one written)` for the first after
    /// `since_ms`; `None` for later ones, which are counted and handed to the next one written.
    async fn claim_watch_flag(
        &self,
        user_id: &str,
        rule: &str,
        patient: &str,
        at_ms: i64,
        since_ms: i64,
    ) -> Result<Option<u64>>;

    /// Forget views seen at or before `before_ms`, and flags written then with none held back
    /// since. Returns the rows deleted.
    async fn forget_watch(&self, before_ms: i64) -> Result<u64>;

    /// Record views a gateway counted in its own memory (written behind the views, in
    /// batches): each user and patient keeps the later of its stored and given time.
    async fn record_watch_views(&self, views: &[WatchView]) -> Result<()>;

    /// The views seen after `since_ms`: what a gateway counting in memory starts from.
    async fn watch_views_since(&self, since_ms: i64) -> Result<Vec<WatchView>>;

    /// Record the flags' state as a gateway claiming them in memory holds it (written behind,
    /// in order): each flag's last written time and how many were held back since.
    async fn record_watch_flags(&self, flags: &[WatchFlag]) -> Result<()>;

    /// The flags written after `since_ms` or with some held back since: what a gateway
    /// claiming flags in memory starts from.
    async fn watch_flags_since(&self, since_ms: i64) -> Result<Vec<WatchFlag>>;
}

/// One flag's state: when it was last written for a user and rule (and patient, `""` for
/// rules about the user), and how many like it were held back since.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WatchFlag {
    pub user_id: String,
    pub rule: String,
    pub patient: String,
    pub last_ms: i64,
    pub held: i64,
}

/// The written-behind flag upsert: this, then `VALUES (user, rule, patient, last, held, 0)`
/// (one row or several), then [`FLAG_UPSERT_TAIL`].
pub(crate) const FLAG_UPSERT_HEAD: &str =
    "INSERT INTO watch_flag (user_id, rule, patient, last_ms, held, held_before) ";
pub(crate) const FLAG_UPSERT_TAIL: &str = " ON CONFLICT (user_id, rule, patient) DO UPDATE SET \
     last_ms = excluded.last_ms, held = excluded.held";

/// The upsert of one written-behind flag state, with the backend's placeholders.
pub(crate) fn record_flag_sql(p: [&str; 5]) -> String {
    let [user, rule, patient, last, held] = p;
    format!(
        "{FLAG_UPSERT_HEAD}VALUES ({user}, {rule}, {patient}, {last}, {held}, 0){FLAG_UPSERT_TAIL}"
    )
}

pub(crate) const FLAGS_SINCE: &str =
    "SELECT user_id, rule, patient, last_ms, held FROM watch_flag WHERE held > 0 OR last_ms > ";

/// One user's latest view of one patient.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WatchView {
    pub user_id: String,
    pub patient: String,
    pub seen_ms: i64,
}

/// The written-behind view upsert: this, then `VALUES (user, patient, seen)` (one row or
/// several), then [`view_upsert_tail`].
pub(crate) const VIEW_UPSERT_HEAD: &str = "INSERT INTO watch_view (user_id, patient, seen_ms) ";

/// The end of the view upsert, with the backend's `max` of two values.
pub(crate) fn view_upsert_tail(max: &str) -> String {
    format!(
        " ON CONFLICT (user_id, patient) DO UPDATE SET \
         seen_ms = {max}(watch_view.seen_ms, excluded.seen_ms)"
    )
}

/// The upsert of one written-behind view, with the backend's placeholders and `max`.
pub(crate) fn record_view_sql(max: &str, p: [&str; 3]) -> String {
    let [user, patient, at] = p;
    format!(
        "{VIEW_UPSERT_HEAD}VALUES ({user}, {patient}, {at}){}",
        view_upsert_tail(max)
    )
}

pub(crate) const VIEWS_SINCE: &str =
    "SELECT user_id, patient, seen_ms FROM watch_view WHERE seen_ms > ";

/// The flag upsert, with the backend's placeholders: `held` 0 after it means it is written.
pub(crate) fn claim_flag_sql(p: [&str; 5]) -> String {
    let [user, rule, patient, at, since] = p;
    format!(
        "INSERT INTO watch_flag (user_id, rule, patient, last_ms, held, held_before) \
         VALUES ({user}, {rule}, {patient}, {at}, 0, 0) \
         ON CONFLICT (user_id, rule, patient) DO UPDATE SET \
         held_before = CASE WHEN watch_flag.last_ms > {since} THEN watch_flag.held_before ELSE watch_flag.held END, \
         held = CASE WHEN watch_flag.last_ms > {since} THEN watch_flag.held + 1 ELSE 0 END, \
         last_ms = CASE WHEN watch_flag.last_ms > {since} THEN watch_flag.last_ms ELSE {at} END \
         RETURNING held, held_before"
    )
}

pub(crate) fn claimed((held, before): (i64, i64)) -> Option<u64> {
    (held == 0).then(|| u64::try_from(before).unwrap_or(0))
}
