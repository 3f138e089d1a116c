//! Deciding about local identities in the review queue: a source record and a local identity
//! (an index person made from a record with no NHS number) are linked, ruled out ("not a
//! match"), or a record linked to one is unlinked from it. The same people may decide as about
//! an index patient ([`Gateway::may_review_matches`], deny by default), within the same scope
//! (records staff their own organisation's records); every decision and every read is audited,
//! refusals too, each with its own action. A local identity is never audited, shown or stored
//! as an NHS number: the audit record's patient is empty and its detail names the local
//! identity.

use crate::{Gateway, GatewayError, RequestContext};
use mcr_audit::{Action, Outcome};
use mcr_domain::{LocalPersonId, SourceId};
use mcr_store::{LinkMethod, LocalDecisionRow, LocalLink, LocalPerson};

/// What a person decided about a source record and a local identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalVerdict {
    /// A pair in review is one person: the record joins the local identity.
    Link,
    /// A pair in review is not one person: never linked.
    NotAMatch,
    /// A record linked to the local identity is not that person: unlinked, never linked again.
    Unlink,
}

impl LocalVerdict {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "link" => Some(Self::Link),
            "not-a-match" => Some(Self::NotAMatch),
            "unlink" => Some(Self::Unlink),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Link => "link",
            Self::NotAMatch => "not-a-match",
            Self::Unlink => "unlink",
        }
    }

    fn action(self) -> Action {
        match self {
            Self::Link => Action::LocalMatchLink,
            Self::NotAMatch => Action::LocalMatchNotAMatch,
            Self::Unlink => Action::LocalMatchUnlink,
        }
    }
}

/// One record linked to a local identity, as the reviewer may see it.
#[derive(Debug, Clone)]
pub struct LocalRecord {
    pub link: LocalLink,
    /// The source organisation's name.
    pub source_name: String,
    /// The record the local identity was made from (it cannot be unlinked from it).
    pub origin: bool,
}

/// A local identity and the records linked to it that the reviewer may see.
#[derive(Debug, Clone)]
pub struct LocalIdentityView {
    pub person: LocalPerson,
    pub records: Vec<LocalRecord>,
    /// Records linked to it that other organisations hold, which this reviewer may not see
    /// (counted, never listed).
    pub others_not_shown: usize,
}

const NOT_OPEN: &str = "This local identity is no longer open: it was found to have an NHS number, and its records moved there. Decide about them in the queue against that NHS number.";

impl Gateway {
    /// A local identity with the records linked to it, for a reviewer to check and unlink a
    /// record that is not this person. Records staff see only their own organisation's records
    /// (the others are counted). Audited (`read-local-identity`), refusals too.
    pub async fn local_identity(
        &self,
        ctx: &RequestContext,
        id: LocalPersonId,
    ) -> Result<LocalIdentityView, GatewayError> {
        const ACTION: Action = Action::ReadLocalIdentity;
        let scope = match self.may_review_matches(ctx) {
            Ok(scope) => scope,
            Err(why) => return Err(self.refuse_matching(ctx, ACTION, None, why).await),
        };
        let Some(person) = self
            .store
            .local_person(id)
            .await
            .map_err(|_| GatewayError::StoreUnavailable)?
        else {
            let mut event = self.event(ctx, ACTION, None);
            event.outcome = Outcome::NotFound;
            event.detail = Some(format!("local identity {id}: not held"));
            self.audit(&event).await?;
            return Err(GatewayError::Invalid(format!(
                "No local identity {id} is held in the index."
            )));
        };
        let links = self
            .store
            .local_links(id)
            .await
            .map_err(|_| GatewayError::StoreUnavailable)?;
        let total = links.len();
        let records: Vec<LocalRecord> = links
            .into_iter()
            .filter(|l| self.in_scope(&scope, &l.source))
            .map(|l| LocalRecord {
                origin: (&l.source, &l.local_id) == (&person.origin.0, &person.origin.1),
                source_name: self.source_name(&l.source),
                link: l,
            })
            .collect();
        let others_not_shown = total - records.len();
        let mut event = self.event(ctx, ACTION, None);
        event.outcome = Outcome::Permit;
        event.detail = Some(format!(
            "local identity {id}: {} record(s) shown, {others_not_shown} of other organisations not shown{}",
            records.len(),
            match &person.resolved {
                Some(r) => format!("; resolved to an NHS number ({})", r.method.as_str()),
                None => String::new(),
            }
        ));
        self.audit(&event).await?;
        Ok(LocalIdentityView {
            person,
            records,
            others_not_shown,
        })
    }

    /// Decide about a source record and a local identity. `Link` and `NotAMatch` need the
    /// pair in the queue; `Unlink` needs the record linked to the local identity (and not the
    /// record it was made from). Audited (`local-match-link`, `local-match-not-a-match`,
    /// `local-match-unlink`, with the pair's score and agreement, never the demographics),
    /// in one transaction with the decision; refusals too. Returns the audit sequence number.
    pub async fn decide_local_match(
        &self,
        ctx: &RequestContext,
        source: &SourceId,
        local_id: &str,
        person: LocalPersonId,
        verdict: LocalVerdict,
    ) -> Result<i64, GatewayError> {
        let action = verdict.action();
        let scope = match self.may_review_matches(ctx) {
            Ok(scope) => scope,
            Err(why) => return Err(self.refuse_matching(ctx, action, None, why).await),
        };
        if !self.in_scope(&scope, source) {
            let why = "You can review only your own organisation's records; a privacy officer can review the others.".to_owned();
            return Err(self.refuse_matching(ctx, action, None, why).await);
        }
        let store_down = |_| GatewayError::StoreUnavailable;
        let held = self.store.local_person(person).await.map_err(store_down)?;
        let Some(held) = held.filter(|p| p.resolved.is_none()) else {
            return Err(GatewayError::Invalid(NOT_OPEN.into()));
        };
        let queued = self
            .store
            .local_candidates_of(source, local_id)
            .await
            .map_err(store_down)?
            .into_iter()
            .find(|c| c.person == person);
        let home = self
            .store
            .local_link_of(source, local_id)
            .await
            .map_err(store_down)?;
        let linked = home.as_ref().filter(|l| l.person == person);
        let origin = held.origin == (source.clone(), local_id.to_owned());
        let now = self.clock.now();
        let link = match (verdict, &queued, &linked) {
            (LocalVerdict::Link, Some(c), _) => Some(LocalLink {
                person,
                source: source.clone(),
                local_id: local_id.to_owned(),
                method: LinkMethod::Demographics,
                family: c.family.clone(),
                given: c.given.clone(),
                birth_date: c.birth_date,
                postcode: c.postcode.clone(),
                linked_at: now,
            }),
            (LocalVerdict::NotAMatch, Some(_), _) => None,
            (LocalVerdict::Link | LocalVerdict::NotAMatch, None, _) => {
                return Err(GatewayError::Invalid(
                    "This pair is not waiting for review (it may have been decided already)."
                        .into(),
                ))
            }
            (LocalVerdict::Unlink, _, Some(_)) if origin => {
                return Err(GatewayError::Invalid(format!(
                    "This is the record local identity {person} was made from: it cannot be unlinked from it."
                )))
            }
            (LocalVerdict::Unlink, _, Some(_)) => None,
            (LocalVerdict::Unlink, _, None) => {
                return Err(GatewayError::Invalid(format!(
                    "This record is not linked to local identity {person} (it may have been unlinked already)."
                )))
            }
        };
        // The record another open local identity was made from is that identity's person:
        // linking it here would make one of two people (the store refuses it too).
        if let (LocalVerdict::Link, Some(other)) = (verdict, &home) {
            if other.person != person && other.method == LinkMethod::LocalIdentity {
                return Err(GatewayError::Invalid(format!(
                    "This record is the one local identity {} was made from: it cannot be linked to another local identity.",
                    other.person
                )));
            }
        }
        let decision = LocalDecisionRow {
            source: source.clone(),
            local_id: local_id.to_owned(),
            person,
            decision: verdict.as_str().into(),
            decided_by: ctx.principal.user_id.clone(),
            decided_at: now,
        };
        // No NHS number: the audit record's patient stays empty; the detail names the
        // record and the local identity, with the score and agreement (levels, never values).
        let mut event = self.event(ctx, action, None);
        event.outcome = Outcome::Recorded;
        event.basis = Some("local-identity".into());
        event.detail = Some(match (&queued, verdict) {
            (Some(c), _) if verdict != LocalVerdict::Unlink => format!(
                "{source}/{local_id} and local identity {person}: score {:.1}; {}",
                c.score, c.agreement
            ),
            _ => format!("{source}/{local_id} unlinked from local identity {person}"),
        });
        let append = mcr_audit::to_append(&event).map_err(|_| GatewayError::AuditUnavailable)?;
        let audited = match self
            .store
            .decide_local_match(&decision, link.as_ref(), &append, &mcr_audit::chain_hash)
            .await
        {
            Ok(Some(row)) => row,
            // Resolved between the read above and the write: nothing written.
            Ok(None) => return Err(GatewayError::Invalid(NOT_OPEN.into())),
            // The store's own refusal (the record a local identity was made from): nothing
            // written.
            Err(mcr_store::StoreError::Config(why)) => return Err(GatewayError::Invalid(why)),
            Err(e) => {
                tracing::error!(error = %e, "local identity decision not recorded");
                return Err(GatewayError::AuditUnavailable);
            }
        };
        self.after_append(&audited).await;
        Ok(audited.seq)
    }
}
