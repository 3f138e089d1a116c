//! The public page where a person enters the code from the verification letter.

use super::*;

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
