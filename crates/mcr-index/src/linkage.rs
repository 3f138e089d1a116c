//! The matching pass: source records without an NHS number against the whole index.
//!
//! The records waiting to be matched are few beside the index (a hospital's records without a
//! number against a region's patients), so they are the ones held: each is prepared once and
//! filed under its blocking keys in memory. The index is then read a page at a time (the next
//! page read while this one is scored), and each index patient is compared only with the
//! waiting records that share a blocking key with it. A record keeps its best few candidates;
//! the outcome (link, review, nothing) is decided once the whole index has been read.
//!
//! Blocking keys (a pair is compared when any one agrees): the birth date (and, for the waiting
//! record, its day and month swapped); family-name Soundex with birth year and first initial;
//! family and given name with birth decade; postcode with given-name Soundex.
//!
//! With estimated weights ([`estimate_weights`]) the index is read once more before that, to
//! tally the comparison vectors of the blocked pairs and of random pairs for
//! [`crate::estimate`].

use crate::estimate::{self, Estimated, Field, NotEstimated, Session, Tally, Training};
use crate::matching::{compare, Guard, Prepared, Scored, Weights};
use chrono::Datelike;
use mcr_domain::NhsNumber;
use mcr_store::{IndexedPatient, Store, StoreError};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::Arc;

/// How many index patients are read per page.
const PAGE: u32 = 20_000;
/// How many candidates each waiting record keeps.
const KEEP: usize = 3;
/// Two candidates closer than this (log2 odds: 64 to 1) are too close to call.
const CLEAR_MARGIN: f64 = 6.0;

/// What matching concluded for one waiting record (about index patients, `K` their NHS
/// numbers, or any person the same rules decide between).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<K = NhsNumber> {
    /// Linked automatically to this patient.
    Link(K, Scored),
    /// A person must look: each candidate with its score. `ambiguous` when two candidates were
    /// too close to call.
    Review {
        candidates: Vec<(K, Scored)>,
        ambiguous: bool,
    },
    /// Nobody in the index is close enough.
    NoMatch,
}

/// One waiting record's best candidates so far, best first.
#[derive(Debug, Clone, Default)]
struct Best(Vec<(NhsNumber, Scored)>);

impl Best {
    fn offer(&mut self, nhs: &NhsNumber, s: Scored) {
        if self.0.len() == KEEP && self.0.last().is_some_and(|(_, w)| w.weight >= s.weight) {
            return;
        }
        if self.0.iter().any(|(n, _)| n == nhs) {
            return;
        }
        let at = self.0.partition_point(|(_, w)| w.weight >= s.weight);
        self.0.insert(at, (nhs.clone(), s));
        self.0.truncate(KEEP);
    }
}

/// The pairs people ruled out (`not-a-match`): never offered again.
pub type Ruled = std::collections::HashSet<(usize, NhsNumber)>;

/// How the pass went, for the report and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassCounts {
    pub index_patients_read: u64,
    pub comparisons: u64,
}

/// Match `waiting` against the whole index. `ruled_out` holds (waiting index, NHS number)
/// pairs a person said are not one person.
pub async fn match_against_index(
    store: &Arc<dyn Store>,
    waiting: &[Prepared],
    ruled_out: &Ruled,
    weights: &Weights,
) -> Result<(Vec<Outcome>, PassCounts), StoreError> {
    let mut counts = PassCounts::default();
    if waiting.is_empty() {
        return Ok((Vec::new(), counts));
    }
    let blocks = block(waiting)?;
    let mut best = vec![Best::default(); waiting.len()];
    read_index(
        store,
        None,
        |part, _| compare_page(part, waiting, &blocks, weights),
        |part, found| {
            counts.index_patients_read += part.len() as u64;
            counts.comparisons += found.comparisons;
            for (i, at, s) in found.high {
                let nhs = &part[at].nhs_number;
                if !ruled_out.contains(&(i, nhs.clone())) {
                    best[i].offer(nhs, s);
                }
            }
        },
    )
    .await?;
    let outcomes = best.into_iter().map(|b| decide(b.0, weights)).collect();
    Ok((outcomes, counts))
}

/// The waiting records filed under their blocking keys.
fn block(waiting: &[Prepared]) -> Result<HashMap<u64, Vec<u32>>, StoreError> {
    let mut blocks: HashMap<u64, Vec<u32>> = HashMap::with_capacity(waiting.len() * 5);
    for (i, w) in waiting.iter().enumerate() {
        let i = u32::try_from(i).map_err(|_| StoreError::Config("too many records".into()))?;
        for (_, key) in keys(w, true) {
            blocks.entry(key).or_default().push(i);
        }
    }
    Ok(blocks)
}

/// Read the index a page at a time (the whole of it, or its first `limit` patients in NHS
/// number order), the next page read by a task of its own while this one is worked on. Each
/// page is worked on in parts of [`PART`] patients by two threads at once (the machine's two
/// cores), each taking the next part not yet taken, so that neither waits for the other while
/// parts are left; `work` is given the part and the position in the index of its first
/// patient, and `fold` then takes each part's result, in index order.
async fn read_index<T, W, F>(
    store: &Arc<dyn Store>,
    limit: Option<u64>,
    work: W,
    mut fold: F,
) -> Result<(), StoreError>
where
    T: Send,
    W: Fn(&[IndexedPatient], u64) -> T + Sync,
    F: FnMut(&[IndexedPatient], T),
{
    let mut read: u64 = 0;
    let mut page = store.patients_after(None, PAGE).await?;
    while !page.is_empty() {
        let enough = limit.is_some_and(|l| read + page.len() as u64 >= l);
        // Read on another of the runtime's threads, it goes on while this one works (on a
        // runtime of one thread, it is read when awaited: the same pages, later).
        let next = (page.len() == PAGE as usize && !enough).then(|| {
            let store = Arc::clone(store);
            let after = page.last().map(|p| p.nhs_number.clone());
            tokio::spawn(async move { store.patients_after(after.as_ref(), PAGE).await })
        });
        for (part, done) in work_in_parts(&page, read, &work)? {
            fold(&page[part], done);
        }
        read += page.len() as u64;
        page = match next {
            Some(reading) => reading.await.map_err(|e| {
                StoreError::Config(format!("reading the index stopped unexpectedly: {e}"))
            })??,
            None => Vec::new(),
        };
    }
    Ok(())
}

/// How many index patients a thread takes at a time.
const PART: usize = 1_000;

/// `work` over `page` in parts of [`PART`], on two threads each taking the next part left;
/// each part's result with the part's place in `page`, in page order.
fn work_in_parts<T, W>(
    page: &[IndexedPatient],
    read: u64,
    work: &W,
) -> Result<Vec<(std::ops::Range<usize>, T)>, StoreError>
where
    T: Send,
    W: Fn(&[IndexedPatient], u64) -> T + Sync,
{
    let taken = std::sync::atomic::AtomicUsize::new(0);
    let worker = || {
        let mut done = Vec::new();
        loop {
            let at = taken.fetch_add(PART, std::sync::atomic::Ordering::Relaxed);
            if at >= page.len() {
                return done;
            }
            let part = at..page.len().min(at + PART);
            let result = work(&page[part.clone()], read + at as u64);
            done.push((part, result));
        }
    };
    let (theirs, mine) = std::thread::scope(|scope| {
        let other = scope.spawn(worker);
        let mine = worker();
        (other.join(), mine)
    });
    let theirs = theirs
        .map_err(|_| StoreError::Config("the matching thread stopped unexpectedly".into()))?;
    let mut done: Vec<_> = theirs.into_iter().chain(mine).collect();
    done.sort_unstable_by_key(|(part, _)| part.start);
    Ok(done)
}

/// What one thread found in its part of a page.
struct PageFinds {
    comparisons: u64,
    /// (waiting record, index in the part, score) for the pairs at or above review.
    high: Vec<(usize, usize, Scored)>,
}

fn prepare(p: &IndexedPatient) -> Prepared {
    Prepared::new(
        &p.family,
        &p.given,
        Some(p.birth_date),
        p.gender.as_deref(),
        p.postcode.as_deref(),
        None,
    )
    .with_address(p.address.as_deref())
}

/// Compare each index patient of `part` with the waiting records sharing a blocking key.
fn compare_page(
    part: &[IndexedPatient],
    waiting: &[Prepared],
    blocks: &HashMap<u64, Vec<u32>>,
    weights: &Weights,
) -> PageFinds {
    let mut found = PageFinds {
        comparisons: 0,
        high: Vec::new(),
    };
    let mut seen: Vec<u32> = Vec::new();
    for (at, p) in part.iter().enumerate() {
        let prepared = prepare(p);
        seen.clear();
        for (_, key) in keys(&prepared, false) {
            if let Some(hits) = blocks.get(&key) {
                seen.extend_from_slice(hits);
            }
        }
        seen.sort_unstable();
        seen.dedup();
        for &i in &seen {
            let i = i as usize;
            found.comparisons += 1;
            let s = compare(&waiting[i], &prepared, weights);
            if s.weight >= weights.review_at {
                found.high.push((i, at, s));
            }
        }
    }
    found
}

/// About how many random pairs u is estimated from (Splink's default is a million).
const RANDOM_PAIRS: f64 = 1_000_000.0;
/// The weights are estimated from the first this many index patients in NHS number order (a
/// sample as good as any other of a large index's demographics), so that estimating costs at
/// most this much of a read however large the index.
const ESTIMATE_FROM: u64 = 200_000;
/// The random pairs are drawn from a fixed seed: the same data gives the same weights.
const RANDOM_SEED: u64 = 0x19_e3_4d_a7;

/// The EM sessions, one per blocking rule used, with the comparisons each rule used.
fn sessions() -> Vec<Session> {
    vec![
        Session {
            blocked_on: "birth-date",
            held_out: &[Field::BirthDate],
            pairs: Tally::default(),
        },
        Session {
            blocked_on: "postcode-and-given-name-sound",
            held_out: &[Field::Postcode, Field::Given, Field::Address],
            pairs: Tally::default(),
        },
    ]
}

/// The blocking keys each session's pairs share.
const SESSION_KEYS: [Key; 2] = [Key::BirthDate, Key::PostcodeGiven];

/// Estimate the weights from this pass's own pairs ([`crate::estimate`]): one read of the
/// index (its first [`ESTIMATE_FROM`] patients), each index patient compared with the waiting
/// records it shares a blocking key with (tallied for the EM session of each key it shares)
/// and with about `RANDOM_PAIRS / patients read` waiting records drawn at random (for u). `start` is EM's
/// starting point and gives the NHS number weights and thresholds.
pub async fn estimate_weights(
    store: &Arc<dyn Store>,
    waiting: &[Prepared],
    start: &Weights,
) -> Result<(Result<Estimated, NotEstimated>, PassCounts), StoreError> {
    let mut counts = PassCounts::default();
    let mut training = Training {
        random: Tally::default(),
        sessions: sessions(),
    };
    if !waiting.is_empty() {
        let blocks = block(waiting)?;
        let size = store.patient_count().await?.min(ESTIMATE_FROM);
        let rate = if size == 0 {
            0.0
        } else {
            (RANDOM_PAIRS / size as f64).min(waiting.len() as f64)
        };
        read_index(
            store,
            Some(ESTIMATE_FROM),
            |part, offset| tally_page(part, offset, waiting, &blocks, rate, start),
            |part, t| {
                counts.index_patients_read += part.len() as u64;
                counts.comparisons += t.comparisons;
                training.random.merge(t.random);
                for (s, pairs) in training.sessions.iter_mut().zip(t.sessions) {
                    s.pairs.merge(pairs);
                }
            },
        )
        .await?;
    }
    Ok((estimate::estimate(&training, start), counts))
}

/// What one thread tallied in its part of a page.
struct PageTally {
    comparisons: u64,
    random: Tally,
    sessions: [Tally; 2],
}

fn tally_page(
    part: &[IndexedPatient],
    offset: u64,
    waiting: &[Prepared],
    blocks: &HashMap<u64, Vec<u32>>,
    rate: f64,
    weights: &Weights,
) -> PageTally {
    let mut t = PageTally {
        comparisons: 0,
        random: Tally::default(),
        sessions: [Tally::default(), Tally::default()],
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(RANDOM_SEED ^ offset);
    let mut seen: Vec<(u32, u8)> = Vec::new();
    for p in part {
        let prepared = prepare(p);
        seen.clear();
        for (kind, key) in keys(&prepared, false) {
            if let Some(hits) = blocks.get(&key) {
                seen.extend(hits.iter().map(|&i| (i, kind.bit())));
            }
        }
        seen.sort_unstable();
        let mut at = 0;
        while at < seen.len() {
            let i = seen[at].0;
            let mut shared = 0u8;
            while at < seen.len() && seen[at].0 == i {
                shared |= seen[at].1;
                at += 1;
            }
            t.comparisons += 1;
            let l = estimate::levels(&compare(&waiting[i as usize], &prepared, weights).agreement);
            for (tally, key) in t.sessions.iter_mut().zip(SESSION_KEYS) {
                if shared & key.bit() != 0 {
                    tally.add(l);
                }
            }
        }
        let draws = rate.floor() as usize + usize::from(rng.gen::<f64>() < rate.fract());
        for _ in 0..draws {
            let i = rng.gen_range(0..waiting.len());
            t.random.add(estimate::levels(
                &compare(&waiting[i], &prepared, weights).agreement,
            ));
        }
    }
    t
}

/// The outcome from a record's best candidates (best first).
pub fn decide<K: Clone>(mut found: Vec<(K, Scored)>, w: &Weights) -> Outcome<K> {
    found.retain(|(_, s)| s.weight >= w.review_at);
    let Some((nhs, top)) = found.first().cloned() else {
        return Outcome::NoMatch;
    };
    // A second candidate that would link on its own, or one too close to the best to call.
    let close = |s: &Scored| {
        (s.weight >= w.link_at && s.guard.is_none()) || top.weight - s.weight < CLEAR_MARGIN
    };
    let ambiguous = found.get(1).is_some_and(|(_, s)| close(s));
    if top.weight >= w.link_at && top.guard.is_none() && !ambiguous {
        return Outcome::Link(nhs, top);
    }
    if ambiguous {
        // Only the candidates too close to the best to call.
        found.retain(|(_, s)| close(s));
    }
    Outcome::Review {
        candidates: found,
        ambiguous,
    }
}

/// The code a review is filed under: the safety rule that held it back, or `ambiguous`.
pub fn review_guard(s: &Scored, ambiguous: bool) -> Option<&'static str> {
    if ambiguous {
        return Some("ambiguous");
    }
    s.guard.map(Guard::code)
}

fn hash(parts: &[&[u8]]) -> u64 {
    // FNV-1a: keys are short and the map is private, so a fast hash is enough.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The kinds of blocking key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    /// The birth date (for a waiting record, also with day and month swapped).
    BirthDate,
    /// Family-name Soundex, birth year, first initial.
    FamilyYearInitial,
    /// Family and given name, birth decade.
    NameDecade,
    /// Postcode and given-name Soundex.
    PostcodeGiven,
}

impl Key {
    fn bit(self) -> u8 {
        match self {
            Key::BirthDate => 1,
            Key::FamilyYearInitial => 2,
            Key::NameDecade => 4,
            Key::PostcodeGiven => 8,
        }
    }
}

/// A record's blocking keys. `waiting` adds the birth date with day and month swapped.
pub(crate) fn keys(p: &Prepared, waiting: bool) -> Vec<(Key, u64)> {
    let mut out = Vec::with_capacity(5);
    if let Some(d) = p.birth_date {
        let days = d.num_days_from_ce().to_le_bytes();
        out.push((Key::BirthDate, hash(&[b"D", &days])));
        if waiting && d.day() <= 12 && d.day() != d.month() {
            if let Some(s) = chrono::NaiveDate::from_ymd_opt(d.year(), d.day(), d.month()) {
                out.push((
                    Key::BirthDate,
                    hash(&[b"D", &s.num_days_from_ce().to_le_bytes()]),
                ));
            }
        }
        let year = d.year().to_le_bytes();
        let initial = &p.given.as_bytes()[..p.given.len().min(1)];
        if !p.family.is_empty() {
            out.push((
                Key::FamilyYearInitial,
                hash(&[b"F", &p.family_sound, &year, initial]),
            ));
            let decade = (d.year() / 10).to_le_bytes();
            out.push((
                Key::NameDecade,
                hash(&[b"N", p.family.as_bytes(), p.given.as_bytes(), &decade]),
            ));
        }
    }
    if !p.postcode.is_empty() && !p.given.is_empty() {
        out.push((
            Key::PostcodeGiven,
            hash(&[b"P", p.postcode.as_bytes(), &p.given_sound]),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::compare;

    fn prep(family: &str, given: &str, dob: &str, postcode: &str) -> Prepared {
        Prepared::new(
            family,
            given,
            chrono::NaiveDate::parse_from_str(dob, "%Y-%m-%d").ok(),
            Some("female"),
            Some(postcode),
            None,
        )
    }

    #[test]
    fn two_candidates_too_close_to_call_go_to_review() {
        let w = Weights::default();
        let a = NhsNumber::from_first_nine([9, 9, 9, 0, 0, 0, 0, 0, 1]).expect("nhs");
        let b = NhsNumber::from_first_nine([9, 9, 9, 0, 0, 0, 0, 0, 2]).expect("nhs");
        let rec = prep("Smith", "A", "1950-05-05", "SG1 1AA");
        let sa = compare(&rec, &prep("Smith", "Ann", "1950-05-05", "SG1 1AA"), &w);
        let sb = compare(&rec, &prep("Smith", "Alice", "1950-05-05", "SG1 1AA"), &w);
        let mut best = Best::default();
        best.offer(&a, sa);
        best.offer(&b, sb);
        match decide(best.0, &w) {
            Outcome::Review {
                candidates,
                ambiguous,
            } => {
                assert!(ambiguous);
                assert_eq!(candidates.len(), 2);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_clear_winner_over_a_twin_is_linked() {
        let w = Weights::default();
        let a = NhsNumber::from_first_nine([9, 9, 9, 0, 0, 0, 0, 0, 1]).expect("nhs");
        let b = NhsNumber::from_first_nine([9, 9, 9, 0, 0, 0, 0, 0, 2]).expect("nhs");
        let rec = prep("Smith", "Ann", "1950-05-05", "SG1 1AA");
        let mut best = Best::default();
        best.offer(
            &b,
            compare(&rec, &prep("Smith", "Alice", "1950-05-05", "SG1 1AA"), &w),
        );
        best.offer(
            &a,
            compare(&rec, &prep("Smith", "Ann", "1950-05-05", "SG1 1AA"), &w),
        );
        assert!(matches!(decide(best.0, &w), Outcome::Link(n, _) if n == a));
    }

    #[test]
    fn a_swapped_birth_date_shares_a_block() {
        let waiting = prep("Smith", "Ann", "1950-03-12", "SG1 1AA");
        let held = prep("Smyth", "Anne", "1950-12-03", "LU1 1AA");
        let theirs = keys(&held, false);
        assert!(keys(&waiting, true).iter().any(|k| theirs.contains(k)));
    }
}
