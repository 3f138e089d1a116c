//! Choosing the role to work in, as NHS CIS2 asks of a user with several role profiles: after
//! sign-in (until one is chosen nothing else is served), and again whenever they want to
//! change (`/signin/role`, linked from the header). Every profile the user holds is listed;
//! those that cannot be used here (not mapped to a role of this service, or at an
//! organisation that is not a member) are listed too, each with the reason, and counted. A
//! choice must be one of the user's own usable profiles: anything else (a forged form) is
//! refused with a sentence and audited. A choice starts a fresh session under a new cookie.

use super::{error_page, render, Layout};
use crate::auth::{audit_refusal, cookie, correlation_id, SESSION_COOKIE};
use crate::cis2::{classify, org_name};
use crate::sessions::Session;
use crate::AppState;
use askama::Template;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use mcr_gateway::AuthChannel;
use serde::Deserialize;

pub(crate) struct ProfileChoice {
    pub id: String,
    pub role_name: String,
    pub organisation: String,
    /// This service's role for it, when usable.
    pub role_here: Option<String>,
    /// Why it cannot be used, when not.
    pub reason: Option<String>,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "role.html")]
pub(crate) struct RolePage {
    pub layout: Layout,
    pub name: String,
    pub usable: Vec<ProfileChoice>,
    pub unusable: Vec<ProfileChoice>,
    pub error: Option<String>,
}

/// The signed-in user's session, whether or not they have chosen a role.
async fn session_of(state: &AppState, parts: &Parts) -> Option<(String, Session)> {
    let id = cookie(parts, SESSION_COOKIE)?;
    let s = state.sessions.touch(&id).await?;
    Some((id, s))
}

fn page(state: &AppState, s: &Session, error: Option<String>) -> RolePage {
    let Some(rules) = state.auth.cis2() else {
        return RolePage {
            layout: Layout::staff_anonymous(),
            name: s.identity.name.clone(),
            usable: Vec::new(),
            unusable: Vec::new(),
            error,
        };
    };
    let orgs = state.auth.organisations();
    let (mut usable, mut unusable) = (Vec::new(), Vec::new());
    for p in &s.identity.role_profiles {
        let c = classify(rules, orgs, p);
        let choice = ProfileChoice {
            id: p.id.clone(),
            role_name: p.role_name.clone(),
            organisation: org_name(orgs, &p.org_code),
            role_here: c.ok().map(|r| r.label().to_owned()),
            reason: c.err().map(|u| u.sentence().to_owned()),
            current: s.identity.role_profile.as_deref() == Some(p.id.as_str()),
        };
        if choice.reason.is_none() {
            usable.push(choice);
        } else {
            unusable.push(choice);
        }
    }
    let mut layout = Layout::staff_anonymous();
    layout.csrf = s.csrf.clone();
    RolePage {
        layout,
        name: s.identity.name.clone(),
        usable,
        unusable,
        error,
    }
}

pub(crate) async fn choose_page(State(state): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let Some((_, s)) = session_of(&state, &parts).await else {
        return Redirect::to("/signin").into_response();
    };
    if s.identity.role_profiles.is_empty() || state.auth.cis2().is_none() {
        return Redirect::to("/app").into_response();
    }
    render(StatusCode::OK, &page(&state, &s, None))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ChoiceForm {
    profile: String,
}

pub(crate) async fn choose(
    State(state): State<AppState>,
    parts: Parts,
    Form(form): Form<ChoiceForm>,
) -> Response {
    let Some((old_id, s)) = session_of(&state, &parts).await else {
        return Redirect::to("/signin").into_response();
    };
    let Some(rules) = state.auth.cis2() else {
        return Redirect::to("/app").into_response();
    };
    let cid = correlation_id(&parts);
    // Who is refused, when they were working in a role already.
    let current = state.auth.principal(&s.identity).ok();
    if form.profile.trim().is_empty() {
        return render(
            StatusCode::BAD_REQUEST,
            &page(
                &state,
                &s,
                Some("Select the role you are working in".into()),
            ),
        );
    }
    let Some(chosen) = s.identity.choose(form.profile.trim()) else {
        tracing::info!(reason = "role-profile-not-held", "role choice refused");
        audit_refusal(
            &state,
            &cid,
            AuthChannel::Role,
            "role-profile-not-held",
            current.as_ref(),
        )
        .await;
        return error_page(
            Layout::staff_anonymous(),
            StatusCode::FORBIDDEN,
            "That role profile is not one of yours: you can only work in a role your NHS Care Identity account holds. Go back and choose one of the roles listed.",
        );
    };
    let profile = chosen
        .selected_profile()
        .cloned()
        .expect("a chosen identity names a held profile");
    if let Err(u) = classify(rules, state.auth.organisations(), &profile) {
        tracing::info!(reason = u.code(), "role choice refused");
        audit_refusal(&state, &cid, AuthChannel::Role, u.code(), current.as_ref()).await;
        return error_page(
            Layout::staff_anonymous(),
            StatusCode::FORBIDDEN,
            u.sentence(),
        );
    }
    let Some(new_id) = state.sessions.create(chosen).await else {
        return error_page(
            Layout::staff_anonymous(),
            StatusCode::SERVICE_UNAVAILABLE,
            "The sign-in service is busy. Try again shortly.",
        );
    };
    state.sessions.end(&old_id).await;
    let max = state.sessions.limits().max.as_secs();
    super::session::with_session_cookie(Redirect::to("/app").into_response(), &state, &new_id, max)
}
