//! The watch's part of a permitted view, at the gateway: the view counted and checked, its
//! flags committed beside the view's audit record and told to privacy officers, and a view
//! over the hard limit refused.

use super::*;

impl Gateway {
    /// A restricted-record flag on `nhs` for this request: an `anomaly-flag` (outcome
    /// `alert`, basis `restricted-record`) that the review queue lists.
    pub(crate) fn restricted_flag(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
        evidence: String,
    ) -> mcr_audit::AuditEvent {
        self.metrics.watch_flag(WatchRule::RestrictedRecord.code());
        let mut event = self.event(ctx, Action::AnomalyFlag, Some(nhs.as_str()));
        event.outcome = Outcome::Alert;
        event.basis = Some(WatchRule::RestrictedRecord.code().to_owned());
        event.detail = Some(evidence);
        event
    }

    /// The watch's part of a permitted view: the view counted in the store (the protected
    /// person list is cached; only the very first view of a gateway reads it). `Err`: it could
    /// not be counted.
    pub(crate) async fn watch_view(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
        patient: &mcr_store::IndexedPatient,
    ) -> CounterResult<Watched> {
        let p = &ctx.principal;
        let protected = self.protected_category(nhs).await;
        let at = self.clock.now();
        let checked = self
            .watch
            .check(Seen {
                user_id: &p.user_id,
                patient: nhs.as_str(),
                facts: ViewFacts {
                    at,
                    org_kind: p.organisation.kind,
                    user_name: &p.name,
                    user_postcode: None,
                    patient_family: &patient.family,
                    patient_postcode: patient.postcode.as_deref(),
                    protected: protected.as_deref(),
                    count: ViewCount::default(),
                },
            })
            .await?;
        let mut watched = Watched::default();
        if let Some(count) = checked.refused {
            let cfg = &self.watch.config;
            watched.refusal = Some(format!(
                "You have viewed {} different patients' records within {}, the most My Care Record allows, so this record cannot be shown now. This is recorded for the privacy officer. If you need it for a patient in your care, contact {}.",
                count.distinct - 1,
                cfg.window_words(),
                cfg.contact
            ));
            watched.retry_after_secs = count
                .oldest
                .map(|o| (o + cfg.window - at).num_seconds().max(1))
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(60);
        }
        for (f, suppressed) in checked.flags {
            self.metrics.watch_flag(f.rule.code());
            let mut event = self.event(ctx, Action::AnomalyFlag, Some(nhs.as_str()));
            event.outcome = Outcome::Alert;
            event.basis = Some(f.rule.code().to_owned());
            let mut evidence = f.evidence;
            if suppressed > 0 {
                evidence.push_str(&format!(
                    " {suppressed} more like this since the last flag for this user and rule."
                ));
            }
            event.detail = Some(evidence.clone());
            watched.notices.push((f.rule, f.count, evidence));
            watched.flags.push(event);
        }
        Ok(watched)
    }

    /// Tell the notifier (if there is one) of a committed flag or emergency access.
    pub(crate) fn tell_privacy_officers(&self, notice: FlagNotice) {
        if let Some(sink) = &self.watch.sink {
            sink.flagged(notice);
        }
    }

    /// Commit the watch's flags (beside the view's own audit record) and tell the sink. A flag
    /// that cannot be written is logged and counted, never silent; it does not stop the view.
    pub(crate) async fn write_flags(&self, watched: &Watched) {
        for (event, (rule, count, evidence)) in watched.flags.iter().zip(&watched.notices) {
            match self.audit(event).await {
                Ok(row) => {
                    if let Some(sink) = &self.watch.sink {
                        sink.flagged(FlagNotice {
                            seq: row.seq,
                            at: event.at,
                            rule: *rule,
                            user_id: event.user_id.clone(),
                            user_name: event.user_name.clone(),
                            org_code: event.org_code.clone(),
                            org_name: event.org_name.clone(),
                            count: *count,
                            evidence: evidence.clone(),
                        });
                    }
                }
                Err(_) => {
                    self.metrics.watch_flag_lost(rule.code());
                    tracing::error!(correlation = %event.correlation_id, rule = rule.code(), "anomaly flag not written to the audit trail");
                }
            }
        }
    }

    /// A view over the hard limit: audited as a refusal, its flag committed beside it, and
    /// refused with the sentence.
    pub(crate) async fn refuse_watched(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
        watched: Watched,
    ) -> GatewayError {
        let sentence = watched.refusal.clone().unwrap_or_default();
        let mut event = self.event(ctx, Action::ViewRecord, Some(nhs.as_str()));
        event.outcome = Outcome::Deny;
        event.basis = Some(WatchRule::TooManyPatients.code().into());
        event.detail = Some(sentence.clone());
        let (refusal, ()) = tokio::join!(self.audit(&event), self.write_flags(&watched));
        match refusal {
            Ok(_) => GatewayError::TooManyPatients {
                sentence,
                retry_after_secs: watched.retry_after_secs,
            },
            Err(e) => e,
        }
    }

    /// The gateway's metrics, to share with what runs beside it (the notifier).
    pub fn shared_metrics(&self) -> Arc<crate::Metrics> {
        self.metrics.clone()
    }

    /// The watch (its rules and counters).
    pub fn watch(&self) -> &Watch {
        &self.watch
    }

    /// Watch views with these rules and limits.
    pub fn with_watch(mut self, watch: Watch) -> Self {
        self.watch = Arc::new(watch);
        self
    }
}
