//! A patient signs in and out: with NHS login (state, nonce and PKCE verifier kept
//! server-side, the answer checked and audited at the callback) or, in development only, the
//! stand-in offering the demo's sample patients.

use super::{
    audit_patient, clear_cookie, clear_login_cookie, login_cookie, patient_cookie, with_cookie,
    LOGIN_COOKIE, PATIENT_COOKIE,
};
use crate::auth::{cookie, correlation_id};
use crate::pages::session::CallbackQuery;
use crate::pages::{render, Layout};
use crate::sessions::PendingLogin;
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

/// Why a patient's sign-in is refused: the reason for the audit trail and the log, the
/// proofing level once NHS login has said it, and the sentence on the sign-in page.
struct Refusal {
    reason: &'static str,
    level: Option<ProofingLevel>,
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn new(reason: &'static str, status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            reason,
            level: None,
            status,
            message: message.into(),
        }
    }

    /// NHS login did not answer.
    fn unavailable() -> Self {
        Self::new(
            "provider-unavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            "NHS login is not available just now. Try again shortly",
        )
    }

    /// The refusal audited, logged by reason, and said on the sign-in page.
    async fn answer(self, state: &AppState, cid: &str) -> Response {
        tracing::info!(reason = self.reason, "patient sign-in refused");
        audit_patient(
            state,
            cid,
            AuthChannel::PatientSignIn,
            false,
            self.reason,
            self.level,
            None,
        )
        .await;
        signin_error(state, self.status, &self.message)
    }
}

/// NHS login sends the patient back here. Each refusal is audited with its reason and shown
/// as a sentence on the sign-in page, never with NHS login's own words or a token's text.
pub(crate) async fn callback(
    State(state): State<AppState>,
    Query(q): Query<CallbackQuery>,
    parts: Parts,
) -> Response {
    let cid = correlation_id(&parts);
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
        return Refusal::new(
            "no-sign-in-in-progress",
            StatusCode::BAD_REQUEST,
            "Your sign-in took too long or was started elsewhere. Sign in again",
        )
        .answer(&state, &cid)
        .await;
    };
    let (level, nhs) = match proofed_patient(&login, &pending, q).await {
        Ok(p) => p,
        Err(r) => return r.answer(&state, &cid).await,
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

/// Who NHS login says the patient is: the answer checked against the sign-in in progress
/// (`pending`), its code exchanged, its ID token checked; their proofing level and, at P9
/// only, their NHS number (below P9 it is not proofed: neither kept nor audited).
async fn proofed_patient(
    login: &NhsLogin,
    pending: &PendingLogin,
    q: CallbackQuery,
) -> Result<(ProofingLevel, Option<NhsNumber>), Refusal> {
    if q.error.is_some() {
        return Err(Refusal::new(
            "provider-refused",
            StatusCode::UNAUTHORIZED,
            "NHS login did not sign you in. Sign in again",
        ));
    }
    let state_ok = q
        .state
        .as_deref()
        .is_some_and(|s| mcr_oidc::constant_time_eq(s.as_bytes(), pending.state.as_bytes()));
    if !state_ok {
        return Err(Refusal::new(
            "state-mismatch",
            StatusCode::BAD_REQUEST,
            "This sign-in was not started here. Sign in again",
        ));
    }
    let Some(code) = q.code.filter(|c| !c.is_empty() && c.len() <= 2048) else {
        return Err(Refusal::new(
            "no-code",
            StatusCode::BAD_REQUEST,
            "The sign-in did not complete. Sign in again",
        ));
    };
    let tokens = match login.exchange(&code, &pending.verifier).await {
        Ok(t) => t,
        Err(OidcError::Refused(_)) => {
            return Err(Refusal::new(
                "code-refused",
                StatusCode::UNAUTHORIZED,
                "Your sign-in could not be completed. Sign in again",
            ));
        }
        Err(e) => {
            tracing::warn!(error = %e, "NHS login token exchange failed");
            return Err(Refusal::unavailable());
        }
    };
    let patient = match login.patient(&tokens, &pending.nonce).await {
        Ok(p) => p,
        Err(OidcError::Token(r)) => {
            return Err(Refusal::new(
                r.code(),
                StatusCode::UNAUTHORIZED,
                format!("Your NHS login sign-in could not be checked: {r}. Sign in again"),
            ));
        }
        Err(e) => {
            tracing::warn!(error = %e, "NHS login ID token could not be checked");
            return Err(Refusal::unavailable());
        }
    };
    let level = patient.level;
    if level != ProofingLevel::P9 {
        return Ok((level, None));
    }
    let refused = |reason, message: &str| Refusal {
        level: Some(level),
        ..Refusal::new(reason, StatusCode::FORBIDDEN, message)
    };
    match patient.nhs_number.as_deref().map(NhsNumber::parse) {
        Some(Ok(n)) => Ok((level, Some(n))),
        None => Err(refused(
            "missing-nhs-number",
            "NHS login did not give your NHS number, so your record cannot be found. Sign in again",
        )),
        Some(Err(_)) => Err(refused(
            "malformed-nhs-number",
            "NHS login gave an NHS number that is not valid, so your record cannot be found. Sign in again",
        )),
    }
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
