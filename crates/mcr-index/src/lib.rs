//! The patient index (record locator): for each NHS number, which sources hold the patient
//! and under which local id, plus the demographics needed to find them.
//!
//! Built by reading every source's `Patient` resources ([`Indexer::sync`], full or
//! incremental). A source record carrying an NHS number is linked by it. One without is
//! matched on normalised family name, date of birth and postcode (and the first letter of the
//! given name) against the index; exactly one candidate links it, marked `demographics`;
//! none or several leave it unmatched for a person to resolve. An ambiguous match is never
//! linked automatically.
//!
//! With the sync it reads care-event metadata ([`care_events`]): GP registrations from the GP
//! systems' `Patient`s, and from other sources the Encounter, EpisodeOfCare, ServiceRequest,
//! Appointment and CareTeam resources their configuration lists, ending within the policy's
//! window or open: status, period, organisation, ward and team only.
//!
//! This crate keeps demographics, links and care-event times only, never clinical data, and
//! never logs names, dates of birth or NHS numbers.

pub mod care_events;
mod parse;

pub use parse::{parse_patient, SourcePatient};

use futures::future::join_all;
use mcr_domain::{Clock, FailureReason, NhsNumber, OrgKind, SourceId};
use mcr_federation::Federation;
use mcr_store::{
    DemographicQuery, IndexedPatient, LinkMethod, SourceLink, Store, StoreError, UnmatchedRecord,
};
use serde::Serialize;
use std::sync::Arc;

/// What one sync did for one source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SourceSyncReport {
    pub source: String,
    pub seen: usize,
    pub linked_by_nhs_number: usize,
    pub linked_by_demographics: usize,
    pub ambiguous: usize,
    pub unmatched: usize,
    /// Records that could not be read (no id, no birth date, …).
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
}

/// What a source's sync has gathered so far, page after page.
struct PageState {
    report: SourceSyncReport,
    /// Local ids an earlier sync left unmatched (few).
    unmatched: std::collections::HashSet<String>,
    /// Records without an NHS number, for the demographic pass.
    pending: Vec<SourcePatient>,
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
        }
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
    /// fill gaps, so the other sources are read at once, beside the GP systems; GP systems are
    /// read one after another in configuration order, so that where two hold the same person
    /// the last configured wins, every time.
    pub async fn sync(&self, full: bool) -> Result<SyncReport, IndexError> {
        let (gps, others): (Vec<_>, Vec<_>) = self
            .federation
            .sources()
            .cloned()
            .partition(|s| s.config().organisation.kind == OrgKind::GpPractice);
        let gp_systems = async {
            let mut done = Vec::with_capacity(gps.len());
            for s in &gps {
                done.push(self.sync_source(s.id().clone(), true, full).await);
            }
            done
        };
        let the_rest = join_all(
            others
                .iter()
                .map(|s| self.sync_source(s.id().clone(), false, full)),
        );
        let (mut synced, rest) = tokio::join!(gp_systems, the_rest);
        // Reported GP systems first.
        synced.extend(rest);

        let mut reports = Vec::new();
        let mut pending_demographic: Vec<(usize, SourcePatient)> = Vec::new();
        for result in synced {
            let (report, pending) = result?;
            let at = reports.len();
            pending_demographic.extend(pending.into_iter().map(|p| (at, p)));
            reports.push(report);
        }

        // Second pass, once every NHS-numbered record is in: match the rest by demographics.
        for (at, p) in pending_demographic {
            let report = &mut reports[at];
            match self.match_demographics(&p).await? {
                Match::One(nhs) => {
                    let link = p.link(nhs, LinkMethod::Demographics, self.clock.now());
                    self.store.upsert_links(std::slice::from_ref(&link)).await?;
                    self.store
                        .clear_unmatched(&link.source, &link.local_id)
                        .await?;
                    report.linked_by_demographics += 1;
                }
                Match::None => {
                    self.unmatched(&p, "no-match", 0).await?;
                    report.unmatched += 1;
                }
                Match::Many(n) => {
                    self.unmatched(&p, "ambiguous", n).await?;
                    report.ambiguous += 1;
                }
            }
        }
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
                unmatched = r.unmatched, rejected = r.rejected, failed = r.failed.is_some(),
                "index sync"
            );
        }
        Ok(SyncReport { sources: reports })
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
    ) -> Result<(SourceSyncReport, Vec<SourcePatient>), StoreError> {
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
            watermark: None,
        };
        // Two pages in hand at most: the next is read while this one is written.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<serde_json::Value>>(2);
        let feed = self.federation.patient_feed(&source, since.as_deref(), tx);
        let apply = async {
            while let Some(resources) = rx.recv().await {
                self.apply_page(&source, authoritative, &resources, &mut page)
                    .await?;
            }
            Ok::<_, StoreError>(())
        };
        let (fed, applied) = tokio::join!(feed, apply);
        applied?;
        let PageState {
            mut report,
            pending,
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
        Ok((report, pending))
    }

    /// Write one page of a source's `Patient`s to the index.
    async fn apply_page(
        &self,
        source: &SourceId,
        authoritative: bool,
        resources: &[serde_json::Value],
        state: &mut PageState,
    ) -> Result<(), StoreError> {
        state.report.seen += resources.len();
        let mut patients = Vec::new();
        // NHS numbers already in `patients`: a source may hold one person twice.
        let mut held = std::collections::HashSet::new();
        let mut links = Vec::new();
        let mut registrations = Vec::new();
        let now = self.clock.now();
        for r in resources {
            let Some(p) = parse_patient(source, r) else {
                state.report.rejected += 1;
                continue;
            };
            if let (true, Some(nhs), Some(practice)) =
                (authoritative, &p.nhs_number, &p.gp_practice)
            {
                match care_events::registration(source, r, practice) {
                    Some(parts) => registrations.push(parts.row(nhs.clone(), now)),
                    None => state.report.registrations_without_period += 1,
                }
            }
            if let Some(lu) = &p.last_updated {
                if state.watermark.as_deref().is_none_or(|w| lu.as_str() > w) {
                    state.watermark = Some(lu.clone());
                }
            }
            match &p.nhs_number {
                Some(nhs) => {
                    if held.insert(nhs.clone()) {
                        patients.push(p.indexed(nhs.clone(), now));
                    }
                    links.push(p.link(nhs.clone(), LinkMethod::NhsNumber, now));
                    state.report.linked_by_nhs_number += 1;
                }
                None => state.pending.push(p),
            }
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
        for l in &links {
            if state.unmatched.remove(&l.local_id) {
                self.store.clear_unmatched(source, &l.local_id).await?;
            }
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

    async fn unmatched(
        &self,
        p: &SourcePatient,
        reason: &str,
        candidates: u32,
    ) -> Result<(), StoreError> {
        self.store
            .record_unmatched(&UnmatchedRecord {
                source: p.source.clone(),
                local_id: p.local_id.clone(),
                reason: reason.to_owned(),
                candidates,
                seen_at: self.clock.now(),
            })
            .await
    }

    async fn match_demographics(&self, p: &SourcePatient) -> Result<Match, StoreError> {
        let (Some(birth_date), Some(postcode)) = (p.birth_date, p.postcode.as_ref()) else {
            return Ok(Match::None);
        };
        if p.family.is_empty() {
            return Ok(Match::None);
        }
        let q = DemographicQuery {
            family: p.family.clone(),
            given: None,
            birth_date: Some(birth_date),
            postcode: Some(postcode.clone()),
        };
        let initial = mcr_domain::demographics::normalise_name(&p.given)
            .chars()
            .next();
        let candidates: Vec<IndexedPatient> = self
            .store
            .search_patients(&q, 10)
            .await?
            .into_iter()
            .filter(|c| {
                mcr_domain::demographics::normalise_name(&c.given)
                    .chars()
                    .next()
                    == initial
            })
            .collect();
        Ok(match candidates.len() {
            0 => Match::None,
            1 => Match::One(
                candidates
                    .into_iter()
                    .next()
                    .map(|c| c.nhs_number)
                    .ok_or_else(|| StoreError::Corrupt("empty".into()))?,
            ),
            n => Match::Many(u32::try_from(n).unwrap_or(u32::MAX)),
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

enum Match {
    None,
    One(NhsNumber),
    Many(u32),
}

/// The source ids a patient is linked in, for logs and reports.
pub fn source_ids(links: &[SourceLink]) -> Vec<SourceId> {
    links.iter().map(|l| l.source.clone()).collect()
}
