//! The floor stand-in does what it says: asks each source as often as configured, flushes one
//! line per view to disk, answers with the configured size and the sources' own times in
//! `Server-Timing`, and fails the view when a source does not answer.

use mcr_bench::floor::{serve_on, FloorConfig, FloorSource};
use mcr_domain::{Clock, SystemClock};

async fn served(client: &reqwest::Client, base: &str) -> u64 {
    let stats: serde_json::Value = client
        .get(format!("{base}/_control/stats"))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats json");
    stats["requests_served"].as_u64().expect("requests_served")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_asks_each_source_flushes_a_line_and_answers() {
    let region = mcr_synth::generate(&mcr_synth::SynthConfig {
        seed: 7,
        patients: 50,
        today: SystemClock.now().date_naive(),
    });
    let mut handles = Vec::new();
    let mut sources = Vec::new();
    for (slice, asks) in region.sources.iter().take(2).zip([3usize, 2]) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind");
        let h = mcr_sources::serve(
            slice.clone(),
            listener,
            mcr_sources::Behaviour::with_latency(5, 10),
        )
        .await
        .expect("source");
        sources.push(FloorSource {
            id: slice.id.to_string(),
            base_url: h.base_url(),
            requests_per_view: asks,
        });
        handles.push(h);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("floor.log");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let config = FloorConfig {
        listen: listener.local_addr().expect("addr"),
        sources: sources.clone(),
        body_bytes: 4_321,
        log: log.clone(),
    };
    tokio::spawn(serve_on(listener, config));
    let client = reqwest::Client::new();
    let before: Vec<u64> = {
        let mut v = Vec::new();
        for s in &sources {
            v.push(served(&client, &s.base_url).await);
        }
        v
    };

    let r = client
        .get(format!("{url}/fhir/Patient/9990000018/$everything"))
        .send()
        .await
        .expect("view");
    assert_eq!(r.status(), 200);
    let timing = r
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .expect("server-timing")
        .to_owned();
    assert_eq!(r.bytes().await.expect("body").len(), 4_321);
    for s in &sources {
        let own: f64 = timing
            .split(", ")
            .find_map(|m| m.strip_prefix(&format!("source-{};dur=", s.id)))
            .expect("a time per source")
            .parse()
            .expect("a number");
        assert!(own >= 5.0, "{} reported {own} ms, below its latency", s.id);
    }
    assert!(timing.contains("mcr;dur="), "{timing}");
    for (s, n) in sources.iter().zip(before) {
        assert_eq!(
            served(&client, &s.base_url).await - n,
            s.requests_per_view as u64,
            "{} asked as configured",
            s.id
        );
    }
    let written = std::fs::read_to_string(&log).expect("the log");
    assert_eq!(written, "9990000018 2\n");

    // A source that does not answer fails the view: the floor never answers without it.
    handles.pop().expect("a source").shutdown().await;
    let r = client
        .get(format!("{url}/fhir/Patient/9990000018/$everything"))
        .send()
        .await
        .expect("view");
    assert_eq!(r.status(), 502);
}
