//! The patient's side of the public site: "who viewed my record", and their own choice to share
//! or opt out (`/my-record/choice`, P9 only, in force at once). A patient signs in with NHS
//! login (`[auth.nhs_login]`: authorization code flow with PKCE, `state`, `nonce` and a `vtr`
//! asking for identity proofed to P9; [`mcr_oidc::NhsLogin`]) and gets a separate patient
//! session, held server-side under its own cookie (`mcr_patient`, HttpOnly, SameSite=Strict,
//! path `/my-record`), that names one NHS number and the identity proofing level, nothing
//! else. Every page here reads that number from the session, never from the request, so a
//! patient sees only their own record's accesses. Only a P9 session sees them: below P9 a
//! patient sees general information, told why and how to prove who they are fully.
//!
//! Every sign-in is audited (`authenticate:patient-sign-in`: outcome, reason code, level; the
//! NHS number once NHS login has proofed it to P9), and so is every request refused for its
//! level (`authenticate:patient-access`). A development stand-in (pick one of the demo's
//! sample patients, no NHS login) exists only when the gateway is started with it
//! ([`PatientAccess::demo`]); it is never on by default.

use super::text::human_time;
use super::{gateway_error, render, Layout};
use crate::auth::{cookie, correlation_id};
use crate::AppState;
use askama::Template;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use mcr_domain::NhsNumber;
use mcr_gateway::AuthChannel;
use mcr_gateway::DownloadFormat;
use mcr_gateway::{OptOutKind, PatientSignIn, Sharing};
use mcr_oidc::{NhsLogin, OidcError, ProofingLevel};
use serde::Deserialize;
use std::sync::Arc;

const PATIENT_COOKIE: &str = "mcr_patient";
/// The cookie holding an NHS login sign-in in progress.
const LOGIN_COOKIE: &str = "mcr_patient_login";
/// A patient session ends after this long without a request.
const IDLE: std::time::Duration = crate::sessions::PATIENT_IDLE;

/// A sample patient the demo's patient sign-in offers.
#[derive(Debug, Clone)]
pub struct DemoPatient {
    pub nhs_number: NhsNumber,
    /// e.g. "Ann Smith, born 2 March 1970".
    pub label: String,
}

/// Patient sign-in: NHS login, or (development only) the stand-in offering the demo's sample
/// patients. Sessions live in the shared store
/// ([`crate::sessions::Sessions::create_patient`]), so any gateway serves them.
#[derive(Debug, Default)]
pub struct PatientAccess {
    /// The stand-in's patients, and the demo's names for the record pages.
    demo: Vec<DemoPatient>,
    /// Whether the stand-in signs patients in (never with NHS login configured).
    stand_in: bool,
    nhs_login: Option<Arc<NhsLogin>>,
    /// Whether this is the demo: only then are letters' codes shown.
    demo_site: bool,
}

impl PatientAccess {
    /// Whether this is the demo: only then are letters' codes shown.
    pub(crate) fn is_demo(&self) -> bool {
        self.demo_site
    }

    /// Development stand-in: patients sign in by picking one of these sample patients, with no
    /// NHS login (none: patient sign-in is not available).
    pub fn demo(patients: Vec<DemoPatient>) -> Self {
        Self {
            demo_site: !patients.is_empty(),
            stand_in: !patients.is_empty(),
            demo: patients,
            nhs_login: None,
        }
    }

    /// Patients sign in with NHS login. `demo`: the demo's sample patients, whose names the
    /// pages show (empty outside the demo).
    pub fn nhs_login(login: Arc<NhsLogin>, demo: Vec<DemoPatient>) -> Self {
        Self {
            demo_site: !demo.is_empty(),
            stand_in: false,
            demo,
            nhs_login: Some(login),
        }
    }
}

fn patient_cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{PATIENT_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/my-record; Max-Age={}{secure}",
        IDLE.as_secs()
    )
}

fn clear_cookie() -> String {
    format!("{PATIENT_COOKIE}=; HttpOnly; SameSite=Strict; Path=/my-record; Max-Age=0")
}

/// SameSite=Lax: NHS login's redirect back is a top-level navigation from another site.
fn login_cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{LOGIN_COOKIE}={id}; HttpOnly; SameSite=Lax; Path=/my-record/signin; Max-Age={}{secure}",
        crate::sessions::LOGIN_SECONDS
    )
}

fn clear_login_cookie() -> String {
    format!("{LOGIN_COOKIE}=; HttpOnly; SameSite=Lax; Path=/my-record/signin; Max-Age=0")
}

fn with_cookie(mut resp: Response, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// A signed-in patient whose identity NHS login proofed to P9: their NHS number, from their
/// session. A patient signed in below P9 is shown general information instead (403), and the
/// refusal is audited.
pub(crate) struct SignedInPatient {
    nhs: NhsNumber,
    level: ProofingLevel,
    correlation_id: String,
}

impl FromRequestParts<AppState> for SignedInPatient {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let to_signin = || Redirect::to("/my-record/signin").into_response();
        let Some(id) = cookie(parts, PATIENT_COOKIE) else {
            return Err(to_signin());
        };
        let Some(session) = state.sessions.touch_patient(&id).await else {
            return Err(with_cookie(to_signin(), &clear_cookie()));
        };
        match (session.level, session.nhs_number) {
            (ProofingLevel::P9, Some(nhs)) => Ok(SignedInPatient {
                nhs,
                level: ProofingLevel::P9,
                correlation_id: correlation_id(parts),
            }),
            (level, _) => {
                let cid = correlation_id(parts);
                tracing::info!(
                    reason = "proofing-level-too-low",
                    level = level.as_str(),
                    "patient request refused"
                );
                audit_patient(
                    state,
                    &cid,
                    AuthChannel::PatientAccess,
                    false,
                    "proofing-level-too-low",
                    Some(level),
                    None,
                )
                .await;
                Err(general_page(StatusCode::FORBIDDEN, level))
            }
        }
    }
}

/// Audit a patient's sign-in or refused request; a failure to write is logged, and a refusal
/// stays a refusal.
async fn audit_patient(
    state: &AppState,
    cid: &str,
    channel: AuthChannel,
    permitted: bool,
    reason: &str,
    level: Option<ProofingLevel>,
    patient: Option<&NhsNumber>,
) -> bool {
    let r = PatientSignIn {
        correlation_id: cid,
        channel,
        permitted,
        reason,
        level: level.map(ProofingLevel::as_str),
        patient,
    };
    match state.gateway.record_patient_sign_in(&r).await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "could not audit a patient sign-in");
            false
        }
    }
}

/// What a patient signed in below P9 sees: general information, why, and how to reach P9.
#[derive(Template)]
#[template(path = "public/patient_general.html")]
pub(crate) struct GeneralPage {
    pub layout: Layout,
    pub level: &'static str,
}

fn general_page(status: StatusCode, level: ProofingLevel) -> Response {
    render(
        status,
        &GeneralPage {
            layout: Layout::public(),
            level: level.as_str(),
        },
    )
}

pub(crate) struct PatientChoice {
    pub value: String,
    pub label: String,
}

#[derive(Template)]
#[template(path = "public/patient_signin.html")]
pub(crate) struct SigninPage {
    pub layout: Layout,
    pub patients: Vec<PatientChoice>,
    pub nhs_login: bool,
    pub error: Option<String>,
}

fn signin_view(state: &AppState, error: Option<String>) -> SigninPage {
    let stand_in = state.patients.stand_in && state.patients.nhs_login.is_none();
    SigninPage {
        layout: Layout::public(),
        patients: if stand_in {
            state
                .patients
                .demo
                .iter()
                .map(|p| PatientChoice {
                    value: p.nhs_number.to_string(),
                    label: p.label.clone(),
                })
                .collect()
        } else {
            Vec::new()
        },
        nhs_login: state.patients.nhs_login.is_some(),
        error,
    }
}

fn signin_error(state: &AppState, status: StatusCode, message: &str) -> Response {
    with_cookie(
        render(status, &signin_view(state, Some(message.to_owned()))),
        &clear_login_cookie(),
    )
}

pub(crate) async fn signin_page(State(state): State<AppState>) -> Response {
    render(StatusCode::OK, &signin_view(&state, None))
}

#[derive(Debug, Deserialize)]
pub(crate) struct SigninForm {
    #[serde(default)]
    patient: String,
}

pub(crate) async fn signin(
    State(state): State<AppState>,
    parts: Parts,
    Form(form): Form<SigninForm>,
) -> Response {
    if let Some(login) = state.patients.nhs_login.clone() {
        return start_nhs_login(&state, &parts, &login).await;
    }
    if !state.patients.stand_in {
        return render(
            StatusCode::BAD_REQUEST,
            &signin_view(&state, Some("Patient sign-in is not available here".into())),
        );
    }
    // The development stand-in: only the demo's own patients, the number one offered.
    let Some(p) = state
        .patients
        .demo
        .iter()
        .find(|p| p.nhs_number.as_str() == form.patient.trim())
    else {
        let msg = if state.patients.demo.is_empty() {
            "Patient sign-in is not available here"
        } else {
            "Select who you are"
        };
        return render(
            StatusCode::BAD_REQUEST,
            &signin_view(&state, Some(msg.into())),
        );
    };
    match state
        .sessions
        .create_patient(Some(&p.nhs_number), ProofingLevel::P9)
        .await
    {
        Some(id) => with_cookie(
            Redirect::to("/my-record").into_response(),
            &patient_cookie(&id, state.secure_cookies),
        ),
        None => super::error_page(
            Layout::public(),
            StatusCode::SERVICE_UNAVAILABLE,
            "Signing in is not possible just now. Try again shortly.",
        ),
    }
}

/// Send the patient to NHS login, keeping the sign-in's state, nonce and verifier server-side.
async fn start_nhs_login(state: &AppState, parts: &Parts, login: &NhsLogin) -> Response {
    if let Err(e) = crate::security::limit_signin(state, parts).await {
        return super::session::too_many(e);
    }
    let auth = match login.begin().await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start an NHS login sign-in");
            return signin_error(
                state,
                StatusCode::SERVICE_UNAVAILABLE,
                "NHS login is not available just now. Try again shortly",
            );
        }
    };
    let Some(id) = state
        .sessions
        .begin_login(auth.state, auth.nonce, auth.verifier)
        .await
    else {
        return signin_error(
            state,
            StatusCode::SERVICE_UNAVAILABLE,
            "Signing in is not possible just now. Try again shortly",
        );
    };
    with_cookie(
        Redirect::to(&auth.url).into_response(),
        &login_cookie(&id, state.secure_cookies),
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// NHS login sends the patient back here. Each refusal is audited with its reason and shown
/// as a sentence on the sign-in page, never with NHS login's own words or a token's text.
pub(crate) async fn callback(
    State(state): State<AppState>,
    Query(q): Query<CallbackQuery>,
    parts: Parts,
) -> Response {
    let cid = correlation_id(&parts);
    let refuse = |reason: &'static str,
                  level: Option<ProofingLevel>,
                  status: StatusCode,
                  message: String| {
        let (state, cid) = (state.clone(), cid.clone());
        async move {
            tracing::info!(reason, "patient sign-in refused");
            audit_patient(
                &state,
                &cid,
                AuthChannel::PatientSignIn,
                false,
                reason,
                level,
                None,
            )
            .await;
            signin_error(&state, status, &message)
        }
    };
    let Some(login) = state.patients.nhs_login.clone() else {
        // No NHS login here: the page does not exist (as any unknown address, not audited).
        return super::not_found().await;
    };
    let pending = match cookie(&parts, LOGIN_COOKIE) {
        Some(id) => state.sessions.take_login(&id).await,
        None => None,
    };
    let Some(pending) = pending else {
        if let Err(e) = crate::security::limit_signin(&state, &parts).await {
            return super::session::too_many(e);
        }
        return refuse(
            "no-sign-in-in-progress",
            None,
            StatusCode::BAD_REQUEST,
            "Your sign-in took too long or was started elsewhere. Sign in again".into(),
        )
        .await;
    };
    if q.error.is_some() {
        return refuse(
            "provider-refused",
            None,
            StatusCode::UNAUTHORIZED,
            "NHS login did not sign you in. Sign in again".into(),
        )
        .await;
    }
    let state_ok = q
        .state
        .as_deref()
        .is_some_and(|s| mcr_oidc::constant_time_eq(s.as_bytes(), pending.state.as_bytes()));
    if !state_ok {
        return refuse(
            "state-mismatch",
            None,
            StatusCode::BAD_REQUEST,
            "This sign-in was not started here. Sign in again".into(),
        )
        .await;
    }
    let Some(code) = q.code.filter(|c| !c.is_empty() && c.len() <= 2048) else {
        return refuse(
            "no-code",
            None,
            StatusCode::BAD_REQUEST,
            "The sign-in did not complete. Sign in again".into(),
        )
        .await;
    };
    let tokens = match login.exchange(&code, &pending.verifier).await {
        Ok(t) => t,
        Err(OidcError::Refused(_)) => {
            return refuse(
                "code-refused",
                None,
                StatusCode::UNAUTHORIZED,
                "Your sign-in could not be completed. Sign in again".into(),
            )
            .await;
        }
        Err(e) => {
            tracing::warn!(error = %e, "NHS login token exchange failed");
            return refuse(
                "provider-unavailable",
                None,
                StatusCode::SERVICE_UNAVAILABLE,
                "NHS login is not available just now. Try again shortly".into(),
            )
            .await;
        }
    };
    let patient = match login.patient(&tokens, &pending.nonce).await {
        Ok(p) => p,
        Err(OidcError::Token(r)) => {
            return refuse(
                r.code(),
                None,
                StatusCode::UNAUTHORIZED,
                format!("Your NHS login sign-in could not be checked: {r}. Sign in again"),
            )
            .await;
        }
        Err(e) => {
            tracing::warn!(error = %e, "NHS login ID token could not be checked");
            return refuse(
                "provider-unavailable",
                None,
                StatusCode::SERVICE_UNAVAILABLE,
                "NHS login is not available just now. Try again shortly".into(),
            )
            .await;
        }
    };
    let level = patient.level;
    // Below P9 the NHS number is not proofed: it is neither kept nor audited.
    let nhs = if level == ProofingLevel::P9 {
        match patient.nhs_number.as_deref().map(NhsNumber::parse) {
            Some(Ok(n)) => Some(n),
            None => {
                return refuse(
                    "missing-nhs-number",
                    Some(level),
                    StatusCode::FORBIDDEN,
                    "NHS login did not give your NHS number, so your record cannot be found. Sign in again".into(),
                )
                .await;
            }
            Some(Err(_)) => {
                return refuse(
                    "malformed-nhs-number",
                    Some(level),
                    StatusCode::FORBIDDEN,
                    "NHS login gave an NHS number that is not valid, so your record cannot be found. Sign in again".into(),
                )
                .await;
            }
        }
    } else {
        None
    };
    let Some(id) = state.sessions.create_patient(nhs.as_ref(), level).await else {
        return signin_error(
            &state,
            StatusCode::SERVICE_UNAVAILABLE,
            "Signing in is not possible just now. Try again shortly",
        );
    };
    let reason = if nhs.is_some() {
        "nhs-login"
    } else {
        "nhs-login-general-information-only"
    };
    audit_patient(
        &state,
        &cid,
        AuthChannel::PatientSignIn,
        true,
        reason,
        Some(level),
        nhs.as_ref(),
    )
    .await;
    tracing::info!(level = level.as_str(), "patient signed in with NHS login");
    // A page of ours that moves on to `/my-record` (not a redirect): the browser arrived from
    // NHS login, another site, and would not send the SameSite=Strict patient cookie on a
    // redirect that began there.
    let resp = with_cookie(
        render(
            StatusCode::OK,
            &SignedInPage {
                layout: Layout::public(),
            },
        ),
        &patient_cookie(&id, state.secure_cookies),
    );
    with_cookie(resp, &clear_login_cookie())
}

#[derive(Template)]
#[template(path = "public/patient_signed_in.html")]
pub(crate) struct SignedInPage {
    pub layout: Layout,
}

pub(crate) async fn signout(State(state): State<AppState>, parts: Parts) -> Response {
    if let Some(id) = cookie(&parts, PATIENT_COOKIE) {
        state.sessions.end_patient(&id).await;
    }
    with_cookie(Redirect::to("/").into_response(), &clear_cookie())
}

pub(crate) struct ViewRow {
    pub when: String,
    pub organisation: String,
    pub role: String,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "public/access_history.html")]
pub(crate) struct HistoryPage {
    pub layout: Layout,
    pub name: String,
    pub nhs_formatted: String,
    /// Whether an objection stands now.
    pub opted_out: bool,
    pub since: String,
    pub views: Vec<ViewRow>,
}

pub(crate) async fn history(patient: SignedInPatient, State(state): State<AppState>) -> Response {
    let nhs = patient.nhs;
    let history = match state.gateway.access_history(&nhs, None).await {
        Ok(h) => h,
        Err(e) => return gateway_error(Layout::public(), e),
    };
    let opted_out = match state.gateway.patient_sharing(&nhs).await {
        Ok(s) => s == Sharing::OptedOut,
        Err(e) => return gateway_error(Layout::public(), e),
    };
    let name = state
        .patients
        .demo
        .iter()
        .find(|p| p.nhs_number == nhs)
        .map(|p| p.label.clone())
        .unwrap_or_default();
    let page = HistoryPage {
        layout: Layout::public(),
        name,
        nhs_formatted: nhs.formatted(),
        opted_out,
        since: super::text::human_day(history.since.date_naive()),
        views: history
            .views
            .iter()
            .map(|v| ViewRow {
                when: human_time(&v.at),
                organisation: v.organisation.clone(),
                role: v.role.clone(),
                reason: v.reason.clone(),
            })
            .collect(),
    };
    render(StatusCode::OK, &page)
}

/// The same history as a CSV file to keep.
pub(crate) async fn download(patient: SignedInPatient, State(state): State<AppState>) -> Response {
    match state.gateway.access_history(&patient.nhs, None).await {
        Ok(h) => {
            let file = h.download(DownloadFormat::Csv);
            let disposition = format!("attachment; filename=\"{}\"", file.filename);
            let mut resp = (StatusCode::OK, file.body).into_response();
            let headers = resp.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(file.content_type),
            );
            if let Ok(v) = HeaderValue::from_str(&disposition) {
                headers.insert(header::CONTENT_DISPOSITION, v);
            }
            resp
        }
        Err(e) => gateway_error(Layout::public(), e),
    }
}

/// The patient's own choice: shared, or opted out. Only a P9 session reaches it (the extractor
/// refuses the rest, audited), and the choice takes effect at once
/// ([`mcr_gateway::Gateway::patient_chooses`]).
#[derive(Template)]
#[template(path = "public/sharing_choice.html")]
pub(crate) struct ChoicePage {
    pub layout: Layout,
    pub nhs_formatted: String,
    pub opted_out: bool,
    /// Whether a choice was just saved (`opted_out` says which).
    pub saved: bool,
    pub error: Option<String>,
}

/// The choice page for `patient`: `opted_out` now, `saved` when a choice was just made.
fn choice_view(
    status: StatusCode,
    patient: &SignedInPatient,
    opted_out: bool,
    saved: bool,
    error: Option<String>,
) -> Response {
    render(
        status,
        &ChoicePage {
            layout: Layout::public(),
            nhs_formatted: patient.nhs.formatted(),
            opted_out,
            saved,
            error,
        },
    )
}

pub(crate) async fn choice_page(
    patient: SignedInPatient,
    State(state): State<AppState>,
) -> Response {
    match state.gateway.patient_sharing(&patient.nhs).await {
        Ok(s) => choice_view(
            StatusCode::OK,
            &patient,
            s == Sharing::OptedOut,
            false,
            None,
        ),
        Err(e) => gateway_error(Layout::public(), e),
    }
}

#[derive(Deserialize)]
pub(crate) struct ChoiceForm {
    #[serde(default)]
    choice: String,
}

pub(crate) async fn choose(
    patient: SignedInPatient,
    State(state): State<AppState>,
    Form(form): Form<ChoiceForm>,
) -> Response {
    let kind = match form.choice.as_str() {
        "opt-out" => OptOutKind::OptOut,
        "share" => OptOutKind::OptIn,
        _ => {
            return match state.gateway.patient_sharing(&patient.nhs).await {
                Ok(s) => choice_view(
                    StatusCode::BAD_REQUEST,
                    &patient,
                    s == Sharing::OptedOut,
                    false,
                    Some("Select whether to share your record or to opt out.".into()),
                ),
                Err(e) => gateway_error(Layout::public(), e),
            };
        }
    };
    let who = mcr_gateway::SignedInPatient {
        nhs: &patient.nhs,
        proofing_level: patient.level.as_str(),
        correlation_id: &patient.correlation_id,
    };
    match state.gateway.patient_chooses(&who, kind).await {
        Ok(_) => choice_view(
            StatusCode::OK,
            &patient,
            kind == OptOutKind::OptOut,
            true,
            None,
        ),
        Err(e) => gateway_error(Layout::public(), e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Patient sessions themselves: sessions::tests::patient_sessions_live_in_the_shared_store_apart_from_staff_sessions.

    #[test]
    fn the_cookie_is_locked_to_the_patient_pages() {
        let c = patient_cookie("abc", true);
        for part in [
            "mcr_patient=abc",
            "HttpOnly",
            "SameSite=Strict",
            "Path=/my-record",
            "Secure",
        ] {
            assert!(c.contains(part), "{c} lacks {part}");
        }
        assert!(clear_cookie().contains("Max-Age=0"));
        // The sign-in in progress comes back from NHS login, another site: Lax, and only on
        // the sign-in's own path.
        let l = login_cookie("xyz", true);
        for part in [
            "mcr_patient_login=xyz",
            "HttpOnly",
            "SameSite=Lax",
            "Path=/my-record/signin",
            "Secure",
        ] {
            assert!(l.contains(part), "{l} lacks {part}");
        }
        assert!(clear_login_cookie().contains("Max-Age=0"));
    }
}
