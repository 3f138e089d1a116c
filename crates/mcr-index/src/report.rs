//! What an index sync reports (no patient data): per source, what was read, linked, sent to
//! review, rejected and kept ([`SourceSyncReport`]); and the demographic matching pass
//! ([`MatchingPass`]): how many records it matched, what it read and compared, how long each
//! part took, the local identities it left open or resolved, and which weights it used.

use mcr_domain::FailureReason;
use serde::Serialize;

/// Which weights a matching pass used.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum WeightsUsed {
    /// The configured weights (`[matching] weights = "configured"`).
    #[default]
    Configured,
    /// Weights estimated from this pass's pairs (`"estimated"`): each level's m, u and weight.
    Estimated(Box<crate::estimate::Estimated>),
    /// Estimated weights were asked for but could not be made (the reason says why): the
    /// configured weights were used.
    ConfiguredNotEstimated { reason: String },
}

impl WeightsUsed {
    /// `configured`, `estimated` or `configured-not-estimated` (as serialised).
    pub fn kind(&self) -> &'static str {
        match self {
            WeightsUsed::Configured => "configured",
            WeightsUsed::Estimated(_) => "estimated",
            WeightsUsed::ConfiguredNotEstimated { .. } => "configured-not-estimated",
        }
    }
}

/// What the matching pass did and how long it took (no patient data).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MatchingPass {
    /// Records matched against the index (without an NHS number, or with a wrong one).
    pub records: usize,
    /// Index patients read.
    pub index_patients: u64,
    /// Pairs compared (after blocking).
    pub comparisons: u64,
    /// Wall time of the pass, reads and writes included, milliseconds.
    pub millis: u64,
    /// Of which: reading the index and comparing, before anything is written (estimating
    /// the weights included).
    pub compare_millis: u64,
    /// Local identities open after the pass (made from records with no NHS number that
    /// matched nobody, not yet found to have one).
    pub local_identities_open: usize,
    /// Local identities resolved to an NHS number in this pass (their links moved there).
    pub local_identities_resolved: usize,
    /// Links those resolutions moved.
    pub links_moved: u64,
    /// Of which: estimating the weights (a read of the index of its own), when estimated.
    pub estimate_millis: u64,
    /// The weights the pass matched with.
    pub weights: WeightsUsed,
}

/// What one sync did for one source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SourceSyncReport {
    pub source: String,
    pub seen: usize,
    pub linked_by_nhs_number: usize,
    pub linked_by_demographics: usize,
    /// Records sent to review because two candidates were too close to call.
    pub ambiguous: usize,
    /// Records sent to review for any other reason: a score between the thresholds, or a
    /// safety rule (possible twin, possible parent/child namesake) holding back a link.
    pub review: usize,
    /// Records whose NHS number the index holds for someone else (given name, birth date or
    /// sex disagree outright): not linked by it, sent to review.
    pub possible_wrong_nhs_number: usize,
    /// Links removed because the record, read again, no longer matches its patient.
    pub stale_links_removed: u64,
    /// Records without an NHS number that matched nobody (each became a local identity, or
    /// joined one made in this sync).
    pub unmatched: usize,
    /// Local identities made from this source's records (no NHS number, matched nobody, not
    /// sent to review).
    pub local_identities: usize,
    /// Records linked to a local identity made before, or earlier in this sync (a record a
    /// local identity was made from, read again, counted too).
    pub linked_to_local_identity: usize,
    /// Records that could not be read (no id, no birth date, no name).
    pub rejected: usize,
    /// Records carrying an NHS number merged into another: linked to the survivor (their
    /// demographics are not written to the index).
    pub merged_redirected: usize,
    pub failed: Option<FailureReason>,
    /// GP registrations kept (GP systems).
    pub registrations: usize,
    /// GP records naming a practice but no registration period: no relationship comes of them.
    pub registrations_without_period: usize,
    /// Care events kept (other sources).
    pub care_events: usize,
    /// Care events the source withdrew (entered in error, cancelled), removed if kept before.
    pub care_events_withdrawn: usize,
    /// Care events for a patient the index does not link: not kept.
    pub care_events_unlinked: usize,
    /// Care-event resources that are not a relationship (planned, unreadable).
    pub care_events_skipped: usize,
    /// The care-event read failed part way (what was read is kept).
    pub care_events_failed: Option<FailureReason>,
    /// Records the index could not link, traced against PDS (when `[pds]` is configured).
    pub pds: crate::pds::TraceCounts,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SyncReport {
    pub sources: Vec<SourceSyncReport>,
    /// The demographic matching pass, once every source is in.
    pub matching: MatchingPass,
}
