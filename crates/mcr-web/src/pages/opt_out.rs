//! Opting out and back in: the public request forms (no sign-in), their confirmation with a
//! reference, and the staff queue where a privacy officer verifies a request against the
//! patient index (an opt-out becomes an objection in the register; an opt-in lifts it: the only
//! way an objection is lifted from the public site) or rejects it. The form is validated here field by
//! field (error summary, what was typed kept) and again by the gateway.

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

// ---------------------------------------------------------------------------------------------
// The staff queue.

pub(crate) struct RequestRow {
    pub reference: String,
    /// What the person asks: "Opt out" or "Opt back in".
    pub asks: &'static str,
    pub received: String,
    pub name: String,
    pub birth_date: String,
    pub state: String,
    pub state_tag: &'static str,
    pub outcome: String,
}

fn state_words(s: OptOutState, kind: OptOutKind) -> (&'static str, &'static str) {
    match (s, kind) {
        (OptOutState::Received, _) => ("Waiting", "nhsuk-tag--yellow"),
        (OptOutState::Verified, OptOutKind::OptOut) => {
            ("Verified: objection recorded", "nhsuk-tag--green")
        }
        (OptOutState::Verified, OptOutKind::OptIn) => {
            ("Verified: objection lifted", "nhsuk-tag--green")
        }
        (OptOutState::Rejected, _) => ("Rejected", "nhsuk-tag--grey"),
    }
}

fn row(r: &OptOutRequestRow) -> RequestRow {
    let (state, state_tag) = state_words(r.state, r.kind);
    RequestRow {
        reference: r.reference.clone(),
        asks: match r.kind {
            OptOutKind::OptOut => "Opt out",
            OptOutKind::OptIn => "Opt back in",
        },
        received: human_time(&r.received_at),
        name: format!("{} {}", r.given_name, r.family_name),
        birth_date: human_day(r.birth_date),
        state: state.into(),
        state_tag,
        outcome: match (r.state, &r.matched_nhs) {
            (OptOutState::Verified, Some(n)) => format!("Matched to NHS number {}", n.formatted()),
            _ => r.decision_note.clone().unwrap_or_default(),
        },
    }
}

#[derive(Template)]
#[template(path = "app/opt_outs.html")]
pub(crate) struct QueuePage {
    pub layout: Layout,
    pub waiting: Vec<RequestRow>,
    pub decided: Vec<RequestRow>,
}

pub(crate) async fn queue(user: PageUser, State(state): State<AppState>) -> Response {
    match state.gateway.opt_out_requests(&user.0, None).await {
        Ok(list) => {
            let (waiting, mut decided): (Vec<_>, Vec<_>) =
                list.iter().partition(|r| r.state == OptOutState::Received);
            decided.sort_by_key(|r| std::cmp::Reverse(r.decided_at));
            render(
                StatusCode::OK,
                &QueuePage {
                    layout: Layout::staff(&user),
                    waiting: waiting.into_iter().map(row).collect(),
                    decided: decided.into_iter().take(50).map(row).collect(),
                },
            )
        }
        Err(e) => gateway_error(Layout::staff(&user), e),
    }
}

pub(crate) struct CandidateRow {
    pub nhs: String,
    pub nhs_formatted: String,
    pub name: String,
    pub birth_date: String,
    pub postcode: String,
    pub basis: &'static str,
}

#[derive(Template)]
#[template(path = "app/opt_out_case.html")]
pub(crate) struct CasePage {
    pub layout: Layout,
    pub request: RequestRow,
    pub nhs_given: String,
    pub postcode: String,
    pub contact: String,
    pub waiting: bool,
    pub candidates: Vec<CandidateRow>,
    pub warnings: Vec<String>,
    pub errors: Errors,
    pub chosen: String,
    pub note: String,
    /// The verification letter, once sent.
    pub letter: Option<LetterView>,
}

/// A verification letter on the case page.
pub(crate) struct LetterView {
    pub sent: String,
    pub sent_to: String,
    pub wrong_attempts: i64,
    pub max_wrong: i64,
    /// The demo only, right after sending: what the letter says (nothing is posted).
    pub demo_code: Option<String>,
}

fn letter_view(l: &mcr_store::OptOutLetterRow, demo_code: Option<String>) -> LetterView {
    LetterView {
        sent: human_time(&l.sent_at),
        sent_to: l.sent_to.clone(),
        wrong_attempts: l.wrong_attempts,
        max_wrong: mcr_gateway::MAX_WRONG_CODES,
        demo_code,
    }
}

/// The case page for `reference` with its letter, with `errors`.
async fn case_page(
    state: &AppState,
    user: &PageUser,
    reference: &str,
    errors: Errors,
    chosen: String,
    note: String,
    demo_code: Option<String>,
) -> Response {
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let case = match state.gateway.opt_out_case(&user.0, reference).await {
        Ok(case) => case,
        Err(GatewayError::Invalid(m)) => {
            return super::error_page(Layout::staff(user), StatusCode::NOT_FOUND, &m)
        }
        Err(e) => return gateway_error(Layout::staff(user), e),
    };
    let letter = match state.gateway.opt_out_letter(reference).await {
        Ok(l) => l,
        Err(e) => return gateway_error(Layout::staff(user), e),
    };
    let mut page = case_view(user, &case, errors, chosen, note);
    page.letter = letter.as_ref().map(|l| letter_view(l, demo_code));
    render(status, &page)
}

fn case_view(
    user: &PageUser,
    case: &OptOutCase,
    errors: Errors,
    chosen: String,
    note: String,
) -> CasePage {
    let r = &case.request;
    CasePage {
        layout: Layout::staff(user),
        request: row(r),
        nhs_given: r
            .nhs_number
            .as_ref()
            .map_or_else(|| "Not given".into(), NhsNumber::formatted),
        // The request's postcode may be where a restricted patient lives.
        postcode: if case.location_withheld {
            super::search::WITHHELD.into()
        } else {
            r.postcode.clone()
        },
        contact: r.contact.clone(),
        waiting: r.state == OptOutState::Received,
        candidates: case
            .candidates
            .iter()
            .map(|c| CandidateRow {
                nhs: c.patient.nhs_number.to_string(),
                nhs_formatted: c.patient.nhs_number.formatted(),
                name: format!("{} {}", c.patient.given, c.patient.family),
                birth_date: human_day(c.patient.birth_date),
                postcode: if c.restricted {
                    super::search::WITHHELD.into()
                } else {
                    c.patient
                        .postcode
                        .clone()
                        .unwrap_or_else(|| "Not recorded".into())
                },
                basis: c.basis.describe(),
            })
            .collect(),
        warnings: case.warnings.clone(),
        errors,
        chosen,
        note,
        letter: None,
    }
}

pub(crate) async fn case(
    user: PageUser,
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> Response {
    case_page(
        &state,
        &user,
        &reference,
        Errors::default(),
        String::new(),
        String::new(),
        None,
    )
    .await
}

#[derive(Debug, Deserialize)]
pub(crate) struct DecideForm {
    /// `verify` or `reject`.
    #[serde(default)]
    action: String,
    /// The NHS number to verify against.
    #[serde(default)]
    patient: String,
    #[serde(default)]
    note: String,
    /// The code from the letter, read out by the person.
    #[serde(default)]
    code: String,
}

pub(crate) async fn decide(
    user: PageUser,
    State(state): State<AppState>,
    Path(reference): Path<String>,
    Form(form): Form<DecideForm>,
) -> Response {
    let (chosen, note) = (clean(&form.patient), clean(&form.note));
    match form.action.as_str() {
        "send-letter" => return send_letter(&state, &user, &reference, chosen).await,
        "confirm-code" => return confirm_code(&state, &user, &reference, &form.code).await,
        _ => {}
    }
    let result = match form.action.as_str() {
        "verify" => match NhsNumber::parse(&chosen) {
            Ok(nhs) => state
                .gateway
                .verify_opt_out_request(&user.0, &reference, &nhs)
                .await
                .map_err(|e| (e, "patient")),
            Err(_) => Err((
                GatewayError::Invalid("Select the patient this request is from".into()),
                "patient",
            )),
        },
        "reject" => state
            .gateway
            .reject_opt_out_request(&user.0, &reference, &note)
            .await
            .map_err(|e| (e, "note")),
        _ => Err((
            GatewayError::Invalid("Choose to verify or to reject the request".into()),
            "patient",
        )),
    };
    match result {
        Ok(_) => Redirect::to(&format!(
            "/app/opt-outs/{}",
            mcr_gateway::normalise_reference(&reference)
        ))
        .into_response(),
        Err((GatewayError::Invalid(m), field)) => {
            match state.gateway.opt_out_case(&user.0, &reference).await {
                Ok(case) => {
                    let mut errors = Errors::default();
                    errors.add(field, sentence_case(&m).trim_end_matches('.'));
                    render(
                        StatusCode::BAD_REQUEST,
                        &case_view(&user, &case, errors, chosen, note),
                    )
                }
                Err(e) => gateway_error(Layout::staff(&user), e),
            }
        }
        Err((e, _)) => gateway_error(Layout::staff(&user), e),
    }
}

/// Send the verification letter to the chosen patient's registered address; the page then
/// says it was sent (and, in the demo only, what it says, since nothing is posted).
async fn send_letter(
    state: &AppState,
    user: &PageUser,
    reference: &str,
    chosen: String,
) -> Response {
    let Ok(nhs) = NhsNumber::parse(&chosen) else {
        let mut errors = Errors::default();
        errors.add("patient", "Select the patient this request is from");
        return case_page(state, user, reference, errors, chosen, String::new(), None).await;
    };
    match state
        .gateway
        .send_opt_out_letter(&user.0, reference, &nhs)
        .await
    {
        Ok(letter) => {
            let code = state.patients.is_demo().then_some(letter.code);
            case_page(
                state,
                user,
                reference,
                Errors::default(),
                chosen,
                String::new(),
                code,
            )
            .await
        }
        Err(GatewayError::Invalid(m)) => {
            let mut errors = Errors::default();
            errors.add("patient", sentence_case(&m).trim_end_matches('.'));
            case_page(state, user, reference, errors, chosen, String::new(), None).await
        }
        Err(e) => gateway_error(Layout::staff(user), e),
    }
}

/// The person phoned with the code from the letter: enter it to record the objection.
async fn confirm_code(state: &AppState, user: &PageUser, reference: &str, code: &str) -> Response {
    match state
        .gateway
        .confirm_opt_out_code(&user.0, reference, code)
        .await
    {
        Ok(_) => Redirect::to(&format!(
            "/app/opt-outs/{}",
            mcr_gateway::normalise_reference(reference)
        ))
        .into_response(),
        Err(GatewayError::Invalid(m)) => {
            let mut errors = Errors::default();
            errors.add("code", sentence_case(&m).trim_end_matches('.'));
            case_page(
                state,
                user,
                reference,
                errors,
                String::new(),
                String::new(),
                None,
            )
            .await
        }
        Err(e) => gateway_error(Layout::staff(user), e),
    }
}

// ---------------------------------------------------------------------------------------------
// The public page for the code from the letter.

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct CodeForm {
    #[serde(default)]
    pub reference: String,
    #[serde(default)]
    pub code: String,
}

#[derive(Template)]
#[template(path = "public/opt_out_code.html")]
pub(crate) struct CodePage {
    pub layout: Layout,
    pub form: CodeForm,
    pub errors: Errors,
    /// What the confirmed request asked for, once the code has matched.
    pub done: Option<mcr_store::OptOutKind>,
}

impl CodePage {
    /// Whether the confirmed request was to opt back in.
    fn opted_in(&self) -> bool {
        self.done == Some(mcr_store::OptOutKind::OptIn)
    }
}

pub(crate) async fn code_page() -> Response {
    render(
        StatusCode::OK,
        &CodePage {
            layout: Layout::public(),
            form: CodeForm::default(),
            errors: Errors::default(),
            done: None,
        },
    )
}

pub(crate) async fn code_submit(
    State(state): State<AppState>,
    parts: Parts,
    Form(form): Form<CodeForm>,
) -> Response {
    let form = CodeForm {
        reference: clean(&form.reference),
        code: clean(&form.code),
    };
    let page = |status, errors: Errors, done| {
        render(
            status,
            &CodePage {
                layout: Layout::public(),
                form: form.clone(),
                errors,
                done,
            },
        )
    };
    let mut errors = Errors::default();
    if form.reference.is_empty() {
        errors.add(
            "reference",
            "Enter the reference you were given, for example OPT-7K3M-9QXD",
        );
    }
    if form.code.is_empty() {
        errors.add("code", "Enter the code from the letter");
    }
    if !errors.is_empty() {
        return page(StatusCode::BAD_REQUEST, errors, None);
    }
    if let Err(e) = crate::security::limit_opt_out_code(&state, &parts).await {
        let wait = e.retry_after.unwrap_or(60);
        let mut resp = error_page(
            Layout::public(),
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many codes have been tried from here in a short time. Wait {wait} seconds and try again."),
        );
        if let Ok(v) = axum::http::HeaderValue::from_str(&wait.to_string()) {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        return resp;
    }
    match state
        .gateway
        .confirm_opt_out_code_public(&form.reference, &form.code, &correlation_id(&parts))
        .await
    {
        Ok(kind) => page(StatusCode::OK, Errors::default(), Some(kind)),
        Err(GatewayError::Invalid(m)) => {
            let mut errors = Errors::default();
            errors.add("code", sentence_case(&m).trim_end_matches('.'));
            page(StatusCode::BAD_REQUEST, errors, None)
        }
        Err(e) => gateway_error(Layout::public(), e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> chrono::NaiveDate {
        chrono::NaiveDate::from_ymd_opt(2026, 6, 1).unwrap_or_default()
    }

    fn filled() -> OptOutForm {
        OptOutForm {
            given: "Ann".into(),
            family: "Smith".into(),
            dob_day: "2".into(),
            dob_month: "3".into(),
            dob_year: "1970".into(),
            nhs: String::new(),
            postcode: "al1 3er".into(),
            contact: "ann@example.org".into(),
            kind: String::new(),
        }
    }

    #[test]
    fn postcodes_are_checked_for_shape() {
        for ok in ["AL1 3ER", "al13er", "SW1A 1AA", "M1 1AE", "CR2 6XH"] {
            assert!(looks_like_postcode(ok), "{ok}");
        }
        for bad in [
            "", "12345", "AL1", "AL1 3E", "ALL 3ER", "AL1 33R", "<script>",
        ] {
            assert!(!looks_like_postcode(bad), "{bad}");
        }
    }

    #[test]
    fn a_complete_form_becomes_a_submission() {
        let sub = to_submission(&filled(), today()).expect("valid");
        assert_eq!(sub.postcode, "AL1 3ER");
        assert_eq!(sub.nhs_number, None);
        let with_nhs = OptOutForm {
            nhs: "943 476 5919".into(),
            ..filled()
        };
        assert_eq!(
            to_submission(&with_nhs, today())
                .expect("valid")
                .nhs_number
                .map(|n| n.to_string())
                .as_deref(),
            Some("9434765919")
        );
    }

    #[test]
    fn each_missing_or_wrong_field_names_itself() {
        let empty = to_submission(&OptOutForm::default(), today()).expect_err("empty");
        for field in ["given", "family", "dob-day", "postcode", "contact"] {
            assert!(empty.has(field), "{field}: {empty:?}");
        }
        assert!(!empty.has("nhs"), "the NHS number is optional");
        let bad_nhs = to_submission(
            &OptOutForm {
                nhs: "9434765918".into(),
                ..filled()
            },
            today(),
        )
        .expect_err("check digit");
        assert!(bad_nhs.has("nhs"));
        let long = to_submission(
            &OptOutForm {
                family: "x".repeat(MAX_TEXT + 1),
                ..filled()
            },
            today(),
        )
        .expect_err("long");
        assert!(long.has("family"));
        let future = to_submission(
            &OptOutForm {
                dob_year: "2030".into(),
                ..filled()
            },
            today(),
        )
        .expect_err("future");
        assert_eq!(
            future.get("dob-day"),
            Some("Date of birth must be in the past")
        );
    }
}
