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

pub mod care_events;
pub mod linkage;
pub mod matching;
mod parse;

pub use parse::{parse_patient, SourcePatient};

use futures::future::join_all;
use matching::{Prepared, Weights};
use mcr_domain::{Clock, FailureReason, NhsNumber, OrgKind, SourceId};
use mcr_federation::Federation;
use mcr_store::{LinkMethod, MatchCandidateRow, RecordKey, SourceLink, Store, StoreError};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

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
    /// Records without an NHS number that matched nobody.
    pub unmatched: usize,
    /// Records that could not be read (no id, no birth date, no name).
    pub rejected: usize,
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
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub sources: Vec<SourceSyncReport>,
    /// The demographic matching pass, once every source is in.
    pub matching: MatchingPass,
}

/// What the matching pass did and how long it took (no patient data).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MatchingPass {
    /// Records matched against the index (without an NHS number, or with a wrong one).
    pub records: usize,
    /// Index patients read.
    pub index_patients: u64,
    /// Pairs compared (after blocking).
    pub comparisons: u64,
    /// Wall time of the pass, reads and writes included, milliseconds.
    pub millis: u64,
    /// Of which: reading the index and comparing, before anything is written.
    pub compare_millis: u64,
}

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
    /// Match weights and thresholds.
    weights: Arc<Weights>,
}

/// What people decided about pairs: never overridden by a sync.
#[derive(Debug, Default)]
struct Decisions {
    /// Records a person linked, to the patient they chose.
    linked: HashMap<RecordKey, NhsNumber>,
    /// Patients a person said a record is not.
    not_a_match: HashMap<RecordKey, Vec<NhsNumber>>,
}

impl Decisions {
    fn confirmed(&self, p: &SourcePatient, nhs: &NhsNumber) -> bool {
        self.linked.get(&p.key()) == Some(nhs)
    }
}

/// What a source's sync has gathered so far, page after page.
struct PageState {
    report: SourceSyncReport,
    /// Local ids an earlier sync left unmatched (few).
    unmatched: std::collections::HashSet<String>,
    /// Records without an NHS number (or with one the index holds for someone else), for the
    /// demographic pass.
    pending: Vec<SourcePatient>,
    /// Records whose NHS number the index holds for someone else, as review candidates.
    flagged: Vec<MatchCandidateRow>,
    /// The latest `meta.lastUpdated` seen.
    watermark: Option<String>,
}

/// How many rows go to the store per batch.
const BATCH: usize = 2_000;

impl Indexer {
    pub fn new(federation: Arc<Federation>, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            federation,
            store,
            clock,
            care_event_days: 90,
            weights: Arc::new(Weights::default()),
        }
    }

    /// Match with these weights and thresholds instead of the defaults.
    pub fn with_weights(mut self, weights: Weights) -> Self {
        self.weights = Arc::new(weights);
        self
    }

    /// Read care events that ended up to `days` ago (the longest relationship window).
    pub fn with_care_event_days(mut self, days: u32) -> Self {
        self.care_event_days = days;
        self
    }

    /// [`Indexer::sync`] on one gateway of a region at a time: under the store's lease
    /// [`SYNC_LEASE`], taken for `holder` and renewed while the sync runs. `None` (nothing
    /// done) while another holder has it; a holder that dies stops renewing, and once its
    /// lease has expired ([`SYNC_LEASE_MS`]) the next sync anywhere takes over.
    pub async fn sync_once(
        &self,
        full: bool,
        holder: &str,
    ) -> Result<Option<SyncReport>, IndexError> {
        let now = || self.clock.now().timestamp_millis();
        if !self
            .store
            .take_lease(SYNC_LEASE, holder, now(), SYNC_LEASE_MS)
            .await?
        {
            tracing::info!("another gateway is syncing the index: not started here");
            return Ok(None);
        }
        let renew = async {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(
                    u64::try_from(SYNC_LEASE_MS / 3).unwrap_or(20_000),
                ))
                .await;
                match self
                    .store
                    .take_lease(SYNC_LEASE, holder, now(), SYNC_LEASE_MS)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!("the index sync lease was taken over by another gateway (this one was too slow to renew it)");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the index sync lease could not be renewed")
                    }
                }
            }
        };
        let result = tokio::select! {
            r = self.sync(full) => r,
            () = renew => unreachable!("the renewal loop never ends"),
        };
        if let Err(e) = self.store.release_lease(SYNC_LEASE, holder).await {
            tracing::warn!(error = %e, "the index sync lease could not be released: it expires on its own");
        }
        result.map(Some)
    }

    /// Read every source's patients and update the index. `full` ignores the watermarks.
    ///
    /// Each page is written to the index as it arrives, so a region's millions of records are
    /// never held together. Demographics from a GP system replace what is held and others only
    /// fill gaps; GP systems are read first, one after another in configuration order (so
    /// that where two hold the same person the last configured wins, every time), then the
    /// other sources at once, so each of their records with an NHS number is checked against
    /// the demographics the GP systems gave for it.
    pub async fn sync(&self, full: bool) -> Result<SyncReport, IndexError> {
        let (gps, others): (Vec<_>, Vec<_>) = self
            .federation
            .sources()
            .cloned()
            .partition(|s| s.config().organisation.kind == OrgKind::GpPractice);
        let decisions = self.decisions().await?;
        let mut synced = Vec::with_capacity(gps.len() + others.len());
        for s in &gps {
            synced.push(
                self.sync_source(s.id().clone(), true, full, &decisions)
                    .await,
            );
        }
        synced.extend(
            join_all(
                others
                    .iter()
                    .map(|s| self.sync_source(s.id().clone(), false, full, &decisions)),
            )
            .await,
        );

        let mut reports = Vec::new();
        let mut waiting: Vec<(usize, SourcePatient)> = Vec::new();
        let mut flagged = Vec::new();
        for result in synced {
            let (report, pending, flags) = result?;
            let at = reports.len();
            waiting.extend(pending.into_iter().map(|p| (at, p)));
            flagged.extend(flags);
            reports.push(report);
        }

        // Second pass, once every NHS-numbered record is in: match the rest by demographics.
        let matching = self
            .match_waiting(waiting, flagged, &decisions, &mut reports)
            .await?;
        // Care events, once every link is in: they are kept by NHS number.
        let care = join_all(others.iter().map(|s| self.sync_care_events(Arc::clone(s)))).await;
        for (i, counts) in care.into_iter().enumerate() {
            let counts = counts?;
            if let Some(report) = reports.get_mut(gps.len() + i) {
                report.care_events = counts.care_events;
                report.care_events_withdrawn = counts.care_events_withdrawn;
                report.care_events_unlinked = counts.care_events_unlinked;
                report.care_events_skipped = counts.care_events_skipped;
                report.care_events_failed = counts.care_events_failed;
            }
        }
        for r in &reports {
            tracing::info!(
                source = %r.source, registrations = r.registrations,
                registrations_without_period = r.registrations_without_period,
                care_events = r.care_events, withdrawn = r.care_events_withdrawn,
                unlinked = r.care_events_unlinked, skipped = r.care_events_skipped,
                failed = r.care_events_failed.is_some(),
                "care events"
            );
            tracing::info!(
                source = %r.source, seen = r.seen, by_nhs = r.linked_by_nhs_number,
                by_demographics = r.linked_by_demographics, ambiguous = r.ambiguous,
                review = r.review, wrong_nhs = r.possible_wrong_nhs_number,
                stale = r.stale_links_removed, unmatched = r.unmatched, rejected = r.rejected,
                failed = r.failed.is_some(),
                "index sync"
            );
        }
        Ok(SyncReport {
            sources: reports,
            matching,
        })
    }

    /// One source's feed, page by page. Returns its report and the records that carry no
    /// NHS number (matched by demographics once every source is in). If the feed fails part
    /// way, what was read stays in the index and the watermark stays where it was, so the next
    /// incremental sync reads again from there.
    async fn sync_source(
        &self,
        source: SourceId,
        authoritative: bool,
        full: bool,
        decisions: &Decisions,
    ) -> Result<(SourceSyncReport, Vec<SourcePatient>, Vec<MatchCandidateRow>), StoreError> {
        let since = if full {
            None
        } else {
            self.store.sync_watermark(&source).await?
        };
        let mut page = PageState {
            report: SourceSyncReport {
                source: source.to_string(),
                ..Default::default()
            },
            // Records an earlier sync left unmatched: cleared when they now carry an NHS number.
            unmatched: self
                .store
                .unmatched(Some(&source))
                .await?
                .into_iter()
                .map(|u| u.local_id)
                .collect(),
            pending: Vec::new(),
            flagged: Vec::new(),
            watermark: None,
        };
        // Two pages in hand at most: the next is read while this one is written.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<serde_json::Value>>(2);
        let feed = self.federation.patient_feed(&source, since.as_deref(), tx);
        let apply = async {
            while let Some(resources) = rx.recv().await {
                self.apply_page(&source, authoritative, &resources, decisions, &mut page)
                    .await?;
            }
            Ok::<_, StoreError>(())
        };
        let (fed, applied) = tokio::join!(feed, apply);
        applied?;
        let PageState {
            mut report,
            pending,
            flagged,
            watermark,
            ..
        } = page;
        match fed {
            Err(reason) => {
                tracing::warn!(source = %source, reason = reason.code(), "index sync: source failed");
                report.failed = Some(reason);
            }
            Ok(()) => {
                if let Some(w) = watermark {
                    self.store.set_sync_watermark(&source, &w).await?;
                }
            }
        }
        Ok((report, pending, flagged))
    }

    /// Write one page of a source's `Patient`s to the index.
    ///
    /// A record carrying an NHS number the index already holds is first compared with the
    /// patient held: if given name, birth date or sex disagree outright it is not linked (nor
    /// are its demographics written) but flagged as a possible wrong NHS number and matched by
    /// demographics with the records that carry none.
    async fn apply_page(
        &self,
        source: &SourceId,
        authoritative: bool,
        resources: &[serde_json::Value],
        decisions: &Decisions,
        state: &mut PageState,
    ) -> Result<(), StoreError> {
        state.report.seen += resources.len();
        let now = self.clock.now();
        let mut read = Vec::with_capacity(resources.len());
        for r in resources {
            match parse_patient(source, r) {
                Some(p)
                    if p.birth_date.is_some() && !(p.family.is_empty() && p.given.is_empty()) =>
                {
                    read.push((p, r));
                }
                _ => state.report.rejected += 1,
            }
        }
        // The patients the index already holds under this page's NHS numbers: one read.
        let numbers: Vec<NhsNumber> = read
            .iter()
            .filter_map(|(p, _)| p.nhs_number.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let held_now: HashMap<NhsNumber, Prepared> = self
            .store
            .patients_by_nhs(&numbers)
            .await?
            .into_iter()
            .map(|h| {
                let prepared = Prepared::new(
                    &h.family,
                    &h.given,
                    Some(h.birth_date),
                    h.gender.as_deref(),
                    h.postcode.as_deref(),
                    Some(h.nhs_number.clone()),
                );
                (h.nhs_number, prepared)
            })
            .collect();

        let mut patients = Vec::new();
        // NHS numbers already in `patients`: a source may hold one person twice.
        let mut held = HashSet::new();
        let mut links = Vec::new();
        let mut registrations = Vec::new();
        for (p, r) in read {
            if let Some(lu) = &p.last_updated {
                if state.watermark.as_deref().is_none_or(|w| lu.as_str() > w) {
                    state.watermark = Some(lu.clone());
                }
            }
            let Some(nhs) = p.nhs_number.clone() else {
                state.pending.push(p);
                continue;
            };
            if let Some(theirs) = held_now.get(&nhs) {
                let scored = matching::compare(&p.prepared(), theirs, &self.weights);
                if matching::wrong_nhs_number(&scored, &self.weights)
                    && !decisions.confirmed(&p, &nhs)
                {
                    state.flagged.push(p.candidate(
                        &nhs,
                        "possible-wrong-nhs-number",
                        &scored,
                        None,
                        now,
                    ));
                    state.report.possible_wrong_nhs_number += 1;
                    state.pending.push(p);
                    continue;
                }
            }
            if let (true, Some(practice)) = (authoritative, &p.gp_practice) {
                match care_events::registration(source, r, practice) {
                    Some(parts) => registrations.push(parts.row(nhs.clone(), now)),
                    None => state.report.registrations_without_period += 1,
                }
            }
            if held.insert(nhs.clone()) {
                patients.push(p.indexed(nhs.clone(), now));
            }
            links.push(p.link(nhs, LinkMethod::NhsNumber, now));
            state.report.linked_by_nhs_number += 1;
        }
        // Demographics from a GP source replace what is held; others only fill gaps.
        for chunk in patients.chunks(BATCH) {
            if authoritative {
                self.store.upsert_patients(chunk).await?;
            } else {
                self.store.insert_missing_patients(chunk).await?;
            }
        }
        for chunk in links.chunks(BATCH) {
            self.store.upsert_links(chunk).await?;
        }
        for r in &mut registrations {
            r.origin = "gp-registration".into();
        }
        for chunk in registrations.chunks(BATCH) {
            self.store.upsert_care_events(chunk).await?;
        }
        state.report.registrations += registrations.len();
        // Records an earlier sync left unmatched or in review, now linked by NHS number.
        let settled: Vec<RecordKey> = links
            .iter()
            .filter(|l| state.unmatched.remove(&l.local_id))
            .map(|l| (l.source.clone(), l.local_id.clone()))
            .collect();
        if !settled.is_empty() {
            self.store.clear_unmatched_batch(&settled).await?;
            self.store.replace_match_candidates(&settled, &[]).await?;
        }
        Ok(())
    }

    /// One source's care-event metadata, type by type, page by page: kept by NHS number
    /// through the index's links.
    async fn sync_care_events(
        &self,
        source: Arc<dyn mcr_federation::Source>,
    ) -> Result<SourceSyncReport, StoreError> {
        let mut counts = SourceSyncReport::default();
        let config = source.config();
        let from = (self.clock.now() - chrono::Duration::days(i64::from(self.care_event_days)))
            .date_naive();
        let mut nhs_of: std::collections::HashMap<String, Option<NhsNumber>> =
            std::collections::HashMap::new();
        for rt in care_events::CARE_EVENT_TYPES {
            if !config.resource_types.iter().any(|t| t == rt) {
                continue;
            }
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<serde_json::Value>>(2);
            let feed = self.federation.care_event_feed(source.id(), rt, from, tx);
            let apply = async {
                while let Some(page) = rx.recv().await {
                    self.apply_care_events(&*source, &page, &mut nhs_of, &mut counts)
                        .await?;
                }
                Ok::<_, StoreError>(())
            };
            let (fed, applied) = tokio::join!(feed, apply);
            applied?;
            if let Err(reason) = fed {
                tracing::warn!(source = %source.id(), resource_type = rt, reason = reason.code(), "care-event read failed");
                counts.care_events_failed = Some(reason);
            }
        }
        Ok(counts)
    }

    async fn apply_care_events(
        &self,
        source: &dyn mcr_federation::Source,
        page: &[serde_json::Value],
        nhs_of: &mut std::collections::HashMap<String, Option<NhsNumber>>,
        counts: &mut SourceSyncReport,
    ) -> Result<(), StoreError> {
        let config = source.config();
        let now = self.clock.now();
        let mut keep = Vec::new();
        for r in page {
            match care_events::read_event(
                source.id(),
                &config.organisation.code,
                config.organisation.kind,
                r,
            ) {
                care_events::ReadEvent::Keep { local_id, row } => {
                    let nhs = match nhs_of.get(&local_id) {
                        Some(n) => n.clone(),
                        None => {
                            let n = self
                                .store
                                .link_for_local(source.id(), &local_id)
                                .await?
                                .map(|l| l.nhs_number);
                            nhs_of.insert(local_id, n.clone());
                            n
                        }
                    };
                    match nhs {
                        Some(nhs) => keep.push(row.row(nhs, now)),
                        None => counts.care_events_unlinked += 1,
                    }
                }
                care_events::ReadEvent::Withdrawn { source_event_id } => {
                    let org = config.organisation.code.to_string();
                    self.store
                        .cancel_care_event(mcr_store::CareEventKey {
                            origin: "fhir",
                            org_code: &org,
                            source_event_id: &source_event_id,
                        })
                        .await?;
                    counts.care_events_withdrawn += 1;
                }
                care_events::ReadEvent::Skip => counts.care_events_skipped += 1,
            }
        }
        for chunk in keep.chunks(BATCH) {
            self.store.upsert_care_events(chunk).await?;
        }
        counts.care_events += keep.len();
        Ok(())
    }

    /// What people decided about pairs.
    async fn decisions(&self) -> Result<Decisions, StoreError> {
        let mut d = Decisions::default();
        for row in self.store.match_decisions().await? {
            let key = (row.source, row.local_id);
            match row.decision.as_str() {
                "link" => {
                    d.linked.insert(key, row.nhs_number);
                }
                _ => d.not_a_match.entry(key).or_default().push(row.nhs_number),
            }
        }
        Ok(d)
    }

    /// The demographic pass: every waiting record matched against the whole index at once;
    /// links, review candidates and unmatched records written in batches; a record that no
    /// longer links loses its old link.
    async fn match_waiting(
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
            }
        }
        let (outcomes, counts) =
            linkage::match_against_index(&*self.store, &prepared, &ruled_out, &self.weights)
                .await?;

        let mut evaluated: Vec<RecordKey> = Vec::with_capacity(to_match.len());
        let mut candidates = flagged;
        let mut unmatched = Vec::new();
        let mut unlink: Vec<Vec<RecordKey>> = vec![Vec::new(); reports.len()];
        for ((at, p), outcome) in to_match.iter().zip(outcomes) {
            let report = &mut reports[*at];
            evaluated.push(p.key());
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
        // One transaction each (the store splits them into statements).
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
            "matching pass"
        );
        Ok(MatchingPass {
            records: waiting_count,
            index_patients: counts.index_patients_read,
            comparisons: counts.comparisons,
            millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            compare_millis: u64::try_from(compared.as_millis()).unwrap_or(u64::MAX),
        })
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
