//! A patient signs in and out: with NHS login (state, nonce and PKCE verifier kept
//! server-side, the answer checked and audited at the callback) or, in development only, the
//! stand-in offering the demo's sample patients.

use super::{
    audit_patient, clear_cookie, clear_login_cookie, login_cookie, patient_cookie, with_cookie,
    LOGIN_COOKIE, PATIENT_COOKIE,
};
use crate::auth::{cookie, correlation_id};
use crate::pages::{render, Layout};
use crate::AppState;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use mcr_domain::NhsNumber;
use mcr_gateway::AuthChannel;
use mcr_oidc::{NhsLogin, OidcError, ProofingLevel};
use serde::Deserialize;

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
        None => crate::pages::error_page(
            Layout::public(),
            StatusCode::SERVICE_UNAVAILABLE,
            "Signing in is not possible just now. Try again shortly.",
        ),
    }
}

/// Send the patient to NHS login, keeping the sign-in's state, nonce and verifier server-side.
async fn start_nhs_login(state: &AppState, parts: &Parts, login: &NhsLogin) -> Response {
    if let Err(e) = crate::security::limit_signin(state, parts).await {
        return crate::pages::session::too_many(e);
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
        return crate::pages::not_found().await;
    };
    let pending = match cookie(&parts, LOGIN_COOKIE) {
        Some(id) => state.sessions.take_login(&id).await,
        None => None,
    };
    let Some(pending) = pending else {
        if let Err(e) = crate::security::limit_signin(&state, &parts).await {
            return crate::pages::session::too_many(e);
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
