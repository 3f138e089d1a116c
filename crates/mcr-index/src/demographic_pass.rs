//! The demographic pass, once every source is in: the records without an NHS number (or with
//! one the index holds for someone else) handed to [`crate::linkage`] against the whole index,
//! under what people decided about pairs; links, review candidates and unmatched records
//! written in batches.

use crate::matching::{Prepared, WeightsMode};
use crate::{linkage, Indexer, SourcePatient, SourceSyncReport};
use mcr_domain::NhsNumber;
use mcr_store::{LinkMethod, MatchCandidateRow, RecordKey, StoreError};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

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
    /// Of which: estimating the weights (a read of the index of its own), when estimated.
    pub estimate_millis: u64,
    /// The weights the pass matched with.
    pub weights: WeightsUsed,
}

/// What people decided about pairs and persons: never overridden by a sync.
#[derive(Debug, Default)]
pub(crate) struct Decisions {
    /// Records a person linked, to the patient they chose (through any merge since).
    linked: HashMap<RecordKey, NhsNumber>,
    /// Patients a person said a record is not (a merge's survivor too, when they named the
    /// number it retired: one person).
    not_a_match: HashMap<RecordKey, Vec<NhsNumber>>,
    /// Standing merges: a retired number to its survivor.
    merged: HashMap<NhsNumber, NhsNumber>,
}

impl Decisions {
    pub(crate) fn confirmed(&self, p: &SourcePatient, nhs: &NhsNumber) -> bool {
        self.linked.get(&p.key()) == Some(nhs)
    }

    /// The survivor of the merge that retired `nhs`, if one stands.
    pub(crate) fn survivor_of(&self, nhs: &NhsNumber) -> Option<&NhsNumber> {
        self.merged.get(nhs)
    }
}
impl Indexer {
    /// What people decided about pairs, read through the standing merges.
    pub(crate) async fn decisions(&self) -> Result<Decisions, StoreError> {
        let mut d = Decisions {
            merged: self.store.merge_redirects().await?.into_iter().collect(),
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
        Ok(d)
    }

    /// The demographic pass: every waiting record matched against the whole index at once;
    /// links, review candidates and unmatched records written in batches; a record that no
    /// longer links loses its old link.
    pub(crate) async fn match_waiting(
        &self,
        waiting: Vec<(usize, SourcePatient)>,
        flagged: Vec<MatchCandidateRow>,
        decisions: &Decisions,
        reports: &mut [SourceSyncReport],
    ) -> Result<MatchingPass, StoreError> {
        let now = self.clock.now();
        let started = std::time::Instant::now();
        let waiting_count = waiting.len();
        let mut links = Vec::new();
        let mut to_match = Vec::with_capacity(waiting.len());
        for (at, p) in waiting {
            match decisions.linked.get(&p.key()) {
                Some(nhs) => {
                    links.push(p.link(nhs.clone(), LinkMethod::Demographics, now));
                    reports[at].linked_by_demographics += 1;
                }
                None => to_match.push((at, p)),
            }
        }
        let prepared: Vec<Prepared> = to_match.iter().map(|(_, p)| p.prepared()).collect();
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
        let estimating = std::time::Instant::now();
        let (weights, used) = match self.weights_mode {
            WeightsMode::Configured => (Arc::clone(&self.weights), WeightsUsed::Configured),
            WeightsMode::Estimated => {
                let (estimated, counts) =
                    linkage::estimate_weights(&*self.store, &prepared, &self.weights).await?;
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
        let (outcomes, counts) =
            linkage::match_against_index(&*self.store, &prepared, &ruled_out, &weights).await?;

        let mut evaluated: Vec<RecordKey> = Vec::with_capacity(to_match.len());
        let mut candidates = flagged;
        let mut unmatched = Vec::new();
        let mut unlink: Vec<Vec<RecordKey>> = vec![Vec::new(); reports.len()];
        let mut traced = Traced::default();
        for ((at, p), outcome) in to_match.iter().zip(outcomes) {
            let report = &mut reports[*at];
            evaluated.push(p.key());
            if let (Some((pds, _)), false) =
                (&self.pds, matches!(outcome, linkage::Outcome::Link(..)))
            {
                match trace_one(pds, p, &mut report.pds, now, &mut traced).await {
                    TraceStep::Linked(link) => {
                        links.push(link);
                        continue;
                    }
                    TraceStep::Review(candidate) => candidates.push(candidate),
                    TraceStep::Nothing => {}
                }
            }
            match outcome {
                linkage::Outcome::Link(nhs, _) => {
                    links.push(p.link(nhs, LinkMethod::Demographics, now));
                    report.linked_by_demographics += 1;
                }
                linkage::Outcome::Review {
                    candidates: found,
                    ambiguous,
                } => {
                    for (nhs, s) in &found {
                        let guard = linkage::review_guard(s, ambiguous);
                        candidates.push(p.candidate(nhs, "review", s, guard, now));
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
                }
                linkage::Outcome::NoMatch => {
                    report.unmatched += 1;
                    unmatched.push(p.unmatched("no-match", 0, now));
                    unlink[*at].push(p.key());
                }
            }
        }
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
        // that the index did not hold yet come first: links and review pairs name them.
        self.store.insert_missing_patients(&traced.patients).await?;
        self.store.put_patient_statuses(&traced.statuses).await?;
        self.store.upsert_links(&links).await?;
        let linked: Vec<RecordKey> = links
            .iter()
            .map(|l| (l.source.clone(), l.local_id.clone()))
            .collect();
        self.store.clear_unmatched_batch(&linked).await?;
        for (report, keys) in reports.iter_mut().zip(&unlink) {
            report.stale_links_removed += self.store.remove_links(keys).await?;
        }
        self.store.record_unmatched_batch(&unmatched).await?;
        self.store
            .replace_match_candidates(&evaluated, &candidates)
            .await?;
        tracing::info!(
            records = to_match.len(),
            index_patients = counts.index_patients_read,
            comparisons = counts.comparisons,
            linked = links.len(),
            review = candidates.len(),
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
            estimate_millis,
            weights: used,
        })
    }
}

/// What the traces of one pass add to the index: patients PDS named that the index may not
/// hold yet, and what PDS said of each (restricted, deceased).
#[derive(Debug, Default)]
struct Traced {
    patients: Vec<mcr_store::IndexedPatient>,
    statuses: Vec<mcr_store::PatientStatusRow>,
    /// Every trace, for the audit trail.
    records: Vec<crate::pds::TraceRecord>,
}

enum TraceStep {
    /// Link the record (PDS's unique match at or above the link score).
    Linked(mcr_store::SourceLink),
    /// A pair for review (PDS's unique match below the link score), besides whatever the
    /// index found.
    Review(MatchCandidateRow),
    /// Nothing to add: the record stays as the index left it.
    Nothing,
}

/// Trace one record the index could not link. Counted in `counts` and kept for the audit
/// trail in `traced.records`; never logged with patient data.
async fn trace_one(
    pds: &crate::pds::PdsClient,
    p: &SourcePatient,
    counts: &mut crate::pds::TraceCounts,
    now: chrono::DateTime<chrono::Utc>,
    traced: &mut Traced,
) -> TraceStep {
    use crate::pds::{TraceOutcome as O, TraceRecord};
    let mut record = TraceRecord {
        source: p.source.clone(),
        local_id: p.local_id.clone(),
        outcome: O::Failed,
        nhs_number: None,
        score: None,
        superseded: false,
        deceased: false,
        restricted: false,
    };
    let step = trace_step(pds, p, counts, now, traced, &mut record).await;
    traced.records.push(record);
    step
}

async fn trace_step(
    pds: &crate::pds::PdsClient,
    p: &SourcePatient,
    counts: &mut crate::pds::TraceCounts,
    now: chrono::DateTime<chrono::Utc>,
    traced: &mut Traced,
    record: &mut crate::pds::TraceRecord,
) -> TraceStep {
    use crate::pds::{Trace, TraceOutcome as O};
    counts.asked += 1;
    let query = p.birth_date.map(|birth_date| crate::pds::TraceQuery {
        family: &p.family,
        given: &p.given,
        birth_date,
        gender: p.gender.as_deref(),
        postcode: p.postcode.as_deref(),
    });
    let trace = match pds.trace(query).await {
        Ok(t) => t,
        Err(e) => {
            counts.failed += 1;
            tracing::warn!(error = %e, "PDS trace failed");
            return TraceStep::Nothing;
        }
    };
    let (found, score) = match &trace {
        Trace::Traced(found, score) | Trace::Review(found, score) => (found, *score),
        Trace::NotFound => {
            counts.not_found += 1;
            record.outcome = O::NotFound;
            return TraceStep::Nothing;
        }
        Trace::TooMany => {
            counts.too_many += 1;
            record.outcome = O::TooMany;
            return TraceStep::Nothing;
        }
        Trace::Untraceable => {
            counts.untraceable += 1;
            record.outcome = O::Untraceable;
            return TraceStep::Nothing;
        }
    };
    counts.restricted += usize::from(found.restricted);
    counts.deceased += usize::from(found.deceased.is_some());
    counts.superseded += usize::from(found.superseded.is_some());
    record.nhs_number = Some(found.nhs_number.clone());
    record.score = Some(score);
    record.superseded = found.superseded.is_some();
    record.deceased = found.deceased.is_some();
    record.restricted = found.restricted;
    let Some(birth_date) = found.birth_date else {
        // The index needs a birth date; a PDS record without one is not linked to.
        counts.untraceable += 1;
        record.outcome = O::Untraceable;
        return TraceStep::Nothing;
    };
    let nhs = found.nhs_number.clone();
    traced.patients.push(mcr_store::IndexedPatient {
        nhs_number: nhs.clone(),
        family: found.family.clone(),
        given: found.given.clone(),
        birth_date,
        gender: found.gender.clone(),
        postcode: found.postcode.clone(),
        gp_practice: found.gp_practice.clone(),
        updated_at: now,
    });
    traced.statuses.push(mcr_store::PatientStatusRow {
        nhs_number: nhs.clone(),
        restricted: found.restricted,
        deceased: found.deceased.clone(),
        said_by: "pds".into(),
        updated_at: now,
    });
    match trace {
        Trace::Traced(..) => {
            counts.linked += 1;
            record.outcome = O::Linked;
            TraceStep::Linked(p.link(nhs, LinkMethod::PdsTrace, now))
        }
        Trace::Review(_, score) => {
            counts.review += 1;
            record.outcome = O::Review;
            TraceStep::Review(MatchCandidateRow {
                source: p.source.clone(),
                local_id: p.local_id.clone(),
                nhs_number: nhs,
                kind: "pds-review".into(),
                score,
                agreement: format!("pds-score={score:.2}"),
                guard: None,
                family: p.family.clone(),
                given: p.given.clone(),
                birth_date: p.birth_date,
                gender: p.gender.clone(),
                postcode: p.postcode.clone(),
                found_at: now,
            })
        }
        _ => TraceStep::Nothing,
    }
}
