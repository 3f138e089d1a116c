//! Refusals made before a request reaches a use case (a forged form, an NHS number that
//! fails its check, a request too large, a rate limit), counted by the web layer and audited
//! here in aggregate: one record per kind and source (user, or address when nobody is known)
//! per flush, saying how many, so a flood is a line in the trail and not a flood in it.

use crate::{Gateway, GatewayError};
use chrono::{DateTime, Utc};
use mcr_audit::{Action, Outcome, RefusalKind};

/// One aggregated count of refusals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalCount {
    /// What was refused, e.g. `invalid-nhs-number`, `csrf`, `too-large`, `rate-limited`.
    pub kind: RefusalKind,
    /// The user's id when known, otherwise `None` and [`RefusalCount::address`] is.
    pub user_id: Option<String>,
    pub address: Option<String>,
    pub count: u64,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

impl Gateway {
    /// Audit one aggregated count of refusals.
    pub async fn record_refusals(&self, r: &RefusalCount) -> Result<i64, GatewayError> {
        let who = match (&r.user_id, &r.address) {
            (Some(u), _) => format!("user {u}"),
            (None, Some(a)) => format!("address {a}"),
            (None, None) => "an unknown source".to_owned(),
        };
        let event = mcr_audit::AuditEvent {
            at: self.clock.now(),
            correlation_id: uuid::Uuid::new_v4().to_string(),
            system: None,
            user_id: r.user_id.clone().unwrap_or_else(|| "anonymous".into()),
            user_name: r.user_id.clone().unwrap_or_else(|| "anonymous".into()),
            role: String::new(),
            org_code: String::new(),
            org_name: String::new(),
            patient: None,
            purpose: mcr_domain::Purpose::DirectCare.as_str().to_owned(),
            action: Action::Refused(r.kind),
            outcome: Outcome::Deny,
            basis: Some(r.kind.as_str().to_owned()),
            detail: Some(format!(
                "{} request(s) refused before the gateway ({}) from {who}, {} to {}",
                r.count,
                r.kind,
                r.first.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                r.last.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )),
            sources: Vec::new(),
            role_profile_id: None,
        };
        Ok(self.audit(&event).await?.seq)
    }
}
