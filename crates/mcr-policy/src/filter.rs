//! What a grant lets its viewer see of each resource a source sends.
//!
//! Deciding (may this user see this patient's record, and which classes) is
//! [`crate::decide`]; this is the second step, asked once per resource as it arrives: may
//! this one be shown? Only a [`Grant`] hands out a [`ResourceFilter`], so whoever fetches and
//! merges (`mcr-federation`) applies the rules without knowing them.

use crate::{Grant, PolicyConfig, SharingAgreement};
use chrono::{DateTime, Utc};
use mcr_domain::{DataClass, SourceId};
use mcr_fhir::Json;
use std::collections::{BTreeSet, HashMap};

/// What one resource is to this view ([`ResourceFilter::sight`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sight {
    /// Shown.
    Shown,
    /// Of a class the grant does not include: its section is named as not available.
    NotGranted,
    /// Withheld from every view: sensitive, confidentially labelled, or outside the source's
    /// data sharing agreement with the viewer's kind of organisation.
    Withheld,
}

/// The per-resource filter of one grant. Made only by [`Grant::filter`].
#[derive(Debug)]
pub struct ResourceFilter<'a> {
    grant: &'a Grant,
    policy: &'a PolicyConfig,
    /// Classes each source shares with the viewer (sources without an agreement share all).
    shares: HashMap<SourceId, BTreeSet<DataClass>>,
    /// For roles that see recent encounters only: the earliest date (`YYYY-MM-DD`) shown.
    encounters_since: Option<String>,
}

impl Grant {
    /// This grant's per-resource filter: `agreements` names each source's data sharing
    /// agreement (a source not named, or named with `None`, shares everything); `now` places
    /// the role's recent-encounter window.
    pub fn filter<'a, 'b>(
        &'a self,
        policy: &'a PolicyConfig,
        agreements: impl IntoIterator<Item = (SourceId, Option<&'b SharingAgreement>)>,
        now: DateTime<Utc>,
    ) -> ResourceFilter<'a> {
        let shares = agreements
            .into_iter()
            .filter_map(|(source, agreement)| {
                Some((source, self.effective_classes_for_source(Some(agreement?))))
            })
            .collect();
        let encounters_since = policy.encounter_window_days(self.role()).map(|days| {
            (now - chrono::Duration::days(i64::from(days)))
                .format("%Y-%m-%d")
                .to_string()
        });
        ResourceFilter {
            grant: self,
            policy,
            shares,
            encounters_since,
        }
    }
}

impl<'a> ResourceFilter<'a> {
    /// The grant this filter applies.
    pub fn grant(&self) -> &'a Grant {
        self.grant
    }

    /// Whether a resource of `class` from `source` may be shown. Demographics are always
    /// granted for the record's header (the grant decides whether they are shown as items).
    pub fn sight<J: Json>(&self, source: &SourceId, class: DataClass, resource: &J) -> Sight {
        if class != DataClass::Demographics && !self.grant.allows(class) {
            return Sight::NotGranted;
        }
        if self.shares.get(source).is_some_and(|s| !s.contains(&class)) {
            return Sight::Withheld;
        }
        match crate::withhold(resource, &self.policy.sensitive) {
            None => {}
            // A restricted label on a Patient marks a restricted (S-flagged) person: their
            // demographics are shown without where they are (the merge removes it), so the
            // viewer can still tell whose record this is.
            Some(crate::WithholdReason::ConfidentialLabel) if class == DataClass::Demographics => {}
            Some(_) => return Sight::Withheld,
        }
        Sight::Shown
    }

    /// Whether an encounter on `date` (`YYYY-MM-DD…`) is within the role's window; roles
    /// without one see every encounter. An undated encounter is outside any window.
    pub fn encounter_in_window(&self, date: Option<&str>) -> bool {
        match &self.encounters_since {
            None => true,
            Some(since) => date.is_some_and(|d| d >= since.as_str()),
        }
    }
}
