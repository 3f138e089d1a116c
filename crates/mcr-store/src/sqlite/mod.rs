//! The embedded backend: one SQLite file in WAL mode.
//!
//! Reads use a pool of connections, and each record view's read its own connection; every
//! write goes through one connection that writers in this process take in turn, so they queue
//! instead of meeting `SQLITE_BUSY`. The view's reader and the writer are held, not pooled: a
//! pool checks a connection back in with a round trip to its thread (a ping), which every
//! view paid twice, in CPU and thread wake-ups, right as it fanned out or answered. Audit appends
//! also take an in-process lock. A batch of them is one `INSERT` after the chain head this
//! handle last wrote; if another process appended since, the sequence number is taken, the
//! statement fails whole, and the batch is written in a `BEGIN IMMEDIATE` transaction that
//! reads the head and inserts as one step. `synchronous = FULL`: a committed audit record
//! survives power loss.
//!
//! This file holds the handle and its connections; `runner.rs` runs the statements of topics
//! that are the same on both backends, and each topic that differs by backend has a file of
//! its own beside it, the same files as `postgres/` has.

mod audit;
mod audit_trail;
mod backend_services;
mod care_event;
mod governance;
mod index;
mod local_identity;
mod match_review;
mod patient_merge;
mod runner;
mod shared_state;
mod store;
mod watch_counts;

use crate::common::open_error;
use crate::{Result, StoreError};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection as _, SqliteConnection};
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

pub struct SqliteStore {
    /// Held while the store is open: the background checkpoint ([`checkpoint_behind`]) stops
    /// once it is gone.
    _alive: std::sync::Arc<()>,
    read: SqlitePool,
    /// The one connection that writes. Taken only through [`SqliteStore::write_conn`], which
    /// replaces it when a failed write left it unusable.
    writer: Mutex<SqliteConnection>,
    /// Set when a write on `writer` failed: the next taker checks it before use.
    writer_suspect: std::sync::atomic::AtomicBool,
    /// The read-only connections each view's read (`view_inputs`) runs on, in the calling
    /// thread ([`SqliteStore::read_for_view`]); one is taken per read and put back after it
    /// succeeded, so there are never more than the threads reading at once.
    viewers: std::sync::Mutex<Vec<rusqlite::Connection>>,
    /// The watch's counters' own connection (`synchronous = NORMAL`, used only while holding
    /// `writer`; see `watch_counts`); `None` until first needed and after it failed.
    watcher: Mutex<Option<SqliteConnection>>,
    options: SqliteConnectOptions,
    append: Mutex<()>,
    /// The chain's last record as this handle committed it (sequence number, hash): `None`
    /// until first needed and after any write whose outcome it does not know. Read and written
    /// only while `append` is held.
    head: std::sync::Mutex<Option<(i64, String)>>,
    group: crate::group_commit::GroupCommit,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}
/// The writer's page cache: at most 64 MiB (negative: KiB, SQLite's convention).
const WRITER_CACHE: &str = "-65536";

/// The log's pages after which the writer copies them into the database: 16,384 (64 MiB;
/// SQLite's default is 1,000). A checkpoint copies each database page changed since the last
/// once, however often it was changed; an index sync changes the same B-tree pages again and
/// again, and with the default copied (and read back from the log) about twice the pages.
const WAL_CHECKPOINT_PAGES: &str = "16384";

/// The writer's page cache, and its temporary files in memory: a statement that may fail
/// part way (an upsert of many rows, a foreign key checked) keeps the pages it changes in a
/// statement journal, which SQLite otherwise writes to a temporary file page by page (an
/// index sync spent a seventh of its time in those writes). A statement's journal holds at
/// most the pages that one statement changes.
fn writer_options(options: &SqliteConnectOptions) -> SqliteConnectOptions {
    options
        .clone()
        .pragma("cache_size", WRITER_CACHE)
        .pragma("temp_store", "memory")
        .pragma("wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
}

/// How often the write-ahead log is copied into the database behind the writers
/// ([`checkpoint_behind`]).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Copies the write-ahead log into the database every [`CHECKPOINT_EVERY`], on a connection
/// of its own, for as long as the store it was started for is open (`alive`). A `PASSIVE`
/// checkpoint takes no writer's lock: no view's audit record waits for it, where a checkpoint
/// the writers' own commits start (at [`WAL_CHECKPOINT_PAGES`]) holds the write connection
/// while it flushes the database. Copied, the log starts again from its beginning, so each
/// commit's flush writes over blocks the file already has, where a flush that extends the file
/// must write the file's size as well, and takes longer. A checkpoint that fails (the disk full, the file gone) is tried again on a
/// fresh connection next second, logged when the failing starts and when it ends; the
/// writers' own checkpoints remain behind it.
async fn checkpoint_behind(options: SqliteConnectOptions, alive: std::sync::Weak<()>) {
    let mut conn: Option<SqliteConnection> = None;
    // When checkpoints began to fail: said once, and once more when they work again, not
    // every second in between.
    let mut failing_since: Option<std::time::Instant> = None;
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        if alive.strong_count() == 0 {
            return;
        }
        match (checkpoint_once(&options, &mut conn).await, failing_since) {
            (Ok(()), Some(since)) => {
                tracing::info!(
                    seconds = since.elapsed().as_secs(),
                    "the store's log is copied into the database again"
                );
                failing_since = None;
            }
            (Err(e), None) => {
                tracing::warn!(error = %e, "the store's log could not be copied into the database; trying again every second");
                failing_since = Some(std::time::Instant::now());
            }
            _ => {}
        }
    }
}

/// One `PASSIVE` checkpoint on `conn` (opened if there is none). A connection that failed is
/// dropped, never reused: the next one is opened afresh.
async fn checkpoint_once(
    options: &SqliteConnectOptions,
    conn: &mut Option<SqliteConnection>,
) -> std::result::Result<(), sqlx::Error> {
    let mut c = match conn.take() {
        Some(c) => c,
        None => SqliteConnection::connect_with(options).await?,
    };
    sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .execute(&mut c)
        .await?;
    *conn = Some(c);
    Ok(())
}

impl SqliteStore {
    /// Open (creating if missing) `sqlite:///abs/path.db` or `sqlite://relative.db`.
    pub async fn open(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(open_error)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // The writer opens first so the file exists (and is in WAL mode) before readers connect.
        // Its page cache may grow to 64 MiB (SQLite's default is 2 MiB): an index sync upserts
        // hundreds of thousands of rows into B-trees larger than that, and with the default
        // each insert read its pages from the file again.
        let writer = SqliteConnection::connect_with(&writer_options(&options))
            .await
            .map_err(open_error)?;
        // A connection to a file in this process cannot go stale, so the pool does not ping it
        // before each use (sqlx's default): that would be one more trip to its thread per query.
        let read = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(open_error)?;
        let viewer = open_viewer(options.get_filename())?;
        let alive = std::sync::Arc::new(());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(checkpoint_behind(
                options.clone(),
                std::sync::Arc::downgrade(&alive),
            ));
        }
        Ok(Self {
            _alive: alive,
            read,
            writer: Mutex::new(writer),
            writer_suspect: std::sync::atomic::AtomicBool::new(false),
            viewers: std::sync::Mutex::new(vec![viewer]),
            watcher: Mutex::new(None),
            options,
            append: Mutex::new(()),
            head: std::sync::Mutex::new(None),
            group: crate::group_commit::GroupCommit::default(),
        })
    }

    /// For an audit append transaction: takes the in-process append lock, then the writer.
    /// Begin the transaction on the writer with [`IMMEDIATE`], and keep both guards until it
    /// has ended.
    async fn begin_append(&self) -> Result<(MutexGuard<'_, ()>, MutexGuard<'_, SqliteConnection>)> {
        let one_chain = self.append.lock().await;
        // The transaction may append a record of its own, or roll back: read the head afresh.
        *self
            .head
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        Ok((one_chain, self.write_conn().await?))
    }

    /// The write connection, checked first: a connection a failed write left inside a
    /// transaction (e.g. a `COMMIT` refused with `SQLITE_FULL`, after which SQLite has rolled
    /// back on its own and the driver's `ROLLBACK` fails too, so the driver believes a
    /// transaction is still open and refuses every `BEGIN IMMEDIATE` from then on), or one
    /// that no longer answers, is closed and replaced by a new one. A healthy connection costs
    /// one atomic load here. Fails (the store is unavailable) if no new connection can be
    /// opened; the next taker tries again.
    async fn write_conn(&self) -> Result<MutexGuard<'_, SqliteConnection>> {
        use std::sync::atomic::Ordering;
        let mut writer = self.writer.lock().await;
        let suspect = self.writer_suspect.swap(false, Ordering::AcqRel);
        if !suspect && !writer.is_in_transaction() {
            return Ok(writer);
        }
        // A dropped transaction's `ROLLBACK` may still be queued on the connection's worker:
        // a ping waits for it, then the depth is read again.
        let answers = writer.ping().await.is_ok();
        if answers && !writer.is_in_transaction() {
            return Ok(writer);
        }
        match SqliteConnection::connect_with(&writer_options(&self.options)).await {
            Ok(fresh) => {
                let broken = std::mem::replace(&mut *writer, fresh);
                tracing::warn!(
                    answers,
                    "the store's write connection was left unusable by a failed write; replaced it"
                );
                // Dropping it ends its worker, which closes the file handle; SQLite rolls back
                // whatever was still open on it.
                drop(broken);
                Ok(writer)
            }
            Err(e) => {
                self.writer_suspect.store(true, Ordering::Release);
                Err(open_error(e))
            }
        }
    }

    /// The watch's counters' connection, opened if there is none: `synchronous = NORMAL`, so
    /// its commits are not flushed on their own but with the next durable commit to the same
    /// write-ahead log. Take it only while holding [`SqliteStore::write_conn`]; set it to
    /// `None` after a failed statement (it is opened again next time). A write connection like
    /// the writer ([`writer_options`]): it copies the log into the database at the writer's
    /// threshold ([`WAL_CHECKPOINT_PAGES`]), not SQLite's 1,000 pages: its counts write about
    /// as many log pages as the audit trail, and at 1,000 it checkpointed every few seconds
    /// under load, flushing the database while holding the write connection every view's audit
    /// record waits for.
    async fn watch_conn(&self) -> Result<MutexGuard<'_, Option<SqliteConnection>>> {
        let mut slot = self.watcher.lock().await;
        if slot.is_none() {
            let options = writer_options(&self.options).synchronous(SqliteSynchronous::Normal);
            *slot = Some(
                SqliteConnection::connect_with(&options)
                    .await
                    .map_err(open_error)?,
            );
        }
        Ok(slot)
    }

    /// Marks the write connection for a check by its next taker (after a failed write).
    fn writer_failed(&self) {
        self.writer_suspect
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The one value `sql` answers for `nhs`, read on one of the viewers in this thread: the
    /// statement is one indexed read of a few pages the cache holds, shorter than handing it
    /// to a connection's own thread and being woken when it answers (which is how every
    /// `sqlx` statement runs, and on an idle core the wake-up cost more than the read). A
    /// viewer that failed is dropped, never reused; the next read opens another.
    fn read_for_view(&self, sql: &str, nhs: &str) -> Result<String> {
        let taken = self.viewers().pop();
        let conn = match taken {
            Some(conn) => conn,
            None => open_viewer(self.options.get_filename())?,
        };
        let answer = conn
            .prepare_cached(sql)
            .and_then(|mut statement| statement.query_row([nhs], |row| row.get(0)))
            .map_err(|e| StoreError::Unavailable(format!("the view's read failed: {e}")))?;
        self.viewers().push(conn);
        Ok(answer)
    }

    fn viewers(&self) -> std::sync::MutexGuard<'_, Vec<rusqlite::Connection>> {
        self.viewers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How long a view's read waits for a lock before failing: in WAL mode a reader waits only
/// while the log is being recovered or reset, and it waits in the calling thread.
const VIEWER_BUSY: Duration = Duration::from_millis(500);

/// A read-only connection for views' reads. The writer opened the file first, in WAL mode.
fn open_viewer(path: &std::path::Path) -> Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let failed = |e: rusqlite::Error| {
        StoreError::Unavailable(format!("opening a connection for views' reads: {e}"))
    };
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(failed)?;
    conn.busy_timeout(VIEWER_BUSY).map_err(failed)?;
    Ok(conn)
}

/// How an audit append transaction begins: no other writer (another process) can come
/// between reading the chain's head and inserting after it.
const IMMEDIATE: &str = "BEGIN IMMEDIATE";

#[cfg(test)]
mod tests {
    use super::{SqliteStore, WAL_CHECKPOINT_PAGES};
    use sqlx::SqliteConnection;

    async fn store_in(dir: &tempfile::TempDir) -> SqliteStore {
        let path = dir.path().join("store.db");
        SqliteStore::open(&format!("sqlite://{}", path.display()))
            .await
            .expect("store opens")
    }

    async fn autocheckpoint(conn: &mut SqliteConnection) -> i64 {
        sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(conn)
            .await
            .expect("pragma")
    }

    /// Both connections that write checkpoint at the writer's threshold: the watch's counters
    /// never copy the log into the database (and flush it) every 1,000 pages while holding the
    /// write connection.
    #[tokio::test]
    async fn the_watch_connection_checkpoints_at_the_writers_threshold() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = store_in(&dir).await;
        let expected: i64 = WAL_CHECKPOINT_PAGES.parse().expect("a number");
        let mut writer = store.write_conn().await.expect("write connection");
        assert_eq!(autocheckpoint(&mut writer).await, expected, "the writer");
        let mut slot = store.watch_conn().await.expect("watch connection");
        let conn = slot.as_mut().expect("opened");
        assert_eq!(autocheckpoint(conn).await, expected, "the watch's counters");
    }

    /// A view's read sees what the writer committed a moment before; a read that failed
    /// puts no connection back, and the next one opens another.
    #[tokio::test]
    async fn a_views_read_sees_the_last_commit_and_a_failed_one_keeps_no_connection() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = store_in(&dir).await;
        let count = "SELECT CAST(count(*) AS TEXT) FROM seen WHERE nhs = ?1";
        let write = |sql: &'static str| {
            let store = &store;
            async move {
                let mut writer = store.write_conn().await.expect("write connection");
                sqlx::query(sql).execute(&mut *writer).await.expect(sql);
            }
        };
        write("CREATE TABLE seen (nhs TEXT)").await;
        assert_eq!(store.read_for_view(count, "9990000018").expect("read"), "0");
        write("INSERT INTO seen (nhs) VALUES ('9990000018')").await;
        assert_eq!(store.read_for_view(count, "9990000018").expect("read"), "1");
        assert_eq!(store.viewers().len(), 1);
        assert!(store
            .read_for_view("SELECT no_such_column FROM seen", "x")
            .is_err());
        assert_eq!(store.viewers().len(), 0, "the failed connection is dropped");
        assert_eq!(
            store
                .read_for_view(count, "9990000018")
                .expect("read again"),
            "1"
        );
        assert_eq!(store.viewers().len(), 1);
    }

    /// A checkpoint that cannot be made says why and keeps no connection; one that can keeps
    /// its connection for the next second's.
    #[tokio::test]
    async fn a_checkpoint_that_fails_keeps_no_connection() {
        use std::str::FromStr;
        let dir = tempfile::tempdir().expect("temporary directory");
        let gone = dir.path().join("no such folder").join("store.db");
        let options =
            sqlx::sqlite::SqliteConnectOptions::from_str(&format!("sqlite://{}", gone.display()))
                .expect("options");
        let mut conn = None;
        assert!(super::checkpoint_once(&options, &mut conn).await.is_err());
        assert!(conn.is_none());
        let store = store_in(&dir).await;
        assert!(super::checkpoint_once(&store.options, &mut conn)
            .await
            .is_ok());
        assert!(conn.is_some(), "kept for the next checkpoint");
    }

    /// The log is copied into the database behind the writers, so it starts again from its
    /// beginning within a second or two and never grows with everything written since the
    /// store opened. Ten bursts of about 1.6 MiB each, 0.7 s apart: without the background
    /// checkpoint the log would hold all 16 MiB (the writers' own threshold is 64 MiB).
    #[tokio::test]
    async fn the_log_is_copied_into_the_database_behind_the_writers() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = store_in(&dir).await;
        let wal = dir.path().join("store.db-wal");
        {
            let mut writer = store.write_conn().await.expect("write connection");
            sqlx::query("CREATE TABLE filler (x BLOB)")
                .execute(&mut *writer)
                .await
                .expect("table");
        }
        let mut largest = 0;
        for _ in 0..10 {
            {
                let mut writer = store.write_conn().await.expect("write connection");
                let mut tx = sqlx::Connection::begin(&mut *writer).await.expect("begin");
                for _ in 0..100 {
                    sqlx::query("INSERT INTO filler (x) VALUES (randomblob(16000))")
                        .execute(&mut *tx)
                        .await
                        .expect("insert");
                }
                tx.commit().await.expect("commit");
            }
            largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
            tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        }
        let written = 10 * 100 * 16_000;
        assert!(
            largest < written / 2,
            "the log grew to {largest} bytes of the {written} written"
        );
    }
}
