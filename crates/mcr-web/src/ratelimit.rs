//! Token buckets per key (`signin:ip:…`, `search:user:…`), answered with 429 and
//! `Retry-After` when empty. In memory, per gateway; buckets idle long enough to be full again
//! are forgotten.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

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

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

const MAX_BUCKETS: usize = 100_000;

impl RateLimiter {
    /// Take one token from `key`'s bucket; `Err(seconds)` says how long until one is there.
    pub fn check(&self, key: &str, rate: Rate) -> Result<(), u64> {
        self.check_at(key, rate, Instant::now())
    }

    fn check_at(&self, key: &str, rate: Rate, now: Instant) -> Result<(), u64> {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        let per_sec = f64::from(rate.per_minute.max(1)) / 60.0;
        let burst = f64::from(rate.burst.max(1));
        if buckets.len() >= MAX_BUCKETS {
            buckets
                .retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec < burst);
        }
        let b = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - b.tokens) / per_sec).ceil();
            // At most an hour: the float is small and positive here.
            Err(if wait.is_finite() && wait > 0.0 && wait < 3600.0 {
                wait as u64
            } else {
                60
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_empties_then_refills() {
        let l = RateLimiter::default();
        let rate = Rate {
            burst: 3,
            per_minute: 60,
        };
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check_at("k", rate, t0), Ok(()));
        }
        assert_eq!(l.check_at("k", rate, t0), Err(1));
        assert_eq!(l.check_at("other", rate, t0), Ok(()), "keys are separate");
        assert_eq!(
            l.check_at("k", rate, t0 + Duration::from_millis(1100)),
            Ok(())
        );
    }
}
