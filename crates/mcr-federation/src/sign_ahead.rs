//! Identity tokens signed ahead: while the gateway reads what it needs to decide a view, the
//! sources' identity tokens for the requester are signed a source at a time, so the signing
//! overlaps the read instead of following the decision.

use crate::{Federation, Requester};
use mcr_domain::SourceId;
use mcr_policy::Grant;
use std::collections::HashMap;

/// Identity tokens signed for one requester before the access decision, a source at a time
/// ([`SignAhead`]), so that signing them overlaps the gateway's read of what it needs to
/// decide. They stay in memory: [`Federation::fetch_record`] uses them only if its grant is
/// for exactly this requester (anything else is signed afresh), and a denied view just drops
/// them. Nothing is sent to a source before a grant either way.
#[derive(Default)]
pub struct SignedAhead<'a> {
    /// The requester the tokens name: user, role, organisation, purpose, patient.
    who: Option<Requester<'a>>,
    pub(crate) tokens: HashMap<SourceId, String>,
}

impl std::fmt::Debug for SignedAhead<'_> {
    /// Tokens name a patient: only how many there are may reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignedAhead({} tokens)", self.tokens.len())
    }
}

impl SignedAhead<'_> {
    /// The tokens, by source, if they were signed for `grant`'s requester; otherwise none.
    pub(crate) fn for_grant(self, grant: &Grant) -> HashMap<SourceId, String> {
        self.for_requester(&Requester::of(grant))
    }

    pub(crate) fn for_requester(self, wanted: &Requester<'_>) -> HashMap<SourceId, String> {
        if self.who.as_ref() == Some(wanted) {
            self.tokens
        } else {
            HashMap::new()
        }
    }
}

/// Signing ahead, one source at a time: see [`Federation::sign_while`].
struct SignAhead<'a> {
    who: Requester<'a>,
    sources: std::slice::Iter<'a, SourceId>,
    federation: &'a Federation,
    pub(crate) tokens: HashMap<SourceId, String>,
}

impl<'a> SignAhead<'a> {
    /// Sign the next source's token; `false` once every source has been done. A source that
    /// sends no identity, or fails to sign, is skipped (the fetch signs or fails on its own).
    fn sign_next(&mut self) -> bool {
        for id in self.sources.by_ref() {
            let Some(source) = self.federation.sources.get(id) else {
                continue;
            };
            if let Some(Ok(token)) = source.sign_identity(&self.who) {
                self.tokens.insert(id.clone(), token);
                return true;
            }
        }
        false
    }

    fn finish(self) -> SignedAhead<'a> {
        SignedAhead {
            who: Some(self.who),
            tokens: self.tokens,
        }
    }
}

impl Federation {
    /// Wait for `meanwhile` (the gateway's read of what it needs to decide) and, while it is
    /// pending, sign `who`'s identity tokens for the sources, a source at a time. Pass the
    /// tokens to [`Federation::fetch_record`]: they are used only if its grant is for exactly
    /// `who`, and simply dropped if the decision refuses.
    pub async fn sign_while<'a, T>(
        &'a self,
        who: Requester<'a>,
        meanwhile: impl std::future::Future<Output = T>,
    ) -> (T, SignedAhead<'a>) {
        let mut ahead = SignAhead {
            who,
            sources: self.order.iter(),
            federation: self,
            tokens: HashMap::new(),
        };
        let mut meanwhile = std::pin::pin!(meanwhile);
        let out = std::future::poll_fn(|cx| loop {
            if let std::task::Poll::Ready(out) = meanwhile.as_mut().poll(cx) {
                return std::task::Poll::Ready(out);
            }
            if !ahead.sign_next() {
                return std::task::Poll::Pending;
            }
        })
        .await;
        (out, ahead.finish())
    }
}
