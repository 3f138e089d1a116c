//! Server-rendered pages: the clinician viewer under `/app`, sign-in, and the public site.
//!
//! Every page is an askama template (compile-time checked, escaped by default) in the NHS
//! design system, works without JavaScript, and carries no inline script or style (the CSP
//! forbids both). Each handler makes one call into the gateway and turns what comes back into
//! a view model here; templates only lay out what the view model says. Text from sources is
//! untrusted: it is only ever escaped, never marked safe (the one exception, the trend chart,
//! is SVG built here with every text escaped).

mod access;
mod assets;
mod chart;
pub(crate) mod document;
mod forms;
mod launch;
mod local_matching;
mod matching;
mod merge;
mod opt_out;
mod patient;
mod public;
mod record;
mod review;
mod role;
mod search;
mod session;
mod sources;
mod text;

use crate::{ApiError, AppState};
use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use mcr_gateway::GatewayError;

pub use patient::{DemoPatient, PatientAccess};
pub(crate) use session::PageUser;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(public::home))
        .route("/how-it-works", get(public::how_it_works))
        .route("/questions", get(public::questions))
        .route("/privacy", get(public::privacy))
        .route("/signin", get(session::signin_page).post(session::signin))
        .route("/signin/callback", get(session::callback))
        .route("/signin/role", get(role::choose_page).post(role::choose))
        .route("/signout", post(session::signout))
        .route("/launch", get(launch::ehr_launch))
        .route(
            "/launch/standalone",
            get(launch::standalone_page).post(launch::standalone),
        )
        .route("/launch/signin/callback", get(launch::region_callback))
        .route("/launch/callback", get(launch::host_callback))
        .route("/app", get(search::search))
        .route("/app/patient/{nhs}", get(record::patient))
        .route("/app/patient/{nhs}/access", get(access::explain))
        .route(
            "/app/patient/{nhs}/documents/{source}/{id}",
            get(document::open),
        )
        .route(
            "/app/patient/{nhs}/permission",
            get(access::permission_options).post(access::permission),
        )
        .route(
            "/app/patient/{nhs}/emergency",
            get(access::emergency_form).post(access::emergency),
        )
        .route(
            "/app/patient/{nhs}/relationship",
            get(access::claim_form).post(access::claim),
        )
        .route("/opt-out", get(opt_out::form_page).post(opt_out::submit))
        .route("/opt-out/confirmation", get(opt_out::done))
        .route("/opt-back-in", get(opt_out::opt_in_page))
        .route(
            "/opt-out/code",
            get(opt_out::code_page).post(opt_out::code_submit),
        )
        .route("/app/opt-outs", get(opt_out::queue))
        .route(
            "/app/opt-outs/{reference}",
            get(opt_out::case).post(opt_out::decide),
        )
        .route("/app/matching", get(matching::queue))
        .route("/app/matching/decide", post(matching::decide))
        .route("/app/matching/local/decide", post(local_matching::decide))
        .route("/app/matching/local/{id}", get(local_matching::identity))
        .route("/app/matching/merges", get(merge::list))
        .route(
            "/app/matching/merge",
            get(merge::confirm).post(merge::merge),
        )
        .route(
            "/app/matching/merges/{id}/unmerge",
            get(merge::unmerge_confirm).post(merge::unmerge),
        )
        .route("/app/review", get(review::queue))
        .route("/app/review/{seq}", post(review::record_outcome))
        .route("/app/audit", get(review::search))
        .route("/app/sources", get(sources::page))
        .route("/my-record", get(patient::history))
        .route("/my-record/access-history.csv", get(patient::download))
        .route(
            "/my-record/choice",
            get(patient::choice_page).post(patient::choose),
        )
        .route(
            "/my-record/signin",
            get(patient::signin_page).post(patient::signin),
        )
        .route("/my-record/signin/callback", get(patient::callback))
        .route("/my-record/signout", post(patient::signout))
        .route("/favicon.ico", get(assets::favicon))
        .route("/assets/{*path}", get(assets::asset))
        .fallback(not_found)
}

/// What the shared layout (`base.html`) needs on every page.
#[derive(Debug, Clone, Default)]
pub(crate) struct Layout {
    /// The signed-in member of staff, shown in the header with a sign-out button.
    pub user: Option<UserBar>,
    /// Which part of the site the page belongs to, for the header links.
    pub staff: bool,
    /// Appended to our own asset URLs so a new build is never served a stale copy.
    pub asset_version: &'static str,
    /// The signed-in user's CSRF token, for every form that posts (empty when nobody is).
    pub csrf: String,
}

impl Layout {
    pub fn public() -> Self {
        Self {
            user: None,
            staff: false,
            asset_version: assets::version(),
            csrf: String::new(),
        }
    }

    pub fn staff(user: &PageUser) -> Self {
        let p = &user.0.principal;
        Self {
            user: Some(UserBar {
                name: p.name.clone(),
                role: p.role.label().to_owned(),
                organisation: p.organisation.name.clone(),
                privacy_officer: p.role == mcr_domain::Role::PrivacyOfficer,
                records_staff: matches!(
                    p.role,
                    mcr_domain::Role::PrivacyOfficer | mcr_domain::Role::Admin
                ),
                change_role: user.2 > 1,
            }),
            staff: true,
            asset_version: assets::version(),
            csrf: user.1.clone(),
        }
    }

    /// A staff page with nobody signed in (the sign-in page itself).
    pub fn staff_anonymous() -> Self {
        Self {
            user: None,
            staff: true,
            asset_version: assets::version(),
            csrf: String::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct UserBar {
    pub name: String,
    pub role: String,
    pub organisation: String,
    /// Shows the privacy officer's pages in the menu.
    pub privacy_officer: bool,
    /// Shows the patient matching queue in the menu (records staff and privacy officers).
    pub records_staff: bool,
    /// The user holds several CIS2 role profiles: the header offers to change role.
    pub change_role: bool,
}

/// Render a template, or a bare 500 if the template itself fails (it cannot leak anything).
/// Every page passes here, so this is where text that could read differently from what it
/// says (bidirectional control characters from a source) is neutralised.
pub(crate) fn render<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(html) => (status, Html(text::neutralise_bidi(html))).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong showing this page.",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    pub layout: Layout,
    pub heading: String,
    pub message: String,
    pub status: u16,
}

/// An HTML error page with the status and words of the error, never its internals.
pub(crate) fn error_page(layout: Layout, status: StatusCode, message: &str) -> Response {
    let heading = match status {
        StatusCode::NOT_FOUND => "Page or patient not found",
        StatusCode::FORBIDDEN => "You cannot do this",
        StatusCode::BAD_REQUEST => "There is a problem with the request",
        StatusCode::SERVICE_UNAVAILABLE => "Sorry, the service is unavailable",
        StatusCode::TOO_MANY_REQUESTS => "Too many requests",
        _ => "Sorry, there is a problem with the service",
    };
    let page = ErrorPage {
        layout,
        heading: heading.into(),
        message: message.to_owned(),
        status: status.as_u16(),
    };
    let mut resp = render(status, &page);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("5"),
        );
    }
    resp
}

/// A gateway error as an HTML page.
pub(crate) fn gateway_error(layout: Layout, e: GatewayError) -> Response {
    let api = ApiError::from(e);
    let mut resp = error_page(layout, api.status, &sentence_case(api.text()));
    if let Some(v) = api
        .retry_after
        .and_then(|s| axum::http::HeaderValue::from_str(&s.to_string()).ok())
    {
        resp.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, v);
    }
    resp
}

/// Gateway messages are written to follow a colon; a page shows them as a sentence.
pub(crate) fn sentence_case(s: &str) -> String {
    let mut chars = s.chars();
    let mut out: String = match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    if !out.ends_with(['.', '!', '?']) && !out.is_empty() {
        out.push('.');
    }
    out
}

pub(super) async fn not_found() -> Response {
    error_page(
        Layout::public(),
        StatusCode::NOT_FOUND,
        "If you typed the web address, check it is correct.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentence_case_capitalises_and_ends() {
        assert_eq!(
            sentence_case("no patient with that NHS number"),
            "No patient with that NHS number."
        );
        assert_eq!(sentence_case("Done."), "Done.");
        assert_eq!(sentence_case(""), "");
    }
}
