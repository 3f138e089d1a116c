//! Protections every request passes through before any handler: header and URL size limits,
//! HSTS when served over TLS, and CSRF defence for every state-changing form (the `Origin`
//! must be this gateway's, and a signed-in user's form must carry their session's
//! synchronizer token in a `csrf` field). Also the rate limits on sign-in and patient search.

use crate::auth::{client_address, cookie, SESSION_COOKIE};
use crate::ratelimit::Rate;
use crate::{ApiError, AppState, MAX_BODY};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mcr_gateway::RefusalKind;

/// The most header bytes (names and values) one request may carry.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// The longest request target.
pub const MAX_URI: usize = 8 * 1024;
/// The form field a signed-in user's forms carry their CSRF token in.
pub const CSRF_FIELD: &str = "csrf";

const HSTS: &str = "max-age=31536000; includeSubDomains";

/// The middleware: size limits, CSRF, HSTS.
pub(crate) async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return plain(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Request headers too large.",
        );
    }
    if req.uri().to_string().len() > MAX_URI {
        return plain(StatusCode::URI_TOO_LONG, "Request address too long.");
    }
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let api = req.uri().path().starts_with("/fhir")
        || req.uri().path().starts_with("/access/")
        || req.uri().path() == crate::system::TOKEN_PATH;
    let req = if unsafe_method && !api {
        match check_form(&state, req).await {
            Ok(r) => r,
            Err(resp) => return resp,
        }
    } else {
        req
    };
    let mut resp = next.run(req).await;
    if state.secure_cookies {
        resp.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    resp
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

fn refuse() -> Response {
    let mut resp = crate::pages::error_page(
        crate::pages::Layout::public(),
        StatusCode::FORBIDDEN,
        "This form was not sent from a page of this service, or the page was open too long. Go back, reload the page and try again.",
    );
    resp.extensions_mut()
        .insert(crate::refusals::Refused(RefusalKind::Csrf));
    resp
}

/// The origin (`scheme://host[:port]`) of a URL.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next()?;
    Some(format!(
        "{}://{}",
        scheme.to_ascii_lowercase(),
        host.to_ascii_lowercase()
    ))
}

/// Cross-site form posts are refused; a signed-in user's forms must carry their CSRF token.
async fn check_form(state: &AppState, req: Request) -> Result<Request, Response> {
    let headers = req.headers();
    // Under `Referrer-Policy: no-referrer` browsers send `Origin: null` even for our own
    // forms; then only the browser's own `Sec-Fetch-Site: same-origin` vouches for the post.
    let same_site_fetch =
        headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("same-origin");
    let null_origin = headers
        .get(header::ORIGIN)
        .is_some_and(|o| o.as_bytes() == b"null");
    if null_origin && !same_site_fetch {
        tracing::info!("form post with an opaque origin refused");
        return Err(refuse());
    }
    if let Some(origin) = headers.get(header::ORIGIN).filter(|_| !null_origin) {
        let ours = origin_of(&state.base_url);
        let theirs = origin.to_str().ok().map(str::to_ascii_lowercase);
        if ours.is_none() || theirs != ours {
            tracing::info!("form post from another origin refused");
            return Err(refuse());
        }
    }
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site") {
        return Err(refuse());
    }
    let (parts, body) = req.into_parts();
    let session = match cookie_parts(&parts) {
        Some(id) => state.sessions.touch(&id).await,
        None => None,
    };
    let Some(session) = session else {
        // Nobody signed in: nothing to ride on. Staff handlers send the request to sign-in.
        return Ok(Request::from_parts(parts, body));
    };
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return Err(plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request body too large.",
            ))
        }
    };
    let sent = url::form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.into_owned());
    match sent {
        Some(t) if mcr_oidc::constant_time_eq(t.as_bytes(), session.csrf.as_bytes()) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        _ => {
            tracing::info!("form post without the session's CSRF token refused");
            Err(refuse())
        }
    }
}

fn cookie_parts(parts: &Parts) -> Option<String> {
    cookie(parts, SESSION_COOKIE)
}

fn too_many(secs: u64) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        mcr_fhir::IssueType::Throttled,
        "rate-limited",
        format!("Too many requests; try again in {secs} seconds."),
    );
    e.retry_after = Some(secs);
    e
}

async fn check(state: &AppState, key: String, rate: Rate) -> Result<(), ApiError> {
    state.limiter.check(&key, rate).await.map_err(too_many)
}

/// Patient searches: per signed-in user (never per address: a hospital's staff share one).
pub(crate) async fn limit_search(state: &AppState, user_id: &str) -> Result<(), ApiError> {
    check(
        state,
        format!("search:user:{user_id}"),
        state.rate_limits.search_per_user,
    )
    .await
}

/// Anonymous sign-in steps (starting one; a return with none in progress): per client
/// address, as far as the trusted proxies say.
pub(crate) async fn limit_signin(state: &AppState, parts: &Parts) -> Result<(), ApiError> {
    check(
        state,
        format!(
            "signin:addr:{}",
            client_address(parts, state.trusted_proxy_hops)
        ),
        state.rate_limits.signin_per_address,
    )
    .await
}

/// Public opt-out requests: per client address, and per person asked about. The person's
/// key is a hash of their normalised family and given names and date of birth, so the
/// limiter holds no names.
pub(crate) async fn limit_opt_out(
    state: &AppState,
    parts: &Parts,
    sub: &mcr_gateway::OptOutSubmission,
) -> Result<(), ApiError> {
    use mcr_domain::demographics::normalise_name;
    use std::hash::{Hash, Hasher};
    check(
        state,
        format!(
            "optout:addr:{}",
            client_address(parts, state.trusted_proxy_hops)
        ),
        state.rate_limits.opt_out_per_address,
    )
    .await?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        normalise_name(&sub.family_name),
        normalise_name(&sub.given_name),
        sub.birth_date,
    )
        .hash(&mut h);
    check(
        state,
        format!("optout:person:{:016x}", h.finish()),
        state.rate_limits.opt_out_per_person,
    )
    .await
}

/// Codes from opt-out letters typed on the public site: per client address (with the
/// gateway's limit on wrong codes per letter, guessing is slow and spent quickly).
pub(crate) async fn limit_opt_out_code(state: &AppState, parts: &Parts) -> Result<(), ApiError> {
    check(
        state,
        format!(
            "optout-code:addr:{}",
            client_address(parts, state.trusted_proxy_hops)
        ),
        state.rate_limits.opt_out_per_address,
    )
    .await
}

/// Completed sign-ins: per user (known only once the provider has said who it is).
pub(crate) async fn limit_signin_user(state: &AppState, user_id: &str) -> Result<(), ApiError> {
    check(
        state,
        format!("signin:user:{user_id}"),
        state.rate_limits.signin_per_user,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_scheme_host_and_port() {
        assert_eq!(
            origin_of("https://GW.example:8443/app").as_deref(),
            Some("https://gw.example:8443")
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8080").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(origin_of("nonsense"), None);
    }
}
