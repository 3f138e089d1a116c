//! Signing in and out of the pages with OpenID Connect (authorization code flow with PKCE).
//! `POST /signin` starts a sign-in: fresh state, nonce and verifier are kept server-side under
//! a short-lived `mcr_login` cookie, and the browser goes to the provider. The provider sends
//! it back to `GET /signin/callback`, where the state is compared, the code exchanged (with
//! the verifier and the client's secret) and the ID token validated; only then does a
//! server-side session start, under a new random `mcr_session` cookie. Every failure is
//! audited and shown as a sign-in error, never with the provider's own words.

use super::forms::Errors;
use super::{error_page, render, Layout};
use crate::auth::{
    audit_refusal, cookie, correlation_id, is_record_view, AuthError, SESSION_COOKIE,
};
use crate::sessions::LOGIN_SECONDS;
use crate::{ApiError, AppState};
use askama::Template;
use axum::extract::{FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use mcr_gateway::AuthChannel;
use mcr_gateway::RequestContext;
use mcr_oidc::{OidcError, RbacError, Rejection};
use serde::Deserialize;

/// The cookie holding a sign-in in progress.
const LOGIN_COOKIE: &str = "mcr_login";

/// A signed-in member of staff on a page, their session's CSRF token, and how many CIS2 role
/// profiles they hold (more than one: they may change role). Without a live session the
/// request is sent to the sign-in page (303), never served; a CIS2 user who holds several
/// role profiles and has not chosen one is sent to choose.
#[derive(Debug, Clone)]
pub(crate) struct PageUser(pub RequestContext, pub(crate) String, pub(crate) usize);

impl FromRequestParts<AppState> for PageUser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(id) = cookie(parts, SESSION_COOKIE) else {
            return Err(Redirect::to("/signin").into_response());
        };
        let Some(session) = state.sessions.touch(&id).await else {
            // Expired, signed out, or never ours: clear it on the way to the sign-in page.
            return Err(with_cookie(
                Redirect::to("/signin").into_response(),
                &clear(SESSION_COOKIE, "/"),
            ));
        };
        let principal = match state.auth.principal(&session.identity) {
            Ok(p) => p,
            Err(AuthError::RoleNotChosen) => {
                return Err(Redirect::to("/signin/role").into_response());
            }
            Err(e) => {
                tracing::info!(reason = e.code(), "page session refused");
                state.sessions.end(&id).await;
                return Err(with_cookie(
                    Redirect::to("/signin").into_response(),
                    &clear(SESSION_COOKIE, "/"),
                ));
            }
        };
        crate::refusals::Who::set(parts, &principal.user_id);
        let user = PageUser(
            RequestContext {
                principal,
                correlation_id: correlation_id(parts),
                system: None,
            },
            session.csrf,
            session.identity.role_profiles.len(),
        );
        let ctx = &user.0;
        if is_record_view(&parts.method, parts.uri.path()) {
            if let Err(need) = state.auth.check_assurance(&session.identity) {
                tracing::info!(reason = "assurance-too-low", "record view refused");
                audit_refusal(
                    state,
                    &ctx.correlation_id,
                    AuthChannel::Assurance,
                    "assurance-too-low",
                    Some(&ctx.principal),
                )
                .await;
                return Err(error_page(
                    Layout::staff(&user),
                    StatusCode::FORBIDDEN,
                    &crate::cis2::assurance_sentence(session.identity.assurance, need),
                ));
            }
        }
        if parts.uri.path() == "/app" && parts.uri.query().is_some_and(|q| !q.is_empty()) {
            if let Err(e) = crate::security::limit_search(state, &ctx.principal.user_id).await {
                return Err(too_many(e));
            }
        }
        Ok(user)
    }
}

/// A 429 as a page, with `Retry-After`.
pub(super) fn too_many(e: ApiError) -> Response {
    let mut resp = error_page(
        Layout::staff_anonymous(),
        StatusCode::TOO_MANY_REQUESTS,
        e.text(),
    );
    if let Some(v) = e
        .retry_after
        .and_then(|s| HeaderValue::from_str(&s.to_string()).ok())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

pub(super) fn secure(state: &AppState) -> &'static str {
    if state.secure_cookies {
        "; Secure"
    } else {
        ""
    }
}

pub(super) fn session_cookie(id: &str, max_age: u64, secure: &str) -> String {
    format!("{SESSION_COOKIE}={id}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age}{secure}")
}

/// `resp` with a new page session's cookie.
pub(crate) fn with_session_cookie(
    resp: Response,
    state: &AppState,
    id: &str,
    max: u64,
) -> Response {
    with_cookie(resp, &session_cookie(id, max, secure(state)))
}

fn login_cookie(id: &str, secure: &str) -> String {
    format!("{LOGIN_COOKIE}={id}; HttpOnly; SameSite=Lax; Path=/signin; Max-Age={LOGIN_SECONDS}{secure}")
}

pub(super) fn clear(name: &str, path: &str) -> String {
    format!("{name}=; HttpOnly; SameSite=Lax; Path={path}; Max-Age=0")
}

pub(super) fn with_cookie(mut resp: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

#[derive(Template)]
#[template(path = "signin.html")]
pub(crate) struct SigninPage {
    pub layout: Layout,
    pub errors: Errors,
}

fn signin_with_error(status: StatusCode, message: &str) -> Response {
    let mut errors = Errors::default();
    errors.add("signin", message);
    let resp = render(
        status,
        &SigninPage {
            layout: Layout::staff_anonymous(),
            errors,
        },
    );
    with_cookie(resp, &clear(LOGIN_COOKIE, "/signin"))
}

pub(crate) async fn signin_page() -> Response {
    render(
        StatusCode::OK,
        &SigninPage {
            layout: Layout::staff_anonymous(),
            errors: Errors::default(),
        },
    )
}

/// Start a sign-in at the provider.
pub(crate) async fn signin(State(state): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    if let Err(e) = crate::security::limit_signin(&state, &parts).await {
        return too_many(e);
    }
    let auth = match state.auth.relying_party().begin().await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start a sign-in");
            return signin_with_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The sign-in service is not available. Try again shortly",
            );
        }
    };
    let Some(id) = state
        .sessions
        .begin_login(auth.state, auth.nonce, auth.verifier)
        .await
    else {
        return signin_with_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "The sign-in service is busy. Try again shortly",
        );
    };
    with_cookie(
        Redirect::to(&auth.url).into_response(),
        &login_cookie(&id, secure(&state)),
    )
}

/// What an OpenID provider sends back to a callback (a staff sign-in's, a launch's at either
/// provider, a patient's NHS login): its code, the state it was sent with, or its error.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
}

/// The provider sends the browser back here.
pub(crate) async fn callback(
    State(state): State<AppState>,
    Query(q): Query<CallbackQuery>,
    req: Request,
) -> Response {
    let (parts, _) = req.into_parts();
    let cid = correlation_id(&parts);
    let refuse = |reason: &'static str, status: StatusCode, message: &'static str| {
        let (state, cid) = (state.clone(), cid.clone());
        async move {
            tracing::info!(reason, "sign-in refused");
            audit_refusal(&state, &cid, AuthChannel::SignIn, reason, None).await;
            signin_with_error(status, message)
        }
    };
    let pending = match cookie(&parts, LOGIN_COOKIE) {
        Some(id) => state.sessions.take_login(&id).await,
        None => None,
    };
    let Some(pending) = pending else {
        // Nobody is known: limited per address. A return with a sign-in in progress was
        // limited when it started, and is limited per user once the provider says who.
        if let Err(e) = crate::security::limit_signin(&state, &parts).await {
            return too_many(e);
        }
        return refuse(
            "no-sign-in-in-progress",
            StatusCode::BAD_REQUEST,
            "Your sign-in took too long or was started elsewhere. Sign in again",
        )
        .await;
    };
    if q.error.is_some() {
        return refuse(
            "provider-refused",
            StatusCode::UNAUTHORIZED,
            "Your organisation's sign-in did not let you in. Sign in again",
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
            StatusCode::BAD_REQUEST,
            "This sign-in was not started here. Sign in again",
        )
        .await;
    }
    let Some(code) = q.code.filter(|c| !c.is_empty() && c.len() <= 2048) else {
        return refuse(
            "no-code",
            StatusCode::BAD_REQUEST,
            "The sign-in did not complete. Sign in again",
        )
        .await;
    };
    let rp = state.auth.relying_party();
    let tokens = match rp.exchange(&code, &pending.verifier).await {
        Ok(t) => t,
        Err(OidcError::Refused(_)) => {
            return refuse(
                "code-refused",
                StatusCode::UNAUTHORIZED,
                "Your sign-in could not be completed. Sign in again",
            )
            .await;
        }
        Err(e) => {
            tracing::warn!(error = %e, "token exchange failed");
            return refuse(
                "provider-unavailable",
                StatusCode::SERVICE_UNAVAILABLE,
                "The sign-in service is not available. Try again shortly",
            )
            .await;
        }
    };
    let identity = match rp.sign_in_identity(&tokens, &pending.nonce).await {
        Ok(i) => i,
        Err(OidcError::Token(Rejection::Rbac(e))) => {
            // The national RBAC claims: say what is wrong with them (never a token's text).
            tracing::info!(reason = e.code(), "sign-in refused");
            audit_refusal(&state, &cid, AuthChannel::SignIn, e.code(), None).await;
            let message = match &e {
                RbacError::NotHeld(_) => "The role selected at sign-in is not one your NHS Care Identity account holds. Sign in again and choose one of your roles".to_owned(),
                other => format!("Your NHS Care Identity roles could not be read: {other}. Contact your Registration Authority"),
            };
            return signin_with_error(StatusCode::FORBIDDEN, &message);
        }
        Err(OidcError::Token(r)) => {
            return refuse(
                r.code(),
                StatusCode::UNAUTHORIZED,
                "Your sign-in could not be checked. Sign in again",
            )
            .await;
        }
        Err(e) => {
            tracing::warn!(error = %e, "ID token could not be checked");
            return refuse(
                "provider-unavailable",
                StatusCode::SERVICE_UNAVAILABLE,
                "The sign-in service is not available. Try again shortly",
            )
            .await;
        }
    };
    match state.auth.principal(&identity) {
        Ok(_) => {}
        // Several role profiles: the user chooses once signed in, if any can be used here.
        Err(AuthError::RoleNotChosen) if usable_profiles(&state, &identity) > 0 => {}
        Err(AuthError::RoleNotChosen) => {
            return refuse(
                "no-usable-role-profile",
                StatusCode::FORBIDDEN,
                "None of your roles can be used in My Care Record: each is at an organisation that is not a member, or is a role that cannot use it",
            )
            .await;
        }
        Err(AuthError::Unusable(u)) => {
            tracing::info!(reason = u.code(), "sign-in refused");
            audit_refusal(&state, &cid, AuthChannel::SignIn, u.code(), None).await;
            return signin_with_error(StatusCode::FORBIDDEN, u.sentence().trim_end_matches('.'));
        }
        Err(e) => {
            return refuse(
                e.code(),
                StatusCode::FORBIDDEN,
                "Your account's role cannot use My Care Record",
            )
            .await;
        }
    }
    if let Err(e) = crate::security::limit_signin_user(&state, &identity.user_id).await {
        return too_many(e);
    }
    let user = identity.user_id.clone();
    let Some(id) = state.sessions.create(identity).await else {
        return signin_with_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "The sign-in service is busy. Try again shortly",
        );
    };
    tracing::info!(user = %user, "signed in to the pages");
    let max = state.sessions.limits().max.as_secs();
    let resp = with_cookie(
        Redirect::to("/app").into_response(),
        &session_cookie(&id, max, secure(&state)),
    );
    with_cookie(resp, &clear(LOGIN_COOKIE, "/signin"))
}

/// How many of an identity's CIS2 role profiles can be used here.
fn usable_profiles(state: &AppState, id: &mcr_oidc::Identity) -> usize {
    state.auth.cis2().map_or(0, |rules| {
        id.role_profiles
            .iter()
            .filter(|p| crate::cis2::classify(rules, state.auth.organisations(), p).is_ok())
            .count()
    })
}

/// Sign out: the session ends here, not just in the browser.
pub(crate) async fn signout(State(state): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    if let Some(id) = cookie(&parts, SESSION_COOKIE) {
        state.sessions.end(&id).await;
    }
    with_cookie(
        Redirect::to("/signin").into_response(),
        &clear(SESSION_COOKIE, "/"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_locked_down() {
        let c = session_cookie("abc", 36000, "; Secure");
        assert!(c.starts_with("mcr_session=abc;"));
        for part in [
            "HttpOnly",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=36000",
            "Secure",
        ] {
            assert!(c.contains(part), "{c} lacks {part}");
        }
        assert!(!session_cookie("t", 1, "").contains("Secure"));
        let l = login_cookie("x", "");
        assert!(
            l.contains("Path=/signin") && l.contains("HttpOnly") && l.contains("Max-Age=600"),
            "{l}"
        );
        assert!(clear(SESSION_COOKIE, "/").contains("Max-Age=0"));
    }
}
