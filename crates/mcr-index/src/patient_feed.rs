//! A source's `Patient`s, pages gathered as they arrive and written [`FEED_WRITE_ROWS`] at a
//! time: each record with an NHS number linked by
//! it (unless the index holds that number for someone who disagrees outright), its GP
//! registration kept, and the rest set aside for the demographic pass.

use crate::demographic_pass::Decisions;
use crate::{care_events, matching, parse_patient, Indexer, SourcePatient, SourceSyncReport};
use matching::Prepared;
use mcr_domain::{LocalPersonId, NhsNumber, SourceId};
use mcr_store::{LinkMethod, MatchCandidateRow, RecordKey, StoreError};
use std::collections::{HashMap, HashSet};

/// The records a feed's pages are gathered to before they are written, each kind in one
/// transaction. SQLite writes every page of its B-trees that a transaction changed to the
/// log once per transaction, and a source's records land all over the index's B-trees: a
/// page of 1,000 records written alone changes nearly as many B-tree pages as ten together.
/// Ten hold the writer for a few tenths of a second.
pub(crate) const FEED_WRITE_ROWS: usize = 10_000;

/// What a source's sync has gathered so far, page after page.
struct PageState {
    report: SourceSyncReport,
    /// Local ids an earlier sync left unmatched (few).
    unmatched: std::collections::HashSet<String>,
    /// Of those, the records an earlier sync could not read.
    unreadable_before: HashSet<String>,
    /// The records this sync could not read.
    unreadable_now: HashSet<String>,
    /// Records without an NHS number (or with one the index holds for someone else), for the
    /// demographic pass.
    pending: Vec<SourcePatient>,
    /// Records whose NHS number the index holds for someone else, as review candidates.
    flagged: Vec<MatchCandidateRow>,
    /// The latest `meta.lastUpdated` seen.
    watermark: Option<String>,
    /// Local identities a record linked to one now names by its NHS number.
    resolve: Vec<(LocalPersonId, NhsNumber)>,
}
/// What one source's feed gave the sync.
pub(crate) struct SourceFeed {
    pub report: SourceSyncReport,
    /// Records for the demographic pass.
    pub pending: Vec<SourcePatient>,
    /// Records whose NHS number the index holds for someone else, as review candidates.
    pub flagged: Vec<MatchCandidateRow>,
    /// Local identities a record linked to one now names by its NHS number.
    pub resolve: Vec<(LocalPersonId, NhsNumber)>,
}

impl Indexer {
    /// One source's feed, page by page (written [`FEED_WRITE_ROWS`] records at a time).
    /// Returns its report and the records that carry no NHS number (matched by demographics
    /// once every source is in). If the feed fails part way, what was read stays in the index
    /// and the watermark stays where it was, so the next incremental sync reads again from
    /// there.
    pub(crate) async fn sync_source(
        &self,
        source: SourceId,
        authoritative: bool,
        full: bool,
        decisions: &Decisions,
    ) -> Result<SourceFeed, StoreError> {
        let since = if full {
            None
        } else {
            self.store.sync_watermark(&source).await?
        };
        // Records an earlier sync left unmatched: cleared when they now carry an NHS number.
        let unmatched = self.store.unmatched(Some(&source)).await?;
        let mut page = PageState {
            report: SourceSyncReport {
                source: source.to_string(),
                ..Default::default()
            },
            unreadable_before: unmatched
                .iter()
                .filter(|u| mcr_store::UNREADABLE_REASONS.contains(&u.reason.as_str()))
                .map(|u| u.local_id.clone())
                .collect(),
            unreadable_now: HashSet::new(),
            unmatched: unmatched.into_iter().map(|u| u.local_id).collect(),
            pending: Vec::new(),
            flagged: Vec::new(),
            watermark: None,
            resolve: Vec::new(),
        };
        // Two pages waiting at most: the feed reads on while those gathered are written (a
        // feed that fails part way ends the channel, and what it gave is written).
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<serde_json::Value>>(2);
        let feed = self.federation.patient_feed(&source, since.as_deref(), tx);
        let apply = async {
            let mut gathered = Vec::new();
            while let Some(resources) = rx.recv().await {
                gathered.extend(resources);
                if gathered.len() >= FEED_WRITE_ROWS {
                    self.apply_page(&source, authoritative, &gathered, decisions, &mut page)
                        .await?;
                    gathered.clear();
                }
            }
            if !gathered.is_empty() {
                self.apply_page(&source, authoritative, &gathered, decisions, &mut page)
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
            resolve,
            unreadable_before,
            unreadable_now,
            ..
        } = page;
        match fed {
            Err(reason) => {
                tracing::warn!(source = %source, reason = reason.code(), "index sync: source failed");
                report.failed = Some(reason);
            }
            Ok(()) => {
                // A whole source read without a failure: a record an earlier sync could not
                // read that was not sent this time (deleted at the source, or read now and
                // settled above or in the demographic pass) is listed no longer.
                if full {
                    let gone: Vec<RecordKey> = unreadable_before
                        .difference(&unreadable_now)
                        .map(|id| (source.clone(), id.clone()))
                        .collect();
                    self.store.clear_unmatched_batch(&gone).await?;
                }
                if let Some(w) = watermark {
                    self.store.set_sync_watermark(&source, &w).await?;
                }
            }
        }
        Ok(SourceFeed {
            report,
            pending,
            flagged,
            resolve,
        })
    }

    /// Write a source's `Patient`s (the pages gathered so far) to the index.
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
        let mut unreadable = Vec::new();
        for r in resources {
            let Some(p) = parse_patient(source, r) else {
                // Not a Patient, or without an id: counted, with nothing to name it by.
                state.report.rejected += 1;
                continue;
            };
            match unreadable_because(&p, r) {
                None => read.push((p, r)),
                Some(reason) => {
                    state.report.rejected += 1;
                    state.unreadable_now.insert(p.local_id.clone());
                    unreadable.push(mcr_store::UnmatchedRecord {
                        source: source.clone(),
                        local_id: p.local_id,
                        reason: reason.into(),
                        candidates: 0,
                        seen_at: now,
                    });
                }
            }
        }
        // Listed for the people who check matching, so that the source can correct them. A
        // record linked before it became unreadable keeps that link (its NHS number, or the
        // demographics it was matched on, still stand) until it is read again; the pairs it
        // waited in for review showed what it said before, and leave the queue.
        if !unreadable.is_empty() {
            self.store.record_unmatched_batch(&unreadable).await?;
            let keys: Vec<RecordKey> = unreadable
                .iter()
                .map(|u| (u.source.clone(), u.local_id.clone()))
                .collect();
            self.store.replace_match_candidates(&keys, &[]).await?;
            self.store.replace_local_candidates(&keys, &[]).await?;
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
                )
                .with_address(h.address.as_deref());
                (h.nhs_number, prepared)
            })
            .collect();

        let mut patients = Vec::new();
        // NHS numbers already in `patients`: a source may hold one person twice.
        let mut held = HashSet::new();
        let mut links = Vec::new();
        let mut registrations = Vec::new();
        let mut statuses = Vec::new();
        for (p, r) in read {
            if let Some(lu) = &p.last_updated {
                if state.watermark.as_deref().is_none_or(|w| lu.as_str() > w) {
                    state.watermark = Some(lu.clone());
                }
            }
            let Some(carried) = p.nhs_number.clone() else {
                state.pending.push(p);
                continue;
            };
            // A number merged into another: the record is the survivor's (checked against
            // them like any other), and its demographics do not bring the retired row back.
            let (nhs, redirected) = match decisions.survivor_of(&carried) {
                Some(survivor) => {
                    state.report.merged_redirected += 1;
                    (survivor.clone(), true)
                }
                None => (carried, false),
            };
            // A record of a merged number is not second-guessed against the survivor: a person
            // decided these numbers are one person (an unmerge is how that is undone).
            if let (false, Some(theirs)) = (redirected, held_now.get(&nhs)) {
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
            if !redirected && held.insert(nhs.clone()) {
                patients.push(p.indexed(nhs.clone(), now));
            }
            // A source labelling its Patient restricted (R or V) restricts the person in the
            // index too: their location is never shown, whichever source is asked.
            if mcr_fhir::restricted_label(r) {
                statuses.push(mcr_store::PatientStatusRow {
                    nhs_number: nhs.clone(),
                    restricted: true,
                    deceased: None,
                    said_by: "source-label".into(),
                    updated_at: now,
                });
            }
            // A record linked to a local identity now carries an NHS number: the local
            // identity is that person.
            if let Some(home) = decisions.home_of(&p) {
                state.resolve.push((home, nhs.clone()));
            }
            links.push(p.link(nhs, LinkMethod::NhsNumber, now));
            state.report.linked_by_nhs_number += 1;
        }
        // Demographics from a GP source replace what is held; others only fill gaps.
        for chunk in patients.chunks(FEED_WRITE_ROWS) {
            if authoritative {
                self.store.upsert_patients(chunk).await?;
            } else {
                self.store.insert_missing_patients(chunk).await?;
            }
        }
        for chunk in links.chunks(FEED_WRITE_ROWS) {
            self.store.upsert_links(chunk).await?;
        }
        self.store.put_patient_statuses(&statuses).await?;
        for r in &mut registrations {
            r.origin = "gp-registration".into();
        }
        for chunk in registrations.chunks(FEED_WRITE_ROWS) {
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
}

/// Why a source record cannot be read for the index ([`mcr_store::UNREADABLE_REASONS`]), if
/// it cannot: every index person has a birth date and a name, which matching needs.
fn unreadable_because(p: &SourcePatient, r: &serde_json::Value) -> Option<&'static str> {
    if p.birth_date.is_none() {
        return Some(if r.get("birthDate").is_some_and(|d| !d.is_null()) {
            "birth-date-unreadable"
        } else {
            "no-birth-date"
        });
    }
    (p.family.is_empty() && p.given.is_empty()).then_some("no-name")
}
