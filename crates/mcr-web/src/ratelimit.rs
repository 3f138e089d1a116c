//! Token buckets per key (`signin:ip:…`, `search:user:…`), answered with 429 and
//! `Retry-After` when empty. Kept in the store, shared by every gateway; buckets idle long
//! enough to be full again are forgotten.

use mcr_domain::Clock;
use mcr_store::Store;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A bucket's size and how fast it fills.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub burst: u32,
    pub per_minute: u32,
}

/// The limits the web layer applies. A limit is keyed on the user wherever one is known, so
/// staff behind one hospital address (NAT, proxy) do not share a bucket; only what nobody
/// has signed in for yet (starting a sign-in, a return from the provider with no sign-in in
/// progress) is keyed on the client address ([`crate::auth::client_address`]).
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    /// Starting a sign-in, or coming back from the provider without a sign-in in progress,
    /// per address (anonymous: nobody is known yet). Generous: a whole ward may start at once.
    pub signin_per_address: Rate,
    /// Completed sign-ins, per user.
    pub signin_per_user: Rate,
    /// Patient searches, per signed-in user.
    pub search_per_user: Rate,
    /// Public opt-out requests, per client address.
    pub opt_out_per_address: Rate,
    /// Public opt-out requests, per person asked about (normalised name and date of birth).
    pub opt_out_per_person: Rate,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            signin_per_address: Rate {
                burst: 60,
                per_minute: 120,
            },
            signin_per_user: Rate {
                burst: 10,
                per_minute: 10,
            },
            search_per_user: Rate {
                burst: 30,
                per_minute: 60,
            },
            opt_out_per_address: Rate {
                burst: 10,
                per_minute: 2,
            },
            opt_out_per_person: Rate {
                burst: 2,
                per_minute: 1,
            },
        }
    }
}

/// Token buckets in the store ([`mcr_store::SharedStateStore::take_token`]), so every
/// gateway of a region draws on the same ones. Keys are stored as SHA-256 hashes (they hold
/// user ids and client addresses). A store that cannot be reached lets the request through
/// (said in the log): whatever the request needs from the store then fails on its own.
pub struct RateLimiter {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    checks: AtomicU64,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").finish_non_exhaustive()
    }
}

/// Every this many checks, buckets untouched for an hour (full again) are forgotten.
const SWEEP_EVERY: u64 = 1_000;

impl RateLimiter {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            checks: AtomicU64::new(0),
        }
    }

    /// Take one token from `key`'s bucket; `Err(seconds)` says how long until one is there.
    pub async fn check(&self, key: &str, rate: Rate) -> Result<(), u64> {
        let now = self.clock.now().timestamp_millis();
        let bucket = mcr_store::Bucket {
            burst: rate.burst,
            per_minute: rate.per_minute,
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            if let Err(e) = self.store.forget_buckets(now - 3_600_000).await {
                tracing::warn!(error = %e, "old rate-limit buckets could not be forgotten");
            }
        }
        match self
            .store
            .take_token(&crate::sessions::id_hash(key), bucket, now)
            .await
        {
            Ok(taken) => taken,
            Err(e) => {
                tracing::warn!(error = %e, "rate limits cannot be read: the request is let through");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bucket_empties_and_is_shared_by_every_limiter_on_the_store() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("r.db").display());
        let store = mcr_store::connect_and_migrate(&url).await.expect("store");
        let clock: Arc<dyn Clock> = Arc::new(mcr_domain::SystemClock);
        let (one, two) = (
            RateLimiter::new(store.clone(), clock.clone()),
            RateLimiter::new(store, clock),
        );
        let rate = Rate {
            burst: 3,
            per_minute: 6,
        };
        assert_eq!(one.check("k", rate).await, Ok(()));
        assert_eq!(two.check("k", rate).await, Ok(()));
        assert_eq!(one.check("k", rate).await, Ok(()));
        assert_eq!(two.check("k", rate).await, Err(10));
        assert_eq!(two.check("other", rate).await, Ok(()), "keys are separate");
    }
}
