//! Viewing a record: the path of one view, top to bottom.

use crate::{Gateway, GatewayError, RequestContext};
use mcr_audit::SourceAudit;
use mcr_domain::{DataClass, MergedRecord, NhsNumber, Purpose};
use mcr_federation::{Location, MergeInput};
use mcr_policy::{Basis, Decision, DecisionRequest, Explanation};
use std::collections::{BTreeSet, HashMap};

/// A record that may be shown, and the audit record that says so.
#[derive(Debug, Clone)]
pub struct View {
    pub record: MergedRecord,
    pub basis: Basis,
    /// Data classes this view was granted.
    pub classes: BTreeSet<DataClass>,
    /// How long each source took in this view (for the `Server-Timing` header; no patient data).
    pub timings: Vec<crate::SourceTiming>,
    /// Where the gateway's time went, milliseconds: `access` (index, governance inputs,
    /// decision), `fetch` (sources asked, answers read and digested), `audit` (committing the
    /// audit record, while the record is merged and the caller's rendering runs beside it),
    /// then `merge` (the part of `audit` spent merging).
    pub phases: Vec<(&'static str, f64)>,
    /// Open questions about who this record belongs to (patient matching), one sentence each:
    /// a record elsewhere carrying this NHS number whose person does not match it, or a record
    /// that may be this person's awaiting review. Never another person's details.
    pub identity_warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum ViewOutcome {
    /// Permitted: here is the record (already audited).
    Record(Box<View>),
    /// Not permitted now: needs permission, needs a relationship, or denied (already audited).
    NotPermitted(Decision),
}

impl Gateway {
    /// The decision for this user and patient with every rule that led to it, without
    /// fetching anything. Audited like any other access decision.
    pub async fn explain(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
    ) -> Result<Explanation, GatewayError> {
        if let Some(refused) = self.refuse_caller(ctx, nhs, "explain-access").await? {
            return Ok(refused);
        }
        // An unknown patient is refused (and audited) here; what the index holds is not a
        // relationship, so only the governance records are read for the decision.
        self.locate(ctx, nhs, "explain-access").await?;
        let inputs = match self.load_inputs(ctx, nhs).await {
            Ok(i) => i,
            Err(_) => return Err(self.fail_closed(ctx, nhs, "explain-access").await),
        };
        let explanation = mcr_policy::explain(&self.request(ctx, nhs, &inputs), &self.policy);
        self.metrics
            .decision("explain-access", explanation.decision.code());
        let mut event = self.event(ctx, "explain-access", Some(nhs.as_str()));
        event.outcome = explanation.decision.code().to_owned();
        event.detail = Some(explanation.decision.sentence());
        self.audit(&event).await?;
        Ok(explanation)
    }

    /// View a patient's record: locate, decide, fetch with the grant, filter and merge, audit,
    /// and only then return the record.
    pub async fn view_record(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
    ) -> Result<ViewOutcome, GatewayError> {
        Ok(self.view_record_then(ctx, nhs, |_| ()).await?.0)
    }

    /// [`Gateway::view_record`], with `render` (encoding the record for the caller) run while
    /// the audit record is being committed: the disk's flush is most of an append, and the
    /// encoding need not wait for it. What `render` makes is returned only once the audit
    /// record is committed, and never if it fails; `None` when the view was not permitted.
    pub async fn view_record_then<T: Send>(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
        render: impl FnOnce(&View) -> T + Send,
    ) -> Result<(ViewOutcome, Option<T>), GatewayError> {
        const ACTION: &str = "view-record";
        let started = std::time::Instant::now();
        let mut timer = crate::metrics::ViewTimer::start(&self.metrics);
        // Who may never look is refused before the index is read: the same answer whether or
        // not the region holds this NHS number.
        if let Some(refused) = self.refuse_caller(ctx, nhs, ACTION).await? {
            timer.outcome(refused.decision.code());
            return Ok((ViewOutcome::NotPermitted(refused.decision), None));
        }
        // The patient, their sources and their governance records: one statement, one
        // snapshot (a single trip to the store). While it is read, the identity tokens the
        // fetch will send are signed, a source at a time; they are used only if the decision
        // grants this very request, and dropped otherwise.
        let p = &ctx.principal;
        let mut ahead = self.federation.sign_ahead(mcr_federation::Requester {
            user_id: &p.user_id,
            role: p.role,
            org_code: &p.organisation.code,
            purpose: Purpose::DirectCare,
            patient: nhs,
        });
        let mut reading = self.store.view_inputs(nhs);
        let read = std::future::poll_fn(|cx| loop {
            if let std::task::Poll::Ready(read) = reading.as_mut().poll(cx) {
                return std::task::Poll::Ready(read);
            }
            if !ahead.sign_next() {
                return std::task::Poll::Pending;
            }
        })
        .await;
        let ahead = ahead.finish();
        let read = match read {
            Ok(read) => read,
            Err(_) => return Err(self.fail_closed(ctx, nhs, ACTION).await),
        };
        let Some(patient) = read.patient else {
            return Err(self.not_found(ctx, nhs, ACTION).await);
        };
        let links = read.links;
        let inputs = match self.inputs_from(ctx, &read.governance) {
            Ok(i) => i,
            Err(_) => return Err(self.fail_closed(ctx, nhs, ACTION).await),
        };
        let decision = mcr_policy::decide(&self.request(ctx, nhs, &inputs), &self.policy);
        self.metrics.decision(ACTION, decision.code());
        let grant = match decision {
            Decision::Permit(grant) => grant,
            other => {
                let mut event = self.event(ctx, ACTION, Some(nhs.as_str()));
                event.outcome = other.code().to_owned();
                event.basis = match &other {
                    Decision::Deny(d) => Some(d.code.as_str().to_owned()),
                    _ => None,
                };
                event.detail = Some(other.sentence());
                self.audit(&event).await?;
                tracing::info!(correlation = %ctx.correlation_id, outcome = other.code(), "view not permitted");
                timer.outcome(other.code());
                return Ok((ViewOutcome::NotPermitted(other), None));
            }
        };
        // The watch: counted in the store and checked; over its hard limit the view stops
        // here, audited as a refusal. Its flags are committed beside the view's own audit
        // record. Not counted (the store failed): fail closed.
        let Ok(watched) = self.watch_view(ctx, nhs, &patient).await else {
            return Err(self.fail_closed(ctx, nhs, ACTION).await);
        };
        if watched.refusal.is_some() {
            timer.outcome("too-many-patients");
            return Err(self.refuse_watched(ctx, nhs, watched).await);
        }

        let mut phases = Vec::with_capacity(5);
        let mut lap = started;
        let mut phase = |name: &'static str| {
            let now = std::time::Instant::now();
            phases.push((name, (now - lap).as_secs_f64() * 1000.0));
            lap = now;
        };
        phase("access");
        let locations: Vec<Location> = links
            .iter()
            .map(|l| Location {
                source: l.source.clone(),
                local_id: l.local_id.clone(),
                registered_practice: patient.gp_practice.clone(),
            })
            .collect();
        let shares: HashMap<_, _> = self
            .federation
            .sources()
            .filter_map(|s| {
                let agreement = self.sharing_for(&s.config().organisation.code)?;
                Some((
                    s.id().clone(),
                    grant.effective_classes_for_source(Some(agreement)),
                ))
            })
            .collect();
        let sensitive = &self.policy.sensitive;
        let withhold = |r: &mcr_fhir::Doc<'_>| mcr_policy::withhold(r, sensitive).is_some();
        let since = self.policy.encounter_window_days(grant.role()).map(|days| {
            (self.clock.now() - chrono::Duration::days(i64::from(days)))
                .format("%Y-%m-%d")
                .to_string()
        });
        let input = MergeInput {
            nhs_number: nhs,
            classes: grant.data_classes(),
            source_shares: &shares,
            withhold: &withhold,
            encounters_since: since.as_deref(),
        };
        // The matching queue's questions about this NHS number are read while the sources are
        // asked: only once the view is granted, so a refused caller learns nothing of them.
        let (fetches, reviews) = tokio::join!(
            self.federation
                .fetch_record(&grant, &locations, &input, started, ahead),
            self.store.match_candidates_for(nhs)
        );
        let identity_warnings = self.identity_warnings(reviews);
        phase("fetch");
        let timings = self.metrics.sources(&fetches);

        // The audit record needs only what each source sent (counted as the merge will count
        // it), so it is committed while the record is merged and encoded.
        let mut event = self.event(ctx, ACTION, Some(nhs.as_str()));
        event.outcome = "permit".into();
        event.basis = Some(grant.basis().code().to_owned());
        event.detail = Some(grant.basis().describe());
        event.sources = fetches
            .iter()
            .map(|f| {
                let counts = f.counts();
                SourceAudit {
                    source: f.source.to_string(),
                    org_code: f.org_code.to_string(),
                    status: match &f.outcome {
                        Ok(_) => "ok".into(),
                        Err(r) => r.code().into(),
                    },
                    items: counts.kept,
                    withheld: counts.withheld,
                    not_tied: counts.untied + counts.another_patient,
                }
            })
            .collect();
        let merge_and_render = async {
            let merging = std::time::Instant::now();
            let record = mcr_federation::merge(&input, fetches);
            let merge_ms = merging.elapsed().as_secs_f64() * 1000.0;
            let view = View {
                basis: grant.basis().clone(),
                classes: grant.data_classes().clone(),
                record,
                timings,
                phases: Vec::new(),
                identity_warnings,
            };
            let rendered = render(&view);
            (view, merge_ms, rendered)
        };
        // No audit, no view: the record (and what was rendered from it) is returned only once
        // this is committed.
        let (committed, (mut view, merge_ms, rendered), ()) = tokio::join!(
            self.audit(&event),
            merge_and_render,
            self.write_flags(&watched)
        );
        committed?;
        phase("audit");
        phases.push(("merge", merge_ms));
        view.phases = phases;
        timer.outcome("permit");
        tracing::info!(
            correlation = %ctx.correlation_id,
            sources = view.record.sources.len(),
            failed = view.record.failed_sources().count(),
            items = view.record.item_count(),
            "view served"
        );
        Ok((ViewOutcome::Record(Box::new(view)), Some(rendered)))
    }

    /// What the record view says about pairs in the matching queue that name this patient.
    fn identity_warnings(
        &self,
        reviews: Result<Vec<mcr_store::MatchCandidateRow>, mcr_store::StoreError>,
    ) -> Vec<String> {
        let Ok(reviews) = reviews else {
            tracing::warn!("matching queue unreadable: the view says so");
            return vec!["Whether any record is waiting for an identity check could not be read: if something looks wrong, check the person's details with them.".into()];
        };
        let org = |source: &mcr_domain::SourceId| {
            self.federation
                .sources()
                .find(|s| s.id() == source)
                .map_or_else(
                    || source.to_string(),
                    |s| s.config().organisation.name.clone(),
                )
        };
        let mut out: Vec<String> = Vec::new();
        for r in reviews {
            let sentence = if r.kind == "possible-wrong-nhs-number" {
                format!("Possible wrong NHS number: a record at {} carries this NHS number, but the name, date of birth or sex recorded there do not match this person. It is not shown here until records staff resolve it.", org(&r.source))
            } else {
                format!("A record at {} may belong to this person and is waiting for records staff to check it. It is not shown here.", org(&r.source))
            };
            if !out.contains(&sentence) {
                out.push(sentence);
            }
        }
        out
    }

    fn request<'a>(
        &self,
        ctx: &'a RequestContext,
        nhs: &'a NhsNumber,
        inputs: &'a crate::inputs::Inputs,
    ) -> DecisionRequest<'a> {
        DecisionRequest {
            principal: &ctx.principal,
            patient: nhs,
            purpose: Purpose::DirectCare,
            now: self.clock.now(),
            relationships: &inputs.relationships,
            permissions: &inputs.permissions,
            objection: inputs.objection.as_ref(),
            emergency: inputs.emergency.as_ref(),
        }
    }

    /// Rules 1 to 5 (purpose, organisation kind, membership, suspension, role), decided before
    /// anything about the patient is read, so a caller they refuse learns nothing about who
    /// the region holds. A refusal is audited as the full decision would audit it.
    async fn refuse_caller(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
        action: &'static str,
    ) -> Result<Option<Explanation>, GatewayError> {
        let Some(refused) =
            mcr_policy::refuse_caller(&ctx.principal, Purpose::DirectCare, &self.policy)
        else {
            return Ok(None);
        };
        self.metrics.decision(action, refused.decision.code());
        let mut event = self.event(ctx, action, Some(nhs.as_str()));
        event.outcome = refused.decision.code().to_owned();
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
        action: &str,
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
    async fn not_found(&self, ctx: &RequestContext, nhs: &NhsNumber, action: &str) -> GatewayError {
        let mut event = self.event(ctx, action, Some(nhs.as_str()));
        event.outcome = "not-found".into();
        match self.audit(&event).await {
            Ok(_) => GatewayError::PatientNotFound,
            Err(e) => e,
        }
    }

    /// The store could not be read: deny, and try to say so in the audit trail.
    pub(crate) async fn fail_closed(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
        action: &str,
    ) -> GatewayError {
        tracing::error!(correlation = %ctx.correlation_id, "store unavailable: failing closed");
        let mut event = self.event(ctx, action, Some(nhs.as_str()));
        event.outcome = "deny".into();
        event.basis = Some(mcr_policy::DenyCode::DecisionUnavailable.as_str().into());
        match self.audit(&event).await {
            Ok(_) => GatewayError::StoreUnavailable,
            Err(e) => e,
        }
    }
}
