//! The watch's counters: distinct patients per user in a moving window, and which flags were
//! written when (so one user and rule is flagged once per window). Behind [`WatchCounters`]:
//! in the store ([`StoreCounters`], what the gateway runs with: shared by every gateway of a
//! region, kept across restarts), or in one process's memory ([`MemoryCounters`], for tests
//! and benchmarks of the rules alone).

use crate::watch::WatchRule;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
        if self.calls.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY != SWEEP_EVERY - 1 {
            return;
        }
        let store = self.store.clone();
        let before = (at - window).timestamp_millis();
        tokio::spawn(async move {
            if let Err(e) = store.forget_watch(before).await {
                tracing::warn!(error = %e, "the watch's old counts could not be forgotten");
            }
        });
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 3, 10, 0, 0)
            .single()
            .expect("time")
            + Duration::minutes(min)
    }

    #[tokio::test]
    async fn distinct_patients_in_a_moving_window() {
        let c = MemoryCounters::default();
        let w = Duration::minutes(60);
        // (minute, patient, distinct, refused)
        let cases = [
            (0, "a", 1, false),
            (1, "b", 2, false),
            (2, "a", 2, false),
            (3, "c", 3, false),
            (4, "d", 4, true),
            // a was seen again at 2, so at 61 only b has left the window.
            (61, "d", 3, false),
            (62, "e", 3, false),
            (62, "f", 4, true),
            (200, "e", 1, false),
        ];
        for (min, p, distinct, refused) in cases {
            let got = c.count_view("u", p, t(min), w, 3).await.expect("memory");
            assert_eq!(
                (got.distinct, got.refused),
                (distinct, refused),
                "minute {min}, patient {p}"
            );
        }
        let first = c.count_view("v", "x", t(0), w, 3).await.expect("memory");
        assert_eq!(first.oldest, Some(t(0)));
    }

    #[tokio::test]
    async fn idle_users_are_swept() {
        let c = MemoryCounters::default();
        let w = Duration::minutes(60);
        for i in 0..SWEEP_EVERY {
            c.count_view(&format!("u{i}"), "p", t(0), w, 10)
                .await
                .expect("memory");
        }
        assert_eq!(c.users_held(), usize::try_from(SWEEP_EVERY).expect("fits"));
        for _ in 0..SWEEP_EVERY {
            c.count_view("late", "p", t(120), w, 10)
                .await
                .expect("memory");
        }
        assert_eq!(c.users_held(), 1, "only the active user is kept");
    }
}
