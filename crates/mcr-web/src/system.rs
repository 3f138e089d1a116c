//! SMART backend services: systems (an EPR, an integration engine) of member organisations
//! ask this gateway's token endpoint (`POST /oauth/token`) for a short-lived access token with
//! `grant_type=client_credentials`, authenticating with a JWT signed by their own private key
//! (`private_key_jwt`, RS384 or ES384; [`mcr_oidc::assertion`]). Clients are registered in
//! configuration (`[backend_services]`) with their keys (inline JWKS or a JWKS URL), the
//! `system/` scopes each may have and the organisation each belongs to (a member, never a
//! third party). Every assertion's `jti` is remembered in the shared store until its `exp`, so
//! every gateway of a region refuses a replay.
//!
//! A system still acts for a person when it views a record: the assertion names its end user
//! in a signed `requesting_user` claim (`id`, `name`, `role`), the token is bound to that user,
//! and each request is decided for that user at the system's organisation, by the same rules
//! as anyone's view (relationship, permission, objection), and audited with the system. A token
//! that names no user is refused at the API unless the client is configured with an
//! `unattended_role`. Tokens are opaque (`mcrs.` + 256 random bits), kept by their SHA-256 in
//! the shared store until they expire, and remembered in memory once seen.
//!
//! Every token request, issued or refused, is audited before the answer leaves.

use crate::{ApiError, AppState};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use mcr_domain::{OrgKind, Organisation, Principal, Role};
use mcr_gateway::AuthChannel;
use mcr_gateway::{RequestContext, SystemTokenRequest};
use mcr_oidc::assertion::{claimed_issuer, AssertionError, ClientKeys};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Digest;
use std::collections::HashMap;
use std::sync::Mutex;

/// Where the token endpoint is, below the gateway's base URL.
pub const TOKEN_PATH: &str = "/oauth/token";

/// What an access token issued here starts with, so the API knows whose it is to check.
const TOKEN_PREFIX: &str = "mcrs.";

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// `[backend_services]` in the gateway's configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BackendServicesConfig {
    /// How long an issued access token lives (default 300 seconds, at most 3600).
    #[serde(default = "default_lifetime")]
    pub token_lifetime_seconds: u64,
    #[serde(default)]
    pub clients: Vec<SystemClientConfig>,
}

fn default_lifetime() -> u64 {
    300
}

/// One registered system (`[[backend_services.clients]]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SystemClientConfig {
    pub client_id: String,
    /// What the system is, for the audit trail ("Acute trust EPR").
    pub name: String,
    /// ODS code of the organisation that runs it: a member of the programme.
    pub organisation: String,
    /// Where the system publishes its public keys (HTTPS).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Or its public keys themselves, as a JWK Set.
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// The `system/` scopes it may be given, e.g. `["system/*.rs"]`.
    pub scopes: Vec<String>,
    /// When set, a token naming no end user may view records, decided as a user of this
    /// role at the system's organisation (e.g. a system that prints discharge summaries with
    /// no one at the keyboard). Absent (the default): every view must name its end user.
    #[serde(default)]
    pub unattended_role: Option<String>,
}

/// The end user a system acts for, as its signed assertion names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndUser {
    pub id: String,
    pub name: String,
    pub role: Role,
}

/// What an issued token stands for (kept in the shared store as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct IssuedToken {
    client_id: String,
    scopes: Vec<String>,
    #[serde(default)]
    user: Option<EndUser>,
}

struct Client {
    config: SystemClientConfig,
    keys: ClientKeys,
    unattended_role: Option<Role>,
}

/// The registered systems and the tokens seen.
pub struct SystemAccess {
    clients: HashMap<String, Client>,
    lifetime_seconds: i64,
    seen: Mutex<HashMap<[u8; 32], (IssuedToken, i64)>>,
}

impl std::fmt::Debug for SystemAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemAccess")
            .field("clients", &self.clients.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Default for SystemAccess {
    fn default() -> Self {
        Self {
            clients: HashMap::new(),
            lifetime_seconds: default_lifetime() as i64,
            seen: Mutex::default(),
        }
    }
}

/// Whether an allowed scope covers a requested one: same context, the same resource or `*`,
/// and every permission asked for (SMART v2 `cruds`; v1 `read` = `rs`, `write` = `cud`).
fn covers(allowed: &str, requested: &str) -> bool {
    let parse = |s: &str| -> Option<(String, String, String)> {
        let (ctx, rest) = s.split_once('/')?;
        let (res, perm) = rest.rsplit_once('.')?;
        let perms = match perm {
            "read" => "rs".to_owned(),
            "write" => "cud".to_owned(),
            "*" => "cruds".to_owned(),
            p if !p.is_empty() && p.chars().all(|c| "cruds".contains(c)) => p.to_owned(),
            _ => return None,
        };
        let res_ok =
            res == "*" || (!res.is_empty() && res.chars().all(|c| c.is_ascii_alphabetic()));
        res_ok.then(|| (ctx.to_owned(), res.to_owned(), perms))
    };
    match (parse(allowed), parse(requested)) {
        (Some((ac, ar, ap)), Some((rc, rr, rp))) => {
            ac == rc && (ar == "*" || ar == rr) && rp.chars().all(|c| ap.contains(c))
        }
        _ => false,
    }
}

/// The SHA-256 of a token: how it is kept and looked up.
fn token_hash(token: &str) -> [u8; 32] {
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// Whether a bearer token is one this gateway issued to a system.
pub fn is_system_token(token: &str) -> bool {
    token.starts_with(TOKEN_PREFIX)
}

impl SystemAccess {
    /// The registered clients, each checked: `system/` scopes only, keys given one way, a
    /// well-formed organisation code and role.
    pub fn new(config: &BackendServicesConfig) -> Result<Self, String> {
        let mut clients = HashMap::new();
        for c in &config.clients {
            let at = |e: String| format!("[[backend_services.clients]] `{}`: {e}", c.client_id);
            if c.client_id.is_empty() || c.client_id.len() > 128 {
                return Err(at("client_id must be 1 to 128 characters".into()));
            }
            mcr_domain::OdsCode::parse(&c.organisation)
                .map_err(|_| at(format!("`{}` is not an ODS code", c.organisation)))?;
            if c.scopes.is_empty() {
                return Err(at(
                    "scopes is empty: the client could be given nothing".into()
                ));
            }
            if let Some(bad) = c
                .scopes
                .iter()
                .find(|s| !s.starts_with("system/") || !covers(s, s))
            {
                return Err(at(format!(
                    "scope `{bad}` is not a SMART system/ scope (system/Resource.cruds, system/*.rs, system/*.read)"
                )));
            }
            let keys = match (&c.jwks_url, &c.jwks) {
                (Some(url), None) => ClientKeys::at_url(url),
                (None, Some(jwks)) => ClientKeys::inline(jwks),
                _ => Err("give exactly one of jwks_url and jwks".into()),
            }
            .map_err(at)?;
            let unattended_role = c
                .unattended_role
                .as_deref()
                .map(|r| {
                    r.parse::<Role>()
                        .map_err(|_| at(format!("unattended_role `{r}` is not a role")))
                })
                .transpose()?;
            if clients
                .insert(
                    c.client_id.clone(),
                    Client {
                        config: c.clone(),
                        keys,
                        unattended_role,
                    },
                )
                .is_some()
            {
                return Err(at("registered twice".into()));
            }
        }
        Ok(Self {
            clients,
            lifetime_seconds: config.token_lifetime_seconds.clamp(30, 3600) as i64,
            seen: Mutex::default(),
        })
    }

    /// The ODS codes of the registered clients' organisations, for the start-up check.
    pub fn organisations(&self) -> impl Iterator<Item = (&str, &str)> {
        self.clients
            .values()
            .map(|c| (c.config.client_id.as_str(), c.config.organisation.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

/// Whether an organisation may run a system that views records: a member of a kind that may
/// view, not suspended.
pub fn may_run_a_system(org: &Organisation) -> bool {
    org.member
        && !org.suspended
        && !matches!(org.kind, OrgKind::PrivateCompany | OrgKind::ThirdParty)
}

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

fn end_user(v: &serde_json::Value) -> Option<EndUser> {
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

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The API caller a system token stands for: the principal (the end user at the system's
/// organisation, or the system itself when it may view unattended), its scopes and the system.
/// Refusals are audited here and answered 401/403.
pub(crate) async fn caller(
    state: &AppState,
    token: &str,
    cid: &str,
) -> Result<(Principal, Vec<String>, String), ApiError> {
    let now = state.gateway.clock().now();
    let hash = token_hash(token);
    let remembered = {
        let seen = state
            .system
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.get(&hash)
            .filter(|(_, exp)| *exp > now.timestamp_millis())
            .map(|(t, _)| t.clone())
    };
    let issued = match remembered {
        Some(t) => Some(t),
        None => {
            let row = state
                .gateway
                .store()
                .system_token(&hex(&hash), now.timestamp_millis())
                .await
                .map_err(|_| {
                    ApiError::unavailable(
                        "The gateway's store is not answering; try again shortly.",
                    )
                })?;
            row.and_then(|(data, exp)| {
                let t: IssuedToken = serde_json::from_str(&data).ok()?;
                let mut seen = state
                    .system
                    .seen
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if seen.len() >= 10_000 {
                    let n = now.timestamp_millis();
                    seen.retain(|_, (_, e)| *e > n);
                }
                seen.insert(hash, (t.clone(), exp));
                Some(t)
            })
        }
    };
    let Some(issued) = issued else {
        crate::auth::audit_refusal(
            state,
            cid,
            AuthChannel::Api,
            "unknown-or-expired-system-token",
            None,
        )
        .await;
        return Err(ApiError::unauthenticated(
            "invalid-token",
            "This access token is not one this gateway issued, or it has expired: ask the token endpoint for a new one.",
        ));
    };
    let client = state.system.clients.get(&issued.client_id);
    let organisation = client.map_or_else(
        || state.auth.organisation(""),
        |c| state.auth.organisation(&c.config.organisation),
    );
    let system_name = client.map_or("a system no longer registered", |c| c.config.name.as_str());
    let principal = match (&issued.user, client.and_then(|c| c.unattended_role)) {
        (Some(u), _) => Some(Principal {
            user_id: u.id.clone(),
            name: u.name.clone(),
            role: u.role,
            organisation: organisation.clone(),
            role_profile: None,
        }),
        (None, Some(role)) => Some(Principal {
            user_id: format!("system:{}", issued.client_id),
            name: system_name.to_owned(),
            role,
            organisation: organisation.clone(),
            role_profile: None,
        }),
        (None, None) => None,
    };
    let refuse = |reason: &'static str, words: &'static str| {
        let ctx = RequestContext {
            principal: Principal {
                user_id: format!("system:{}", issued.client_id),
                name: system_name.to_owned(),
                role: Role::Admin,
                organisation: organisation.clone(),
                role_profile: None,
            },
            correlation_id: cid.to_owned(),
            system: Some(issued.client_id.clone()),
        };
        async move {
            if let Err(e) = state
                .gateway
                .record_caller_refusal(&ctx, AuthChannel::System, reason)
                .await
            {
                tracing::error!(error = %e, "could not audit a refused system request");
            }
            ApiError::forbidden(reason, words)
        }
    };
    if client.is_none() {
        return Err(refuse(
            "system-no-longer-registered",
            "The system this token was issued to is no longer registered.",
        )
        .await);
    }
    let Some(principal) = principal else {
        return Err(refuse(
            "system-without-user",
            "A system views records for a person: name the end user in the client assertion's requesting_user claim (id, name, role). This system is not configured to view records unattended.",
        )
        .await);
    };
    Ok((principal, issued.scopes, issued.client_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_scopes_cover_only_what_they_say() {
        assert!(covers("system/*.rs", "system/*.rs"));
        assert!(covers("system/*.rs", "system/Patient.rs"));
        assert!(covers("system/*.rs", "system/Patient.r"));
        assert!(covers("system/*.read", "system/Observation.rs"));
        assert!(covers("system/*.*", "system/Consent.cu"));
        assert!(
            !covers("system/*.rs", "system/Consent.cu"),
            "writes beyond reads"
        );
        assert!(
            !covers("system/Patient.rs", "system/*.rs"),
            "one type is not all"
        );
        assert!(!covers("system/*.rs", "user/*.rs"), "another context");
        assert!(!covers("system/*.rs", "patient/*.rs"));
        assert!(!covers("system/*.rs", "launch/patient"));
        assert!(!covers("system/*.rs", "system/*.x"));
        assert!(!covers("system/*.rs", "system/../*.rs"));
    }

    #[test]
    fn clients_are_checked_at_start_up() {
        let client =
            |scopes: &[&str], jwks_url: Option<&str>, role: Option<&str>| BackendServicesConfig {
                token_lifetime_seconds: 300,
                clients: vec![SystemClientConfig {
                    client_id: "epr".into(),
                    name: "EPR".into(),
                    organisation: "RWH".into(),
                    jwks_url: jwks_url.map(str::to_owned),
                    jwks: None,
                    scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                    unattended_role: role.map(str::to_owned),
                }],
            };
        assert!(SystemAccess::new(&client(
            &["system/*.rs"],
            Some("https://epr.example/jwks"),
            None
        ))
        .is_ok());
        let err = SystemAccess::new(&client(
            &["user/*.rs"],
            Some("https://epr.example/jwks"),
            None,
        ))
        .expect_err("user scope");
        assert!(err.contains("not a SMART system/ scope"), "{err}");
        assert!(SystemAccess::new(&client(&[], Some("https://epr.example/jwks"), None)).is_err());
        assert!(
            SystemAccess::new(&client(&["system/*.rs"], None, None)).is_err(),
            "no keys"
        );
        assert!(
            SystemAccess::new(&client(
                &["system/*.rs"],
                Some("http://epr.example/jwks"),
                None
            ))
            .is_err(),
            "not https"
        );
        assert!(SystemAccess::new(&client(
            &["system/*.rs"],
            Some("https://epr.example/jwks"),
            Some("wizard")
        ))
        .is_err());
    }

    #[test]
    fn smart_v2_scopes_by_context_resource_and_permission() {
        use crate::auth::{scope_grants, scopes_allow, Need, ScopeGrant};
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            scope_grants(&s(&["system/*.rs"]), Need::Read("*")),
            Some(ScopeGrant::AnyPatient)
        );
        assert_eq!(
            scope_grants(&s(&["patient/*.rs"]), Need::Read("*")),
            Some(ScopeGrant::OnePatient),
            "bound to the token's patient"
        );
        assert!(scopes_allow(
            &s(&["system/Patient.rs"]),
            Need::Read("Patient")
        ));
        assert!(scopes_allow(
            &s(&["system/Patient.s"]),
            Need::Read("Patient")
        ));
        assert!(
            !scopes_allow(&s(&["system/Patient.rs"]), Need::Read("*")),
            "one type is not the whole record"
        );
        assert!(!scopes_allow(&s(&["system/*.c"]), Need::Read("Patient")));
        assert!(scopes_allow(
            &s(&["system/Consent.c"]),
            Need::Write("Consent")
        ));
        assert!(!scopes_allow(&s(&["system/*.d"]), Need::Write("Consent")));
        assert!(!scopes_allow(&s(&["system/*.rs"]), Need::Write("Consent")));
        assert!(!scopes_allow(&s(&["system/*.rsx"]), Need::Read("Patient")));
    }

    #[test]
    fn the_end_user_claim_must_be_whole() {
        let ok = json!({"id": "u1", "name": "Dr A", "role": "clinician"});
        assert_eq!(end_user(&ok).map(|u| u.role), Some(Role::Clinician));
        assert!(end_user(&json!({"id": "u1", "name": "Dr A"})).is_none());
        assert!(end_user(&json!({"id": "", "name": "Dr A", "role": "clinician"})).is_none());
        assert!(end_user(&json!({"id": "u1", "name": "Dr A", "role": "overlord"})).is_none());
        assert!(end_user(&json!("u1")).is_none());
    }
}
