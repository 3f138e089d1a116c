//! Failed sign-ins and refused credentials are audited like any other attempt: who (as far as
//! is known: `anonymous` when the credentials say nothing trustworthy), when, and why not.

use crate::{Gateway, GatewayError};

/// A refused attempt to authenticate or to use a token beyond its scopes.
#[derive(Debug, Clone)]
pub struct AuthFailure<'a> {
    pub correlation_id: &'a str,
    /// `api`, `sign-in` or `scope`.
    pub channel: &'a str,
    /// A short code: `no-token`, `expired-token`, `state-mismatch`, …
    pub reason: &'a str,
    /// The user, when known from verified credentials; otherwise `anonymous`.
    pub user: Option<&'a mcr_domain::Principal>,
}

impl Gateway {
    /// Append an audit record of a refused authentication.
    pub async fn record_auth_failure(&self, f: &AuthFailure<'_>) -> Result<(), GatewayError> {
        let mut event = match f.user {
            Some(p) => self.event(
                &crate::RequestContext {
                    principal: p.clone(),
                    correlation_id: f.correlation_id.to_owned(),
                    system: None,
                },
                "authenticate",
                None,
            ),
            None => mcr_audit::AuditEvent {
                at: self.clock.now(),
                correlation_id: f.correlation_id.to_owned(),
                system: None,
                user_id: "anonymous".into(),
                user_name: "anonymous".into(),
                role: String::new(),
                org_code: String::new(),
                org_name: String::new(),
                patient: None,
                purpose: mcr_domain::Purpose::DirectCare.as_str().to_owned(),
                action: "authenticate".into(),
                outcome: String::new(),
                basis: None,
                detail: None,
                sources: Vec::new(),
                role_profile_id: None,
            },
        };
        event.action = format!("authenticate:{}", f.channel);
        event.outcome = "deny".into();
        event.basis = Some(f.reason.to_owned());
        self.audit(&event).await.map(|_| ())
    }
}
