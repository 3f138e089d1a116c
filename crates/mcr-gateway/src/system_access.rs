//! Backend services (SMART client credentials): every token asked for by a system is audited,
//! issued or refused, naming the system, its organisation and the end user it says it acts
//! for. The checks themselves (assertion, replay, scopes) are the web layer's; this records
//! the outcome before the answer leaves.

use crate::{Gateway, GatewayError};
use mcr_audit::{Action, AuthChannel, Outcome};
use mcr_domain::Organisation;

/// A token request from a system, as far as it was understood.
#[derive(Debug, Clone)]
pub struct SystemTokenRequest<'a> {
    pub correlation_id: &'a str,
    /// The client's id when it is a registered client; `None` when unknown.
    pub client_id: Option<&'a str>,
    /// The registered client's organisation.
    pub organisation: Option<&'a Organisation>,
    /// The end user the assertion names (id, name, role), when it names one.
    pub end_user: Option<(&'a str, &'a str, &'a str)>,
    /// The scopes granted (on `Ok`) or asked for.
    pub scopes: &'a str,
    /// `Ok(())` for an issued token, or the refusal's code and sentence.
    pub outcome: Result<(), (&'a str, &'a str)>,
}

impl Gateway {
    /// Append the audit record of a token request from a system (`issue-system-token`).
    pub async fn record_system_token(
        &self,
        r: &SystemTokenRequest<'_>,
    ) -> Result<(), GatewayError> {
        let system = r.client_id.map(|c| format!("system:{c}"));
        let (user_id, user_name, role) = match r.end_user {
            Some((id, name, role)) => (id.to_owned(), name.to_owned(), role.to_owned()),
            None => (
                system.clone().unwrap_or_else(|| "anonymous".into()),
                r.client_id
                    .map_or_else(|| "anonymous".into(), |c| format!("system {c}")),
                "system".to_owned(),
            ),
        };
        let (outcome, basis, detail) = match r.outcome {
            Ok(()) => (
                Outcome::Permit,
                "client-credentials".to_owned(),
                format!("scopes: {}", r.scopes),
            ),
            Err((code, words)) => (
                Outcome::Deny,
                code.to_owned(),
                format!("{words} (scopes asked: {})", r.scopes),
            ),
        };
        let event = mcr_audit::AuditEvent {
            at: self.clock.now(),
            correlation_id: r.correlation_id.to_owned(),
            user_id,
            user_name,
            role,
            org_code: r
                .organisation
                .map(|o| o.code.to_string())
                .unwrap_or_default(),
            org_name: r.organisation.map(|o| o.name.clone()).unwrap_or_default(),
            patient: None,
            purpose: mcr_domain::Purpose::DirectCare.as_str().to_owned(),
            action: Action::IssueSystemToken,
            outcome,
            basis: Some(basis),
            detail: Some(detail),
            sources: Vec::new(),
            system: r.client_id.map(str::to_owned),
            role_profile_id: None,
        };
        self.audit(&event).await.map(|_| ())
    }
}

impl Gateway {
    /// Append the audit record of a request refused before any use case, for a caller whose
    /// context is known (a system's end user, or the system itself): `authenticate:{channel}`.
    pub async fn record_caller_refusal(
        &self,
        ctx: &crate::RequestContext,
        channel: AuthChannel,
        reason: &str,
    ) -> Result<(), GatewayError> {
        let mut event = self.event(ctx, Action::Authenticate(channel), None);
        event.outcome = Outcome::Deny;
        event.basis = Some(reason.to_owned());
        self.audit(&event).await.map(|_| ())
    }
}
