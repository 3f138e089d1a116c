//! The gateway: one function per use case (find a patient, view a record, record permission,
//! claim a relationship, emergency access, record an objection), each reading top to bottom
//! through the steps of the brief: decide (policy), audit, locate (index), fetch and merge
//! (federation).
//!
//! Every path to clinical data goes through [`Gateway::view_record`], which cannot fetch
//! without a [`mcr_policy::Grant`] and writes the audit record before returning the record.
//! If the store cannot be read the decision is deny (fail closed); if the audit record cannot
//! be written the view is refused.
//!
//! This crate must never speak HTTP or HTML, persist clinical data, or log patient data.

mod audit;
mod authn;
mod care_events;
mod document;
mod governance;
mod inputs;
mod local_matching;
mod matching;
mod merge;
mod metrics;
mod opt_out;
mod opt_out_letter;
mod patient_choice;
mod pds_trace;
mod protected;
mod refusals;
mod search;
mod system_access;
mod view;
mod view_refused;
mod view_stream;
mod watch;

pub use audit::{
    reason_words, AccessHistory, AccessLine, Anomaly, AnomalyFlag, AuditConfig, AuditEntry,
    AuditPage, AuditScope, AuditSearch, Download, DownloadFormat, FollowingView, Review,
    ReviewFilter, ReviewItem, ReviewOutcome, ReviewQueue, DEFAULT_CHECKPOINT_INTERVAL,
};
pub use authn::{AuthFailure, PatientSignIn};
pub use care_events::{
    CareEventAction, CareEventNotice, CareEventRefusal, CARE_EVENT_PRUNE_INTERVAL,
};
pub use document::DocumentOutcome;
pub use governance::{
    check_permission_request, EmergencyRequest, ObjectionRequest, PermissionProblem,
    PermissionRequest, RelationshipClaim, LIFT_REFUSED,
};
pub use local_matching::{LocalIdentityView, LocalRecord, LocalVerdict};
pub use matching::{LocalMatchPair, MatchPair, MatchQueue, MatchVerdict, UnreadableRecords};
pub use mcr_audit::{Action, AuditEvent, AuthChannel, Outcome, RefusalKind, UnknownWord};
pub use mcr_federation::document::{DocumentCut, DocumentRefusal, OpenedDocument};
pub use mcr_federation::{Asking, IdentifierSearch, PatientSearch, SourceKind};
pub use mcr_store::OptOutKind;
pub use merge::{MergePreview, MergeSide, MERGE_REASON_MAX};
pub use metrics::{Metrics, SourceTiming};
pub use opt_out::{
    normalise_reference, MatchBasis, OptOutCandidate, OptOutCase, OptOutSubmission,
    MAX_OPT_OUT_FIELD,
};
pub use opt_out_letter::{OptOutLetter, MAX_WRONG_CODES};
pub use patient_choice::{
    ChoiceMade, Sharing, SignedInPatient, CHOICE_PROOFING_LEVEL, ONLINE_WORD,
};
pub use protected::{ProtectedCategory, ProtectedPerson};
pub use refusals::RefusalCount;
pub use search::{PatientMatch, PatientQuery};
pub use system_access::SystemTokenRequest;
pub use view::{PendingView, View, ViewOutcome, LOCATION_WITHHELD};
pub use view_stream::{Arrival, IndexedName, Opening, StreamOutcome, StreamedView};
pub use watch::counter::{
    counters_for, CounterResult, FlagClaim, FlagKey, MemoryCounters, StoreCounters, ViewCount,
    WatchCounters, WriteBehindCounters,
};
pub use watch::{
    assess, family_of, uk_local, Checked, Finding, FlagNotice, FlagSink, Seen, ViewFacts, Watch,
    WatchConfig, WatchRule, WorkingHours, EMERGENCY_KINDS,
};

use mcr_domain::{Clock, OdsCode, Organisation, Principal};
use mcr_federation::Federation;
use mcr_index::Indexer;
use mcr_policy::{PolicyConfig, SharingAgreement};
use mcr_store::Store;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Who is asking, and the id that ties their request's log lines and audit record together.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub principal: Principal,
    pub correlation_id: String,
    /// The system the request came through (a SMART backend services client's id) when the
    /// principal is the end user a system acts for; audited with every record it makes.
    pub system: Option<String>,
}

/// What went wrong, in terms the web layer maps to status codes and words.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No such patient in the index.
    #[error("no patient with that NHS number is known to My Care Record")]
    PatientNotFound,
    /// The NHS number was merged into another: the same person's record is under `survivor`.
    /// Nothing of either record is shown under the retired number.
    #[error(
        "NHS number {} was merged into NHS number {}: this person's record is under {}",
        retired.formatted(),
        survivor.formatted(),
        survivor.formatted()
    )]
    Merged {
        retired: mcr_domain::NhsNumber,
        survivor: mcr_domain::NhsNumber,
    },
    /// The request itself is wrong (e.g. a search with no family name).
    #[error("{0}")]
    Invalid(String),
    /// The user may not do this (not a view decision: e.g. searching from a private company).
    #[error("{0}")]
    Forbidden(String),
    /// The audit trail could not be written: nothing was done or shown.
    #[error("the audit trail could not be written, so nothing can be shown; try again shortly")]
    AuditUnavailable,
    /// The gateway's store could not be read.
    #[error("My Care Record cannot check access rules right now; try again shortly")]
    StoreUnavailable,
    /// The watch refused the view: the user reached the hard limit of distinct patients in
    /// its window. The sentence says why and who to contact.
    #[error("{sentence}")]
    TooManyPatients {
        sentence: String,
        retry_after_secs: u64,
    },
}

/// The member organisations and their state, as configured (and suspended) by the programme.
#[derive(Debug, Clone, Default)]
pub struct OrgRegistry {
    orgs: BTreeMap<OdsCode, Organisation>,
}

impl OrgRegistry {
    pub fn new(orgs: impl IntoIterator<Item = Organisation>) -> Self {
        Self {
            orgs: orgs.into_iter().map(|o| (o.code.clone(), o)).collect(),
        }
    }

    /// The organisation as the programme knows it. An organisation the programme has never
    /// heard of is treated as a non-member of unknown kind (deny by default).
    pub fn get(&self, code: &OdsCode) -> Option<&Organisation> {
        self.orgs.get(code)
    }

    pub fn all(&self) -> impl Iterator<Item = &Organisation> {
        self.orgs.values()
    }
}

/// Everything one use case needs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Gateway {
    store: Arc<dyn Store>,
    federation: Arc<Federation>,
    indexer: Indexer,
    clock: Arc<dyn Clock>,
    policy: Arc<PolicyConfig>,
    orgs: Arc<OrgRegistry>,
    sharing: Arc<Vec<SharingAgreement>>,
    metrics: Arc<Metrics>,
    audit_config: Arc<AuditConfig>,
    watch: Arc<watch::Watch>,
}

impl Gateway {
    pub fn new(
        store: Arc<dyn Store>,
        federation: Arc<Federation>,
        clock: Arc<dyn Clock>,
        policy: PolicyConfig,
        orgs: OrgRegistry,
    ) -> Self {
        // Care events are read as far back as the longest relationship window.
        let longest = policy
            .relationship_windows
            .values()
            .copied()
            .fold(policy.relationship_recent_days, u32::max);
        let indexer = Indexer::new(federation.clone(), store.clone(), clock.clone())
            .with_care_event_days(longest);
        let counters = watch::counter::counters_for(store.clone());
        Self {
            store,
            federation,
            indexer,
            clock,
            policy: Arc::new(policy),
            orgs: Arc::new(orgs),
            sharing: Arc::new(Vec::new()),
            metrics: Arc::new(Metrics::new()),
            audit_config: Arc::new(AuditConfig::default()),
            watch: Arc::new(
                watch::Watch::new(watch::WatchConfig::default()).with_counters(counters),
            ),
        }
    }

    /// Trace the records the index cannot link against the Personal Demographics Service,
    /// every trace audited (`pds-trace`) before what it found is written.
    pub fn with_pds(mut self, pds: Arc<mcr_index::pds::PdsClient>) -> Self {
        let audit = pds_trace::TraceAuditor {
            store: self.store.clone(),
            clock: self.clock.clone(),
        };
        self.indexer = self.indexer.with_pds(pds, Arc::new(audit));
        self
    }

    /// Match records without an NHS number with the configured weights or with weights
    /// estimated from each sync's own pairs (`[matching] weights`).
    pub fn with_match_weights(mut self, mode: mcr_index::matching::WeightsMode) -> Self {
        self.indexer = self.indexer.with_weights_mode(mode);
        self
    }

    /// Source organisations' data sharing agreements (absent: shares everything).
    pub fn with_sharing(mut self, agreements: Vec<SharingAgreement>) -> Self {
        self.sharing = Arc::new(agreements);
        self
    }

    pub(crate) fn sharing_for(&self, source_org: &OdsCode) -> Option<&SharingAgreement> {
        self.sharing.iter().find(|a| &a.source_org == source_org)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Read every source's CapabilityStatement now and put what each said in the metrics;
    /// how many were read.
    pub async fn discover_capabilities(&self) -> usize {
        let read = self.federation.discover(self.clock.now()).await;
        for (source, d) in self.federation.discovered() {
            self.metrics.capabilities(source.id().as_str(), &d);
            self.metrics
                .asking(source.id().as_str(), &self.federation.asking(&**source));
        }
        read
    }

    pub fn federation(&self) -> &Arc<Federation> {
        &self.federation
    }

    pub fn indexer(&self) -> &Indexer {
        &self.indexer
    }

    pub fn policy(&self) -> &PolicyConfig {
        &self.policy
    }

    pub fn orgs(&self) -> &OrgRegistry {
        &self.orgs
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The gateway's Prometheus series (`GET /metrics`).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Write one audit event; any failure becomes [`GatewayError::AuditUnavailable`].
    pub(crate) async fn audit(
        &self,
        event: &mcr_audit::AuditEvent,
    ) -> Result<mcr_store::AuditRow, GatewayError> {
        let row = self.timed_append(event).await.map_err(|e| {
            tracing::error!(error = %e, "audit append failed: refusing");
            GatewayError::AuditUnavailable
        })?;
        self.after_append(&row).await;
        Ok(row)
    }

    /// The skeleton of an audit event for this request. Its outcome is `error` until the
    /// caller sets the real one.
    pub(crate) fn event(
        &self,
        ctx: &RequestContext,
        action: Action,
        patient: Option<&str>,
    ) -> mcr_audit::AuditEvent {
        let p = &ctx.principal;
        mcr_audit::AuditEvent {
            at: self.clock.now(),
            correlation_id: ctx.correlation_id.clone(),
            user_id: p.user_id.clone(),
            user_name: p.name.clone(),
            role: p.role.as_str().to_owned(),
            org_code: p.organisation.code.to_string(),
            org_name: p.organisation.name.clone(),
            patient: patient.map(str::to_owned),
            purpose: mcr_domain::Purpose::DirectCare.as_str().to_owned(),
            action,
            outcome: Outcome::Error,
            basis: None,
            detail: None,
            sources: Vec::new(),
            role_profile_id: p.role_profile.clone(),
            system: ctx.system.clone(),
        }
    }
}

/// The audit outcome of a policy decision.
pub(crate) fn decision_outcome(decision: &mcr_policy::Decision) -> Outcome {
    match decision {
        mcr_policy::Decision::Permit(_) => Outcome::Permit,
        mcr_policy::Decision::NeedsPermission { .. } => Outcome::NeedsPermission,
        mcr_policy::Decision::NeedsRelationship { .. } => Outcome::NeedsRelationship,
        mcr_policy::Decision::Deny(_) => Outcome::Deny,
    }
}
