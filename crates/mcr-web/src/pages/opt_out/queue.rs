//! The staff queue of opt-out and opt-in requests: the list, a case (the request beside the
//! index's candidates, the letters sent) and the privacy officer's decision.

use super::*;

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
            crate::pages::search::WITHHELD.into()
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
                    crate::pages::search::WITHHELD.into()
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
