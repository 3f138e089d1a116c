//! What the gateways of a region share for SMART backend services (system-to-system callers): the
//! `jti` of every client assertion until its `exp`, so a replay is refused by whichever gateway it
//! reaches, and the access tokens issued (by hash; what they hold is the web layer's own JSON), so
//! any gateway accepts a token another issued. One statement per call on either backend
//! (`sqlite/backend_services.rs`, `postgres/backend_services.rs`). Times are Unix milliseconds from
//! the caller's clock.

use crate::common::{Statement, Value};
use crate::Result;
use async_trait::async_trait;

#[async_trait]
pub trait BackendServicesStore: Send + Sync {
    /// Remember `client_id`'s assertion `jti` until `expires_ms`: `true` the first time,
    /// `false` when it is already remembered (a replay). Forgets expired ones on the way.
    async fn remember_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<bool>;
    /// Keep an issued access token's data until `expires_ms`; forgets expired tokens on the way.
    async fn put_system_token(
        &self,
        id_hash: &str,
        data: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<()>;
    /// An issued token's data with its expiry, while it has not expired at `now_ms`.
    async fn system_token(&self, id_hash: &str, now_ms: i64) -> Result<Option<(String, i64)>>;
}

/// Forget the assertions past their `exp`.
pub(crate) fn forget_assertions(now_ms: i64) -> Statement<'static> {
    Statement::new(
        "DELETE FROM client_assertion WHERE expires_ms < $1",
        vec![Value::Int(now_ms)],
    )
}

/// Remember an assertion's `jti`: a row back when it is new, none when it was seen before.
pub(crate) fn remember_assertion<'a>(
    client_id: &'a str,
    jti: &'a str,
    expires_ms: i64,
) -> Statement<'a> {
    Statement::new(
        "INSERT INTO client_assertion (client_id, jti, expires_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (client_id, jti) DO NOTHING RETURNING jti",
        vec![
            Value::Text(client_id),
            Value::Text(jti),
            Value::Int(expires_ms),
        ],
    )
}

/// An issued token not yet expired: what it holds and when it expires.
pub(crate) fn system_token(id_hash: &str, now_ms: i64) -> Statement<'_> {
    Statement::new(
        "SELECT data, expires_ms FROM system_token WHERE id_hash = $1 AND expires_ms > $2",
        vec![Value::Text(id_hash), Value::Int(now_ms)],
    )
}
