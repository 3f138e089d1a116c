//! The end user's identity, signed, on every request to a source: a short-lived JWT in the
//! style of GP Connect's cross-organisation audit token, so that each source can audit who
//! looked, from which organisation, and why, as the gateway does.
//!
//! Claims: `iss` (the gateway), `sub` (the user id), `aud` (the source's base URL), `iat`,
//! `exp` (five minutes), `reason_for_request` (`directcare`), `requested_scope`,
//! `requested_record` (the patient's NHS number), `requesting_system`,
//! `requesting_organization` (ODS code) and `requesting_practitioner` (id and role).
//! Signed with the gateway's Ed25519 key (EdDSA); sources verify it with the public key.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcr_domain::{Clock, FailureReason, OdsCode};
use mcr_policy::Grant;
use serde_json::{json, Value};
use std::sync::Arc;

/// How long an identity token is valid.
pub const IDENTITY_TTL_SECS: i64 = 300;

/// Code system of the role in `requesting_practitioner.practitionerRole`.
pub const ROLE_SYSTEM: &str = "https://mycarerecord.example/fhir/CodeSystem/role";

/// Signs identity tokens with the gateway's key.
pub struct IdentitySigner {
    key: EncodingKey,
    issuer: String,
    /// The gateway's own organisation (the requesting system's, for index sync).
    gateway_org: OdsCode,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for IdentitySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentitySigner")
            .field("issuer", &self.issuer)
            .field("gateway_org", &self.gateway_org)
            .finish_non_exhaustive()
    }
}

impl IdentitySigner {
    /// `pkcs8` is an Ed25519 private key in PKCS#8 DER.
    pub fn new(
        pkcs8: &[u8],
        issuer: impl Into<String>,
        gateway_org: OdsCode,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            key: EncodingKey::from_ed_der(pkcs8),
            issuer: issuer.into(),
            gateway_org,
            clock,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The token for one request of `grant`'s user to the source at `audience`.
    pub fn for_user(&self, grant: &Grant, audience: &str) -> Result<String, FailureReason> {
        let practitioner = json!({
            "resourceType": "Practitioner",
            "id": grant.user_id(),
            "identifier": [{"system": "https://fhir.nhs.uk/Id/sds-user-id", "value": grant.user_id()}],
            "practitionerRole": [{"role": {"coding": [{"system": ROLE_SYSTEM, "code": grant.role().as_str()}]}}],
        });
        let record = json!({
            "resourceType": "Patient",
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": grant.patient().to_string()}],
        });
        self.sign(
            grant.user_id(),
            audience,
            grant.purpose().as_str(),
            "patient/*.read",
            grant.org_code(),
            Some(practitioner),
            Some(record),
        )
    }

    /// The token for the gateway's own requests (the patient index reading `Patient`s): no
    /// end user, the gateway's organisation.
    pub fn for_system(&self, audience: &str) -> Result<String, FailureReason> {
        let org = self.gateway_org.clone();
        self.sign(
            "system:patient-index",
            audience,
            "directcare",
            "system/Patient.read",
            &org,
            None,
            None,
        )
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "private helper mirroring the claims"
    )]
    fn sign(
        &self,
        sub: &str,
        audience: &str,
        reason: &str,
        scope: &str,
        org: &OdsCode,
        practitioner: Option<Value>,
        record: Option<Value>,
    ) -> Result<String, FailureReason> {
        let now = self.clock.now().timestamp();
        let mut claims = json!({
            "iss": self.issuer,
            "sub": sub,
            "aud": audience.trim_end_matches('/'),
            "iat": now,
            "exp": now + IDENTITY_TTL_SECS,
            "reason_for_request": reason,
            "requested_scope": scope,
            "requesting_system": {
                "resourceType": "Device",
                "identifier": [{"system": "https://mycarerecord.example/Id/gateway", "value": self.issuer}],
                "model": "My Care Record",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "requesting_organization": {
                "resourceType": "Organization",
                "identifier": [{"system": OdsCode::SYSTEM, "value": org.as_str()}],
            },
        });
        if let Some(p) = practitioner {
            claims["requesting_practitioner"] = p;
        }
        if let Some(r) = record {
            claims["requested_record"] = r;
        }
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.key).map_err(|_| {
            FailureReason::Unreachable {
                detail: "the gateway could not sign the user's identity".into(),
            }
        })
    }
}
