//! Viewing a record: the path of one view, top to bottom.

use crate::{Gateway, GatewayError, RequestContext};
use mcr_audit::SourceAudit;
use mcr_audit::{Action, Outcome};
use mcr_domain::{DataClass, MergedRecord, NhsNumber, Purpose};
use mcr_federation::{Location, SourceFetch};
use mcr_policy::{Basis, Decision, DecisionRequest, Explanation};
use std::collections::BTreeSet;
use std::future::Future as _;
use tracing::Instrument;

/// A record that may be shown, and the audit record that says so.
#[derive(Debug, Clone)]
pub struct View {
    pub record: MergedRecord,
    pub basis: Basis,
    /// Data classes this view was granted.
    pub classes: BTreeSet<DataClass>,
    /// How long each source took in this view (for the `Server-Timing` header; no patient data).
    pub timings: Vec<crate::SourceTiming>,
    /// Where the gateway's time went, milliseconds, one entry per phase span of the view:
    /// `access` (index, governance inputs, decision), `fetch` (sources asked, answers read and
    /// digested), `merge`, then `audit` (from the audit record's submission until it is
    /// committed, the caller's rendering running beside it). Complete once
    /// [`PendingView::committed`] returns.
    pub phases: Vec<(&'static str, f64)>,
    /// Open questions about who this record belongs to (patient matching), one sentence each:
    /// a record elsewhere carrying this NHS number whose person does not match it, or a record
    /// that may be this person's awaiting review. Never another person's details.
    pub identity_warnings: Vec<String>,
}

/// A permitted view whose audit record is being committed. The caller may render from
/// [`PendingView::view`] meanwhile, but sends nothing until [`PendingView::committed`] says
/// the audit record is on disk: no audit, no view.
#[derive(Debug)]
pub struct PendingView {
    view: Box<View>,
    audit: Committing,
    submitted: std::time::Instant,
    timer: crate::metrics::ViewTimer,
}

/// The audit record's commit: already over, or a task of its own (which finishes even if the
/// view is dropped, so the other records written in its batch get their answers).
#[derive(Debug)]
enum Committing {
    Done(Result<(), GatewayError>),
    Task(tokio::task::JoinHandle<Result<(), GatewayError>>),
}

impl PendingView {
    /// The record, to render while the audit record commits.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// Wait for the audit record. The record is handed over only once it is committed, and
    /// never if that failed.
    pub async fn committed(mut self) -> Result<Box<View>, GatewayError> {
        let committed = match &mut self.audit {
            Committing::Done(done) => std::mem::replace(done, Ok(())),
            Committing::Task(task) => match task.await {
                Ok(committed) => committed,
                Err(_) => Err(GatewayError::AuditUnavailable),
            },
        };
        committed?;
        let audit_ms = self.submitted.elapsed().as_secs_f64() * 1000.0;
        self.view.phases.push(("audit", audit_ms));
        self.timer.outcome("permit");
        Ok(self.view)
    }
}

#[derive(Debug)]
pub enum ViewOutcome {
    /// Permitted: the record, released once its audit record is committed.
    Record(PendingView),
    /// Not permitted now: needs permission, needs a relationship, or denied (already audited).
    NotPermitted(Decision),
}

/// Times the phases of one view: each phase is a `tracing` span, and its duration goes to
/// [`View::phases`] (hence `Server-Timing`).
pub(crate) struct Phases {
    /// When the view began: the sources' deadline counts from here (the clinician's wait).
    pub(crate) began: std::time::Instant,
    lap: std::time::Instant,
    pub(crate) done: Vec<(&'static str, f64)>,
}

impl Phases {
    pub(crate) fn start() -> Self {
        let now = std::time::Instant::now();
        Self {
            began: now,
            lap: now,
            done: Vec::with_capacity(5),
        }
    }

    /// The span of the phase that starts now.
    pub(crate) fn span(name: &'static str) -> tracing::Span {
        tracing::info_span!("phase", name)
    }

    /// The phase `name` ends now.
    pub(crate) fn end(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.done
            .push((name, (now - self.lap).as_secs_f64() * 1000.0));
        self.lap = now;
    }
}

/// What a view of a restricted patient says, in the view and in its audit record.
pub const LOCATION_WITHHELD: &str = "address withheld: restricted record";

/// What the access phase decided.
pub(crate) enum Access<'a> {
    Granted(Box<Granted<'a>>),
    Refused(Decision),
}

/// A granted view, ready to fetch.
pub(crate) struct Granted<'a> {
    pub(crate) grant: mcr_policy::Grant,
    pub(crate) locations: Vec<Location>,
    /// Identity tokens signed while the decision's inputs were read.
    pub(crate) ahead: mcr_federation::SignedAhead<'a>,
    pub(crate) watched: crate::watch::Watched,
    /// The patient as the index holds them.
    pub(crate) patient: mcr_store::IndexedPatient,
    /// The index's status says the patient is restricted.
    pub(crate) restricted: bool,
    /// What the decision was made from, to decide again if a source labels the patient
    /// restricted when asked.
    pub(crate) inputs: crate::inputs::Inputs,
    /// Pairs in the matching queue naming this NHS number, read with the decision's inputs
    /// and said only in the view the decision permits.
    pub(crate) reviews: Vec<mcr_store::MatchCandidateRow>,
}

/// What the fetch phase brought back.
struct Fetched {
    fetches: Vec<SourceFetch>,
    timings: Vec<crate::SourceTiming>,
    identity_warnings: Vec<String>,
}

impl Gateway {
    /// The decision for this user and patient with every rule that led to it, without
    /// fetching anything. Audited like any other access decision.
    pub async fn explain(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
    ) -> Result<Explanation, GatewayError> {
        if let Some(refused) = self.refuse_caller(ctx, nhs, Action::ExplainAccess).await? {
            return Ok(refused);
        }
        // An unknown patient is refused (and audited) here; what the index holds is not a
        // relationship, so only the governance records are read for the decision.
        self.locate(ctx, nhs, Action::ExplainAccess).await?;
        let inputs = match self.load_inputs(ctx, nhs).await {
            Ok(i) => i,
            Err(_) => return Err(self.fail_closed(ctx, nhs, Action::ExplainAccess).await),
        };
        let explanation = mcr_policy::explain(&self.request(ctx, nhs, &inputs), &self.policy);
        self.metrics
            .decision(Action::ExplainAccess, explanation.decision.code());
        let mut event = self.event(ctx, Action::ExplainAccess, Some(nhs.as_str()));
        event.outcome = crate::decision_outcome(&explanation.decision);
        event.detail = Some(explanation.decision.sentence());
        self.audit(&event).await?;
        Ok(explanation)
    }

    /// View a patient's record, one way down: decide, fetch with the grant's filter, submit
    /// the audit record, merge. Each step is a phase span. A permitted record comes back as a
    /// [`PendingView`]: the caller renders it while the audit record commits, and sends it
    /// once it has.
    pub async fn view_record(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
    ) -> Result<ViewOutcome, GatewayError> {
        let span = tracing::info_span!("view-record", correlation = %ctx.correlation_id);
        async {
            let mut phases = Phases::start();
            let mut timer = crate::metrics::ViewTimer::start(self.metrics.clone());
            let access = self
                .decide_view(ctx, nhs)
                .instrument(Phases::span("access"))
                .await;
            let Granted {
                grant,
                locations,
                ahead,
                mut watched,
                restricted,
                inputs,
                reviews,
                ..
            } = match access {
                Ok(Access::Granted(granted)) => *granted,
                Ok(Access::Refused(decision)) => {
                    timer.outcome(decision.code());
                    return Ok(ViewOutcome::NotPermitted(decision));
                }
                Err((outcome, e)) => {
                    timer.outcome(outcome);
                    return Err(e);
                }
            };
            phases.end("access");

            let filter = grant.filter(&self.policy, self.agreements(), self.clock.now());
            let fetched = self
                .fetch(&filter, &locations, ahead, phases.began, reviews)
                .instrument(Phases::span("fetch"))
                .await;
            phases.end("fetch");
            // Restricted: as PDS (or a source's label at the last sync) said, read with the
            // decision's inputs, or as a source labels its Patient now. Labelled now: the
            // index is told (so the next view decides with it before asking any source) and
            // the decision is made again with it, before anything leaves.
            let labelled_now = !restricted
                && fetched
                    .fetches
                    .iter()
                    .any(mcr_federation::SourceFetch::labels_patient_restricted);
            if labelled_now {
                if let Some(refused) = self
                    .restricted_when_asked(ctx, nhs, inputs, &grant, &mut watched)
                    .await?
                {
                    timer.outcome(refused.code());
                    return Ok(ViewOutcome::NotPermitted(refused));
                }
            }
            let restricted = restricted || labelled_now;

            // The audit record needs only what each source sent (counted as the merge will
            // count it), so it is submitted now and commits while the record is merged and the
            // caller renders it.
            let mut event = self.event(ctx, Action::ViewRecord, Some(nhs.as_str()));
            event.outcome = Outcome::Permit;
            event.basis = Some(grant.basis().code().to_owned());
            event.detail = Some(grant.basis().describe());
            if restricted {
                event.detail = Some(format!("{}; {LOCATION_WITHHELD}", grant.basis().describe()));
            }
            event.sources = fetched.fetches.iter().map(source_audit).collect();
            let submitted = std::time::Instant::now();
            let gateway = self.clone();
            let mut audit = Box::pin(
                async move {
                    let (committed, ()) =
                        tokio::join!(gateway.audit(&event), gateway.write_flags(&watched));
                    committed.map(|_| ())
                }
                .instrument(Phases::span("audit")),
            );
            // Its first step here and now: the record is handed to the store's thread, which
            // commits it while the record is merged and rendered. The rest is a task of its
            // own. Spawned first, the audit waited in this worker's next-task slot until this
            // task yielded, and yielding to it moved the merge to the other core: both cost
            // more than this step.
            let audit =
                match std::future::poll_fn(|cx| std::task::Poll::Ready(audit.as_mut().poll(cx)))
                    .await
                {
                    std::task::Poll::Ready(done) => Committing::Done(done),
                    std::task::Poll::Pending => Committing::Task(tokio::spawn(audit)),
                };

            let mut record =
                Phases::span("merge").in_scope(|| mcr_federation::merge(&filter, fetched.fetches));
            if restricted {
                record.withhold_location();
                record.withhold_practice_names(&self.practices_of(&locations));
            }
            phases.end("merge");
            tracing::info!(
                sources = record.sources.len(),
                failed = record.failed_sources().count(),
                items = record.item_count(),
                "view merged"
            );
            Ok(ViewOutcome::Record(PendingView {
                view: Box::new(View {
                    basis: grant.basis().clone(),
                    classes: grant.data_classes().clone(),
                    record,
                    timings: fetched.timings,
                    phases: phases.done,
                    identity_warnings: fetched.identity_warnings,
                }),
                audit,
                submitted,
                timer,
            }))
        }
        .instrument(span)
        .await
    }

    /// The access phase: refuse who may never look, read the patient and their governance
    /// records (signing the sources' identity tokens meanwhile), decide, and watch. Every
    /// refusal is audited here; an error names the outcome the view's metrics record.
    pub(crate) async fn decide_view<'a>(
        &'a self,
        ctx: &'a RequestContext,
        nhs: &'a NhsNumber,
    ) -> Result<Access<'a>, (&'static str, GatewayError)> {
        let error = |e| ("error", e);
        // Who may never look is refused before the index is read: the same answer whether or
        // not the region holds this NHS number.
        if let Some(refused) = self
            .refuse_caller(ctx, nhs, Action::ViewRecord)
            .await
            .map_err(error)?
        {
            return Ok(Access::Refused(refused.decision));
        }
        // The patient, their sources and their governance records: one statement, one
        // snapshot. The identity tokens the fetch will send are signed meanwhile; they are
        // used only if the decision grants this very request.
        let p = &ctx.principal;
        let who = mcr_federation::Requester {
            user_id: &p.user_id,
            role: p.role,
            org_code: &p.organisation.code,
            purpose: Purpose::DirectCare,
            patient: nhs,
        };
        let (read, ahead) = self
            .federation
            .sign_while(who, self.store.view_inputs(nhs))
            .await;
        let Ok(read) = read else {
            return Err(error(self.fail_closed(ctx, nhs, Action::ViewRecord).await));
        };
        let Some(patient) = read.patient else {
            return Err(error(self.not_found(ctx, nhs, Action::ViewRecord).await));
        };
        let Ok(mut inputs) = self.inputs_from(ctx, &read.governance) else {
            return Err(error(self.fail_closed(ctx, nhs, Action::ViewRecord).await));
        };
        inputs.restricted = read.restricted;
        let decision = mcr_policy::decide(&self.request(ctx, nhs, &inputs), &self.policy);
        self.metrics.decision(Action::ViewRecord, decision.code());
        let grant = match decision {
            Decision::Permit(grant) => grant,
            other => {
                self.audit_refusal(ctx, nhs, Action::ViewRecord, &other)
                    .await
                    .map_err(error)?;
                return Ok(Access::Refused(other));
            }
        };
        // The watch: counted in the store and checked; over its hard limit the view stops
        // here, audited as a refusal. Its flags are committed beside the view's own audit
        // record. Not counted (the store failed): fail closed.
        let Ok(mut watched) = self.watch_view(ctx, nhs, &patient).await else {
            return Err(error(self.fail_closed(ctx, nhs, Action::ViewRecord).await));
        };
        if inputs.restricted {
            self.flag_emergency_restricted(ctx, nhs, &grant, &mut watched);
        }
        if watched.refusal.is_some() {
            return Err((
                "too-many-patients",
                self.refuse_watched(ctx, nhs, watched).await,
            ));
        }
        let locations = read
            .links
            .iter()
            .map(|l| Location {
                source: l.source.clone(),
                local_id: l.local_id.clone(),
                registered_practice: patient.gp_practice.clone(),
            })
            .collect();
        Ok(Access::Granted(Box::new(Granted {
            grant,
            locations,
            ahead,
            watched,
            patient,
            restricted: inputs.restricted,
            inputs,
            reviews: read.match_candidates,
        })))
    }

    /// Emergency access to a restricted patient: permitted, and always flagged for review.
    fn flag_emergency_restricted(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
        grant: &mcr_policy::Grant,
        watched: &mut crate::watch::Watched,
    ) {
        if !matches!(grant.basis(), Basis::Emergency { .. }) {
            return;
        }
        let flag = self.restricted_flag(
            ctx,
            nhs,
            format!(
                "Viewed a restricted (S-flagged) patient's record by emergency access as {} (roles this region lets view restricted records: {}).",
                ctx.principal.role.label(),
                self.policy.restricted_roles_words()
            ),
        );
        watched.add_flag(flag, crate::WatchRule::RestrictedRecord);
    }

    /// Tell the index a source labels the patient restricted (a `source-label` status, as
    /// the sync writes it), so the next view decides with it before asking any source.
    pub(crate) async fn remember_restricted(
        &self,
        nhs: &NhsNumber,
    ) -> Result<(), mcr_store::StoreError> {
        let status = mcr_store::PatientStatusRow {
            nhs_number: nhs.clone(),
            restricted: true,
            deceased: None,
            said_by: "source-label".into(),
            updated_at: self.clock.now(),
        };
        self.store.put_patient_statuses(&[status]).await
    }

    /// A source labelled the patient restricted when asked, though the index did not hold
    /// them so: the index is told (a `source-label` status, as the sync would write), and
    /// the decision is made again as rule 7 makes it for a restricted patient. A refusal is
    /// audited and flagged (with the view's other flags) and returned; the sources' answers
    /// are then dropped unshown. A permit by emergency access is flagged for review. If the
    /// index cannot be told, the view fails closed (the store is failing: its audit record
    /// could not be trusted to commit either).
    async fn restricted_when_asked(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
        mut inputs: crate::inputs::Inputs,
        grant: &mcr_policy::Grant,
        watched: &mut crate::watch::Watched,
    ) -> Result<Option<Decision>, GatewayError> {
        if self.remember_restricted(nhs).await.is_err() {
            return Err(self.fail_closed(ctx, nhs, Action::ViewRecord).await);
        }
        inputs.restricted = true;
        let decision = mcr_policy::decide(&self.request(ctx, nhs, &inputs), &self.policy);
        if matches!(decision, Decision::Permit(_)) {
            self.flag_emergency_restricted(ctx, nhs, grant, watched);
            return Ok(None);
        }
        self.metrics.decision(Action::ViewRecord, decision.code());
        let (refused, ()) = tokio::join!(
            self.audit_refusal(ctx, nhs, Action::ViewRecord, &decision),
            self.write_flags(watched)
        );
        refused?;
        Ok(Some(decision))
    }

    /// The fetch phase: every located source at once, each resource filtered by the grant
    /// as it arrives. The matching queue's questions about this NHS number (`reviews`, read
    /// with the decision's inputs) are said only now the view is granted, so a refused caller
    /// learns nothing of them.
    async fn fetch(
        &self,
        filter: &mcr_policy::ResourceFilter<'_>,
        locations: &[Location],
        ahead: mcr_federation::SignedAhead<'_>,
        started: std::time::Instant,
        reviews: Vec<mcr_store::MatchCandidateRow>,
    ) -> Fetched {
        let fetches = self
            .federation
            .fetch_record(filter, locations, started, ahead)
            .await;
        Fetched {
            timings: self.metrics.sources(&fetches),
            identity_warnings: self.identity_warnings(&reviews),
            fetches,
        }
    }

    /// The GP practices a view of a restricted patient could name: the GP systems asked, and
    /// the registered practice the index holds.
    pub(crate) fn practices_of(&self, locations: &[Location]) -> BTreeSet<mcr_domain::OdsCode> {
        self.federation
            .sources()
            .map(|s| &s.config().organisation)
            .filter(|o| o.kind == mcr_domain::OrgKind::GpPractice)
            .map(|o| o.code.clone())
            .chain(
                locations
                    .iter()
                    .filter_map(|l| l.registered_practice.as_deref())
                    .filter_map(|c| mcr_domain::OdsCode::parse(c).ok()),
            )
            .collect()
    }

    /// Each source's data sharing agreement with the region (none: shares everything).
    pub(crate) fn agreements(
        &self,
    ) -> impl Iterator<Item = (mcr_domain::SourceId, Option<&mcr_policy::SharingAgreement>)> {
        self.federation.sources().map(|s| {
            (
                s.id().clone(),
                self.sharing_for(&s.config().organisation.code),
            )
        })
    }

    /// What the record view says about pairs in the matching queue that name this patient.
    pub(crate) fn identity_warnings(
        &self,
        reviews: &[mcr_store::MatchCandidateRow],
    ) -> Vec<String> {
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
            restricted: inputs.restricted,
        }
    }
}

/// What one source added to the view, for its audit record.
pub(crate) fn source_audit(f: &SourceFetch) -> SourceAudit {
    let counts = f.counts();
    SourceAudit {
        source: f.source.to_string(),
        org_code: f.org_code.to_string(),
        status: match (&f.outcome, &f.cut_short) {
            (Ok(_), None) => "ok".into(),
            (Ok(_), Some(cut)) => format!("partial-{}", cut.code()),
            (Err(r), _) => r.code().into(),
        },
        items: counts.kept,
        withheld: counts.withheld,
        not_tied: counts.untied + counts.another_patient,
        not_shown: counts.not_shown,
        // Said only of a source that answered, as the view says it.
        unsearchable: if f.outcome.is_ok() {
            f.unsearchable.iter().map(|u| u.code().to_owned()).collect()
        } else {
            Vec::new()
        },
    }
}
