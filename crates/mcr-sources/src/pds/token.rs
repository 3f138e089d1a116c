//! The simulated platform's OAuth 2.0 token endpoint for application-restricted access
//! (`POST /oauth2/token`), checking a signed JWT as NHS England's API platform does
//! (github.com/NHSDigital/identity-service-api: `proxies/live/apiproxy/proxies/default.xml`,
//! flow `PostTokenClientCredentials`, and `resources/jsc/validate-client-assertion-claims.js`),
//! in the same order and with the same status, `error` and `error_description` for each fault:
//!
//! 1. `Content-Type` must be `application/x-www-form-urlencoded` (415);
//! 2. `grant_type` present (400 `invalid_request`) and `client_credentials` (400
//!    `unsupported_grant_type`); `client_assertion_type` the JWT bearer type; a
//!    `client_assertion` that decodes as a JWT;
//! 3. the decoded JWT (all 400 `invalid_request`): `alg` RS512, not expired, a `kid`, `typ`
//!    JWT, an integer `exp`, `iss` = `sub`, a string `jti` never used before by this
//!    application, `exp` at most 310 seconds ahead; the `jti` is then remembered;
//! 4. against the registered application (401): `iss` its API key, `kid` a key in its JWKS,
//!    the RS512 signature by that key (`public_key error`), `aud` this endpoint's URL.
//!
//! A token answered is `{"access_token", "expires_in": "599", "token_type": "Bearer",
//! "issued_at"}` (the proxy's `AssignMessage.ClientCredentialsGenerateTokenResponse`), good
//! for 599 seconds by the injected clock. Every error carries a `message_id`.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use mcr_domain::Clock;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The path of the token endpoint, as on `api.service.nhs.uk`.
pub const TOKEN_PATH: &str = "/oauth2/token";

/// `client_assertion_type`.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an access token lasts: the platform answers `expires_in` "599".
pub const TOKEN_SECONDS: i64 = 599;

/// The platform allows `exp` up to this far ahead (five minutes and ten seconds).
const MAX_EXP_AHEAD: i64 = 310;

/// The application the simulated platform knows: its API key and the public keys it
/// registered (a JWK Set of RSA keys, each with a `kid`).
#[derive(Debug, Clone)]
pub struct PdsAccess {
    pub api_key: String,
    pub jwks: Value,
    /// Whose now checks `exp` and expires tokens.
    pub clock: Arc<dyn Clock>,
}

/// The token endpoint's state: the application, the `jti`s seen, the tokens issued.
pub(super) struct TokenEndpoint {
    api_key: String,
    keys: Vec<(String, DecodingKey)>,
    clock: Arc<dyn Clock>,
    /// Set once the server's address is known: the `aud` a JWT must name.
    pub(super) url: String,
    jtis: Mutex<HashSet<String>>,
    issued: Mutex<HashMap<String, DateTime<Utc>>>,
    pub(super) exchanges: AtomicU64,
    pub(super) granted: AtomicU64,
}

impl TokenEndpoint {
    pub(super) fn new(access: PdsAccess, url: String) -> Result<Self, String> {
        let set: JwkSet = serde_json::from_value(access.jwks)
            .map_err(|e| format!("the JWKS is not a JWK Set: {e}"))?;
        let keys = set
            .keys
            .iter()
            .filter_map(|k| Some((k.common.key_id.clone()?, DecodingKey::from_jwk(k).ok()?)))
            .collect::<Vec<_>>();
        if keys.is_empty() {
            return Err("the JWKS holds no key with a kid".into());
        }
        Ok(Self {
            api_key: access.api_key,
            keys,
            clock: access.clock,
            url,
            jtis: Mutex::new(HashSet::new()),
            issued: Mutex::new(HashMap::new()),
            exchanges: AtomicU64::new(0),
            granted: AtomicU64::new(0),
        })
    }

    /// Whether `token` is one this endpoint issued and has not expired.
    pub(super) fn admits(&self, token: &str) -> bool {
        let now = self.clock.now();
        self.issued
            .lock()
            .map(|issued| issued.get(token).is_some_and(|until| now < *until))
            .unwrap_or(false)
    }

    /// `POST /oauth2/token`.
    pub(super) fn answer(&self, headers: &HeaderMap, body: &Bytes) -> Response {
        self.exchanges.fetch_add(1, Ordering::Relaxed);
        match self.check(headers, body) {
            Ok(()) => self.grant(),
            Err(refusal) => refusal.response(),
        }
    }

    fn check(&self, headers: &HeaderMap, body: &Bytes) -> Result<(), Refusal> {
        let form_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::trim);
        if form_type != Some("application/x-www-form-urlencoded") {
            return Err(Refusal(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request",
                "Content-Type header must be application/x-www-form-urlencoded",
            ));
        }
        let form: HashMap<String, String> =
            url::form_urlencoded::parse(body).into_owned().collect();
        let field = |k: &str| form.get(k).map(String::as_str);
        match field("grant_type") {
            None => return Err(bad("grant_type is missing")),
            Some("client_credentials") => {}
            Some(_) => {
                return Err(Refusal(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    "grant_type is invalid",
                ))
            }
        }
        if field("client_assertion_type") != Some(JWT_BEARER) {
            return Err(bad("Missing or invalid client_assertion_type - must be 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'"));
        }
        let jwt = field("client_assertion").ok_or_else(|| bad("Missing client_assertion"))?;
        let (header, claims, signed, signature) =
            decode(jwt).ok_or_else(|| bad("Malformed JWT in client_assertion"))?;
        self.check_claims(&header, &claims)?;
        self.check_application(&header, &claims, signed, signature)
    }

    /// The platform's claim checks, in its order (`validate-client-assertion-claims.js`).
    fn check_claims(
        &self,
        header: &Map<String, Value>,
        claims: &Map<String, Value>,
    ) -> Result<(), Refusal> {
        let now = self.clock.now().timestamp();
        let text =
            |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
        let exp = claims.get("exp").and_then(Value::as_f64);
        if text(header, "alg").as_deref() != Some("RS512") {
            return Err(bad("Invalid 'alg' header in client_assertion JWT - unsupported JWT algorithm - must be 'RS512'"));
        }
        if exp.is_some_and(|exp| (now as f64) > exp) {
            return Err(bad(
                "Invalid 'exp' claim in client_assertion JWT - JWT has expired",
            ));
        }
        if text(header, "kid").is_none_or(|k| k.is_empty()) {
            return Err(bad("Missing 'kid' header in client_assertion JWT"));
        }
        if !text(header, "typ").is_some_and(|t| t.eq_ignore_ascii_case("jwt")) {
            return Err(bad(
                "Invalid 'typ' header in client_assertion JWT - must be 'JWT'",
            ));
        }
        if claims
            .get("exp")
            .is_none_or(|v| v.is_null() || v == &json!(0) || v == &json!(""))
        {
            return Err(bad("Missing 'exp' claim in client_assertion JWT"));
        }
        let Some(exp) = exp else {
            return Err(bad(
                "Invalid 'exp' claim in client_assertion JWT - must be an integer",
            ));
        };
        let (iss, sub) = (text(claims, "iss"), text(claims, "sub"));
        if iss.as_deref().is_none_or(str::is_empty) || iss != sub {
            return Err(bad(
                "Missing or non-matching 'iss'/'sub' claims in client_assertion JWT",
            ));
        }
        let jti = match claims.get("jti") {
            None | Some(Value::Null) => return Err(bad("Missing 'jti' claim in client_assertion JWT")),
            Some(Value::String(s)) if s.is_empty() => {
                return Err(bad("Missing 'jti' claim in client_assertion JWT"))
            }
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(bad("Invalid 'jti' claim in client_assertion JWT - must be a unique string value such as a GUID")),
        };
        // Remembered per application (the platform keys its cache by `sub` and `jti`), before
        // the signature is checked, as the platform does.
        let key = format!("{}\u{0}{jti}", sub.unwrap_or_default());
        let fresh = self
            .jtis
            .lock()
            .map(|mut seen| seen.insert(key))
            .unwrap_or(false);
        if !fresh {
            return Err(bad("Non-unique 'jti' claim in client_assertion JWT"));
        }
        if exp - now as f64 > MAX_EXP_AHEAD as f64 {
            return Err(bad(
                "Invalid 'exp' claim in client_assertion JWT - more than 5 minutes in future",
            ));
        }
        Ok(())
    }

    /// The checks against the registered application: API key, key id, signature, audience.
    fn check_application(
        &self,
        header: &Map<String, Value>,
        claims: &Map<String, Value>,
        signed: &str,
        signature: &str,
    ) -> Result<(), Refusal> {
        let unauthorised =
            |error, description| Refusal(StatusCode::UNAUTHORIZED, error, description);
        if claims.get("iss").and_then(Value::as_str) != Some(self.api_key.as_str()) {
            return Err(unauthorised(
                "invalid_request",
                "Invalid 'iss'/'sub' claims in client_assertion JWT",
            ));
        }
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some((_, key)) = self.keys.iter().find(|(k, _)| k == kid) else {
            return Err(unauthorised(
                "invalid_request",
                "Invalid 'kid' header in client_assertion JWT - no matching public key",
            ));
        };
        let verified =
            jsonwebtoken::crypto::verify(signature, signed.as_bytes(), key, Algorithm::RS512)
                .unwrap_or(false);
        if !verified {
            return Err(unauthorised(
                "public_key error",
                "JWT signature verification failed",
            ));
        }
        if claims.get("aud").and_then(Value::as_str) != Some(self.url.as_str()) {
            return Err(unauthorised(
                "invalid_request",
                "Missing or invalid 'aud' claim in client_assertion JWT",
            ));
        }
        Ok(())
    }

    fn grant(&self) -> Response {
        let now = self.clock.now();
        let token: String = {
            use rand::Rng;
            rand::thread_rng()
                .sample_iter(rand::distributions::Alphanumeric)
                .take(28)
                .map(char::from)
                .collect()
        };
        if let Ok(mut issued) = self.issued.lock() {
            issued.retain(|_, until| now < *until);
            issued.insert(
                token.clone(),
                now + chrono::Duration::seconds(TOKEN_SECONDS),
            );
        }
        self.granted.fetch_add(1, Ordering::Relaxed);
        json_response(
            StatusCode::OK,
            &json!({
                "access_token": token,
                "expires_in": TOKEN_SECONDS.to_string(),
                "token_type": "Bearer",
                "issued_at": now.timestamp_millis().to_string(),
            }),
        )
    }
}

/// A JWT's header and claims (JSON objects), the signed part (`header.claims`) and the signature.
type Decoded<'a> = (Map<String, Value>, Map<String, Value>, &'a str, &'a str);

/// A JWT's header and claims (JSON objects), the signed part and the signature; `None` when
/// it is not three base64url parts of which the first two are JSON objects.
fn decode(jwt: &str) -> Option<Decoded<'_>> {
    let (signed, signature) = jwt.rsplit_once('.')?;
    let (header, claims) = signed.split_once('.')?;
    let object = |part: &str| match serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    };
    Some((object(header)?, object(claims)?, signed, signature))
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A refusal: the status, the platform's `error` and `error_description`.
struct Refusal(StatusCode, &'static str, &'static str);

impl Refusal {
    /// The platform's error body: `error`, `error_description`, and a `message_id`.
    fn response(&self) -> Response {
        let message_id = format!(
            "rrt-{}-a-sim-{}",
            rand::random::<u64>(),
            rand::random::<u32>()
        );
        json_response(
            self.0,
            &json!({"error": self.1, "error_description": self.2, "message_id": message_id}),
        )
    }
}

/// 400 `invalid_request`.
fn bad(description: &'static str) -> Refusal {
    Refusal(StatusCode::BAD_REQUEST, "invalid_request", description)
}
