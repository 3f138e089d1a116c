//! The patient's side of the public site: "who viewed my record". A patient signs in (in the
//! demo, by picking one of the demo's sample patients; in production this is NHS login) and
//! gets a separate patient session, held server-side under its own cookie (`mcr_patient`,
//! HttpOnly, SameSite=Strict, path `/my-record`), that names one NHS number and nothing else.
//! Every page here reads that number from the session, never from the request, so a patient
//! sees only their own record's accesses.

use super::text::human_time;
use super::{gateway_error, render, Layout};
use crate::auth::cookie;
use crate::AppState;
use askama::Template;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use mcr_domain::NhsNumber;
use mcr_gateway::DownloadFormat;
use serde::Deserialize;

const PATIENT_COOKIE: &str = "mcr_patient";
/// A patient session ends after this long without a request.
const IDLE: std::time::Duration = crate::sessions::PATIENT_IDLE;

/// A sample patient the demo's patient sign-in offers.
#[derive(Debug, Clone)]
pub struct DemoPatient {
    pub nhs_number: NhsNumber,
    /// e.g. "Ann Smith, born 2 March 1970".
    pub label: String,
}

/// Patient sign-in: which patients may sign in (demo only). Their sessions live in the shared
/// store ([`crate::sessions::Sessions::create_patient`]), so any gateway serves them.
#[derive(Debug, Default)]
pub struct PatientAccess {
    demo: Vec<DemoPatient>,
}

impl PatientAccess {
    /// Whether this is the demo (it offers demo patients): only then are letters' codes shown.
    pub(crate) fn is_demo(&self) -> bool {
        !self.demo.is_empty()
    }

    /// Patient sign-in offering these demo patients (none: patient sign-in is not available).
    pub fn demo(patients: Vec<DemoPatient>) -> Self {
        Self { demo: patients }
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

fn with_cookie(mut resp: Response, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// A signed-in patient: their NHS number, from their session.
pub(crate) struct SignedInPatient(NhsNumber);

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
        match state.sessions.touch_patient(&id).await {
            Some(nhs) => Ok(SignedInPatient(nhs)),
            None => Err(with_cookie(to_signin(), &clear_cookie())),
        }
    }
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
    pub error: Option<String>,
}

fn signin_view(state: &AppState, error: Option<String>) -> SigninPage {
    SigninPage {
        layout: Layout::public(),
        patients: state
            .patients
            .demo
            .iter()
            .map(|p| PatientChoice {
                value: p.nhs_number.to_string(),
                label: p.label.clone(),
            })
            .collect(),
        error,
    }
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
    Form(form): Form<SigninForm>,
) -> Response {
    // Only the demo's own patients can sign in this way: the number must be one offered.
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
    match state.sessions.create_patient(&p.nhs_number).await {
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
    pub since: String,
    pub views: Vec<ViewRow>,
}

pub(crate) async fn history(patient: SignedInPatient, State(state): State<AppState>) -> Response {
    let nhs = patient.0;
    let history = match state.gateway.access_history(&nhs, None).await {
        Ok(h) => h,
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
    match state.gateway.access_history(&patient.0, None).await {
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
    }
}
