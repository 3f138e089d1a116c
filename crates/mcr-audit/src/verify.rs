//! Verifying the trail: walk the whole chain in order, check every link and every record's
//! hash, check each signed checkpoint, and name the first record that was altered, deleted,
//! inserted or reordered.
//!
//! What a hash chain alone shows: an edit (the record no longer matches its hash), a deletion
//! (a gap, or a record that follows a record that is not there), an insertion or a reordering
//! (records whose hash was computed for another position). What only the signed checkpoints
//! show: a trail edited and then re-hashed from that point on (the chain no longer reaches
//! the signed hash), and records cut from the end up to a checkpoint. Records written after
//! the last checkpoint and then cut from the end cannot be detected by any chain; checkpoint
//! often (`audit.checkpoint_every`) to keep that window small.

use crate::checkpoint::check_signature;
use crate::{chain_hash, AuditError, GENESIS};
use ed25519_dalek::VerifyingKey;
use mcr_store::{AuditRow, Store};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Verification {
    /// Every record links to the one before, matches its hash, and every checkpoint's
    /// signature and hash match.
    Intact {
        records: u64,
        head: String,
        checkpoints: u64,
    },
    /// The first record at which the trail cannot be trusted, and what happened there.
    Broken { seq: i64, problem: String },
}

/// How far around a misplaced record to look for the position it was written for.
const WINDOW: i64 = 64;
const PAGE: u32 = 5_000;

/// [`verify_with`] trusting the key recorded with each checkpoint (which proves the
/// checkpoint is intact, not who made it). Use [`verify_with`] with the configured keys.
pub async fn verify(store: &dyn Store) -> Result<Verification, AuditError> {
    verify_with(store, &[]).await
}

/// Read the whole trail in order and check every link and checkpoint; checkpoints must be
/// signed by one of `trusted` (when empty, by the key recorded with them).
pub async fn verify_with(
    store: &dyn Store,
    trusted: &[VerifyingKey],
) -> Result<Verification, AuditError> {
    let checkpoints: BTreeMap<i64, mcr_store::AuditCheckpoint> = store
        .checkpoints()
        .await?
        .into_iter()
        .map(|c| (c.seq, c))
        .collect();
    for cp in checkpoints.values() {
        if let Err(why) = check_signature(cp, trusted) {
            return Ok(Verification::Broken {
                seq: cp.seq,
                problem: format!(
                    "the checkpoint at record {} cannot be trusted: {why}",
                    cp.seq
                ),
            });
        }
    }

    let mut rows = Rows {
        store,
        buf: VecDeque::new(),
        after: 0,
        done: false,
    };
    let mut expected = 1i64;
    let mut prev = GENESIS.to_owned();
    let mut prev2 = GENESIS.to_owned();
    let mut last_good_checkpoint = 0i64;
    let mut count = 0u64;
    while let Some(row) = rows.peek(0).await?.cloned() {
        if row.seq > expected {
            return broken(
                expected,
                format!(
                    "record {expected} is missing (deleted): the next record is {}",
                    row.seq
                ),
            );
        }
        let content_ok = chain_hash(row.seq, &row.prev_hash, &row.record) == row.hash;
        let link_ok = row.prev_hash == prev;
        if !(content_ok && link_ok) {
            return classify(&mut rows, &row, expected, &prev, &prev2).await;
        }
        if let Some(cp) = checkpoints.get(&row.seq) {
            if cp.hash != row.hash {
                let from = last_good_checkpoint + 1;
                return broken(
                    from,
                    format!(
                        "the chain no longer matches the signed checkpoint at record {}: a record between {from} and {} was altered, deleted, inserted or reordered and the later hashes re-computed",
                        cp.seq, cp.seq
                    ),
                );
            }
            last_good_checkpoint = cp.seq;
        }
        prev2 = std::mem::replace(&mut prev, row.hash.clone());
        expected += 1;
        count += 1;
        rows.pop();
    }
    let last = expected - 1;
    if let Some((&seq, _)) = checkpoints.range(last + 1..).next() {
        return broken(
            last + 1,
            format!("the trail ends at record {last}, but a signed checkpoint vouches for record {seq}: records {} to {seq} were deleted", last + 1),
        );
    }
    Ok(Verification::Intact {
        records: count,
        head: prev,
        checkpoints: checkpoints.len() as u64,
    })
}

fn broken(seq: i64, problem: String) -> Result<Verification, AuditError> {
    Ok(Verification::Broken { seq, problem })
}

/// The position a record's hash was computed for, searched near where it is now.
fn written_as(row: &AuditRow, near: i64) -> Option<i64> {
    if chain_hash(row.seq, &row.prev_hash, &row.record) == row.hash {
        return Some(row.seq);
    }
    ((near - WINDOW).max(1)..=near + WINDOW)
        .find(|&s| chain_hash(s, &row.prev_hash, &row.record) == row.hash)
}

/// Record `e` (stored as `row`) fails its hash or its link: say what happened.
async fn classify(
    rows: &mut Rows<'_>,
    row: &AuditRow,
    e: i64,
    prev: &str,
    prev2: &str,
) -> Result<Verification, AuditError> {
    let v = match written_as(row, e) {
        None => {
            let next = rows.peek(1).await?.cloned();
            if next.is_some_and(|n| written_as(&n, e) == Some(e) && n.prev_hash == prev) {
                Verification::Broken { seq: e, problem: format!("record {e} was inserted: it is not part of the chain, and the record after it was written as record {e}") }
            } else {
                Verification::Broken { seq: e, problem: format!("record {e} was altered: its content does not match its hash") }
            }
        }
        Some(s) if s == e => {
            // The record itself is as written, but the one before it is not the one it followed.
            let what = if row.prev_hash == prev2 { "inserted" } else { "altered and its hash re-computed" };
            Verification::Broken { seq: e - 1, problem: format!("record {} was {what}: record {e} does not follow it", e - 1) }
        }
        Some(s) if s < e => Verification::Broken {
            seq: s,
            problem: format!("record {s} was inserted: {} record(s) were put in before the record written as {s}, which is now stored as {e}", e - s),
        },
        Some(s) => {
            let mut moved_to = None;
            for i in 1..=(WINDOW as usize) {
                let Some(later) = rows.peek(i).await?.cloned() else { break };
                if written_as(&later, e) == Some(e) {
                    moved_to = Some(later.seq);
                    break;
                }
            }
            match moved_to {
                Some(at) => Verification::Broken {
                    seq: e,
                    problem: format!("records were reordered: record {e} is stored as {at}, and the record written as {s} is stored as {e}"),
                },
                None => Verification::Broken {
                    seq: e,
                    problem: format!("record {e} was deleted: the record stored as {e} was written as {s} (later records renumbered)"),
                },
            }
        }
    };
    Ok(v)
}

/// The trail read page by page, with look-ahead.
struct Rows<'a> {
    store: &'a dyn Store,
    buf: VecDeque<AuditRow>,
    after: i64,
    done: bool,
}

impl Rows<'_> {
    async fn peek(&mut self, i: usize) -> Result<Option<&AuditRow>, AuditError> {
        while self.buf.len() <= i && !self.done {
            let page = self.store.audit_rows(self.after, PAGE).await?;
            match page.last() {
                Some(last) => self.after = last.seq,
                None => self.done = true,
            }
            self.buf.extend(page);
        }
        Ok(self.buf.get(i))
    }

    fn pop(&mut self) {
        self.buf.pop_front();
    }
}
