//! The issuer's signing keys from its JWKS, kept in memory and fetched again when a token
//! names a key id that is not there (key rotation), at most once per [`REFRESH_GAP`] so that
//! tokens with made-up key ids cannot make the gateway hammer the provider.

use crate::token::{claims_of, Rejection};
use crate::{get_json, OidcError};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::time::{Duration, Instant};
use tokio::sync::RwLock;

/// The shortest time between two fetches of the JWKS.
pub const REFRESH_GAP: Duration = Duration::from_secs(10);

/// Which algorithms a key can check, by its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Family {
    fn of(jwk: &Jwk) -> Option<Self> {
        match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Some(Family::Rsa),
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => Some(Family::P256),
                EllipticCurve::P384 => Some(Family::P384),
                _ => None,
            },
            AlgorithmParameters::OctetKeyPair(p) => (p.curve == EllipticCurve::Ed25519).then_some(Family::Ed25519),
            // A symmetric key in a JWKS is never used: only public keys verify.
            AlgorithmParameters::OctetKey(_) => None,
        }
    }

    fn checks(self, alg: Algorithm) -> bool {
        use Algorithm as A;
        match self {
            Family::Rsa => matches!(alg, A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512),
            Family::P256 => alg == A::ES256,
            Family::P384 => alg == A::ES384,
            Family::Ed25519 => alg == A::EdDSA,
        }
    }
}

struct Key {
    kid: Option<String>,
    family: Family,
    key: DecodingKey,
}

#[derive(Default)]
struct Cache {
    uri: Option<String>,
    keys: Vec<Key>,
    fetched: Option<Instant>,
}

/// The issuer's public keys.
pub struct KeySet {
    http: reqwest::Client,
    algorithms: Vec<Algorithm>,
    cache: RwLock<Cache>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet").field("algorithms", &self.algorithms).finish_non_exhaustive()
    }
}

impl KeySet {
    pub(crate) fn new(http: reqwest::Client, algorithms: Vec<Algorithm>) -> Self {
        Self { http, algorithms, cache: RwLock::new(Cache::default()) }
    }

    pub(crate) async fn set_uri(&self, uri: &str) {
        self.cache.write().await.uri = Some(uri.to_owned());
    }

    async fn refresh(&self, force: bool) -> Result<(), OidcError> {
        let mut cache = self.cache.write().await;
        if let Some(at) = cache.fetched {
            if !force || at.elapsed() < REFRESH_GAP {
                return Ok(());
            }
        }
        let uri = cache.uri.clone().ok_or_else(|| OidcError::Provider("no JWKS location".into()))?;
        let body = get_json(&self.http, &uri).await?;
        let set: JwkSet = serde_json::from_slice(&body).map_err(|_| OidcError::Provider("JWKS is not valid".into()))?;
        cache.keys = set
            .keys
            .iter()
            .filter(|k| !matches!(k.common.public_key_use, Some(PublicKeyUse::Encryption)))
            .filter_map(|jwk| {
                let family = Family::of(jwk)?;
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some(Key { kid: jwk.common.key_id.clone(), family, key })
            })
            .collect();
        cache.fetched = Some(Instant::now());
        tracing::debug!(keys = cache.keys.len(), "identity provider keys fetched");
        Ok(())
    }

    /// Check a token's signature with the issuer's keys and its `iss`, `aud`, `exp`, `nbf`;
    /// return its claims.
    pub(crate) async fn verify(&self, token: &str, issuer: &str, audience: &str) -> Result<Map<String, Value>, OidcError> {
        if token.len() > 16 * 1024 {
            return Err(Rejection::Malformed.into());
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| Rejection::Malformed)?;
        if !self.algorithms.contains(&header.alg) {
            return Err(Rejection::Algorithm.into());
        }
        self.refresh(false).await?;
        let mut attempt = self.try_keys(token, &header, issuer, audience).await;
        if matches!(attempt, Err(Rejection::UnknownKey)) {
            self.refresh(true).await?;
            attempt = self.try_keys(token, &header, issuer, audience).await;
        }
        Ok(attempt?)
    }

    async fn try_keys(
        &self,
        token: &str,
        header: &jsonwebtoken::Header,
        issuer: &str,
        audience: &str,
    ) -> Result<Map<String, Value>, Rejection> {
        let cache = self.cache.read().await;
        let mut candidates = cache
            .keys
            .iter()
            .filter(|k| k.family.checks(header.alg))
            .filter(|k| header.kid.is_none() || k.kid == header.kid)
            .peekable();
        if candidates.peek().is_none() {
            return Err(Rejection::UnknownKey);
        }
        let mut v = Validation::new(header.alg);
        v.algorithms = vec![header.alg];
        v.set_issuer(&[issuer]);
        v.set_audience(&[audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.validate_nbf = true;
        v.leeway = 30;
        let mut last = Rejection::Signature;
        for k in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &k.key, &v) {
                Ok(data) => return claims_of(data.claims),
                Err(e) => {
                    last = Rejection::from(&e);
                    if last != Rejection::Signature {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }
}
