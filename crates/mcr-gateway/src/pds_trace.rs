//! Every PDS trace the index sync makes, in the audit trail: who asked (the gateway itself,
//! `system`), which source record (`source/local id`), what came of it (linked, sent to review,
//! no match, failed) and what PDS said of the patient it found (superseded number followed,
//! deceased, restricted), the NHS number PDS gave as the record's patient. Never a name, birth
//! date or address. Written before the index writes what the traces found: a trace that
//! cannot be audited links nothing (the sync fails).

use async_trait::async_trait;
use mcr_audit::{Action, AuditEvent, Outcome};
use mcr_domain::Clock;
use mcr_index::pds::{TraceAudit, TraceOutcome, TraceRecord};
use mcr_store::{Store, StoreError};
use std::sync::Arc;

#[derive(Debug)]
pub(crate) struct TraceAuditor {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
}

/// The audit record of one trace; `correlation` ties one sync's traces together.
pub(crate) fn trace_event(
    t: &TraceRecord,
    correlation: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> AuditEvent {
    let outcome = match t.outcome {
        TraceOutcome::Linked => Outcome::Linked,
        TraceOutcome::Review => Outcome::SentToReview,
        TraceOutcome::NotFound | TraceOutcome::TooMany | TraceOutcome::Untraceable => {
            Outcome::NoMatch
        }
        TraceOutcome::Failed => Outcome::Error,
    };
    let mut words = format!("{}/{}: ", t.source, t.local_id);
    words.push_str(match t.outcome {
        TraceOutcome::Linked => "PDS found one match; linked to it",
        TraceOutcome::Review => {
            "PDS found one match below the link score; sent to the matching review queue"
        }
        TraceOutcome::NotFound => "PDS found no one; left as the index left it",
        TraceOutcome::TooMany => "PDS found more than one; left as the index left it",
        TraceOutcome::Untraceable => {
            "not traceable (no name or birth date to search by, or none in PDS's answer)"
        }
        TraceOutcome::Failed => "PDS could not be asked; left as the index left it",
    });
    if let Some(score) = t.score {
        words.push_str(&format!(" (score {score:.2})"));
    }
    if t.superseded {
        words.push_str("; a superseded NHS number followed to the current one");
    }
    if t.deceased {
        words.push_str("; marked deceased");
    }
    if t.restricted {
        words.push_str("; marked restricted (S-flag)");
    }
    AuditEvent {
        at,
        correlation_id: correlation.to_owned(),
        system: None,
        user_id: "system".into(),
        user_name: "My Care Record gateway".into(),
        role: "system".into(),
        org_code: String::new(),
        org_name: String::new(),
        patient: t.nhs_number.as_ref().map(|n| n.as_str().to_owned()),
        purpose: "operations".into(),
        action: Action::PdsTrace,
        outcome,
        basis: Some(t.outcome.code().to_owned()),
        detail: Some(words),
        sources: Vec::new(),
        role_profile_id: None,
    }
}

#[async_trait]
impl TraceAudit for TraceAuditor {
    async fn traced(&self, traces: &[TraceRecord]) -> Result<(), StoreError> {
        let correlation = uuid::Uuid::new_v4().to_string();
        for t in traces {
            let event = trace_event(t, &correlation, self.clock.now());
            mcr_audit::record(self.store.as_ref(), &event)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "a PDS trace could not be audited: the sync stops");
                    StoreError::Unavailable("the audit trail could not be written".into())
                })?;
        }
        tracing::info!(traces = traces.len(), "PDS traces audited");
        Ok(())
    }
}
