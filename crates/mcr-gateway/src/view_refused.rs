//! How a view (or `explain`, or a document) is refused, each refusal audited before the
//! answer: a caller refused before the index is read, a patient the index does not hold, a
//! store that cannot be read (fail closed), and a decision that is not a permit.

use crate::{Gateway, GatewayError, RequestContext};
use mcr_audit::{Action, Outcome};
use mcr_domain::{NhsNumber, Purpose};
use mcr_policy::{Decision, Explanation};

impl Gateway {
    /// A view (or a document) the policy did not permit: audited as a refusal. A restricted
    /// record refused is also flagged for the privacy officer's review queue, committed
    /// beside it.
    pub(crate) async fn audit_refusal(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
        action: Action,
        decision: &Decision,
    ) -> Result<(), GatewayError> {
        let mut event = self.event(ctx, action, Some(nhs.as_str()));
        event.outcome = crate::decision_outcome(decision);
        event.basis = match decision {
            Decision::Deny(d) => Some(d.code.as_str().to_owned()),
            _ => None,
        };
        event.detail = Some(decision.sentence());
        tracing::info!(outcome = decision.code(), "view not permitted");
        match decision {
            Decision::Deny(d) if d.code == mcr_policy::DenyCode::RestrictedRecord => {
                let mut flagged = crate::watch::Watched::default();
                flagged.add_flag(
                    self.restricted_flag(
                        ctx,
                        nhs,
                        format!(
                            "Refused {} a restricted (S-flagged) patient's record: {} is not a role this region lets view restricted records ({}).",
                            if action == Action::OpenDocument {
                                "a document from"
                            } else {
                                "a view of"
                            },
                            ctx.principal.role.label(),
                            self.policy.restricted_roles_words()
                        ),
                    ),
                    crate::WatchRule::RestrictedRecord,
                );
                let (refusal, ()) = tokio::join!(self.audit(&event), self.write_flags(&flagged));
                refusal.map(|_| ())
            }
            _ => self.audit(&event).await.map(|_| ()),
        }
    }

    /// Rules 1 to 5 (purpose, organisation kind, membership, suspension, role), decided before
    /// anything about the patient is read, so a caller they refuse learns nothing about who
    /// the region holds. A refusal is audited as the full decision would audit it.
    pub(crate) async fn refuse_caller(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
        action: Action,
    ) -> Result<Option<Explanation>, GatewayError> {
        let Some(refused) =
            mcr_policy::refuse_caller(&ctx.principal, Purpose::DirectCare, &self.policy)
        else {
            return Ok(None);
        };
        self.metrics.decision(action, refused.decision.code());
        let mut event = self.event(ctx, action, Some(nhs.as_str()));
        event.outcome = crate::decision_outcome(&refused.decision);
        event.basis = match &refused.decision {
            Decision::Deny(d) => Some(d.code.as_str().to_owned()),
            _ => None,
        };
        event.detail = Some(refused.decision.sentence());
        self.audit(&event).await?;
        tracing::info!(correlation = %ctx.correlation_id, outcome = refused.decision.code(), "caller refused before the index");
        Ok(Some(refused))
    }

    /// Find the patient in the index; an unknown patient is audited and reported.
    pub(crate) async fn locate(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
        action: Action,
    ) -> Result<(mcr_store::IndexedPatient, Vec<mcr_store::SourceLink>), GatewayError> {
        let (found, links) = tokio::join!(self.store.patient(nhs), self.store.links(nhs));
        let found = match found {
            Ok(found) => found,
            Err(_) => return Err(self.fail_closed(ctx, nhs, action).await),
        };
        let Some(patient) = found else {
            return Err(self.not_found(ctx, nhs, action).await);
        };
        let links = match links {
            Ok(l) => l,
            Err(_) => return Err(self.fail_closed(ctx, nhs, action).await),
        };
        Ok((patient, links))
    }

    /// The patient is not in the index: audited, and reported.
    pub(crate) async fn not_found(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
        action: Action,
    ) -> GatewayError {
        // Only here, off the path of a found patient: a retired number says where the person
        // is now, never shows the other record's data.
        let Ok(merged) = self.merged_away(nhs).await else {
            return self.fail_closed(ctx, nhs, action).await;
        };
        let mut event = self.event(ctx, action, Some(nhs.as_str()));
        event.outcome = Outcome::NotFound;
        if let Some(m) = &merged {
            event.basis = Some(format!("merged-into:{}", m.survivor));
        }
        match self.audit(&event).await {
            Ok(_) => match merged {
                Some(m) => GatewayError::Merged {
                    retired: m.retired,
                    survivor: m.survivor,
                },
                None => GatewayError::PatientNotFound,
            },
            Err(e) => e,
        }
    }

    /// The store could not be read: deny, and try to say so in the audit trail.
    pub(crate) async fn fail_closed(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
        action: Action,
    ) -> GatewayError {
        tracing::error!(correlation = %ctx.correlation_id, "store unavailable: failing closed");
        let mut event = self.event(ctx, action, Some(nhs.as_str()));
        event.outcome = Outcome::Deny;
        event.basis = Some(mcr_policy::DenyCode::DecisionUnavailable.as_str().into());
        match self.audit(&event).await {
            Ok(_) => GatewayError::StoreUnavailable,
            Err(e) => e,
        }
    }
}
