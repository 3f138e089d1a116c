//! Discovery, the key set and the authorization endpoint: the sign-in page that lists the
//! demo users (or, for NHS login, the demo patients) and issues a code.

use super::*;

pub(crate) async fn discovery(State(idp): State<Arc<Idp>>) -> Response {
    let iss = &idp.config.issuer;
    Json(json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "jwks_uri": format!("{iss}/jwks"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "scopes_supported": ["openid", "profile", "user/*.read", "patient/*.read", "user/Consent.write"],
        "claims_supported": ["sub", "name", "role", "org", "nonce", "nhsid_nrbac_roles", "acr", "authentication_assurance_level", "identity_proofing_level", "vot", "vtm", "nhs_number"],
    }))
    .into_response()
}

pub(crate) async fn jwks(State(idp): State<Arc<Idp>>) -> Response {
    Json(json!({ "keys": [idp.key.jwk()] })).into_response()
}

/// The authorization request's parameters (query on GET, form on POST).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub(crate) struct AuthParams {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) response_type: String,
    pub(crate) scope: String,
    pub(crate) state: String,
    pub(crate) nonce: String,
    pub(crate) code_challenge: String,
    pub(crate) code_challenge_method: String,
    /// `none`: answer at once from the single sign-on session, or `login_required`.
    #[serde(skip_serializing)]
    pub(crate) prompt: String,
    #[serde(skip_serializing)]
    pub(crate) user: String,
}

/// A request the provider cannot even redirect back for: shown as a page.
pub(crate) fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign-in error</title></head>\
         <body><h1>Sign-in error</h1><p>{}</p></body></html>",
        escape(message)
    );
    (status, security_headers(), Html(body)).into_response()
}

pub(crate) fn security_headers() -> [(header::HeaderName, &'static str); 4] {
    [
        (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ]
}

/// Back to the client with an OAuth error.
pub(crate) fn redirect_error(p: &AuthParams, error: &str) -> Response {
    match url::Url::parse(&p.redirect_uri) {
        Ok(mut u) => {
            u.query_pairs_mut()
                .append_pair("error", error)
                .append_pair("state", &p.state);
            Redirect::to(u.as_str()).into_response()
        }
        Err(_) => error_page(StatusCode::BAD_REQUEST, "The sign-in request is not valid."),
    }
}

/// Check a request; `Err` is the response to give instead.
pub(crate) fn check(idp: &Idp, p: &AuthParams) -> Result<(), Box<Response>> {
    let registered = match (idp.client(&p.client_id), idp.nhs_client(&p.client_id)) {
        (Some(c), _) => &c.redirect_uris,
        (None, Some(c)) => &c.redirect_uris,
        (None, None) => {
            return Err(Box::new(error_page(
                StatusCode::BAD_REQUEST,
                "The application asking you to sign in is not registered.",
            )))
        }
    };
    if !registered.contains(&p.redirect_uri) {
        return Err(Box::new(error_page(
            StatusCode::BAD_REQUEST,
            "The application asked to send you to an address it has not registered.",
        )));
    }
    if p.response_type != "code" {
        return Err(Box::new(redirect_error(p, "unsupported_response_type")));
    }
    if !p.scope.split_ascii_whitespace().any(|s| s == "openid") {
        return Err(Box::new(redirect_error(p, "invalid_scope")));
    }
    // PKCE is required, and only S256.
    if p.code_challenge_method != "S256" || p.code_challenge.len() != 43 {
        return Err(Box::new(redirect_error(p, "invalid_request")));
    }
    if p.state.is_empty() || p.state.len() > 512 || p.nonce.len() > 512 {
        return Err(Box::new(redirect_error(p, "invalid_request")));
    }
    Ok(())
}

pub(crate) async fn authorize_page(
    State(idp): State<Arc<Idp>>,
    headers: HeaderMap,
    Query(p): Query<AuthParams>,
) -> Response {
    if let Err(r) = check(&idp, &p) {
        return *r;
    }
    let patients = idp.nhs_client(&p.client_id).is_some();
    if p.prompt == "none" && !patients {
        // Single sign-on: whoever signed in here already, without asking; nobody: say so.
        return match idp.sso_user(&headers) {
            Some(user) => issue_code(&idp, &p, &user),
            None => redirect_error(&p, "login_required"),
        };
    }
    let hidden: String = [
        ("client_id", &p.client_id),
        ("redirect_uri", &p.redirect_uri),
        ("response_type", &p.response_type),
        ("scope", &p.scope),
        ("state", &p.state),
        ("nonce", &p.nonce),
        ("code_challenge", &p.code_challenge),
        ("code_challenge_method", &p.code_challenge_method),
    ]
    .iter()
    .map(|(k, v)| {
        format!(
            "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
            escape(v)
        )
    })
    .collect();
    let choices: Vec<(&str, &str)> = match &idp.nhs_login {
        Some((_, ps)) if patients => ps
            .iter()
            .map(|p| (p.id.as_str(), p.label.as_str()))
            .collect(),
        _ => idp
            .config
            .users
            .iter()
            .map(|u| (u.id.as_str(), u.label.as_str()))
            .collect(),
    };
    let buttons: String = choices
        .iter()
        .map(|(id, label)| {
            format!(
                "<li><button type=\"submit\" name=\"user\" value=\"{}\">{}</button></li>",
                escape(id),
                escape(label)
            )
        })
        .collect();
    let (title, intro) = if patients {
        (
            "Demo NHS login",
            "This stands in for NHS login, where patients sign in. Choose who to sign in as.",
        )
    } else {
        (
            "Demo identity provider",
            "This stands in for your organisation's sign-in (such as NHS CIS2). Choose who to sign in as.",
        )
    };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}: sign in</title></head>\
         <body><h1>{title}</h1>\
         <p>{intro}</p>\
         <form action=\"/authorize\" method=\"post\">{hidden}<ul>{buttons}</ul></form></body></html>"
    );
    (StatusCode::OK, security_headers(), Html(body)).into_response()
}

pub(crate) async fn authorize(
    State(idp): State<Arc<Idp>>,
    headers: HeaderMap,
    Form(p): Form<AuthParams>,
) -> Response {
    // The sign-in form posts to itself: a post from anywhere else is refused.
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        if origin != "null" && !idp.config.issuer.starts_with(origin) {
            return error_page(
                StatusCode::FORBIDDEN,
                "This sign-in form was sent from another site.",
            );
        }
    }
    if let Err(r) = check(&idp, &p) {
        return *r;
    }
    if idp.nhs_client(&p.client_id).is_some() {
        // A patient: no single sign-on session (staff launches use it).
        if idp.patient(&p.user).is_none() {
            return error_page(StatusCode::BAD_REQUEST, "Choose who to sign in as.");
        }
        return issue_code(&idp, &p, &p.user);
    }
    if !idp.config.users.iter().any(|u| u.id == p.user) {
        return error_page(StatusCode::BAD_REQUEST, "Choose a user to sign in as.");
    }
    let mut resp = issue_code(&idp, &p, &p.user);
    if let Ok(v) = header::HeaderValue::from_str(&idp.start_sso(&p.user)) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// A code for `user`, and the browser back to the client with it.
pub(crate) fn issue_code(idp: &Idp, p: &AuthParams, user: &str) -> Response {
    let code = random();
    let pending = PendingCode {
        client_id: p.client_id.clone(),
        redirect_uri: p.redirect_uri.clone(),
        challenge: p.code_challenge.clone(),
        nonce: (!p.nonce.is_empty()).then(|| p.nonce.clone()),
        user: user.to_owned(),
        scope: p.scope.clone(),
        expires: idp.clock.now().timestamp() + CODE_SECONDS,
    };
    match idp.codes.lock() {
        Ok(mut codes) => {
            let now = idp.clock.now().timestamp();
            codes.retain(|_, c| c.expires > now);
            codes.insert(code.clone(), pending);
        }
        Err(_) => {
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Sign-in is not available.",
            )
        }
    }
    match url::Url::parse(&p.redirect_uri) {
        Ok(mut u) => {
            u.query_pairs_mut()
                .append_pair("code", &code)
                .append_pair("state", &p.state);
            Redirect::to(u.as_str()).into_response()
        }
        Err(_) => error_page(StatusCode::BAD_REQUEST, "The sign-in request is not valid."),
    }
}
