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
use sqlx::{ColumnIndex, Decode, Row, Type};

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

/// A row's `id`, as the reads of [`Runner::audited_after_ids`] answer it.
pub(crate) fn id_from_row<R>(row: &R) -> Result<i64>
where
    R: Row,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    crate::common::get(row, "id")
}

/// What [`Runner::audited_after_ids`] writes, given what its reads found.
pub(crate) type WritesAfter<'w, 'a> =
    dyn Fn(&[Option<i64>]) -> Result<Option<Vec<Statement<'a>>>> + Send + Sync + 'w;

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

    /// `writes` in order, in one transaction on the connection writes use.
    async fn written(&self, writes: &[Statement<'_>]) -> Result<()>;

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

    /// `reads` first, each answering at most one row's `id` (read with [`id_from_row`]), then
    /// the statements `writes` makes of what they found, in order, then `audit` appended, all
    /// in one transaction. When `writes` answers `None`, nothing is written and no audit
    /// record appended (`None`); when it fails, the transaction is rolled back.
    async fn audited_after_ids(
        &self,
        reads: &[Statement<'_>],
        writes: &WritesAfter<'_, '_>,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<Option<AuditRow>>;
}
