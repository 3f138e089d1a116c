//! The gateway as an OpenID Connect relying party. It reads the issuer's discovery document and
//! JWKS (cached, refreshed when a token names a key it has not seen), runs the authorization
//! code flow with PKCE (S256), `state` and `nonce`, and validates ID tokens and API access
//! tokens: signature with the issuer's keys only, algorithms pinned by configuration (never
//! `none`, never a shared-secret algorithm), issuer, audience, expiry, not-before, nonce.
//! Configured claim names map a token to a user id, name, role and organisation; with
//! `[auth.cis2]`, NHS CIS2's national RBAC claims give the user's role profiles instead
//! ([`cis2`]: read and checked here, mapped to roles by configuration).
//!
//! No cryptography is made here: signatures are `jsonwebtoken` (on `ring`), hashing `sha2`,
//! randomness the operating system's. This crate must never log a token, a code, a verifier
//! or the client secret.

pub mod assertion;
pub mod cis2;
mod keys;
pub mod nhs_login;
pub mod smart;
mod token;

pub use cis2::{Cis2Config, RbacError, RbacMapping, RoleProfile};
pub use keys::KeySet;
pub use nhs_login::{NhsLogin, NhsLoginConfig, PatientIdentity, ProofingLevel};
pub use token::{Identity, Rejection};

use base64::Engine;
use jsonwebtoken::Algorithm;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::RwLock;

/// The largest discovery document, JWKS or token response read from a provider.
const MAX_RESPONSE: usize = 256 * 1024;

/// How the gateway is registered with its OpenID provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer URL exactly as its discovery document states it.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// Where the provider sends the browser back; default `{base_url}/signin/callback`.
    #[serde(default)]
    pub redirect_url: Option<String>,
    /// The `aud` API access tokens must carry.
    #[serde(default = "default_audience")]
    pub api_audience: String,
    /// Signature algorithms accepted, e.g. `["RS256"]`; only asymmetric ones are allowed.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Scopes asked for at sign-in.
    #[serde(default = "default_scope")]
    pub scope: String,
    #[serde(default)]
    pub claims: ClaimNames,
    /// `[auth.cis2]`: the provider is NHS CIS2 (or issues its claims): staff sign in with
    /// national RBAC role profiles, choose one when they hold several, and need the
    /// configured authentication assurance level to view records.
    #[serde(default)]
    pub cis2: Option<Cis2Config>,
    /// `[auth.nhs_login]`: patients sign in to `/my-record` with NHS login.
    #[serde(default)]
    pub nhs_login: Option<NhsLoginConfig>,
}

/// Which claim holds each fact about the user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimNames {
    pub user_id: String,
    pub name: String,
    pub role: String,
    pub organisation: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            user_id: "sub".into(),
            name: "name".into(),
            role: "role".into(),
            organisation: "org".into(),
        }
    }
}

fn default_audience() -> String {
    "mcr-gateway".into()
}

fn default_algorithms() -> Vec<String> {
    vec!["EdDSA".into(), "ES256".into(), "RS256".into()]
}

fn default_scope() -> String {
    "openid profile".into()
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// Configuration that can never work (bad URL, a symmetric algorithm, …).
    #[error("OpenID Connect configuration: {0}")]
    Config(String),
    /// The provider could not be reached or answered nonsense.
    #[error("the identity provider is not answering properly: {0}")]
    Provider(String),
    /// The provider refused the code (OAuth error code only; descriptions are not kept).
    #[error("the identity provider refused the sign-in ({0})")]
    Refused(String),
    /// A token did not pass validation.
    #[error(transparent)]
    Token(#[from] Rejection),
}

/// The parts of the provider's discovery document the gateway uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
}

/// A sign-in under way: where to send the browser, and what to keep (server-side) until it
/// comes back.
#[derive(Debug)]
pub struct Authorization {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub verifier: SecretString,
}

/// What the token endpoint answered.
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    pub id_token: String,
    #[serde(default)]
    pub access_token: Option<String>,
}

impl std::fmt::Debug for RelyingParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelyingParty")
            .field("issuer", &self.config.issuer)
            .field("client_id", &self.config.client_id)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// The relying party. Cheap to share behind an `Arc`.
pub struct RelyingParty {
    config: OidcConfig,
    redirect_url: String,
    algorithms: Vec<Algorithm>,
    http: reqwest::Client,
    metadata: RwLock<Option<Arc<Metadata>>>,
    keys: KeySet,
}

/// Whether a URL may be used to talk to the provider: HTTPS, or HTTP on loopback only.
pub fn acceptable_url(u: &str) -> bool {
    let Ok(url) = url::Url::parse(u) else {
        return false;
    };
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => match url.host() {
            Some(url::Host::Ipv4(a)) => a.is_loopback(),
            Some(url::Host::Ipv6(a)) => a.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        },
        _ => false,
    }
}

/// The algorithms a configuration names, refusing any that is not asymmetric.
pub fn pinned_algorithms(names: &[String]) -> Result<Vec<Algorithm>, OidcError> {
    let mut out = Vec::new();
    for n in names {
        let alg: Algorithm = n
            .parse()
            .map_err(|_| OidcError::Config(format!("unknown algorithm `{n}`")))?;
        if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return Err(OidcError::Config(format!("`{n}` is a shared-secret algorithm; only the issuer's public keys may verify tokens")));
        }
        out.push(alg);
    }
    if out.is_empty() {
        return Err(OidcError::Config(
            "no signature algorithms configured".into(),
        ));
    }
    Ok(out)
}

impl RelyingParty {
    /// A relying party for `config`. Nothing is fetched until first use, so the gateway can
    /// start before its provider does.
    pub fn new(
        config: OidcConfig,
        base_url: &str,
        http: reqwest::Client,
    ) -> Result<Self, OidcError> {
        let algorithms = pinned_algorithms(&config.algorithms)?;
        if !acceptable_url(&config.issuer) {
            return Err(OidcError::Config(
                "the issuer must be an https URL (http only on loopback)".into(),
            ));
        }
        let redirect_url = config
            .redirect_url
            .clone()
            .unwrap_or_else(|| format!("{}/signin/callback", base_url.trim_end_matches('/')));
        if url::Url::parse(&redirect_url).is_err() {
            return Err(OidcError::Config("redirect_url is not a URL".into()));
        }
        Ok(Self {
            keys: KeySet::new(http.clone(), algorithms.clone()),
            config,
            redirect_url,
            algorithms,
            http,
            metadata: RwLock::new(None),
        })
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    pub fn redirect_url(&self) -> &str {
        &self.redirect_url
    }

    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// The discovery document, fetched once and kept.
    pub async fn metadata(&self) -> Result<Arc<Metadata>, OidcError> {
        if let Some(m) = self.metadata.read().await.clone() {
            return Ok(m);
        }
        let mut slot = self.metadata.write().await;
        if let Some(m) = slot.clone() {
            return Ok(m);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let body = get_json(&self.http, &url).await?;
        let m: Metadata = serde_json::from_slice(&body)
            .map_err(|_| OidcError::Provider("discovery document is not valid".into()))?;
        if m.issuer != self.config.issuer {
            return Err(OidcError::Provider(
                "discovery document names another issuer".into(),
            ));
        }
        for u in [&m.authorization_endpoint, &m.token_endpoint, &m.jwks_uri]
            .into_iter()
            .chain(m.userinfo_endpoint.as_ref())
        {
            if !acceptable_url(u) {
                return Err(OidcError::Provider(
                    "discovery document has an endpoint that is not https".into(),
                ));
            }
        }
        self.keys.set_uri(&m.jwks_uri).await;
        let m = Arc::new(m);
        *slot = Some(m.clone());
        Ok(m)
    }

    /// Start a sign-in: fresh `state`, `nonce` and PKCE verifier, and the URL to send the
    /// browser to.
    pub async fn begin(&self) -> Result<Authorization, OidcError> {
        self.begin_with(&SignInOptions::default()).await
    }

    /// Start a sign-in with options: another registered redirect URL, and `prompt` and
    /// `login_hint` (OpenID Connect Core §3.1.2.1), e.g. `prompt=none` to sign in only if the
    /// provider already has a session for the user (single sign-on), without asking them.
    pub async fn begin_with(&self, o: &SignInOptions<'_>) -> Result<Authorization, OidcError> {
        let m = self.metadata().await?;
        let redirect_url = o.redirect_url.unwrap_or(&self.redirect_url);
        let state = random_token();
        let nonce = random_token();
        let verifier = random_token();
        let challenge = pkce_challenge(&verifier);
        let mut url = url::Url::parse(&m.authorization_endpoint)
            .map_err(|_| OidcError::Provider("authorization endpoint is not a URL".into()))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", redirect_url)
            .append_pair("scope", &self.config.scope)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        if let Some(p) = o.prompt {
            url.query_pairs_mut().append_pair("prompt", p);
        }
        if let Some(h) = o.login_hint {
            url.query_pairs_mut().append_pair("login_hint", h);
        }
        Ok(Authorization {
            url: url.into(),
            state,
            nonce,
            verifier: verifier.into(),
        })
    }

    /// Exchange an authorization code (with its PKCE verifier) for tokens, authenticating as
    /// the client with HTTP Basic.
    pub async fn exchange(
        &self,
        code: &str,
        verifier: &SecretString,
    ) -> Result<TokenResponse, OidcError> {
        self.exchange_at(code, verifier, &self.redirect_url).await
    }

    /// [`Self::exchange`] for a sign-in started with another `redirect_url`
    /// ([`Self::begin_with`]).
    pub async fn exchange_at(
        &self,
        code: &str,
        verifier: &SecretString,
        redirect_url: &str,
    ) -> Result<TokenResponse, OidcError> {
        let m = self.metadata().await?;
        let body = post_token(
            &self.http,
            &m.token_endpoint,
            &self.config.client_id,
            ClientAuth::Secret(&self.config.client_secret),
            code,
            verifier,
            redirect_url,
        )
        .await?;
        serde_json::from_slice(&body)
            .map_err(|_| OidcError::Provider("token response is not valid".into()))
    }

    /// Validate an ID token from the token endpoint for the sign-in that sent `nonce`.
    pub async fn verify_id_token(&self, token: &str, nonce: &str) -> Result<Identity, OidcError> {
        Ok(self.verify_id_token_claims(token, nonce).await?.0)
    }

    /// [`Self::verify_id_token`], with every claim of the token as well (a SMART launch
    /// matches a host's user to one of them).
    pub async fn verify_id_token_claims(
        &self,
        token: &str,
        nonce: &str,
    ) -> Result<(Identity, serde_json::Map<String, serde_json::Value>), OidcError> {
        self.metadata().await?;
        let claims = self
            .keys
            .verify(token, &self.config.issuer, &self.config.client_id)
            .await?;
        match claims.get("nonce").and_then(|n| n.as_str()) {
            Some(n) if constant_time_eq(n.as_bytes(), nonce.as_bytes()) => {}
            _ => return Err(Rejection::Nonce.into()),
        }
        let identity = match &self.config.cis2 {
            Some(cis2) => token::cis2_identity(&claims, &self.config.claims, cis2)?,
            None => token::identity(&claims, &self.config.claims)?,
        };
        Ok((identity, claims))
    }

    /// Validate the ID token of a sign-in and, for CIS2, read the user's role profiles: from
    /// the ID token when it carries them, else from the provider's UserInfo endpoint (where
    /// CIS2 releases `nationalrbacaccess`), whose `sub` must be the ID token's.
    pub async fn sign_in_identity(
        &self,
        tokens: &TokenResponse,
        nonce: &str,
    ) -> Result<Identity, OidcError> {
        let Some(cis2) = &self.config.cis2 else {
            return self.verify_id_token(&tokens.id_token, nonce).await;
        };
        let m = self.metadata().await?;
        let mut claims = self
            .keys
            .verify(
                &tokens.id_token,
                &self.config.issuer,
                &self.config.client_id,
            )
            .await?;
        match claims.get("nonce").and_then(|n| n.as_str()) {
            Some(n) if constant_time_eq(n.as_bytes(), nonce.as_bytes()) => {}
            _ => return Err(Rejection::Nonce.into()),
        }
        if !claims.contains_key(&cis2.roles_claim) {
            if let (Some(url), Some(access)) = (&m.userinfo_endpoint, &tokens.access_token) {
                let info = self.userinfo(url, access).await?;
                if info.get("sub") != claims.get("sub") {
                    return Err(OidcError::Provider(
                        "UserInfo is about another user than the ID token".into(),
                    ));
                }
                for (k, v) in info {
                    claims.entry(k).or_insert(v);
                }
            }
        }
        Ok(token::cis2_identity(&claims, &self.config.claims, cis2)?)
    }

    async fn userinfo(
        &self,
        url: &str,
        access_token: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, OidcError> {
        let resp = self
            .http
            .get(url)
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|_| OidcError::Provider("UserInfo endpoint unreachable".into()))?;
        if !resp.status().is_success() {
            return Err(OidcError::Provider(format!(
                "UserInfo answered HTTP {}",
                resp.status().as_u16()
            )));
        }
        let body = read_capped(resp).await?;
        serde_json::from_slice(&body)
            .map_err(|_| OidcError::Provider("UserInfo is not a JSON object".into()))
    }

    /// Validate an API caller's bearer access token.
    pub async fn verify_access_token(&self, token: &str) -> Result<Identity, OidcError> {
        self.metadata().await?;
        let claims = self
            .keys
            .verify(token, &self.config.issuer, &self.config.api_audience)
            .await?;
        Ok(token::identity(&claims, &self.config.claims)?)
    }
}

/// Options for [`RelyingParty::begin_with`].
#[derive(Debug, Default, Clone, Copy)]
pub struct SignInOptions<'a> {
    /// A redirect URL registered with the provider other than the default one.
    pub redirect_url: Option<&'a str>,
    pub prompt: Option<&'a str>,
    pub login_hint: Option<&'a str>,
}

/// How a client proves itself at a token endpoint.
#[derive(Clone, Copy)]
pub(crate) enum ClientAuth<'a> {
    /// HTTP Basic with the client's secret (`client_secret_basic`).
    Secret(&'a SecretString),
    /// A public client: its `client_id` in the form.
    Public,
    /// A signed client assertion (`private_key_jwt`, RFC 7523 §2.2).
    Assertion(&'a str),
}

impl<'a> From<Option<&'a SecretString>> for ClientAuth<'a> {
    fn from(s: Option<&'a SecretString>) -> Self {
        s.map_or(ClientAuth::Public, ClientAuth::Secret)
    }
}

/// An authorization code grant at `endpoint` (RFC 6749 §4.1.3), the client authenticated as
/// `auth` says. The answer's body, or the provider's OAuth error code only (its text is not
/// ours to echo).
pub(crate) async fn post_token(
    http: &reqwest::Client,
    endpoint: &str,
    client_id: &str,
    auth: ClientAuth<'_>,
    code: &str,
    verifier: &SecretString,
    redirect_url: &str,
) -> Result<Vec<u8>, OidcError> {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_url),
        ("code_verifier", verifier.expose_secret()),
    ];
    let mut req = http.post(endpoint);
    match auth {
        ClientAuth::Secret(secret) => {
            req = req.basic_auth(
                form_encode(client_id),
                Some(form_encode(secret.expose_secret())),
            );
        }
        ClientAuth::Public => form.push(("client_id", client_id)),
        ClientAuth::Assertion(jwt) => {
            form.push(("client_id", client_id));
            form.push((
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ));
            form.push(("client_assertion", jwt));
        }
    }
    let resp = req
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&form)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|_| OidcError::Provider("token endpoint unreachable".into()))?;
    let status = resp.status();
    let body = read_capped(resp).await?;
    if !status.is_success() {
        #[derive(Deserialize)]
        struct OAuthError {
            error: String,
        }
        let code = serde_json::from_slice::<OAuthError>(&body)
            .map(|e| e.error)
            .unwrap_or_else(|_| format!("HTTP {}", status.as_u16()));
        return Err(OidcError::Refused(oauth_code(&code)));
    }
    Ok(body)
}

/// An OAuth error code as kept: short and plain.
pub fn oauth_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .collect()
}

/// `application/x-www-form-urlencoded` for client credentials in HTTP Basic (RFC 6749 §2.3.1).
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// 32 random bytes from the operating system, base64url: states, nonces, verifiers, session ids.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The S256 code challenge of a verifier (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Equality that takes the same time wherever the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) async fn get_json(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, OidcError> {
    let resp = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|_| OidcError::Provider("unreachable".into()))?;
    if !resp.status().is_success() {
        return Err(OidcError::Provider(format!(
            "HTTP {}",
            resp.status().as_u16()
        )));
    }
    read_capped(resp).await
}

async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, OidcError> {
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|_| OidcError::Provider("response cut short".into()))?
    {
        if out.len() + chunk.len() > MAX_RESPONSE {
            return Err(OidcError::Provider("response too large".into()));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn only_asymmetric_algorithms_may_be_pinned() {
        assert!(pinned_algorithms(&["RS256".into(), "EdDSA".into()]).is_ok());
        assert!(pinned_algorithms(&["HS256".into()]).is_err());
        assert!(pinned_algorithms(&["none".into()]).is_err());
        assert!(pinned_algorithms(&[]).is_err());
    }

    #[test]
    fn provider_urls_must_be_https_except_on_loopback() {
        assert!(acceptable_url("https://idp.example.nhs.uk"));
        assert!(acceptable_url("http://127.0.0.1:9000"));
        assert!(acceptable_url("http://localhost:9000/x"));
        assert!(!acceptable_url("http://idp.example.nhs.uk"));
        assert!(!acceptable_url("ftp://127.0.0.1"));
        assert!(!acceptable_url("not a url"));
    }

    #[test]
    fn random_tokens_differ_and_are_long() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(constant_time_eq(a.as_bytes(), a.as_bytes()));
        assert!(!constant_time_eq(a.as_bytes(), b.as_bytes()));
    }
}
