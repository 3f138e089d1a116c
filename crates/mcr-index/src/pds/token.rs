//! Application-restricted access to PDS as NHS England's API platform gives it ("Application-
//! restricted RESTful APIs - signed JWT authentication"): the client signs a short-lived JWT
//! with its private key (RS512; header `typ` JWT and `kid`; claims `iss` = `sub` = the
//! application's API key, `aud` = the token URL, a unique `jti`, `exp` under five minutes
//! ahead), POSTs it to the platform's OAuth 2.0 token endpoint (`grant_type=client_credentials`,
//! `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`,
//! `client_assertion=<the JWT>`) and sends the access token it gets as `Authorization: Bearer`
//! until shortly before it expires ([`RENEW_BEFORE_SECONDS`]); then it asks again.
//!
//! A refusal is an error in the platform's own words (`error`, `error_description`: they name
//! the fault in the JWT, never a patient), held for [`REFUSAL_HOLD_SECONDS`] so that a sync of
//! many records does not send the same refused JWT's successor once per record.
//!
//! Never logged: the private key, the signed JWT, the API key, the access token.

use super::{request_id, PdsError, PdsSettings};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcr_domain::Clock;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Mutex;

/// `client_assertion_type`: the JWT bearer assertion of RFC 7523.
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How far ahead a JWT's `exp` is set: under the platform's five minutes (it refuses more
/// than 310 seconds), leaving room for this machine's clock running ahead of the platform's.
pub const ASSERTION_SECONDS: i64 = 240;

/// A held token is renewed when less than this is left of it (or half its life, if shorter):
/// it is never sent near its expiry.
pub const RENEW_BEFORE_SECONDS: i64 = 60;

/// How long a refusal is answered from memory before the endpoint is asked again.
pub const REFUSAL_HOLD_SECONDS: i64 = 30;

/// The access tokens one client gets for its signed JWTs, and the one it holds.
pub struct AccessTokens {
    http: reqwest::Client,
    token_url: String,
    api_key: SecretString,
    key_id: String,
    key: EncodingKey,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    exchanges: AtomicU64,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens")
            .field("token_url", &self.token_url)
            .field("key_id", &self.key_id)
            .field("exchanges", &self.exchanges())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    held: Option<Held>,
    /// The last refusal and when it came.
    refused: Option<(DateTime<Utc>, PdsError)>,
}

#[derive(Debug)]
struct Held {
    token: SecretString,
    renew_at: DateTime<Utc>,
}

/// Read the private key at `settings.private_key`: PEM, RSA (PKCS#8 or PKCS#1), usable for
/// RS512 (ring takes 2048 to 8192 bits). The error names the file and what is wrong.
fn load_key(settings: &PdsSettings) -> Result<EncodingKey, PdsError> {
    let path = &settings.private_key;
    let where_ = path.display();
    let pem = std::fs::read(path)
        .map_err(|e| PdsError::Config(format!("private_key `{where_}` cannot be read: {e}")))?;
    let key = EncodingKey::from_rsa_pem(&pem).map_err(|_| {
        PdsError::Config(format!(
            "private_key `{where_}` is not an RSA private key in PEM (PKCS#8 `BEGIN PRIVATE KEY` or PKCS#1 `BEGIN RSA PRIVATE KEY`)"
        ))
    })?;
    jsonwebtoken::crypto::sign(b"usable?", &key, Algorithm::RS512).map_err(|_| {
        PdsError::Config(format!(
            "private_key `{where_}` cannot sign RS512 (an RSA key of 2048 to 8192 bits is needed)"
        ))
    })?;
    Ok(key)
}

impl AccessTokens {
    pub fn new(
        settings: &PdsSettings,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, PdsError> {
        Ok(Self {
            http,
            token_url: settings.token_url.clone(),
            api_key: settings.api_key.clone(),
            key_id: settings.key_id.clone(),
            key: load_key(settings)?,
            clock,
            state: Mutex::new(State::default()),
            exchanges: AtomicU64::new(0),
        })
    }

    /// Exchanges asked of the token endpoint so far (answered or not).
    pub fn exchanges(&self) -> u64 {
        self.exchanges.load(Ordering::Relaxed)
    }

    /// A new signed JWT for the token endpoint, as of the clock's now.
    pub fn client_assertion(&self) -> Result<SecretString, PdsError> {
        let mut header = Header::new(Algorithm::RS512);
        header.typ = Some("JWT".into());
        header.kid = Some(self.key_id.clone());
        let now = self.clock.now().timestamp();
        let claims = json!({
            "iss": self.api_key.expose_secret(),
            "sub": self.api_key.expose_secret(),
            "aud": self.token_url,
            "jti": request_id(self.exchanges()),
            "exp": now + ASSERTION_SECONDS,
        });
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map(SecretString::from)
            .map_err(|e| PdsError::Config(format!("the JWT could not be signed: {e}")))
    }

    /// The access token to send: the held one while it has more than the renewal margin left,
    /// else a new one from the token endpoint. A refusal in the last
    /// [`REFUSAL_HOLD_SECONDS`] is answered again without asking.
    pub async fn bearer(&self) -> Result<SecretString, PdsError> {
        let mut state = self.state.lock().await;
        let now = self.clock.now();
        if let Some(held) = state.held.as_ref().filter(|h| now < h.renew_at) {
            return Ok(held.token.clone());
        }
        if let Some((at, e)) = &state.refused {
            if (now - *at).num_seconds() < REFUSAL_HOLD_SECONDS {
                return Err(e.clone());
            }
        }
        state.held = None;
        match self.exchange(now).await {
            Ok(held) => {
                let token = held.token.clone();
                state.held = Some(held);
                state.refused = None;
                Ok(token)
            }
            Err(e) => {
                state.refused = Some((now, e.clone()));
                Err(e)
            }
        }
    }

    /// Drop the held token (PDS answered 401 to it): the next request gets a new one.
    pub async fn forget(&self) {
        self.state.lock().await.held = None;
    }

    async fn exchange(&self, now: DateTime<Utc>) -> Result<Held, PdsError> {
        let assertion = self.client_assertion()?;
        self.exchanges.fetch_add(1, Ordering::Relaxed);
        let answer = self
            .http
            .post(&self.token_url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", CLIENT_ASSERTION_TYPE),
                ("client_assertion", assertion.expose_secret()),
            ])
            .send()
            .await
            .map_err(|e| PdsError::TokenUnavailable(e.without_url().to_string()))?;
        let status = answer.status().as_u16();
        let body: Value = answer.json().await.map_err(|_| {
            PdsError::TokenUnavailable(format!("HTTP {status}, and the body is not JSON"))
        })?;
        if status != 200 {
            let text = |k: &str| {
                body.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("(not given)")
                    .to_owned()
            };
            return Err(PdsError::TokenRefused {
                status,
                error: text("error"),
                description: text("error_description"),
            });
        }
        read_token(&body, now)
    }
}

/// The token endpoint's answer: `access_token`, `expires_in` (seconds; the platform sends it
/// as a string, "599"), `token_type` Bearer.
fn read_token(body: &Value, now: DateTime<Utc>) -> Result<Held, PdsError> {
    let bad = |what: &str| PdsError::TokenUnavailable(format!("the answer is not a token: {what}"));
    let token = body
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("no access_token"))?;
    if !body
        .get("token_type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("bearer"))
    {
        return Err(bad("token_type is not Bearer"));
    }
    let expires_in = match body.get("expires_in") {
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(Value::Number(n)) => n.as_i64(),
        _ => None,
    }
    .filter(|s| *s > 0)
    .ok_or_else(|| bad("expires_in is not a positive number of seconds"))?;
    let margin = RENEW_BEFORE_SECONDS.min(expires_in / 2);
    Ok(Held {
        token: token.to_owned().into(),
        renew_at: now + chrono::Duration::seconds(expires_in - margin),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        "2026-12-05T09:00:00Z".parse().expect("time")
    }

    #[test]
    fn the_published_answer_is_a_token_renewed_a_minute_early() {
        // The platform's documented answer (expires_in as a string).
        let held = read_token(
            &json!({"access_token": "Sr5PGv19wTEHJdDr2wx2f7IGd0cw", "expires_in": "599",
                    "token_type": "Bearer", "issued_at": "1650000000000"}),
            at(),
        )
        .expect("token");
        assert_eq!(held.token.expose_secret(), "Sr5PGv19wTEHJdDr2wx2f7IGd0cw");
        assert_eq!((held.renew_at - at()).num_seconds(), 539);
        // A short-lived token is renewed at half its life.
        let held = read_token(
            &json!({"access_token": "t", "expires_in": 40, "token_type": "bearer"}),
            at(),
        )
        .expect("token");
        assert_eq!((held.renew_at - at()).num_seconds(), 20);
    }

    #[test]
    fn an_answer_that_is_not_a_token_says_what_is_missing() {
        for (body, says) in [
            (
                json!({"expires_in": "599", "token_type": "Bearer"}),
                "no access_token",
            ),
            (
                json!({"access_token": "t", "expires_in": "599", "token_type": "MAC"}),
                "not Bearer",
            ),
            (
                json!({"access_token": "t", "expires_in": "soon", "token_type": "Bearer"}),
                "expires_in",
            ),
        ] {
            let e = read_token(&body, at()).expect_err("refused");
            assert!(e.to_string().contains(says), "{e}");
        }
    }
}
