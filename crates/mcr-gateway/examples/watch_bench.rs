//! What the watch costs one view. Run with:
//! `cargo run --release -p mcr-gateway --example watch_bench`
//! (or without `--release`, as the workspace's dev profile builds it, for a pessimistic bound).
//!
//! Each view is timed on its own: the protected person list lookup (10,000 people cached), the
//! counters (distinct patients per user in the window, in memory: `MemoryCounters`; the
//! store's cost is `mcr-bench --example watch_counts`) and the rules, and the flag
//! claims when rules fire, exactly as `Gateway::watch_view` runs them before the fetch. Three
//! scenarios of 200,000 views each: a region's ordinary load (2,000 users, a few patients
//! each, over a day, so half the views are out of hours), one user viewing patient after patient up to and past the hard limit (flags and
//! refusals), and a GP practice at night (every view out of hours, on the protected list).
//! The target (issue 16): under 0.2 ms at p99.

use chrono::{Duration, TimeZone, Utc};
use mcr_domain::OrgKind;
use mcr_gateway::{Seen, ViewCount, ViewFacts, Watch, WatchConfig};
use std::hint::black_box;
use std::time::Instant;

const N: usize = 200_000;

fn percentiles(mut ns: Vec<u64>) -> (u64, u64, u64) {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() as f64 - 1.0) * q) as usize];
    (at(0.5), at(0.99), at(1.0))
}

fn nhs(i: usize) -> String {
    format!("{:010}", 9_000_000_000u64 + i as u64)
}

struct Scenario {
    name: &'static str,
    user: fn(usize) -> usize,
    patient: fn(usize) -> usize,
    kind: OrgKind,
    hour: u32,
}

#[expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]
fn main() {
    let t0 = Utc
        .with_ymd_and_hms(2026, 3, 3, 10, 0, 0)
        .single()
        .expect("a valid time");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let scenarios = [
        Scenario {
            name: "ordinary load: 2,000 GP users over a whole day (half of it out of hours)",
            user: |i| (i * 7919) % 2_000,
            patient: |i| (i * 104_729) % 1_500_000,
            kind: OrgKind::GpPractice,
            hour: 10,
        },
        Scenario {
            name: "one user viewing patient after patient (flags, then refusals)",
            user: |_| 0,
            patient: |i| i,
            kind: OrgKind::AcuteTrust,
            hour: 10,
        },
        Scenario {
            name: "a GP practice at night, every patient protected",
            user: |i| i % 50,
            patient: |i| i % 10_000,
            kind: OrgKind::GpPractice,
            hour: 23,
        },
    ];
    // The cost of timing itself.
    let mut clock_ns = Vec::with_capacity(N);
    for _ in 0..N {
        let s = Instant::now();
        clock_ns.push(s.elapsed().as_nanos() as u64);
    }
    let (c50, c99, _) = percentiles(clock_ns);
    println!("Instant::now() pair: p50 {c50} ns, p99 {c99} ns (included below)");
    for sc in &scenarios {
        let watch = Watch::new(WatchConfig::default());
        watch.set_protected((0..10_000).map(|i| (nhs(i), "staff".to_owned())));
        let users: Vec<String> = (0..2_000).map(|u| format!("user-{u}")).collect();
        let patients: Vec<String> = (0..N.max(10_000)).map(nhs).collect();
        let mut ns = Vec::with_capacity(N);
        let mut flags = 0usize;
        let mut refused = 0usize;
        for i in 0..N {
            let user = &users[(sc.user)(i)];
            let patient = &patients[(sc.patient)(i) % patients.len()];
            // Spread the views over a day from `hour`: 200,000 views, 0.432 s apart.
            let at = t0
                .date_naive()
                .and_hms_opt(sc.hour, 0, 0)
                .expect("time")
                .and_utc()
                + Duration::milliseconds((i as i64) * 432);
            let start = Instant::now();
            let protected = watch.cached_category(patient);
            let checked = rt
                .block_on(watch.check(Seen {
                    user_id: user,
                    patient,
                    facts: ViewFacts {
                        at,
                        org_kind: sc.kind,
                        user_name: "Dr Asha Patel",
                        user_postcode: None,
                        patient_family: "Jones",
                        patient_postcode: Some("AL1 3ER"),
                        protected: protected.as_deref(),
                        count: ViewCount::default(),
                    },
                }))
                .expect("counters in memory do not fail");
            ns.push(start.elapsed().as_nanos() as u64);
            flags += checked.flags.len();
            refused += usize::from(checked.refused.is_some());
            black_box(checked);
        }
        let (p50, p99, max) = percentiles(ns);
        println!(
            "{}: {N} views, {flags} flags written, {refused} refused; per view p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
            sc.name,
            p50 as f64 / 1000.0,
            p99 as f64 / 1000.0,
            max as f64 / 1000.0
        );
    }
}
