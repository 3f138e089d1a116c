//! The issuer's signing keys from its JWKS, kept in memory and fetched again when a token
//! names a key id that is not there (key rotation), at most once per [`REFRESH_GAP`] so that
//! tokens with made-up key ids cannot make the gateway hammer the provider.

use crate::token::{claims_of, Rejection};
use crate::{get_json, OidcError};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
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
            AlgorithmParameters::OctetKeyPair(p) => {
                (p.curve == EllipticCurve::Ed25519).then_some(Family::Ed25519)
            }
            // A symmetric key in a JWKS is never used: only public keys verify.
            AlgorithmParameters::OctetKey(_) => None,
        }
    }

    fn checks(self, alg: Algorithm) -> bool {
        use Algorithm as A;
        match self {
            Family::Rsa => matches!(
                alg,
                A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512
            ),
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
    /// Shared, so a check takes the list and lets go of the lock before verifying.
    keys: Arc<KeyList>,
    fetched: Option<Instant>,
}

/// The most tokens remembered as checked; past it the list starts again.
const VERIFIED_MAX: usize = 10_000;

/// One fetch of the issuer's keys, and the tokens already checked with them.
///
/// An API client sends the same token with every request; its signature need be checked once.
/// A checked token is remembered by SHA-256 of issuer, audience and token, with its claims and
/// `exp`, and served only before `exp` (no leeway). It is remembered in the list it was checked
/// against, so when the keys are fetched again the new list starts with nothing remembered: a
/// token is never accepted on a key the issuer no longer publishes for longer than the key
/// list itself was kept, even by a check that was under way during the fetch.
#[derive(Default)]
struct KeyList {
    keys: Vec<Key>,
    verified: std::sync::Mutex<HashMap<[u8; 32], Verified>>,
}

struct Verified {
    claims: Map<String, Value>,
    exp: i64,
}

impl KeyList {
    fn new(keys: Vec<Key>) -> Self {
        Self {
            keys,
            verified: std::sync::Mutex::default(),
        }
    }

    /// The claims of a token checked with these keys and not yet expired.
    fn already_verified(&self, id: &[u8; 32]) -> Option<Map<String, Value>> {
        let verified = self
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let v = verified.get(id)?;
        (unix_now() < v.exp).then(|| v.claims.clone())
    }

    fn remember(&self, id: [u8; 32], claims: &Map<String, Value>) {
        // `exp` is a required claim; a token without a usable one is simply not remembered.
        let Some(exp) = claims.get("exp").and_then(Value::as_i64) else {
            return;
        };
        let mut verified = self
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if verified.len() >= VERIFIED_MAX {
            let now = unix_now();
            verified.retain(|_, v| now < v.exp);
            if verified.len() >= VERIFIED_MAX {
                verified.clear();
            }
        }
        verified.insert(
            id,
            Verified {
                claims: claims.clone(),
                exp,
            },
        );
    }
}

/// The issuer's public keys, and the tokens already checked with them.
pub struct KeySet {
    http: reqwest::Client,
    algorithms: Vec<Algorithm>,
    cache: RwLock<Cache>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl KeySet {
    pub(crate) fn new(http: reqwest::Client, algorithms: Vec<Algorithm>) -> Self {
        Self {
            http,
            algorithms,
            cache: RwLock::new(Cache::default()),
        }
    }

    pub(crate) async fn set_uri(&self, uri: &str) {
        self.cache.write().await.uri = Some(uri.to_owned());
    }

    async fn refresh(&self, force: bool) -> Result<(), OidcError> {
        // Every token check passes here: once the keys are fetched, a shared read says so,
        // without queueing every request behind one exclusive lock.
        if !force && self.cache.read().await.fetched.is_some() {
            return Ok(());
        }
        let mut cache = self.cache.write().await;
        if let Some(at) = cache.fetched {
            if !force || at.elapsed() < REFRESH_GAP {
                return Ok(());
            }
        }
        let uri = cache
            .uri
            .clone()
            .ok_or_else(|| OidcError::Provider("no JWKS location".into()))?;
        let body = get_json(&self.http, &uri).await?;
        let set: JwkSet = serde_json::from_slice(&body)
            .map_err(|_| OidcError::Provider("JWKS is not valid".into()))?;
        cache.keys = Arc::new(KeyList::new(
            set.keys
                .iter()
                .filter(|k| !matches!(k.common.public_key_use, Some(PublicKeyUse::Encryption)))
                .filter_map(|jwk| {
                    let family = Family::of(jwk)?;
                    let key = DecodingKey::from_jwk(jwk).ok()?;
                    Some(Key {
                        kid: jwk.common.key_id.clone(),
                        family,
                        key,
                    })
                })
                .collect(),
        ));
        cache.fetched = Some(Instant::now());
        tracing::debug!(
            keys = cache.keys.keys.len(),
            "identity provider keys fetched"
        );
        Ok(())
    }

    /// Check a token's signature with the issuer's keys and its `iss`, `aud`, `exp`, `nbf`;
    /// return its claims.
    pub(crate) async fn verify(
        &self,
        token: &str,
        issuer: &str,
        audience: &str,
    ) -> Result<Map<String, Value>, OidcError> {
        if token.len() > 16 * 1024 {
            return Err(Rejection::Malformed.into());
        }
        let id = token_id(issuer, audience, token);
        let current = Arc::clone(&self.cache.read().await.keys);
        if let Some(claims) = current.already_verified(&id) {
            return Ok(claims);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| Rejection::Malformed)?;
        if !self.algorithms.contains(&header.alg) {
            return Err(Rejection::Algorithm.into());
        }
        self.refresh(false).await?;
        let mut attempt = self.try_keys(token, &header, issuer, audience, id).await;
        if matches!(attempt, Err(Rejection::UnknownKey)) {
            self.refresh(true).await?;
            attempt = self.try_keys(token, &header, issuer, audience, id).await;
        }
        Ok(attempt?)
    }

    async fn try_keys(
        &self,
        token: &str,
        header: &jsonwebtoken::Header,
        issuer: &str,
        audience: &str,
        id: [u8; 32],
    ) -> Result<Map<String, Value>, Rejection> {
        // The key list is taken and the lock let go before the (comparatively slow) signature
        // checks, so checks run side by side and a refresh never waits behind them.
        let list = Arc::clone(&self.cache.read().await.keys);
        let mut candidates = list
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
                Ok(data) => {
                    let claims = claims_of(data.claims)?;
                    list.remember(id, &claims);
                    return Ok(claims);
                }
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

/// A checked token's key in [`KeySet`]'s memory: SHA-256 over issuer, audience and token,
/// each length-prefixed so no two different triples can run together into the same bytes.
fn token_id(issuer: &str, audience: &str, token: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [issuer, audience, token] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// Seconds since the Unix epoch, as `exp` counts them (the clock `jsonwebtoken` checks with).
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    //! The token boundary under fuzzing: whatever arrives as a bearer token (random text, a
    //! valid token with a byte changed, validly signed tokens with arbitrary claims), the
    //! verifier answers with a rejection or the exact claims that were signed, and never panics.
    //! Run more cases with `PROPTEST_CASES=100000 cargo test -p mcr-oidc --release fuzz_`.

    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use proptest::prelude::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    const ISS: &str = "https://idp.example.nhs.uk";
    const AUD: &str = "mcr-gateway";

    struct Fixture {
        keys: KeySet,
        signing: EncodingKey,
        rt: tokio::runtime::Runtime,
    }

    fn fixture() -> Fixture {
        let doc = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).expect("key");
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).expect("key");
        use base64::Engine;
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        let keys = KeySet::new(
            reqwest::Client::new(),
            vec![Algorithm::EdDSA, Algorithm::RS256],
        );
        {
            let mut cache = keys.cache.try_write().expect("fresh");
            cache.keys = Arc::new(KeyList::new(vec![Key {
                kid: Some("k1".into()),
                family: Family::Ed25519,
                key: DecodingKey::from_ed_components(&x).expect("key"),
            }]));
            // Fetched just now: no network is touched within REFRESH_GAP.
            cache.fetched = Some(Instant::now());
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        Fixture {
            keys,
            signing: EncodingKey::from_ed_der(doc.as_ref()),
            rt,
        }
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
    }

    fn sign(f: &Fixture, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some("k1".into());
        jsonwebtoken::encode(&h, claims, &f.signing).expect("sign")
    }

    fn good(n: i64) -> Value {
        serde_json::json!({"iss": ISS, "aud": AUD, "sub": "u", "exp": n + 600, "nbf": n - 1, "name": "N", "role": "clinician", "org": "RWH01"})
    }

    fn verify(f: &Fixture, token: &str) -> Result<Map<String, Value>, OidcError> {
        f.rt.block_on(f.keys.verify(token, ISS, AUD))
    }

    #[test]
    fn a_good_token_verifies() {
        let f = fixture();
        let claims = good(now());
        let got = verify(&f, &sign(&f, &claims)).expect("valid");
        assert_eq!(Value::Object(got), claims);
    }

    /// A token already checked is served from memory (same claims), until its `exp` and no
    /// longer; any other token, even one byte apart, is checked in full.
    #[test]
    fn a_checked_token_is_remembered_until_it_expires() {
        let f = fixture();
        let n = now();
        let mut claims = good(n);
        claims["exp"] = serde_json::json!(n + 2);
        let token = sign(&f, &claims);
        assert_eq!(Value::Object(verify(&f, &token).expect("valid")), claims);
        let other = sign(&f, &good(n));
        // The issuer's keys gone (and fetched just now, so not fetched again), what was
        // remembered moved to the new list: only what was already checked can pass.
        f.rt.block_on(async {
            let mut cache = f.keys.cache.write().await;
            let remembered = std::mem::take(
                &mut *cache
                    .keys
                    .verified
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            cache.keys = Arc::new(KeyList {
                keys: Vec::new(),
                verified: std::sync::Mutex::new(remembered),
            });
            cache.fetched = Some(Instant::now());
        });
        assert_eq!(
            Value::Object(verify(&f, &token).expect("remembered")),
            claims
        );
        assert!(verify(&f, &other).is_err(), "never checked: refused");
        let mut changed = token.clone().into_bytes();
        let last = changed.len() - 1;
        changed[last] = if changed[last] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(changed).expect("ascii");
        assert!(
            verify(&f, &changed).is_err(),
            "a byte apart: checked in full"
        );
        // Past `exp` the memory is not used (and the keys are gone, so it is refused).
        while unix_now() < n + 2 {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            verify(&f, &token).is_err(),
            "expired: not served from memory"
        );
    }

    /// An Ed25519 key as a JWK, and a token signer for it.
    fn ed_key(kid: &str) -> (Value, EncodingKey) {
        use base64::Engine;
        let doc = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).expect("key");
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).expect("key");
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"});
        (jwk, EncodingKey::from_ed_der(doc.as_ref()))
    }

    fn signed(kid: &str, key: &EncodingKey, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(kid.into());
        jsonwebtoken::encode(&h, claims, key).expect("sign")
    }

    /// Keys come from a real JWKS endpoint: many checks at once share them, and when the
    /// provider rotates to a new key, a token naming it fetches the new set (no sooner than
    /// `REFRESH_GAP` after the last fetch), after which the retired key's tokens fail.
    #[test]
    fn checks_share_the_keys_and_a_rotated_key_is_fetched() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (jwk1, key1) = ed_key("k1");
            let (jwk2, key2) = ed_key("k2");
            let served = Arc::new(std::sync::Mutex::new(serde_json::json!({"keys": [jwk1]})));
            let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let app = {
                let served = Arc::clone(&served);
                let fetches = Arc::clone(&fetches);
                axum::Router::new().route(
                    "/jwks",
                    axum::routing::get(move || {
                        fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let body = served.lock().expect("jwks").to_string();
                        async move { body }
                    }),
                )
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let url = format!("http://{}/jwks", listener.local_addr().expect("addr"));
            tokio::spawn(async move { axum::serve(listener, app).await });
            let keys = Arc::new(KeySet::new(reqwest::Client::new(), vec![Algorithm::EdDSA]));
            keys.set_uri(&url).await;

            let claims = good(now());
            let old = signed("k1", &key1, &claims);
            let checks: Vec<_> = (0..64)
                .map(|_| {
                    let keys = Arc::clone(&keys);
                    let token = old.clone();
                    tokio::spawn(async move { keys.verify(&token, ISS, AUD).await })
                })
                .collect();
            for c in checks {
                let got = c.await.expect("task").expect("valid");
                assert_eq!(Value::Object(got), claims);
            }
            assert_eq!(
                fetches.load(std::sync::atomic::Ordering::SeqCst),
                1,
                "fetched once"
            );

            *served.lock().expect("jwks") = serde_json::json!({"keys": [jwk2]});
            let new = signed("k2", &key2, &claims);
            // Within REFRESH_GAP of the last fetch the set is not fetched again.
            assert!(keys.verify(&new, ISS, AUD).await.is_err());
            assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
            keys.cache.write().await.fetched = Instant::now().checked_sub(REFRESH_GAP * 2);
            let got = keys
                .verify(&new, ISS, AUD)
                .await
                .expect("the new key is fetched");
            assert_eq!(Value::Object(got), claims);
            assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 2);
            assert!(
                keys.verify(&old, ISS, AUD).await.is_err(),
                "the retired key no longer verifies"
            );
        });
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3_000))]

        #[test]
        fn fuzz_random_text_is_rejected(s in ".{0,400}", dots in "[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,90}") {
            let f = fixture();
            prop_assert!(verify(&f, &s).is_err());
            prop_assert!(verify(&f, &dots).is_err());
        }

        #[test]
        fn fuzz_a_changed_byte_never_passes_as_other_claims(pos in any::<prop::sample::Index>(), byte in 0x21u8..0x7f) {
            let f = fixture();
            let claims = good(now());
            let token = sign(&f, &claims);
            let mut bytes = token.clone().into_bytes();
            let i = pos.index(bytes.len());
            bytes[i] = byte;
            let changed = String::from_utf8(bytes).expect("ascii");
            match verify(&f, &changed) {
                Err(_) => {}
                // Only a change the encoding ignores (spare bits of a final base64 character)
                // can pass, and then the claims are exactly those signed.
                Ok(got) => prop_assert_eq!(Value::Object(got), claims),
            }
        }

        #[test]
        fn fuzz_signed_claims_pass_only_when_every_check_does(
            iss in prop_oneof![Just(ISS.to_owned()), ".{0,30}"],
            aud in prop_oneof![Just(AUD.to_owned()), ".{0,30}"],
            exp_offset in -100_000i64..100_000,
            nbf_offset in -100_000i64..100_000,
        ) {
            let f = fixture();
            let n = now();
            let claims = serde_json::json!({"iss": iss, "aud": aud, "sub": "u", "exp": n + exp_offset, "nbf": n + nbf_offset});
            let ok = verify(&f, &sign(&f, &claims)).is_ok();
            let should = iss == ISS && aud == AUD && exp_offset > -30 && nbf_offset <= 30;
            // Within a second of the edges the clock may tick between signing and checking.
            let near_edge = (exp_offset + 30).abs() <= 1 || (nbf_offset - 30).abs() <= 1;
            prop_assert!(near_edge || ok == should, "iss={iss:?} aud={aud:?} exp={exp_offset} nbf={nbf_offset} ok={ok}");
        }
    }
}
