//! The patient index (record locator): for each NHS number, which sources hold the patient
//! and under which local id, plus the demographics needed to find them.
//!
//! Built by reading every source's `Patient` resources ([`Indexer::sync`], full or
//! incremental). GP systems are read first (their demographics replace what is held), then
//! the other sources at once. A source record carrying an NHS number is linked by it, unless
//! the index already holds that number for someone whose given name, birth date or sex
//! disagree outright ([`matching::wrong_nhs_number`]): then it is not linked but sent to review
//! as a possible wrong NHS number. Records without an NHS number are matched probabilistically
//! ([`matching`], [`linkage`]) against the whole index once every source is in: linked above
//! the upper threshold, sent to review between the thresholds or when a safety rule (twins,
//! parent/child namesakes, two candidates too close to call) holds them back, left unmatched
//! below. A record that no longer matches loses its old link. What people decided about a pair
//! ("not a match", "link") is never overridden by a sync.
//!
//! With the sync it reads care-event metadata ([`care_events`]): GP registrations from the GP
//! systems' `Patient`s, and from other sources the Encounter, EpisodeOfCare, ServiceRequest,
//! Appointment and CareTeam resources their configuration lists, ending within the policy's
//! window or open: status, period, organisation, ward and team only.
//!
//! This crate keeps demographics, links and care-event times only, never clinical data, and
//! never logs names, dates of birth or NHS numbers.
//!
//! The sync's steps each have a file: `sync` (one sync at a time under a lease, the order of
//! the sources, the reports), `patient_feed` (a source's `Patient`s page by page, linked by
//! NHS number), `demographic_pass` (the records without one handed to [`linkage`] once every
//! source is in) and `care_event_feed` (the care-event metadata, read with [`care_events`]).

mod care_event_feed;
pub mod care_events;
mod demographic_pass;
pub mod estimate;
pub mod linkage;
mod local_identity;
pub mod matching;
mod parse;
mod patient_feed;
pub mod pds;
mod report;
mod sync;

pub use parse::{parse_patient, SourcePatient};
pub use report::{MatchingPass, SourceSyncReport, SyncReport, WeightsUsed};

use matching::{Weights, WeightsMode};
use mcr_domain::{Clock, NhsNumber, SourceId};
use mcr_federation::Federation;
use mcr_store::{SourceLink, Store, StoreError};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The store lease one index sync at a time holds ([`Indexer::sync_once`]).
pub const SYNC_LEASE: &str = "index-sync";
/// How long the lease lasts unless renewed (it is renewed every third of this).
pub const SYNC_LEASE_MS: i64 = 60_000;

#[derive(Debug, Clone)]
pub struct Indexer {
    federation: Arc<Federation>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Care events that ended more than this many days ago are not read.
    care_event_days: u32,
    /// Match weights and thresholds (the configured ones, and EM's starting point).
    weights: Arc<Weights>,
    /// Match with `weights`, or with weights estimated from each pass's own pairs.
    weights_mode: WeightsMode,
    /// Where records the index cannot link are traced (`[pds]`), if anywhere, and where each
    /// trace is audited.
    pds: Option<(Arc<pds::PdsClient>, Arc<dyn pds::TraceAudit>)>,
}

/// How many rows go to the store per batch.
pub(crate) const BATCH: usize = 2_000;

impl Indexer {
    pub fn new(federation: Arc<Federation>, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            federation,
            store,
            clock,
            care_event_days: 90,
            weights: Arc::new(Weights::default()),
            weights_mode: WeightsMode::Configured,
            pds: None,
        }
    }

    /// Trace the records the index cannot link against the Personal Demographics Service,
    /// each trace audited through `audit` before what it found is written.
    pub fn with_pds(mut self, pds: Arc<pds::PdsClient>, audit: Arc<dyn pds::TraceAudit>) -> Self {
        self.pds = Some((pds, audit));
        self
    }

    /// Match with these weights and thresholds instead of the defaults.
    pub fn with_weights(mut self, weights: Weights) -> Self {
        self.weights = Arc::new(weights);
        self
    }

    /// Match with the configured weights, or estimate them from the data at each pass
    /// ([`estimate`]).
    pub fn with_weights_mode(mut self, mode: WeightsMode) -> Self {
        self.weights_mode = mode;
        self
    }

    /// Read care events that ended up to `days` ago (the longest relationship window).
    pub fn with_care_event_days(mut self, days: u32) -> Self {
        self.care_event_days = days;
        self
    }

    /// Where a patient is held, by source.
    pub async fn locate(&self, nhs: &NhsNumber) -> Result<Vec<SourceLink>, StoreError> {
        self.store.links(nhs).await
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

/// The source ids a patient is linked in, for logs and reports.
pub fn source_ids(links: &[SourceLink]) -> Vec<SourceId> {
    links.iter().map(|l| l.source.clone()).collect()
}
