//! The audit trail: what is recorded for every access decision and governance change, how
//! records are chained so tampering shows, and how the chain is verified.
//!
//! A view's audit record is committed durably *before* any clinical data leaves the gateway;
//! if it cannot be written the caller must refuse the view. Audit cannot be switched off.
//! Records carry who, whom, why, the decision and per-source counts, never clinical content.
//!
//! The chain head is signed (Ed25519) at intervals and on demand ([`Checkpointer`],
//! [`checkpoint_head`]); [`verify_with`] checks the chain and every checkpoint.

use chrono::{DateTime, Utc};
use mcr_store::{AuditAppend, AuditRow, AuditStore, GovernanceChange, GovernanceStore, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod checkpoint;
mod verify;
mod vocab;

pub use checkpoint::{
    checkpoint_at, checkpoint_head, parse_public_key, CheckpointKey, Checkpointer, KeyError,
    DEFAULT_CHECKPOINT_EVERY,
};
pub use ed25519_dalek::VerifyingKey;
pub use verify::{verify, verify_with, Verification};
pub use vocab::{
    Action, AuthChannel, Coding, EventAction, EventCoding, Outcome, RefusalKind, UnknownWord,
    APPLICATION_ACTIVITY, REST, SECURITY_ALERT, USER_AUTHENTICATION,
};

/// The hash a chain starts from.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Per-source line of a view's audit record: counts and reasons only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceAudit {
    pub source: String,
    pub org_code: String,
    /// `ok` or a failure code (`timeout`, `unreachable`, …).
    pub status: String,
    pub items: usize,
    pub withheld: usize,
    /// Items sent that could not be tied to this patient (or named another): not shown.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub not_tied: usize,
    /// Resources sent of types the record has no place for: not shown, named in the view.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub not_shown: usize,
    /// The forms of patient reference the source's search could not be asked for
    /// (`identifier`, `contained`): items naming the patient only so may exist and were not
    /// shown, as the view said.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsearchable: Vec<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One audit event as the gateway describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub at: DateTime<Utc>,
    pub correlation_id: String,
    pub user_id: String,
    pub user_name: String,
    pub role: String,
    pub org_code: String,
    pub org_name: String,
    pub patient: Option<String>,
    pub purpose: String,
    /// What was attempted; stored as its word (`view-record`, `search-patient`, …), and a
    /// stored word this build does not know fails to read back.
    pub action: Action,
    /// How it ended (`permit`, `deny`, `needs-permission`, …).
    pub outcome: Outcome,
    /// The basis of a permit or the code of a denial.
    pub basis: Option<String>,
    /// Words: the denial's sentence or the basis described.
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceAudit>,
    /// The NHS CIS2 role profile (`person_roleid`) the user was working in; absent for
    /// records with none (and for every record made before role profiles were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_profile_id: Option<String>,
    /// The system the request came through (a SMART backend services client's id), acting
    /// for the user above; `None` for a person's own sign-in or token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the audit trail could not be written: {0}")]
    Unavailable(#[from] StoreError),
    #[error("an audit event could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The hash of record `seq`: SHA-256 over the previous hash and every stored field, each
/// length-prefixed so no two different records can produce the same input. The role profile
/// id is a tenth field only when the record has one, so records without one (all records made
/// before it existed among them) hash as they always did.
pub fn chain_hash(seq: i64, prev_hash: &str, r: &AuditAppend) -> String {
    let mut h = Sha256::new();
    let at = r.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let fields: [&str; 9] = [
        prev_hash,
        &at,
        &r.correlation_id,
        &r.user_id,
        &r.org_code,
        r.patient.as_deref().unwrap_or(""),
        &r.action,
        &r.outcome,
        &r.payload,
    ];
    h.update(seq.to_be_bytes());
    for f in fields.into_iter().chain(r.role_profile_id.as_deref()) {
        h.update((f.len() as u64).to_be_bytes());
        h.update(f.as_bytes());
    }
    hex::encode(h.finalize())
}

/// The stored form of an event: indexed columns plus the whole event as canonical JSON
/// (object keys sorted).
pub fn to_append(event: &AuditEvent) -> Result<AuditAppend, AuditError> {
    let payload = serde_json::to_string(&serde_json::to_value(event)?)?;
    Ok(AuditAppend {
        at: event.at,
        correlation_id: event.correlation_id.clone(),
        user_id: event.user_id.clone(),
        org_code: event.org_code.clone(),
        patient: event.patient.clone(),
        action: event.action.as_str().to_owned(),
        outcome: event.outcome.as_str().to_owned(),
        payload,
        role_profile_id: event.role_profile_id.clone(),
    })
}

/// Append an event to the trail; returns once it is durably committed.
pub async fn record(store: &dyn AuditStore, event: &AuditEvent) -> Result<AuditRow, AuditError> {
    let append = to_append(event)?;
    let row = store.append_audit(&append, &chain_hash).await?;
    tracing::debug!(seq = row.seq, action = %event.action, outcome = %event.outcome, "audit appended");
    Ok(row)
}

/// Record a governance change together with its audit event, in one transaction.
pub async fn record_change(
    store: &dyn GovernanceStore,
    change: &GovernanceChange,
    event: &AuditEvent,
) -> Result<AuditRow, AuditError> {
    let append = to_append(event)?;
    Ok(store
        .record_governance(change, &append, &chain_hash)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chain's hash as it was before records named a role profile: nine fields.
    fn nine_field_hash(seq: i64, prev: &str, r: &AuditAppend) -> String {
        let mut h = Sha256::new();
        let at = r.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        h.update(seq.to_be_bytes());
        for f in [
            prev,
            &at,
            &r.correlation_id,
            &r.user_id,
            &r.org_code,
            r.patient.as_deref().unwrap_or(""),
            &r.action,
            &r.outcome,
            &r.payload,
        ] {
            h.update((f.len() as u64).to_be_bytes());
            h.update(f.as_bytes());
        }
        hex::encode(h.finalize())
    }

    fn append(role_profile_id: Option<&str>) -> AuditAppend {
        AuditAppend {
            at: chrono::DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z")
                .expect("time")
                .with_timezone(&Utc),
            correlation_id: "c".into(),
            user_id: "u".into(),
            org_code: "RWH01".into(),
            patient: Some("9990000018".into()),
            action: "view-record".into(),
            outcome: "permit".into(),
            payload: "{}".into(),
            role_profile_id: role_profile_id.map(str::to_owned),
        }
    }

    #[test]
    fn records_without_a_role_profile_hash_as_they_always_did() {
        let old = append(None);
        assert_eq!(
            chain_hash(4, GENESIS, &old),
            nine_field_hash(4, GENESIS, &old)
        );
        let new = append(Some("555254240100"));
        assert_ne!(chain_hash(4, GENESIS, &new), chain_hash(4, GENESIS, &old));
        assert_ne!(
            chain_hash(4, GENESIS, &new),
            chain_hash(4, GENESIS, &append(Some("555254242102")))
        );
    }

    #[test]
    fn an_events_role_profile_is_in_its_payload_only_when_it_has_one() {
        let mut e = AuditEvent {
            at: append(None).at,
            correlation_id: "c".into(),
            user_id: "u".into(),
            user_name: "U".into(),
            role: "nurse".into(),
            org_code: "RWH01".into(),
            org_name: "Trust".into(),
            patient: None,
            purpose: "directcare".into(),
            action: Action::ViewRecord,
            outcome: Outcome::Permit,
            basis: None,
            detail: None,
            sources: Vec::new(),
            role_profile_id: None,
            system: None,
        };
        let a = to_append(&e).expect("encodes");
        assert!(
            !a.payload.contains("role_profile_id"),
            "old payloads unchanged"
        );
        assert_eq!(a.role_profile_id, None);
        e.role_profile_id = Some("555254240100".into());
        let a = to_append(&e).expect("encodes");
        assert!(a.payload.contains("\"role_profile_id\":\"555254240100\""));
        assert_eq!(a.role_profile_id.as_deref(), Some("555254240100"));
    }

    #[test]
    fn stored_words_read_back_and_an_unknown_action_is_reported() {
        // A payload as the trail has stored it (keys sorted), words as strings.
        let stored = r#"{"action":"authenticate:sign-in","at":"2026-03-02T09:00:00Z","basis":"nhs-login","correlation_id":"c","detail":null,"org_code":"","org_name":"","outcome":"deny","patient":null,"purpose":"directcare","role":"","user_id":"anonymous","user_name":"anonymous"}"#;
        let e: AuditEvent = serde_json::from_str(stored).expect("reads back");
        assert_eq!(e.action, Action::Authenticate(AuthChannel::SignIn));
        assert_eq!(e.outcome, Outcome::Deny);
        // Written again, the words are the same strings.
        let a = to_append(&e).expect("encodes");
        assert_eq!(
            (a.action.as_str(), a.outcome.as_str()),
            ("authenticate:sign-in", "deny")
        );

        let unknown = stored.replace("authenticate:sign-in", "read-patient");
        let err = serde_json::from_str::<AuditEvent>(&unknown).expect_err("unknown action");
        assert!(
            err.to_string()
                .contains("unknown audit action `read-patient`"),
            "{err}"
        );
    }
}
