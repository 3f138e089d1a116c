//! The gateway's own numbers, in the Prometheus text format (`GET /metrics`): how long views
//! take, how each source answers, what the policy decides, how long audit appends take.
//!
//! Labels carry codes only (outcome, source id, failure reason, action): never an NHS number,
//! a name or anything from a record. The benchmark (`mcr-bench`) reads these same series, so
//! what it reports and what production shows cannot disagree.

use mcr_domain::FailureReason;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::{Duration, Instant};

mod watch;

/// Bucket bounds (seconds) for views and sources: fine below 10 ms where the gateway's own
/// overhead lives, then up to and past the default 3 s deadline.
const LATENCY_BUCKETS: [f64; 20] = [
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
    0.5, 1.0, 2.0, 3.0, 5.0,
];

/// Bucket bounds (seconds) for audit appends (a durable commit: fsync on SQLite).
const AUDIT_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceFormLabel {
    source: String,
    form: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceFailureLabel {
    source: String,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabel {
    action: &'static str,
    outcome: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS.iter().copied())
}

fn audit_histogram() -> Histogram {
    Histogram::new(AUDIT_BUCKETS.iter().copied())
}

/// The registry and every series in it. One per gateway; cheap to share (`Arc`).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    views: Family<OutcomeLabel, Histogram>,
    source_latency: Family<SourceLabel, Histogram>,
    source_own_latency: Family<SourceLabel, Histogram>,
    source_failures: Family<SourceFailureLabel, Counter>,
    decisions: Family<DecisionLabel, Counter>,
    audit_appends: Family<OutcomeLabel, Histogram>,
    ready: Gauge,
    not_ready: Family<OutcomeLabel, Counter>,
    capability_types: Family<SourceLabel, Gauge>,
    capability_age: Family<SourceLabel, Gauge>,
    capability_failures: Family<SourceLabel, Gauge>,
    unsearchable_forms: Family<SourceFormLabel, Gauge>,
    pub(crate) watch: watch::WatchMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mcr");
        let views = Family::<OutcomeLabel, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "view_duration_seconds",
            "Record views, from the start of view_record to the record ready to send (outcome: permit, needs-permission, needs-relationship, deny, error)",
            views.clone(),
        );
        let source_latency = Family::<SourceLabel, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "source_fetch_duration_seconds",
            "One source's part of one view as the gateway saw it (all its searches and pages; failures and timeouts included)",
            source_latency.clone(),
        );
        let source_own_latency = Family::<SourceLabel, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "source_reported_duration_seconds",
            "One source's part of one view as the source itself reported it (Server-Timing app;dur, slowest search path)",
            source_own_latency.clone(),
        );
        let source_failures = Family::<SourceFailureLabel, Counter>::default();
        registry.register(
            "source_failures",
            "Sources that failed a view, by reason code (timeout, unreachable, http-status, malformed, too-large)",
            source_failures.clone(),
        );
        let decisions = Family::<DecisionLabel, Counter>::default();
        registry.register(
            "decisions",
            "Access decisions, by action and outcome",
            decisions.clone(),
        );
        let audit_appends = Family::<OutcomeLabel, Histogram>::new_with_constructor(
            audit_histogram as fn() -> Histogram,
        );
        registry.register(
            "audit_append_duration_seconds",
            "Audit trail appends, committed (outcome ok) or refused (outcome error)",
            audit_appends.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 when this gateway's last readiness check (/readyz) passed, 0 when it did not",
            ready.clone(),
        );
        let not_ready = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "not_ready_checks",
            "Readiness checks that failed, by reason (draining, store-unwritable)",
            not_ready.clone(),
        );
        let capability_types = Family::<SourceLabel, Gauge>::default();
        registry.register(
            "source_capability_types",
            "Resource types a source's CapabilityStatement lists as searchable by patient, as last read (-1: never read)",
            capability_types.clone(),
        );
        let capability_age = Family::<SourceLabel, Gauge>::default();
        registry.register(
            "source_capability_read_timestamp_seconds",
            "When a source's CapabilityStatement was last read (Unix time; 0: never)",
            capability_age.clone(),
        );
        let capability_failures = Family::<SourceLabel, Gauge>::default();
        registry.register(
            "source_capability_failures",
            "Attempts to read a source's CapabilityStatement that failed since start-up",
            capability_failures.clone(),
        );
        let unsearchable_forms = Family::<SourceFormLabel, Gauge>::default();
        registry.register(
            "source_unsearchable_form",
            "1 when views cannot ask a source for the items that name the patient in this form of reference (identifier: only by NHS number; other-server: by an address outside this region's sources; contained: inside the item), so its view warns of them; 0 when they can",
            unsearchable_forms.clone(),
        );
        let watch = watch::WatchMetrics::register(&mut registry);
        Self {
            capability_types,
            unsearchable_forms,
            capability_age,
            capability_failures,
            ready,
            not_ready,
            registry,
            watch,
            views,
            source_latency,
            source_own_latency,
            source_failures,
            decisions,
            audit_appends,
        }
    }

    /// What a source's CapabilityStatement said when last read.
    pub fn capabilities(&self, source: &str, d: &mcr_federation::capabilities::Discovered) {
        let label = SourceLabel {
            source: source.to_owned(),
        };
        let (types, at) = match &d.capabilities {
            Some((c, at)) => (
                i64::try_from(c.types.values().filter(|t| t.by_patient).count())
                    .unwrap_or(i64::MAX),
                at.timestamp(),
            ),
            None => (-1, 0),
        };
        self.capability_types.get_or_create(&label).set(types);
        self.capability_age.get_or_create(&label).set(at);
        self.capability_failures
            .get_or_create(&label)
            .set(i64::try_from(d.failures).unwrap_or(i64::MAX));
    }

    /// Which forms of patient reference views cannot ask a source for ([`mcr_federation::Asking`]).
    pub fn asking(&self, source: &str, asking: &mcr_federation::Asking) {
        for form in mcr_domain::UnsearchableForm::ALL {
            self.unsearchable_forms
                .get_or_create(&SourceFormLabel {
                    source: source.to_owned(),
                    form: form.code(),
                })
                .set(i64::from(asking.unsearchable.contains(&form)));
        }
    }

    /// The Prometheus text exposition of every series.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// A readiness check's result: `Err(reason)` with a code (draining, store-unwritable).
    pub fn readiness(&self, result: Result<(), &'static str>) {
        match result {
            Ok(()) => {
                self.ready.set(1);
            }
            Err(outcome) => {
                self.ready.set(0);
                self.not_ready
                    .get_or_create(&OutcomeLabel { outcome })
                    .inc();
            }
        }
    }

    pub(crate) fn view(&self, outcome: &'static str, took: Duration) {
        self.views
            .get_or_create(&OutcomeLabel { outcome })
            .observe(took.as_secs_f64());
    }

    pub(crate) fn decision(&self, action: mcr_audit::Action, outcome: &'static str) {
        self.decisions
            .get_or_create(&DecisionLabel {
                action: action.as_str(),
                outcome,
            })
            .inc();
    }

    pub(crate) fn source(
        &self,
        source: &str,
        took: Duration,
        own_ms: Option<f64>,
        failure: Option<&FailureReason>,
    ) {
        let label = SourceLabel {
            source: source.to_owned(),
        };
        self.source_latency
            .get_or_create(&label)
            .observe(took.as_secs_f64());
        if let Some(ms) = own_ms {
            self.source_own_latency
                .get_or_create(&label)
                .observe(ms / 1000.0);
        }
        if let Some(f) = failure {
            self.source_failures
                .get_or_create(&SourceFailureLabel {
                    source: label.source,
                    reason: f.code(),
                })
                .inc();
        }
    }

    pub(crate) fn audit_append(&self, ok: bool, took: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        self.audit_appends
            .get_or_create(&OutcomeLabel { outcome })
            .observe(took.as_secs_f64());
    }
}

/// One source's time in one view, as the gateway saw it and as the source said.
#[derive(Debug, Clone)]
pub struct SourceTiming {
    pub source: mcr_domain::SourceId,
    /// As the gateway saw it (request sent to last page parsed), whole milliseconds.
    pub elapsed_ms: u64,
    /// As the source reported it (`Server-Timing: app;dur=`), along its slowest search path.
    pub source_ms: Option<f64>,
}

impl Metrics {
    /// Record every source's part of one view, and return their timings.
    pub(crate) fn sources(&self, fetches: &[mcr_federation::SourceFetch]) -> Vec<SourceTiming> {
        fetches
            .iter()
            .map(|f| {
                let took = Duration::from_millis(f.elapsed_ms);
                self.source(
                    f.source.as_str(),
                    took,
                    f.source_ms,
                    f.outcome.as_ref().err(),
                );
                SourceTiming {
                    source: f.source.clone(),
                    elapsed_ms: f.elapsed_ms,
                    source_ms: f.source_ms,
                }
            })
            .collect()
    }
}

impl crate::Gateway {
    /// Append one audit event, timing it.
    pub(crate) async fn timed_append(
        &self,
        event: &mcr_audit::AuditEvent,
    ) -> Result<mcr_store::AuditRow, mcr_audit::AuditError> {
        let started = Instant::now();
        let appended = mcr_audit::record(self.store().as_ref(), event).await;
        self.metrics()
            .audit_append(appended.is_ok(), started.elapsed());
        appended
    }
}

/// Times one view; records it under "error" unless told the outcome before it is dropped, so
/// every early return is counted.
#[derive(Debug)]
pub(crate) struct ViewTimer {
    metrics: std::sync::Arc<Metrics>,
    started: Instant,
    outcome: &'static str,
}

impl ViewTimer {
    pub(crate) fn start(metrics: std::sync::Arc<Metrics>) -> Self {
        Self {
            metrics,
            started: Instant::now(),
            outcome: "error",
        }
    }

    pub(crate) fn outcome(&mut self, outcome: &'static str) {
        self.outcome = outcome;
    }
}

impl Drop for ViewTimer {
    fn drop(&mut self) {
        self.metrics.view(self.outcome, self.started.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_every_series_with_codes_only() {
        let m = Metrics::new();
        m.view("permit", Duration::from_millis(42));
        m.decision(mcr_audit::Action::ViewRecord, "needs-permission");
        m.source("gp", Duration::from_millis(30), Some(25.0), None);
        m.source(
            "acute",
            Duration::from_millis(3000),
            None,
            Some(&FailureReason::Timeout { after_ms: 3000 }),
        );
        m.audit_append(true, Duration::from_micros(800));
        m.asking(
            "acute",
            &mcr_federation::Asking {
                patient_search: mcr_federation::PatientSearch::Relative,
                identifier_search: mcr_federation::IdentifierSearch::Always,
                by_identifier: vec!["Condition".into()],
                declared_identifier: Vec::new(),
                types: vec!["Condition".into()],
                unsearchable: vec![
                    mcr_domain::UnsearchableForm::OtherServer,
                    mcr_domain::UnsearchableForm::Contained,
                ],
            },
        );
        let text = m.encode();
        for series in [
            "mcr_view_duration_seconds_bucket{le=\"0.05\",outcome=\"permit\"} 1",
            "mcr_decisions_total{action=\"view-record\",outcome=\"needs-permission\"} 1",
            "mcr_source_fetch_duration_seconds_count{source=\"gp\"} 1",
            "mcr_source_reported_duration_seconds_sum{source=\"gp\"} 0.025",
            "mcr_source_failures_total{source=\"acute\",reason=\"timeout\"} 1",
            "mcr_audit_append_duration_seconds_count{outcome=\"ok\"} 1",
            "mcr_source_unsearchable_form{source=\"acute\",form=\"identifier\"} 0",
            "mcr_source_unsearchable_form{source=\"acute\",form=\"other-server\"} 1",
            "mcr_source_unsearchable_form{source=\"acute\",form=\"contained\"} 1",
        ] {
            assert!(text.contains(series), "missing {series} in\n{text}");
        }
    }
}
