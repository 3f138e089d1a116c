//! Weights estimated from the data, the way Splink and fastLink do it: for each comparison
//! level, u (how often two different people fall in it) from random pairs of records, which
//! are almost all two different people, and m (how often two records of one person do) by
//! expectation maximisation over the pairs blocking found, with u held fixed. Each EM session
//! runs over the pairs one blocking rule found and leaves out the comparisons that rule used
//! (within its pairs they agree by construction, so they say nothing there); a level's m is the
//! mean over the sessions that estimated it. EM starts from the configured weights.
//!
//! Only the six demographic comparisons are estimated; the NHS number's weights and the two
//! thresholds stay as configured (the pass compares records without an NHS number, so it never
//! sees that comparison). The twin and parent/child rules read the comparison levels, not the
//! weights.
//!
//! Pure: tallies of comparison vectors in, weights out.

use crate::matching::{
    AddressLevel, Agreement, DobLevel, FamilyLevel, GivenLevel, PostcodeLevel, SexLevel, Weights,
};
use serde::Serialize;
use std::collections::HashMap;

/// The demographic comparisons, in [`Levels`] order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Field {
    Family,
    Given,
    BirthDate,
    Sex,
    Postcode,
    Address,
}

/// How many demographic comparisons there are.
const FIELDS: usize = 6;

impl Field {
    pub const ALL: [Field; FIELDS] = [
        Field::Family,
        Field::Given,
        Field::BirthDate,
        Field::Sex,
        Field::Postcode,
        Field::Address,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Field::Family => "family",
            Field::Given => "given",
            Field::BirthDate => "birth-date",
            Field::Sex => "sex",
            Field::Postcode => "postcode",
            Field::Address => "address",
        }
    }

    /// The level codes, best first; the last is `missing` in every field.
    fn level_codes(self) -> Vec<&'static str> {
        match self {
            Field::Family => FamilyLevel::ALL.iter().map(|l| l.code()).collect(),
            Field::Given => GivenLevel::ALL.iter().map(|l| l.code()).collect(),
            Field::BirthDate => DobLevel::ALL.iter().map(|l| l.code()).collect(),
            Field::Sex => SexLevel::ALL.iter().map(|l| l.code()).collect(),
            Field::Postcode => PostcodeLevel::ALL.iter().map(|l| l.code()).collect(),
            Field::Address => AddressLevel::ALL.iter().map(|l| l.code()).collect(),
        }
    }

    fn len(self) -> usize {
        self.level_codes().len()
    }

    /// `missing`: no evidence either way, weight 0, left out of m and u.
    fn missing(self) -> u8 {
        u8::try_from(self.len() - 1).unwrap_or(0)
    }

    fn configured(self, w: &Weights) -> &[f64] {
        match self {
            Field::Family => &w.family,
            Field::Given => &w.given,
            Field::BirthDate => &w.birth_date,
            Field::Sex => &w.sex,
            Field::Postcode => &w.postcode,
            Field::Address => &w.address,
        }
    }

    fn set(self, w: &mut Weights, values: &[f64]) {
        let slot: &mut [f64] = match self {
            Field::Family => &mut w.family,
            Field::Given => &mut w.given,
            Field::BirthDate => &mut w.birth_date,
            Field::Sex => &mut w.sex,
            Field::Postcode => &mut w.postcode,
            Field::Address => &mut w.address,
        };
        slot.copy_from_slice(values);
    }
}

/// A comparison vector as level positions of the six demographic fields ([`Field::ALL`]).
pub type Levels = [u8; FIELDS];

fn position<T: PartialEq>(all: &[T], x: &T) -> u8 {
    u8::try_from(all.iter().position(|a| a == x).unwrap_or(0)).unwrap_or(0)
}

pub fn levels(a: &Agreement) -> Levels {
    [
        position(FamilyLevel::ALL, &a.family),
        position(GivenLevel::ALL, &a.given),
        position(DobLevel::ALL, &a.birth_date),
        position(SexLevel::ALL, &a.sex),
        position(PostcodeLevel::ALL, &a.postcode),
        position(AddressLevel::ALL, &a.address),
    ]
}

/// How many pairs fell on each comparison vector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally(HashMap<Levels, u64>);

impl Tally {
    pub fn add(&mut self, l: Levels) {
        self.add_n(l, 1);
    }

    pub fn add_n(&mut self, l: Levels, n: u64) {
        *self.0.entry(l).or_default() += n;
    }

    pub fn merge(&mut self, other: Tally) {
        for (l, n) in other.0 {
            self.add_n(l, n);
        }
    }

    pub fn pairs(&self) -> u64 {
        self.0.values().sum()
    }
}

/// One EM session: the pairs one blocking rule found, and the comparisons that rule used.
#[derive(Debug, Clone)]
pub struct Session {
    /// The blocking rule, for the report.
    pub blocked_on: &'static str,
    /// Comparisons the rule used: not estimated in this session.
    pub held_out: &'static [Field],
    pub pairs: Tally,
}

/// What the estimate is made from.
#[derive(Debug, Clone, Default)]
pub struct Training {
    /// Random pairs (for u).
    pub random: Tally,
    pub sessions: Vec<Session>,
}

/// Fewer random pairs than this: u cannot be told.
pub const MIN_RANDOM_PAIRS: u64 = 1_000;
/// A session over fewer blocked pairs than this is not run.
pub const MIN_SESSION_PAIRS: u64 = 100;
/// A level whose m or u rests on fewer pairs than this keeps its configured weight: a level
/// seen a handful of times says little (EM drives such an m to 0, a weight of minus infinity;
/// a u counted on 5 pairs may be half out, on 20 a fifth).
pub const MIN_LEVEL_PAIRS: f64 = 20.0;
/// EM stops when no probability moves more than this in an iteration.
const TOLERANCE: f64 = 1e-7;
const MAX_ITERATIONS: u32 = 500;
/// Estimated weights are held within ± this (log2: a level seen never, or always, in one
/// class of pairs is strong evidence, not infinite evidence).
pub const MAX_WEIGHT: f64 = 20.0;

/// One level's estimate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelWeight {
    pub field: &'static str,
    pub level: &'static str,
    /// P(level | one person). `None` for `missing` and for a field no session estimated.
    pub m: Option<f64>,
    /// P(level | two people).
    pub u: Option<f64>,
    /// Random pairs that fell in this level (u's support).
    pub random_pairs: u64,
    /// Pairs EM took for one person that fell in this level (m's support), summed over the
    /// sessions that estimated it.
    pub one_person_pairs: f64,
    /// Whether `weight` is log2(m/u): false where m or u rests on fewer than
    /// [`MIN_LEVEL_PAIRS`] pairs (or for `missing`), which keep the configured weight.
    pub estimated: bool,
    pub weight: f64,
}

/// One EM session's fit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionFit {
    pub blocked_on: &'static str,
    pub pairs: u64,
    /// The share of its pairs EM took for one person (lambda).
    pub match_share: f64,
    pub iterations: u32,
    pub converged: bool,
}

/// Weights estimated from the data, and how.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimated {
    pub random_pairs: u64,
    pub sessions: Vec<SessionFit>,
    /// Every level of the six demographic comparisons.
    pub levels: Vec<LevelWeight>,
    /// The weights to match with: these levels' weights, the configured NHS number weights
    /// and thresholds.
    #[serde(skip)]
    pub weights: Weights,
}

/// Why no estimate was made (the configured weights are used instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotEstimated {
    #[error("too few random pairs to estimate u ({0}, at least {MIN_RANDOM_PAIRS} needed)")]
    TooFewRandomPairs(u64),
    #[error("too few blocked pairs to estimate m ({0}, at least {MIN_SESSION_PAIRS} in one blocking rule needed)")]
    TooFewBlockedPairs(u64),
}

type PerField = [Vec<f64>; FIELDS];

fn per_field(f: impl Fn(Field) -> Vec<f64>) -> PerField {
    Field::ALL.map(f)
}

/// u per level from the random pairs, and how many pairs fell in each level. u is `None` for
/// a field never compared (always missing).
fn estimate_u(random: &Tally) -> ([Option<Vec<f64>>; FIELDS], [Vec<u64>; FIELDS]) {
    let counts: [Vec<u64>; FIELDS] = Field::ALL.map(|f| {
        let fi = field_at(f);
        let mut counts = vec![0u64; f.len()];
        for (l, n) in &random.0 {
            counts[usize::from(l[fi])] += n;
        }
        counts
    });
    let u = Field::ALL.map(|f| {
        let counts = &counts[field_at(f)];
        let missing = usize::from(f.missing());
        let seen: u64 = counts.iter().take(missing).sum();
        if seen == 0 {
            return None;
        }
        let total = seen as f64;
        Some(
            counts
                .iter()
                .enumerate()
                .map(|(i, &c)| {
                    if i == missing {
                        0.0
                    } else {
                        // A level never seen: at most about one in the pairs compared.
                        (c as f64).max(1.0) / total
                    }
                })
                .collect(),
        )
    });
    (u, counts)
}

fn field_at(f: Field) -> usize {
    Field::ALL.iter().position(|x| *x == f).unwrap_or(0)
}

/// m from u and a weight: m = u * 2^w, normalised over the levels that are not `missing`.
fn m_from_weights(u: &[f64], w: &[f64], missing: usize) -> Vec<f64> {
    let raw: Vec<f64> = u
        .iter()
        .zip(w)
        .enumerate()
        .map(|(i, (u, w))| if i == missing { 0.0 } else { u * w.exp2() })
        .collect();
    let sum: f64 = raw.iter().sum();
    raw.iter().map(|x| x / sum.max(f64::MIN_POSITIVE)).collect()
}

/// Estimate m by EM over one session's pairs, with u fixed; `m` holds the starting values and
/// comes back with the fit for the active fields, `support` with the pairs taken for one
/// person in each level.
fn em(
    pairs: &Tally,
    active: [bool; FIELDS],
    u: &PerField,
    m: &mut PerField,
    support: &mut PerField,
) -> SessionFit {
    let missing = Field::ALL.map(|f| f.missing());
    // The vectors reduced to the active fields (held-out fields read as missing).
    let mut reduced: HashMap<Levels, f64> = HashMap::new();
    for (l, n) in &pairs.0 {
        let mut k = *l;
        for f in 0..FIELDS {
            if !active[f] {
                k[f] = missing[f];
            }
        }
        *reduced.entry(k).or_default() += *n as f64;
    }
    let reduced: Vec<(Levels, f64)> = reduced.into_iter().collect();
    let total: f64 = reduced.iter().map(|(_, n)| n).sum();
    let mut lambda = 0.1;
    let mut fit = SessionFit {
        blocked_on: "",
        pairs: pairs.pairs(),
        match_share: lambda,
        iterations: 0,
        converged: false,
    };
    for iteration in 1..=MAX_ITERATIONS {
        let mut counts: PerField = Field::ALL.map(|f| vec![0.0; f.len()]);
        let mut matched = 0.0;
        for (k, n) in &reduced {
            let (mut pm, mut pu) = (lambda, 1.0 - lambda);
            for f in 0..FIELDS {
                if active[f] && k[f] != missing[f] {
                    pm *= m[f][usize::from(k[f])];
                    pu *= u[f][usize::from(k[f])];
                }
            }
            let posterior = if pm + pu > 0.0 { pm / (pm + pu) } else { 0.0 };
            matched += n * posterior;
            for f in 0..FIELDS {
                if active[f] && k[f] != missing[f] {
                    counts[f][usize::from(k[f])] += n * posterior;
                }
            }
        }
        let mut moved: f64 = 0.0;
        for f in (0..FIELDS).filter(|f| active[*f]) {
            let sum: f64 = counts[f].iter().sum();
            if sum <= 0.0 {
                continue;
            }
            for (old, c) in m[f].iter_mut().zip(&counts[f]) {
                let new = c / sum;
                moved = moved.max((new - *old).abs());
                *old = new;
            }
        }
        let new_lambda = if total > 0.0 { matched / total } else { 0.0 };
        *support = counts;
        moved = moved.max((new_lambda - lambda).abs());
        lambda = new_lambda;
        fit.iterations = iteration;
        if moved < TOLERANCE {
            fit.converged = true;
            break;
        }
    }
    fit.match_share = lambda;
    fit
}

/// Estimate the demographic weights from `t`, starting from `start` (whose NHS number
/// weights and thresholds are kept).
pub fn estimate(t: &Training, start: &Weights) -> Result<Estimated, NotEstimated> {
    let random_pairs = t.random.pairs();
    if random_pairs < MIN_RANDOM_PAIRS {
        return Err(NotEstimated::TooFewRandomPairs(random_pairs));
    }
    let sessions: Vec<&Session> = t
        .sessions
        .iter()
        .filter(|s| s.pairs.pairs() >= MIN_SESSION_PAIRS)
        .collect();
    if sessions.is_empty() {
        let most = t.sessions.iter().map(|s| s.pairs.pairs()).max();
        return Err(NotEstimated::TooFewBlockedPairs(most.unwrap_or(0)));
    }
    let (u, random_counts) = estimate_u(&t.random);
    // A field never compared in the random pairs keeps its configured weights (u unknown).
    let known = u.clone().map(|u| u.is_some());
    let u: PerField = per_field(|f| u[field_at(f)].clone().unwrap_or_else(|| vec![1.0; f.len()]));
    let start_m: PerField = per_field(|f| {
        let fi = field_at(f);
        m_from_weights(&u[fi], f.configured(start), usize::from(f.missing()))
    });
    let mut m_sum: PerField = Field::ALL.map(|f| vec![0.0; f.len()]);
    let mut m_runs = [0u32; FIELDS];
    let mut one_person: PerField = Field::ALL.map(|f| vec![0.0; f.len()]);
    let mut fits = Vec::with_capacity(sessions.len());
    for s in sessions {
        let active = Field::ALL.map(|f| known[field_at(f)] && !s.held_out.contains(&f));
        let mut m = start_m.clone();
        let mut support = one_person.clone();
        let mut fit = em(&s.pairs, active, &u, &mut m, &mut support);
        fit.blocked_on = s.blocked_on;
        fits.push(fit);
        for f in (0..FIELDS).filter(|f| active[*f]) {
            for (sum, x) in m_sum[f].iter_mut().zip(&m[f]) {
                *sum += x;
            }
            for (sum, x) in one_person[f].iter_mut().zip(&support[f]) {
                *sum += x;
            }
            m_runs[f] += 1;
        }
    }
    let mut weights = start.clone();
    let mut levels = Vec::new();
    for f in Field::ALL {
        let fi = field_at(f);
        let missing = usize::from(f.missing());
        let configured = f.configured(start);
        let estimated = m_runs[fi] > 0;
        let mut values = configured.to_vec();
        for (i, code) in f.level_codes().into_iter().enumerate() {
            let (m, u_) = if estimated && i != missing {
                let m = m_sum[fi][i] / f64::from(m_runs[fi]);
                (Some(m), Some(u[fi][i]))
            } else {
                (None, None)
            };
            let random_pairs = random_counts[fi][i];
            let supported =
                one_person[fi][i] >= MIN_LEVEL_PAIRS && random_pairs as f64 >= MIN_LEVEL_PAIRS;
            let level_estimated = m.is_some() && supported;
            values[i] = match (m, u_) {
                (Some(m), Some(u)) if supported => (m / u).log2().clamp(-MAX_WEIGHT, MAX_WEIGHT),
                _ => configured[i],
            };
            levels.push(LevelWeight {
                field: f.code(),
                level: code,
                m,
                u: u_,
                random_pairs: if i == missing { 0 } else { random_pairs },
                one_person_pairs: one_person[fi][i],
                estimated: level_estimated,
                weight: values[i],
            });
        }
        f.set(&mut weights, &values);
    }
    Ok(Estimated {
        random_pairs,
        sessions: fits,
        levels,
        weights,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Draw a level from a distribution.
    fn draw(rng: &mut rand::rngs::StdRng, p: &[f64]) -> u8 {
        let mut x: f64 = rng.gen();
        for (i, q) in p.iter().enumerate() {
            if x < *q {
                return u8::try_from(i).unwrap_or(0);
            }
            x -= q;
        }
        u8::try_from(p.len() - 1).unwrap_or(0)
    }

    /// Known m and u for each field (the last level, `missing`, never drawn).
    fn truth() -> (PerField, PerField) {
        let m: PerField = [
            vec![0.80, 0.01, 0.06, 0.03, 0.02, 0.08, 0.0],
            vec![0.85, 0.04, 0.04, 0.02, 0.02, 0.03, 0.0],
            vec![0.90, 0.03, 0.03, 0.02, 0.02, 0.0],
            vec![0.97, 0.03, 0.0],
            vec![0.70, 0.08, 0.04, 0.03, 0.15, 0.0],
            vec![0.75, 0.05, 0.20, 0.0],
        ];
        let u: PerField = [
            vec![0.01, 0.0005, 0.01, 0.02, 0.05, 0.9095, 0.0],
            vec![0.02, 0.005, 0.01, 0.02, 0.03, 0.915, 0.0],
            vec![0.0004, 0.0004, 0.003, 0.03, 0.9662, 0.0],
            vec![0.5, 0.5, 0.0],
            vec![0.0005, 0.002, 0.02, 0.001, 0.9765, 0.0],
            vec![0.0004, 0.0006, 0.999, 0.0],
        ];
        (m, u)
    }

    fn vector(rng: &mut rand::rngs::StdRng, p: &PerField) -> Levels {
        [0, 1, 2, 3, 4, 5].map(|f| draw(rng, &p[f]))
    }

    /// A seeded synthetic set: random pairs drawn from u; for each blocking rule, pairs whose
    /// rule's field agrees, of which `share` are one person (the rest two people who happen to
    /// agree there), the other fields drawn from m or u.
    fn synthetic(seed: u64) -> Training {
        let (m, u) = truth();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut random = Tally::default();
        for _ in 0..400_000 {
            random.add(vector(&mut rng, &u));
        }
        let mut blocked = |field: usize, share: f64| {
            let mut t = Tally::default();
            for _ in 0..60_000 {
                let one_person = rng.gen_bool(share);
                let mut l = vector(&mut rng, if one_person { &m } else { &u });
                l[field] = 0;
                t.add(l);
            }
            t
        };
        let by_dob = blocked(2, 0.6);
        let by_postcode = blocked(4, 0.4);
        Training {
            random,
            sessions: vec![
                Session {
                    blocked_on: "birth-date",
                    held_out: &[Field::BirthDate],
                    pairs: by_dob,
                },
                Session {
                    blocked_on: "postcode",
                    held_out: &[Field::Postcode],
                    pairs: by_postcode,
                },
            ],
        }
    }

    #[test]
    fn em_recovers_known_m_and_u_from_a_seeded_set() {
        let (m, u) = truth();
        let got = estimate(&synthetic(19), &Weights::default()).expect("estimated");
        assert_eq!(got.sessions.len(), 2);
        assert!(
            got.sessions.iter().all(|s| s.converged),
            "{:?}",
            got.sessions
        );
        let mut checked = 0;
        for l in &got.levels {
            let f = Field::ALL
                .iter()
                .position(|f| f.code() == l.field)
                .expect("field");
            let i = Field::ALL[f]
                .level_codes()
                .iter()
                .position(|c| *c == l.level)
                .expect("level");
            let (Some(gm), Some(gu)) = (l.m, l.u) else {
                assert_eq!(l.level, "missing", "{l:?}");
                continue;
            };
            assert!(
                (gm - m[f][i]).abs() < 0.015,
                "{} {}: m {gm:.4}, truth {}",
                l.field,
                l.level,
                m[f][i]
            );
            // u from 400,000 random pairs: within a few standard errors (and a hundredth).
            let se = (u[f][i] * (1.0 - u[f][i]) / 400_000.0).sqrt();
            assert!(
                (gu - u[f][i]).abs() < (4.0 * se).max(0.0002),
                "{} {}: u {gu:.5}, truth {}",
                l.field,
                l.level,
                u[f][i]
            );
            if m[f][i] > 0.05 {
                let truth_weight = (m[f][i] / u[f][i]).log2();
                assert!(
                    (l.weight - truth_weight).abs() < 0.3,
                    "{} {}: weight {:.2}, truth {truth_weight:.2}",
                    l.field,
                    l.level,
                    l.weight
                );
            }
            checked += 1;
        }
        assert_eq!(
            checked,
            6 + 6 + 5 + 2 + 5 + 3,
            "every level but missing estimated"
        );
        // The weights to match with are these levels'; the thresholds stay configured.
        assert_eq!(got.weights.link_at, Weights::default().link_at);
        assert_eq!(got.weights.nhs_number, Weights::default().nhs_number);
        assert_eq!(
            got.weights.birth_date[0],
            got.levels
                .iter()
                .find(|l| l.field == "birth-date" && l.level == "exact")
                .map(|l| l.weight)
                .unwrap_or_default()
        );
        let shares: Vec<f64> = got.sessions.iter().map(|s| s.match_share).collect();
        assert!(
            (shares[0] - 0.6).abs() < 0.02 && (shares[1] - 0.4).abs() < 0.02,
            "the share of one-person pairs in each session: {shares:?}"
        );
    }

    #[test]
    fn too_little_data_is_said_not_guessed() {
        let mut t = synthetic(7);
        t.random = Tally::default();
        t.random.add_n([0; FIELDS], 999);
        assert_eq!(
            estimate(&t, &Weights::default()),
            Err(NotEstimated::TooFewRandomPairs(999))
        );
        let mut t = synthetic(7);
        for s in &mut t.sessions {
            s.pairs = Tally::default();
            s.pairs.add_n([0; FIELDS], 99);
        }
        assert_eq!(
            estimate(&t, &Weights::default()),
            Err(NotEstimated::TooFewBlockedPairs(99))
        );
    }

    /// A level the one-person pairs never fall in (EM drives its m to 0) keeps its configured
    /// weight instead of minus infinity; the others are estimated as before.
    #[test]
    fn a_level_seen_too_rarely_keeps_its_configured_weight() {
        let mut t = synthetic(23);
        let initial = 4; // given: initial
        for s in &mut t.sessions {
            s.pairs.0.retain(|l, _| l[1] != initial);
        }
        let configured = Weights::default();
        let got = estimate(&t, &configured).expect("estimated");
        let level = |field: &str, level: &str| {
            got.levels
                .iter()
                .find(|l| l.field == field && l.level == level)
                .cloned()
                .expect("level")
        };
        let thin = level("given", "initial");
        assert!(!thin.estimated, "{thin:?}");
        assert!(thin.one_person_pairs < MIN_LEVEL_PAIRS, "{thin:?}");
        assert_eq!(thin.weight, configured.given[4]);
        assert_eq!(got.weights.given[4], configured.given[4]);
        let exact = level("given", "exact");
        assert!(
            exact.estimated && exact.weight != configured.given[0],
            "{exact:?}"
        );
    }

    #[test]
    fn levels_read_the_agreement() {
        let a = Agreement {
            family: FamilyLevel::Typo,
            given: GivenLevel::Missing,
            birth_date: DobLevel::Exact,
            sex: SexLevel::Differs,
            postcode: PostcodeLevel::District,
            address: AddressLevel::Typo,
            nhs_number: crate::matching::NhsLevel::Agree,
        };
        assert_eq!(levels(&a), [2, 6, 0, 1, 2, 1]);
    }
}
