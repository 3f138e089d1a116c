//! Signing in and out of the pages. The token (from the demo buttons, a pasted token, or in
//! production the identity provider) is verified, then kept in an HttpOnly, SameSite=Strict
//! cookie; every staff page re-verifies it on each request.

use super::forms::{clean, Errors};
use super::{render, Layout};
use crate::auth::{correlation_id, token_from, SESSION_COOKIE};
use crate::AppState;
use askama::Template;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use mcr_gateway::RequestContext;
use serde::Deserialize;

/// How long a page session lasts (the token's own expiry still applies).
const SESSION_SECONDS: u32 = 8 * 60 * 60;

/// A signed-in member of staff on a page. Without a valid session the request is sent to the
/// sign-in page (303), never served.
#[derive(Debug, Clone)]
pub(crate) struct PageUser(pub RequestContext);

impl FromRequestParts<AppState> for PageUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(token) = token_from(parts) else {
            return Err(Redirect::to("/signin").into_response());
        };
        match state.auth.verify(&token) {
            Ok(principal) => Ok(PageUser(RequestContext { principal, correlation_id: correlation_id(parts) })),
            Err(e) => {
                tracing::info!(reason = %e, "page session rejected");
                // Clear the stale cookie on the way to the sign-in page.
                let mut resp = Redirect::to("/signin").into_response();
                if let Ok(v) = HeaderValue::from_str(&clear_cookie()) {
                    resp.headers_mut().insert(header::SET_COOKIE, v);
                }
                Err(resp)
            }
        }
    }
}

fn session_cookie(token: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={SESSION_SECONDS}{secure}")
}

fn clear_cookie() -> String {
    format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

pub(crate) struct DemoButton {
    pub user_id: String,
    pub label: String,
}

#[derive(Template)]
#[template(path = "signin.html")]
pub(crate) struct SigninPage {
    pub layout: Layout,
    pub errors: Errors,
    pub demo: Vec<DemoButton>,
    pub token: String,
}

fn signin_view(state: &AppState, errors: Errors, token: String) -> SigninPage {
    SigninPage {
        layout: Layout::staff_anonymous(),
        errors,
        demo: state
            .demo_logins
            .iter()
            .map(|d| DemoButton { user_id: d.user_id.clone(), label: d.label.clone() })
            .collect(),
        token,
    }
}

pub(crate) async fn signin_page(State(state): State<AppState>) -> Response {
    render(StatusCode::OK, &signin_view(&state, Errors::default(), String::new()))
}

#[derive(Debug, Deserialize)]
pub(crate) struct SigninForm {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    token: Option<String>,
}

pub(crate) async fn signin(State(state): State<AppState>, Form(form): Form<SigninForm>) -> Response {
    let mut errors = Errors::default();
    let typed = form.token.as_deref().map(clean).unwrap_or_default();
    let token = match form.user_id.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
        Some(user_id) => match state.demo_logins.iter().find(|d| d.user_id == user_id) {
            Some(d) => d.token.clone(),
            None => {
                errors.add("token", "That demo user is not available. Choose another, or paste a token");
                return render(StatusCode::BAD_REQUEST, &signin_view(&state, errors, typed));
            }
        },
        None => {
            // Tokens have no whitespace; people paste them with some.
            let t: String = typed.chars().filter(|c| !c.is_whitespace()).collect();
            if t.is_empty() {
                errors.add("token", "Enter your sign-in token");
                return render(StatusCode::BAD_REQUEST, &signin_view(&state, errors, typed));
            }
            t
        }
    };
    match state.auth.verify(&token) {
        Ok(principal) => {
            tracing::info!(user = %principal.user_id, "signed in to the pages");
            let mut resp = Redirect::to("/app").into_response();
            match HeaderValue::from_str(&session_cookie(&token, state.secure_cookies)) {
                Ok(v) => {
                    resp.headers_mut().insert(header::SET_COOKIE, v);
                    resp
                }
                Err(_) => {
                    errors.add("token", "That token contains characters a sign-in token never has");
                    render(StatusCode::BAD_REQUEST, &signin_view(&state, errors, typed))
                }
            }
        }
        Err(e) => {
            errors.add("token", format!("You could not be signed in: {e}"));
            render(StatusCode::UNAUTHORIZED, &signin_view(&state, errors, typed))
        }
    }
}

pub(crate) async fn signout() -> Response {
    let mut resp = Redirect::to("/signin").into_response();
    if let Ok(v) = HeaderValue::from_str(&clear_cookie()) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_locked_down() {
        let c = session_cookie("abc.def.ghi", true);
        assert!(c.starts_with("mcr_session=abc.def.ghi;"));
        for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800", "Secure"] {
            assert!(c.contains(part), "{c} lacks {part}");
        }
        assert!(!session_cookie("t", false).contains("Secure"));
        assert!(clear_cookie().contains("Max-Age=0"));
    }
}
