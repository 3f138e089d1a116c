//! The demographic pass, once every source is in: the records without an NHS number (or with
//! one the index holds for someone else) handed to [`crate::linkage`] against the whole index,
//! under what people decided about pairs; links, review candidates and unmatched records
//! written in batches.
//!
//! The pass itself is here; what people decided, read before it, is in `decisions`, the PDS
//! trace of a record it cannot link in `trace`, and what it reports in [`crate::report`].

mod decisions;
mod trace;

pub(crate) use decisions::Decisions;

use crate::local_identity::{Home, Homes, LocalHome, Person, Resolve};
use crate::matching::{Prepared, WeightsMode};
use crate::{linkage, Indexer, MatchingPass, SourcePatient, SourceSyncReport, WeightsUsed};
use mcr_domain::{LocalPersonId, NhsNumber};
use mcr_store::{LinkMethod, MatchCandidateRow, RecordKey, StoreError};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use trace::{trace_one, TraceStep, Traced};

impl Indexer {
    /// The demographic pass: every waiting record matched against the whole index and the
    /// local identities at once; links, review candidates and local identities written in
    /// batches; a record that no longer links loses its old link. Local identities are matched
    /// against the index too: one that now matches an index patient (or that a record linked
    /// to it names by NHS number, `resolve`, or that PDS traces) is resolved to them.
    pub(crate) async fn match_waiting(
        &self,
        waiting: Vec<(usize, SourcePatient)>,
        flagged: Vec<MatchCandidateRow>,
        resolve: Vec<(LocalPersonId, NhsNumber)>,
        decisions: &Decisions,
        reports: &mut [SourceSyncReport],
    ) -> Result<MatchingPass, StoreError> {
        let now = self.clock.now();
        let started = std::time::Instant::now();
        let waiting_count = waiting.len();
        let mut links = Vec::new();

        // Local identities: resolved by a record of theirs carrying an NHS number, or open.
        let mut resolutions: Vec<Resolve> = Vec::new();
        let mut resolving: HashSet<LocalPersonId> = HashSet::new();
        for (person, nhs) in resolve {
            if resolving.insert(person) {
                resolutions.push(Resolve {
                    person,
                    nhs,
                    method: LinkMethod::NhsNumber,
                    origin: None,
                });
            }
        }
        let mut open = self.store.open_local_persons().await?;
        open.retain(|l| !resolving.contains(&l.id));
        let origin_of: HashMap<RecordKey, usize> = open
            .iter()
            .enumerate()
            .map(|(i, l)| (l.origin.clone(), i))
            .collect();

        let mut to_match = Vec::with_capacity(waiting.len());
        // Records that leave a local identity (linked to an NHS number, or sent to review).
        let mut leave_home: Vec<RecordKey> = Vec::new();
        // Local identities whose record was read again: (identity, report), refreshed from it.
        let mut reread: HashMap<usize, usize> = HashMap::new();
        let mut refreshed = Vec::new();
        let mut unlink: Vec<Vec<RecordKey>> = vec![Vec::new(); reports.len()];
        let mut local_links = Vec::new();
        let mut homed: Vec<RecordKey> = Vec::new();
        for (at, p) in waiting {
            if let Some(nhs) = decisions.linked.get(&p.key()) {
                links.push(p.link(nhs.clone(), LinkMethod::Demographics, now));
                reports[at].linked_by_demographics += 1;
                if decisions.home_of(&p).is_some() {
                    leave_home.push(p.key());
                }
                continue;
            }
            // Linked to a local identity by a person: kept with it (or with the NHS number it
            // was resolved to), never matched again.
            match decisions.local_linked.get(&p.key()) {
                Some(LocalHome::Resolved(nhs)) => {
                    links.push(p.link(nhs.clone(), LinkMethod::Demographics, now));
                    reports[at].linked_by_demographics += 1;
                    if decisions.home_of(&p).is_some() {
                        leave_home.push(p.key());
                    }
                    continue;
                }
                Some(LocalHome::Open(l)) => {
                    reports[at].linked_to_local_identity += 1;
                    unlink[at].push(p.key());
                    homed.push(p.key());
                    local_links.push(p.local_link(*l, now));
                    continue;
                }
                None => {}
            }
            // The record a local identity was made from, read again: the identity follows it
            // (matched against the index below with its new demographics), never a second one.
            if let (Some(&i), Some(record)) = (origin_of.get(&p.key()), p.local_person(now)) {
                let l = &mut open[i];
                l.family.clone_from(&record.family);
                l.given.clone_from(&record.given);
                l.birth_date = record.birth_date;
                l.gender.clone_from(&record.gender);
                l.postcode.clone_from(&record.postcode);
                refreshed.push((l.id, record));
                reread.insert(i, at);
                continue;
            }
            to_match.push((at, p));
        }
        // Every open local identity is matched against the index when the index may have
        // gained someone (a record linked by NHS number in this sync); else only those read
        // again.
        let index_grew = reports.iter().any(|r| r.linked_by_nhs_number > 0);
        let checked: Vec<usize> = (0..open.len())
            .filter(|i| index_grew || reread.contains_key(i))
            .collect();

        let mut prepared: Vec<Prepared> = to_match.iter().map(|(_, p)| p.prepared()).collect();
        let records = prepared.len();
        prepared.extend(
            checked
                .iter()
                .map(|&i| crate::local_identity::prepared(&open[i])),
        );
        let mut ruled_out = linkage::Ruled::new();
        for (i, (_, p)) in to_match.iter().enumerate() {
            for nhs in decisions.not_a_match.get(&p.key()).into_iter().flatten() {
                ruled_out.insert((i, nhs.clone()));
            }
            // A record flagged for carrying someone else's NHS number is not linked back to
            // them by its demographics either.
            if let Some(nhs) = &p.nhs_number {
                ruled_out.insert((i, nhs.clone()));
                if let Some(survivor) = decisions.survivor_of(nhs) {
                    ruled_out.insert((i, survivor.clone()));
                }
            }
        }
        for (j, &i) in checked.iter().enumerate() {
            for nhs in decisions
                .not_a_match
                .get(&open[i].origin)
                .into_iter()
                .flatten()
            {
                ruled_out.insert((records + j, nhs.clone()));
            }
        }
        let estimating = std::time::Instant::now();
        let (weights, used) = match self.weights_mode {
            WeightsMode::Configured => (Arc::clone(&self.weights), WeightsUsed::Configured),
            WeightsMode::Estimated => {
                let (estimated, counts) =
                    linkage::estimate_weights(&self.store, &prepared[..records], &self.weights)
                        .await?;
                tracing::info!(
                    records = prepared.len(),
                    index_patients = counts.index_patients_read,
                    comparisons = counts.comparisons,
                    estimated = estimated.is_ok(),
                    seconds = estimating.elapsed().as_secs_f64(),
                    "matching weights estimated"
                );
                match estimated {
                    Ok(e) => (
                        Arc::new(e.weights.clone()),
                        WeightsUsed::Estimated(Box::new(e)),
                    ),
                    Err(why) => (
                        Arc::clone(&self.weights),
                        WeightsUsed::ConfiguredNotEstimated {
                            reason: why.to_string(),
                        },
                    ),
                }
            }
        };
        let estimate_millis = match used {
            WeightsUsed::Configured => 0,
            _ => u64::try_from(estimating.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        let (mut outcomes, mut counts) =
            linkage::match_against_index(&self.store, &prepared, &ruled_out, &weights).await?;
        let local_outcomes = outcomes.split_off(records);

        let mut evaluated: Vec<RecordKey> = Vec::with_capacity(to_match.len());
        let mut candidates = flagged;
        let mut local_candidates = Vec::new();
        let mut traced = Traced::default();
        // A local identity that now matches an index patient is them; one sent to review is
        // shown beside them; one PDS traces (when its record was read again) is them too.
        for (&i, outcome) in checked.iter().zip(local_outcomes) {
            let l = &open[i];
            let origin = crate::local_identity::origin_record(l);
            evaluated.push(l.origin.clone());
            // Its record, read again, is counted as any record: linked (the identity resolved),
            // in review or matching nobody, and still at home in the local identity.
            let report = reread.get(&i).map(|&at| &mut reports[at]);
            let found = match outcome {
                linkage::Outcome::Link(nhs, _) => {
                    if let Some(r) = report {
                        r.linked_by_demographics += 1;
                    }
                    Some((nhs, LinkMethod::Demographics))
                }
                linkage::Outcome::Review {
                    candidates: found,
                    ambiguous,
                } => {
                    for (nhs, s) in &found {
                        let guard = linkage::review_guard(s, ambiguous);
                        candidates.push(origin.candidate(nhs, "review", s, guard, now));
                    }
                    if let Some(r) = report {
                        r.linked_to_local_identity += 1;
                        if ambiguous {
                            r.ambiguous += 1;
                        } else {
                            r.review += 1;
                        }
                    }
                    None
                }
                linkage::Outcome::NoMatch => {
                    if let Some(r) = report {
                        r.unmatched += 1;
                        r.linked_to_local_identity += 1;
                    }
                    None
                }
            };
            let found = match (found, &self.pds, reread.get(&i)) {
                (Some(found), _, _) => Some(found),
                (None, Some((pds, _)), Some(&at)) => {
                    match trace_one(pds, &origin, &mut reports[at].pds, now, &mut traced).await {
                        TraceStep::Linked(link) => Some((link.nhs_number, LinkMethod::PdsTrace)),
                        TraceStep::Review(candidate) => {
                            candidates.push(candidate);
                            None
                        }
                        TraceStep::Nothing => None,
                    }
                }
                (None, _, _) => None,
            };
            if let Some((nhs, method)) = found {
                resolving.insert(l.id);
                resolutions.push(Resolve {
                    person: l.id,
                    nhs,
                    method,
                    origin: Some(l.origin.clone()),
                });
            }
        }
        // The local identities still open, for the records to be compared with.
        let mut homes = Homes::default();
        for l in open.iter().filter(|l| !resolving.contains(&l.id)) {
            homes.add(Home::Local(l.id), crate::local_identity::prepared(l))?;
        }

        let mut unmatched = Vec::new();
        // Local identities this pass makes: the records they are made from, and the records
        // joining them (by their number in `fresh`).
        let mut fresh: Vec<SourcePatient> = Vec::new();
        let mut joining: Vec<(usize, SourcePatient)> = Vec::new();
        let mut fresh_candidates: Vec<(
            usize,
            SourcePatient,
            crate::matching::Scored,
            Option<&'static str>,
        )> = Vec::new();
        for (((at, p), outcome), prepared) in to_match.iter().zip(outcomes).zip(&prepared) {
            let report = &mut reports[*at];
            evaluated.push(p.key());
            // A record carrying an NHS number held for someone else is in review already (a
            // possible wrong NHS number): it neither joins nor makes a local identity.
            let flagged = p.nhs_number.is_some();
            let (local_found, compared) = if flagged {
                (Vec::new(), 0)
            } else {
                homes.candidates(prepared, &self.weights, decisions.local_ruled_out(p))
            };
            counts.comparisons += compared;
            let outcome = if local_found.is_empty() {
                match outcome {
                    linkage::Outcome::Link(n, s) => linkage::Outcome::Link(Person::Nhs(n), s),
                    linkage::Outcome::Review {
                        candidates,
                        ambiguous,
                    } => linkage::Outcome::Review {
                        candidates: candidates
                            .into_iter()
                            .map(|(n, s)| (Person::Nhs(n), s))
                            .collect(),
                        ambiguous,
                    },
                    linkage::Outcome::NoMatch => linkage::Outcome::NoMatch,
                }
            } else {
                // Index patients and local identities decided together, by the same rules.
                let mut found: Vec<(Person, crate::matching::Scored)> = match outcome {
                    linkage::Outcome::Link(n, s) => vec![(Person::Nhs(n), s)],
                    linkage::Outcome::Review { candidates, .. } => candidates
                        .into_iter()
                        .map(|(n, s)| (Person::Nhs(n), s))
                        .collect(),
                    linkage::Outcome::NoMatch => Vec::new(),
                };
                found.extend(local_found.into_iter().map(|(h, s)| (Person::Home(h), s)));
                found.sort_by(|a, b| b.1.weight.total_cmp(&a.1.weight));
                linkage::decide(found, &self.weights)
            };
            let home = decisions.home_of(p);
            if let (Some((pds, _)), false) = (
                &self.pds,
                matches!(outcome, linkage::Outcome::Link(Person::Nhs(..), _)),
            ) {
                match trace_one(pds, p, &mut report.pds, now, &mut traced).await {
                    TraceStep::Linked(link) => {
                        // PDS knows the person of a record linked to a local identity: so is
                        // the local identity.
                        if let linkage::Outcome::Link(Person::Home(Home::Local(l)), _) = outcome {
                            if resolving.insert(l) {
                                resolutions.push(Resolve {
                                    person: l,
                                    nhs: link.nhs_number.clone(),
                                    method: LinkMethod::PdsTrace,
                                    origin: None,
                                });
                            }
                        }
                        if home.is_some() {
                            leave_home.push(p.key());
                        }
                        links.push(link);
                        continue;
                    }
                    TraceStep::Review(candidate) => candidates.push(candidate),
                    TraceStep::Nothing => {}
                }
            }
            match outcome {
                linkage::Outcome::Link(Person::Nhs(nhs), _) => {
                    links.push(p.link(nhs, LinkMethod::Demographics, now));
                    report.linked_by_demographics += 1;
                    if home.is_some() {
                        leave_home.push(p.key());
                    }
                }
                linkage::Outcome::Link(Person::Home(h), _) => {
                    report.linked_to_local_identity += 1;
                    unlink[*at].push(p.key());
                    homed.push(p.key());
                    match h {
                        Home::Local(l) => local_links.push(p.local_link(l, now)),
                        Home::Fresh(k) => joining.push((k, p.clone())),
                    }
                }
                linkage::Outcome::Review {
                    candidates: found,
                    ambiguous,
                } => {
                    for (person, s) in &found {
                        let guard = linkage::review_guard(s, ambiguous);
                        match person {
                            Person::Nhs(nhs) => {
                                candidates.push(p.candidate(nhs, "review", s, guard, now));
                            }
                            Person::Home(Home::Local(l)) => {
                                local_candidates.push(p.local_candidate(*l, s, guard, now));
                            }
                            Person::Home(Home::Fresh(k)) => {
                                fresh_candidates.push((*k, p.clone(), *s, guard));
                            }
                        }
                    }
                    let (reason, n) = if ambiguous {
                        report.ambiguous += 1;
                        ("ambiguous", found.len())
                    } else {
                        report.review += 1;
                        ("review", found.len())
                    };
                    unmatched.push(p.unmatched(reason, n, now));
                    unlink[*at].push(p.key());
                    if home.is_some() {
                        leave_home.push(p.key());
                    }
                }
                linkage::Outcome::NoMatch if flagged => {
                    report.unmatched += 1;
                    unmatched.push(p.unmatched("no-match", 0, now));
                    unlink[*at].push(p.key());
                }
                linkage::Outcome::NoMatch => {
                    // Matched nobody and not sent to review: a local identity of its own,
                    // which the records after it in this pass are compared with too.
                    report.unmatched += 1;
                    report.local_identities += 1;
                    unlink[*at].push(p.key());
                    homed.push(p.key());
                    homes.add(Home::Fresh(fresh.len()), prepared.clone())?;
                    fresh.push(p.clone());
                }
            }
        }
        // A local identity resolved in this pass is its NHS number's person: a record a
        // person said is not that local identity is not put in review beside the number.
        let resolved_now: HashMap<LocalPersonId, &NhsNumber> =
            resolutions.iter().map(|r| (r.person, &r.nhs)).collect();
        candidates.retain(|c| {
            let key = (c.source.clone(), c.local_id.clone());
            !decisions.local_ruled.get(&key).is_some_and(|ruled| {
                ruled
                    .iter()
                    .any(|l| resolved_now.get(l) == Some(&&c.nhs_number))
            })
        });
        evaluated.extend(
            candidates
                .iter()
                .map(|c| (c.source.clone(), c.local_id.clone())),
        );
        let compared = started.elapsed();
        // Every trace is audited before anything it found is written: no audit, no link.
        if let (Some((_, audit)), false) = (&self.pds, traced.records.is_empty()) {
            audit.traced(&traced.records).await?;
        }
        // One transaction each (the store splits them into statements). Patients PDS traced
        // that the index did not hold yet come first: links, resolutions and review pairs
        // name them.
        self.store.insert_missing_patients(&traced.patients).await?;
        self.store.put_patient_statuses(&traced.statuses).await?;
        // Resolutions, each with its audit record: the local identity's links move.
        let mut resolved = 0;
        let mut links_moved = 0;
        let correlation = format!("index-sync-{}", now.timestamp_millis());
        for r in &resolutions {
            let audit = crate::local_identity::resolution_audit(r, &correlation, now)?;
            let resolution = mcr_store::LocalResolution {
                person: r.person,
                nhs_number: r.nhs.clone(),
                method: r.method,
                at: now,
            };
            if let Some((moved, _)) = self
                .store
                .resolve_local_person(&resolution, &audit, &mcr_audit::chain_hash)
                .await?
            {
                resolved += 1;
                links_moved += moved;
            }
        }
        self.store.upsert_links(&links).await?;
        let linked: Vec<RecordKey> = links
            .iter()
            .map(|l| (l.source.clone(), l.local_id.clone()))
            .chain(homed)
            .collect();
        self.store.clear_unmatched_batch(&linked).await?;
        for (report, keys) in reports.iter_mut().zip(&unlink) {
            report.stale_links_removed += self.store.remove_links(keys).await?;
        }
        self.store.remove_local_links(&leave_home).await?;
        // Local identities: those read again refreshed, the new ones made (with the records
        // they were made from linked to them), then the records joining them.
        // (One resolved in this pass is not refreshed: that would make it anew.)
        let mut records: Vec<mcr_store::LocalPersonRecord> = refreshed
            .into_iter()
            .filter(|(id, _)| !resolving.contains(id))
            .map(|(_, record)| record)
            .collect();
        let first_fresh = records.len();
        // Each new local identity is found again by its place among `fresh`, so none may be
        // left out: the feed rejects records without a birth date before they get here.
        for p in &fresh {
            records.push(p.local_person(now).ok_or_else(|| {
                StoreError::Corrupt(
                    "a record without a birth date reached the matching pass".into(),
                )
            })?);
        }
        let made = self.store.put_local_persons(&records).await?;
        let fresh_ids: Vec<LocalPersonId> = made[first_fresh..].iter().map(|(id, _)| *id).collect();
        for (k, p) in &joining {
            if let Some(id) = fresh_ids.get(*k) {
                local_links.push(p.local_link(*id, now));
            }
        }
        for (k, p, s, guard) in &fresh_candidates {
            if let Some(id) = fresh_ids.get(*k) {
                local_candidates.push(p.local_candidate(*id, s, *guard, now));
            }
        }
        // A person's link to a local identity resolved in this pass moved with it.
        local_links.retain(|l| !resolving.contains(&l.person));
        self.store.upsert_local_links(&local_links).await?;
        self.store.record_unmatched_batch(&unmatched).await?;
        self.store
            .replace_match_candidates(&evaluated, &candidates)
            .await?;
        self.store
            .replace_local_candidates(&evaluated, &local_candidates)
            .await?;
        tracing::info!(
            records = to_match.len(),
            index_patients = counts.index_patients_read,
            comparisons = counts.comparisons,
            linked = links.len(),
            review = candidates.len(),
            local_identities = fresh_ids.len(),
            linked_locally = local_links.len(),
            resolved,
            seconds = started.elapsed().as_secs_f64(),
            weights = used.kind(),
            "matching pass"
        );
        Ok(MatchingPass {
            records: waiting_count,
            index_patients: counts.index_patients_read,
            comparisons: counts.comparisons,
            millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            compare_millis: u64::try_from(compared.as_millis()).unwrap_or(u64::MAX),
            local_identities_open: open.iter().filter(|l| !resolving.contains(&l.id)).count()
                + fresh_ids.len(),
            local_identities_resolved: resolved,
            links_moved,
            estimate_millis,
            weights: used,
        })
    }
}
