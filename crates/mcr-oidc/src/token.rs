//! Why a token was refused, and who a valid token says the user is.

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
}

pub(crate) fn claims_of(m: Map<String, Value>) -> Result<Map<String, Value>, Rejection> {
    Ok(m)
}

fn text(claims: &Map<String, Value>, name: &str) -> Result<String, Rejection> {
    match claims.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 256 => Ok(s.trim().to_owned()),
        _ => Err(Rejection::MissingClaim(name.chars().take(40).collect())),
    }
}

/// Map a token's claims to an identity.
pub fn identity(claims: &Map<String, Value>, names: &ClaimNames) -> Result<Identity, Rejection> {
    let scopes = match (claims.get("scope"), claims.get("scp")) {
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
    };
    Ok(Identity {
        user_id: text(claims, &names.user_id)?,
        name: text(claims, &names.name)?,
        role: text(claims, &names.role)?,
        organisation: text(claims, &names.organisation)?,
        scopes,
        patient: claims
            .get("patient")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|p| !p.is_empty() && p.len() <= 64)
            .map(str::to_owned),
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
