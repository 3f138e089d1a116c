//! The gateway's own state: the patient index, governance records, and the audit trail.
//!
//! One trait per concern ([`IndexStore`], [`AuditStore`], [`GovernanceStore`]), implemented on
//! SQLite (the embedded default, a WAL file under the data directory) and on PostgreSQL
//! (production), with the same migrations behaviour on both. Everything above this crate holds an `Arc<dyn Store>`.
//!
//! This crate must never store clinical data from sources: only demographics for the index,
//! links between NHS numbers and source-local ids, governance records and audit records (which
//! carry counts and reasons, never clinical content).

mod audit;
mod audit_trail;
mod backend_services;
mod care_event;
mod common;
mod governance;
mod group_commit;
mod index;
mod local_decision;
mod local_identity;
mod match_review;
mod model;
mod opt_out;
mod opt_out_letter;
mod patient_merge;
mod patient_status;
mod pg_hosts;
mod postgres;
mod protected;
mod runner;
mod shared_state;
mod sqlite;
mod watch_counts;

pub use audit_trail::{AuditCheckpoint, AuditQuery, AuditTrailStore, AUDIT_QUERY_MAX};
pub use backend_services::BackendServicesStore;
pub use care_event::{CareEventKey, CareEventRow, CareEventStore, HeldMessage, HELD_LIST_MAX};
pub use local_decision::{LocalDecisionRow, LocalDecisionStore};
pub use local_identity::{
    LocalCandidateRow, LocalIdentityStore, LocalLink, LocalPerson, LocalPersonRecord,
    LocalResolution, LocalResolved,
};
pub use match_review::{
    MatchCandidateRow, MatchDecisionRow, MatchReviewStore, MatchStore, RecordKey, MATCH_LIST_MAX,
};
pub use model::*;
pub use opt_out::{
    OptOutDecision, OptOutKind, OptOutRequestRow, OptOutState, OptOutStore, OPT_OUT_LIST_MAX,
};
pub use opt_out_letter::{LetterAttempt, OptOutLetterRow, OptOutLetterStore};
pub use patient_merge::{
    MergeAudit, MergeCounts, MergeOutcome, MergeRequest, MergeRow, MergeStore, UnmergeCounts,
    UnmergeRequest, Unmerged, MERGE_LIST_MAX,
};
pub use patient_status::{PatientStatusRow, PatientStatusStore};
pub use postgres::PostgresStore;
pub use protected::{ProtectedPersonRow, ProtectedPersonStore, PROTECTED_LIST_MAX};
pub use shared_state::{Bucket, SharedStateStore};
pub use sqlite::SqliteStore;
pub use watch_counts::{WatchCount, WatchCountStore, WatchFlag, WatchView};

use async_trait::async_trait;
use mcr_domain::{NhsNumber, SourceId};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or refused the operation. Callers fail closed.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// A row read back does not make sense (e.g. an NHS number that fails its check digit).
    #[error("the store holds a value that cannot be read: {0}")]
    Corrupt(String),
    /// The URL or options given to open the store are wrong.
    #[error("store configuration: {0}")]
    Config(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
                StoreError::Corrupt(e.to_string())
            }
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// What a patient write does to a patient already in the index.
pub(crate) const PATIENT_REPLACE: &str =
    " ON CONFLICT (nhs_number) DO UPDATE SET family = excluded.family, \
     given = excluded.given, family_norm = excluded.family_norm, given_norm = excluded.given_norm, \
     birth_date = excluded.birth_date, gender = excluded.gender, postcode = excluded.postcode, \
     postcode_norm = excluded.postcode_norm, address_line = excluded.address_line, \
     gp_practice = excluded.gp_practice, \
     updated_at = excluded.updated_at";
pub(crate) const PATIENT_KEEP: &str = " ON CONFLICT (nhs_number) DO NOTHING";

/// The patient index (record locator): which sources hold which patient under which local id,
/// and the demographics needed to find a patient.
#[async_trait]
pub trait IndexStore: Send + Sync {
    /// Insert or replace patients by NHS number (demographics only). Batched for sync.
    async fn upsert_patients(&self, patients: &[IndexedPatient]) -> Result<()>;
    /// Insert patients not yet in the index; those already there are left as they are (a
    /// less authoritative source only fills gaps).
    async fn insert_missing_patients(&self, patients: &[IndexedPatient]) -> Result<()>;
    /// Insert or replace links by `(source, local_id)`.
    async fn upsert_links(&self, links: &[SourceLink]) -> Result<()>;
    async fn patient(&self, nhs: &NhsNumber) -> Result<Option<IndexedPatient>>;
    /// Every source link for a patient, ordered by source id.
    async fn links(&self, nhs: &NhsNumber) -> Result<Vec<SourceLink>>;
    /// The link a source's local id has, if any.
    async fn link_for_local(&self, source: &SourceId, local_id: &str)
        -> Result<Option<SourceLink>>;
    /// Patients whose normalised family name equals the query's, narrowed by the other fields
    /// given; at most `limit`, ordered by family, given, birth date.
    async fn search_patients(
        &self,
        query: &DemographicQuery,
        limit: u32,
    ) -> Result<Vec<IndexedPatient>>;
    /// Record a source patient that could not be linked (no NHS number and no unique match).
    async fn record_unmatched(&self, record: &UnmatchedRecord) -> Result<()>;
    /// Drop an unmatched entry once it has been linked.
    async fn clear_unmatched(&self, source: &SourceId, local_id: &str) -> Result<()>;
    async fn unmatched(&self, source: Option<&SourceId>) -> Result<Vec<UnmatchedRecord>>;
    /// The records a source sent that could not be read ([`UNREADABLE_REASONS`]), by local
    /// id, at most `limit`; and how many there are in all.
    async fn unreadable(
        &self,
        source: &SourceId,
        limit: u32,
    ) -> Result<(Vec<UnmatchedRecord>, u64)>;
    /// The `meta.lastUpdated` high-water mark of the last sync of a source.
    async fn sync_watermark(&self, source: &SourceId) -> Result<Option<String>>;
    async fn set_sync_watermark(&self, source: &SourceId, watermark: &str) -> Result<()>;
    async fn patient_count(&self) -> Result<u64>;
}

/// Computes a record's chain hash from its sequence number, the previous record's hash and the
/// record itself. Provided by the audit crate so the store never decides what is hashed.
pub type ChainFn = dyn Fn(i64, &str, &AuditAppend) -> String + Send + Sync;

/// The audit trail: append-only, hash-chained. The store serialises appends (one chain) and
/// commits each durably before returning.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Append one record: assign the next sequence number, read the previous hash, compute the
    /// new hash with `chain`, and commit durably, all in one transaction.
    async fn append_audit(&self, record: &AuditAppend, chain: &ChainFn) -> Result<AuditRow>;
    /// Records with `seq > after_seq`, in sequence order, at most `limit`.
    async fn audit_rows(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditRow>>;
    /// Search newest first.
    async fn search_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>>;
}

/// Governance records: permissions to view, care relationships recorded in the gateway,
/// objections (opt-outs) and their overrides, emergency accesses. Each change is written in
/// the same transaction as its audit record, so neither exists without the other.
#[async_trait]
pub trait GovernanceStore: Send + Sync {
    /// Insert the change and append `audit` (chained with `chain`) in one transaction.
    async fn record_governance(
        &self,
        change: &GovernanceChange,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<AuditRow>;
    /// Everything recorded for one patient, each list oldest first.
    async fn governance(&self, nhs: &NhsNumber) -> Result<GovernanceRecords>;
}

/// Everything the gateway keeps.
#[async_trait]
pub trait Store:
    IndexStore
    + AuditStore
    + AuditTrailStore
    + GovernanceStore
    + OptOutStore
    + OptOutLetterStore
    + ProtectedPersonStore
    + std::fmt::Debug
    + CareEventStore
    + SharedStateStore
    + WatchCountStore
    + BackendServicesStore
    + MatchStore
    + MatchReviewStore
    + MergeStore
    + PatientStatusStore
    + LocalIdentityStore
    + LocalDecisionStore
{
    /// Bring the schema up to date (idempotent).
    async fn migrate(&self) -> Result<()>;
    /// `sqlite` or `postgres`, for logs and `/healthz`.
    fn backend(&self) -> &'static str;
    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> Result<()>;
    /// The patient, the sources holding them and their governance records, as one statement:
    /// one round trip and one snapshot for what a record view reads before deciding (the same
    /// as [`IndexStore::patient`], [`IndexStore::links`] and [`GovernanceStore::governance`]).
    async fn view_inputs(&self, nhs: &NhsNumber) -> Result<ViewInputs>;
    /// Whether the store takes writes now: rewrites `instance`'s one row in `store_probe`,
    /// through the connection audit records are written with. For readiness (`/readyz`):
    /// fails with the reason while the disk is full, the file read-only, the server
    /// unreachable or (PostgreSQL) a standby.
    async fn probe_write(&self, instance: &str, at: chrono::DateTime<chrono::Utc>) -> Result<()>;
}

/// Open a store from a URL: `sqlite:///path/to/file.db` (created if missing) or
/// `postgres://user@host/db`. Does not migrate.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(PostgresStore::open(url).await?))
    } else {
        Err(StoreError::Config(format!(
            "store URL must start with sqlite: or postgres:, got `{}`",
            url.split(':').next().unwrap_or_default()
        )))
    }
}

/// The `prev_hash` of the first audit record: there is no record before it.
pub const AUDIT_GENESIS_HASH: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// [`connect`], then [`Store::migrate`]: what the gateway does at start-up.
pub async fn connect_and_migrate(url: &str) -> Result<Arc<dyn Store>> {
    let store = connect(url).await?;
    store.migrate().await?;
    Ok(store)
}
