//! Percentiles over exact samples (a run holds at most a few hundred thousand, so no sketch).

use serde::Serialize;

/// p50 / p95 / p99 / max of a set of millisecond samples.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles. Empty input gives zeros with `count` 0.
    pub fn of(samples: &[f64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| -> f64 {
            // Nearest rank: the smallest value with at least p% of samples at or below it.
            let n = v.len();
            let idx = ((p / 100.0) * n as f64).ceil() as usize;
            v[idx.clamp(1, n) - 1]
        };
        Self {
            count: v.len(),
            p50_ms: round3(rank(50.0)),
            p95_ms: round3(rank(95.0)),
            p99_ms: round3(rank(99.0)),
            max_ms: round3(v[v.len() - 1]),
            mean_ms: round3(v.iter().sum::<f64>() / v.len() as f64),
        }
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&v);
        assert_eq!(
            (p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms, p.count),
            (50.0, 95.0, 99.0, 100.0, 100)
        );
        assert_eq!(Percentiles::of(&[]).count, 0);
        assert_eq!(Percentiles::of(&[7.0]).p99_ms, 7.0);
    }
}
