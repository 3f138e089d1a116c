//! One index sync: under the store's lease, one gateway of a region at a time; GP systems
//! first, one after another, then the other sources at once; then the demographic pass and the
//! care events; and what it did, per source ([`crate::SourceSyncReport`]).

use crate::{IndexError, Indexer, SourcePatient, SyncReport, SYNC_LEASE, SYNC_LEASE_MS};
use futures::future::join_all;
use mcr_domain::OrgKind;
use std::sync::Arc;

impl Indexer {
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
        let mut resolve = Vec::new();
        for result in synced {
            let feed = result?;
            let at = reports.len();
            waiting.extend(feed.pending.into_iter().map(|p| (at, p)));
            flagged.extend(feed.flagged);
            resolve.extend(feed.resolve);
            reports.push(feed.report);
        }

        // Second pass, once every NHS-numbered record is in: match the rest by demographics.
        let matching = self
            .match_waiting(waiting, flagged, resolve, &decisions, &mut reports)
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
                local_identities = r.local_identities, to_local = r.linked_to_local_identity,
                failed = r.failed.is_some(),
                "index sync"
            );
        }
        Ok(SyncReport {
            sources: reports,
            matching,
        })
    }
}
