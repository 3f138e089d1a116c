//! Local identities in the matching pass: a record with no NHS number that matches nobody
//! becomes an index person of its own, kept apart from the NHS-numbered index
//! ([`mcr_store::LocalIdentityStore`]). The pass holds the open ones in memory, filed under the
//! same blocking keys as the index ([`Homes`]), so a waiting record is compared with them by
//! the same comparisons, weights, thresholds and safety rules as with index patients, and its
//! candidates of both kinds are decided together ([`crate::linkage::decide`]). What people
//! decided about records and local identities ([`local_decisions`]) holds: a linked record
//! stays, a ruled-out pair is never offered again.

use crate::linkage::keys;
use crate::matching::{compare_reaching, Prepared, Reach, Scored, Weights};
use crate::SourcePatient;
use chrono::{DateTime, Utc};
use mcr_domain::{LocalPersonId, NhsNumber};
use mcr_store::{LinkMethod, LocalPerson, LocalPersonRecord, RecordKey, Store, StoreError};
use std::collections::HashMap;

/// How many local candidates a waiting record keeps.
const KEEP: usize = 3;

/// Someone a record may be: an index patient, a local identity, or a local identity this pass
/// is making (numbered in the order they are made).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Home {
    Local(LocalPersonId),
    Fresh(usize),
}

/// A candidate of either kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Person {
    Nhs(NhsNumber),
    Home(Home),
}

/// Where a person put a record they linked to a local identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LocalHome {
    /// The local identity, still open.
    Open(LocalPersonId),
    /// The NHS number it was resolved to since (through any merge).
    Resolved(NhsNumber),
}

/// What people decided about records and local identities (`mcr_store::LocalDecisionStore`).
#[derive(Debug, Default)]
pub(crate) struct LocalDecisions {
    /// Records a person linked to a local identity: to it, or to the NHS number it went to.
    pub linked: HashMap<RecordKey, LocalHome>,
    /// Local identities a person said a record is not (`not-a-match`, `unlink`).
    pub ruled: HashMap<RecordKey, Vec<LocalPersonId>>,
    /// And the NHS numbers those of them resolved since went to: ruled out as well.
    pub ruled_numbers: Vec<(RecordKey, NhsNumber)>,
}

/// Read the decisions about local identities, once per sync (few: records without an NHS
/// number). A local identity resolved since stands for the NHS number it went to, through a
/// standing merge (`merged`: a retired number to its survivor).
pub(crate) async fn local_decisions(
    store: &dyn Store,
    merged: &HashMap<NhsNumber, NhsNumber>,
) -> Result<LocalDecisions, StoreError> {
    let mut out = LocalDecisions::default();
    let mut resolved_to: HashMap<LocalPersonId, Option<NhsNumber>> = HashMap::new();
    for row in store.local_decisions().await? {
        let to = match resolved_to.get(&row.person) {
            Some(to) => to.clone(),
            None => {
                let to = store
                    .local_person(row.person)
                    .await?
                    .and_then(|l| l.resolved)
                    .map(|r| merged.get(&r.nhs_number).cloned().unwrap_or(r.nhs_number));
                resolved_to.insert(row.person, to.clone());
                to
            }
        };
        let links = row.links();
        let key = (row.source, row.local_id);
        if links {
            let home = to.map_or(LocalHome::Open(row.person), LocalHome::Resolved);
            out.linked.insert(key, home);
        } else {
            out.ruled.entry(key.clone()).or_default().push(row.person);
            if let Some(nhs) = to {
                out.ruled_numbers.push((key, nhs));
            }
        }
    }
    Ok(out)
}

/// Local identities, prepared and filed under their blocking keys.
#[derive(Debug, Default)]
pub(crate) struct Homes {
    held: Vec<(Home, Prepared)>,
    blocks: HashMap<u64, Vec<u32>>,
}

impl Homes {
    pub(crate) fn add(&mut self, home: Home, prepared: Prepared) -> Result<(), StoreError> {
        let at = u32::try_from(self.held.len())
            .map_err(|_| StoreError::Config("too many local identities".into()))?;
        for (_, key) in keys(&prepared, false) {
            self.blocks.entry(key).or_default().push(at);
        }
        self.held.push((home, prepared));
        Ok(())
    }

    /// The local identities sharing a blocking key with `waiting` that score at or above the
    /// review threshold, best first, at most a few, leaving out those a person said it is not
    /// (`ruled_out`); and how many were compared.
    pub(crate) fn candidates(
        &self,
        waiting: &Prepared,
        w: &Weights,
        ruled_out: &[LocalPersonId],
    ) -> (Vec<(Home, Scored)>, u64) {
        let mut seen: Vec<u32> = keys(waiting, true)
            .iter()
            .filter_map(|(_, k)| self.blocks.get(k))
            .flatten()
            .copied()
            .collect();
        seen.sort_unstable();
        seen.dedup();
        seen.retain(|&i| match self.held[i as usize].0 {
            Home::Local(l) => !ruled_out.contains(&l),
            Home::Fresh(_) => true,
        });
        let reach = Reach::new(w, w.review_at);
        let mut found: Vec<(Home, Scored)> = seen
            .iter()
            .filter_map(|&i| {
                let (home, prepared) = &self.held[i as usize];
                Some((*home, compare_reaching(waiting, prepared, w, &reach)?))
            })
            .filter(|(_, s)| s.weight >= w.review_at)
            .collect();
        found.sort_by(|a, b| b.1.weight.total_cmp(&a.1.weight));
        found.truncate(KEEP);
        (found, seen.len() as u64)
    }
}

/// A local identity's demographics in the form matching compares (never an NHS number).
pub(crate) fn prepared(l: &LocalPerson) -> Prepared {
    Prepared::new(
        &l.family,
        &l.given,
        Some(l.birth_date),
        l.gender.as_deref(),
        l.postcode.as_deref(),
        None,
    )
    .with_address(l.address.as_deref())
}

/// The record a local identity was made from, as the pass handles records (for review pairs
/// and PDS traces made on its behalf).
pub(crate) fn origin_record(l: &LocalPerson) -> SourcePatient {
    SourcePatient {
        source: l.origin.0.clone(),
        local_id: l.origin.1.clone(),
        nhs_number: None,
        family: l.family.clone(),
        given: l.given.clone(),
        birth_date: Some(l.birth_date),
        gender: l.gender.clone(),
        postcode: l.postcode.clone(),
        address: l.address.clone(),
        gp_practice: None,
        last_updated: None,
    }
}

impl SourcePatient {
    /// The local identity this record makes (or, made already, is refreshed from). `None`
    /// without a birth date (the sync rejects such records before the pass).
    pub(crate) fn local_person(&self, now: DateTime<Utc>) -> Option<LocalPersonRecord> {
        Some(LocalPersonRecord {
            source: self.source.clone(),
            local_id: self.local_id.clone(),
            family: self.family.clone(),
            given: self.given.clone(),
            birth_date: self.birth_date?,
            gender: self.gender.clone(),
            postcode: self.postcode.clone(),
            address: self.address.clone(),
            at: now,
        })
    }

    pub(crate) fn local_link(
        &self,
        person: LocalPersonId,
        now: DateTime<Utc>,
    ) -> mcr_store::LocalLink {
        mcr_store::LocalLink {
            person,
            source: self.source.clone(),
            local_id: self.local_id.clone(),
            method: LinkMethod::Demographics,
            family: self.family.clone(),
            given: self.given.clone(),
            birth_date: self.birth_date,
            postcode: self.postcode.clone(),
            linked_at: now,
        }
    }

    /// A review pair of this record and a local identity.
    pub(crate) fn local_candidate(
        &self,
        person: LocalPersonId,
        scored: &Scored,
        guard: Option<&str>,
        now: DateTime<Utc>,
    ) -> mcr_store::LocalCandidateRow {
        mcr_store::LocalCandidateRow {
            source: self.source.clone(),
            local_id: self.local_id.clone(),
            person,
            score: (scored.weight * 100.0).round() / 100.0,
            agreement: scored.agreement.to_string(),
            guard: guard
                .map(str::to_owned)
                .or_else(|| scored.guard.map(|g| g.code().to_owned())),
            family: self.family.clone(),
            given: self.given.clone(),
            birth_date: self.birth_date,
            gender: self.gender.clone(),
            postcode: self.postcode.clone(),
            found_at: now,
        }
    }
}

/// A resolution to make, and why.
#[derive(Debug, Clone)]
pub(crate) struct Resolve {
    pub person: LocalPersonId,
    pub nhs: NhsNumber,
    /// `NhsNumber` (a record linked to it now carries the number), `Demographics` (it matched
    /// an index patient) or `PdsTrace`.
    pub method: LinkMethod,
    /// The record it was made from, for the audit record's words.
    pub origin: Option<mcr_store::RecordKey>,
}

/// The audit record of a resolution (BALP update: the index person's links move), written
/// with it in one transaction. No demographics: the local identity, the record it was made
/// from, how it was found, and the NHS number it is now known by.
pub(crate) fn resolution_audit(
    r: &Resolve,
    correlation: &str,
    at: DateTime<Utc>,
) -> Result<mcr_store::AuditAppend, StoreError> {
    let why = match r.method {
        LinkMethod::NhsNumber => "a record linked to it now carries this NHS number",
        LinkMethod::PdsTrace => "PDS traced a record of it to this NHS number",
        _ => "a record carrying this NHS number matched its demographics",
    };
    let origin = r
        .origin
        .as_ref()
        .map(|(s, l)| format!(" (made from {s}/{l})"))
        .unwrap_or_default();
    let event = mcr_audit::AuditEvent {
        at,
        correlation_id: correlation.to_owned(),
        system: None,
        user_id: "system".into(),
        user_name: "My Care Record gateway".into(),
        role: "system".into(),
        org_code: String::new(),
        org_name: String::new(),
        patient: Some(r.nhs.as_str().to_owned()),
        purpose: "operations".into(),
        action: mcr_audit::Action::ResolveLocalIdentity,
        outcome: mcr_audit::Outcome::Linked,
        basis: Some(r.method.as_str().to_owned()),
        detail: Some(format!(
            "local identity {}{origin} resolved to this NHS number ({why}); its records' links move to it",
            r.person
        )),
        sources: Vec::new(),
        role_profile_id: None,
    };
    mcr_audit::to_append(&event)
        .map_err(|e| StoreError::Unavailable(format!("the audit record could not be made: {e}")))
}
