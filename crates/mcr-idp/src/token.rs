//! The token endpoint: client authentication (a secret, or a signed assertion for NHS
//! login), the code used once, the redirect URI and PKCE verifier checked, tokens issued.

use super::*;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct TokenForm {
    pub(crate) grant_type: String,
    pub(crate) code: String,
    pub(crate) redirect_uri: String,
    pub(crate) code_verifier: String,
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret: Option<String>,
    pub(crate) client_assertion_type: Option<String>,
    pub(crate) client_assertion: Option<String>,
}

pub(crate) fn oauth_error(status: StatusCode, error: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "error": error })),
    )
        .into_response()
}

/// Client credentials from HTTP Basic (form-encoded parts, RFC 6749 §2.3.1) or the body.
pub(crate) fn client_credentials(
    headers: &HeaderMap,
    form: &TokenForm,
) -> Option<(String, String)> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, b64) = v.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let (id, secret) = raw.split_once(':')?;
        let dec = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
        };
        return Some((dec(id)?, dec(secret)?));
    }
    Some((form.client_id.clone()?, form.client_secret.clone()?))
}

pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The client a signed assertion proves (`private_key_jwt`, RFC 7523): signed by the NHS login
/// client's key, `iss` = `sub` = its id, `aud` this token endpoint, unexpired.
pub(crate) fn asserted_client(idp: &Idp, form: &TokenForm) -> Option<String> {
    if form.client_assertion_type.as_deref()
        != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    {
        return None;
    }
    let (client, _) = idp.nhs_login.as_ref()?;
    let mut v = jsonwebtoken::Validation::new(client.alg);
    v.set_audience(&[format!("{}/token", idp.config.issuer)]);
    v.set_issuer(&[&client.client_id]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(
        form.client_assertion.as_deref()?,
        &client.public_key,
        &v,
    )
    .ok()?;
    (data.claims["sub"] == client.client_id.as_str()).then(|| client.client_id.clone())
}

/// The token endpoint for the NHS login client: its code, for one of the patients.
pub(crate) fn patient_token(idp: &Idp, client_id: &str, form: &TokenForm) -> Response {
    if form.grant_type != "authorization_code" {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let pending = match idp.codes.lock() {
        Ok(mut codes) => codes.remove(&form.code),
        Err(_) => return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
    };
    let Some(p) = pending else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(form.code_verifier.as_bytes()));
    if p.client_id != client_id
        || p.redirect_uri != form.redirect_uri
        || p.expires <= idp.clock.now().timestamp()
        || form.code_verifier.is_empty()
        || !same(&challenge, &p.challenge)
    {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let Some(patient) = idp.patient(&p.user) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    let Ok(id_token) = idp.patient_id_token(patient, client_id, p.nonce.as_deref()) else {
        return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
    };
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "token_type": "Bearer",
            "id_token": id_token,
            "access_token": random(),
            "expires_in": idp.config.token_seconds,
            "scope": p.scope,
        })),
    )
        .into_response()
}

pub(crate) async fn token(
    State(idp): State<Arc<Idp>>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    if form.client_assertion.is_some() {
        return match asserted_client(&idp, &form) {
            Some(client_id) => patient_token(&idp, &client_id, &form),
            None => oauth_error(StatusCode::UNAUTHORIZED, "invalid_client"),
        };
    }
    let Some((client_id, secret)) = client_credentials(&headers, &form) else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    let Some(client) = idp.client(&client_id) else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    if !same(client.client_secret.expose_secret(), &secret) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    if form.grant_type != "authorization_code" {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    // A code is used once: taken out before anything else is checked.
    let pending = match idp.codes.lock() {
        Ok(mut codes) => codes.remove(&form.code),
        Err(_) => return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
    };
    let Some(p) = pending else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    if p.client_id != client_id
        || p.redirect_uri != form.redirect_uri
        || p.expires <= idp.clock.now().timestamp()
    {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    if form.code_verifier.is_empty() {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(form.code_verifier.as_bytes()));
    if !same(&challenge, &p.challenge) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let Some(user) = idp.config.users.iter().find(|u| u.id == p.user) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    let api_scopes: Vec<&str> = p
        .scope
        .split_ascii_whitespace()
        .filter(|s| s.contains('/'))
        .collect();
    let api_scope = if api_scopes.is_empty() {
        DEFAULT_API_SCOPES.to_owned()
    } else {
        api_scopes.join(" ")
    };
    let (Ok(id_token), Ok(access_token)) = (
        idp.id_token(user, &client_id, p.nonce.as_deref()),
        idp.access_token(&user.id, &api_scope, &client_id),
    ) else {
        return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
    };
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "token_type": "Bearer",
            "id_token": id_token,
            "access_token": access_token,
            "expires_in": idp.config.token_seconds,
            "scope": p.scope,
        })),
    )
        .into_response()
}
