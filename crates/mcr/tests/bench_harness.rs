//! The benchmark harness (`mcr-bench`) still works end to end: this `mcr` binary as separate
//! source and gateway processes, a few clinicians for a second or two, the index at tiny
//! scale. It checks the report has numbers, no errors, and that the gateway's `/metrics`
//! agree with the harness's own count. No timing is asserted: the figures are the benchmark's.
//!
//! A test binary of its own, not a module of `tests/e2e`: it drives clinicians for a fixed
//! window against views with a 500 ms deadline, and beside another end-to-end test (they run
//! two to four at once in one binary) the large records missed that deadline and it counted
//! no resources kept. Alone in its process, as cargo runs binaries one after another, it has
//! the machine to itself.

use mcr_bench::processes::SystemOptions;
use mcr_bench::BenchOptions;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_harness_runs_and_counts() {
    let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 24).expect("date");
    let o = BenchOptions {
        command: "bench_harness test".into(),
        system: SystemOptions {
            mcr: env!("CARGO_BIN_EXE_mcr").into(),
            seed: 2017,
            patients: 400,
            today,
            latency_ms: (1, 5),
            deadline_ms: 500,
            store: None,
            batch: true,
            // The GP system as English regions reach it: through GP Connect.
            gp_connect: true,
            relative_search: false,
        },
        clinicians: vec![2],
        stress_clinicians: 2,
        think_ms: (100, 200),
        settle: Duration::ZERO,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(1),
        failure_scenarios: true,
        sample_patients: 5,
        index_patients: 2_000,
        index_postgres: false,
        index_lookups: 50,
        // The floor stand-in runs from the mcr-bench binary; its own test is in mcr-bench.
        floor_exe: None,
        // Its own test runs it at a twentieth of the size (mcr-federation's very_large).
        very_large: None,
    };
    let report = mcr_bench::run(&o).await.expect("the benchmark runs");
    assert!(report.search.count > 0, "searches succeeded");
    for l in [&report.loopback.back_to_back, &report.loopback.after_idle] {
        assert_eq!(l.count, 100, "every loopback exchange succeeded");
        assert!(l.p50_ms > 0.0, "loopback exchanges are timed");
    }
    for f in [&report.flush.back_to_back, &report.flush.after_idle] {
        assert_eq!(f.count, 100, "every flush to disk was timed");
        assert!(f.p50_ms > 0.0, "flushes to disk are timed");
    }
    assert!(
        report.markdown().contains("One flush to disk"),
        "the report states the disk's flush time: {}",
        report.markdown()
    );
    assert!(
        report.scenarios.len() >= 5,
        "ladder, at work, slow, down, instant: {}",
        report.markdown()
    );
    for s in &report.scenarios {
        assert!(s.views > 0, "{} made views", s.name);
        assert_eq!(s.error_count, 0, "{}: {:?}", s.name, s.errors);
        assert!(
            s.view_latency.p99_ms > 0.0 && s.gateway_overhead.count == s.views,
            "{}",
            s.name
        );
        assert!(
            s.gateway_metrics.agrees_with_client,
            "{}: /metrics {} vs {} views",
            s.name, s.gateway_metrics.views_permitted, s.views
        );
        for phase in ["request", "access", "fetch", "merge", "audit", "encode"] {
            assert_eq!(
                s.phases.get(phase).map(|p| p.count),
                Some(s.views),
                "{}: the gateway reported its {phase} time for every view",
                s.name
            );
        }
        assert!(
            s.gateway_peak_rss_mib > 0.0,
            "{} read the gateway's memory",
            s.name
        );
        // Counted after the window from the answers kept: every sample patient's record has
        // resources, so a mean of zero would mean none were kept or counted.
        assert!(
            s.resources_per_view > 1.0,
            "{} counted the resources of the answers it kept: {}",
            s.name,
            s.resources_per_view
        );
    }
    let slow = report
        .scenarios
        .iter()
        .find(|s| s.name.contains("slowed"))
        .expect("slow-source run");
    assert!(
        slow.gateway_metrics
            .source_failures
            .keys()
            .any(|k| k == "acute/timeout"),
        "{:?}",
        slow.gateway_metrics
    );
    let down = report
        .scenarios
        .iter()
        .find(|s| s.name.contains("down"))
        .expect("dead-source run");
    assert!(
        !down.gateway_metrics.source_failures.is_empty(),
        "{:?}",
        down.gateway_metrics
    );
    // The overhead target is a ratio to the floor measured in the same run: with no floor run
    // it cannot be met, and the report says why.
    let overhead = report
        .targets
        .iter()
        .find(|t| t.what.contains("at work"))
        .expect("the at-work overhead target");
    assert!(
        overhead.target.contains("the floor in the same run"),
        "{overhead:?}"
    );
    assert!(
        !overhead.met && overhead.measured.contains("no floor measured"),
        "{overhead:?}"
    );
    let index = report.index.first().expect("index run");
    assert_eq!((index.patients, index.nhs_lookup.count), (2_000, 50));

    let dir = tempfile::tempdir().expect("temp dir");
    report.write(dir.path()).expect("report written");
    for f in ["report.json", "report.md", "view-latency.svg"] {
        assert!(
            std::fs::metadata(dir.path().join(f)).expect(f).len() > 100,
            "{f}"
        );
    }
}
