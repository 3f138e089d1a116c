//! Failed sign-ins and refused credentials are audited like any other attempt: who (as far as
//! is known: `anonymous` when the credentials say nothing trustworthy), when, and why not.

use crate::{Gateway, GatewayError};
use mcr_audit::{Action, AuthChannel, Outcome};

/// A refused attempt to authenticate or to use a token beyond its scopes.
#[derive(Debug, Clone)]
pub struct AuthFailure<'a> {
    pub correlation_id: &'a str,
    /// `api`, `sign-in` or `scope`.
    pub channel: AuthChannel,
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
                Action::Authenticate(f.channel),
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
                action: Action::Authenticate(f.channel),
                outcome: Outcome::Deny,
                basis: None,
                detail: None,
                sources: Vec::new(),
                role_profile_id: None,
            },
        };
        event.outcome = Outcome::Deny;
        event.basis = Some(f.reason.to_owned());
        self.audit(&event).await.map(|_| ())
    }

    /// Append an audit record of a patient's sign-in with NHS login, or of a signed-in
    /// patient's request refused: `outcome` `permit` or `deny`, `reason` a short code
    /// (`nhs-login`, `proofing-level-too-low`, `state-mismatch`, …), `level` the identity
    /// proofing level when NHS login said it, `patient` the NHS number when known (the audit
    /// trail holds NHS numbers; logs never do).
    pub async fn record_patient_sign_in(&self, r: &PatientSignIn<'_>) -> Result<(), GatewayError> {
        let mut event =
            self.patient_event(r.correlation_id, r.patient, Action::Authenticate(r.channel));
        event.outcome = if r.permitted {
            Outcome::Permit
        } else {
            Outcome::Deny
        };
        event.basis = Some(r.reason.to_owned());
        event.detail = r.level.map(|l| format!("identity proofing level {l}"));
        self.audit(&event).await.map(|_| ())
    }

    /// An audit record of a patient's own act on the public site (signing in, changing their
    /// choice): the user is `patient`, the organisation the public site.
    pub(crate) fn patient_event(
        &self,
        correlation_id: &str,
        patient: Option<&mcr_domain::NhsNumber>,
        action: Action,
    ) -> mcr_audit::AuditEvent {
        mcr_audit::AuditEvent {
            at: self.clock.now(),
            correlation_id: correlation_id.to_owned(),
            system: None,
            user_id: "patient".into(),
            user_name: "the patient".into(),
            role: "patient".into(),
            org_code: "PUBLIC".into(),
            org_name: "My Care Record public site".into(),
            patient: patient.map(|n| n.as_str().to_owned()),
            purpose: mcr_domain::Purpose::DirectCare.as_str().to_owned(),
            action,
            outcome: Outcome::Error,
            basis: None,
            detail: None,
            sources: Vec::new(),
            role_profile_id: None,
        }
    }
}

/// A patient's sign-in, or a signed-in patient's refused request, for the audit trail.
#[derive(Debug, Clone)]
pub struct PatientSignIn<'a> {
    pub correlation_id: &'a str,
    /// `patient-sign-in`, or `patient-access` for a request refused after sign-in.
    pub channel: AuthChannel,
    pub permitted: bool,
    pub reason: &'a str,
    /// `P0`, `P5` or `P9`.
    pub level: Option<&'a str>,
    pub patient: Option<&'a mcr_domain::NhsNumber>,
}
