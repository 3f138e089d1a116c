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

use crate::common::{
    audit_from_row, audit_limit, last_per_key, link_from_row, open_error, patient_from_row, ts,
    unmatched_from_row, NormalQuery, PatientRow, AUDIT_COLUMNS, LINK_COLUMNS, PATIENT_COLUMNS,
};
use crate::{
    AuditAppend, AuditFilter, AuditRow, AuditStore, ChainFn, DemographicQuery, IndexStore,
    IndexedPatient, Result, SourceLink, Store, StoreError, UnmatchedRecord, AUDIT_GENESIS_HASH,
};
use async_trait::async_trait;
use mcr_domain::{NhsNumber, SourceId};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection as _, QueryBuilder, Row, Sqlite, SqliteConnection};
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

/// Rows per multi-row `INSERT` (11 parameters each, far below SQLite's 32766 limit). Every
/// full chunk has the same SQL, so its prepared statement is reused from the cache.
const CHUNK: usize = 500;

mod patient_status;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    pub(crate) read: SqlitePool,
    /// The one connection that writes. Taken only through [`SqliteStore::write_conn`], which
    /// replaces it when a failed write left it unusable.
    writer: Mutex<SqliteConnection>,
    /// Set when a write on `writer` failed: the next taker checks it before use.
    writer_suspect: std::sync::atomic::AtomicBool,
    /// The connection each view's read (`view_inputs`) uses; `None` after it failed, until
    /// the next view opens it again.
    viewer: Mutex<Option<SqliteConnection>>,
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

impl SqliteStore {
    /// Patients in multi-row statements of [`CHUNK`], one transaction per call.
    async fn write_patients(&self, patients: &[IndexedPatient], on_conflict: &str) -> Result<()> {
        let rows: Vec<PatientRow<'_>> = last_per_key(patients, |p| p.nhs_number.clone())
            .into_iter()
            .map(PatientRow::new)
            .collect();
        let mut writer = self.write_conn().await?;
        let mut tx = writer.begin().await?;
        for chunk in rows.chunks(CHUNK) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO patient (nhs_number, family, given, family_norm, given_norm, \
                 birth_date, gender, postcode, postcode_norm, gp_practice, updated_at) ",
            );
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(r.p.nhs_number.as_str())
                    .push_bind(r.p.family.as_str())
                    .push_bind(r.p.given.as_str())
                    .push_bind(r.family_norm.as_str())
                    .push_bind(r.given_norm.as_str())
                    .push_bind(r.p.birth_date)
                    .push_bind(r.p.gender.as_deref())
                    .push_bind(r.p.postcode.as_deref())
                    .push_bind(r.postcode_norm.as_deref())
                    .push_bind(r.p.gp_practice.as_deref())
                    .push_bind(r.updated_at.as_str());
            });
            qb.push(on_conflict);
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

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
        let writer = SqliteConnection::connect_with(&options)
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
        let viewer = SqliteConnection::connect_with(&options)
            .await
            .map_err(open_error)?;
        Ok(Self {
            read,
            writer: Mutex::new(writer),
            writer_suspect: std::sync::atomic::AtomicBool::new(false),
            viewer: Mutex::new(Some(viewer)),
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
    pub(crate) async fn begin_append(
        &self,
    ) -> Result<(MutexGuard<'_, ()>, MutexGuard<'_, SqliteConnection>)> {
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
    pub(crate) async fn write_conn(&self) -> Result<MutexGuard<'_, SqliteConnection>> {
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
        match SqliteConnection::connect_with(&self.options).await {
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
    /// `None` after a failed statement (it is opened again next time).
    pub(crate) async fn watch_conn(&self) -> Result<MutexGuard<'_, Option<SqliteConnection>>> {
        let mut slot = self.watcher.lock().await;
        if slot.is_none() {
            let options = self.options.clone().synchronous(SqliteSynchronous::Normal);
            *slot = Some(
                SqliteConnection::connect_with(&options)
                    .await
                    .map_err(open_error)?,
            );
        }
        Ok(slot)
    }

    /// Marks the write connection for a check by its next taker (after a failed write).
    pub(crate) fn writer_failed(&self) {
        self.writer_suspect
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The rows of `sql` for `nhs`, read on the view's own connection (opened again if it
    /// failed last time).
    pub(crate) async fn read_for_view(
        &self,
        sql: &str,
        nhs: &str,
    ) -> Result<Vec<sqlx::sqlite::SqliteRow>> {
        let mut viewer = self.viewer.lock().await;
        let conn = match &mut *viewer {
            Some(conn) => conn,
            empty => empty.insert(
                SqliteConnection::connect_with(&self.options)
                    .await
                    .map_err(open_error)?,
            ),
        };
        let fetched = sqlx::query(sql).bind(nhs).fetch_all(conn).await;
        if fetched.is_err() {
            // Whatever went wrong, the next view starts on a fresh connection.
            *viewer = None;
        }
        Ok(fetched?)
    }
}

/// How an audit append transaction begins: no other writer (another process) can come
/// between reading the chain's head and inserting after it.
pub(crate) const IMMEDIATE: &str = "BEGIN IMMEDIATE";

/// Appends one audit record inside a transaction opened after [`SqliteStore::begin_append`]:
/// assigns the next sequence number, reads the previous hash, computes the new hash with
/// `chain` and inserts. The caller commits (or drops the transaction to roll back).
pub(crate) async fn append_audit_in_tx(
    conn: &mut SqliteConnection,
    record: &AuditAppend,
    chain: &ChainFn,
) -> Result<AuditRow> {
    let head = read_head(&mut *conn).await?;
    let mut rows = chained(head, std::slice::from_ref(record), chain);
    insert_audit_rows(&mut *conn, &rows).await?;
    rows.pop()
        .ok_or_else(|| StoreError::Corrupt("an audit append made no row".into()))
}

/// The chain's last record: its sequence number and hash (the genesis hash before the first).
async fn read_head(conn: &mut SqliteConnection) -> Result<(i64, String)> {
    let last: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(conn)
            .await?;
    Ok(last.unwrap_or_else(|| (0, AUDIT_GENESIS_HASH.to_owned())))
}

/// `records` as the rows that follow `head` in the chain.
fn chained<'a>(
    head: (i64, String),
    records: impl IntoIterator<Item = &'a AuditAppend>,
    chain: &ChainFn,
) -> Vec<AuditRow> {
    let (mut seq, mut prev_hash) = head;
    records
        .into_iter()
        .map(|record| {
            seq += 1;
            let hash = chain(seq, &prev_hash, record);
            AuditRow {
                seq,
                prev_hash: std::mem::replace(&mut prev_hash, hash.clone()),
                hash,
                record: record.clone(),
            }
        })
        .collect()
}

/// Inserts `rows` in one statement: outside a transaction SQLite commits it on its own, all
/// or nothing, with one sync of the log.
async fn insert_audit_rows<'c>(
    conn: impl sqlx::Executor<'c, Database = Sqlite>,
    rows: &[AuditRow],
) -> std::result::Result<(), sqlx::Error> {
    let mut qb = QueryBuilder::<Sqlite>::new(
        "INSERT INTO audit_log (seq, at, correlation_id, user_id, org_code, patient, action, \
         outcome, payload, prev_hash, hash, role_profile_id) ",
    );
    qb.push_values(rows, |mut b, row| {
        let r = &row.record;
        b.push_bind(row.seq)
            .push_bind(ts(&r.at))
            .push_bind(r.correlation_id.as_str())
            .push_bind(r.user_id.as_str())
            .push_bind(r.org_code.as_str())
            .push_bind(r.patient.as_deref())
            .push_bind(r.action.as_str())
            .push_bind(r.outcome.as_str())
            .push_bind(r.payload.as_str())
            .push_bind(row.prev_hash.as_str())
            .push_bind(row.hash.as_str())
            .push_bind(r.role_profile_id.as_deref());
    });
    qb.build().execute(conn).await?;
    Ok(())
}

impl SqliteStore {
    /// Writes a batch of audit records, with the governance changes they record, and returns
    /// their rows once committed.
    ///
    /// A batch of audit records alone is usually one statement: the chain head is the one
    /// this handle last wrote. If another writer of the same file (another process) appended
    /// since, the statement meets its sequence number and fails whole; then, whenever the head
    /// is not known, and whenever the batch holds a governance change, the changes and records
    /// are written in one `BEGIN IMMEDIATE` transaction, which no other writer can come between.
    async fn write_audit_batch(
        &self,
        batch: &[crate::group_commit::Entry],
        chain: &ChainFn,
    ) -> Result<Vec<AuditRow>> {
        let written = self.try_write_audit_batch(batch, chain).await;
        if written.is_err() {
            self.writer_failed();
        }
        written
    }

    async fn try_write_audit_batch(
        &self,
        batch: &[crate::group_commit::Entry],
        chain: &ChainFn,
    ) -> Result<Vec<AuditRow>> {
        // Taken, not copied: it is put back only after a commit, so no failure leaves it stale.
        let known = self
            .head
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let records = || batch.iter().map(|e| &e.record);
        let mut writer = self.write_conn().await?;
        let changes = batch.iter().any(|e| e.change.is_some());
        if let (Some(head), false) = (known, changes) {
            let rows = chained(head, records(), chain);
            match insert_audit_rows(&mut *writer, &rows).await {
                Ok(()) => {
                    self.remember_head(&rows);
                    return Ok(rows);
                }
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut tx = writer.begin_with(IMMEDIATE).await?;
        for change in batch.iter().filter_map(|e| e.change.as_ref()) {
            crate::governance_sqlite::insert_change(&mut tx, change).await?;
        }
        let head = read_head(&mut tx).await?;
        let rows = chained(head, records(), chain);
        insert_audit_rows(&mut *tx, &rows).await?;
        tx.commit().await?;
        self.remember_head(&rows);
        Ok(rows)
    }

    /// Appends `record`, with the governance change it records, through the group commit.
    pub(crate) async fn group_append(
        &self,
        change: Option<&crate::GovernanceChange>,
        record: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<AuditRow> {
        let entry = crate::group_commit::Entry {
            change: change.cloned(),
            record: record.clone(),
        };
        self.group
            .append(&self.append, entry, |batch| async move {
                self.write_audit_batch(&batch, chain).await
            })
            .await
    }

    fn remember_head(&self, rows: &[AuditRow]) {
        if let Some(last) = rows.last() {
            *self
                .head
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some((last.seq, last.hash.clone()));
        }
    }
}

#[async_trait]
impl IndexStore for SqliteStore {
    async fn upsert_patients(&self, patients: &[IndexedPatient]) -> Result<()> {
        self.write_patients(patients, crate::PATIENT_REPLACE).await
    }

    async fn insert_missing_patients(&self, patients: &[IndexedPatient]) -> Result<()> {
        self.write_patients(patients, crate::PATIENT_KEEP).await
    }

    async fn upsert_links(&self, links: &[SourceLink]) -> Result<()> {
        let rows = last_per_key(links, |l| (l.source.clone(), l.local_id.clone()));
        let mut writer = self.write_conn().await?;
        let mut tx = writer.begin().await?;
        for chunk in rows.chunks(CHUNK) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO source_link (source, local_id, nhs_number, method, family, given, \
                 birth_date, postcode, linked_at) ",
            );
            qb.push_values(chunk, |mut b, l| {
                b.push_bind(l.source.as_str())
                    .push_bind(l.local_id.as_str())
                    .push_bind(l.nhs_number.as_str())
                    .push_bind(l.method.as_str())
                    .push_bind(l.family.as_str())
                    .push_bind(l.given.as_str())
                    .push_bind(l.birth_date)
                    .push_bind(l.postcode.as_deref())
                    .push_bind(ts(&l.linked_at));
            });
            qb.push(
                " ON CONFLICT (source, local_id) DO UPDATE SET nhs_number = excluded.nhs_number, \
                 method = excluded.method, family = excluded.family, given = excluded.given, \
                 birth_date = excluded.birth_date, postcode = excluded.postcode, \
                 linked_at = excluded.linked_at",
            );
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn patient(&self, nhs: &NhsNumber) -> Result<Option<IndexedPatient>> {
        let sql = format!("SELECT {PATIENT_COLUMNS} FROM patient WHERE nhs_number = ?1");
        let row = sqlx::query(&sql)
            .bind(nhs.as_str())
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(patient_from_row).transpose()
    }

    async fn links(&self, nhs: &NhsNumber) -> Result<Vec<SourceLink>> {
        let sql = format!(
            "SELECT {LINK_COLUMNS} FROM source_link WHERE nhs_number = ?1 ORDER BY source, local_id"
        );
        let rows = sqlx::query(&sql)
            .bind(nhs.as_str())
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(link_from_row).collect()
    }

    async fn link_for_local(
        &self,
        source: &SourceId,
        local_id: &str,
    ) -> Result<Option<SourceLink>> {
        let sql =
            format!("SELECT {LINK_COLUMNS} FROM source_link WHERE source = ?1 AND local_id = ?2");
        let row = sqlx::query(&sql)
            .bind(source.as_str())
            .bind(local_id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(link_from_row).transpose()
    }

    async fn search_patients(
        &self,
        query: &DemographicQuery,
        limit: u32,
    ) -> Result<Vec<IndexedPatient>> {
        let Some(q) = NormalQuery::new(query) else {
            return Ok(Vec::new());
        };
        // Only the given conditions appear in the SQL, so the planner can use the
        // (family_norm, birth_date) index for both equalities.
        // Without statistics SQLite prefers the index that avoids the sort even when a birth
        // date makes (family_norm, birth_date) far more selective; say which to use.
        let index = if q.birth_date.is_some() {
            "patient_family_birth"
        } else {
            "patient_family_given"
        };
        let mut qb = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {PATIENT_COLUMNS} FROM patient INDEXED BY {index} WHERE family_norm = "
        ));
        qb.push_bind(&q.family);
        if let Some(birth_date) = q.birth_date {
            qb.push(" AND birth_date = ").push_bind(birth_date);
        }
        if let Some((from, to)) = &q.given_range {
            qb.push(" AND given_norm >= ").push_bind(from);
            qb.push(" AND given_norm < ").push_bind(to);
        }
        if let Some(postcode) = &q.postcode {
            qb.push(" AND postcode_norm = ").push_bind(postcode);
        }
        qb.push(" ORDER BY family_norm, given_norm, birth_date, nhs_number LIMIT ")
            .push_bind(i64::from(limit));
        let rows = qb.build().fetch_all(&self.read).await?;
        rows.iter().map(patient_from_row).collect()
    }

    async fn record_unmatched(&self, record: &UnmatchedRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO unmatched_record (source, local_id, reason, candidates, seen_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (source, local_id) DO UPDATE SET reason = excluded.reason, \
             candidates = excluded.candidates, seen_at = excluded.seen_at",
        )
        .bind(record.source.as_str())
        .bind(&record.local_id)
        .bind(&record.reason)
        .bind(i64::from(record.candidates))
        .bind(ts(&record.seen_at))
        .execute(&mut *self.write_conn().await?)
        .await?;
        Ok(())
    }

    async fn clear_unmatched(&self, source: &SourceId, local_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM unmatched_record WHERE source = ?1 AND local_id = ?2")
            .bind(source.as_str())
            .bind(local_id)
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(())
    }

    async fn unmatched(&self, source: Option<&SourceId>) -> Result<Vec<UnmatchedRecord>> {
        let rows = sqlx::query(
            "SELECT source, local_id, reason, candidates, seen_at FROM unmatched_record \
             WHERE ?1 IS NULL OR source = ?1 ORDER BY source, local_id",
        )
        .bind(source.map(SourceId::as_str))
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(unmatched_from_row).collect()
    }

    async fn sync_watermark(&self, source: &SourceId) -> Result<Option<String>> {
        let row = sqlx::query("SELECT watermark FROM sync_state WHERE source = ?1")
            .bind(source.as_str())
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| r.try_get("watermark")).transpose()?)
    }

    async fn set_sync_watermark(&self, source: &SourceId, watermark: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO sync_state (source, watermark) VALUES (?1, ?2) \
             ON CONFLICT (source) DO UPDATE SET watermark = excluded.watermark",
        )
        .bind(source.as_str())
        .bind(watermark)
        .execute(&mut *self.write_conn().await?)
        .await?;
        Ok(())
    }

    async fn patient_count(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM patient")
            .fetch_one(&self.read)
            .await?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt("negative patient count".into()))
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, record: &AuditAppend, chain: &ChainFn) -> Result<AuditRow> {
        // Concurrent appends share one statement (group commit); the append lock is taken by
        // the group's leader.
        self.group_append(None, record, chain).await
    }

    async fn audit_rows(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditRow>> {
        let sql =
            format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2");
        let rows = sqlx::query(&sql)
            .bind(after_seq)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn search_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>> {
        let mut qb = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE 1 = 1"
        ));
        if let Some(patient) = &filter.patient {
            qb.push(" AND patient = ").push_bind(patient);
        }
        if let Some(user_id) = &filter.user_id {
            qb.push(" AND user_id = ").push_bind(user_id);
        }
        if let Some(org_code) = &filter.org_code {
            qb.push(" AND org_code = ").push_bind(org_code);
        }
        if let Some(outcome) = &filter.outcome {
            qb.push(" AND outcome = ").push_bind(outcome);
        }
        if let Some(from) = &filter.from {
            qb.push(" AND at >= ").push_bind(ts(from));
        }
        if let Some(to) = &filter.to {
            qb.push(" AND at <= ").push_bind(ts(to));
        }
        qb.push(" ORDER BY seq DESC LIMIT ")
            .push_bind(audit_limit(filter.limit));
        let rows = qb.build().fetch_all(&self.read).await?;
        rows.iter().map(audit_from_row).collect()
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<()> {
        MIGRATOR
            .run_direct(&mut *self.write_conn().await?)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    async fn view_inputs(&self, nhs: &NhsNumber) -> Result<crate::ViewInputs> {
        crate::governance_sqlite::view_inputs(self, nhs).await
    }

    async fn probe_write(&self, instance: &str, at: chrono::DateTime<chrono::Utc>) -> Result<()> {
        crate::health::probe_sqlite(self, instance, at).await
    }
}
