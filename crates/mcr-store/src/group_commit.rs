//! Group commit for audit appends and governance changes: callers that arrive while another
//! caller is writing join the next transaction, so many concurrent views (or ADT messages)
//! cost one commit (one fsync) instead of one each, and nobody holds the append lock across
//! another caller's queue wait.
//!
//! Every caller still gets its answer only after the transaction holding its record has
//! committed, so "no audit, no view" holds, and a governance change is committed with its own
//! audit record or not at all. All appends to one store must use the same chain function (a
//! chain only verifies with one): the leader hashes the whole batch with its own. A batch
//! holding a governance change that fails is written again one entry at a time, so a change
//! the database refuses fails only its own caller.

use crate::{AuditAppend, AuditRow, GovernanceChange, Result, StoreError};
use std::future::Future;
use tokio::sync::{oneshot, Mutex};

/// Most records written in one transaction.
const MAX_BATCH: usize = 256;

/// One caller's write: an audit record, and the governance change it records, if any.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) change: Option<GovernanceChange>,
    pub(crate) record: AuditAppend,
}

struct Pending {
    entry: Entry,
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
    /// Append `entry`, writing it (and whatever else is queued) with `write_batch` while
    /// holding `lock`, the store's one-chain lock. `write_batch` gets entries in queue order,
    /// writes them in one transaction and must return one row per entry, in the same order,
    /// after committing them.
    pub(crate) async fn append<F, Fut>(
        &self,
        lock: &Mutex<()>,
        entry: Entry,
        write_batch: F,
    ) -> Result<AuditRow>
    where
        F: Fn(Vec<Entry>) -> Fut,
        Fut: Future<Output = Result<Vec<AuditRow>>>,
    {
        let (reply, mut answer) = oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Pending { entry, reply });
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
                    let (mut entries, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.entry, p.reply)).unzip();
                    // Kept for a retry only when a change in the batch could be refused.
                    let retry_alone = entries.len() > 1 && entries.iter().any(|e| e.change.is_some());
                    let result = write_batch(if retry_alone { entries.clone() } else { std::mem::take(&mut entries) }).await;
                    if retry_alone && result.is_err() {
                        for (entry, reply) in entries.into_iter().zip(replies) {
                            let alone = write_batch(vec![entry]).await.and_then(|mut rows| {
                                rows.pop().ok_or_else(|| StoreError::Corrupt("an audit append made no row".into()))
                            });
                            let _ = reply.send(alone);
                        }
                        drop(guard);
                        continue;
                    }
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
