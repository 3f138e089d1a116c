//! The review queue for people (patient matching): the pairs of a source record and an index
//! patient that matching would not decide alone, shown side by side with their score and
//! field-by-field agreement, and what records staff and privacy officers decide about them:
//! link, or not a match (which also unlinks a record linked wrongly). Every read and every
//! decision is audited, refusals too; a decision is written in one transaction with its audit
//! record, and no later sync overrides it.

use crate::{Gateway, GatewayError, RequestContext};
use mcr_audit::{Action, Outcome};
use mcr_domain::{NhsNumber, Role, SourceId};
use mcr_store::{IndexedPatient, LinkMethod, MatchCandidateRow, MatchDecisionRow, SourceLink};
use std::collections::HashMap;

/// One pair in the queue: the source record as its source holds it, and the index patient.
#[derive(Debug, Clone)]
pub struct MatchPair {
    pub candidate: MatchCandidateRow,
    /// The source organisation's name.
    pub source_name: String,
    /// `None` when the index no longer holds the patient.
    pub patient: Option<IndexedPatient>,
    /// The patient is restricted (S-flagged): both sides' postcode and the practice were
    /// removed here, never shown.
    pub restricted: bool,
}

/// One pair of a source record and a local identity (an index person made from a record with
/// no NHS number): shown labelled as a local identity, never as an NHS number.
#[derive(Debug, Clone)]
pub struct LocalMatchPair {
    pub candidate: mcr_store::LocalCandidateRow,
    /// The source organisation's name.
    pub source_name: String,
    /// `None` when the local identity is no longer held open (resolved since).
    pub person: Option<mcr_store::LocalPerson>,
}

/// The records one source sent that could not be read ([`mcr_store::UNREADABLE_REASONS`]),
/// by local id: in no one's record until the source corrects them.
#[derive(Debug, Clone)]
pub struct UnreadableRecords {
    pub source: SourceId,
    /// The source organisation's name.
    pub source_name: String,
    /// At most [`mcr_store::UNREADABLE_LIST_MAX`].
    pub records: Vec<mcr_store::UnmatchedRecord>,
    /// How many there are in all.
    pub total: u64,
}

/// The review queue: pairs with index patients, pairs with local identities, and the records
/// that could not be read, by source (only sources that sent any).
#[derive(Debug, Clone, Default)]
pub struct MatchQueue {
    pub pairs: Vec<MatchPair>,
    pub local: Vec<LocalMatchPair>,
    pub unreadable: Vec<UnreadableRecords>,
}

/// What a person decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchVerdict {
    /// The record is this patient's: link it.
    Link,
    /// The record is not this patient's: never link it to them (and unlink it if it is).
    NotAMatch,
}

impl MatchVerdict {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "link" => Some(Self::Link),
            "not-a-match" => Some(Self::NotAMatch),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Link => "link",
            Self::NotAMatch => "not-a-match",
        }
    }
}

const NOT_A_REVIEWER: &str =
    "Only records staff and privacy officers of member organisations can review patient matching.";

/// Whose records a reviewer may see in the matching queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MatchScope {
    Region,
    /// One organisation's records (its ODS code).
    Organisation(String),
}

impl Gateway {
    /// Who may review patient matching, and whose records: privacy officers of member
    /// organisations the whole region's; records staff (administrative role) only their own
    /// organisation's records, since the queue shows demographics side by side.
    pub(crate) fn may_review_matches(&self, ctx: &RequestContext) -> Result<MatchScope, String> {
        let p = &ctx.principal;
        if !p.organisation.member || p.organisation.suspended {
            return Err(NOT_A_REVIEWER.into());
        }
        match p.role {
            Role::PrivacyOfficer => Ok(MatchScope::Region),
            Role::Admin => Ok(MatchScope::Organisation(p.organisation.code.to_string())),
            _ => Err(NOT_A_REVIEWER.into()),
        }
    }

    /// Whether a record held by `source` is within `scope`.
    pub(crate) fn in_scope(&self, scope: &MatchScope, source: &SourceId) -> bool {
        match scope {
            MatchScope::Region => true,
            MatchScope::Organisation(code) => self
                .federation
                .sources()
                .find(|s| s.id() == source)
                .is_some_and(|s| s.config().organisation.code.as_str() == code),
        }
    }

    pub(crate) async fn refuse_matching(
        &self,
        ctx: &RequestContext,
        action: Action,
        patient: Option<&str>,
        why: String,
    ) -> GatewayError {
        let mut event = self.event(ctx, action, patient);
        event.outcome = Outcome::Deny;
        event.detail = Some(why.clone());
        match self.audit(&event).await {
            Ok(_) => GatewayError::Forbidden(why),
            Err(e) => e,
        }
    }

    pub(crate) fn source_name(&self, source: &SourceId) -> String {
        self.federation
            .sources()
            .find(|s| s.id() == source)
            .map_or_else(
                || source.to_string(),
                |s| s.config().organisation.name.clone(),
            )
    }

    /// The pairs awaiting review, highest score first, each with the index patient, and the
    /// pairs with a local identity, each with it. Audited (`read-match-queue`), refusals too.
    pub async fn match_queue(&self, ctx: &RequestContext) -> Result<MatchQueue, GatewayError> {
        const ACTION: Action = Action::ReadMatchQueue;
        let scope = match self.may_review_matches(ctx) {
            Ok(scope) => scope,
            Err(why) => return Err(self.refuse_matching(ctx, ACTION, None, why).await),
        };
        let rows: Vec<_> = self
            .store
            .match_candidates()
            .await
            .map_err(|_| GatewayError::StoreUnavailable)?
            .into_iter()
            .filter(|c| self.in_scope(&scope, &c.source))
            .collect();
        let local_rows: Vec<_> = self
            .store
            .local_candidates()
            .await
            .map_err(|_| GatewayError::StoreUnavailable)?
            .into_iter()
            .filter(|c| self.in_scope(&scope, &c.source))
            .collect();
        let mut persons: HashMap<mcr_domain::LocalPersonId, mcr_store::LocalPerson> =
            HashMap::new();
        for c in &local_rows {
            if persons.contains_key(&c.person) {
                continue;
            }
            if let Some(l) = self
                .store
                .local_person(c.person)
                .await
                .map_err(|_| GatewayError::StoreUnavailable)?
                .filter(|l| l.resolved.is_none())
            {
                persons.insert(c.person, l);
            }
        }
        let mut unreadable = Vec::new();
        for source in self.federation.sources().map(|s| s.id().clone()) {
            if !self.in_scope(&scope, &source) {
                continue;
            }
            let (records, total) = self
                .store
                .unreadable(&source, mcr_store::UNREADABLE_LIST_MAX)
                .await
                .map_err(|_| GatewayError::StoreUnavailable)?;
            if total > 0 {
                unreadable.push(UnreadableRecords {
                    source_name: self.source_name(&source),
                    source,
                    records,
                    total,
                });
            }
        }
        let numbers: Vec<NhsNumber> = rows.iter().map(|r| r.nhs_number.clone()).collect();
        let patients: HashMap<NhsNumber, IndexedPatient> = self
            .store
            .patients_by_nhs(&numbers)
            .await
            .map_err(|_| GatewayError::StoreUnavailable)?
            .into_iter()
            .map(|p| (p.nhs_number.clone(), p))
            .collect();
        // A restricted patient's location is never shown, from either side of the pair.
        let restricted = self.restricted_among(&numbers).await;
        let is_restricted = |n: &NhsNumber| restricted.as_ref().is_none_or(|set| set.contains(n));
        let withheld = rows.iter().filter(|c| is_restricted(&c.nhs_number)).count();
        let mut event = self.event(ctx, ACTION, None);
        event.outcome = Outcome::Permit;
        let mut detail = format!("{} pair(s) listed", rows.len());
        if !local_rows.is_empty() {
            detail.push_str(&format!(
                ", {} with a local identity (no NHS number)",
                local_rows.len()
            ));
        }
        if withheld > 0 {
            detail.push_str(&format!("; location withheld for {withheld} restricted"));
        }
        let cannot_be_read: u64 = unreadable.iter().map(|u| u.total).sum();
        if cannot_be_read > 0 {
            detail.push_str(&format!(
                "; {cannot_be_read} record(s) that could not be read"
            ));
        }
        event.detail = Some(detail);
        self.audit(&event).await?;
        let local = local_rows
            .into_iter()
            .map(|c| LocalMatchPair {
                source_name: self.source_name(&c.source),
                person: persons.get(&c.person).cloned(),
                candidate: c,
            })
            .collect();
        let pairs = rows
            .into_iter()
            .map(|mut c| {
                let restricted = is_restricted(&c.nhs_number);
                let mut patient = patients.get(&c.nhs_number).cloned();
                if restricted {
                    c.postcode = None;
                    if let Some(p) = patient.as_mut() {
                        p.postcode = None;
                        p.gp_practice = None;
                    }
                }
                MatchPair {
                    source_name: self.source_name(&c.source),
                    patient,
                    restricted,
                    candidate: c,
                }
            })
            .collect();
        Ok(MatchQueue {
            pairs,
            local,
            unreadable,
        })
    }

    /// Decide about a pair: `Link` needs the pair in the queue; `NotAMatch` needs it in the
    /// queue or the record linked to that patient (then it is unlinked). Audited
    /// (`match-link` / `match-not-a-match`, with the pair's score and agreement, never the
    /// demographics), refusals too. Returns the audit sequence number.
    pub async fn decide_match(
        &self,
        ctx: &RequestContext,
        source: &SourceId,
        local_id: &str,
        nhs: &NhsNumber,
        verdict: MatchVerdict,
    ) -> Result<i64, GatewayError> {
        let action = match verdict {
            MatchVerdict::Link => Action::MatchLink,
            MatchVerdict::NotAMatch => Action::MatchNotAMatch,
        };
        let scope = match self.may_review_matches(ctx) {
            Ok(scope) => scope,
            Err(why) => {
                return Err(self
                    .refuse_matching(ctx, action, Some(nhs.as_str()), why)
                    .await)
            }
        };
        if !self.in_scope(&scope, source) {
            let why = "You can review only your own organisation's records; a privacy officer can review the others.".to_owned();
            return Err(self
                .refuse_matching(ctx, action, Some(nhs.as_str()), why)
                .await);
        }
        let queued = self
            .store
            .match_candidates_of(source, local_id)
            .await
            .map_err(|_| GatewayError::StoreUnavailable)?
            .into_iter()
            .find(|c| &c.nhs_number == nhs);
        let linked = self
            .store
            .link_for_local(source, local_id)
            .await
            .map_err(|_| GatewayError::StoreUnavailable)?
            .filter(|l| &l.nhs_number == nhs);
        let now = self.clock.now();
        let link = match (verdict, &queued) {
            (MatchVerdict::Link, Some(c)) => Some(SourceLink {
                nhs_number: nhs.clone(),
                source: source.clone(),
                local_id: local_id.to_owned(),
                method: LinkMethod::Demographics,
                family: c.family.clone(),
                given: c.given.clone(),
                birth_date: c.birth_date,
                postcode: c.postcode.clone(),
                linked_at: now,
            }),
            (MatchVerdict::Link, None) => {
                return Err(GatewayError::Invalid(
                    "This pair is not waiting for review (it may have been decided already)."
                        .into(),
                ))
            }
            (MatchVerdict::NotAMatch, _) if queued.is_some() || linked.is_some() => None,
            (MatchVerdict::NotAMatch, _) => {
                return Err(GatewayError::Invalid(
                    "This record is neither waiting for review against this patient nor linked to them.".into(),
                ))
            }
        };
        let decision = MatchDecisionRow {
            source: source.clone(),
            local_id: local_id.to_owned(),
            nhs_number: nhs.clone(),
            decision: verdict.as_str().into(),
            decided_by: ctx.principal.user_id.clone(),
            decided_at: now,
        };
        let mut event = self.event(ctx, action, Some(nhs.as_str()));
        event.outcome = Outcome::Recorded;
        event.basis = queued.as_ref().map(|c| c.kind.clone());
        event.detail = Some(match &queued {
            Some(c) => format!("{source}/{local_id}: score {:.1}; {}", c.score, c.agreement),
            None => format!("{source}/{local_id}: unlinked"),
        });
        let append = mcr_audit::to_append(&event).map_err(|_| GatewayError::AuditUnavailable)?;
        let audited = self
            .store
            .decide_match(&decision, link.as_ref(), &append, &mcr_audit::chain_hash)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "match decision not recorded");
                GatewayError::AuditUnavailable
            })?;
        self.after_append(&audited).await;
        Ok(audited.seq)
    }
}
