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

use mcr_domain::{OrgKind, Organisation, Role};
use mcr_oidc::assertion::ClientKeys;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::collections::HashMap;
use std::sync::Mutex;

mod caller;
#[cfg(test)]
mod tests;
mod token;

pub(crate) use caller::caller;
pub(crate) use token::token;

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

/// Lower-case hex, as a token's hash is kept in the store.
fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
