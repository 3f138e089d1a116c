//! The patient's own choice to share their record or opt out, in force at once.

use super::SignedInPatient;
use crate::pages::{gateway_error, render, Layout};
use crate::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use mcr_gateway::{OptOutKind, Sharing};
use serde::Deserialize;

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
