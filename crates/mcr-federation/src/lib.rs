//! Federation: ask every source that holds a patient at once, each with a deadline and a size
//! cap, and merge what comes back into one record with the source of every item.
//!
//! The only way to fetch a patient's clinical data is [`Federation::fetch_record`], which
//! takes a [`mcr_policy::Grant`]: no grant, no request. Only the resource types of the data
//! classes in the grant are asked for, and items outside it are dropped before merge.
//! [`Federation::patient_feed`] reads `Patient` resources only, for the patient index.
//!
//! This crate must never persist anything it receives, nor log clinical content or patient
//! identifiers; a source's answer is untrusted input (slow, wrong, huge or hostile) and a
//! failing source becomes a [`FailureReason`] in the record, never an error of the whole view.

mod client;
pub mod identity;
mod merge;

pub use client::{
    Digest, FederationConfig, Fetched, HttpSource, Location, Received, Source, SourceConfig,
    SourceFetch,
};
pub use identity::IdentitySigner;
pub use merge::{merge, Digested, MergeInput, SourceMeta};

use futures::future::join_all;
use mcr_domain::{DataClass, FailureReason, SourceId};
use mcr_policy::Grant;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The configured sources and how to ask them.
#[derive(Debug, Clone)]
pub struct Federation {
    sources: BTreeMap<SourceId, Arc<dyn Source>>,
    order: Vec<SourceId>,
    config: FederationConfig,
}

/// The resource types that carry each data class.
pub fn resource_types_for(class: DataClass) -> &'static [&'static str] {
    match class {
        DataClass::Demographics => &["Patient"],
        DataClass::CareTeam => &["EpisodeOfCare", "CareTeam"],
        DataClass::Alerts => &["Flag"],
        DataClass::Allergies => &["AllergyIntolerance"],
        DataClass::Problems => &["Condition"],
        DataClass::Medications => &["MedicationStatement", "MedicationRequest"],
        DataClass::Encounters => &["Encounter"],
        DataClass::Results => &["Observation", "DiagnosticReport"],
        DataClass::Documents | DataClass::Assessments => &["DocumentReference"],
        DataClass::CarePlans => &["CarePlan"],
        DataClass::KeyContacts => &["RelatedPerson"],
    }
}

impl Federation {
    pub fn new(sources: Vec<Arc<dyn Source>>, config: FederationConfig) -> Self {
        let order = sources.iter().map(|s| s.id().clone()).collect();
        let sources = sources.into_iter().map(|s| (s.id().clone(), s)).collect();
        Self {
            sources,
            order,
            config,
        }
    }

    pub fn config(&self) -> &FederationConfig {
        &self.config
    }

    /// Sources in configuration order.
    pub fn sources(&self) -> impl Iterator<Item = &Arc<dyn Source>> {
        self.order.iter().filter_map(|id| self.sources.get(id))
    }

    pub fn source(&self, id: &SourceId) -> Option<&Arc<dyn Source>> {
        self.sources.get(id)
    }

    /// Ask every located source at once for the granted data classes, each bounded by the
    /// deadline counted from `started` (when the view began: the clinician's wait, not the
    /// sources' alone). Each resource is digested by `input` as it arrives. Returns one
    /// [`SourceFetch`] per location, in the order given; a source that fails or is too slow is
    /// reported as such and never delays the others.
    pub async fn fetch_record(
        &self,
        grant: &Grant,
        locations: &[Location],
        input: &MergeInput<'_>,
        started: Instant,
    ) -> Vec<SourceFetch> {
        let mut types: Vec<&'static str> = Vec::new();
        for class in grant.data_classes() {
            for t in resource_types_for(*class) {
                if !types.contains(t) {
                    types.push(t);
                }
            }
        }
        if !types.contains(&"Patient") {
            // Demographics are needed to show whose record this is, even to roles that may
            // see nothing else; the merge drops them if the grant does not include them.
            types.push("Patient");
        }
        let deadline = self.config.deadline;
        let until = tokio::time::Instant::from_std(started + deadline);
        let futures = locations.iter().map(|loc| {
            let source = self.sources.get(&loc.source).cloned();
            let types = types.clone();
            async move {
                let started = Instant::now();
                let Some(source) = source else {
                    return SourceFetch::failed_unknown(&loc.source);
                };
                let wanted: Vec<&str> = types
                    .iter()
                    .copied()
                    .filter(|t| {
                        *t == "Patient" || source.config().resource_types.iter().any(|h| h == t)
                    })
                    .collect();
                let config = source.config();
                let meta = SourceMeta {
                    source: source.id(),
                    org_code: &config.organisation.code,
                    org_name: &config.organisation.name,
                    base_url: config.base_url.as_str(),
                };
                let digest = |r: Received<'_>| input.digest(&meta, r);
                let result = tokio::time::timeout_at(
                    until,
                    source.fetch_patient(grant, &loc.local_id, &wanted, &digest),
                )
                .await;
                let (outcome, source_ms) = match result {
                    Ok(Ok(fetched)) => (Ok(fetched.resources), fetched.source_ms),
                    Ok(Err(reason)) => (Err(reason), None),
                    Err(_) => (
                        Err(FailureReason::Timeout {
                            after_ms: millis(deadline),
                        }),
                        None,
                    ),
                };
                SourceFetch {
                    source: source.id().clone(),
                    org_code: source.config().organisation.code.clone(),
                    org_name: source.config().organisation.name.clone(),
                    base_url: source.config().base_url.to_string(),
                    outcome,
                    elapsed_ms: millis(started.elapsed()),
                    source_ms,
                }
            }
        });
        join_all(futures).await
    }

    /// Every `Patient` a source holds, or those changed after `since` (an instant as the
    /// source wrote `meta.lastUpdated`), for the patient index, a page at a time into `pages`
    /// as the source sends them. Demographics only. `Ok` once the last page is handed over.
    pub async fn patient_feed(
        &self,
        source: &SourceId,
        since: Option<&str>,
        pages: tokio::sync::mpsc::Sender<Vec<Value>>,
    ) -> Result<(), FailureReason> {
        let s = self
            .sources
            .get(source)
            .ok_or_else(|| FailureReason::Unreachable {
                detail: "not a configured source".into(),
            })?;
        s.patient_feed(since, self.config.sync_timeout, pages).await
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
