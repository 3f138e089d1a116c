//! The watch's counters: distinct patients per user in a moving window, and which flags were
//! written when (so one user and rule is flagged once per window). Behind [`WatchCounters`]:
//!
//! - [`StoreCounters`], on PostgreSQL: every view counted in the store, so all the gateways of
//!   a region count a user's views together.
//! - [`WriteBehindCounters`], on SQLite (one gateway per store by construction): views counted
//!   and flags claimed in memory and written to the store behind them, in batches, so the view
//!   does not wait for SQLite's one write connection (which its own audit record needs);
//!   started from the store's counts, so a restart forgets only the last second's unwritten
//!   batch.
//! - [`MemoryCounters`] alone, for tests and benchmarks of the rules.
//!
//! [`counters_for`] picks by the store.

use super::WatchRule;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, OnceCell};

/// Why the counters could not be read or written (the view then fails closed).
pub type CounterResult<T> = Result<T, mcr_store::StoreError>;

/// A user's distinct patients within the window, as counted for one view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ViewCount {
    /// Distinct patients in the window, this one included (also when refused).
    pub distinct: usize,
    /// This patient would have made more than the hard limit: not counted, refused.
    pub refused: bool,
    /// When the oldest view still in the window was made.
    pub oldest: Option<DateTime<Utc>>,
}

/// One flag's identity: a user and a rule, and the patient for rules about one patient.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlagKey {
    pub user_id: String,
    pub rule: WatchRule,
    pub patient: Option<String>,
}

/// Whether to write a flag now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagClaim {
    /// Write it; `suppressed_before` like it were held back since the last one written.
    Write { suppressed_before: u64 },
    /// One was written within the window: this one is only counted.
    Suppress,
}

#[async_trait]
pub trait WatchCounters: Send + Sync + std::fmt::Debug {
    /// Count `patient` among the distinct patients `user_id` viewed within `window` up to
    /// `at`, unless that would make more than `limit` (then it is not counted: refused).
    async fn count_view(
        &self,
        user_id: &str,
        patient: &str,
        at: DateTime<Utc>,
        window: Duration,
        limit: usize,
    ) -> CounterResult<ViewCount>;

    /// Whether to write the flag `key` at `at`: the first within `window` is written, later
    /// ones are counted and their number handed to the next one written.
    async fn claim_flag(
        &self,
        key: &FlagKey,
        at: DateTime<Utc>,
        window: Duration,
    ) -> CounterResult<FlagClaim>;
}

/// Counters in this gateway's memory. Each user's map holds at most the hard limit of
/// patients; users and flags idle for a window are swept every [`SWEEP_EVERY`] calls.
#[derive(Debug, Default)]
pub struct MemoryCounters {
    users: Mutex<HashMap<String, HashMap<String, DateTime<Utc>>>>,
    flags: Mutex<HashMap<FlagKey, (DateTime<Utc>, u64)>>,
    calls: AtomicU64,
}

/// How often idle users and flags are dropped from memory.
pub const SWEEP_EVERY: u64 = 4_096;

impl MemoryCounters {
    fn sweep(&self, at: DateTime<Utc>, window: Duration) {
        if self.calls.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY != SWEEP_EVERY - 1 {
            return;
        }
        if let Ok(mut users) = self.users.lock() {
            users.retain(|_, seen| seen.values().any(|t| at - *t < window));
        }
        if let Ok(mut flags) = self.flags.lock() {
            flags.retain(|_, (t, held)| *held > 0 || at - *t < window);
        }
    }

    /// Users currently held in memory (for tests and the benchmark).
    pub fn users_held(&self) -> usize {
        self.users.lock().map_or(0, |u| u.len())
    }
}

#[async_trait]
impl WatchCounters for MemoryCounters {
    async fn count_view(
        &self,
        user_id: &str,
        patient: &str,
        at: DateTime<Utc>,
        window: Duration,
        limit: usize,
    ) -> CounterResult<ViewCount> {
        self.sweep(at, window);
        let mut users = self
            .users
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let seen = match users.get_mut(user_id) {
            Some(s) => s,
            None => users.entry(user_id.to_owned()).or_default(),
        };
        seen.retain(|_, t| at - *t < window);
        let oldest = seen.values().min().copied();
        if let Some(t) = seen.get_mut(patient) {
            *t = at;
            return Ok(ViewCount {
                distinct: seen.len(),
                refused: false,
                oldest,
            });
        }
        if seen.len() >= limit {
            return Ok(ViewCount {
                distinct: seen.len() + 1,
                refused: true,
                oldest,
            });
        }
        seen.insert(patient.to_owned(), at);
        Ok(ViewCount {
            distinct: seen.len(),
            refused: false,
            oldest: oldest.or(Some(at)),
        })
    }

    async fn claim_flag(
        &self,
        key: &FlagKey,
        at: DateTime<Utc>,
        window: Duration,
    ) -> CounterResult<FlagClaim> {
        let mut flags = self
            .flags
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(match flags.get_mut(key) {
            Some((last, held)) if at - *last < window => {
                *held += 1;
                FlagClaim::Suppress
            }
            Some((last, held)) => {
                let before = *held;
                *last = at;
                *held = 0;
                FlagClaim::Write {
                    suppressed_before: before,
                }
            }
            None => {
                flags.insert(key.clone(), (at, 0));
                FlagClaim::Write {
                    suppressed_before: 0,
                }
            }
        })
    }
}

/// Counters in the store ([`mcr_store::WatchCountStore`]): every gateway on the same store
/// counts a user's views together, and a restart forgets nothing. One short store call per
/// view (see the store's `watch_counts` for what it costs), one more per finding; views and
/// flags older than the window are forgotten every [`SWEEP_EVERY`] views, in the background.
#[derive(Debug)]
pub struct StoreCounters {
    store: Arc<dyn mcr_store::Store>,
    calls: AtomicU64,
}

impl StoreCounters {
    pub fn new(store: Arc<dyn mcr_store::Store>) -> Self {
        Self {
            store,
            calls: AtomicU64::new(0),
        }
    }

    fn sweep(&self, at: DateTime<Utc>, window: Duration) {
        forget_now_and_then(&self.store, &self.calls, at, window);
    }
}

#[async_trait]
impl WatchCounters for StoreCounters {
    async fn count_view(
        &self,
        user_id: &str,
        patient: &str,
        at: DateTime<Utc>,
        window: Duration,
        limit: usize,
    ) -> CounterResult<ViewCount> {
        self.sweep(at, window);
        let at_ms = at.timestamp_millis();
        let counted = self
            .store
            .count_watch_view(
                user_id,
                patient,
                at_ms,
                at_ms - window.num_milliseconds(),
                u64::try_from(limit).unwrap_or(u64::MAX),
            )
            .await?;
        Ok(ViewCount {
            distinct: usize::try_from(counted.distinct).unwrap_or(usize::MAX),
            refused: counted.refused,
            oldest: counted
                .oldest_ms
                .and_then(DateTime::<Utc>::from_timestamp_millis),
        })
    }

    async fn claim_flag(
        &self,
        key: &FlagKey,
        at: DateTime<Utc>,
        window: Duration,
    ) -> CounterResult<FlagClaim> {
        let at_ms = at.timestamp_millis();
        let claimed = self
            .store
            .claim_watch_flag(
                &key.user_id,
                key.rule.code(),
                key.patient.as_deref().unwrap_or(""),
                at_ms,
                at_ms - window.num_milliseconds(),
            )
            .await?;
        Ok(match claimed {
            Some(suppressed_before) => FlagClaim::Write { suppressed_before },
            None => FlagClaim::Suppress,
        })
    }
}

/// The counters a gateway runs with on `store`: written behind on SQLite, counted in the store
/// on PostgreSQL (shared by several gateways).
pub fn counters_for(store: Arc<dyn mcr_store::Store>) -> Arc<dyn WatchCounters> {
    if store.backend() == "sqlite" {
        Arc::new(WriteBehindCounters::new(store))
    } else {
        Arc::new(StoreCounters::new(store))
    }
}

/// Changes taken from the queue at a time (the writer takes them all before writing).
const BATCH: usize = 512;

/// How long the writer rests after a write, so changes gather into one batch instead of one
/// write per view (each write takes SQLite's one write connection, which the audit needs).
/// At most this much is lost to a crash; the audit trail holds every view regardless.
pub const WRITE_BEHIND_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// What the writer writes behind: a counted view, or a flag's state after a claim.
#[derive(Debug)]
enum Behind {
    View(mcr_store::WatchView),
    Flag(mcr_store::WatchFlag),
}

/// Counters in this gateway's memory, written to the store behind the views (see the module
/// notes): views, and the flags' state after each claim. The first call loads the window's
/// views and flags from the store, and fails closed if it cannot (the next one tries again).
/// A batch the store refuses is logged and counted in [`WriteBehindCounters::lost`]; the
/// counts in memory, which the watch decides on, are whole.
#[derive(Debug)]
pub struct WriteBehindCounters {
    store: Arc<dyn mcr_store::Store>,
    memory: MemoryCounters,
    started: OnceCell<mpsc::UnboundedSender<Behind>>,
    lost: Arc<AtomicU64>,
    forgets: AtomicU64,
}

impl WriteBehindCounters {
    pub fn new(store: Arc<dyn mcr_store::Store>) -> Self {
        Self {
            store,
            memory: MemoryCounters::default(),
            started: OnceCell::new(),
            lost: Arc::new(AtomicU64::new(0)),
            forgets: AtomicU64::new(0),
        }
    }

    /// Changes the store refused to take (each batch logged when it happened).
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// The window's views and flags loaded into memory and the writer started, once.
    async fn start(
        &self,
        at: DateTime<Utc>,
        window: Duration,
    ) -> CounterResult<&mpsc::UnboundedSender<Behind>> {
        self.started
            .get_or_try_init(|| async {
                let since = (at - window).timestamp_millis();
                let views = self.store.watch_views_since(since).await?;
                let flags = self.store.watch_flags_since(since).await?;
                let time = DateTime::<Utc>::from_timestamp_millis;
                {
                    let mut users = lock(&self.memory.users);
                    for v in views {
                        if let Some(seen) = time(v.seen_ms) {
                            users.entry(v.user_id).or_default().insert(v.patient, seen);
                        }
                    }
                }
                {
                    let mut held = lock(&self.memory.flags);
                    for f in flags {
                        let (Some(rule), Some(last)) = (WatchRule::parse(&f.rule), time(f.last_ms))
                        else {
                            tracing::warn!(rule = %f.rule, "a stored watch flag of an unknown rule was not loaded");
                            continue;
                        };
                        let key = FlagKey {
                            user_id: f.user_id,
                            rule,
                            patient: (!f.patient.is_empty()).then_some(f.patient),
                        };
                        held.insert(key, (last, u64::try_from(f.held).unwrap_or(0)));
                    }
                }
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(write_behind(self.store.clone(), rx, self.lost.clone()));
                Ok(tx)
            })
            .await
    }

    /// Hand `change` to the writer; if it has ended, the change is counted as lost.
    fn send(&self, writer: &mpsc::UnboundedSender<Behind>, change: Behind) {
        if writer.send(change).is_err() {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Forget old counts in the store now and then, in the background (memory sweeps itself).
    fn forget(&self, at: DateTime<Utc>, window: Duration) {
        forget_now_and_then(&self.store, &self.forgets, at, window);
    }
}

/// Every [`SWEEP_EVERY`] calls (counted in `calls`), forget the store's views and flags older
/// than `window` before `at`, in the background.
fn forget_now_and_then(
    store: &Arc<dyn mcr_store::Store>,
    calls: &AtomicU64,
    at: DateTime<Utc>,
    window: Duration,
) {
    if calls.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY != SWEEP_EVERY - 1 {
        return;
    }
    let store = store.clone();
    let before = (at - window).timestamp_millis();
    tokio::spawn(async move {
        if let Err(e) = store.forget_watch(before).await {
            tracing::warn!(error = %e, "the watch's old counts could not be forgotten");
        }
    });
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The writer: takes everything waiting, folds it to one row per user and patient (the later
/// time) and one per flag (its last state), writes views and flags in a store call each, then
/// rests [`WRITE_BEHIND_EVERY`]; ends when the counters are dropped, after writing what was
/// left. Taking everything, not a fixed number, keeps it from falling behind under any load.
async fn write_behind(
    store: Arc<dyn mcr_store::Store>,
    mut rx: mpsc::UnboundedReceiver<Behind>,
    lost: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while take_all(&mut rx, &mut batch).await {
        let (views, flags) = fold(batch.drain(..));
        for (what, n, written) in [
            ("views", views.len(), store.record_watch_views(&views).await),
            ("flags", flags.len(), store.record_watch_flags(&flags).await),
        ] {
            if let Err(e) = written {
                let n = u64::try_from(n).unwrap_or(u64::MAX);
                lost.fetch_add(n, Ordering::Relaxed);
                tracing::error!(error = %e, what, n, "the watch's counts could not be written to the store; kept in memory only");
            }
        }
        tokio::time::sleep(WRITE_BEHIND_EVERY).await;
    }
}

/// Wait for a change, then take every change waiting; `false` once the counters are dropped
/// and nothing is left.
async fn take_all(rx: &mut mpsc::UnboundedReceiver<Behind>, batch: &mut Vec<Behind>) -> bool {
    if rx.recv_many(batch, BATCH).await == 0 {
        return false;
    }
    while let Ok(more) = rx.try_recv() {
        batch.push(more);
    }
    true
}

/// What a batch comes to: each user and patient's latest view, and each flag's last state
/// (the changes arrive in the order they were made, so the last one is the state).
fn fold(
    batch: impl Iterator<Item = Behind>,
) -> (Vec<mcr_store::WatchView>, Vec<mcr_store::WatchFlag>) {
    let mut views: HashMap<(String, String), i64> = HashMap::new();
    let mut flags: Vec<mcr_store::WatchFlag> = Vec::new();
    let mut flag_at: HashMap<(String, String, String), usize> = HashMap::new();
    for b in batch {
        match b {
            Behind::View(v) => {
                let seen = views.entry((v.user_id, v.patient)).or_insert(v.seen_ms);
                *seen = (*seen).max(v.seen_ms);
            }
            Behind::Flag(f) => {
                let key = (f.user_id.clone(), f.rule.clone(), f.patient.clone());
                match flag_at.get(&key) {
                    Some(&i) => flags[i] = f,
                    None => {
                        flag_at.insert(key, flags.len());
                        flags.push(f);
                    }
                }
            }
        }
    }
    let views = views
        .into_iter()
        .map(|((user_id, patient), seen_ms)| mcr_store::WatchView {
            user_id,
            patient,
            seen_ms,
        })
        .collect();
    (views, flags)
}

#[async_trait]
impl WatchCounters for WriteBehindCounters {
    async fn count_view(
        &self,
        user_id: &str,
        patient: &str,
        at: DateTime<Utc>,
        window: Duration,
        limit: usize,
    ) -> CounterResult<ViewCount> {
        let writer = self.start(at, window).await?;
        self.forget(at, window);
        let counted = self
            .memory
            .count_view(user_id, patient, at, window, limit)
            .await?;
        if !counted.refused {
            // Fails only once the writer has ended (the runtime is going down): counted.
            self.send(
                writer,
                Behind::View(mcr_store::WatchView {
                    user_id: user_id.to_owned(),
                    patient: patient.to_owned(),
                    seen_ms: at.timestamp_millis(),
                }),
            );
        }
        Ok(counted)
    }

    async fn claim_flag(
        &self,
        key: &FlagKey,
        at: DateTime<Utc>,
        window: Duration,
    ) -> CounterResult<FlagClaim> {
        let writer = self.start(at, window).await?;
        let claim = self.memory.claim_flag(key, at, window).await?;
        let state = lock(&self.memory.flags).get(key).copied();
        if let Some((last, held)) = state {
            self.send(
                writer,
                Behind::Flag(mcr_store::WatchFlag {
                    user_id: key.user_id.clone(),
                    rule: key.rule.code().to_owned(),
                    patient: key.patient.clone().unwrap_or_default(),
                    last_ms: last.timestamp_millis(),
                    held: i64::try_from(held).unwrap_or(i64::MAX),
                }),
            );
        }
        Ok(claim)
    }
}
#[cfg(test)]
mod tests;
