//! The production backend: PostgreSQL, shared by every gateway process of a region.
//!
//! Batched upserts send one `INSERT .. SELECT FROM UNNEST(arrays)` per chunk: one statement
//! with eleven array parameters, whatever the chunk size. Audit appends from any number of
//! processes form one chain: each append transaction first takes a transaction-scoped advisory
//! lock, then reads the last record and inserts the next; the lock is released by the commit.

use crate::common::{
    audit_from_row, audit_limit, last_per_key, link_from_row, open_error, patient_from_row, ts,
    unmatched_from_row, NormalQuery, PatientRow, AUDIT_COLUMNS, LINK_COLUMNS, PATIENT_COLUMNS,
};
use crate::{
    AuditAppend, AuditFilter, AuditRow, AuditStore, ChainFn, DemographicQuery, IndexStore,
    IndexedPatient, Result, SourceLink, Store, StoreError, UnmatchedRecord, AUDIT_GENESIS_HASH,
};
use async_trait::async_trait;
use chrono::NaiveDate;
use mcr_domain::{NhsNumber, SourceId};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};
use std::time::Duration;

/// Rows per `UNNEST` statement.
const CHUNK: usize = 10_000;

/// The advisory lock key that serialises audit appends ("MCRAUDIT" in ASCII).
const AUDIT_LOCK_KEY: i64 = 0x4D43_5241_5544_4954;

/// How long to wait for a connection (including the first one, at open) before reporting the
/// store unavailable. Callers fail closed, so a dead database must be noticed quickly.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

mod patient_status;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub struct PostgresStore {
    pub(crate) pool: PgPool,
    /// With several hosts: the task that moves the pool to the host that suits.
    watcher: Option<tokio::task::JoinHandle<()>>,
    /// In-process group commit of audit appends; across processes the advisory lock orders them.
    append: tokio::sync::Mutex<()>,
    group: crate::group_commit::GroupCommit,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(w) = &self.watcher {
            w.abort();
        }
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Patients in batches of arrays ([`CHUNK`] rows), one transaction per call.
    async fn write_patients(&self, patients: &[IndexedPatient], on_conflict: &str) -> Result<()> {
        let rows: Vec<PatientRow<'_>> = last_per_key(patients, |p| p.nhs_number.clone())
            .into_iter()
            .map(PatientRow::new)
            .collect();
        let mut tx = self.pool.begin().await?;
        for chunk in rows.chunks(CHUNK) {
            let nhs: Vec<&str> = chunk.iter().map(|r| r.p.nhs_number.as_str()).collect();
            let family: Vec<&str> = chunk.iter().map(|r| r.p.family.as_str()).collect();
            let given: Vec<&str> = chunk.iter().map(|r| r.p.given.as_str()).collect();
            let family_norm: Vec<&str> = chunk.iter().map(|r| r.family_norm.as_str()).collect();
            let given_norm: Vec<&str> = chunk.iter().map(|r| r.given_norm.as_str()).collect();
            let birth_date: Vec<NaiveDate> = chunk.iter().map(|r| r.p.birth_date).collect();
            let gender: Vec<Option<&str>> = chunk.iter().map(|r| r.p.gender.as_deref()).collect();
            let postcode: Vec<Option<&str>> =
                chunk.iter().map(|r| r.p.postcode.as_deref()).collect();
            let postcode_norm: Vec<Option<&str>> =
                chunk.iter().map(|r| r.postcode_norm.as_deref()).collect();
            let gp: Vec<Option<&str>> = chunk.iter().map(|r| r.p.gp_practice.as_deref()).collect();
            let updated: Vec<&str> = chunk.iter().map(|r| r.updated_at.as_str()).collect();
            let sql = format!(
                "INSERT INTO patient (nhs_number, family, given, family_norm, given_norm, \
                 birth_date, gender, postcode, postcode_norm, gp_practice, updated_at) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                 $6::date[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[]){on_conflict}"
            );
            sqlx::query(&sql)
                .bind(&nhs)
                .bind(&family)
                .bind(&given)
                .bind(&family_norm)
                .bind(&given_norm)
                .bind(&birth_date)
                .bind(&gender)
                .bind(&postcode)
                .bind(&postcode_norm)
                .bind(&gp)
                .bind(&updated)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Connect to `postgres://user@host:port/db` (or `postgresql://`), or to the first of
    /// several hosts that suits (`postgres://user@h1,h2/db?target_session_attrs=read-write`,
    /// see [`crate::pg_hosts`]). Fails with [`StoreError::Unavailable`] within a few seconds
    /// if no server can be reached.
    pub async fn open(url: &str) -> Result<Self> {
        let targets = crate::pg_hosts::PgTargets::parse(url)?;
        let options = if targets.hosts.len() == 1 {
            targets.hosts[0].clone()
        } else {
            targets
                .first_suitable(ACQUIRE_TIMEOUT)
                .await
                .map_err(|reasons| {
                    StoreError::Unavailable(format!("no database host suits: {reasons}"))
                })?
        };
        let read_write = targets.read_write;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _| {
                Box::pin(crate::pg_hosts::PgTargets::suits(read_write, conn))
            })
            .connect_with(options)
            .await
            .map_err(open_error)?;
        let watcher = (targets.hosts.len() > 1)
            .then(|| crate::pg_hosts::spawn_watcher(pool.clone(), targets));
        Ok(Self {
            pool,
            watcher,
            append: tokio::sync::Mutex::new(()),
            group: crate::group_commit::GroupCommit::default(),
        })
    }
}

impl PostgresStore {
    /// Load patients into an index that holds none of them yet, with `COPY .. FROM STDIN`
    /// (text format): the fastest way in for a region's first load (tens of millions). Fails
    /// whole if any NHS number is already there; use [`IndexStore::upsert_patients`] for
    /// updates. Returns the rows copied.
    pub async fn copy_patients(&self, patients: &[IndexedPatient]) -> Result<u64> {
        fn field(out: &mut String, value: Option<&str>) {
            match value {
                None => out.push_str("\\N"),
                Some(v) => {
                    for c in v.chars() {
                        match c {
                            '\\' => out.push_str("\\\\"),
                            '\t' => out.push_str("\\t"),
                            '\n' => out.push_str("\\n"),
                            '\r' => out.push_str("\\r"),
                            c => out.push(c),
                        }
                    }
                }
            }
        }
        let mut text = String::with_capacity(patients.len() * 160);
        for p in patients {
            let r = PatientRow::new(p);
            let birth = p.birth_date.to_string();
            let cols = [
                Some(p.nhs_number.as_str()),
                Some(p.family.as_str()),
                Some(p.given.as_str()),
                Some(r.family_norm.as_str()),
                Some(r.given_norm.as_str()),
                Some(birth.as_str()),
                p.gender.as_deref(),
                p.postcode.as_deref(),
                r.postcode_norm.as_deref(),
                p.gp_practice.as_deref(),
                Some(r.updated_at.as_str()),
            ];
            for (i, c) in cols.iter().enumerate() {
                if i > 0 {
                    text.push('\t');
                }
                field(&mut text, *c);
            }
            text.push('\n');
        }
        let mut conn = self.pool.acquire().await?;
        let mut copy = conn
            .copy_in_raw(
                "COPY patient (nhs_number, family, given, family_norm, given_norm, birth_date, \
                 gender, postcode, postcode_norm, gp_practice, updated_at) FROM STDIN",
            )
            .await?;
        copy.send(text.into_bytes()).await?;
        Ok(copy.finish().await?)
    }
}

/// Appends one audit record inside the caller's transaction: takes the audit advisory lock
/// (held until that transaction ends), assigns the next sequence number, reads the previous
/// hash, computes the new hash with `chain` and inserts. The caller commits (or drops the
/// transaction to roll back).
pub(crate) async fn append_audit_in_tx(
    conn: &mut PgConnection,
    record: &AuditAppend,
    chain: &ChainFn,
) -> Result<AuditRow> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(AUDIT_LOCK_KEY)
        .execute(&mut *conn)
        .await?;
    let last: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    let (seq, prev_hash) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, AUDIT_GENESIS_HASH.to_owned()),
    };
    let hash = chain(seq, &prev_hash, record);
    sqlx::query(
        "INSERT INTO audit_log (seq, at, correlation_id, user_id, org_code, patient, action, \
         outcome, payload, prev_hash, hash, role_profile_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(seq)
    .bind(ts(&record.at))
    .bind(&record.correlation_id)
    .bind(&record.user_id)
    .bind(&record.org_code)
    .bind(record.patient.as_deref())
    .bind(&record.action)
    .bind(&record.outcome)
    .bind(&record.payload)
    .bind(&prev_hash)
    .bind(&hash)
    .bind(record.role_profile_id.as_deref())
    .execute(&mut *conn)
    .await?;
    Ok(AuditRow {
        seq,
        prev_hash,
        hash,
        record: record.clone(),
    })
}

#[async_trait]
impl IndexStore for PostgresStore {
    async fn upsert_patients(&self, patients: &[IndexedPatient]) -> Result<()> {
        self.write_patients(patients, crate::PATIENT_REPLACE).await
    }

    async fn insert_missing_patients(&self, patients: &[IndexedPatient]) -> Result<()> {
        self.write_patients(patients, crate::PATIENT_KEEP).await
    }

    async fn upsert_links(&self, links: &[SourceLink]) -> Result<()> {
        let rows = last_per_key(links, |l| (l.source.clone(), l.local_id.clone()));
        let mut tx = self.pool.begin().await?;
        for chunk in rows.chunks(CHUNK) {
            let source: Vec<&str> = chunk.iter().map(|l| l.source.as_str()).collect();
            let local_id: Vec<&str> = chunk.iter().map(|l| l.local_id.as_str()).collect();
            let nhs: Vec<&str> = chunk.iter().map(|l| l.nhs_number.as_str()).collect();
            let method: Vec<&str> = chunk.iter().map(|l| l.method.as_str()).collect();
            let family: Vec<&str> = chunk.iter().map(|l| l.family.as_str()).collect();
            let given: Vec<&str> = chunk.iter().map(|l| l.given.as_str()).collect();
            let birth_date: Vec<Option<NaiveDate>> = chunk.iter().map(|l| l.birth_date).collect();
            let postcode: Vec<Option<&str>> = chunk.iter().map(|l| l.postcode.as_deref()).collect();
            let linked: Vec<String> = chunk.iter().map(|l| ts(&l.linked_at)).collect();
            sqlx::query(
                "INSERT INTO source_link (source, local_id, nhs_number, method, family, given, \
                 birth_date, postcode, linked_at) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                 $6::text[], $7::date[], $8::text[], $9::text[]) \
                 ON CONFLICT (source, local_id) DO UPDATE SET nhs_number = excluded.nhs_number, \
                 method = excluded.method, family = excluded.family, given = excluded.given, \
                 birth_date = excluded.birth_date, postcode = excluded.postcode, \
                 linked_at = excluded.linked_at",
            )
            .bind(&source)
            .bind(&local_id)
            .bind(&nhs)
            .bind(&method)
            .bind(&family)
            .bind(&given)
            .bind(&birth_date)
            .bind(&postcode)
            .bind(&linked)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn patient(&self, nhs: &NhsNumber) -> Result<Option<IndexedPatient>> {
        let sql = format!("SELECT {PATIENT_COLUMNS} FROM patient WHERE nhs_number = $1");
        let row = sqlx::query(&sql)
            .bind(nhs.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(patient_from_row).transpose()
    }

    async fn links(&self, nhs: &NhsNumber) -> Result<Vec<SourceLink>> {
        let sql = format!(
            "SELECT {LINK_COLUMNS} FROM source_link WHERE nhs_number = $1 ORDER BY source, local_id"
        );
        let rows = sqlx::query(&sql)
            .bind(nhs.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(link_from_row).collect()
    }

    async fn link_for_local(
        &self,
        source: &SourceId,
        local_id: &str,
    ) -> Result<Option<SourceLink>> {
        let sql =
            format!("SELECT {LINK_COLUMNS} FROM source_link WHERE source = $1 AND local_id = $2");
        let row = sqlx::query(&sql)
            .bind(source.as_str())
            .bind(local_id)
            .fetch_optional(&self.pool)
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
        let mut qb = QueryBuilder::<Postgres>::new(format!(
            "SELECT {PATIENT_COLUMNS} FROM patient WHERE family_norm = "
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
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter().map(patient_from_row).collect()
    }

    async fn record_unmatched(&self, record: &UnmatchedRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO unmatched_record (source, local_id, reason, candidates, seen_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (source, local_id) DO UPDATE SET reason = excluded.reason, \
             candidates = excluded.candidates, seen_at = excluded.seen_at",
        )
        .bind(record.source.as_str())
        .bind(&record.local_id)
        .bind(&record.reason)
        .bind(i64::from(record.candidates))
        .bind(ts(&record.seen_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn clear_unmatched(&self, source: &SourceId, local_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM unmatched_record WHERE source = $1 AND local_id = $2")
            .bind(source.as_str())
            .bind(local_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn unmatched(&self, source: Option<&SourceId>) -> Result<Vec<UnmatchedRecord>> {
        let rows = sqlx::query(
            "SELECT source, local_id, reason, candidates, seen_at FROM unmatched_record \
             WHERE $1::text IS NULL OR source = $1 ORDER BY source, local_id",
        )
        .bind(source.map(SourceId::as_str))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(unmatched_from_row).collect()
    }

    async fn sync_watermark(&self, source: &SourceId) -> Result<Option<String>> {
        let row = sqlx::query("SELECT watermark FROM sync_state WHERE source = $1")
            .bind(source.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("watermark")).transpose()?)
    }

    async fn set_sync_watermark(&self, source: &SourceId, watermark: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO sync_state (source, watermark) VALUES ($1, $2) \
             ON CONFLICT (source) DO UPDATE SET watermark = excluded.watermark",
        )
        .bind(source.as_str())
        .bind(watermark)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn patient_count(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM patient")
            .fetch_one(&self.pool)
            .await?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt("negative patient count".into()))
    }
}

impl PostgresStore {
    /// Appends `record`, with the governance change it records, through the group commit:
    /// the batch's changes and records in one transaction.
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
                let mut tx = self.pool.begin().await?;
                for change in batch.iter().filter_map(|e| e.change.as_ref()) {
                    crate::governance_postgres::insert_change(&mut tx, change).await?;
                }
                let mut rows = Vec::with_capacity(batch.len());
                for e in &batch {
                    rows.push(append_audit_in_tx(&mut tx, &e.record, chain).await?);
                }
                // synchronous_commit is left at the server's setting (on by default): the
                // commit returns once the records are on disk.
                tx.commit().await?;
                Ok(rows)
            })
            .await
    }
}

#[async_trait]
impl AuditStore for PostgresStore {
    async fn append_audit(&self, record: &AuditAppend, chain: &ChainFn) -> Result<AuditRow> {
        // Concurrent appends in this process share one transaction (group commit).
        self.group_append(None, record, chain).await
    }

    async fn audit_rows(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditRow>> {
        let sql =
            format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2");
        let rows = sqlx::query(&sql)
            .bind(after_seq)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn search_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>> {
        let mut qb = QueryBuilder::<Postgres>::new(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE TRUE"
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
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter().map(audit_from_row).collect()
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn migrate(&self) -> Result<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn view_inputs(&self, nhs: &NhsNumber) -> Result<crate::ViewInputs> {
        crate::governance_postgres::view_inputs(self, nhs).await
    }

    async fn probe_write(&self, instance: &str, at: chrono::DateTime<chrono::Utc>) -> Result<()> {
        crate::health::probe_postgres(self, instance, at).await
    }
}
