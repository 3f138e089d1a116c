//! Opting out and back in: the public request forms (no sign-in), their confirmation with a
//! reference, and the staff queue where a privacy officer verifies a request against the
//! patient index (an opt-out becomes an objection in the register; an opt-in lifts it: the only
//! way an objection is lifted from the public site) or rejects it. The form is validated here field by
//! field (error summary, what was typed kept) and again by the gateway.
//!
//! This file: the public forms and their confirmation. `queue.rs`: the staff queue, a case
//! and its decision. `code.rs`: the public page for the code from the letter.

use super::forms::{clean, parse_birth_date, Errors};
use super::text::{human_day, human_time};
use super::{error_page, gateway_error, render, sentence_case, Layout, PageUser};
use crate::auth::correlation_id;
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use mcr_domain::demographics::normalise_postcode;
use mcr_domain::NhsNumber;
use mcr_gateway::{GatewayError, OptOutCase, OptOutKind, OptOutSubmission};
use mcr_store::{OptOutRequestRow, OptOutState};
use serde::Deserialize;

mod code;
mod queue;
#[cfg(test)]
mod tests;

pub(crate) use code::{code_page, code_submit};
pub(crate) use queue::{case, decide, queue};

/// Longest name, postcode or contact accepted (the gateway's own limit).
const MAX_TEXT: usize = mcr_gateway::MAX_OPT_OUT_FIELD;

/// The form as typed (kept to show again).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct OptOutForm {
    #[serde(default)]
    pub given: String,
    #[serde(default)]
    pub family: String,
    #[serde(default, rename = "dob-day")]
    pub dob_day: String,
    #[serde(default, rename = "dob-month")]
    pub dob_month: String,
    #[serde(default, rename = "dob-year")]
    pub dob_year: String,
    #[serde(default)]
    pub nhs: String,
    #[serde(default)]
    pub postcode: String,
    #[serde(default)]
    pub contact: String,
    /// `opt-in` to opt back in; anything else opts out.
    #[serde(default)]
    pub kind: String,
}

impl OptOutForm {
    fn kind(&self) -> OptOutKind {
        if self.kind == "opt-in" {
            OptOutKind::OptIn
        } else {
            OptOutKind::OptOut
        }
    }

    fn cleaned(&self) -> Self {
        Self {
            given: clean(&self.given),
            family: clean(&self.family),
            dob_day: clean(&self.dob_day),
            dob_month: clean(&self.dob_month),
            dob_year: clean(&self.dob_year),
            nhs: clean(&self.nhs),
            postcode: clean(&self.postcode),
            contact: clean(&self.contact),
            kind: self.kind().as_str().to_owned(),
        }
    }
}

/// Does this look like a UK postcode (outward code, space optional, inward code)?
fn looks_like_postcode(s: &str) -> bool {
    let p = normalise_postcode(s);
    let b = p.as_bytes();
    if !(5..=7).contains(&b.len()) {
        return false;
    }
    let (outward, inward) = b.split_at(b.len() - 3);
    inward[0].is_ascii_digit()
        && inward[1..].iter().all(u8::is_ascii_alphabetic)
        && outward[0].is_ascii_alphabetic()
        && outward.iter().all(u8::is_ascii_alphanumeric)
        && outward.iter().any(u8::is_ascii_digit)
}

/// `al13er` -> `AL1 3ER`.
fn display_postcode(s: &str) -> String {
    let p = normalise_postcode(s);
    match p.len().checked_sub(3) {
        Some(i) if i > 0 => format!("{} {}", &p[..i], &p[i..]),
        _ => p,
    }
}

fn text_field(errors: &mut Errors, field: &str, value: &str, empty: &str, what: &str) {
    if value.is_empty() {
        errors.add(field, empty);
    } else if value.chars().count() > MAX_TEXT {
        errors.add(
            field,
            format!("{what} must be {MAX_TEXT} characters or fewer"),
        );
    }
}

/// Validate the form into a submission, or say what is wrong with which field.
pub(crate) fn to_submission(
    form: &OptOutForm,
    today: chrono::NaiveDate,
) -> Result<OptOutSubmission, Errors> {
    let mut errors = Errors::default();
    text_field(
        &mut errors,
        "given",
        &form.given,
        "Enter your first name",
        "First name",
    );
    text_field(
        &mut errors,
        "family",
        &form.family,
        "Enter your last name",
        "Last name",
    );
    let birth_date = match parse_birth_date(&form.dob_day, &form.dob_month, &form.dob_year, today) {
        Ok(Some(d)) => Some(d),
        Ok(None) => {
            errors.add("dob-day", "Enter your date of birth");
            None
        }
        Err(p) => {
            errors.add(
                &format!("dob-{}", p.field_suffix()),
                p.message("Date of birth"),
            );
            None
        }
    };
    let nhs_number = if form.nhs.is_empty() {
        None
    } else {
        match NhsNumber::parse(&form.nhs) {
            Ok(n) => Some(n),
            Err(e) => {
                errors.add(
                    "nhs",
                    sentence_case(&e.to_string())
                        .trim_end_matches('.')
                        .to_owned(),
                );
                None
            }
        }
    };
    if form.postcode.is_empty() {
        errors.add("postcode", "Enter your postcode");
    } else if !looks_like_postcode(&form.postcode) {
        errors.add("postcode", "Enter a real postcode, like AL1 3ER");
    }
    text_field(
        &mut errors,
        "contact",
        &form.contact,
        "Enter an email address, phone number or postal address so we can tell you when it is done",
        "Contact details",
    );
    match (errors.is_empty(), birth_date) {
        (true, Some(birth_date)) => Ok(OptOutSubmission {
            kind: form.kind(),
            given_name: form.given.clone(),
            family_name: form.family.clone(),
            birth_date,
            nhs_number,
            postcode: display_postcode(&form.postcode),
            contact: form.contact.clone(),
        }),
        _ => Err(errors),
    }
}

#[derive(Template)]
#[template(path = "public/opt_out.html")]
pub(crate) struct OptOutPage {
    pub layout: Layout,
    pub form: OptOutForm,
    pub errors: Errors,
    /// The form to opt back in.
    pub opt_in: bool,
}

#[derive(Template)]
#[template(path = "public/opt_out_done.html")]
pub(crate) struct OptOutDone {
    pub layout: Layout,
    pub reference: String,
    pub opt_in: bool,
}

fn blank_form(kind: OptOutKind) -> Response {
    render(
        StatusCode::OK,
        &OptOutPage {
            layout: Layout::public(),
            form: OptOutForm {
                kind: kind.as_str().to_owned(),
                ..OptOutForm::default()
            },
            errors: Errors::default(),
            opt_in: kind == OptOutKind::OptIn,
        },
    )
}

pub(crate) async fn form_page() -> Response {
    blank_form(OptOutKind::OptOut)
}

/// `/opt-back-in`: the same checks as opting out, the other way.
pub(crate) async fn opt_in_page() -> Response {
    blank_form(OptOutKind::OptIn)
}

pub(crate) async fn submit(
    State(state): State<AppState>,
    parts: Parts,
    Form(form): Form<OptOutForm>,
) -> Response {
    let form = form.cleaned();
    let today = state.gateway.clock().now().date_naive();
    let sub = match to_submission(&form, today) {
        Ok(s) => s,
        Err(errors) => {
            return render(
                StatusCode::BAD_REQUEST,
                &OptOutPage {
                    layout: Layout::public(),
                    opt_in: form.kind() == OptOutKind::OptIn,
                    form,
                    errors,
                },
            )
        }
    };
    if let Err(e) = crate::security::limit_opt_out(&state, &parts, &sub).await {
        tracing::info!("opt-out request refused: rate limit");
        let wait = e.retry_after.unwrap_or(60);
        let mut resp = error_page(
            Layout::public(),
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "Too many opt-out requests have been sent from here, or for this person, in a short time, so this one was not sent. Wait {} and try again. You can also opt out by telling your GP practice, or by post to the address in the privacy notice.",
                if wait < 120 { format!("{wait} seconds") } else { format!("{} minutes", wait.div_ceil(60)) }
            ),
        );
        if let Ok(v) = axum::http::HeaderValue::from_str(&wait.to_string()) {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        return resp;
    }
    match state
        .gateway
        .submit_opt_out_request(&sub, &correlation_id(&parts))
        .await
    {
        Ok(reference) => Redirect::to(&format!(
            "/opt-out/confirmation?reference={reference}&kind={}",
            sub.kind.as_str()
        ))
        .into_response(),
        Err(GatewayError::Invalid(m)) => {
            let mut errors = Errors::default();
            errors.add("given", sentence_case(&m).trim_end_matches('.'));
            render(
                StatusCode::BAD_REQUEST,
                &OptOutPage {
                    layout: Layout::public(),
                    opt_in: form.kind() == OptOutKind::OptIn,
                    form,
                    errors,
                },
            )
        }
        Err(e) => gateway_error(Layout::public(), e),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct DoneQuery {
    #[serde(default)]
    reference: String,
    #[serde(default)]
    kind: String,
}

/// The confirmation shows the reference and what happens next; nothing the person typed.
pub(crate) async fn done(Query(q): Query<DoneQuery>) -> Response {
    let reference = mcr_gateway::normalise_reference(&q.reference);
    let plausible = reference.len() == 13
        && reference.starts_with("OPT-")
        && reference
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !plausible {
        return Redirect::to("/opt-out").into_response();
    }
    render(
        StatusCode::OK,
        &OptOutDone {
            layout: Layout::public(),
            reference,
            opt_in: q.kind == "opt-in",
        },
    )
}
