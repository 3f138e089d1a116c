//! Tells privacy officers about the watch's anomaly flags instead of leaving them to look: each
//! flag the gateway commits is handed to a [`Notifier`] (a [`mcr_gateway::FlagSink`]), which
//! sends it on every configured channel: a JSON webhook signed with HMAC-SHA256 ([`webhook`])
//! and email over SMTP ([`email`]).
//!
//! Batched: at most one message per channel per [`NotifyConfig::batch`], listing every flag
//! since the last, so a flood of flags is a handful of messages, not a mail storm. Each message
//! is retried with backoff; what is sent, retried, failed or dropped is counted in the gateway's
//! `/metrics` and failures are logged, with counts and codes only.
//!
//! This crate must never send an NHS number, a patient's name or clinical data: a message names
//! the rule, the user, the count and a link to the review queue. Email is not a secure channel.

pub mod email;
pub mod webhook;

use mcr_gateway::{FlagNotice, FlagSink, Metrics};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How privacy officers are told.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// The review queue's address, linked from every message.
    pub review_url: String,
    /// At most one message per channel per this long.
    pub batch: Duration,
    pub webhook: Option<webhook::WebhookConfig>,
    pub email: Option<email::EmailConfig>,
}

pub use email::{EmailConfig, SmtpTls};
pub use webhook::WebhookConfig;

/// Flags waiting on one channel beyond this many are dropped (and counted): the channel is
/// failing or far behind.
pub const QUEUE_MAX: usize = 10_000;

impl NotifyConfig {
    /// Check what can be checked before anything is sent.
    pub fn check(&self) -> Result<(), String> {
        if self.batch.is_zero() {
            return Err("the batch period must be more than zero".into());
        }
        if let Some(w) = &self.webhook {
            w.check()?;
        }
        if let Some(e) = &self.email {
            e.check()?;
        }
        Ok(())
    }
}

/// One channel's way of sending a batch.
#[async_trait::async_trait]
pub trait Channel: Send + Sync + std::fmt::Debug {
    /// `webhook` or `email`, for metrics and logs.
    fn name(&self) -> &'static str;
    /// How many attempts a batch gets, and the wait before the second.
    fn attempts(&self) -> (u32, Duration);
    /// Send one batch once.
    async fn send(&self, batch: &[FlagNotice], review_url: &str) -> Result<(), String>;
}

/// The [`FlagSink`] the gateway holds: hands each flag to every channel's task, never waiting.
#[derive(Debug)]
pub struct Notifier {
    channels: Vec<(&'static str, mpsc::Sender<FlagNotice>)>,
    metrics: Arc<Metrics>,
}

impl FlagSink for Notifier {
    fn flagged(&self, notice: FlagNotice) {
        for (name, tx) in &self.channels {
            if tx.try_send(notice.clone()).is_err() {
                self.metrics.notification(name, "dropped", 1);
                tracing::error!(channel = name, seq = notice.seq, "notifier queue full or closed: flag not sent on this channel (it is in the review queue)");
            }
        }
    }
}

/// Start a task per configured channel; returns the sink to give the gateway and the tasks.
pub fn start(
    config: &NotifyConfig,
    metrics: Arc<Metrics>,
    clock: Arc<dyn mcr_domain::Clock>,
) -> Result<(Arc<Notifier>, Vec<tokio::task::JoinHandle<()>>), String> {
    config.check()?;
    let mut channels: Vec<Arc<dyn Channel>> = Vec::new();
    if let Some(w) = &config.webhook {
        channels.push(Arc::new(webhook::Webhook::new(w.clone(), clock.clone())?));
    }
    if let Some(e) = &config.email {
        channels.push(Arc::new(email::Email::new(e.clone())?));
    }
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    for ch in channels {
        let (tx, rx) = mpsc::channel(QUEUE_MAX);
        senders.push((ch.name(), tx));
        tasks.push(tokio::spawn(run(
            ch,
            rx,
            config.batch,
            config.review_url.clone(),
            metrics.clone(),
        )));
    }
    Ok((
        Arc::new(Notifier {
            channels: senders,
            metrics,
        }),
        tasks,
    ))
}

/// One channel: wait for a flag, wait out the batch period since the last message, take every
/// flag waiting, send them as one message (retrying with backoff), repeat.
async fn run(
    channel: Arc<dyn Channel>,
    mut rx: mpsc::Receiver<FlagNotice>,
    period: Duration,
    review_url: String,
    metrics: Arc<Metrics>,
) {
    let name = channel.name();
    let mut last_sent: Option<Instant> = None;
    while let Some(first) = rx.recv().await {
        if let Some(last) = last_sent {
            tokio::time::sleep_until(last + period).await;
        }
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        batch.sort_by_key(|n| n.seq);
        let (attempts, first_backoff) = channel.attempts();
        let mut backoff = first_backoff;
        let mut attempt = 1;
        loop {
            match channel.send(&batch, &review_url).await {
                Ok(()) => {
                    metrics.notification(name, "sent", 1);
                    tracing::info!(
                        channel = name,
                        flags = batch.len(),
                        attempt,
                        "privacy officers notified"
                    );
                    break;
                }
                Err(why) if attempt < attempts => {
                    metrics.notification(name, "retried", 1);
                    tracing::warn!(channel = name, flags = batch.len(), attempt, reason = %why, "notification failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(300));
                    attempt += 1;
                }
                Err(why) => {
                    metrics.notification(name, "failed", 1);
                    tracing::error!(channel = name, flags = batch.len(), attempts, reason = %why, "notification failed: the flags are in the review queue only");
                    break;
                }
            }
        }
        last_sent = Some(Instant::now());
    }
}

/// The lines a message says about each flag: the rule, the user, the count. No patient data.
pub(crate) fn flag_line(n: &FlagNotice) -> String {
    let count = n
        .count
        .map(|c| format!(" ({c} patients)"))
        .unwrap_or_default();
    format!(
        "{}: {} ({}), {} ({}){count}, audit record {}",
        n.rule.title(),
        n.user_name,
        n.user_id,
        n.org_name,
        n.org_code,
        n.seq
    )
}

/// "1 flag" or "3 flags".
pub(crate) fn flags_word(n: usize) -> String {
    if n == 1 {
        "1 flag".into()
    } else {
        format!("{n} flags")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcr_gateway::WatchRule;
    use std::sync::Mutex;

    #[derive(Debug, Default)]
    struct Recorder {
        batches: Mutex<Vec<Vec<i64>>>,
        fail_first: Mutex<u32>,
    }

    #[async_trait::async_trait]
    impl Channel for Recorder {
        fn name(&self) -> &'static str {
            "webhook"
        }
        fn attempts(&self) -> (u32, Duration) {
            (3, Duration::from_millis(10))
        }
        async fn send(&self, batch: &[FlagNotice], _: &str) -> Result<(), String> {
            let mut f = self.fail_first.lock().expect("lock");
            if *f > 0 {
                *f -= 1;
                return Err("refused".into());
            }
            self.batches
                .lock()
                .expect("lock")
                .push(batch.iter().map(|n| n.seq).collect());
            Ok(())
        }
    }

    pub(crate) fn notice(seq: i64) -> FlagNotice {
        FlagNotice {
            seq,
            at: chrono::DateTime::from_timestamp(1_772_500_000, 0).expect("time"),
            rule: WatchRule::ManyPatients,
            user_id: "gp.patel".into(),
            user_name: "Dr Asha Patel".into(),
            org_code: "A81001".into(),
            org_name: "Bridge Street Surgery".into(),
            count: Some(31),
            evidence: "Viewed 31 different patients within an hour.".into(),
        }
    }

    #[tokio::test]
    async fn a_flood_is_batched_and_a_failure_retried() {
        let rec = Arc::new(Recorder::default());
        *rec.fail_first.lock().expect("lock") = 1;
        let metrics = Arc::new(Metrics::new());
        let (tx, rx) = mpsc::channel(100);
        let task = tokio::spawn(run(
            rec.clone(),
            rx,
            Duration::from_millis(300),
            "https://mcr.example/app/review".into(),
            metrics.clone(),
        ));
        for seq in 1..=50 {
            tx.send(notice(seq)).await.expect("send");
        }
        drop(tx);
        task.await.expect("task");
        let batches = rec.batches.lock().expect("lock").clone();
        assert!(
            batches.len() <= 2,
            "50 flags make at most two messages: {batches:?}"
        );
        let all: Vec<i64> = batches.concat();
        assert_eq!(all, (1..=50).collect::<Vec<_>>(), "every flag, once");
        let text = metrics.encode();
        assert!(
            text.contains(
                "mcr_watch_notifications_total{channel=\"webhook\",outcome=\"retried\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains(&format!(
            "mcr_watch_notifications_total{{channel=\"webhook\",outcome=\"sent\"}} {}",
            batches.len()
        )));
    }

    #[tokio::test]
    async fn a_channel_that_keeps_failing_is_counted_as_failed() {
        let rec = Arc::new(Recorder::default());
        *rec.fail_first.lock().expect("lock") = 10;
        let metrics = Arc::new(Metrics::new());
        let (tx, rx) = mpsc::channel(100);
        let task = tokio::spawn(run(
            rec.clone(),
            rx,
            Duration::from_millis(10),
            "https://mcr.example/app/review".into(),
            metrics.clone(),
        ));
        tx.send(notice(7)).await.expect("send");
        drop(tx);
        task.await.expect("task");
        assert!(rec.batches.lock().expect("lock").is_empty());
        let text = metrics.encode();
        assert!(
            text.contains(
                "mcr_watch_notifications_total{channel=\"webhook\",outcome=\"failed\"} 1"
            ),
            "{text}"
        );
    }
}
