//! The gateway as a SMART App Launch 2.x client of a host system (a GP system, a hospital EPR
//! that launches the viewer). For one configured host, by its FHIR base URL (`iss`): read
//! `{iss}/.well-known/smart-configuration`, send the browser to the host's authorization
//! endpoint (code flow, PKCE S256 required, `aud` = `iss`, the host's `launch` when it launched
//! us), exchange the code for the host's tokens and launch context (`patient`), validate the
//! host's ID token against the JWKS its configuration names, and read a resource from `iss`
//! with the host's access token.
//!
//! Like the rest of this crate: no token, code or verifier is ever logged, and the host's
//! error text is never kept (only its OAuth error code).

use crate::keys::KeySet;
use crate::{
    acceptable_url, get_json, pinned_algorithms, pkce_challenge, post_token, random_token,
    read_capped, Authorization, OidcError,
};
use jsonwebtoken::Algorithm;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::RwLock;

/// One host system that may launch the viewer, as registered with it.
#[derive(Debug, Clone)]
pub struct HostRegistration {
    /// The host's FHIR base URL, exactly as it sends it as `iss`.
    pub iss: String,
    /// The gateway's client id at the host's authorization server.
    pub client_id: String,
    /// The client secret (`client_secret_basic`); `None`: a public client (PKCE only).
    pub client_secret: Option<SecretString>,
    /// Signature algorithms accepted for the host's ID tokens (asymmetric only).
    pub algorithms: Vec<String>,
}

/// The parts of a host's `.well-known/smart-configuration` the gateway uses.
#[derive(Debug, Clone, Deserialize)]
pub struct SmartConfiguration {
    /// The issuer of the host's ID tokens (required with the `sso-openid-connect` capability).
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// What the host's token endpoint answered: its tokens and the launch context.
#[derive(Debug, Deserialize)]
pub struct SmartTokens {
    pub access_token: SecretString,
    #[serde(default)]
    pub id_token: Option<String>,
    /// The launch's patient context, as sent (any JSON: whether it is a FHIR id is the
    /// caller's check).
    #[serde(default)]
    pub patient: Option<Value>,
    #[serde(default)]
    pub scope: Option<String>,
}

/// A SMART client of one host. Cheap to share behind an `Arc`.
pub struct SmartClient {
    host: HostRegistration,
    http: reqwest::Client,
    configuration: RwLock<Option<Arc<SmartConfiguration>>>,
    keys: KeySet,
}

impl std::fmt::Debug for SmartClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmartClient")
            .field("iss", &self.host.iss)
            .field("client_id", &self.host.client_id)
            .finish_non_exhaustive()
    }
}

impl SmartClient {
    /// A client for `host`; nothing is fetched until first use.
    pub fn new(host: HostRegistration, http: reqwest::Client) -> Result<Self, OidcError> {
        let algorithms: Vec<Algorithm> = pinned_algorithms(&host.algorithms)?;
        if !acceptable_url(&host.iss) {
            return Err(OidcError::Config(format!(
                "host `{}`: iss must be an https URL (http only on loopback)",
                host.iss
            )));
        }
        Ok(Self {
            keys: KeySet::new(http.clone(), algorithms),
            host,
            http,
            configuration: RwLock::new(None),
        })
    }

    pub fn host(&self) -> &HostRegistration {
        &self.host
    }

    fn iss(&self) -> &str {
        self.host.iss.trim_end_matches('/')
    }

    /// The host's SMART configuration, fetched once and kept. Refused unless it offers PKCE
    /// S256 (SMART 2.x requires it), names https endpoints, and names the issuer and JWKS of
    /// its ID tokens (the gateway reads the host's user from one).
    pub async fn configuration(&self) -> Result<Arc<SmartConfiguration>, OidcError> {
        if let Some(c) = self.configuration.read().await.clone() {
            return Ok(c);
        }
        let mut slot = self.configuration.write().await;
        if let Some(c) = slot.clone() {
            return Ok(c);
        }
        let url = format!("{}/.well-known/smart-configuration", self.iss());
        let body = get_json(&self.http, &url).await?;
        let c: SmartConfiguration = serde_json::from_slice(&body)
            .map_err(|_| OidcError::Provider("smart-configuration is not valid".into()))?;
        if !c
            .code_challenge_methods_supported
            .iter()
            .any(|m| m == "S256")
        {
            return Err(OidcError::Provider(
                "smart-configuration does not offer PKCE S256".into(),
            ));
        }
        let (Some(issuer), Some(jwks)) = (&c.issuer, &c.jwks_uri) else {
            return Err(OidcError::Provider(
                "smart-configuration names no issuer and JWKS for ID tokens".into(),
            ));
        };
        for u in [&c.authorization_endpoint, &c.token_endpoint, issuer, jwks] {
            if !acceptable_url(u) {
                return Err(OidcError::Provider(
                    "smart-configuration has an endpoint that is not https".into(),
                ));
            }
        }
        self.keys.set_uri(jwks).await;
        let c = Arc::new(c);
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Start the authorization at the host: fresh `state`, `nonce`, PKCE verifier, and the
    /// URL to send the browser to. `launch` is the host's launch value (EHR launch); `None`
    /// is a standalone launch, where the host asks the user for the patient.
    pub async fn begin(
        &self,
        launch: Option<&str>,
        redirect_url: &str,
        scope: &str,
    ) -> Result<Authorization, OidcError> {
        let c = self.configuration().await?;
        let (state, nonce, verifier) = (random_token(), random_token(), random_token());
        let mut url = url::Url::parse(&c.authorization_endpoint)
            .map_err(|_| OidcError::Provider("authorization endpoint is not a URL".into()))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.host.client_id)
            .append_pair("redirect_uri", redirect_url)
            .append_pair("scope", scope)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("aud", &self.host.iss)
            .append_pair("code_challenge", &pkce_challenge(&verifier))
            .append_pair("code_challenge_method", "S256");
        if let Some(l) = launch {
            url.query_pairs_mut().append_pair("launch", l);
        }
        Ok(Authorization {
            url: url.into(),
            state,
            nonce,
            verifier: verifier.into(),
        })
    }

    /// Exchange the host's code (with its verifier) for tokens and launch context.
    pub async fn exchange(
        &self,
        code: &str,
        verifier: &SecretString,
        redirect_url: &str,
    ) -> Result<SmartTokens, OidcError> {
        let c = self.configuration().await?;
        let body = post_token(
            &self.http,
            &c.token_endpoint,
            &self.host.client_id,
            self.host.client_secret.as_ref().into(),
            code,
            verifier,
            redirect_url,
        )
        .await?;
        serde_json::from_slice(&body)
            .map_err(|_| OidcError::Provider("token response is not valid".into()))
    }

    /// Validate the host's ID token (its keys, issuer, audience = our client id, expiry,
    /// nonce) and return its claims.
    pub async fn verify_id_token(
        &self,
        token: &str,
        nonce: &str,
    ) -> Result<Map<String, Value>, OidcError> {
        let c = self.configuration().await?;
        let issuer = c.issuer.as_deref().unwrap_or_default();
        let claims = self
            .keys
            .verify(token, issuer, &self.host.client_id)
            .await?;
        match claims.get("nonce").and_then(Value::as_str) {
            Some(n) if crate::constant_time_eq(n.as_bytes(), nonce.as_bytes()) => Ok(claims),
            _ => Err(crate::Rejection::Nonce.into()),
        }
    }

    /// `GET {iss}/{path}` with the host's access token: the resource's JSON bytes (capped).
    pub async fn read(
        &self,
        access_token: &SecretString,
        path: &str,
    ) -> Result<Vec<u8>, OidcError> {
        let resp = self
            .http
            .get(format!("{}/{path}", self.iss()))
            .bearer_auth(access_token.expose_secret())
            .header(reqwest::header::ACCEPT, "application/fhir+json")
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|_| OidcError::Provider("the host's FHIR server is unreachable".into()))?;
        if !resp.status().is_success() {
            return Err(OidcError::Provider(format!(
                "the host's FHIR server answered HTTP {}",
                resp.status().as_u16()
            )));
        }
        read_capped(resp).await
    }
}
