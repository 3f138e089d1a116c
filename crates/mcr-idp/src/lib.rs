//! Demo only: a small OpenID provider, so that the demo signs users in through exactly the code
//! path a real provider (NHS CIS2, an Entra tenant, Keycloak) would use. It serves discovery,
//! a JWKS with one Ed25519 key, an authorize endpoint whose sign-in page lists the demo users,
//! and a token endpoint that checks client authentication, the redirect URI and the PKCE
//! verifier, uses each code once, and issues standard ID and access tokens (EdDSA). A sign-in
//! here starts a single sign-on session (a cookie), so a later `prompt=none` request (a SMART
//! launch's sign-in) is answered without asking. Beside it, `/ehr` is the demo's host system
//! ([`ehr`]), a SMART EHR that launches the viewer.
//!
//! With [`Idp::with_nhs_login`] it also plays NHS login for the demo's patients: a client that
//! authenticates with a signed assertion (`private_key_jwt`) only, a sign-in page listing the
//! demo patients, and ID tokens carrying NHS login's `identity_proofing_level`, `vot`, `vtm`
//! and `nhs_number` (some patients at P9, one at P5).
//!
//! It is started by `mcr demo`, never by `mcr serve`. It must never be used as a real
//! identity provider: anyone who can reach its sign-in page can be any demo user.

mod authorization;
pub mod ehr;
mod key;
mod token;

pub(crate) use authorization::*;
pub(crate) use token::*;

pub use key::SigningKey;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use mcr_domain::Clock;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How long an authorization code may wait to be exchanged, in seconds.
const CODE_SECONDS: i64 = 60;
/// How long a sign-in here lasts (the single sign-on session), in seconds.
const SSO_SECONDS: i64 = 10 * 60 * 60;
/// The cookie holding the single sign-on session.
pub(crate) const SSO_COOKIE: &str = "mcr_idp_sso";

/// A relying party registered with the demo provider.
#[derive(Debug, Clone)]
pub struct ClientRegistration {
    pub client_id: String,
    pub client_secret: SecretString,
    pub redirect_uris: Vec<String>,
}

/// A user the sign-in page offers.
#[derive(Debug, Clone, Serialize)]
pub struct IdpUser {
    pub id: String,
    pub name: String,
    /// A role code, e.g. `clinician`.
    pub role: String,
    /// The ODS code of the user's organisation.
    pub org: String,
    /// What the sign-in page shows, e.g. "Dr Asha Patel — GP, Bridge Street Surgery".
    pub label: String,
    /// NHS CIS2 national RBAC role profiles, issued as `nhsid_nrbac_roles` in the ID token
    /// (with `acr` `AAL3_ANY` and `authentication_assurance_level` `3`, a smartcard-level
    /// sign-in); empty: none.
    pub role_profiles: Vec<IdpRoleProfile>,
}

/// One CIS2 role profile, in CIS2's claim shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdpRoleProfile {
    pub person_roleid: String,
    pub org_code: String,
    /// e.g. `S8000:G8000:R8000`.
    pub role_code: String,
    /// e.g. `"Clinical":"Clinical Provision":"Clinical Practitioner Access Role"`.
    pub role_name: String,
    pub activity_codes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct IdpConfig {
    /// The issuer URL: where this provider is reached, e.g. `http://127.0.0.1:8081`.
    pub issuer: String,
    /// The `aud` of access tokens (the gateway's API).
    pub api_audience: String,
    pub clients: Vec<ClientRegistration>,
    pub users: Vec<IdpUser>,
    /// Lifetime of issued tokens, in seconds.
    pub token_seconds: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    #[error("no demo user `{0}`")]
    UnknownUser(String),
    #[error("signing a token failed")]
    Signing,
}

struct PendingCode {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
    user: String,
    scope: String,
    expires: i64,
}

/// The relying party NHS login knows: it proves itself with assertions signed by the private
/// key whose public half is `public_key`.
#[derive(Clone)]
pub struct NhsLoginClient {
    pub client_id: String,
    pub redirect_uris: Vec<String>,
    pub public_key: jsonwebtoken::DecodingKey,
    pub alg: jsonwebtoken::Algorithm,
}

/// A demo patient with an NHS login account.
#[derive(Debug, Clone)]
pub struct IdpPatient {
    pub id: String,
    /// What the sign-in page shows.
    pub label: String,
    /// `P9`, `P5` or `P0`.
    pub level: String,
    pub nhs_number: Option<String>,
}

/// The provider. Share it behind an `Arc`.
pub struct Idp {
    /// Playing NHS login for the demo's patients, if at all.
    nhs_login: Option<(NhsLoginClient, Vec<IdpPatient>)>,
    config: IdpConfig,
    key: SigningKey,
    clock: Arc<dyn Clock>,
    codes: Mutex<HashMap<String, PendingCode>>,
    /// Single sign-on sessions: cookie value -> (user id, expiry).
    sso: Mutex<HashMap<String, (String, i64)>>,
    /// The demo host system served beside the provider (`/ehr`), if any.
    ehr: Option<ehr::Ehr>,
}

impl std::fmt::Debug for Idp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idp")
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

/// Claims of an access token for the gateway's API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub name: String,
    pub role: String,
    pub org: String,
    pub scope: String,
    pub client_id: String,
    pub jti: String,
    /// SMART launch context: the one patient a `patient/` scope is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// The demo's users sign in at smartcard level (CIS2's AAL3).
    #[serde(default)]
    pub authentication_assurance_level: String,
}

/// Scopes a demo token carries when nothing narrower is asked for.
pub const DEFAULT_API_SCOPES: &str = "user/*.read user/Consent.write";

impl Idp {
    pub fn new(config: IdpConfig, key: SigningKey, clock: Arc<dyn Clock>) -> Self {
        Self {
            config,
            key,
            clock,
            codes: Mutex::new(HashMap::new()),
            sso: Mutex::new(HashMap::new()),
            ehr: None,
            nhs_login: None,
        }
    }

    /// Play NHS login for these patients, with this client registered.
    pub fn with_nhs_login(mut self, client: NhsLoginClient, patients: Vec<IdpPatient>) -> Self {
        self.nhs_login = Some((client, patients));
        self
    }

    /// The NHS login client, when `id` is it.
    fn nhs_client(&self, id: &str) -> Option<&NhsLoginClient> {
        self.nhs_login
            .as_ref()
            .map(|(c, _)| c)
            .filter(|c| c.client_id == id)
    }

    fn patient(&self, id: &str) -> Option<&IdpPatient> {
        self.nhs_login
            .as_ref()
            .and_then(|(_, ps)| ps.iter().find(|p| p.id == id))
    }

    /// An NHS-login-shaped ID token for a patient.
    fn patient_id_token(
        &self,
        p: &IdpPatient,
        client_id: &str,
        nonce: Option<&str>,
    ) -> Result<String, IdpError> {
        let now = self.clock.now().timestamp();
        let mut claims = json!({
            "iss": self.config.issuer, "sub": p.id, "aud": client_id,
            "iat": now, "nbf": now, "exp": now + self.config.token_seconds, "auth_time": now,
            "identity_proofing_level": p.level,
            "vot": format!("{}.Cp.Cd", p.level),
            "vtm": "https://auth.sandpit.signin.nhs.uk/trustmark/auth.sandpit.signin.nhs.uk",
        });
        if let Some(obj) = claims.as_object_mut() {
            if let Some(n) = nonce {
                obj.insert("nonce".into(), json!(n));
            }
            if let Some(nhs) = &p.nhs_number {
                obj.insert("nhs_number".into(), json!(nhs));
            }
        }
        self.key.sign(&claims).map_err(|_| IdpError::Signing)
    }

    /// Serve the demo host system (`/ehr`) beside the provider.
    pub fn with_ehr(mut self, ehr: ehr::Ehr) -> Self {
        self.ehr = Some(ehr);
        self
    }

    /// Start a single sign-on session for `user`; returns the cookie to set.
    pub(crate) fn start_sso(&self, user: &str) -> String {
        let id = random();
        let now = self.clock.now().timestamp();
        if let Ok(mut sso) = self.sso.lock() {
            sso.retain(|_, (_, exp)| *exp > now);
            sso.insert(id.clone(), (user.to_owned(), now + SSO_SECONDS));
        }
        format!("{SSO_COOKIE}={id}; HttpOnly; SameSite=Lax; Path=/; Max-Age={SSO_SECONDS}")
    }

    /// The user of the request's single sign-on session, if it has a live one.
    pub(crate) fn sso_user(&self, headers: &HeaderMap) -> Option<String> {
        let id = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|h| h.to_str().ok())
            .flat_map(|h| h.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == SSO_COOKIE)
            .map(|(_, v)| v.to_owned())?;
        let now = self.clock.now().timestamp();
        let sso = self.sso.lock().ok()?;
        sso.get(&id)
            .filter(|(_, exp)| *exp > now)
            .map(|(u, _)| u.clone())
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    pub fn users(&self) -> &[IdpUser] {
        &self.config.users
    }

    /// An API access token for a demo user (what `mcr demo-token` prints).
    pub fn access_token(
        &self,
        user_id: &str,
        scope: &str,
        client_id: &str,
    ) -> Result<String, IdpError> {
        self.access_token_for(user_id, scope, client_id, None)
    }

    /// [`Idp::access_token`] with a SMART `patient` claim: the patient `patient/` scopes are
    /// bound to.
    pub fn access_token_for(
        &self,
        user_id: &str,
        scope: &str,
        client_id: &str,
        patient: Option<&str>,
    ) -> Result<String, IdpError> {
        let u = self
            .config
            .users
            .iter()
            .find(|u| u.id == user_id)
            .ok_or_else(|| IdpError::UnknownUser(user_id.to_owned()))?;
        let now = self.clock.now().timestamp();
        let claims = AccessClaims {
            iss: self.config.issuer.clone(),
            sub: u.id.clone(),
            aud: self.config.api_audience.clone(),
            iat: now,
            nbf: now,
            exp: now + self.config.token_seconds,
            name: u.name.clone(),
            role: u.role.clone(),
            org: u.org.clone(),
            scope: scope.to_owned(),
            client_id: client_id.to_owned(),
            jti: random(),
            patient: patient.map(str::to_owned),
            authentication_assurance_level: "3".into(),
        };
        self.key.sign(&claims).map_err(|_| IdpError::Signing)
    }

    fn id_token(
        &self,
        u: &IdpUser,
        client_id: &str,
        nonce: Option<&str>,
    ) -> Result<String, IdpError> {
        let now = self.clock.now().timestamp();
        let mut claims = json!({
            "iss": self.config.issuer, "sub": u.id, "aud": client_id,
            "iat": now, "nbf": now, "exp": now + self.config.token_seconds, "auth_time": now,
            "name": u.name, "role": u.role, "org": u.org,
            "acr": "AAL3_ANY", "authentication_assurance_level": "3",
        });
        if let (Some(n), Some(obj)) = (nonce, claims.as_object_mut()) {
            obj.insert("nonce".into(), json!(n));
        }
        if let (false, Some(obj)) = (u.role_profiles.is_empty(), claims.as_object_mut()) {
            obj.insert("nhsid_nrbac_roles".into(), json!(u.role_profiles));
        }
        self.key.sign(&claims).map_err(|_| IdpError::Signing)
    }

    fn client(&self, id: &str) -> Option<&ClientRegistration> {
        self.config.clients.iter().find(|c| c.client_id == id)
    }
}

fn random() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The provider's HTTP surface.
pub fn router(idp: Arc<Idp>) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/authorize", get(authorize_page).post(authorize))
        .route("/token", post(token))
        .merge(ehr::routes())
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
        .with_state(idp)
}

/// Serve the provider on `listener` until the task is aborted.
pub fn serve(idp: Arc<Idp>, listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
    let app = router(idp);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "demo identity provider stopped");
        }
    })
}

/// Escape text for HTML content and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_attribute_breakouts() {
        assert_eq!(
            escape("\"><script>'&"),
            "&quot;&gt;&lt;script&gt;&#39;&amp;"
        );
    }
}
