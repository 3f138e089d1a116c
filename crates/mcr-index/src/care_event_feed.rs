//! A source's care-event metadata, type by type and page by page, kept by NHS number through
//! the index's links (read with [`crate::care_events`]); withdrawn events removed, the rest
//! counted.

use crate::{care_events, Indexer, SourceSyncReport, BATCH};
use mcr_domain::NhsNumber;
use mcr_store::StoreError;
use std::sync::Arc;

impl Indexer {
    /// One source's care-event metadata, type by type, page by page: kept by NHS number
    /// through the index's links.
    pub(crate) async fn sync_care_events(
        &self,
        source: Arc<dyn mcr_federation::Source>,
    ) -> Result<SourceSyncReport, StoreError> {
        let mut counts = SourceSyncReport::default();
        let from = (self.clock.now() - chrono::Duration::days(i64::from(self.care_event_days)))
            .date_naive();
        let mut nhs_of: std::collections::HashMap<String, Option<NhsNumber>> =
            std::collections::HashMap::new();
        for rt in care_events::CARE_EVENT_TYPES {
            if !self.federation.asks(&*source, rt) {
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
}
