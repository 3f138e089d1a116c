//! Time arithmetic that cannot panic on hostile timestamps.

use chrono::{DateTime, Duration, Utc};

/// `t + d`, saturating at the latest representable instant.
pub(crate) fn after(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_add_signed(d).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

pub(crate) fn hours(h: u32) -> Duration {
    Duration::hours(i64::from(h))
}

pub(crate) fn minutes(m: u32) -> Duration {
    Duration::minutes(i64::from(m))
}

/// The earlier of two optional ends, where `None` is "never".
pub(crate) fn earliest(
    a: Option<DateTime<Utc>>,
    b: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
