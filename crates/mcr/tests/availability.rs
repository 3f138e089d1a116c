//! Availability of one gateway process (`mcr serve`), under a stream of record views:
//!
//! - its store's disk fills up and is freed again: views are refused (503, an
//!   `OperationOutcome`, no clinical data) and `/readyz` says why while it is full; once space
//!   returns, views are served again and `/readyz` is 200, with no restart; every view answered
//!   200 has its audit record, and the chain verifies;
//! - it gets `SIGTERM` mid-stream: `/readyz` says draining, the views in flight finish, none
//!   fails mid-answer, the process exits 0, every acknowledged view has its audit record and
//!   `mcr audit verify` finds the chain intact.

use mcr_domain::{Clock, SystemClock};
use mcr_idp::SigningKey;
use mcr_synth::SynthConfig;
use serde_json::json;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

const USER: &str = "gp.available";

/// Sources, an identity provider, and the patients of one GP practice to view.
struct Region {
    sources: Vec<serde_json::Value>,
    handles: Vec<mcr_sources::SourceHandle>,
    practice_org: serde_json::Value,
    patients: Vec<String>,
    auth: serde_json::Value,
    token: String,
    _idp_task: tokio::task::JoinHandle<()>,
}

async fn region(latency_ms: (u64, u64)) -> Region {
    let today = SystemClock.now().date_naive();
    let region = mcr_synth::generate(&SynthConfig {
        seed: 22,
        patients: 300,
        today,
    });
    let mut sources = Vec::new();
    let mut handles = Vec::new();
    for slice in &region.sources {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind");
        let h = mcr_sources::serve(
            slice.clone(),
            listener,
            mcr_sources::Behaviour::with_latency(latency_ms.0, latency_ms.1),
        )
        .await
        .expect("source");
        sources.push(json!({
            "id": slice.id.to_string(),
            "base_url": h.base_url(),
            "resource_types": slice.resource_types,
            "organisation": slice.organisation,
        }));
        handles.push(h);
    }
    let sample = region.samples.all_four.first().expect("sample");
    let practice = region.person(sample).expect("person").gp_practice.clone();
    let practice_org = region
        .gp_practices
        .iter()
        .find(|o| o.code == practice)
        .expect("practice")
        .clone();
    let patients: Vec<String> = region
        .people
        .iter()
        .filter(|p| p.gp_practice == practice)
        .map(|p| p.nhs_number.to_string())
        .take(30)
        .collect();
    assert!(patients.len() >= 5, "patients at the practice");
    let idp_listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let issuer = format!("http://{}", idp_listener.local_addr().expect("addr"));
    let idp = Arc::new(mcr_idp::Idp::new(
        mcr_idp::IdpConfig {
            issuer: issuer.clone(),
            api_audience: "mcr-gateway".into(),
            clients: Vec::new(),
            users: vec![mcr_idp::IdpUser {
                id: USER.into(),
                name: "Dr Available".into(),
                role: "clinician".into(),
                org: practice.to_string(),
                label: "Dr Available".into(),
            }],
            token_seconds: 3600,
        },
        SigningKey::generate().expect("key"),
        Arc::new(SystemClock),
    ));
    let idp_task = mcr_idp::serve(idp.clone(), idp_listener);
    let token = idp
        .access_token(USER, mcr_idp::DEFAULT_API_SCOPES, "availability-test")
        .expect("token");
    Region {
        sources,
        handles,
        practice_org: serde_json::to_value(&practice_org).expect("org"),
        patients,
        auth: json!({"issuer": issuer, "client_id": "mcr-gateway", "client_secret": "not-used-here", "algorithms": ["EdDSA"]}),
        token,
        _idp_task: idp_task,
    }
}

/// A gateway config with its keys under `dir` and its store at `store`.
fn write_config(dir: &Path, store: &str, r: &Region, http: serde_json::Value) -> PathBuf {
    let audit_key = dir.join("audit-key.p8");
    SigningKey::load_or_create(&audit_key).expect("audit key");
    let config = json!({
        "listen": "127.0.0.1:0",
        "data_dir": dir.display().to_string(),
        "store": store,
        "sync_on_start": true,
        "auth": r.auth,
        "policy": {"consent_model": "legal-basis"},
        "audit": {"signing_key": audit_key.display().to_string(), "checkpoint_every": 50},
        "http": http,
        "organisations": [r.practice_org],
        "sources": r.sources,
    });
    let path = dir.join("gateway.toml");
    std::fs::write(&path, toml::to_string(&config).expect("toml")).expect("write config");
    path
}

async fn start_gateway(config: &Path) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcr"))
        .args(["serve", "--insecure-http", "--config"])
        .arg(config)
        .env("MCR_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start mcr serve");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("read") {
            if let Some(u) = line.strip_prefix("gateway listening on ") {
                return u.trim().to_owned();
            }
        }
        panic!("mcr serve exited before listening")
    })
    .await
    .expect("gateway starts within a minute");
    (child, url)
}

/// What happened to one view request.
#[derive(Debug, Clone)]
struct Outcome {
    id: String,
    /// `None`: no answer began (connection refused or closed before the status line).
    status: Option<u16>,
    /// The answer began and then broke off.
    cut_mid_answer: bool,
    /// The body of a 503 is an `OperationOutcome`, nothing else.
    refusal_is_outcome: bool,
    started: Instant,
    ended: Instant,
}

/// Workers viewing records until `stop` (or, with `until_refused`, until the gateway no
/// longer accepts them).
fn stream(
    url: &str,
    r: &Region,
    workers: usize,
    stop: Arc<AtomicBool>,
    until_refused: bool,
) -> (Arc<Mutex<Vec<Outcome>>>, Vec<tokio::task::JoinHandle<()>>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let tasks = (0..workers)
        .map(|w| {
            let (http, url, token, patients) = (
                http.clone(),
                url.to_owned(),
                r.token.clone(),
                r.patients.clone(),
            );
            let (outcomes, stop) = (outcomes.clone(), stop.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let id = format!("avail-{w}-{i}");
                    let nhs = &patients[(w * 7 + i) % patients.len()];
                    let started = Instant::now();
                    let sent = http
                        .get(format!("{url}/fhir/Patient/{nhs}/$everything"))
                        .bearer_auth(&token)
                        .header("x-request-id", &id)
                        .send()
                        .await;
                    let mut outcome = Outcome {
                        id,
                        status: None,
                        cut_mid_answer: false,
                        refusal_is_outcome: true,
                        started,
                        ended: started,
                    };
                    let refused = match sent {
                        Ok(resp) => {
                            let status = resp.status().as_u16();
                            outcome.status = Some(status);
                            match resp.bytes().await {
                                Ok(body) if status == 503 => {
                                    let v: serde_json::Value =
                                        serde_json::from_slice(&body).unwrap_or_default();
                                    outcome.refusal_is_outcome =
                                        v["resourceType"] == "OperationOutcome";
                                }
                                Ok(_) => {}
                                Err(_) => outcome.cut_mid_answer = true,
                            }
                            false
                        }
                        Err(_) => true,
                    };
                    outcome.ended = Instant::now();
                    outcomes.lock().expect("lock").push(outcome);
                    if refused {
                        if until_refused {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            })
        })
        .collect();
    (outcomes, tasks)
}

fn count(outcomes: &Mutex<Vec<Outcome>>, f: impl Fn(&Outcome) -> bool) -> usize {
    outcomes
        .lock()
        .expect("lock")
        .iter()
        .filter(|o| f(o))
        .count()
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, String) {
    match http.get(url).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

/// Every view answered 200 has its `view-record` audit record; then `mcr audit verify`.
async fn assert_audited(store_url: &str, config: &Path, outcomes: &[Outcome]) {
    let store = mcr_store::connect(store_url).await.expect("store");
    let mut audited = HashSet::new();
    let mut after = 0;
    loop {
        let rows = store.audit_rows(after, 5_000).await.expect("rows");
        let Some(last) = rows.last() else { break };
        after = last.seq;
        audited.extend(
            rows.into_iter()
                .filter(|r| r.record.action == "view-record")
                .map(|r| r.record.correlation_id),
        );
    }
    let missing: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.status == Some(200) && !audited.contains(&o.id))
        .map(|o| o.id.as_str())
        .collect();
    assert!(missing.is_empty(), "served but not audited: {missing:?}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcr"))
        .args(["audit", "verify", "--config"])
        .arg(config)
        .output()
        .expect("mcr audit verify");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("intact"), "{said}");
}

async fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("running");
    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .expect("kill");
    assert!(status.success(), "kill -TERM {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_refuses_views_and_the_gateway_serves_again_once_space_returns() {
    let fs = mcr_testkit::SmallFs::mount(24);
    let dir = tempfile::tempdir().expect("dir");
    let r = region((0, 0)).await;
    let db = fs.path().join("mcr.db");
    let store_url = format!("sqlite://{}", db.display());
    let config = write_config(dir.path(), &store_url, &r, json!({}));
    let (child, url) = start_gateway(&config).await;
    let http = reqwest::Client::new();
    assert_eq!(get(&http, &format!("{url}/livez")).await.0, 200);
    let (status, body) = get(&http, &format!("{url}/readyz")).await;
    assert_eq!((status, body.trim()), (200, "ready"));

    let stop = Arc::new(AtomicBool::new(false));
    let (outcomes, tasks) = stream(&url, &r, 6, stop.clone(), false);
    wait_for("views served", Duration::from_secs(60), || {
        count(&outcomes, |o| o.status == Some(200)) >= 40
    })
    .await;

    // Empty the write-ahead log into the database file (so the gateway's next write must grow
    // a file), then take every free byte.
    let mut side = <sqlx::SqliteConnection as sqlx::Connection>::connect(&store_url)
        .await
        .expect("side connection");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (busy,): (i64,) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut side)
            .await
            .expect("checkpoint");
        if busy == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the log could not be emptied");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(side);
    let filled_at = Instant::now();
    assert!(fs.fill() > 0, "the filesystem had space to take");

    // Views are refused, readiness says why, liveness is unaffected.
    wait_for("views refused", Duration::from_secs(30), || {
        count(&outcomes, |o| {
            o.status == Some(503) && o.started > filled_at
        }) >= 3
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let reason = loop {
        let (status, body) = get(&http, &format!("{url}/readyz")).await;
        if status == 503 {
            break body;
        }
        assert!(Instant::now() < deadline, "readiness stayed {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        reason.starts_with("not ready: the store does not take writes") && reason.contains("full"),
        "{reason}"
    );
    assert_eq!(reason.trim().lines().count(), 1, "{reason}");
    assert_eq!(get(&http, &format!("{url}/livez")).await.0, 200);

    // Space returns: served again, ready again, the same process.
    fs.free();
    let freed_at = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get(&http, &format!("{url}/readyz")).await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready again after the disk was freed: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for("views served again", Duration::from_secs(30), || {
        count(&outcomes, |o| o.status == Some(200) && o.started > freed_at) >= 40
    })
    .await;
    stop.store(true, Ordering::Release);
    for t in tasks {
        t.await.expect("worker");
    }
    sigterm(&child).await;
    let mut child = child;
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits")
        .expect("status");
    assert!(exit.success(), "{exit}");

    let outcomes = outcomes.lock().expect("lock").clone();
    let refused = outcomes.iter().filter(|o| o.status == Some(503)).count();
    let served = outcomes.iter().filter(|o| o.status == Some(200)).count();
    println!("{served} views served, {refused} refused while the disk was full");
    assert!(
        outcomes.iter().all(|o| o.refusal_is_outcome),
        "every refusal is an OperationOutcome"
    );
    assert!(
        outcomes.iter().all(|o| !o.cut_mid_answer),
        "no answer was cut off"
    );
    assert!(
        outcomes.iter().all(|o| matches!(o.status, Some(200 | 503))),
        "only served or refused: {:?}",
        outcomes
            .iter()
            .filter(|o| !matches!(o.status, Some(200 | 503)))
            .take(3)
            .collect::<Vec<_>>()
    );
    assert_audited(&store_url, &config, &outcomes).await;
    for h in r.handles {
        h.shutdown().await;
    }
    drop(fs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_the_views_in_flight_and_loses_no_audit_record() {
    let dir = tempfile::tempdir().expect("dir");
    // Sources answer in 100 to 400 ms, so views are in flight when the signal comes.
    let r = region((100, 400)).await;
    let store_url = format!("sqlite://{}", dir.path().join("mcr.db").display());
    let config = write_config(
        dir.path(),
        &store_url,
        &r,
        json!({"drain_seconds": 20, "drain_notice_seconds": 1}),
    );
    let (mut child, url) = start_gateway(&config).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (outcomes, tasks) = stream(&url, &r, 16, stop.clone(), true);
    wait_for("views served", Duration::from_secs(60), || {
        count(&outcomes, |o| o.status == Some(200)) >= 60
    })
    .await;

    sigterm(&child).await;
    let signalled = Instant::now();
    // While it drains, readiness says so (the notice period: still answering).
    let http = reqwest::Client::new();
    let (status, body) = get(&http, &format!("{url}/readyz")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("not ready: draining"), "{body}");

    let exit = tokio::time::timeout(Duration::from_secs(40), child.wait())
        .await
        .expect("exits within the drain limit")
        .expect("status");
    assert_eq!(exit.code(), Some(0), "{exit}");
    let exited = Instant::now();
    stop.store(true, Ordering::Release);
    for t in tasks {
        t.await.expect("worker");
    }

    let outcomes = outcomes.lock().expect("lock").clone();
    let cut: Vec<&Outcome> = outcomes.iter().filter(|o| o.cut_mid_answer).collect();
    assert!(cut.is_empty(), "views cut off mid-answer: {cut:?}");
    let failed: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.status.is_some_and(|s| s != 200))
        .collect();
    assert!(
        failed.is_empty(),
        "views answered but not served: {failed:?}"
    );
    // Views that were in flight when the signal came were finished.
    let finished_in_drain = outcomes
        .iter()
        .filter(|o| o.status == Some(200) && o.started < signalled && o.ended > signalled)
        .count();
    let after_notice = outcomes
        .iter()
        .filter(|o| o.status == Some(200) && o.ended > signalled + Duration::from_millis(900))
        .count();
    let not_accepted = outcomes.iter().filter(|o| o.status.is_none()).count();
    println!(
        "{} views served; {finished_in_drain} in flight at SIGTERM finished; {after_notice} answered after the notice period; {not_accepted} not accepted after; exited {} ms after the signal",
        outcomes.iter().filter(|o| o.status == Some(200)).count(),
        (exited - signalled).as_millis()
    );
    assert!(finished_in_drain >= 1, "views were in flight at SIGTERM");
    assert_audited(&store_url, &config, &outcomes).await;
    for h in r.handles {
        h.shutdown().await;
    }
}
