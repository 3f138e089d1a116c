//! Who is calling. API callers present a bearer access token from the region's OpenID
//! provider, verified by [`mcr_oidc::RelyingParty`] against the provider's JWKS (pinned
//! algorithms, issuer, audience, expiry, not-before); its SMART-style scopes then limit what
//! it may do, on top of the governance rules. Pages use server-side sessions
//! ([`crate::sessions`]) started by the OpenID Connect sign-in. Either way the organisation
//! named by the identity is looked up in the programme's registry; what the registry says
//! about it (kind, membership, suspension) is what the policy sees.
//!
//! Every refusal is audited (user `anonymous` when the credentials prove nothing) and answered
//! with a clean 401/403 that never echoes the token.

use crate::{ApiError, AppState};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use mcr_domain::{OdsCode, OrgKind, Organisation, Principal, Role};
use mcr_gateway::AuthChannel;
use mcr_gateway::{AuthFailure, RequestContext};
use mcr_oidc::{Identity, OidcError, Rejection, RelyingParty};
use std::sync::Arc;

mod scopes;

pub use scopes::{
    is_record_view, need_for, request_patient, scope_grants, scopes_allow, Need, ScopeGrant,
};

/// The cookie holding a page session's opaque id.
pub const SESSION_COOKIE: &str = "mcr_session";

/// The OpenID Connect settings (`[auth]` in the gateway's config).
pub type AuthConfig = mcr_oidc::OidcConfig;

#[derive(Clone)]
pub struct Authenticator {
    rp: Arc<RelyingParty>,
    orgs: mcr_gateway::OrgRegistry,
    /// NHS CIS2 national RBAC, when `[auth.cis2]` is configured.
    cis2: Option<Arc<crate::cis2::Cis2Rules>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("rp", &self.rp)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials: sign in, or send `Authorization: Bearer <token>`")]
    Missing,
    #[error("the token is not valid: {0}")]
    Rejected(Rejection),
    #[error("the token names a role this system does not know")]
    UnknownRole,
    /// CIS2: the user holds several role profiles and has not chosen one yet.
    #[error("choose the role you are working in")]
    RoleNotChosen,
    /// CIS2: the role profile in use cannot be used here.
    #[error("{}", .0.sentence())]
    Unusable(crate::cis2::Unusable),
    #[error("the identity provider cannot be reached to check the token; try again shortly")]
    Unavailable,
}

impl AuthError {
    /// The short code for the audit trail and the `OperationOutcome`.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "no-token",
            AuthError::Rejected(r) => r.code(),
            AuthError::UnknownRole => "unknown-role",
            AuthError::RoleNotChosen => "role-not-chosen",
            AuthError::Unusable(u) => u.code(),
            AuthError::Unavailable => "provider-unavailable",
        }
    }
}

impl From<OidcError> for AuthError {
    fn from(e: OidcError) -> Self {
        match e {
            OidcError::Token(r) => AuthError::Rejected(r),
            OidcError::Config(_) | OidcError::Provider(_) | OidcError::Refused(_) => {
                tracing::warn!(error = %e, "identity provider problem");
                AuthError::Unavailable
            }
        }
    }
}

impl Authenticator {
    pub fn new(rp: Arc<RelyingParty>, orgs: mcr_gateway::OrgRegistry) -> Self {
        Self {
            rp,
            orgs,
            cis2: None,
        }
    }

    /// Staff sign in with NHS CIS2 national RBAC role profiles, mapped by `rules`.
    pub fn with_cis2(mut self, rules: crate::cis2::Cis2Rules) -> Self {
        self.cis2 = Some(Arc::new(rules));
        self
    }

    pub fn cis2(&self) -> Option<&crate::cis2::Cis2Rules> {
        self.cis2.as_deref()
    }

    pub fn organisations(&self) -> &mcr_gateway::OrgRegistry {
        &self.orgs
    }

    /// Whether an identity may view patients' records as strongly as it authenticated: only
    /// under CIS2, where `[auth.cis2] min_assurance_for_records` applies. `Err`: the level
    /// needed.
    pub fn check_assurance(&self, id: &Identity) -> Result<(), u8> {
        match &self.cis2 {
            Some(rules) if id.assurance.unwrap_or(0) < rules.min_assurance_for_records => {
                Err(rules.min_assurance_for_records)
            }
            _ => Ok(()),
        }
    }

    pub fn relying_party(&self) -> &RelyingParty {
        &self.rp
    }

    /// An organisation as the programme's registry knows it now (unknown: a non-member).
    pub fn organisation(&self, code: &str) -> Organisation {
        OdsCode::parse(code)
            .ok()
            .and_then(|c| self.orgs.get(&c).cloned())
            .unwrap_or_else(|| unknown_org(code))
    }

    /// Verify an API access token: who it is for, what it may do, and the patient its
    /// `patient/` scopes are bound to (its SMART `patient` claim).
    pub async fn verify_bearer(&self, token: &str) -> Result<(Principal, Identity), AuthError> {
        let identity = self.rp.verify_access_token(token).await?;
        let principal = self.principal(&identity)?;
        Ok((principal, identity))
    }

    /// The principal for an identity, with its organisation as the registry knows it now.
    /// Under CIS2 an identity with role profiles is the profile in use: its role through the
    /// mapping, its organisation, its id.
    pub fn principal(&self, id: &Identity) -> Result<Principal, AuthError> {
        if let (Some(rules), false) = (&self.cis2, id.role_profiles.is_empty()) {
            let profile = id.selected_profile().ok_or(AuthError::RoleNotChosen)?;
            let role =
                crate::cis2::classify(rules, &self.orgs, profile).map_err(AuthError::Unusable)?;
            let organisation = OdsCode::parse(&profile.org_code)
                .ok()
                .and_then(|code| self.orgs.get(&code).cloned())
                .unwrap_or_else(|| unknown_org(&profile.org_code));
            return Ok(Principal {
                user_id: id.user_id.clone(),
                name: id.name.clone(),
                role,
                organisation,
                role_profile: Some(profile.id.clone()),
            });
        }
        let role: Role = id.role.parse().map_err(|_| AuthError::UnknownRole)?;
        let organisation = OdsCode::parse(&id.organisation)
            .ok()
            .and_then(|code| self.orgs.get(&code).cloned())
            .unwrap_or_else(|| unknown_org(&id.organisation));
        Ok(Principal {
            user_id: id.user_id.clone(),
            name: id.name.clone(),
            role,
            organisation,
            role_profile: None,
        })
    }
}

/// An organisation the programme has never heard of: not a member, so every rule denies.
fn unknown_org(code: &str) -> Organisation {
    Organisation {
        code: OdsCode::parse(code)
            .unwrap_or_else(|_| OdsCode::parse("UNKNOWN").expect("a well-formed ODS code")),
        name: "an organisation not known to My Care Record".into(),
        kind: OrgKind::ThirdParty,
        member: false,
        suspended: false,
    }
}

/// The token from `Authorization: Bearer …`.
pub fn bearer(parts: &Parts) -> Option<String> {
    let v = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
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
        .filter(|v| {
            (8..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// The client's address. With `trusted_hops` = 0 it is the connecting address and any
/// `X-Forwarded-For` header is ignored (anyone can write one). Behind N proxies the operator
/// trusts, each of which appends the address it was reached from, it is the N-th address
/// from the right of `X-Forwarded-For` (the one the outermost trusted proxy saw); when the
/// header is missing, shorter than that or not addresses, the connecting address.
pub fn client_address(parts: &Parts, trusted_hops: u8) -> String {
    let connected = parts
        .extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    if trusted_hops > 0 {
        let forwarded: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let hops = usize::from(trusted_hops);
        if forwarded.len() >= hops {
            if let Ok(ip) = forwarded[forwarded.len() - hops].parse::<std::net::IpAddr>() {
                return ip.to_string();
            }
        }
    }
    connected.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

/// Audit a refused attempt; a failure to write is logged, and the answer stays a refusal.
pub(crate) async fn audit_refusal(
    state: &AppState,
    correlation_id: &str,
    channel: AuthChannel,
    reason: &str,
    user: Option<&Principal>,
) {
    let f = AuthFailure {
        correlation_id,
        channel,
        reason,
        user,
    };
    if let Err(e) = state.gateway.record_auth_failure(&f).await {
        tracing::error!(error = %e, "could not audit a refused authentication");
    }
}

/// An authenticated API caller whose token's scopes allow this request. Rejects with 401 (or
/// 403 for scopes) and an `OperationOutcome`.
#[derive(Debug, Clone)]
pub struct Caller(pub RequestContext);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let cid = correlation_id(parts);
        let verified = match bearer(parts) {
            None => Err(AuthError::Missing),
            Some(token) if crate::system::is_system_token(&token) => {
                // A token this gateway issued to a system (SMART backend services).
                let (principal, scopes, system) =
                    crate::system::caller(state, &token, &cid).await?;
                Ok((principal, scopes, None, Some(system), None))
            }
            Some(token) => state.auth.verify_bearer(&token).await.map(|(p, id)| {
                let (scopes, patient) = (id.scopes.clone(), id.patient.clone());
                (p, scopes, patient, None, Some(id))
            }),
        };
        // `identity`: a person's own token (a system's token has its own checks).
        let (principal, scopes, token_patient, system, identity) = match verified {
            Ok(v) => v,
            Err(e) => {
                tracing::info!(reason = e.code(), "rejected credentials");
                audit_refusal(state, &cid, AuthChannel::Api, e.code(), None).await;
                if matches!(e, AuthError::Unavailable) {
                    return Err(ApiError::unavailable(e.to_string()));
                }
                return Err(ApiError::unauthenticated(e.code(), e.to_string()));
            }
        };
        crate::refusals::Who::set(parts, &principal.user_id);
        let need = need_for(&parts.method, parts.uri.path());
        let grant = scope_grants(&scopes, need);
        if grant == Some(ScopeGrant::OnePatient) {
            // Patient-level scopes reach only the token's own patient, and only by a request
            // that names that patient: anything else is refused, never widened.
            let asked = request_patient(&parts.method, &parts.uri);
            let bound = match (&token_patient, &asked) {
                (Some(mine), Some(asked)) => mine == asked,
                _ => false,
            };
            if !bound {
                let reason = if token_patient.is_none() {
                    "patient-scope-without-patient"
                } else {
                    "patient-scope-other-patient"
                };
                audit_refusal(state, &cid, AuthChannel::Scope, reason, Some(&principal)).await;
                return Err(ApiError::forbidden(
                    reason,
                    "This token's patient/ scopes are for one patient (its patient claim): it may only read that patient's record, by a request that names them.",
                ));
            }
        }
        if grant.is_none() {
            if let Some(system) = &system {
                let ctx = RequestContext {
                    principal: principal.clone(),
                    correlation_id: cid.clone(),
                    system: Some(system.clone()),
                };
                if let Err(e) = state
                    .gateway
                    .record_caller_refusal(&ctx, AuthChannel::Scope, "insufficient-scope")
                    .await
                {
                    tracing::error!(error = %e, "could not audit a refused system request");
                }
            } else {
                audit_refusal(
                    state,
                    &cid,
                    AuthChannel::Scope,
                    "insufficient-scope",
                    Some(&principal),
                )
                .await;
            }
            let what = match need {
                Need::Read(_) => "read records",
                Need::Write(_) => {
                    "record permission, relationships, emergency access or objections"
                }
            };
            return Err(ApiError::forbidden(
                "insufficient-scope",
                format!("This token's scopes do not allow it to {what}."),
            ));
        }
        if let (true, Some(identity)) = (is_record_view(&parts.method, parts.uri.path()), &identity)
        {
            if let Err(need) = state.auth.check_assurance(identity) {
                audit_refusal(
                    state,
                    &cid,
                    AuthChannel::Assurance,
                    "assurance-too-low",
                    Some(&principal),
                )
                .await;
                return Err(ApiError::forbidden(
                    "assurance-too-low",
                    crate::cis2::assurance_sentence(identity.assurance, need),
                ));
            }
        }
        if parts.uri.path() == "/fhir/Patient" {
            crate::security::limit_search(state, &principal.user_id).await?;
        }
        Ok(Caller(RequestContext {
            principal,
            correlation_id: cid,
            system,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts_from(peer: &str, xff: &[&str]) -> Parts {
        let mut b = axum::http::Request::builder().uri("/signin");
        for v in xff {
            b = b.header("x-forwarded-for", *v);
        }
        let (mut parts, ()) = b.body(()).expect("request").into_parts();
        parts.extensions.insert(ConnectInfo(
            peer.parse::<std::net::SocketAddr>().expect("addr"),
        ));
        parts
    }

    #[test]
    fn forwarded_for_counts_only_trusted_hops() {
        let p = parts_from("10.0.0.5:443", &["198.51.100.1, 203.0.113.9"]);
        assert_eq!(client_address(&p, 0), "10.0.0.5", "ignored by default");
        assert_eq!(client_address(&p, 1), "203.0.113.9");
        assert_eq!(client_address(&p, 2), "198.51.100.1");
        assert_eq!(client_address(&p, 3), "10.0.0.5", "shorter than the hops");
        let p = parts_from("10.0.0.5:443", &["198.51.100.1", "203.0.113.9"]);
        assert_eq!(
            client_address(&p, 1),
            "203.0.113.9",
            "repeated headers are one list"
        );
        let p = parts_from("10.0.0.5:443", &["not-an-address"]);
        assert_eq!(client_address(&p, 1), "10.0.0.5");
    }

    use proptest::prelude::*;

    fn parts_with(name: &str, value: &str) -> Option<Parts> {
        let v = axum::http::HeaderValue::from_str(value).ok()?;
        let (parts, ()) = axum::http::Request::builder()
            .header(name, v)
            .body(())
            .ok()?
            .into_parts();
        Some(parts)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]

        /// Whatever a client sends in the credential and id headers, parsing never panics, a
        /// bearer token is never empty, and the correlation id that reaches logs and the audit
        /// trail is always short and plain.
        #[test]
        fn fuzz_request_headers(auth in ".{0,300}", cookies in ".{0,300}", rid in ".{0,100}") {
            if let Some(p) = parts_with("authorization", &auth) {
                if let Some(t) = bearer(&p) {
                    prop_assert!(!t.is_empty());
                    prop_assert!(auth.to_ascii_lowercase().starts_with("bearer "));
                }
            }
            if let Some(p) = parts_with("cookie", &cookies) {
                let _ = cookie(&p, SESSION_COOKIE);
            }
            if let Some(p) = parts_with("x-request-id", &rid) {
                let id = correlation_id(&p);
                prop_assert!((8..=64).contains(&id.len()));
                prop_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
            }
        }
    }
}
