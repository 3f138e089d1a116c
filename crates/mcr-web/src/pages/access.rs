//! The access step: recording the patient's answer, emergency (break-glass) access, a
//! self-claimed care relationship, and the explanation of the decision rule by rule.
//! Every form is validated here and again by the gateway; errors come back in the error
//! summary with what was typed; success redirects (303) to the patient page.

use super::forms::{clean, Errors};
use super::record::path_nhs;
use super::{gateway_error, render, sentence_case, Layout, PageUser};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use mcr_domain::NhsNumber;
use mcr_gateway::{EmergencyRequest, GatewayError, PermissionRequest, RelationshipClaim};
use mcr_policy::{EmergencyReason, Rule};
use serde::Deserialize;

fn patient_url(nhs: &NhsNumber) -> String {
    format!("/app/patient/{}", nhs.as_str())
}

/// The answers a user can record, as `(value, decision, given_by, label, hint)`.
pub(crate) const ANSWERS: [(&str, &str, &str, &str, &str); 5] = [
    (
        "given-patient",
        "given",
        "patient",
        "The patient has given permission",
        "They said yes when you asked.",
    ),
    (
        "given-representative",
        "given",
        "representative",
        "Someone who can speak for the patient has given permission",
        "For example a parent, or someone with lasting power of attorney. A privacy officer reviews it.",
    ),
    (
        "given-best-interests",
        "given",
        "best-interests",
        "The patient cannot decide: viewing is in their best interests",
        "A best-interests decision under the Mental Capacity Act, made by a clinician. A privacy officer reviews it.",
    ),
    (
        "refused-patient",
        "refused",
        "patient",
        "The patient said no",
        "The record will not be shown until they are asked again and say yes.",
    ),
    (
        "refused-representative",
        "refused",
        "representative",
        "Their representative said no",
        "The record will not be shown until they are asked again and say yes.",
    ),
];

pub(crate) struct Choice {
    pub value: &'static str,
    pub label: &'static str,
    pub hint: &'static str,
}

#[derive(Template)]
#[template(path = "app/permission.html")]
pub(crate) struct PermissionPage {
    pub layout: Layout,
    pub nhs: String,
    pub nhs_formatted: String,
    pub errors: Errors,
    pub choices: Vec<Choice>,
    pub chosen: String,
    /// Grounds for an answer on the patient's behalf, by who answers.
    pub representative_reasons: Vec<ReasonChoice>,
    pub best_interests_reasons: Vec<ReasonChoice>,
    pub reason_code: String,
    pub reason_text: String,
}

fn on_behalf_choices(giver: mcr_policy::PermissionGiver) -> Vec<ReasonChoice> {
    mcr_policy::OnBehalfReason::for_giver(giver)
        .map(|r| ReasonChoice {
            value: r.as_str(),
            label: sentence_case(r.describe()),
        })
        .collect()
}

fn permission_view(
    user: &PageUser,
    nhs: &NhsNumber,
    errors: Errors,
    form: &PermissionForm,
) -> PermissionPage {
    PermissionPage {
        layout: Layout::staff(user),
        nhs: nhs.to_string(),
        nhs_formatted: nhs.formatted(),
        errors,
        choices: ANSWERS
            .iter()
            .map(|(value, _, _, label, hint)| Choice { value, label, hint })
            .collect(),
        chosen: clean(&form.answer),
        representative_reasons: on_behalf_choices(mcr_policy::PermissionGiver::Representative),
        best_interests_reasons: on_behalf_choices(mcr_policy::PermissionGiver::BestInterests),
        reason_code: clean(&form.reason_code),
        reason_text: form.reason_text.trim().to_owned(),
    }
}

pub(crate) async fn permission_options(user: PageUser, Path(raw): Path<String>) -> Response {
    match path_nhs(&user, &raw) {
        Ok(nhs) => render(
            StatusCode::OK,
            &permission_view(&user, &nhs, Errors::default(), &PermissionForm::default()),
        ),
        Err(resp) => *resp,
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct PermissionForm {
    #[serde(default)]
    answer: String,
    /// For an answer on the patient's behalf: its ground and the recorder's words.
    #[serde(default, rename = "reason-code")]
    reason_code: String,
    #[serde(default, rename = "reason-text")]
    reason_text: String,
}

/// A gateway refusal of a form: shown in the error summary against `field` when it is about
/// the input (invalid, forbidden), otherwise as an error page.
fn form_error(e: GatewayError, field: &str) -> Result<Errors, GatewayError> {
    match e {
        GatewayError::Invalid(m) | GatewayError::Forbidden(m) => {
            let mut errors = Errors::default();
            errors.add(field, sentence_case(&m).trim_end_matches('.'));
            Ok(errors)
        }
        other => Err(other),
    }
}

pub(crate) async fn permission(
    user: PageUser,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Form(form): Form<PermissionForm>,
) -> Response {
    let nhs = match path_nhs(&user, &raw) {
        Ok(n) => n,
        Err(resp) => return *resp,
    };
    let chosen = clean(&form.answer);
    let Some((_, decision, given_by, _, _)) = ANSWERS.iter().find(|a| a.0 == chosen) else {
        let mut errors = Errors::default();
        errors.add("answer", "Select the answer you were given");
        return render(
            StatusCode::BAD_REQUEST,
            &permission_view(&user, &nhs, errors, &form),
        );
    };
    let on_behalf = *given_by != "patient";
    let req = PermissionRequest {
        nhs_number: nhs.clone(),
        decision: (*decision).into(),
        given_by: (*given_by).into(),
        reason_code: on_behalf.then(|| clean(&form.reason_code)),
        reason_text: on_behalf.then(|| form.reason_text.trim().to_owned()),
    };
    // Checked here as the gateway will check it, to put each problem beside its own field.
    if let Err(problem) = mcr_gateway::check_permission_request(&req) {
        let field = match &problem {
            mcr_gateway::PermissionProblem::Answer(_) => "answer",
            mcr_gateway::PermissionProblem::ReasonCode(_) => "reason-code",
            mcr_gateway::PermissionProblem::ReasonText(_) => "reason-text",
        };
        let mut errors = Errors::default();
        errors.add(
            field,
            sentence_case(problem.sentence()).trim_end_matches('.'),
        );
        return render(
            StatusCode::BAD_REQUEST,
            &permission_view(&user, &nhs, errors, &form),
        );
    }
    match state.gateway.record_permission(&user.0, &req).await {
        Ok(_) => Redirect::to(&patient_url(&nhs)).into_response(),
        Err(e) => match form_error(e, "answer") {
            Ok(errors) => render(
                StatusCode::BAD_REQUEST,
                &permission_view(&user, &nhs, errors, &form),
            ),
            Err(e) => gateway_error(Layout::staff(&user), e),
        },
    }
}

pub(crate) struct ReasonChoice {
    pub value: &'static str,
    pub label: String,
}

#[derive(Template)]
#[template(path = "app/emergency.html")]
pub(crate) struct EmergencyPage {
    pub layout: Layout,
    pub nhs: String,
    pub nhs_formatted: String,
    pub errors: Errors,
    pub reasons: Vec<ReasonChoice>,
    pub chosen: String,
    pub reason_text: String,
}

fn emergency_view(
    user: &PageUser,
    nhs: &NhsNumber,
    errors: Errors,
    chosen: String,
    reason_text: String,
) -> EmergencyPage {
    EmergencyPage {
        layout: Layout::staff(user),
        nhs: nhs.to_string(),
        nhs_formatted: nhs.formatted(),
        errors,
        reasons: EmergencyReason::ALL
            .iter()
            .map(|r| ReasonChoice {
                value: r.as_str(),
                label: sentence_case(r.describe()).trim_end_matches('.').to_owned(),
            })
            .collect(),
        chosen,
        reason_text,
    }
}

pub(crate) async fn emergency_form(user: PageUser, Path(raw): Path<String>) -> Response {
    match path_nhs(&user, &raw) {
        Ok(nhs) => render(
            StatusCode::OK,
            &emergency_view(&user, &nhs, Errors::default(), String::new(), String::new()),
        ),
        Err(resp) => *resp,
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct EmergencyForm {
    #[serde(default)]
    reason: String,
    #[serde(default, rename = "reason-text")]
    reason_text: String,
}

/// Longest free-text reason accepted (the gateway's own limit, checked here first so the
/// message sits next to the field).
const MAX_REASON: usize = 1_000;

pub(crate) async fn emergency(
    user: PageUser,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Form(form): Form<EmergencyForm>,
) -> Response {
    let nhs = match path_nhs(&user, &raw) {
        Ok(n) => n,
        Err(resp) => return *resp,
    };
    let chosen = clean(&form.reason);
    let text = clean(&form.reason_text);
    let mut errors = Errors::default();
    if chosen.parse::<EmergencyReason>().is_err() {
        errors.add(
            "reason",
            "Select why you cannot ask the patient's permission",
        );
    }
    check_reason(&mut errors, "reason-text", &text, "Describe the emergency");
    if !errors.is_empty() {
        return render(
            StatusCode::BAD_REQUEST,
            &emergency_view(&user, &nhs, errors, chosen, text),
        );
    }
    let req = EmergencyRequest {
        nhs_number: nhs.clone(),
        reason_code: chosen.clone(),
        reason_text: text.clone(),
    };
    match state.gateway.emergency_access(&user.0, &req).await {
        Ok(_) => Redirect::to(&patient_url(&nhs)).into_response(),
        Err(e) => match form_error(e, "reason") {
            Ok(errors) => render(
                StatusCode::BAD_REQUEST,
                &emergency_view(&user, &nhs, errors, chosen, text),
            ),
            Err(e) => gateway_error(Layout::staff(&user), e),
        },
    }
}

fn check_reason(errors: &mut Errors, field: &str, text: &str, missing: &str) {
    if text.is_empty() {
        errors.add(field, missing);
    } else if text.chars().count() > MAX_REASON {
        errors.add(
            field,
            format!("The reason must be {MAX_REASON} characters or fewer"),
        );
    }
}

#[derive(Template)]
#[template(path = "app/relationship.html")]
pub(crate) struct ClaimPage {
    pub layout: Layout,
    pub nhs: String,
    pub nhs_formatted: String,
    pub errors: Errors,
    pub reason: String,
}

fn claim_view(user: &PageUser, nhs: &NhsNumber, errors: Errors, reason: String) -> ClaimPage {
    ClaimPage {
        layout: Layout::staff(user),
        nhs: nhs.to_string(),
        nhs_formatted: nhs.formatted(),
        errors,
        reason,
    }
}

pub(crate) async fn claim_form(user: PageUser, Path(raw): Path<String>) -> Response {
    match path_nhs(&user, &raw) {
        Ok(nhs) => render(
            StatusCode::OK,
            &claim_view(&user, &nhs, Errors::default(), String::new()),
        ),
        Err(resp) => *resp,
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ClaimForm {
    #[serde(default)]
    reason: String,
}

pub(crate) async fn claim(
    user: PageUser,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Form(form): Form<ClaimForm>,
) -> Response {
    let nhs = match path_nhs(&user, &raw) {
        Ok(n) => n,
        Err(resp) => return *resp,
    };
    let reason = clean(&form.reason);
    let mut errors = Errors::default();
    check_reason(
        &mut errors,
        "reason",
        &reason,
        "Say how you are involved in this person's care",
    );
    if !errors.is_empty() {
        return render(
            StatusCode::BAD_REQUEST,
            &claim_view(&user, &nhs, errors, reason),
        );
    }
    let req = RelationshipClaim {
        nhs_number: nhs.clone(),
        reason: reason.clone(),
        start: None,
        end: None,
    };
    match state.gateway.claim_relationship(&user.0, &req).await {
        Ok(_) => Redirect::to(&patient_url(&nhs)).into_response(),
        Err(e) => match form_error(e, "reason") {
            Ok(errors) => render(
                StatusCode::BAD_REQUEST,
                &claim_view(&user, &nhs, errors, reason),
            ),
            Err(e) => gateway_error(Layout::staff(&user), e),
        },
    }
}

pub(crate) struct StepView {
    pub rule: &'static str,
    pub passed: bool,
    pub sentence: String,
}

#[derive(Template)]
#[template(path = "app/explain.html")]
pub(crate) struct ExplainPage {
    pub layout: Layout,
    pub nhs: String,
    pub nhs_formatted: String,
    pub outcome: &'static str,
    pub sentence: String,
    pub steps: Vec<StepView>,
}

/// A rule's name for people.
pub(crate) fn rule_label(rule: Rule) -> &'static str {
    match rule {
        Rule::Purpose => "Purpose of use",
        Rule::OrganisationKind => "Kind of organisation",
        Rule::Membership => "Programme membership",
        Rule::Suspension => "Organisation not suspended",
        Rule::RoleClasses => "What your role may see",
        Rule::Objection => "Opt-out (objection)",
        Rule::Restriction => "Restricted record",
        Rule::Emergency => "Emergency access",
        Rule::Relationship => "Care relationship",
        Rule::Permission => "Permission to view",
    }
}

pub(crate) async fn explain(
    user: PageUser,
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Response {
    let nhs = match path_nhs(&user, &raw) {
        Ok(n) => n,
        Err(resp) => return *resp,
    };
    match state.gateway.explain(&user.0, &nhs).await {
        Ok(x) => render(
            StatusCode::OK,
            &ExplainPage {
                layout: Layout::staff(&user),
                nhs: nhs.to_string(),
                nhs_formatted: nhs.formatted(),
                outcome: x.decision.code(),
                sentence: x.decision.sentence(),
                steps: x
                    .steps
                    .iter()
                    .map(|s| StepView {
                        rule: rule_label(s.rule),
                        passed: s.passed,
                        sentence: s.sentence.clone(),
                    })
                    .collect(),
            },
        ),
        Err(e) => gateway_error(Layout::staff(&user), e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_is_one_the_gateway_accepts() {
        for (value, decision, given_by, _, _) in ANSWERS {
            assert!(["given", "refused"].contains(&decision), "{value}");
            assert!(
                ["patient", "representative", "best-interests"].contains(&given_by),
                "{value}"
            );
            assert_eq!(value, format!("{decision}-{given_by}"));
        }
        assert_eq!(ANSWERS[0].0, "given-patient", "the common case comes first");
    }

    #[test]
    fn reasons_are_checked_for_presence_and_length() {
        let mut e = Errors::default();
        check_reason(&mut e, "r", "", "Say why");
        assert_eq!(e.get("r"), Some("Say why"));
        let mut e = Errors::default();
        check_reason(&mut e, "r", &"x".repeat(MAX_REASON + 1), "Say why");
        assert!(e.has("r"));
        let mut e = Errors::default();
        check_reason(&mut e, "r", "Attending the patient in A&E", "Say why");
        assert!(e.is_empty());
    }
}
