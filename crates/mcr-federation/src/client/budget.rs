//! [`Budget`]: one call to a source, shared by its concurrent searches: the bytes it may still
//! send, its deadline, the identity token sent with each request, and why it stopped short.

use mcr_domain::FailureReason;

use super::{Ask, Fetched};

/// One call to a source, shared by its concurrent searches: the bytes it may still send in
/// this view, and the signed identity sent with each request.
#[derive(Debug)]
pub(super) struct Budget {
    left: std::sync::atomic::AtomicI64,
    limit: u64,
    pub(super) identity: Option<String>,
    /// When to stop asking (`None`: a feed, bounded by its own timeout).
    until: Option<tokio::time::Instant>,
    deadline: FailureReason,
    /// Why the searches stopped short, once one has.
    cut: std::sync::Mutex<Option<FailureReason>>,
}

impl Budget {
    pub(super) fn new(limit: u64, identity: Option<String>) -> Self {
        Self {
            left: std::sync::atomic::AtomicI64::new(i64::try_from(limit).unwrap_or(i64::MAX)),
            limit,
            identity,
            until: None,
            deadline: FailureReason::Timeout { after_ms: 0 },
            cut: std::sync::Mutex::new(None),
        }
    }

    /// A view's budget: the byte cap, and `ask`'s deadline.
    pub(super) fn for_view(limit: u64, identity: Option<String>, ask: &Ask) -> Self {
        Self {
            until: Some(ask.until),
            deadline: ask.timeout(),
            ..Self::new(limit, identity)
        }
    }

    /// A page's answer within the deadline. A page the deadline or the size cap stopped is
    /// `Ok(None)`: the search stops there and the view keeps what arrived, cut short.
    pub(super) async fn page<T>(
        &self,
        answer: impl std::future::Future<Output = Result<T, FailureReason>>,
    ) -> Result<Option<T>, FailureReason> {
        let answered = match self.until {
            Some(until) => match tokio::time::timeout_at(until, answer).await {
                Ok(answered) => answered,
                Err(_) => Err(self.deadline.clone()),
            },
            None => answer.await,
        };
        match answered {
            Ok(page) => Ok(Some(page)),
            Err(reason @ (FailureReason::Timeout { .. } | FailureReason::TooLarge { .. }))
                if self.until.is_some() =>
            {
                let mut cut = self
                    .cut
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                cut.get_or_insert(reason);
                Ok(None)
            }
            Err(other) => Err(other),
        }
    }

    /// A later page of a search failed (an error status, no answer, a page that cannot be
    /// read) after earlier ones arrived. In a view, the search stops there and
    /// the view keeps what arrived, cut short for that reason (`Ok`); a feed fails as a whole
    /// (`Err`), as the index must not take part of a feed for all of it.
    pub(super) fn stop_short(&self, reason: FailureReason) -> Result<(), FailureReason> {
        if self.until.is_none() {
            return Err(reason);
        }
        self.cut
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert(reason);
        Ok(())
    }

    /// A search ended with fewer resources than it said it matched: the view is cut short
    /// for that reason (several such searches: one reason naming them all, with their sums).
    pub(super) fn short(&self, reason: FailureReason) {
        let mut cut = self
            .cut
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let (
            Some(FailureReason::Unpaged {
                resource_type,
                held,
                sent,
            }),
            FailureReason::Unpaged {
                resource_type: t,
                held: h,
                sent: n,
            },
        ) = (cut.as_mut(), &reason)
        {
            resource_type.push_str(" and ");
            resource_type.push_str(t);
            *held += h;
            *sent += n;
            return;
        }
        cut.get_or_insert(reason);
    }

    /// The reason a search stopped short, if one did (taken).
    pub(super) fn take_cut(&self) -> Option<FailureReason> {
        self.cut
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// `fetched`, cut short if a search stopped early; nothing at all arrived: the reason.
    pub(super) fn finish(&self, mut fetched: Fetched) -> Result<Fetched, FailureReason> {
        let cut = self
            .cut
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(reason) = cut {
            if fetched.resources.is_empty() {
                return Err(reason);
            }
            fetched.cut_short = Some(reason);
        }
        Ok(fetched)
    }

    pub(super) fn take(&self, n: u64) -> Result<(), FailureReason> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let before = self.left.fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
        if before.saturating_sub(n) < 0 {
            Err(FailureReason::TooLarge {
                limit_bytes: self.limit,
            })
        } else {
            Ok(())
        }
    }

    pub(super) fn give_back(&self, n: u64) {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.left.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}
