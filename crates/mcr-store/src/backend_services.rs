//! What the gateways of a region share for SMART backend services (system-to-system callers): the
//! `jti` of every client assertion until its `exp`, so a replay is refused by whichever gateway it
//! reaches, and the access tokens issued (by hash; what they hold is the web layer's own JSON), so
//! any gateway accepts a token another issued. One statement per call on either backend
//! (`sqlite/backend_services.rs`, `postgres/backend_services.rs`). Times are Unix milliseconds from
//! the caller's clock.

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
