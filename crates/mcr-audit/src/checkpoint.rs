//! Signed checkpoints: the chain head (seq, hash) signed with the gateway's Ed25519 audit key,
//! every N records and on demand. A checkpoint vouches for the whole chain up to its record,
//! so whoever edits the trail and re-computes every later hash still cannot match it without
//! the private key. The key file is PKCS#8 (DER or PEM) or a raw 32-byte seed (binary or hex).

use crate::AuditError;
use base64::Engine;
use chrono::{DateTime, Utc};
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use mcr_store::{AuditCheckpoint, Store};

/// Default: a checkpoint every this many records.
pub const DEFAULT_CHECKPOINT_EVERY: u64 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the audit signing key is not an Ed25519 key in PKCS#8 (DER or PEM) or a 32-byte seed"
    )]
    Unreadable,
    #[error("`{0}` is not an Ed25519 public key in hex (64 hex digits)")]
    BadPublicKey(String),
}

/// The private key that signs checkpoints. Never printed.
#[derive(Clone)]
pub struct CheckpointKey {
    key: SigningKey,
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointKey")
            .field("public", &self.public_hex())
            .finish_non_exhaustive()
    }
}

impl CheckpointKey {
    /// Read a key file's bytes: PKCS#8 DER (v1 or v2), PKCS#8 PEM, a raw 32-byte seed, or the
    /// seed as 64 hex digits.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if let Ok(seed) = <[u8; 32]>::try_from(bytes) {
            return Ok(Self {
                key: SigningKey::from_bytes(&seed),
            });
        }
        if let Ok(key) = SigningKey::from_pkcs8_der(bytes) {
            return Ok(Self { key });
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|_| KeyError::Unreadable)?
            .trim();
        if text.len() == 64 {
            let seed = hex::decode(text).map_err(|_| KeyError::Unreadable)?;
            let seed = <[u8; 32]>::try_from(seed.as_slice()).map_err(|_| KeyError::Unreadable)?;
            return Ok(Self {
                key: SigningKey::from_bytes(&seed),
            });
        }
        if text.starts_with("-----BEGIN PRIVATE KEY-----") {
            let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
            let der = base64::engine::general_purpose::STANDARD
                .decode(body.trim())
                .map_err(|_| KeyError::Unreadable)?;
            return SigningKey::from_pkcs8_der(&der)
                .map(|key| Self { key })
                .map_err(|_| KeyError::Unreadable);
        }
        Err(KeyError::Unreadable)
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key as 64 hex digits (as stored with each checkpoint).
    pub fn public_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// Sign "record `seq` has hash `hash`" at `at`.
    pub fn sign(&self, seq: i64, hash: &str, at: DateTime<Utc>) -> AuditCheckpoint {
        let signature = self.key.sign(&message(seq, hash, &at));
        AuditCheckpoint {
            seq,
            hash: hash.to_owned(),
            at,
            public_key: self.public_hex(),
            signature: hex::encode(signature.to_bytes()),
        }
    }
}

/// A trusted public key from its hex form.
pub fn parse_public_key(hex_key: &str) -> Result<VerifyingKey, KeyError> {
    let bad = || KeyError::BadPublicKey(hex_key.chars().take(80).collect());
    let bytes = hex::decode(hex_key.trim()).map_err(|_| bad())?;
    let bytes = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| bad())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| bad())
}

/// What is signed: a fixed label, the sequence number, the hash and the time, one per line.
fn message(seq: i64, hash: &str, at: &DateTime<Utc>) -> Vec<u8> {
    format!(
        "mcr-audit-checkpoint/v1\n{seq}\n{hash}\n{}",
        at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    )
    .into_bytes()
}

/// Whether a checkpoint's signature is good, and by which key. `trusted` empty: the key
/// recorded with the checkpoint is used (proves integrity of the checkpoint, not who made it).
pub(crate) fn check_signature(
    cp: &AuditCheckpoint,
    trusted: &[VerifyingKey],
) -> Result<(), String> {
    let recorded =
        parse_public_key(&cp.public_key).map_err(|_| "its public key cannot be read".to_owned())?;
    if !trusted.is_empty() && !trusted.iter().any(|k| k == &recorded) {
        return Err("it is signed by a key that is not trusted".into());
    }
    let sig = hex::decode(&cp.signature)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
        .map(|b| ed25519_dalek::Signature::from_bytes(&b))
        .ok_or_else(|| "its signature cannot be read".to_owned())?;
    recorded
        .verify(&message(cp.seq, &cp.hash, &cp.at), &sig)
        .map_err(|_| {
            "its signature does not match (the checkpoint was altered or forged)".to_owned()
        })
}

/// Sign the current head of the chain and store it. `None` when the trail is empty or the
/// head already has a checkpoint.
pub async fn checkpoint_head(
    store: &dyn Store,
    key: &CheckpointKey,
    at: DateTime<Utc>,
) -> Result<Option<AuditCheckpoint>, AuditError> {
    let Some((seq, hash)) = store.audit_head().await? else {
        return Ok(None);
    };
    checkpoint_at(store, key, seq, &hash, at).await
}

/// Sign record `seq` (whose hash the caller has just written or read) and store it.
pub async fn checkpoint_at(
    store: &dyn Store,
    key: &CheckpointKey,
    seq: i64,
    hash: &str,
    at: DateTime<Utc>,
) -> Result<Option<AuditCheckpoint>, AuditError> {
    let cp = key.sign(seq, hash, at);
    if store.add_checkpoint(&cp).await? {
        tracing::info!(seq, "audit checkpoint signed");
        Ok(Some(cp))
    } else {
        Ok(None)
    }
}

/// Signs a checkpoint every `every` records: the gateway calls [`Checkpointer::after_append`]
/// with each record it appends. Sequence numbers are unique across all writers of a chain,
/// so each multiple of `every` is signed exactly once, by whichever gateway wrote it.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    key: CheckpointKey,
    every: u64,
}

impl Checkpointer {
    pub fn new(key: CheckpointKey, every: u64) -> Self {
        Self {
            key,
            every: every.max(1),
        }
    }

    pub fn key(&self) -> &CheckpointKey {
        &self.key
    }

    /// Records between checkpoints.
    pub fn every(&self) -> u64 {
        self.every
    }

    /// Whether record `seq` is due a checkpoint.
    pub fn due(&self, seq: i64) -> bool {
        u64::try_from(seq).is_ok_and(|s| s > 0 && s % self.every == 0)
    }

    /// Sign record `seq` if it is due. A failure is logged, never raised: the record itself
    /// is committed, and the next checkpoint covers it.
    pub async fn after_append(&self, store: &dyn Store, seq: i64, hash: &str, at: DateTime<Utc>) {
        if !self.due(seq) {
            return;
        }
        if let Err(e) = checkpoint_at(store, &self.key, seq, hash, at).await {
            tracing::error!(seq, error = %e, "audit checkpoint could not be stored");
        }
    }
}
