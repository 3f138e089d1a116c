//! One way to run a topic's statements on either backend: [`Runner`], which each backend's
//! handle implements (`sqlite/runner.rs`, `postgres/runner.rs`: which connection reads, and
//! the transaction that writes with an audit record). A topic whose statements and readers are
//! the same on both backends implements its store trait once, for every `Runner`, in its own
//! file; a topic that differs by backend (batches, locks, data-modifying `WITH`) keeps a file
//! in each backend's folder.

use crate::common::Statement;
use crate::{AuditAppend, AuditRow, ChainFn, Result};
use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

/// A row reader for both backends: a topic's generic reader (over sqlx's `Row`), once per
/// backend's row type, as `Reader::new(person_from_row, person_from_row)`.
pub(crate) struct Reader<T> {
    pub sqlite: fn(&SqliteRow) -> Result<T>,
    pub postgres: fn(&PgRow) -> Result<T>,
}

impl<T> Reader<T> {
    pub fn new(sqlite: fn(&SqliteRow) -> Result<T>, postgres: fn(&PgRow) -> Result<T>) -> Self {
        Self { sqlite, postgres }
    }
}

/// Runs a topic's [`Statement`]s on a backend.
#[async_trait]
pub(crate) trait Runner: Send + Sync {
    /// The statement's rows, on the connections reads use, each read with `read`.
    async fn fetch_all<T: Send>(
        &self,
        statement: &Statement<'_>,
        read: Reader<T>,
    ) -> Result<Vec<T>>;

    /// The statement's one row, if any, on the connections reads use, read with `read`.
    async fn fetch_optional<T: Send>(
        &self,
        statement: &Statement<'_>,
        read: Reader<T>,
    ) -> Result<Option<T>>;

    /// `writes` in order, then `audit` appended, in one transaction.
    async fn audited(
        &self,
        writes: &[Statement<'_>],
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<AuditRow>;

    /// [`Self::audited`] for one write that must change exactly one row: when it changes
    /// none (or more), nothing is written and no audit record appended (`None`).
    async fn audited_if_one(
        &self,
        write: Statement<'_>,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<Option<AuditRow>>;
}
