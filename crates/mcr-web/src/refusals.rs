//! Refusals made here, before the gateway (a form without its CSRF token, an NHS number that
//! fails its check, a request too large, a rate limit), counted per kind and source and
//! audited through the gateway in aggregate: one record per kind, per user (or per address
//! when nobody is known), per flush interval, saying how many. A flood is one line in the
//! trail, not one per packet, and not silence.
//!
//! Handlers mark a refusal with a [`Refused`] response extension (an `ApiError` with a known
//! detail code is marked for them); 413, 414, 429 and 431 are recognised by status. The
//! [`count`] middleware, outermost, gives each request a [`Who`] slot that the extractors fill
//! with the user once known, and counts what comes back.

use crate::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use mcr_gateway::RefusalKind;
use mcr_gateway::{Gateway, RefusalCount};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A response extension: this response refused the request for `.0`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refused(pub RefusalKind);

/// A request extension: who the request turned out to be from, once an extractor knows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Who(Arc<Mutex<Option<String>>>);

impl Who {
    pub(crate) fn set(parts: &axum::http::request::Parts, user_id: &str) {
        if let Some(who) = parts.extensions.get::<Who>() {
            if let Ok(mut slot) = who.0.lock() {
                *slot = Some(user_id.to_owned());
            }
        }
    }

    fn get(&self) -> Option<String> {
        self.0.lock().ok().and_then(|s| s.clone())
    }
}

#[derive(Debug, Clone, Copy)]
struct Tally {
    count: u64,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
}

/// Distinct (kind, source) pairs held between flushes; beyond it, a source is counted as
/// `others` (still counted, never dropped).
const MAX_KEYS: usize = 10_000;

/// The counts since the last flush.
#[derive(Debug, Default)]
pub struct RefusalTally {
    counts: Mutex<HashMap<(RefusalKind, Source), Tally>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Source {
    User(String),
    Address(String),
    Others,
}

impl RefusalTally {
    fn add(&self, kind: RefusalKind, source: Source, at: DateTime<Utc>) {
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        let key = if counts.len() >= MAX_KEYS && !counts.contains_key(&(kind, source.clone())) {
            (kind, Source::Others)
        } else {
            (kind, source)
        };
        let t = counts.entry(key).or_insert(Tally {
            count: 0,
            first: at,
            last: at,
        });
        t.count += 1;
        t.last = at;
    }

    /// Audit every count since the last flush, one record each; counts that cannot be written
    /// are kept for the next flush. Returns how many records were written.
    pub async fn flush(&self, gateway: &Gateway) -> usize {
        let drained: Vec<_> = match self.counts.lock() {
            Ok(mut counts) => counts.drain().collect(),
            Err(_) => return 0,
        };
        let mut written = 0;
        for ((kind, source), t) in drained {
            let (user_id, address) = match &source {
                Source::User(u) => (Some(u.clone()), None),
                Source::Address(a) => (None, Some(a.clone())),
                Source::Others => (None, Some("others (too many sources to list)".to_owned())),
            };
            let r = RefusalCount {
                kind,
                user_id,
                address,
                count: t.count,
                first: t.first,
                last: t.last,
            };
            match gateway.record_refusals(&r).await {
                Ok(_) => written += 1,
                Err(e) => {
                    tracing::error!(error = %e, kind = kind.as_str(), count = t.count, "refusals not audited yet; kept");
                    if let Ok(mut counts) = self.counts.lock() {
                        let kept = counts.entry((kind, source)).or_insert(Tally {
                            count: 0,
                            first: t.first,
                            last: t.last,
                        });
                        kept.count += t.count;
                        kept.first = kept.first.min(t.first);
                        kept.last = kept.last.max(t.last);
                    }
                }
            }
        }
        written
    }

    /// Flush every `interval` until the task is aborted.
    pub fn spawn_flush(
        self: &Arc<Self>,
        gateway: Gateway,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let tally = self.clone();
        let interval = interval.max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                tally.flush(&gateway).await;
            }
        })
    }
}

/// The kind of a refusal response, if it is one.
fn kind_of(resp: &Response) -> Option<RefusalKind> {
    if let Some(Refused(kind)) = resp.extensions().get::<Refused>() {
        return Some(*kind);
    }
    match resp.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Some(RefusalKind::TooLarge),
        StatusCode::URI_TOO_LONG => Some(RefusalKind::UriTooLong),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Some(RefusalKind::HeadersTooLarge),
        StatusCode::TOO_MANY_REQUESTS => Some(RefusalKind::RateLimited),
        _ => None,
    }
}

/// The middleware: a [`Who`] slot in, a count out when the response is a refusal.
pub(crate) async fn count(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let who = Who::default();
    req.extensions_mut().insert(who.clone());
    let peer = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .copied();
    let forwarded = (state.trusted_proxy_hops > 0).then(|| {
        req.headers()
            .get_all("x-forwarded-for")
            .iter()
            .cloned()
            .collect::<Vec<_>>()
    });
    let resp = next.run(req).await;
    if let Some(kind) = kind_of(&resp) {
        let source = match who.get() {
            Some(user) => Source::User(user),
            None => {
                let (mut parts, ()) = axum::http::Request::new(()).into_parts();
                if let Some(p) = peer {
                    parts.extensions.insert(p);
                }
                for v in forwarded.into_iter().flatten() {
                    parts.headers.append("x-forwarded-for", v);
                }
                Source::Address(crate::auth::client_address(
                    &parts,
                    state.trusted_proxy_hops,
                ))
            }
        };
        state
            .refusals
            .add(kind, source, state.gateway.clock().now());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_aggregate_per_kind_and_source_and_overflow_is_still_counted() {
        let t = RefusalTally::default();
        let now = chrono::DateTime::<Utc>::from_timestamp(1_764_806_400, 0).expect("a time");
        for _ in 0..50 {
            t.add(
                RefusalKind::InvalidNhsNumber,
                Source::User("ae".into()),
                now,
            );
        }
        t.add(RefusalKind::Csrf, Source::Address("10.0.0.1".into()), now);
        let counts = t.counts.lock().expect("lock");
        assert_eq!(counts.len(), 2);
        assert_eq!(
            counts[&(RefusalKind::InvalidNhsNumber, Source::User("ae".into()))].count,
            50
        );
        drop(counts);
        for i in 0..MAX_KEYS + 5 {
            t.add(
                RefusalKind::RateLimited,
                Source::Address(format!("a{i}")),
                now,
            );
        }
        let counts = t.counts.lock().expect("lock");
        let total: u64 = counts
            .iter()
            .filter(|((k, _), _)| *k == RefusalKind::RateLimited)
            .map(|(_, v)| v.count)
            .sum();
        assert_eq!(total, (MAX_KEYS + 5) as u64, "nothing dropped");
        assert!(counts.len() <= MAX_KEYS + 1);
    }
}
