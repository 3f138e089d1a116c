//! Group commit for audit appends: callers that arrive while another caller is writing join
//! the next transaction, so many concurrent views cost one commit (one fsync) instead of one
//! each, and nobody holds the append lock across another caller's queue wait.
//!
//! Every caller still gets its answer only after the transaction holding its record has
//! committed, so "no audit, no view" holds. All appends to one store must use the same chain
//! function (a chain only verifies with one): the leader hashes the whole batch with its own.

use crate::{AuditAppend, AuditRow, Result, StoreError};
use std::future::Future;
use tokio::sync::{oneshot, Mutex};

/// Most records written in one transaction.
const MAX_BATCH: usize = 256;

struct Pending {
    record: AuditAppend,
    reply: oneshot::Sender<Result<AuditRow>>,
}

#[derive(Default)]
pub(crate) struct GroupCommit {
    queue: std::sync::Mutex<Vec<Pending>>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

fn copy(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        StoreError::Config(m) => StoreError::Config(m.clone()),
    }
}

impl GroupCommit {
    /// Append `record`, writing it (and whatever else is queued) with `write_batch` while
    /// holding `lock`, the store's one-chain lock. `write_batch` gets records in queue order
    /// and must return one row per record, in the same order, after committing them.
    pub(crate) async fn append<F, Fut>(
        &self,
        lock: &Mutex<()>,
        record: &AuditAppend,
        write_batch: F,
    ) -> Result<AuditRow>
    where
        F: Fn(Vec<AuditAppend>) -> Fut,
        Fut: Future<Output = Result<Vec<AuditRow>>>,
    {
        let (reply, mut answer) = oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Pending {
                record: record.clone(),
                reply,
            });
        loop {
            tokio::select! {
                biased;
                served = &mut answer => {
                    return served.map_err(|_| StoreError::Unavailable("the audit write was abandoned".into()))?;
                }
                guard = lock.lock() => {
                    let batch: Vec<Pending> = {
                        let mut q = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        let n = q.len().min(MAX_BATCH);
                        q.drain(..n).collect()
                    };
                    if batch.is_empty() {
                        // Ours was written by the previous leader; its answer is on the way.
                        drop(guard);
                        continue;
                    }
                    let (records, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.record, p.reply)).unzip();
                    let result = write_batch(records).await;
                    drop(guard);
                    match result {
                        Ok(rows) if rows.len() == replies.len() => {
                            for (reply, row) in replies.into_iter().zip(rows) {
                                // A caller that went away no longer needs its answer.
                                let _ = reply.send(Ok(row));
                            }
                        }
                        Ok(_) => {
                            for reply in replies {
                                let _ = reply.send(Err(StoreError::Corrupt("audit batch wrote the wrong number of rows".into())));
                            }
                        }
                        Err(e) => {
                            for reply in replies {
                                let _ = reply.send(Err(copy(&e)));
                            }
                        }
                    }
                }
            }
        }
    }
}
