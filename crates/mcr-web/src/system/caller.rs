//! The API caller a system token stands for: the token looked up (in memory once seen, else
//! in the shared store), and the principal its requests are decided for.

use super::{hex, token_hash, IssuedToken};
use crate::{ApiError, AppState};
use mcr_domain::{Principal, Role};
use mcr_gateway::{AuthChannel, RequestContext};

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
