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
//! This crate keeps demographics and links only, never clinical data, and never logs names,
//! dates of birth or NHS numbers.

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

#[derive(Debug, Clone)]
pub struct Indexer {
    federation: Arc<Federation>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
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
        }
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
        for r in &reports {
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
        let now = self.clock.now();
        for r in resources {
            let Some(p) = parse_patient(source, r) else {
                state.report.rejected += 1;
                continue;
            };
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
        for l in &links {
            if state.unmatched.remove(&l.local_id) {
                self.store.clear_unmatched(source, &l.local_id).await?;
            }
        }
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
