//! SMART App Launch 2.x: a host system (a GP system, a hospital EPR) opens a patient's record
//! in the viewer, with no second sign-in and no search.
//!
//! 1. `GET /launch?iss=…&launch=…` (EHR launch) or `POST /launch/standalone` (the clinician
//!    starts here and picks a host; the host asks for the patient). The `iss` must be a
//!    configured host ([`crate::launch::Launcher`]); a `launch` is used once, on any gateway.
//! 2. The region's sign-in first, without a prompt (`prompt=none`): the clinician signed in to
//!    the region's provider (CIS2) when they opened their own system, so it answers at once.
//!    Only if it has no session does it ask (its own sign-in page, never the gateway's).
//!    Back at `GET /launch/signin/callback`: the region's ID token is checked as at any
//!    sign-in and its user must have a role the gateway knows.
//! 3. The host's authorization (code flow, PKCE S256, `launch openid fhirUser`), back at
//!    `GET /launch/callback`: the host's ID token is checked with the host's keys, its user
//!    must match the region's by the host's configured rule, the launch's `patient` must be a
//!    FHIR id, and the host's `Patient` (read from `iss` with its access token) must name one
//!    valid NHS number.
//! 4. A page session starts (as at any sign-in) and the browser goes to that patient's record
//!    page, where the view takes every step any view takes (relationship, permission,
//!    objection, audit): a launch opens the page, it never decides who may see it.
//!
//! Between the steps, what is kept (in the store's sign-ins in progress, under a cookie
//! limited to `/launch`, taken once) is the host, the launch value, state, nonces, verifiers
//! and the region's ID token: never the patient, who is learned only in the last step. Every
//! refusal is audited (`authenticate:launch`, with its reason) and said in a sentence.

use super::session::{clear, secure, session_cookie, too_many, with_cookie, CallbackQuery};
use super::{error_page, render, Layout};
use crate::auth::{audit_refusal, cookie, correlation_id, SESSION_COOKIE};
use crate::launch::{fhir_id, nhs_number_of, Host};
use crate::sessions::LOGIN_SECONDS;
use crate::AppState;
use askama::Template;
use axum::extract::{Form, Query, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use mcr_domain::{NhsNumber, Principal};
use mcr_gateway::AuthChannel;
use mcr_oidc::{Identity, OidcError, SignInOptions};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// The cookie holding a launch in progress.
const LAUNCH_COOKIE: &str = "mcr_launch";
/// How long a host's `launch` value stays used (a replay within it is refused; hosts expire
/// their launch values well before).
const LAUNCH_USED: Duration = Duration::from_secs(24 * 60 * 60);
/// Scopes asked of a host: an EHR launch, and a standalone one.
const EHR_SCOPE: &str = "launch openid fhirUser patient/Patient.rs";
const STANDALONE_SCOPE: &str = "launch/patient openid fhirUser patient/Patient.rs";
/// The region provider's answers to `prompt=none` that mean "ask the user".
const ASK_THE_USER: [&str; 4] = [
    "login_required",
    "interaction_required",
    "consent_required",
    "account_selection_required",
];

fn launch_cookie(id: &str, secure: &str) -> String {
    format!(
        "{LAUNCH_COOKIE}={id}; HttpOnly; SameSite=Lax; Path=/launch; Max-Age={LOGIN_SECONDS}{secure}"
    )
}

/// Why a launch stops: the reason for the audit trail and the log, and the sentence the user
/// reads.
struct Refusal {
    reason: &'static str,
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn new(reason: &'static str, status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            reason,
            status,
            message: message.into(),
        }
    }

    /// A part the launch needs did not answer: `what` is not available.
    fn unavailable(reason: &'static str, what: &str) -> Self {
        Self::new(
            reason,
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{what} is not available. Try again shortly"),
        )
    }

    /// The store (used launches, sign-ins in progress, sessions) did not answer.
    fn store_unavailable() -> Self {
        Self::unavailable("store-unavailable", "Opening records from your system")
    }

    /// The region's provider did not answer.
    fn provider_unavailable() -> Self {
        Self::unavailable("provider-unavailable", "The sign-in service")
    }

    /// The refused launch: audited (with the user when the region has said who), logged by
    /// reason, and shown as a page with the sentence; the launch in progress is forgotten.
    async fn answer(self, state: &AppState, parts: &Parts, user: Option<&Principal>) -> Response {
        tracing::info!(reason = self.reason, "launch refused");
        audit_refusal(
            state,
            &correlation_id(parts),
            AuthChannel::Launch,
            self.reason,
            user,
        )
        .await;
        let resp = error_page(Layout::staff_anonymous(), self.status, &self.message);
        with_cookie(resp, &clear(LAUNCH_COOKIE, "/launch"))
    }
}

/// The region's provider refused its ID token (said with `message`) or did not answer (logged
/// as `failed`).
fn provider_refusal(e: OidcError, message: &str, failed: &str) -> Refusal {
    match e {
        OidcError::Token(r) => Refusal::new(r.code(), StatusCode::UNAUTHORIZED, message),
        e => {
            tracing::warn!(error = %e, "{failed}");
            Refusal::provider_unavailable()
        }
    }
}

/// The host did not answer: logged as `failed`, said as its `part` (its sign-in, its patient
/// record) not being available.
fn host_unavailable(host: &Host, part: &str, e: OidcError, failed: &str) -> Refusal {
    tracing::warn!(error = %e, host = %host.name, "{failed}");
    Refusal::unavailable("host-unavailable", &format!("{}'s {part}", host.name))
}

/// The host would not confirm the launch (its answer an error, or its code refused).
fn refused_by_host(host: &Host) -> Refusal {
    Refusal::new(
        "launch-refused-by-host",
        StatusCode::UNAUTHORIZED,
        format!("{} did not confirm this launch: it may have expired or been used already. Open the record again from {}", host.name, host.name),
    )
}

/// The user's principal, if the identity's role is one the gateway knows.
fn principal_of(state: &AppState, identity: &Identity) -> Result<Principal, Refusal> {
    state.auth.principal(identity).map_err(|e| {
        Refusal::new(
            e.code(),
            StatusCode::FORBIDDEN,
            "Your account's role cannot use My Care Record",
        )
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct LaunchQuery {
    iss: Option<String>,
    launch: Option<String>,
}

/// `GET /launch`: an EHR launch from a host system.
pub(crate) async fn ehr_launch(
    State(state): State<AppState>,
    Query(q): Query<LaunchQuery>,
    req: Request,
) -> Response {
    let (parts, _) = req.into_parts();
    if let Err(e) = crate::security::limit_signin(&state, &parts).await {
        return too_many(e);
    }
    match launch_once(&state, q).await {
        Ok((host, launch)) => region_signin(&state, &parts, host, Some(&launch), false).await,
        Err(r) => r.answer(&state, &parts, None).await,
    }
}

/// The configured host an EHR launch came from (by its index) and its `launch` value, used
/// once.
async fn launch_once(state: &AppState, q: LaunchQuery) -> Result<(usize, String), Refusal> {
    let iss = q.iss.unwrap_or_default();
    let Some((host_index, host)) = state.launcher.by_iss(&iss) else {
        return Err(Refusal::new(
            "launch-unknown-host",
            StatusCode::BAD_REQUEST,
            "The system that opened My Care Record is not one allowed to. Ask your IT service desk to register it, or sign in to My Care Record and find the patient",
        ));
    };
    let launch = q.launch.unwrap_or_default();
    if launch.is_empty() || launch.len() > 1024 {
        return Err(Refusal::new(
            "launch-missing",
            StatusCode::BAD_REQUEST,
            format!("{} opened My Care Record without saying which launch this is. Open the record again from {}", host.name, host.name),
        ));
    }
    match state
        .sessions
        .use_launch_once(&iss, &launch, LAUNCH_USED)
        .await
    {
        Some(true) => Ok((host_index, launch)),
        Some(false) => Err(Refusal::new(
            "launch-replayed",
            StatusCode::BAD_REQUEST,
            format!(
                "This launch from {} has already been used. Open the record again from {}",
                host.name, host.name
            ),
        )),
        None => Err(Refusal::store_unavailable()),
    }
}

#[derive(Template)]
#[template(path = "launch.html")]
pub(crate) struct StandalonePage {
    pub layout: Layout,
    pub hosts: Vec<(usize, String)>,
}

/// `GET /launch/standalone`: pick the system to open a patient from.
pub(crate) async fn standalone_page(State(state): State<AppState>) -> Response {
    render(
        StatusCode::OK,
        &StandalonePage {
            layout: Layout::staff_anonymous(),
            hosts: state.launcher.names().into_iter().enumerate().collect(),
        },
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct StandaloneForm {
    host: usize,
}

/// `POST /launch/standalone`: a standalone launch with the chosen host.
pub(crate) async fn standalone(
    State(state): State<AppState>,
    parts: Parts,
    Form(f): Form<StandaloneForm>,
) -> Response {
    if let Err(e) = crate::security::limit_signin(&state, &parts).await {
        return too_many(e);
    }
    if state.launcher.host(f.host).is_none() {
        return Refusal::new(
            "launch-unknown-host",
            StatusCode::BAD_REQUEST,
            "Choose one of the systems listed",
        )
        .answer(&state, &parts, None)
        .await;
    }
    region_signin(&state, &parts, f.host, None, false).await
}

/// Send the browser to the region's provider: without a prompt first, then (`interactive`)
/// with its own sign-in page if it had no session.
async fn region_signin(
    state: &AppState,
    parts: &Parts,
    host: usize,
    launch: Option<&str>,
    interactive: bool,
) -> Response {
    let rp = state.auth.relying_party();
    let auth = match rp
        .begin_with(&SignInOptions {
            redirect_url: Some(&state.launcher.signin_redirect_url),
            prompt: (!interactive).then_some("none"),
            login_hint: None,
        })
        .await
    {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start a launch's sign-in");
            return Refusal::provider_unavailable()
                .answer(state, parts, None)
                .await;
        }
    };
    let pending = json!({
        "step": "region", "host": host, "launch": launch, "interactive": interactive,
        "state": auth.state, "nonce": auth.nonce,
        "verifier": secrecy::ExposeSecret::expose_secret(&auth.verifier),
    });
    go(state, parts, &pending, &auth.url).await
}

/// Keep `pending` under a fresh launch cookie and send the browser to `url`.
async fn go(state: &AppState, parts: &Parts, pending: &Value, url: &str) -> Response {
    let Some(id) = state.sessions.begin_pending(pending).await else {
        return Refusal::store_unavailable()
            .answer(state, parts, None)
            .await;
    };
    with_cookie(
        Redirect::to(url).into_response(),
        &launch_cookie(&id, secure(state)),
    )
}

impl CallbackQuery {
    /// The authorization code, if there is a plausible one; if not, refused with `message`.
    fn code(self, message: &str) -> Result<String, Refusal> {
        self.code
            .filter(|c| !c.is_empty() && c.len() <= 2048)
            .ok_or_else(|| Refusal::new("no-code", StatusCode::BAD_REQUEST, message))
    }
}

/// The PKCE verifier a launch in progress was sent with.
fn verifier_of(pending: &Value) -> secrecy::SecretString {
    pending["verifier"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
        .into()
}

/// The launch in progress at `step`, taken (once), with the state it was sent with checked,
/// and the host it is with (still configured). `Err` is the refusal to answer with.
async fn take<'a>(
    state: &'a AppState,
    parts: &Parts,
    step: &str,
    q: &CallbackQuery,
) -> Result<(Value, &'a Host), Response> {
    let pending = match cookie(parts, LAUNCH_COOKIE) {
        Some(id) => state.sessions.take_pending(&id).await,
        None => None,
    };
    let refusal = match pending.filter(|p| p["step"] == step) {
        Some(pending) => match started_here(state, pending, q) {
            Ok(taken) => return Ok(taken),
            Err(r) => r,
        },
        None => {
            if let Err(e) = crate::security::limit_signin(state, parts).await {
                return Err(too_many(e));
            }
            Refusal::new(
                "no-launch-in-progress",
                StatusCode::BAD_REQUEST,
                "Opening this record took too long or was started elsewhere. Open it again from your system",
            )
        }
    };
    Err(refusal.answer(state, parts, None).await)
}

/// The launch in progress if this callback carries the state it was sent with, and the host
/// it is with, if that is still configured.
fn started_here<'a>(
    state: &'a AppState,
    pending: Value,
    q: &CallbackQuery,
) -> Result<(Value, &'a Host), Refusal> {
    let expected = pending["state"].as_str().unwrap_or_default();
    let state_ok = q.state.as_deref().is_some_and(|s| {
        !expected.is_empty() && mcr_oidc::constant_time_eq(s.as_bytes(), expected.as_bytes())
    });
    // An error answer without our state is still refused as a state mismatch: anyone can
    // send a browser here with `?error=`.
    if !state_ok {
        return Err(Refusal::new(
            "launch-state-mismatch",
            StatusCode::BAD_REQUEST,
            "This launch was not started here. Open the record again from your system",
        ));
    }
    let Some(host) = host_of(state, &pending) else {
        return Err(Refusal::new(
            "launch-unknown-host",
            StatusCode::BAD_REQUEST,
            "The system that opened My Care Record is no longer allowed to",
        ));
    };
    Ok((pending, host))
}

fn host_of<'a>(state: &'a AppState, pending: &Value) -> Option<&'a Host> {
    let i = usize::try_from(pending["host"].as_u64()?).ok()?;
    state.launcher.host(i)
}

/// `GET /launch/signin/callback`: the region's provider says who the user is.
pub(crate) async fn region_callback(
    State(state): State<AppState>,
    Query(q): Query<CallbackQuery>,
    req: Request,
) -> Response {
    let (parts, _) = req.into_parts();
    let (pending, host) = match take(&state, &parts, "region", &q).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let host_index = pending["host"].as_u64().unwrap_or_default() as usize;
    let launch = pending["launch"].as_str();
    let ask = q
        .error
        .as_deref()
        .is_some_and(|e| ASK_THE_USER.contains(&e));
    if ask && pending["interactive"] == false {
        // No single sign-on session at the provider: let it ask the user.
        return region_signin(&state, &parts, host_index, launch, true).await;
    }
    let nonce = pending["nonce"].as_str().unwrap_or_default();
    let (principal, claims, id_token) = match region_user(&state, &pending, nonce, q).await {
        Ok(u) => u,
        Err(r) => return r.answer(&state, &parts, None).await,
    };
    let who = Some(&principal);
    let Some(region_user) = claims
        .get(&host.user_match.region_claim)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
    else {
        return Refusal::new(
            "launch-region-user-unknown",
            StatusCode::FORBIDDEN,
            format!("Your sign-in does not say who you are in the way {} needs. Ask your IT service desk", host.name),
        )
        .answer(&state, &parts, who)
        .await;
    };
    let scope = if launch.is_some() {
        EHR_SCOPE
    } else {
        STANDALONE_SCOPE
    };
    let auth = match host
        .client
        .begin(launch, &state.launcher.redirect_url, scope)
        .await
    {
        Ok(a) => a,
        Err(e) => {
            return host_unavailable(host, "sign-in", e, "cannot start a launch at its host")
                .answer(&state, &parts, who)
                .await;
        }
    };
    let next = json!({
        "step": "host", "host": host_index,
        "region_id_token": id_token, "region_nonce": nonce, "region_user": region_user,
        "state": auth.state, "nonce": auth.nonce,
        "verifier": secrecy::ExposeSecret::expose_secret(&auth.verifier),
    });
    go(&state, &parts, &next, &auth.url).await
}

/// Who the region's provider says the user is: its code exchanged, its ID token checked with
/// the launch's `nonce`, and a role the gateway knows; with the token's claims and the token.
async fn region_user(
    state: &AppState,
    pending: &Value,
    nonce: &str,
    q: CallbackQuery,
) -> Result<(Principal, Map<String, Value>, String), Refusal> {
    if q.error.is_some() {
        return Err(Refusal::new(
            "provider-refused",
            StatusCode::UNAUTHORIZED,
            "Your organisation's sign-in did not let you in. Open the record again from your system",
        ));
    }
    let code = q.code("The sign-in did not complete. Open the record again from your system")?;
    let rp = state.auth.relying_party();
    let checked = match rp
        .exchange_at(
            &code,
            &verifier_of(pending),
            &state.launcher.signin_redirect_url,
        )
        .await
    {
        Ok(tokens) => rp
            .verify_id_token_claims(&tokens.id_token, nonce)
            .await
            .map(|(identity, claims)| (identity, claims, tokens.id_token)),
        Err(e) => Err(e),
    };
    let (identity, claims, id_token) = checked.map_err(|e| match e {
        OidcError::Refused(_) => Refusal::new(
            "code-refused",
            StatusCode::UNAUTHORIZED,
            "Your sign-in could not be completed. Open the record again from your system",
        ),
        e => provider_refusal(
            e,
            "Your sign-in could not be checked. Open the record again from your system",
            "a launch's sign-in could not be completed",
        ),
    })?;
    Ok((principal_of(state, &identity)?, claims, id_token))
}

/// `GET /launch/callback`: the host says who its user is and which patient is open.
pub(crate) async fn host_callback(
    State(state): State<AppState>,
    Query(q): Query<CallbackQuery>,
    req: Request,
) -> Response {
    let (parts, _) = req.into_parts();
    let (pending, host) = match take(&state, &parts, "host", &q).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    // The region's identity again (checked as it was a moment ago: the same token, nonce).
    let rp = state.auth.relying_party();
    let identity = match rp
        .verify_id_token(
            pending["region_id_token"].as_str().unwrap_or_default(),
            pending["region_nonce"].as_str().unwrap_or_default(),
        )
        .await
    {
        Ok(i) => i,
        Err(e) => {
            return provider_refusal(
                e,
                "Your sign-in took too long. Open the record again from your system",
                "a launch's sign-in could not be checked again",
            )
            .answer(&state, &parts, None)
            .await;
        }
    };
    let principal = match principal_of(&state, &identity) {
        Ok(p) => p,
        Err(r) => return r.answer(&state, &parts, None).await,
    };
    let who = Some(&principal);
    let nhs = match host_patient(&state, host, &pending, q).await {
        Ok(nhs) => nhs,
        Err(r) => return r.answer(&state, &parts, who).await,
    };
    if let Err(e) = crate::security::limit_signin_user(&state, &identity.user_id).await {
        return too_many(e);
    }
    let Some(id) = state.sessions.create(identity).await else {
        return Refusal::store_unavailable()
            .answer(&state, &parts, who)
            .await;
    };
    tracing::info!(user = %principal.user_id, host = %host.name, "launched from a host system");
    let max = state.sessions.limits().max.as_secs();
    let resp = with_cookie(
        Redirect::to(&format!("/app/patient/{nhs}")).into_response(),
        &session_cookie(&id, max, secure(&state)),
    );
    let resp = with_cookie(resp, &clear(LAUNCH_COOKIE, "/launch"));
    // Any earlier session of this browser is over: the launch's user is the one signed in now.
    if let Some(old) = cookie(&parts, SESSION_COOKIE) {
        state.sessions.end(&old).await;
    }
    resp
}

/// The patient open at the host: the host's code exchanged, its user the region's user (by the
/// host's rule), and its `Patient` (read with the host's access token) naming one valid NHS
/// number.
async fn host_patient(
    state: &AppState,
    host: &Host,
    pending: &Value,
    q: CallbackQuery,
) -> Result<NhsNumber, Refusal> {
    if q.error.is_some() {
        return Err(refused_by_host(host));
    }
    let code = q.code("The launch did not complete. Open the record again from your system")?;
    let tokens = match host
        .client
        .exchange(&code, &verifier_of(pending), &state.launcher.redirect_url)
        .await
    {
        Ok(t) => t,
        Err(OidcError::Refused(_)) => return Err(refused_by_host(host)),
        Err(e) => {
            return Err(host_unavailable(
                host,
                "sign-in",
                e,
                "a launch's token exchange failed",
            ))
        }
    };
    let Some(host_id_token) = tokens.id_token.as_deref() else {
        return Err(Refusal::new(
            "launch-no-host-user",
            StatusCode::FORBIDDEN,
            format!(
                "{} did not say who you are signed in as. Ask your IT service desk",
                host.name
            ),
        ));
    };
    let host_claims = match host
        .client
        .verify_id_token(host_id_token, pending["nonce"].as_str().unwrap_or_default())
        .await
    {
        Ok(c) => c,
        Err(OidcError::Token(r)) => {
            tracing::info!(reason = r.code(), "a host's ID token was refused");
            return Err(Refusal::new(
                "launch-host-token-refused",
                StatusCode::UNAUTHORIZED,
                format!(
                    "{}'s word on who you are could not be checked. Open the record again from {}",
                    host.name, host.name
                ),
            ));
        }
        Err(e) => {
            return Err(host_unavailable(
                host,
                "sign-in",
                e,
                "a host's ID token could not be checked",
            ))
        }
    };
    let host_user = host_claims
        .get(&host.user_match.host_claim)
        .and_then(Value::as_str);
    let region_user = pending["region_user"].as_str();
    let same = matches!((host_user, region_user), (Some(h), Some(r)) if !h.is_empty() && mcr_oidc::constant_time_eq(h.as_bytes(), r.as_bytes()));
    if !same {
        return Err(Refusal::new(
            "launch-user-mismatch",
            StatusCode::FORBIDDEN,
            format!("You are signed in to {} as someone other than the person signed in to My Care Record. Sign in to both as yourself, then open the record again", host.name),
        ));
    }
    let Some(patient_id) = tokens.patient.as_ref().and_then(fhir_id) else {
        return Err(Refusal::new(
            "launch-patient-unreadable",
            StatusCode::BAD_REQUEST,
            format!("{} did not say which patient to open in a form My Care Record can read. Find the patient by NHS number instead", host.name),
        ));
    };
    let body = host
        .client
        .read(&tokens.access_token, &format!("Patient/{patient_id}"))
        .await
        .map_err(|e| {
            host_unavailable(
                host,
                "patient record",
                e,
                "a launch's patient could not be read",
            )
        })?;
    nhs_number_of(&body).ok_or_else(|| {
        Refusal::new(
            "launch-patient-unreadable",
            StatusCode::BAD_REQUEST,
            format!("The patient open in {} has no valid NHS number, so My Care Record cannot find their record. Check the NHS number in {}", host.name, host.name),
        )
    })
}
