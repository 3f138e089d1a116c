//! Why a token was refused, and who a valid token says the user is.

use crate::cis2::{self, Cis2Config, RbacError, RoleProfile};
use crate::ClaimNames;
use serde_json::{Map, Value};

/// Why a token was refused. `code()` is what the audit trail records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("it could not be read")]
    Malformed,
    #[error("it uses an algorithm this service does not accept")]
    Algorithm,
    #[error("it was signed with a key the identity provider does not publish")]
    UnknownKey,
    #[error("its signature does not verify")]
    Signature,
    #[error("it has expired")]
    Expired,
    #[error("it is not valid yet")]
    NotYetValid,
    #[error("it was issued by someone else")]
    Issuer,
    #[error("it is meant for another service")]
    Audience,
    #[error("it lacks the `{0}` claim")]
    MissingClaim(String),
    #[error("it was not issued for this sign-in")]
    Nonce,
    /// A claim is there but not in the form its issuer documents.
    #[error("its `{claim}` claim {problem}")]
    BadClaim {
        claim: &'static str,
        problem: &'static str,
    },
    /// The national RBAC claims (role profiles, the selected one) do not hold.
    #[error("{0}")]
    Rbac(RbacError),
}

impl Rejection {
    /// A short code for the audit trail and the `OperationOutcome`.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed-token",
            Rejection::Algorithm => "algorithm-not-accepted",
            Rejection::UnknownKey => "unknown-key",
            Rejection::Signature => "bad-signature",
            Rejection::Expired => "expired-token",
            Rejection::NotYetValid => "token-not-yet-valid",
            Rejection::Issuer => "wrong-issuer",
            Rejection::Audience => "wrong-audience",
            Rejection::MissingClaim(_) => "missing-claim",
            Rejection::Nonce => "nonce-mismatch",
            Rejection::BadClaim { .. } => "malformed-claim",
            Rejection::Rbac(e) => e.code(),
        }
    }
}

impl From<&jsonwebtoken::errors::Error> for Rejection {
    fn from(e: &jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::ExpiredSignature => Rejection::Expired,
            K::ImmatureSignature => Rejection::NotYetValid,
            K::InvalidIssuer => Rejection::Issuer,
            K::InvalidAudience => Rejection::Audience,
            K::InvalidSignature => Rejection::Signature,
            K::InvalidAlgorithm | K::MissingAlgorithm | K::InvalidAlgorithmName => {
                Rejection::Algorithm
            }
            K::MissingRequiredClaim(c) => Rejection::MissingClaim(c.chars().take(40).collect()),
            _ => Rejection::Malformed,
        }
    }
}

/// Who a valid token is for, through the configured claim names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub name: String,
    pub role: String,
    pub organisation: String,
    /// Space-separated `scope` (or a `scp` list), for API tokens.
    pub scopes: Vec<String>,
    /// SMART launch context: the patient a token's `patient/` scopes are bound to (`patient`
    /// claim), when it has one.
    pub patient: Option<String>,
    /// CIS2: every national RBAC role profile the user holds (empty for other providers).
    pub role_profiles: Vec<RoleProfile>,
    /// CIS2: the role profile in use (`person_roleid`); `None` while the user has several and
    /// has not chosen. `role` and `organisation` are that profile's job role and ODS code.
    pub role_profile: Option<String>,
    /// How strongly the user authenticated (1 to 3), when the token says.
    pub assurance: Option<u8>,
}

impl Identity {
    /// The role profile in use, if any.
    pub fn selected_profile(&self) -> Option<&RoleProfile> {
        let id = self.role_profile.as_deref()?;
        self.role_profiles.iter().find(|p| p.id == id)
    }

    /// The same identity working in another of its role profiles; `None` if it does not hold
    /// `id` (a forged choice).
    pub fn choose(&self, id: &str) -> Option<Identity> {
        let p = self.role_profiles.iter().find(|p| p.id == id)?;
        Some(Identity {
            role: p.job_role.clone(),
            organisation: p.org_code.clone(),
            role_profile: Some(p.id.clone()),
            ..self.clone()
        })
    }
}

pub(crate) fn claims_of(m: Map<String, Value>) -> Result<Map<String, Value>, Rejection> {
    Ok(m)
}

fn scopes_of(claims: &Map<String, Value>) -> Vec<String> {
    match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => s
            .split_ascii_whitespace()
            .take(64)
            .map(str::to_owned)
            .collect(),
        (_, Some(Value::Array(a))) => a
            .iter()
            .filter_map(Value::as_str)
            .take(64)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn patient_of(claims: &Map<String, Value>) -> Option<String> {
    claims
        .get("patient")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|p| !p.is_empty() && p.len() <= 64)
        .map(str::to_owned)
}

/// A CIS2 sign-in's identity: its role profiles, checked whole, and the one in use when the
/// provider selected one (it must be held) or the user holds only one.
pub fn cis2_identity(
    claims: &Map<String, Value>,
    names: &ClaimNames,
    cfg: &Cis2Config,
) -> Result<Identity, Rejection> {
    let profiles = cis2::role_profiles(claims, cfg).map_err(Rejection::Rbac)?;
    let selected = cis2::selected_profile(claims, &profiles, cfg).map_err(Rejection::Rbac)?;
    let base = Identity {
        user_id: text(claims, &names.user_id)?,
        name: text(claims, &names.name)?,
        role: String::new(),
        organisation: String::new(),
        scopes: scopes_of(claims),
        patient: patient_of(claims),
        role_profiles: profiles,
        role_profile: None,
        assurance: cis2::assurance_level(claims),
    };
    Ok(match selected {
        Some(id) => base.choose(&id).unwrap_or(base),
        None => base,
    })
}

fn text(claims: &Map<String, Value>, name: &str) -> Result<String, Rejection> {
    match claims.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 256 => Ok(s.trim().to_owned()),
        _ => Err(Rejection::MissingClaim(name.chars().take(40).collect())),
    }
}

/// Map a token's claims to an identity.
pub fn identity(claims: &Map<String, Value>, names: &ClaimNames) -> Result<Identity, Rejection> {
    Ok(Identity {
        user_id: text(claims, &names.user_id)?,
        name: text(claims, &names.name)?,
        role: text(claims, &names.role)?,
        organisation: text(claims, &names.organisation)?,
        scopes: scopes_of(claims),
        patient: patient_of(claims),
        role_profiles: Vec::new(),
        role_profile: None,
        assurance: cis2::assurance_level(claims),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn claims_map_through_configured_names() {
        let claims: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "sub": "u1", "preferred_name": "Dr A", "nhs_role": "clinician", "ods": "RWH01",
            "scope": "openid user/*.read"
        }))
        .unwrap();
        let names = ClaimNames {
            user_id: "sub".into(),
            name: "preferred_name".into(),
            role: "nhs_role".into(),
            organisation: "ods".into(),
        };
        let id = identity(&claims, &names).unwrap();
        assert_eq!(
            (
                id.user_id.as_str(),
                id.role.as_str(),
                id.organisation.as_str()
            ),
            ("u1", "clinician", "RWH01")
        );
        assert_eq!(id.scopes, vec!["openid", "user/*.read"]);
        assert_eq!(
            identity(&claims, &ClaimNames::default()),
            Err(Rejection::MissingClaim("name".into()))
        );
    }

    #[test]
    fn a_cis2_sign_in_carries_its_profiles_selection_and_assurance() {
        let cfg = Cis2Config::default();
        let names = ClaimNames::default();
        let mut claims: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "sub": "555057896106", "name": "Flo Nurse", "acr": "AAL3_ANY",
            "authentication_assurance_level": "3",
            "nhsid_nrbac_roles": [
                {"person_roleid": "555057898108", "org_code": "X26", "role_code": "S8002:G8003:R0001"},
                {"person_roleid": "555057996107", "org_code": "Y51", "role_code": "S8000:G8000:R8001",
                 "activity_codes": ["B0380"]}
            ]
        }))
        .unwrap();
        let id = cis2_identity(&claims, &names, &cfg).expect("reads");
        assert_eq!(id.role_profiles.len(), 2);
        assert_eq!(id.role_profile, None, "two profiles: the user chooses");
        assert_eq!(id.assurance, Some(3));
        let nurse = id.choose("555057996107").expect("held");
        assert_eq!(
            (nurse.role.as_str(), nurse.organisation.as_str()),
            ("R8001", "Y51")
        );
        assert_eq!(
            nurse.selected_profile().map(|p| p.job_role.as_str()),
            Some("R8001")
        );
        assert!(
            id.choose("123").is_none(),
            "a profile not held cannot be chosen"
        );

        claims.insert(
            "selected_roleid".into(),
            Value::String("555057898108".into()),
        );
        let id = cis2_identity(&claims, &names, &cfg).expect("reads");
        assert_eq!(id.organisation, "X26");
        claims.insert("selected_roleid".into(), Value::String("forged".into()));
        let e = cis2_identity(&claims, &names, &cfg).expect_err("forged selection");
        assert_eq!(e.code(), "role-profile-not-held");
        claims.insert("nhsid_nrbac_roles".into(), Value::String("x".into()));
        let e = cis2_identity(&claims, &names, &cfg).expect_err("malformed");
        assert_eq!(e.code(), "malformed-nationalrbacaccess");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Any claims object maps to an identity or a clean rejection, never a panic.
        #[test]
        fn arbitrary_claims_never_panic(keys in proptest::collection::vec("[a-z_]{1,8}", 0..8),
                                        vals in proptest::collection::vec(any::<String>(), 0..8)) {
            let mut m = Map::new();
            for (k, v) in keys.iter().zip(vals) {
                m.insert(k.clone(), Value::String(v));
            }
            let _ = identity(&m, &ClaimNames::default());
        }
    }
}
