//! A source's check of the end user's identity token (GP Connect cross-organisation audit
//! style) that the gateway sends with each request: signature with a configured Ed25519 key
//! (EdDSA only), audience (this source), issuer, expiry, a short lifetime, purpose `directcare`,
//! and a requesting organisation. Verified claims are counted and the most recent kept so a
//! test (or an operator) can see who asked; a source told to require them refuses requests
//! without a valid one.

use axum::http::{header, HeaderMap};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// How a source checks identity tokens.
#[derive(Debug, Clone, Default)]
pub struct IdentityCheck {
    /// Ed25519 public keys (JWK `x`, base64url) whose tokens are accepted.
    pub ed25519_keys: Vec<String>,
    /// The `iss` expected, if any.
    pub issuer: Option<String>,
    /// Refuse (401) FHIR requests without a valid token; otherwise only count them.
    pub required: bool,
}

/// The longest lifetime (`exp - iat`) accepted, in seconds.
const MAX_LIFETIME_SECS: i64 = 600;
const KEEP: usize = 64;

pub(crate) struct Verifier {
    keys: Vec<DecodingKey>,
    issuer: Option<String>,
    pub(crate) required: bool,
    recent: Mutex<VecDeque<Value>>,
    pub(crate) verified: AtomicU64,
    pub(crate) rejected: AtomicU64,
}

impl Verifier {
    pub(crate) fn new(check: &IdentityCheck) -> Result<Self, String> {
        let keys = check
            .ed25519_keys
            .iter()
            .map(|x| {
                DecodingKey::from_ed_components(x)
                    .map_err(|_| format!("`{x}` is not an Ed25519 public key"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            keys,
            issuer: check.issuer.clone(),
            required: check.required,
            recent: Mutex::new(VecDeque::new()),
            verified: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        })
    }

    /// Check the request's token against `audiences` (this source's base URLs). `Err` says why
    /// in words safe to send back.
    pub(crate) fn check(
        &self,
        headers: &HeaderMap,
        audiences: &[String],
    ) -> Result<(), &'static str> {
        let result = self.verify(headers, audiences);
        match &result {
            Ok(claims) => {
                self.verified.fetch_add(1, Ordering::Relaxed);
                let org = claims["requesting_organization"]["identifier"][0]["value"]
                    .as_str()
                    .unwrap_or("");
                tracing::info!(
                    sub = claims["sub"].as_str().unwrap_or(""),
                    org,
                    "request on behalf of a verified user"
                );
                let mut recent = self
                    .recent
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if recent.len() == KEEP {
                    recent.pop_front();
                }
                recent.push_back(claims.clone());
            }
            Err(why) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::info!(why, "request without a valid identity token");
            }
        }
        result.map(|_| ())
    }

    fn verify(&self, headers: &HeaderMap, audiences: &[String]) -> Result<Value, &'static str> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or("no identity token")?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(audiences);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub", "aud"]);
        validation.leeway = 30;
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
        }
        let claims = self
            .keys
            .iter()
            .find_map(|k| jsonwebtoken::decode::<Value>(token, k, &validation).ok())
            .ok_or("the identity token is not valid")?
            .claims;
        let (iat, exp) = (
            claims["iat"].as_i64().unwrap_or(0),
            claims["exp"].as_i64().unwrap_or(i64::MAX),
        );
        if exp - iat > MAX_LIFETIME_SECS {
            return Err("the identity token lives too long");
        }
        if claims["reason_for_request"] != "directcare" {
            return Err("the identity token's reason for request is not direct care");
        }
        let org = claims["requesting_organization"]["identifier"][0]["value"]
            .as_str()
            .unwrap_or("");
        if org.is_empty() {
            return Err("the identity token names no requesting organisation");
        }
        Ok(claims)
    }

    pub(crate) fn recent(&self) -> Vec<Value> {
        self.recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}
