//! Opening one document of a patient's record, top to bottom: the caller, the index and the
//! governance records, the same decision as a record view made again now, the document's
//! reference read again from its source and checked as the view checks it, then the opening
//! audited as its own event (`open-document`) before any byte of it leaves. A refusal at any
//! step is audited and counted too.
//!
//! The bytes are handed on as they arrive ([`OpenedDocument::body`]); nothing of them is
//! kept, written or logged here.

use crate::{Gateway, GatewayError, RequestContext};
use mcr_audit::SourceAudit;
use mcr_audit::{Action, Outcome};
use mcr_domain::{NhsNumber, Purpose, SourceId};
use mcr_federation::document::{DocumentCut, DocumentRefusal, OpenedDocument};
use mcr_federation::Location;
use mcr_policy::{Decision, DecisionRequest};

const ACTION: Action = Action::OpenDocument;

/// What became of a request to open a document (each already audited).
#[derive(Debug)]
pub enum DocumentOutcome {
    /// Permitted and arriving: pass the bytes on.
    Opened(OpenedDocument),
    /// The record may not be viewed now (the same decision as a record view).
    NotPermitted(Decision),
    /// The record may be viewed, but not this document, or not now: why.
    Refused(DocumentRefusal),
}

impl Gateway {
    /// Open document `id` (a `DocumentReference` id at `source`) of patient `nhs` for the
    /// caller: decided as a record view would be, checked against the source's own copy of
    /// the reference, audited before the bytes are returned.
    pub async fn open_document(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
        source: &SourceId,
        id: &str,
    ) -> Result<DocumentOutcome, GatewayError> {
        let p = &ctx.principal;
        if let Some(refused) = mcr_policy::refuse_caller(p, Purpose::DirectCare, &self.policy) {
            return self.not_permitted(ctx, nhs, refused.decision).await;
        }
        let Ok(read) = self.store.view_inputs(nhs).await else {
            return Err(self.fail_closed(ctx, nhs, ACTION).await);
        };
        if read.patient.is_none() {
            let mut event = self.event(ctx, ACTION, Some(nhs.as_str()));
            event.outcome = Outcome::NotFound;
            self.audit(&event).await?;
            return Err(GatewayError::PatientNotFound);
        }
        let inputs = match self.inputs_from(ctx, &read.governance) {
            Ok(i) => i,
            Err(_) => return Err(self.fail_closed(ctx, nhs, ACTION).await),
        };
        let request = DecisionRequest {
            principal: p,
            patient: nhs,
            purpose: Purpose::DirectCare,
            now: self.clock.now(),
            relationships: &inputs.relationships,
            permissions: &inputs.permissions,
            objection: inputs.objection.as_ref(),
            emergency: inputs.emergency.as_ref(),
            restricted: read.restricted,
        };
        let grant = match mcr_policy::decide(&request, &self.policy) {
            Decision::Permit(grant) => grant,
            other => return self.not_permitted(ctx, nhs, other).await,
        };
        let Some(link) = read.links.iter().find(|l| &l.source == source) else {
            return self
                .document_refused(ctx, nhs, source, id, DocumentRefusal::NotFound)
                .await;
        };
        let practice = read.patient.as_ref().and_then(|p| p.gp_practice.clone());
        let location = Location {
            source: link.source.clone(),
            local_id: link.local_id.clone(),
            registered_practice: practice.clone(),
        };
        // Where else the index holds the patient: a document may name them by an address at
        // another of the region's servers, as the record view that listed it accepted.
        let locations: Vec<Location> = read
            .links
            .iter()
            .map(|l| Location {
                source: l.source.clone(),
                local_id: l.local_id.clone(),
                registered_practice: practice.clone(),
            })
            .collect();
        // The same filter as the record view: what the grant covers, what the source shares
        // with this kind of organisation, nothing withheld.
        let filter = grant.filter(&self.policy, self.agreements(), self.clock.now());
        let opened = self
            .federation
            .open_document(&filter, &location, &locations, id)
            .await;
        let doc = match opened {
            Ok(doc) => doc,
            Err(refusal) => return self.document_refused(ctx, nhs, source, id, refusal).await,
        };
        // Audited before a byte leaves: no audit, no document.
        let mut event = self.event(ctx, ACTION, Some(nhs.as_str()));
        event.outcome = Outcome::Permit;
        event.basis = Some(grant.basis().code().to_owned());
        event.detail = Some(format!(
            "DocumentReference/{id} at {source} ({}); {}",
            doc.content_type,
            grant.basis().describe()
        ));
        event.sources = vec![self.document_source_audit(source, "ok", 1)];
        self.audit(&event).await?;
        self.metrics.decision(ACTION, "permit");
        tracing::info!(correlation = %ctx.correlation_id, source = %source, "document opened");
        Ok(DocumentOutcome::Opened(doc))
    }

    /// A document cut off while it was passed on (it grew past the cap, or the source's
    /// answer broke): counted and logged; the browser sees the answer end in an error.
    pub fn document_cut_off(&self, cut: &DocumentCut) {
        let code = match cut {
            DocumentCut::TooLarge { .. } => "cut-too-large",
            DocumentCut::Transport => "cut-off",
        };
        self.metrics.decision(ACTION, code);
        tracing::warn!(
            reason = code,
            "a document was cut off while being passed on"
        );
    }

    async fn not_permitted(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
        decision: Decision,
    ) -> Result<DocumentOutcome, GatewayError> {
        self.metrics.decision(ACTION, decision.code());
        self.audit_refusal(ctx, nhs, ACTION, &decision).await?;
        Ok(DocumentOutcome::NotPermitted(decision))
    }

    async fn document_refused(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
        source: &SourceId,
        id: &str,
        refusal: DocumentRefusal,
    ) -> Result<DocumentOutcome, GatewayError> {
        let code = refusal.code();
        self.metrics.decision(ACTION, code);
        let mut event = self.event(ctx, ACTION, Some(nhs.as_str()));
        event.outcome = match refusal {
            DocumentRefusal::NotFound | DocumentRefusal::NotInRecord { .. } => Outcome::Deny,
            _ => Outcome::Error,
        };
        event.basis = Some(code.to_owned());
        event.detail = Some(format!("DocumentReference/{id} at {source}: {refusal}"));
        event.sources = vec![self.document_source_audit(source, code, 0)];
        self.audit(&event).await?;
        tracing::info!(correlation = %ctx.correlation_id, source = %source, reason = code, "document refused");
        Ok(DocumentOutcome::Refused(refusal))
    }

    fn document_source_audit(&self, source: &SourceId, status: &str, items: usize) -> SourceAudit {
        let org_code = self
            .federation
            .source(source)
            .map_or_else(String::new, |s| s.config().organisation.code.to_string());
        SourceAudit {
            source: source.to_string(),
            org_code,
            status: status.to_owned(),
            items,
            withheld: 0,
            not_tied: 0,
            not_shown: 0,
            unsearchable: Vec::new(),
        }
    }
}
