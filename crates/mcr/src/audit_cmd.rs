//! The audit trail's settings (`[audit]` in the config) and the operator's `mcr audit`
//! commands: `verify` (the whole chain and every signed checkpoint) and `checkpoint` (sign
//! the head now).
//!
//! Several gateways writing one PostgreSQL database write one chain (appends are serialised
//! by an advisory lock); each signs checkpoints with its own key. List every instance's
//! public key under `trusted_keys` (or give them one key) and `mcr audit verify` checks them all.

use anyhow::Context;
use mcr_audit::{CheckpointKey, Checkpointer, Verification, VerifyingKey};
use mcr_domain::Clock;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// The Ed25519 key that signs checkpoints: PKCS#8 (DER or PEM) or a raw 32-byte seed.
    /// Without it no checkpoints are made (the hash chain is still kept and verified).
    pub signing_key: Option<PathBuf>,
    /// Sign the chain head every this many records.
    pub checkpoint_every: u64,
    /// And at least every this many seconds when the trail has moved (also once at start-up).
    pub checkpoint_seconds: u64,
    /// More public keys (64 hex digits) whose checkpoints are trusted: other gateway
    /// instances, or keys used before a rotation.
    pub trusted_keys: Vec<String>,
    /// The review queue flags a user reaching more than this many patients in an hour
    /// without an existing care relationship.
    pub many_patients_per_hour: usize,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            signing_key: None,
            checkpoint_every: mcr_audit::DEFAULT_CHECKPOINT_EVERY,
            checkpoint_seconds: mcr_gateway::DEFAULT_CHECKPOINT_INTERVAL.as_secs(),
            trusted_keys: Vec::new(),
            many_patients_per_hour: 20,
        }
    }
}

impl AuditSettings {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.checkpoint_every == 0 {
            anyhow::bail!("config: audit.checkpoint_every must be at least 1");
        }
        if self.checkpoint_seconds == 0 {
            anyhow::bail!("config: audit.checkpoint_seconds must be at least 1");
        }
        for k in &self.trusted_keys {
            mcr_audit::parse_public_key(k)
                .map_err(|e| anyhow::anyhow!("config: audit.trusted_keys: {e}"))?;
        }
        Ok(())
    }

    /// How often the head is signed when it has moved.
    pub fn checkpoint_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.checkpoint_seconds.max(1))
    }

    /// The checkpoint signing key, if one is configured.
    pub fn key(&self) -> anyhow::Result<Option<CheckpointKey>> {
        let Some(path) = &self.signing_key else {
            return Ok(None);
        };
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading the audit signing key {}", path.display()))?;
        let key = CheckpointKey::from_bytes(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(Some(key))
    }

    /// Every public key whose checkpoints `verify` accepts.
    pub fn trusted(&self) -> anyhow::Result<Vec<VerifyingKey>> {
        let mut keys: Vec<VerifyingKey> =
            self.key()?.map(|k| k.verifying_key()).into_iter().collect();
        for k in &self.trusted_keys {
            keys.push(
                mcr_audit::parse_public_key(k)
                    .map_err(|e| anyhow::anyhow!("config: audit.trusted_keys: {e}"))?,
            );
        }
        Ok(keys)
    }

    /// What the gateway needs: the checkpointer and the anomaly threshold.
    pub fn gateway_config(&self) -> anyhow::Result<mcr_gateway::AuditConfig> {
        Ok(mcr_gateway::AuditConfig {
            checkpointer: self
                .key()?
                .map(|k| Checkpointer::new(k, self.checkpoint_every)),
            many_patients_per_hour: self.many_patients_per_hour,
        })
    }
}

/// Where `mcr demo --data-dir DIR` keeps its audit checkpoint key.
pub fn audit_key_path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("demo").join("audit-signing-key.p8")
}

/// The store and audit settings of a demo data directory (`mcr audit … --data-dir DIR`): the
/// SQLite store `mcr demo --data-dir DIR` writes and, when present, its checkpoint key. A
/// directory without a store is an error, not an empty trail.
pub fn demo_store(data_dir: &std::path::Path) -> anyhow::Result<(String, AuditSettings)> {
    let db = data_dir.join("mcr.db");
    if !db.is_file() {
        anyhow::bail!(
            "no audit trail at {}: has `mcr demo --data-dir {}` been run? (for a gateway, use --config)",
            db.display(),
            data_dir.display()
        );
    }
    let key = audit_key_path(data_dir);
    Ok((
        format!("sqlite://{}", db.display()),
        AuditSettings {
            signing_key: key.is_file().then_some(key),
            ..AuditSettings::default()
        },
    ))
}

/// `mcr audit verify`: the line to print, and whether the trail is intact.
pub async fn verify(
    store: &dyn mcr_store::Store,
    audit: &AuditSettings,
) -> anyhow::Result<(String, bool)> {
    let trusted = audit.trusted()?;
    let result = mcr_audit::verify_with(store, &trusted)
        .await
        .context("reading the audit trail")?;
    Ok(match result {
        Verification::Intact {
            records,
            head,
            checkpoints,
        } => {
            let keys = if checkpoints > 0 && trusted.is_empty() {
                " (no key configured: checkpoint signatures were checked against the keys stored with them)"
            } else {
                ""
            };
            (format!("audit trail intact: {records} records, head {head}, {checkpoints} signed checkpoint(s){keys}"), true)
        }
        Verification::Broken { seq, problem } => (
            format!("audit trail BROKEN at record {seq}: {problem}"),
            false,
        ),
    })
}

/// `mcr audit checkpoint`: sign the head of the chain now.
pub async fn checkpoint(
    store: &dyn mcr_store::Store,
    audit: &AuditSettings,
    clock: &dyn Clock,
) -> anyhow::Result<String> {
    let key = audit
        .key()?
        .context("config: audit.signing_key is needed to sign a checkpoint")?;
    Ok(
        match mcr_audit::checkpoint_head(store, &key, clock.now())
            .await
            .context("signing a checkpoint")?
        {
            Some(cp) => format!(
                "checkpoint signed at record {}: hash {}, key {}",
                cp.seq, cp.hash, cp.public_key
            ),
            None => match store
                .audit_head()
                .await
                .context("reading the audit trail")?
            {
                Some((seq, _)) => format!("record {seq} already has a checkpoint"),
                None => "the audit trail is empty: nothing to sign".to_owned(),
            },
        },
    )
}
