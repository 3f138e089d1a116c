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

mod access_history;
mod choice;
mod signin;

pub(crate) use access_history::{download, history};
pub(crate) use choice::{choice_page, choose};
pub(crate) use signin::{callback, signin, signin_page, signout};

use crate::auth::{cookie, correlation_id};
use crate::pages::{render, Layout};
use crate::AppState;
use askama::Template;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use mcr_domain::NhsNumber;
use mcr_gateway::{AuthChannel, PatientSignIn};
use mcr_oidc::{NhsLogin, ProofingLevel};
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
