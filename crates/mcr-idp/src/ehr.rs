//! Demo only: a host system (a GP practice's clinical system, much reduced) that launches the
//! viewer with SMART App Launch 2.x, served beside the demo identity provider under `/ehr` and
//! sharing its single sign-on session, as a clinician's own system and CIS2 share a smartcard
//! sign-in. The clinician signs in at `/ehr`, sees their patient list, and "Open in My Care
//! Record" hands the gateway `iss` and a one-time `launch` (five minutes).
//!
//! As a SMART host it serves `{issuer}/ehr/fhir/.well-known/smart-configuration`, an
//! authorization endpoint (code flow, PKCE S256 required, `aud` must be its FHIR base, a
//! `launch` used once and in time; without one, a `launch/patient` request asks the
//! clinician to pick the patient: standalone launch), a token endpoint (client_secret_basic)
//! that answers the ID token (`sub`, `fhirUser`), an opaque access token and the `patient`
//! context, and `Patient/{id}` for that token's patient only. It must never be used as a real
//! system: anyone who can reach it can be any demo user.

use super::{
    client_credentials, error_page, escape, oauth_error, random, redirect_error, same,
    security_headers, AuthParams, ClientRegistration, Idp, TokenForm,
};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How long a launch may wait to be used, in seconds.
const LAUNCH_SECONDS: i64 = 300;

/// A patient on the demo host's list.
#[derive(Debug, Clone)]
pub struct EhrPatient {
    /// The host's own id for the patient (its FHIR `Patient.id`).
    pub id: String,
    pub nhs_number: String,
    pub name: String,
    /// What the list shows beside the name, e.g. "in every source".
    pub note: String,
}

struct Launch {
    patient: String,
    user: String,
    expires: i64,
    used: bool,
}

struct Code {
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
    user: String,
    patient: Option<String>,
    scope: String,
    expires: i64,
}

/// The demo host system.
pub struct Ehr {
    name: String,
    gateway_url: String,
    client: ClientRegistration,
    patients: Vec<EhrPatient>,
    launches: Mutex<HashMap<String, Launch>>,
    codes: Mutex<HashMap<String, Code>>,
    /// Access token -> (patient id, expiry).
    tokens: Mutex<HashMap<String, (Option<String>, i64)>>,
}

impl std::fmt::Debug for Ehr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ehr")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Ehr {
    /// A host named `name` that launches the gateway at `gateway_url`, registered with it as
    /// `client` (its redirect URI the gateway's `/launch/callback`).
    pub fn new(
        name: &str,
        gateway_url: &str,
        client: ClientRegistration,
        patients: Vec<EhrPatient>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            gateway_url: gateway_url.trim_end_matches('/').to_owned(),
            client,
            patients,
            launches: Mutex::new(HashMap::new()),
            codes: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        }
    }
}

/// The host's FHIR base URL (its `iss`) for a provider at `issuer`.
pub fn fhir_base(issuer: &str) -> String {
    format!("{}/ehr/fhir", issuer.trim_end_matches('/'))
}

/// The issuer of the host's ID tokens.
fn ehr_issuer(idp: &Idp) -> String {
    format!("{}/ehr", idp.config.issuer.trim_end_matches('/'))
}

pub(crate) fn routes() -> Router<Arc<Idp>> {
    Router::new()
        .route("/ehr", get(home))
        .route("/ehr/signin", get(signin_page).post(signin))
        .route("/ehr/open/{id}", get(open))
        .route(
            "/ehr/fhir/.well-known/smart-configuration",
            get(configuration),
        )
        .route("/ehr/authorize", get(authorize).post(pick_patient))
        .route("/ehr/token", post(token))
        .route("/ehr/fhir/Patient/{id}", get(patient))
}

fn page(title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><main><h1>{t}</h1>{body}</main></body></html>",
        t = escape(title)
    );
    (StatusCode::OK, security_headers(), Html(html)).into_response()
}

fn no_ehr() -> Response {
    error_page(StatusCode::NOT_FOUND, "No host system is served here.")
}

/// The host's home page: sign in, or the patient list.
async fn home(State(idp): State<Arc<Idp>>, headers: HeaderMap) -> Response {
    let Some(ehr) = idp.ehr.as_ref() else {
        return no_ehr();
    };
    let Some(user) = idp.sso_user(&headers) else {
        return page(
            &ehr.name,
            "<p>This stands in for a GP practice's own clinical system. Sign in as you would with your smartcard.</p>\
             <p><a href=\"/ehr/signin\">Sign in</a></p>",
        );
    };
    let who = idp
        .config
        .users
        .iter()
        .find(|u| u.id == user)
        .map_or(user.clone(), |u| u.name.clone());
    let rows: String = ehr
        .patients
        .iter()
        .map(|p| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><a href=\"/ehr/open/{}\">Open {} in My Care Record</a></td></tr>",
                escape(&p.name),
                escape(&p.nhs_number),
                escape(&p.note),
                escape(&p.id),
                escape(&p.name)
            )
        })
        .collect();
    page(
        &ehr.name,
        &format!(
            "<p>Signed in as {}.</p><table><caption>Today's patients</caption>\
             <thead><tr><th scope=\"col\">Name</th><th scope=\"col\">NHS number</th><th scope=\"col\">Note</th><th scope=\"col\">Shared care record</th></tr></thead>\
             <tbody>{rows}</tbody></table>",
            escape(&who)
        ),
    )
}

async fn signin_page(State(idp): State<Arc<Idp>>) -> Response {
    let buttons: String = idp
        .config
        .users
        .iter()
        .map(|u| {
            format!(
                "<li><button type=\"submit\" name=\"user\" value=\"{}\">{}</button></li>",
                escape(&u.id),
                escape(&u.label)
            )
        })
        .collect();
    page(
        "Sign in to your clinical system",
        &format!("<form action=\"/ehr/signin\" method=\"post\"><ul>{buttons}</ul></form>"),
    )
}

#[derive(Debug, Deserialize)]
struct SigninForm {
    user: String,
}

async fn signin(State(idp): State<Arc<Idp>>, Form(f): Form<SigninForm>) -> Response {
    if !idp.config.users.iter().any(|u| u.id == f.user) {
        return error_page(StatusCode::BAD_REQUEST, "Choose a user to sign in as.");
    }
    let mut resp = Redirect::to("/ehr").into_response();
    if let Ok(v) = header::HeaderValue::from_str(&idp.start_sso(&f.user)) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// "Open in My Care Record": a one-time launch, and the browser to the gateway with it.
async fn open(State(idp): State<Arc<Idp>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let Some(ehr) = idp.ehr.as_ref() else {
        return no_ehr();
    };
    let Some(user) = idp.sso_user(&headers) else {
        return Redirect::to("/ehr").into_response();
    };
    if !ehr.patients.iter().any(|p| p.id == id) {
        return error_page(StatusCode::NOT_FOUND, "No such patient on this system.");
    }
    let launch = random();
    let now = idp.clock.now().timestamp();
    if let Ok(mut l) = ehr.launches.lock() {
        l.retain(|_, x| x.expires > now);
        l.insert(
            launch.clone(),
            Launch {
                patient: id,
                user,
                expires: now + LAUNCH_SECONDS,
                used: false,
            },
        );
    }
    let mut url = match url::Url::parse(&format!("{}/launch", ehr.gateway_url)) {
        Ok(u) => u,
        Err(_) => {
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The viewer's address is not valid.",
            )
        }
    };
    url.query_pairs_mut()
        .append_pair("iss", &fhir_base(&idp.config.issuer))
        .append_pair("launch", &launch);
    Redirect::to(url.as_str()).into_response()
}

async fn configuration(State(idp): State<Arc<Idp>>) -> Response {
    let iss = idp.config.issuer.trim_end_matches('/');
    Json(json!({
        "issuer": ehr_issuer(&idp),
        "jwks_uri": format!("{iss}/jwks"),
        "authorization_endpoint": format!("{iss}/ehr/authorize"),
        "token_endpoint": format!("{iss}/ehr/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "grant_types_supported": ["authorization_code"],
        "response_types_supported": ["code"],
        "scopes_supported": ["openid", "fhirUser", "launch", "launch/patient", "patient/Patient.rs"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": ["launch-ehr", "launch-standalone", "client-confidential-symmetric",
            "context-ehr-patient", "context-standalone-patient", "sso-openid-connect", "permission-v2"],
    }))
    .into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SmartParams {
    #[serde(flatten)]
    oauth: AuthParams,
    aud: String,
    launch: String,
    patient: String,
}

/// Check a SMART authorization request; `Err` is the response to give instead.
fn check(idp: &Idp, ehr: &Ehr, p: &SmartParams) -> Result<(), Box<Response>> {
    let o = &p.oauth;
    if o.client_id != ehr.client.client_id || !ehr.client.redirect_uris.contains(&o.redirect_uri) {
        return Err(Box::new(error_page(
            StatusCode::BAD_REQUEST,
            "The application asking to open is not registered with this system.",
        )));
    }
    let scopes: Vec<&str> = o.scope.split_ascii_whitespace().collect();
    let ok = o.response_type == "code"
        && scopes.contains(&"openid")
        && o.code_challenge_method == "S256"
        && o.code_challenge.len() == 43
        && !o.state.is_empty()
        && o.state.len() <= 512
        && o.nonce.len() <= 512
        && p.aud == fhir_base(&idp.config.issuer);
    if !ok {
        return Err(Box::new(redirect_error(o, "invalid_request")));
    }
    Ok(())
}

async fn authorize(
    State(idp): State<Arc<Idp>>,
    headers: HeaderMap,
    Query(p): Query<SmartParams>,
) -> Response {
    let Some(ehr) = idp.ehr.as_ref() else {
        return no_ehr();
    };
    if let Err(r) = check(&idp, ehr, &p) {
        return *r;
    }
    let Some(user) = idp.sso_user(&headers) else {
        return redirect_error(&p.oauth, "login_required");
    };
    let now = idp.clock.now().timestamp();
    if !p.launch.is_empty() {
        // EHR launch: the launch must be this system's, unused, in time, and this user's.
        let patient = match ehr.launches.lock() {
            Ok(mut l) => match l.get_mut(&p.launch) {
                Some(x) if !x.used && x.expires > now && x.user == user => {
                    x.used = true;
                    Some(x.patient.clone())
                }
                _ => None,
            },
            Err(_) => None,
        };
        return match patient {
            Some(pt) => issue(&idp, ehr, &p, &user, Some(pt)),
            None => redirect_error(&p.oauth, "invalid_request"),
        };
    }
    if !p
        .oauth
        .scope
        .split_ascii_whitespace()
        .any(|s| s == "launch/patient")
    {
        return issue(&idp, ehr, &p, &user, None);
    }
    // Standalone launch: the clinician picks the patient here.
    let hidden: String = [
        ("client_id", &p.oauth.client_id),
        ("redirect_uri", &p.oauth.redirect_uri),
        ("response_type", &p.oauth.response_type),
        ("scope", &p.oauth.scope),
        ("state", &p.oauth.state),
        ("nonce", &p.oauth.nonce),
        ("code_challenge", &p.oauth.code_challenge),
        ("code_challenge_method", &p.oauth.code_challenge_method),
        ("aud", &p.aud),
    ]
    .iter()
    .map(|(k, v)| {
        format!(
            "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
            escape(v)
        )
    })
    .collect();
    let buttons: String = ehr
        .patients
        .iter()
        .map(|pt| {
            format!(
                "<li><button type=\"submit\" name=\"patient\" value=\"{}\">{} ({})</button></li>",
                escape(&pt.id),
                escape(&pt.name),
                escape(&pt.nhs_number)
            )
        })
        .collect();
    page(
        "Which patient?",
        &format!("<p>My Care Record asks which patient to open.</p><form action=\"/ehr/authorize\" method=\"post\">{hidden}<ul>{buttons}</ul></form>"),
    )
}

async fn pick_patient(
    State(idp): State<Arc<Idp>>,
    headers: HeaderMap,
    Form(p): Form<SmartParams>,
) -> Response {
    let Some(ehr) = idp.ehr.as_ref() else {
        return no_ehr();
    };
    if let Err(r) = check(&idp, ehr, &p) {
        return *r;
    }
    let Some(user) = idp.sso_user(&headers) else {
        return redirect_error(&p.oauth, "login_required");
    };
    if !ehr.patients.iter().any(|x| x.id == p.patient) {
        return redirect_error(&p.oauth, "access_denied");
    }
    issue(&idp, ehr, &p, &user, Some(p.patient.clone()))
}

fn issue(idp: &Idp, ehr: &Ehr, p: &SmartParams, user: &str, patient: Option<String>) -> Response {
    let code = random();
    let now = idp.clock.now().timestamp();
    if let Ok(mut codes) = ehr.codes.lock() {
        codes.retain(|_, c| c.expires > now);
        codes.insert(
            code.clone(),
            Code {
                redirect_uri: p.oauth.redirect_uri.clone(),
                challenge: p.oauth.code_challenge.clone(),
                nonce: (!p.oauth.nonce.is_empty()).then(|| p.oauth.nonce.clone()),
                user: user.to_owned(),
                patient,
                scope: p.oauth.scope.clone(),
                expires: now + super::CODE_SECONDS,
            },
        );
    }
    match url::Url::parse(&p.oauth.redirect_uri) {
        Ok(mut u) => {
            u.query_pairs_mut()
                .append_pair("code", &code)
                .append_pair("state", &p.oauth.state);
            Redirect::to(u.as_str()).into_response()
        }
        Err(_) => error_page(StatusCode::BAD_REQUEST, "The request is not valid."),
    }
}

async fn token(
    State(idp): State<Arc<Idp>>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let Some(ehr) = idp.ehr.as_ref() else {
        return oauth_error(StatusCode::NOT_FOUND, "invalid_request");
    };
    let Some((client_id, secret)) = client_credentials(&headers, &form) else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    if client_id != ehr.client.client_id || !same(ehr.client.client_secret.expose_secret(), &secret)
    {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    if form.grant_type != "authorization_code" {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let taken = ehr.codes.lock().ok().and_then(|mut c| c.remove(&form.code));
    let now = idp.clock.now().timestamp();
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(form.code_verifier.as_bytes()));
    let Some(c) = taken.filter(|c| {
        c.redirect_uri == form.redirect_uri
            && c.expires > now
            && !form.code_verifier.is_empty()
            && same(&challenge, &c.challenge)
    }) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    let fhir = fhir_base(&idp.config.issuer);
    let mut id_claims = json!({
        "iss": ehr_issuer(&idp), "sub": c.user, "aud": client_id,
        "iat": now, "nbf": now, "exp": now + idp.config.token_seconds, "auth_time": now,
        "fhirUser": format!("{fhir}/Practitioner/{}", c.user),
    });
    if let (Some(n), Some(obj)) = (&c.nonce, id_claims.as_object_mut()) {
        obj.insert("nonce".into(), json!(n));
    }
    let Ok(id_token) = idp.key.sign(&id_claims) else {
        return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
    };
    let access_token = random();
    if let Ok(mut t) = ehr.tokens.lock() {
        t.retain(|_, (_, exp)| *exp > now);
        t.insert(
            access_token.clone(),
            (c.patient.clone(), now + idp.config.token_seconds),
        );
    }
    let mut body = json!({
        "token_type": "Bearer",
        "access_token": access_token,
        "id_token": id_token,
        "expires_in": idp.config.token_seconds,
        "scope": c.scope,
    });
    if let (Some(pt), Some(obj)) = (&c.patient, body.as_object_mut()) {
        obj.insert("patient".into(), json!(pt));
    }
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Json(body),
    )
        .into_response()
}

/// `Patient/{id}`: only the patient the bearer token was issued for.
async fn patient(
    State(idp): State<Arc<Idp>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(ehr) = idp.ehr.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let now = idp.clock.now().timestamp();
    let allowed = ehr
        .tokens
        .lock()
        .ok()
        .and_then(|t| t.get(token).cloned())
        .filter(|(_, exp)| *exp > now)
        .and_then(|(p, _)| p);
    let outcome = |status: StatusCode, code: &str| {
        (
            status,
            [(header::CONTENT_TYPE, "application/fhir+json")],
            Json(json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code}]})),
        )
            .into_response()
    };
    if allowed.as_deref() != Some(id.as_str()) {
        return outcome(StatusCode::FORBIDDEN, "forbidden");
    }
    let Some(p) = ehr.patients.iter().find(|p| p.id == id) else {
        return outcome(StatusCode::NOT_FOUND, "not-found");
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/fhir+json")],
        Json(json!({
            "resourceType": "Patient",
            "id": p.id,
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": p.nhs_number}],
            "name": [{"text": p.name}],
        })),
    )
        .into_response()
}
