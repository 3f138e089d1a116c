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

pub mod ehr;
mod key;

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

async fn discovery(State(idp): State<Arc<Idp>>) -> Response {
    let iss = &idp.config.issuer;
    Json(json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "jwks_uri": format!("{iss}/jwks"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "scopes_supported": ["openid", "profile", "user/*.read", "patient/*.read", "user/Consent.write"],
        "claims_supported": ["sub", "name", "role", "org", "nonce", "nhsid_nrbac_roles", "acr", "authentication_assurance_level", "identity_proofing_level", "vot", "vtm", "nhs_number"],
    }))
    .into_response()
}

async fn jwks(State(idp): State<Arc<Idp>>) -> Response {
    Json(json!({ "keys": [idp.key.jwk()] })).into_response()
}

/// The authorization request's parameters (query on GET, form on POST).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
struct AuthParams {
    client_id: String,
    redirect_uri: String,
    response_type: String,
    scope: String,
    state: String,
    nonce: String,
    code_challenge: String,
    code_challenge_method: String,
    /// `none`: answer at once from the single sign-on session, or `login_required`.
    #[serde(skip_serializing)]
    prompt: String,
    #[serde(skip_serializing)]
    user: String,
}

/// A request the provider cannot even redirect back for: shown as a page.
fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign-in error</title></head>\
         <body><h1>Sign-in error</h1><p>{}</p></body></html>",
        escape(message)
    );
    (status, security_headers(), Html(body)).into_response()
}

fn security_headers() -> [(header::HeaderName, &'static str); 4] {
    [
        (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ]
}

/// Back to the client with an OAuth error.
fn redirect_error(p: &AuthParams, error: &str) -> Response {
    match url::Url::parse(&p.redirect_uri) {
        Ok(mut u) => {
            u.query_pairs_mut()
                .append_pair("error", error)
                .append_pair("state", &p.state);
            Redirect::to(u.as_str()).into_response()
        }
        Err(_) => error_page(StatusCode::BAD_REQUEST, "The sign-in request is not valid."),
    }
}

/// Check a request; `Err` is the response to give instead.
fn check(idp: &Idp, p: &AuthParams) -> Result<(), Box<Response>> {
    let registered = match (idp.client(&p.client_id), idp.nhs_client(&p.client_id)) {
        (Some(c), _) => &c.redirect_uris,
        (None, Some(c)) => &c.redirect_uris,
        (None, None) => {
            return Err(Box::new(error_page(
                StatusCode::BAD_REQUEST,
                "The application asking you to sign in is not registered.",
            )))
        }
    };
    if !registered.contains(&p.redirect_uri) {
        return Err(Box::new(error_page(
            StatusCode::BAD_REQUEST,
            "The application asked to send you to an address it has not registered.",
        )));
    }
    if p.response_type != "code" {
        return Err(Box::new(redirect_error(p, "unsupported_response_type")));
    }
    if !p.scope.split_ascii_whitespace().any(|s| s == "openid") {
        return Err(Box::new(redirect_error(p, "invalid_scope")));
    }
    // PKCE is required, and only S256.
    if p.code_challenge_method != "S256" || p.code_challenge.len() != 43 {
        return Err(Box::new(redirect_error(p, "invalid_request")));
    }
    if p.state.is_empty() || p.state.len() > 512 || p.nonce.len() > 512 {
        return Err(Box::new(redirect_error(p, "invalid_request")));
    }
    Ok(())
}

async fn authorize_page(
    State(idp): State<Arc<Idp>>,
    headers: HeaderMap,
    Query(p): Query<AuthParams>,
) -> Response {
    if let Err(r) = check(&idp, &p) {
        return *r;
    }
    let patients = idp.nhs_client(&p.client_id).is_some();
    if p.prompt == "none" && !patients {
        // Single sign-on: whoever signed in here already, without asking; nobody: say so.
        return match idp.sso_user(&headers) {
            Some(user) => issue_code(&idp, &p, &user),
            None => redirect_error(&p, "login_required"),
        };
    }
    let hidden: String = [
        ("client_id", &p.client_id),
        ("redirect_uri", &p.redirect_uri),
        ("response_type", &p.response_type),
        ("scope", &p.scope),
        ("state", &p.state),
        ("nonce", &p.nonce),
        ("code_challenge", &p.code_challenge),
        ("code_challenge_method", &p.code_challenge_method),
    ]
    .iter()
    .map(|(k, v)| {
        format!(
            "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
            escape(v)
        )
    })
    .collect();
    let choices: Vec<(&str, &str)> = match &idp.nhs_login {
        Some((_, ps)) if patients => ps
            .iter()
            .map(|p| (p.id.as_str(), p.label.as_str()))
            .collect(),
        _ => idp
            .config
            .users
            .iter()
            .map(|u| (u.id.as_str(), u.label.as_str()))
            .collect(),
    };
    let buttons: String = choices
        .iter()
        .map(|(id, label)| {
            format!(
                "<li><button type=\"submit\" name=\"user\" value=\"{}\">{}</button></li>",
                escape(id),
                escape(label)
            )
        })
        .collect();
    let (title, intro) = if patients {
        (
            "Demo NHS login",
            "This stands in for NHS login, where patients sign in. Choose who to sign in as.",
        )
    } else {
        (
            "Demo identity provider",
            "This stands in for your organisation's sign-in (such as NHS CIS2). Choose who to sign in as.",
        )
    };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}: sign in</title></head>\
         <body><h1>{title}</h1>\
         <p>{intro}</p>\
         <form action=\"/authorize\" method=\"post\">{hidden}<ul>{buttons}</ul></form></body></html>"
    );
    (StatusCode::OK, security_headers(), Html(body)).into_response()
}

async fn authorize(
    State(idp): State<Arc<Idp>>,
    headers: HeaderMap,
    Form(p): Form<AuthParams>,
) -> Response {
    // The sign-in form posts to itself: a post from anywhere else is refused.
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        if origin != "null" && !idp.config.issuer.starts_with(origin) {
            return error_page(
                StatusCode::FORBIDDEN,
                "This sign-in form was sent from another site.",
            );
        }
    }
    if let Err(r) = check(&idp, &p) {
        return *r;
    }
    if idp.nhs_client(&p.client_id).is_some() {
        // A patient: no single sign-on session (staff launches use it).
        if idp.patient(&p.user).is_none() {
            return error_page(StatusCode::BAD_REQUEST, "Choose who to sign in as.");
        }
        return issue_code(&idp, &p, &p.user);
    }
    if !idp.config.users.iter().any(|u| u.id == p.user) {
        return error_page(StatusCode::BAD_REQUEST, "Choose a user to sign in as.");
    }
    let mut resp = issue_code(&idp, &p, &p.user);
    if let Ok(v) = header::HeaderValue::from_str(&idp.start_sso(&p.user)) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// A code for `user`, and the browser back to the client with it.
fn issue_code(idp: &Idp, p: &AuthParams, user: &str) -> Response {
    let code = random();
    let pending = PendingCode {
        client_id: p.client_id.clone(),
        redirect_uri: p.redirect_uri.clone(),
        challenge: p.code_challenge.clone(),
        nonce: (!p.nonce.is_empty()).then(|| p.nonce.clone()),
        user: user.to_owned(),
        scope: p.scope.clone(),
        expires: idp.clock.now().timestamp() + CODE_SECONDS,
    };
    match idp.codes.lock() {
        Ok(mut codes) => {
            let now = idp.clock.now().timestamp();
            codes.retain(|_, c| c.expires > now);
            codes.insert(code.clone(), pending);
        }
        Err(_) => {
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Sign-in is not available.",
            )
        }
    }
    match url::Url::parse(&p.redirect_uri) {
        Ok(mut u) => {
            u.query_pairs_mut()
                .append_pair("code", &code)
                .append_pair("state", &p.state);
            Redirect::to(u.as_str()).into_response()
        }
        Err(_) => error_page(StatusCode::BAD_REQUEST, "The sign-in request is not valid."),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TokenForm {
    grant_type: String,
    code: String,
    redirect_uri: String,
    code_verifier: String,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_assertion_type: Option<String>,
    client_assertion: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "error": error })),
    )
        .into_response()
}

/// Client credentials from HTTP Basic (form-encoded parts, RFC 6749 §2.3.1) or the body.
fn client_credentials(headers: &HeaderMap, form: &TokenForm) -> Option<(String, String)> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, b64) = v.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let (id, secret) = raw.split_once(':')?;
        let dec = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
        };
        return Some((dec(id)?, dec(secret)?));
    }
    Some((form.client_id.clone()?, form.client_secret.clone()?))
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The client a signed assertion proves (`private_key_jwt`, RFC 7523): signed by the NHS login
/// client's key, `iss` = `sub` = its id, `aud` this token endpoint, unexpired.
fn asserted_client(idp: &Idp, form: &TokenForm) -> Option<String> {
    if form.client_assertion_type.as_deref()
        != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    {
        return None;
    }
    let (client, _) = idp.nhs_login.as_ref()?;
    let mut v = jsonwebtoken::Validation::new(client.alg);
    v.set_audience(&[format!("{}/token", idp.config.issuer)]);
    v.set_issuer(&[&client.client_id]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(
        form.client_assertion.as_deref()?,
        &client.public_key,
        &v,
    )
    .ok()?;
    (data.claims["sub"] == client.client_id.as_str()).then(|| client.client_id.clone())
}

/// The token endpoint for the NHS login client: its code, for one of the patients.
fn patient_token(idp: &Idp, client_id: &str, form: &TokenForm) -> Response {
    if form.grant_type != "authorization_code" {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let pending = match idp.codes.lock() {
        Ok(mut codes) => codes.remove(&form.code),
        Err(_) => return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
    };
    let Some(p) = pending else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(form.code_verifier.as_bytes()));
    if p.client_id != client_id
        || p.redirect_uri != form.redirect_uri
        || p.expires <= idp.clock.now().timestamp()
        || form.code_verifier.is_empty()
        || !same(&challenge, &p.challenge)
    {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let Some(patient) = idp.patient(&p.user) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    let Ok(id_token) = idp.patient_id_token(patient, client_id, p.nonce.as_deref()) else {
        return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
    };
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "token_type": "Bearer",
            "id_token": id_token,
            "access_token": random(),
            "expires_in": idp.config.token_seconds,
            "scope": p.scope,
        })),
    )
        .into_response()
}

async fn token(
    State(idp): State<Arc<Idp>>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    if form.client_assertion.is_some() {
        return match asserted_client(&idp, &form) {
            Some(client_id) => patient_token(&idp, &client_id, &form),
            None => oauth_error(StatusCode::UNAUTHORIZED, "invalid_client"),
        };
    }
    let Some((client_id, secret)) = client_credentials(&headers, &form) else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    let Some(client) = idp.client(&client_id) else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    if !same(client.client_secret.expose_secret(), &secret) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    if form.grant_type != "authorization_code" {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    // A code is used once: taken out before anything else is checked.
    let pending = match idp.codes.lock() {
        Ok(mut codes) => codes.remove(&form.code),
        Err(_) => return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
    };
    let Some(p) = pending else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    if p.client_id != client_id
        || p.redirect_uri != form.redirect_uri
        || p.expires <= idp.clock.now().timestamp()
    {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    if form.code_verifier.is_empty() {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(form.code_verifier.as_bytes()));
    if !same(&challenge, &p.challenge) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let Some(user) = idp.config.users.iter().find(|u| u.id == p.user) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    let api_scopes: Vec<&str> = p
        .scope
        .split_ascii_whitespace()
        .filter(|s| s.contains('/'))
        .collect();
    let api_scope = if api_scopes.is_empty() {
        DEFAULT_API_SCOPES.to_owned()
    } else {
        api_scopes.join(" ")
    };
    let (Ok(id_token), Ok(access_token)) = (
        idp.id_token(user, &client_id, p.nonce.as_deref()),
        idp.access_token(&user.id, &api_scope, &client_id),
    ) else {
        return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
    };
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "token_type": "Bearer",
            "id_token": id_token,
            "access_token": access_token,
            "expires_in": idp.config.token_seconds,
            "scope": p.scope,
        })),
    )
        .into_response()
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
