//! The watch's series in `GET /metrics`: flags raised by rule, flags that could not be written,
//! failures to read the protected person list, and what the notifier sent or failed to send.
//! Labels are codes only.

use super::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabel {
    rule: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabel {
    channel: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct WatchMetrics {
    flags: Family<RuleLabel, Counter>,
    flags_lost: Family<RuleLabel, Counter>,
    protected_unreadable: Counter,
    notifications: Family<ChannelLabel, Counter>,
}

impl WatchMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "watch_flags",
            "Anomaly flags written by the watch on views, by rule",
            m.flags.clone(),
        );
        registry.register(
            "watch_flags_lost",
            "Anomaly flags the watch raised but could not write to the audit trail, by rule",
            m.flags_lost.clone(),
        );
        registry.register(
            "watch_protected_list_unreadable",
            "Times the protected person list could not be read (views went unchecked against it)",
            m.protected_unreadable.clone(),
        );
        registry.register(
            "watch_notifications",
            "Notifier messages to privacy officers, by channel (webhook, email) and outcome (sent, retried, failed, dropped)",
            m.notifications.clone(),
        );
        m
    }
}

impl Metrics {
    pub(crate) fn watch_flag(&self, rule: &'static str) {
        self.watch.flags.get_or_create(&RuleLabel { rule }).inc();
    }

    pub(crate) fn watch_flag_lost(&self, rule: &'static str) {
        self.watch
            .flags_lost
            .get_or_create(&RuleLabel { rule })
            .inc();
    }

    pub(crate) fn watch_protected_unreadable(&self) {
        self.watch.protected_unreadable.inc();
    }

    /// Count `n` notifier messages on `channel` (`webhook`, `email`) with `outcome` (`sent`,
    /// `retried`, `failed`, `dropped`).
    pub fn notification(&self, channel: &'static str, outcome: &'static str, n: u64) {
        self.watch
            .notifications
            .get_or_create(&ChannelLabel { channel, outcome })
            .inc_by(n);
    }
}
