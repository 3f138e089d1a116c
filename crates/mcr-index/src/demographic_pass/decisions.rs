//! What people decided about pairs and persons, read once per sync through the standing
//! merges: links a person made, "not a match", merges, and the local identities records are
//! linked to or ruled out of. A sync never overrides them.

use crate::local_identity::LocalHome;
use crate::{Indexer, SourcePatient};
use mcr_domain::{LocalPersonId, NhsNumber};
use mcr_store::{RecordKey, StoreError};
use std::collections::HashMap;

/// What people decided about pairs and persons: never overridden by a sync.
#[derive(Debug, Default)]
pub(crate) struct Decisions {
    /// Records a person linked, to the patient they chose (through any merge since).
    pub(super) linked: HashMap<RecordKey, NhsNumber>,
    /// Patients a person said a record is not (a merge's survivor too, when they named the
    /// number it retired: one person).
    pub(super) not_a_match: HashMap<RecordKey, Vec<NhsNumber>>,
    /// Standing merges: a retired number to its survivor.
    merged: HashMap<NhsNumber, NhsNumber>,
    /// Records linked to a local identity, read with the decisions once per sync (few: records
    /// without an NHS number).
    homes: HashMap<RecordKey, LocalPersonId>,
    /// Records a person linked to a local identity: kept with it while it is open, or with
    /// the NHS number it was resolved to.
    pub(super) local_linked: HashMap<RecordKey, LocalHome>,
    /// Local identities a person said a record is not (`not-a-match`, `unlink`); the NHS
    /// number one was resolved to is ruled out with it, in `not_a_match`.
    pub(super) local_ruled: HashMap<RecordKey, Vec<LocalPersonId>>,
}

impl Decisions {
    pub(crate) fn confirmed(&self, p: &SourcePatient, nhs: &NhsNumber) -> bool {
        self.linked.get(&p.key()) == Some(nhs)
    }

    /// The survivor of the merge that retired `nhs`, if one stands.
    pub(crate) fn survivor_of(&self, nhs: &NhsNumber) -> Option<&NhsNumber> {
        self.merged.get(nhs)
    }

    /// The local identity a record is linked to, if any.
    pub(crate) fn home_of(&self, p: &SourcePatient) -> Option<LocalPersonId> {
        self.homes.get(&p.key()).copied()
    }

    /// The local identities a person said this record is not.
    pub(crate) fn local_ruled_out(&self, p: &SourcePatient) -> &[LocalPersonId] {
        self.local_ruled.get(&p.key()).map_or(&[], Vec::as_slice)
    }
}
impl Indexer {
    /// What people decided about pairs, read through the standing merges.
    pub(crate) async fn decisions(&self) -> Result<Decisions, StoreError> {
        let mut d = Decisions {
            merged: self.store.merge_redirects().await?.into_iter().collect(),
            homes: self.store.local_link_keys().await?.into_iter().collect(),
            ..Decisions::default()
        };
        for row in self.store.match_decisions().await? {
            let key = (row.source, row.local_id);
            let survivor = d.merged.get(&row.nhs_number).cloned();
            match row.decision.as_str() {
                "link" => {
                    d.linked.insert(key, survivor.unwrap_or(row.nhs_number));
                }
                _ => {
                    let ruled = d.not_a_match.entry(key).or_default();
                    ruled.extend(survivor);
                    ruled.push(row.nhs_number);
                }
            }
        }
        let local = crate::local_identity::local_decisions(&*self.store, &d.merged).await?;
        for (key, nhs) in local.ruled_numbers {
            d.not_a_match.entry(key).or_default().push(nhs);
        }
        d.local_linked = local.linked;
        d.local_ruled = local.ruled;
        Ok(d)
    }
}
