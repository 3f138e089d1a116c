//! The token endpoint (`POST /oauth/token`): a system's client assertion checked, its scopes
//! granted, its end user taken from the signed `requesting_user` claim, and the opaque token
//! issued and kept by its hash; every request, issued or refused, audited before the answer
//! leaves.

use super::{
    covers, hex, may_run_a_system, token_hash, Client, EndUser, IssuedToken, ASSERTION_TYPE,
    TOKEN_PATH, TOKEN_PREFIX,
};
use crate::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use mcr_domain::Organisation;
use mcr_gateway::SystemTokenRequest;
use mcr_oidc::assertion::{claimed_issuer, AssertionError};
use serde::Deserialize;
use serde_json::json;

/// The token request's form (RFC 6749 §4.4, RFC 7523 §2.2).
#[derive(Debug, Deserialize)]
pub(crate) struct TokenForm {
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    client_assertion_type: String,
    #[serde(default)]
    client_assertion: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    client_id: Option<String>,
}

/// An OAuth error answer (RFC 6749 §5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// A refusal: its OAuth error, its audit code and its sentence.
struct Refusal {
    status: StatusCode,
    error: &'static str,
    code: &'static str,
    words: String,
}

impl Refusal {
    fn new(
        status: StatusCode,
        error: &'static str,
        code: &'static str,
        words: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error,
            code,
            words: words.into(),
        }
    }

    fn client(code: &'static str, words: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", code, words)
    }
}

impl From<AssertionError> for Refusal {
    fn from(e: AssertionError) -> Self {
        if e == AssertionError::KeysUnavailable {
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                e.code(),
                e.to_string(),
            )
        } else {
            Refusal::client(e.code(), format!("{e}."))
        }
    }
}

/// `POST /oauth/token`.
pub(crate) async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let cid = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (8..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let access = &state.system;
    let client = claimed_issuer(&form.client_assertion).and_then(|iss| access.clients.get(&iss));
    let organisation = client.map(|c| state.auth.organisation(&c.config.organisation));
    let decided = issue(&state, client, organisation.as_ref(), &form).await;
    let (user, scopes) = match &decided {
        Ok((_, t)) => (t.user.clone(), t.scopes.join(" ")),
        Err(_) => (None, form.scope.clone()),
    };
    let asked: String = scopes.chars().take(500).collect();
    let record = SystemTokenRequest {
        correlation_id: &cid,
        client_id: client.map(|c| c.config.client_id.as_str()),
        organisation: organisation.as_ref(),
        end_user: user
            .as_ref()
            .map(|u| (u.id.as_str(), u.name.as_str(), u.role.as_str())),
        scopes: &asked,
        outcome: match &decided {
            Ok(_) => Ok(()),
            Err(r) => Err((r.code, r.words.as_str())),
        },
    };
    if let Err(e) = state.gateway.record_system_token(&record).await {
        tracing::error!(error = %e, "could not audit a system's token request");
        return oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "The audit trail cannot be written just now; no token is issued. Try again shortly.",
        );
    }
    match decided {
        Ok((token, t)) => {
            tracing::info!(client = %t.client_id, "system token issued");
            axum::Json(json!({
                "access_token": token,
                "token_type": "bearer",
                "expires_in": access.lifetime_seconds,
                "scope": t.scopes.join(" "),
            }))
            .into_response()
        }
        Err(r) => {
            tracing::info!(reason = r.code, "system token refused");
            oauth_error(r.status, r.error, &r.words)
        }
    }
}

/// Check a token request and issue its token.
async fn issue(
    state: &AppState,
    client: Option<&Client>,
    organisation: Option<&Organisation>,
    form: &TokenForm,
) -> Result<(String, IssuedToken), Refusal> {
    if form.grant_type != "client_credentials" {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "unsupported-grant-type",
            "This token endpoint issues tokens to registered systems only: grant_type must be client_credentials.",
        ));
    }
    if form.client_assertion_type != ASSERTION_TYPE || form.client_assertion.is_empty() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "no-client-assertion",
            format!("A system authenticates with a signed JWT: send client_assertion_type={ASSERTION_TYPE} and client_assertion."),
        ));
    }
    let Some(client) = client else {
        return Err(Refusal::client(
            "unknown-client",
            "The client assertion's issuer is not a system registered with My Care Record.",
        ));
    };
    let id = &client.config.client_id;
    if form.client_id.as_ref().is_some_and(|c| c != id) {
        return Err(Refusal::client(
            "client-id-mismatch",
            "client_id does not match the client assertion's issuer.",
        ));
    }
    let now = state.gateway.clock().now();
    let audience = format!("{}{TOKEN_PATH}", state.base_url);
    let assertion = client
        .keys
        .verify(&form.client_assertion, id, &audience, now.timestamp())
        .await?;
    let fresh = state
        .gateway
        .store()
        .remember_assertion(
            id,
            &assertion.jti,
            assertion.exp * 1000,
            now.timestamp_millis(),
        )
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "could not remember a client assertion");
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "store-unavailable",
                "The gateway cannot check this assertion for replay just now; try again shortly.",
            )
        })?;
    if !fresh {
        return Err(Refusal::client(
            "assertion-replayed",
            "This client assertion (its jti) has been used already: sign a new one for each token request.",
        ));
    }
    if !organisation.is_some_and(may_run_a_system) {
        return Err(Refusal::client(
            "client-organisation-not-member",
            "The organisation this system belongs to is not a member of My Care Record that may view records (or its access is suspended).",
        ));
    }
    let requested: Vec<String> = form.scope.split_whitespace().map(str::to_owned).collect();
    if requested.is_empty() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "no-scope",
            "Ask for the scopes the system needs, e.g. scope=system/*.rs.",
        ));
    }
    if let Some(beyond) = requested
        .iter()
        .find(|r| !client.config.scopes.iter().any(|a| covers(a, r)))
    {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "scope-beyond-client",
            format!(
                "The scope `{}` is beyond what this system may have ({}).",
                beyond.chars().take(80).collect::<String>(),
                client.config.scopes.join(" ")
            ),
        ));
    }
    let user = match assertion.claims.get("requesting_user") {
        None => None,
        Some(v) => Some(end_user(v).ok_or_else(|| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "malformed-requesting-user",
                "requesting_user must be an object with id (1-128 characters), name (1-200) and role (one of this programme's roles).",
            )
        })?),
    };
    let issued = IssuedToken {
        client_id: id.clone(),
        scopes: requested,
        user,
    };
    let token = format!("{TOKEN_PREFIX}{}", mcr_oidc::random_token());
    let expires_ms = now.timestamp_millis() + state.system.lifetime_seconds * 1000;
    let data = serde_json::to_string(&issued).map_err(|_| {
        Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "encode",
            "The token could not be issued.",
        )
    })?;
    state
        .gateway
        .store()
        .put_system_token(
            &hex(&token_hash(&token)),
            &data,
            expires_ms,
            now.timestamp_millis(),
        )
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "could not keep an issued system token");
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "store-unavailable",
                "The gateway cannot issue a token just now; try again shortly.",
            )
        })?;
    Ok((token, issued))
}

pub(super) fn end_user(v: &serde_json::Value) -> Option<EndUser> {
    let text = |k: &str, max: usize| {
        v.get(k)
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.trim().is_empty() && s.len() <= max && !s.chars().any(char::is_control))
            .map(str::to_owned)
    };
    Some(EndUser {
        id: text("id", 128)?,
        name: text("name", 200)?,
        role: text("role", 64)?.parse().ok()?,
    })
}
