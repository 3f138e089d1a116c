//! Who is calling: a bearer JWT (API) or the same token held in an HttpOnly cookie (pages),
//! verified against the configured issuer's Ed25519 keys with a pinned algorithm, issuer,
//! audience, expiry and not-before. The organisation in the token is looked up in the
//! programme's registry; what the registry says about it (kind, membership, suspension) is
//! what the policy sees.

use crate::{ApiError, AppState};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mcr_domain::{OdsCode, OrgKind, Organisation, Principal, Role};
use mcr_gateway::RequestContext;
use serde::{Deserialize, Serialize};

/// The cookie the pages keep the signed-in user's token in.
pub const SESSION_COOKIE: &str = "mcr_session";

/// The claims a gateway token carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// Stable user id.
    pub sub: String,
    pub name: String,
    /// A role code, e.g. `clinician`.
    pub role: String,
    /// The user's organisation's ODS code.
    pub org: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// Space-separated SMART-style scopes.
    #[serde(default)]
    pub scope: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthConfig {
    pub issuer: String,
    pub audience: String,
    /// Ed25519 public keys of the issuer, as the JWK `x` value (base64url).
    pub ed25519_public_keys: Vec<String>,
}

#[derive(Clone)]
pub struct Authenticator {
    config: AuthConfig,
    keys: Vec<DecodingKey>,
    orgs: mcr_gateway::OrgRegistry,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("issuer", &self.config.issuer)
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials: sign in, or send `Authorization: Bearer <token>`")]
    Missing,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("the token names a role this system does not know")]
    UnknownRole,
}

impl Authenticator {
    pub fn new(config: AuthConfig, orgs: mcr_gateway::OrgRegistry) -> Result<Self, AuthError> {
        let keys = config
            .ed25519_public_keys
            .iter()
            .map(|x| DecodingKey::from_ed_components(x).map_err(|e| AuthError::Invalid(format!("bad issuer key: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(AuthError::Invalid("no issuer keys configured".into()));
        }
        Ok(Self { config, keys, orgs })
    }

    /// Verify a token and say who it is for.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if token.len() > 8 * 1024 {
            return Err(AuthError::Invalid("too long".into()));
        }
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_issuer(&[&self.config.issuer]);
        v.set_audience(&[&self.config.audience]);
        v.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        v.validate_nbf = true;
        v.leeway = 30;
        let mut last = AuthError::Invalid("no key matched".into());
        for key in &self.keys {
            match jsonwebtoken::decode::<Claims>(token, key, &v) {
                Ok(data) => return self.principal(data.claims),
                Err(e) => last = AuthError::Invalid(describe(&e)),
            }
        }
        Err(last)
    }

    fn principal(&self, c: Claims) -> Result<Principal, AuthError> {
        let role: Role = c.role.parse().map_err(|_| AuthError::UnknownRole)?;
        let organisation = OdsCode::parse(&c.org)
            .ok()
            .and_then(|code| self.orgs.get(&code).cloned())
            .unwrap_or_else(|| unknown_org(&c.org));
        Ok(Principal { user_id: c.sub, name: c.name, role, organisation })
    }
}

/// An organisation the programme has never heard of: not a member, so every rule denies.
fn unknown_org(code: &str) -> Organisation {
    Organisation {
        code: OdsCode::parse(code).unwrap_or_else(|_| OdsCode::parse("UNKNOWN").expect("a well-formed ODS code")),
        name: "an organisation not known to My Care Record".into(),
        kind: OrgKind::ThirdParty,
        member: false,
        suspended: false,
    }
}

fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "it has expired".into(),
        K::ImmatureSignature => "it is not valid yet".into(),
        K::InvalidIssuer => "it was issued by someone else".into(),
        K::InvalidAudience => "it is meant for another service".into(),
        K::InvalidSignature => "its signature does not verify".into(),
        K::InvalidAlgorithm => "it uses an algorithm this service does not accept".into(),
        K::MissingRequiredClaim(c) => format!("it lacks the `{c}` claim"),
        _ => "it could not be read".into(),
    }
}

/// The token from `Authorization: Bearer …` or, for pages, the session cookie.
pub fn token_from(parts: &Parts) -> Option<String> {
    if let Some(h) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let v = h.to_str().ok()?;
        let (scheme, token) = v.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned());
    }
    cookie(parts, SESSION_COOKIE)
}

pub fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The request's correlation id: the caller's `X-Request-ID` if it is sane, else a new one.
pub fn correlation_id(parts: &Parts) -> String {
    parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| (8..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// An authenticated API caller. Rejects with 401 and an `OperationOutcome`.
#[derive(Debug, Clone)]
pub struct Caller(pub RequestContext);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = token_from(parts)
            .ok_or_else(|| ApiError::unauthenticated("no-token", AuthError::Missing.to_string()))?;
        let principal = state.auth.verify(&token).map_err(|e| {
            tracing::info!(reason = %e, "rejected credentials");
            ApiError::unauthenticated("invalid-token", e.to_string())
        })?;
        Ok(Caller(RequestContext { principal, correlation_id: correlation_id(parts) }))
    }
}
