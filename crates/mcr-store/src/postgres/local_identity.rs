//! Local identities on PostgreSQL: the statements of [`crate::local_identity`], each write in
//! one transaction, a resolution with its audit record (the audit advisory lock taken by the
//! append).

use super::audit::append_audit_in_tx;
use super::PostgresStore;

macro_rules! write_tx {
    ($this:ident, $tx:ident, $body:block) => {{
        let mut $tx = $this.pool.begin().await?;
        $body
        $tx.commit().await?;
    }};
}

crate::local_identity::local_identity_impl!(
    PostgresStore,
    pool,
    write_tx,
    write_tx,
    append_audit_in_tx,
    super::match_review::delete_keys
);
