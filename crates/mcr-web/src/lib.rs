//! The web layer: the FHIR R4 API under `/fhir`, the clinician viewer under `/app`, and the
//! public site. It speaks HTTP and HTML and nothing else: every use case is one call into
//! [`mcr_gateway::Gateway`], every caller is authenticated before that call, and every error
//! becomes an `OperationOutcome` (API) or an error page (HTML) that never echoes internals.
//!
//! Source data is untrusted: templates escape everything, and the pages carry a
//! Content-Security-Policy without inline script.

pub mod auth;
mod error;
mod fhir;
mod ops;
mod pages;

pub use auth::{Authenticator, AuthConfig, Claims};
pub use error::ApiError;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue};
use axum::routing::get;
use axum::Router;
use mcr_gateway::Gateway;
use std::sync::Arc;
use tower_http::set_header::SetResponseHeaderLayer;

/// Largest request body accepted anywhere.
pub const MAX_BODY: usize = 64 * 1024;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub gateway: Gateway,
    pub auth: Arc<Authenticator>,
    /// The URL this gateway is reached at, for `fullUrl`s and links.
    pub base_url: String,
    /// Demo only: users the sign-in page offers with one click (empty in production).
    pub demo_logins: Arc<Vec<DemoLogin>>,
    /// Send cookies with `Secure` (true whenever served over TLS).
    pub secure_cookies: bool,
}

/// A demo user the sign-in page can sign in as, with a token minted for them at start-up.
#[derive(Debug, Clone)]
pub struct DemoLogin {
    pub user_id: String,
    /// e.g. "Dr Asha Patel, GP, Bridge Street Surgery".
    pub label: String,
    pub token: String,
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .merge(fhir::routes())
        .merge(ops::routes())
        .merge(pages::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            ),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .with_state(state)
}

async fn healthz(axum::extract::State(state): axum::extract::State<AppState>) -> Result<&'static str, ApiError> {
    state
        .gateway
        .store()
        .ping()
        .await
        .map_err(|_| ApiError::unavailable("The gateway's store is not answering."))?;
    Ok("ok")
}
