//! How the audit trail is kept ([`AuditConfig`]) and its signed checkpoints: one every N
//! records as they are appended, one at start-up (after a record saying the gateway started,
//! so even a fresh trail has a signed head at once) and one on a timer whenever the head has
//! moved, so a quiet gateway's recent records are not left unsigned until record 1,000.

use crate::Gateway;
use mcr_audit::{Action, Outcome};
use mcr_audit::{AuditEvent, Checkpointer};
use mcr_store::AuditRow;
use std::time::Duration;

/// Default: sign the head at least this often when it has moved.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// How the audit trail is kept and read, beyond what cannot be configured.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Signs a checkpoint every N records (none: no checkpoints are made).
    pub checkpointer: Option<Checkpointer>,
    /// The review queue flags a user who, within one hour, reaches more than this many patients
    /// without an existing care relationship (by emergency access or a self-claimed one).
    pub many_patients_per_hour: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            checkpointer: None,
            many_patients_per_hour: 20,
        }
    }
}

impl Gateway {
    /// The audit configuration (checkpoints, anomaly thresholds).
    pub fn with_audit(mut self, config: AuditConfig) -> Self {
        self.audit_config = std::sync::Arc::new(config);
        self
    }

    /// Called with every record this gateway appends: signs a checkpoint when one is due.
    pub(crate) async fn after_append(&self, row: &AuditRow) {
        if let Some(cp) = &self.audit_config.checkpointer {
            cp.after_append(self.store.as_ref(), row.seq, &row.hash, self.clock.now())
                .await;
        }
    }

    /// Record that the gateway started, then sign the head of the chain. Without a
    /// checkpoint key, only the record is written. `Ok(Some(seq))`: the record signed.
    pub async fn start_audit(
        &self,
        interval: Duration,
    ) -> Result<Option<i64>, crate::GatewayError> {
        let mut event = system_event(self, Action::GatewayStart);
        event.outcome = Outcome::Started;
        event.detail = Some(match &self.audit_config.checkpointer {
            Some(cp) => format!(
                "audit checkpoints signed at start-up, every {} record(s) and every {} second(s) when the trail has moved",
                cp.every(),
                interval.as_secs()
            ),
            None => "no audit checkpoint key configured: the hash chain is kept, nothing is signed".into(),
        });
        self.audit(&event).await?;
        Ok(self.checkpoint_now().await)
    }

    /// Sign the head of the chain now unless it already has a checkpoint. A failure is
    /// logged, never raised (the next checkpoint covers the same records).
    pub async fn checkpoint_now(&self) -> Option<i64> {
        let cp = self.audit_config.checkpointer.as_ref()?;
        match mcr_audit::checkpoint_head(self.store.as_ref(), cp.key(), self.clock.now()).await {
            Ok(signed) => signed.map(|c| c.seq),
            Err(e) => {
                tracing::error!(error = %e, "timed audit checkpoint could not be stored");
                None
            }
        }
    }

    /// Sign the head every `interval` when it has moved, until the task is aborted. `None`
    /// without a checkpoint key.
    pub fn spawn_checkpoints(&self, interval: Duration) -> Option<tokio::task::JoinHandle<()>> {
        self.audit_config.checkpointer.as_ref()?;
        let gateway = self.clone();
        let interval = interval.max(Duration::from_secs(1));
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                gateway.checkpoint_now().await;
            }
        }))
    }
}

pub(crate) fn system_event(g: &Gateway, action: Action) -> AuditEvent {
    AuditEvent {
        at: g.clock.now(),
        correlation_id: uuid::Uuid::new_v4().to_string(),
        system: None,
        user_id: "system".into(),
        user_name: "My Care Record gateway".into(),
        role: "system".into(),
        org_code: String::new(),
        org_name: String::new(),
        patient: None,
        purpose: "operations".into(),
        action,
        outcome: Outcome::Error,
        basis: None,
        detail: None,
        sources: Vec::new(),
        role_profile_id: None,
    }
}
