//! Local identities on SQLite: the statements of [`crate::local_identity`], writes on the
//! writer connection, a resolution in a `BEGIN IMMEDIATE` transaction with its audit record.

use super::audit::append_audit_in_tx;
use super::{SqliteStore, IMMEDIATE};

macro_rules! write_tx {
    ($this:ident, $tx:ident, $body:block) => {{
        let mut writer = $this.write_conn().await?;
        let mut $tx = sqlx::Connection::begin(&mut *writer).await?;
        $body
        $tx.commit().await?;
    }};
}

macro_rules! append_tx {
    ($this:ident, $tx:ident, $body:block) => {{
        let (_one_chain, mut writer) = $this.begin_append().await?;
        let mut $tx = sqlx::Connection::begin_with(&mut *writer, IMMEDIATE).await?;
        $body
        $tx.commit().await?;
    }};
}

crate::local_identity::local_identity_impl!(
    SqliteStore,
    read,
    write_tx,
    append_tx,
    append_audit_in_tx,
    super::match_review::sqlite_delete_keys
);
