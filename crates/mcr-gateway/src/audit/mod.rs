//! Reading the audit trail, a room per reader:
//!
//! - `search`: the FHIR `AuditEvent` search (privacy officers see everything, staff of a source
//!   organisation see the accesses that touched their data);
//! - `history`: a patient's "who viewed my record" history and its downloads;
//! - `review`: the privacy officer's review queue of emergency accesses, self-claimed
//!   relationships and the other reviewable actions, and the reviews recorded;
//! - `anomaly`: the simple anomaly flags the queue shows; `following`: the views that followed
//!   a case under review;
//! - `checkpoint`: how the trail is kept ([`AuditConfig`]) and its signed checkpoints.
//!
//! Every read of the trail is itself audited; so is every review outcome. What they share is
//! here: the limits, the actions they name, reading a record back, and refusing a reader.

mod anomaly;
mod checkpoint;
mod following;
mod history;
mod review;
mod search;

pub use anomaly::{Anomaly, AnomalyFlag};
pub(crate) use checkpoint::system_event;
pub use checkpoint::{AuditConfig, DEFAULT_CHECKPOINT_INTERVAL};
pub use following::FollowingView;
pub use history::{reason_words, AccessHistory, AccessLine, Download, DownloadFormat};
pub use review::{Review, ReviewFilter, ReviewItem, ReviewOutcome, ReviewQueue};
pub use search::{AuditPage, AuditScope, AuditSearch};

use crate::{Gateway, GatewayError, RequestContext};
use chrono::{DateTime, Duration, Utc};
use mcr_audit::AuditEvent;
use mcr_audit::{Action, Outcome};
use mcr_domain::{NhsNumber, Role};
use mcr_store::{AuditQuery, AuditRow};
use serde::Serialize;

/// The widest period one audit search may cover.
pub const MAX_SEARCH_DAYS: i64 = 366;
/// The most entries one page of an audit search returns (more are on the next page).
pub const MAX_SEARCH_COUNT: u32 = 1_000;
/// How far back a patient's access history goes.
pub const HISTORY_DAYS: i64 = 365;

/// The actions a privacy officer reviews: break-glass, self-claimed relationships, answers on
/// a patient's behalf that open their record, objection overrides, every lift of an objection
/// or attempt at one (refused attempts included), and the watch's flags on views.
pub const REVIEWABLE: [Action; 6] = [
    Action::EmergencyAccess,
    Action::ClaimRelationship,
    Action::RecordPermissionOnBehalf,
    Action::OverrideObjection,
    Action::WithdrawObjection,
    Action::AnomalyFlag,
];

/// One audit record read back.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub seq: i64,
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// A stored record read back. One this build cannot read (an action or outcome word it does
/// not know, say) is reported, by its number, and the read fails: never shown as something
/// else.
fn entry(row: &AuditRow) -> Result<AuditEntry, GatewayError> {
    let event: AuditEvent = serde_json::from_str(&row.record.payload).map_err(|e| {
        tracing::error!(seq = row.seq, error = %e, "audit record cannot be read back");
        GatewayError::StoreUnavailable
    })?;
    Ok(AuditEntry {
        seq: row.seq,
        event,
    })
}

fn clean_text(s: &str, what: &str, max: usize) -> Result<String, GatewayError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(GatewayError::Invalid(format!("Give {what}.")));
    }
    if t.chars().count() > max {
        return Err(GatewayError::Invalid(format!(
            "The {what} is too long: at most {max} characters."
        )));
    }
    if t.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        return Err(GatewayError::Invalid(format!(
            "The {what} contains control characters."
        )));
    }
    Ok(t.to_owned())
}

/// The period a search covers: defaults to the year up to now, never wider than a year.
fn period(
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), GatewayError> {
    let to = to.unwrap_or(now);
    let from = from.unwrap_or(to - Duration::days(HISTORY_DAYS));
    if from > to {
        return Err(GatewayError::Invalid(
            "The period is empty: its start is after its end.".into(),
        ));
    }
    if to - from > Duration::days(MAX_SEARCH_DAYS) {
        return Err(GatewayError::Invalid(format!(
            "The period is too wide: search at most one year ({MAX_SEARCH_DAYS} days) at a time."
        )));
    }
    Ok((from, to))
}

impl Gateway {
    fn is_privacy_officer(&self, ctx: &RequestContext) -> bool {
        let org = &ctx.principal.organisation;
        ctx.principal.role == Role::PrivacyOfficer && org.member && !org.suspended
    }

    /// Audit a refusal to read the trail, then return it.
    pub(crate) async fn refuse(
        &self,
        ctx: &RequestContext,
        action: Action,
        patient: Option<&str>,
        why: &str,
    ) -> GatewayError {
        let mut event = self.event(ctx, action, patient);
        event.outcome = Outcome::Deny;
        event.detail = Some(why.to_owned());
        match self.audit(&event).await {
            Ok(_) => GatewayError::Forbidden(why.to_owned()),
            Err(e) => e,
        }
    }

    async fn known_patient(
        &self,
        nhs: &NhsNumber,
    ) -> Result<mcr_store::IndexedPatient, GatewayError> {
        match self.store.patient(nhs).await {
            Ok(Some(p)) => Ok(p),
            Ok(None) => Err(GatewayError::PatientNotFound),
            Err(_) => Err(GatewayError::StoreUnavailable),
        }
    }

    async fn query(&self, q: &AuditQuery) -> Result<Vec<AuditRow>, GatewayError> {
        self.store.query_audit(q).await.map_err(|e| {
            tracing::error!(error = %e, "audit trail could not be read");
            GatewayError::StoreUnavailable
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_wider_than_a_year_are_refused() {
        let now = DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        assert!(period(Some(now - Duration::days(400)), Some(now), now).is_err());
        assert!(period(Some(now), Some(now - Duration::days(1)), now).is_err());
        let (from, to) = period(None, None, now).expect("default");
        assert_eq!((to - from).num_days(), HISTORY_DAYS);
    }

    #[test]
    fn a_record_with_an_unknown_action_is_refused_not_shown_as_another() {
        let event = AuditEvent {
            at: DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z")
                .expect("time")
                .with_timezone(&Utc),
            correlation_id: "c".into(),
            user_id: "u".into(),
            user_name: "U".into(),
            role: "clinician".into(),
            org_code: "RWH".into(),
            org_name: "Trust".into(),
            patient: None,
            purpose: "directcare".into(),
            action: mcr_audit::Action::ViewRecord,
            outcome: mcr_audit::Outcome::Permit,
            basis: None,
            detail: None,
            sources: Vec::new(),
            role_profile_id: None,
            system: None,
        };
        let record = mcr_audit::to_append(&event).expect("encodes");
        let row = |record: mcr_store::AuditAppend| AuditRow {
            seq: 9,
            prev_hash: String::new(),
            hash: String::new(),
            record,
        };
        let read = entry(&row(record.clone())).expect("a known record reads back");
        assert_eq!(read.event, event);

        // A word from a newer build (or a typo in an old one): never rendered as something else.
        let mut unknown = record;
        unknown.payload = unknown.payload.replace("view-record", "read-patient");
        assert!(matches!(
            entry(&row(unknown)),
            Err(GatewayError::StoreUnavailable)
        ));
    }
}
