//! The production backend: PostgreSQL, shared by every gateway process of a region.
//!
//! Batched upserts send one `INSERT .. SELECT FROM UNNEST(arrays)` per chunk: one statement
//! with eleven array parameters, whatever the chunk size. Audit appends from any number of
//! processes form one chain: each append transaction first takes a transaction-scoped advisory
//! lock, then reads the last record and inserts the next; the lock is released by the commit.
//!
//! This file holds the handle and its pool; `runner.rs` runs the statements of topics that are
//! the same on both backends, and each topic that differs by backend has a file of its own
//! beside it, the same files as `sqlite/` has.

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
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::time::Duration;

/// How long to wait for a connection (including the first one, at open) before reporting the
/// store unavailable. Callers fail closed, so a dead database must be noticed quickly.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
pub struct PostgresStore {
    pool: PgPool,
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
