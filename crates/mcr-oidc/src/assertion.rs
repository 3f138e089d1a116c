//! Client authentication by signed assertion (`private_key_jwt`, RFC 7523), as SMART backend
//! services require of a system asking for a token: a JWT the client signs with its own private
//! key (RS384 or ES384), checked against the public keys registered for it, given inline or
//! at a JWKS URL (HTTPS; fetched, cached for [`KEYS_TTL`], and fetched again when an assertion
//! names a key id not in the cache, at most once per [`crate::keys::REFRESH_GAP`]).
//!
//! This module decides whether an assertion is genuine and current (signature, `iss` = `sub`
//! = the client, `aud` = the token endpoint, `exp` within five minutes, a `jti`); remembering
//! `jti`s against replay is the caller's, since every gateway of a region must share it.

use crate::keys::REFRESH_GAP;
use crate::{acceptable_url, get_json};
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::RwLock;

/// How long a client's fetched JWKS is used before it is fetched again.
pub const KEYS_TTL: Duration = Duration::from_secs(600);

/// The longest an assertion may live: SMART says `exp` no more than five minutes ahead.
pub const MAX_ASSERTION_SECONDS: i64 = 300;

/// Allowance for the client's clock running ahead of ours, on top of the five minutes.
const CLOCK_SKEW_SECONDS: i64 = 30;

/// The algorithms SMART backend services require servers to support, and the only ones taken.
pub const ASSERTION_ALGORITHMS: [Algorithm; 2] = [Algorithm::RS384, Algorithm::ES384];

/// Why an assertion was refused. Each has a short code for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    #[error("the client assertion is not a well-formed JWT ({0})")]
    Malformed(&'static str),
    #[error("the client assertion is signed with an algorithm this server does not accept (RS384 or ES384 only)")]
    Algorithm,
    #[error("the client assertion's `iss` and `sub` must both be the client's id")]
    WrongIssuer,
    #[error("the client assertion's `aud` is not this server's token endpoint")]
    WrongAudience,
    #[error("the client assertion has expired")]
    Expired,
    #[error("the client assertion's `exp` is more than five minutes ahead")]
    TooLong,
    #[error("the client assertion has no `jti`")]
    NoJti,
    #[error("the client assertion is signed by a key that is not in the client's registered JWKS")]
    UnknownKey,
    #[error("the client assertion's signature does not verify with the client's registered key")]
    BadSignature,
    #[error("the client's JWKS cannot be fetched just now; try again shortly")]
    KeysUnavailable,
}

impl AssertionError {
    pub fn code(&self) -> &'static str {
        match self {
            AssertionError::Malformed(_) => "malformed-assertion",
            AssertionError::Algorithm => "assertion-algorithm",
            AssertionError::WrongIssuer => "assertion-wrong-issuer",
            AssertionError::WrongAudience => "assertion-wrong-audience",
            AssertionError::Expired => "assertion-expired",
            AssertionError::TooLong => "assertion-lifetime-too-long",
            AssertionError::NoJti => "assertion-without-jti",
            AssertionError::UnknownKey => "assertion-unknown-key",
            AssertionError::BadSignature => "assertion-bad-signature",
            AssertionError::KeysUnavailable => "client-jwks-unavailable",
        }
    }
}

/// A verified assertion: its `jti`, `exp` (Unix seconds) and every claim.
#[derive(Debug, Clone)]
pub struct Assertion {
    pub jti: String,
    pub exp: i64,
    pub claims: Map<String, Value>,
}

struct ClientKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

enum Source {
    Inline,
    Url(String),
}

struct Cached {
    keys: Arc<Vec<ClientKey>>,
    fetched: Option<Instant>,
}

/// One client's registered public keys.
pub struct ClientKeys {
    source: Source,
    http: reqwest::Client,
    cache: RwLock<Cached>,
}

impl std::fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.source {
            Source::Inline => "inline",
            Source::Url(u) => u.as_str(),
        };
        f.debug_struct("ClientKeys")
            .field("source", &source)
            .finish_non_exhaustive()
    }
}

/// The usable signing keys of a JWKS: RSA for RS384, P-384 for ES384; encryption keys and
/// anything else are left out.
fn signing_keys(set: &JwkSet) -> Vec<ClientKey> {
    set.keys
        .iter()
        .filter(|k| !matches!(k.common.public_key_use, Some(PublicKeyUse::Encryption)))
        .filter_map(|jwk| {
            let alg = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS384,
                AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => {
                    Algorithm::ES384
                }
                _ => return None,
            };
            Some(ClientKey {
                kid: jwk.common.key_id.clone(),
                alg,
                key: DecodingKey::from_jwk(jwk).ok()?,
            })
        })
        .collect()
}

impl ClientKeys {
    /// Keys given in the configuration itself (a JWKS document).
    pub fn inline(jwks: &Value) -> Result<Self, String> {
        let set: JwkSet = serde_json::from_value(jwks.clone())
            .map_err(|e| format!("the JWKS is not a valid JWK Set: {e}"))?;
        let keys = signing_keys(&set);
        if keys.is_empty() {
            return Err("the JWKS holds no RSA or P-384 signing key".into());
        }
        Ok(Self {
            source: Source::Inline,
            http: reqwest::Client::new(),
            cache: RwLock::new(Cached {
                keys: Arc::new(keys),
                fetched: Some(Instant::now()),
            }),
        })
    }

    /// Keys the client publishes at `url` (HTTPS; plain HTTP only on loopback, for tests).
    pub fn at_url(url: &str) -> Result<Self, String> {
        if !acceptable_url(url) {
            return Err(format!(
                "the JWKS URL `{url}` must be https:// (http:// only on a loopback address)"
            ));
        }
        Ok(Self {
            source: Source::Url(url.to_owned()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| format!("no HTTP client: {e}"))?,
            cache: RwLock::new(Cached {
                keys: Arc::new(Vec::new()),
                fetched: None,
            }),
        })
    }

    /// The keys, fetched when never fetched, older than [`KEYS_TTL`], or when `force` (an
    /// unknown key id) and the last fetch is older than the refresh gap.
    async fn keys(&self, force: bool) -> Result<Arc<Vec<ClientKey>>, AssertionError> {
        let Source::Url(url) = &self.source else {
            return Ok(self.cache.read().await.keys.clone());
        };
        let fresh = |c: &Cached| match c.fetched {
            Some(at) if force => at.elapsed() < REFRESH_GAP,
            Some(at) => at.elapsed() < KEYS_TTL,
            None => false,
        };
        {
            let cache = self.cache.read().await;
            if fresh(&cache) {
                return Ok(cache.keys.clone());
            }
        }
        let mut cache = self.cache.write().await;
        if fresh(&cache) {
            return Ok(cache.keys.clone());
        }
        let fetched = get_json(&self.http, url).await.ok().and_then(|body| {
            serde_json::from_slice::<JwkSet>(&body)
                .ok()
                .map(|s| signing_keys(&s))
        });
        match fetched {
            Some(keys) => {
                cache.keys = Arc::new(keys);
                cache.fetched = Some(Instant::now());
                Ok(cache.keys.clone())
            }
            None => {
                tracing::warn!(jwks = %url, "a backend client's JWKS could not be fetched");
                // Keys fetched before still serve until their time is up twice over.
                match cache.fetched {
                    Some(at) if at.elapsed() < KEYS_TTL * 2 && !cache.keys.is_empty() => {
                        Ok(cache.keys.clone())
                    }
                    _ => Err(AssertionError::KeysUnavailable),
                }
            }
        }
    }

    /// Verify `token` as `client_id`'s assertion for the token endpoint `audience` at `now`
    /// (Unix seconds).
    pub async fn verify(
        &self,
        token: &str,
        client_id: &str,
        audience: &str,
        now: i64,
    ) -> Result<Assertion, AssertionError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AssertionError::Malformed("its header cannot be read"))?;
        if !ASSERTION_ALGORITHMS.contains(&header.alg) {
            return Err(AssertionError::Algorithm);
        }
        if let (Some(jku), Source::Url(url)) = (&header.jku, &self.source) {
            if jku != url {
                return Err(AssertionError::UnknownKey);
            }
        }
        let pick = |keys: &[ClientKey]| -> Vec<usize> {
            keys.iter()
                .enumerate()
                .filter(|(_, k)| k.alg == header.alg)
                .filter(|(_, k)| match (&header.kid, &k.kid) {
                    (Some(want), Some(have)) => want == have,
                    (Some(_), None) => false,
                    (None, _) => true,
                })
                .map(|(i, _)| i)
                .collect()
        };
        let mut keys = self.keys(false).await?;
        let mut candidates = pick(&keys);
        if candidates.is_empty() {
            keys = self.keys(true).await?;
            candidates = pick(&keys);
        }
        if candidates.is_empty() {
            return Err(AssertionError::UnknownKey);
        }
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = candidates
            .iter()
            .find_map(|&i| {
                jsonwebtoken::decode::<Map<String, Value>>(token, &keys[i].key, &validation).ok()
            })
            .ok_or(AssertionError::BadSignature)?
            .claims;
        check_claims(&claims, client_id, audience, now)
    }
}

/// The registered claims SMART backend services require of an assertion.
fn check_claims(
    claims: &Map<String, Value>,
    client_id: &str,
    audience: &str,
    now: i64,
) -> Result<Assertion, AssertionError> {
    let text = |k: &str| claims.get(k).and_then(Value::as_str);
    if text("iss") != Some(client_id) || text("sub") != Some(client_id) {
        return Err(AssertionError::WrongIssuer);
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == audience,
        Some(Value::Array(a)) => a.len() == 1 && a[0].as_str() == Some(audience),
        _ => false,
    };
    if !aud_ok {
        return Err(AssertionError::WrongAudience);
    }
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or(AssertionError::Malformed("it has no numeric `exp`"))?;
    if exp <= now {
        return Err(AssertionError::Expired);
    }
    if exp > now + MAX_ASSERTION_SECONDS + CLOCK_SKEW_SECONDS {
        return Err(AssertionError::TooLong);
    }
    let jti = text("jti")
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or(AssertionError::NoJti)?;
    Ok(Assertion {
        jti: jti.to_owned(),
        exp,
        claims: claims.clone(),
    })
}

/// The `iss` an assertion claims, read without checking anything: only to find which client's
/// keys to check it with.
pub fn claimed_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().expect("object").clone()
    }

    #[test]
    fn claims_are_checked_as_smart_requires() {
        let aud = "https://gw.example/oauth/token";
        let now = 1_800_000_000;
        let good = json!({"iss": "epr", "sub": "epr", "aud": aud, "exp": now + 240, "jti": "a"});
        assert_eq!(
            check_claims(&claims(good.clone()), "epr", aud, now)
                .expect("valid")
                .jti,
            "a"
        );
        let with = |k: &str, v: Value| {
            let mut c = claims(good.clone());
            c.insert(k.into(), v);
            check_claims(&c, "epr", aud, now).map(|_| ())
        };
        assert_eq!(
            with("iss", json!("other")),
            Err(AssertionError::WrongIssuer)
        );
        assert_eq!(
            with("sub", json!("other")),
            Err(AssertionError::WrongIssuer)
        );
        assert_eq!(
            with("aud", json!("https://gw.example/fhir")),
            Err(AssertionError::WrongAudience)
        );
        assert_eq!(with("aud", json!([aud])), Ok(()));
        assert_eq!(
            with("aud", json!([aud, "x"])),
            Err(AssertionError::WrongAudience)
        );
        assert_eq!(with("exp", json!(now)), Err(AssertionError::Expired));
        assert_eq!(with("exp", json!(now + 600)), Err(AssertionError::TooLong));
        assert!(matches!(
            with("exp", json!("soon")),
            Err(AssertionError::Malformed(_))
        ));
        assert_eq!(with("jti", json!("")), Err(AssertionError::NoJti));
        assert_eq!(with("jti", json!(7)), Err(AssertionError::NoJti));
    }

    #[test]
    fn the_issuer_is_read_only_to_find_the_client() {
        let b64 = |v: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        let t = format!(
            "{}.{}.sig",
            b64(&json!({"alg": "RS384"})),
            b64(&json!({"iss": "epr"}))
        );
        assert_eq!(claimed_issuer(&t).as_deref(), Some("epr"));
        assert_eq!(claimed_issuer("not a token"), None);
        assert_eq!(claimed_issuer("a.!!!.c"), None);
    }

    #[test]
    fn only_https_jwks_urls_except_on_loopback() {
        assert!(ClientKeys::at_url("http://jwks.example/keys").is_err());
        assert!(ClientKeys::at_url("https://jwks.example/keys").is_ok());
        assert!(ClientKeys::at_url("http://127.0.0.1:9/keys").is_ok());
        assert!(ClientKeys::inline(&json!({"keys": []})).is_err());
        assert!(ClientKeys::inline(&json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})).is_err());
    }
}
