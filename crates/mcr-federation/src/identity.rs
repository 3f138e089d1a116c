//! The end user's identity, signed, on every request to a source: a short-lived JWT in the
//! style of GP Connect's cross-organisation audit token, so that each source can audit who
//! looked, from which organisation, and why, as the gateway does.
//!
//! Claims: `iss` (the gateway), `sub` (the user id), `aud` (the source's base URL), `iat`,
//! `exp` (five minutes), `reason_for_request` (`directcare`), `requested_scope`,
//! `requested_record` (the patient's NHS number), `requesting_system`,
//! `requesting_organization` (ODS code) and `requesting_practitioner` (id and role).
//! Signed with the gateway's Ed25519 key (EdDSA); sources verify it with the public key.

use base64::Engine as _;
use mcr_domain::{Clock, FailureReason, NhsNumber, OdsCode, Purpose, Role};
use mcr_policy::Grant;
use ring::signature::Ed25519KeyPair;
use serde_json::{json, Value};
use std::sync::Arc;

/// How long an identity token is valid.
pub const IDENTITY_TTL_SECS: i64 = 300;

/// Code system of the role in `requesting_practitioner.practitionerRole`.
pub const ROLE_SYSTEM: &str = "https://mycarerecord.example/fhir/CodeSystem/role";

/// Who asks, as an identity token says it: the user, their role and organisation, the
/// purpose and the patient. A grant says the same ([`Requester::of`]); before the decision
/// the gateway knows it from the request, so tokens can be signed while it decides
/// ([`crate::Federation::sign_while`]) and used only if the grant is for exactly this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requester<'a> {
    pub user_id: &'a str,
    pub role: Role,
    pub org_code: &'a OdsCode,
    pub purpose: Purpose,
    pub patient: &'a NhsNumber,
}

impl<'a> Requester<'a> {
    pub fn of(grant: &'a Grant) -> Self {
        Self {
            user_id: grant.user_id(),
            role: grant.role(),
            org_code: grant.org_code(),
            purpose: grant.purpose(),
            patient: grant.patient(),
        }
    }
}

/// Signs identity tokens with the gateway's key.
pub struct IdentitySigner {
    /// Parsed once: deriving the key pair from PKCS#8 costs more than a signature.
    key: Ed25519KeyPair,
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
    ) -> Result<Self, InvalidKey> {
        Ok(Self {
            key: Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(|_| InvalidKey)?,
            issuer: issuer.into(),
            gateway_org,
            clock,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The token for one request of `grant`'s user to the source at `audience`.
    pub fn for_user(&self, grant: &Grant, audience: &str) -> Result<String, FailureReason> {
        self.for_requester(&Requester::of(grant), audience)
    }

    /// The token for one request of `who` to the source at `audience`: what
    /// [`IdentitySigner::for_user`] signs for a grant to `who`.
    pub fn for_requester(
        &self,
        who: &Requester<'_>,
        audience: &str,
    ) -> Result<String, FailureReason> {
        let practitioner = json!({
            "resourceType": "Practitioner",
            "id": who.user_id,
            "identifier": [{"system": "https://fhir.nhs.uk/Id/sds-user-id", "value": who.user_id}],
            "practitionerRole": [{"role": {"coding": [{"system": ROLE_SYSTEM, "code": who.role.as_str()}]}}],
        });
        let record = json!({
            "resourceType": "Patient",
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": who.patient.as_str()}],
        });
        self.sign(
            who.user_id,
            audience,
            who.purpose.as_str(),
            "patient/*.read",
            who.org_code,
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
        Ok(self.sign_claims(&claims))
    }

    /// The access token GP Connect requires of a consumer (spec: "Cross-organisation audit and
    /// provenance"): `requesting_device` (this gateway), `requesting_organization` (the user's
    /// organisation, by ODS code), `requesting_practitioner` (the user: local id, SDS user id
    /// and role profile id as `UNK` since no smartcard is involved, and the user's role),
    /// `reason_for_request: directcare`, `requested_scope: patient/*.read`, five minutes valid.
    /// Signed like every other identity token (GP Connect 1.x allows an unsigned one; signing
    /// it costs nothing and lets a provider check it).
    pub fn for_gp_connect(
        &self,
        who: &Requester<'_>,
        audience: &str,
    ) -> Result<String, FailureReason> {
        let now = self.clock.now().timestamp();
        let claims = json!({
            "iss": self.issuer,
            "sub": who.user_id,
            "aud": audience.trim_end_matches('/'),
            "iat": now,
            "exp": now + IDENTITY_TTL_SECS,
            "reason_for_request": "directcare",
            "requested_scope": "patient/*.read",
            "requesting_device": {
                "resourceType": "Device",
                "identifier": [{"system": "https://mycarerecord.example/Id/gateway", "value": self.issuer}],
                "model": "My Care Record",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "requesting_organization": {
                "resourceType": "Organization",
                "identifier": [{"system": OdsCode::SYSTEM, "value": who.org_code.as_str()}],
            },
            "requesting_practitioner": {
                "resourceType": "Practitioner",
                "id": who.user_id,
                "identifier": [
                    {"system": "https://fhir.nhs.uk/Id/sds-user-id", "value": "UNK"},
                    {"system": "https://fhir.nhs.uk/Id/sds-role-profile-id", "value": "UNK"},
                    {"system": "https://mycarerecord.example/Id/user-id", "value": who.user_id},
                    {"system": ROLE_SYSTEM, "value": who.role.as_str()},
                ],
            },
        });
        Ok(self.sign_claims(&claims))
    }

    fn sign_claims(&self, claims: &Value) -> String {
        // A compact JWS (RFC 7515) with EdDSA (RFC 8037), as `jsonwebtoken` writes it.
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut token = String::with_capacity(1024);
        token.push_str(JWT_HEADER_B64);
        token.push('.');
        b64.encode_string(claims.to_string(), &mut token);
        let signature = self.key.sign(token.as_bytes());
        token.push('.');
        b64.encode_string(signature.as_ref(), &mut token);
        token
    }
}

/// `{"typ":"JWT","alg":"EdDSA"}`, base64url.
const JWT_HEADER_B64: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFZERTQSJ9";

/// The identity key is not an Ed25519 private key in PKCS#8 DER.
#[derive(Debug, thiserror::Error)]
#[error("the identity key is not an Ed25519 private key (PKCS#8 DER)")]
pub struct InvalidKey;

#[cfg(test)]
mod tests {
    use super::*;
    use mcr_domain::FixedClock;
    use ring::signature::KeyPair as _;

    #[test]
    fn tokens_verify_as_eddsa_jwts_with_the_public_key() {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("key");
        let public = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .expect("key pair")
            .public_key()
            .as_ref()
            .to_vec();
        let clock = Arc::new(FixedClock::new(
            chrono::DateTime::<chrono::Utc>::from_timestamp(1_795_000_000, 0).expect("time"),
        ));
        let signer = IdentitySigner::new(
            pkcs8.as_ref(),
            "https://mcr.example",
            OdsCode::parse("RX1").expect("ods"),
            clock,
        )
        .expect("signer");
        let token = signer.for_system("https://gp.example/").expect("token");

        let key = jsonwebtoken::DecodingKey::from_ed_der(&public);
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
        validation.set_audience(&["https://gp.example"]);
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<Value>(&token, &key, &validation)
            .expect("verifies")
            .claims;
        assert_eq!(claims["iss"], "https://mcr.example");
        assert_eq!(
            claims["requesting_organization"]["identifier"][0]["value"],
            "RX1"
        );

        // A changed claim breaks the signature.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"iss":"https://evil.example","aud":"https://gp.example"}"#);
        parts[1] = &forged;
        assert!(jsonwebtoken::decode::<Value>(&parts.join("."), &key, &validation).is_err());

        assert!(IdentitySigner::new(
            b"not a key",
            "x",
            OdsCode::parse("RX1").expect("ods"),
            Arc::new(FixedClock::new(
                chrono::DateTime::<chrono::Utc>::from_timestamp(1_795_000_000, 0).expect("time")
            ))
        )
        .is_err());
    }
}
