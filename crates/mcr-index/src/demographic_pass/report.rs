//! What a matching pass reports: how many records it matched, what it read and compared, how
//! long each part took, the local identities it left open or resolved, and which weights it
//! used (no patient data).

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
