//! Availability of one gateway process (`mcr serve`), under a stream of record views:
//!
//! - its store's disk fills up and is freed again: views are refused (503, an
//!   `OperationOutcome`, no clinical data) and `/readyz` says why while it is full; once space
//!   returns, views are served again and `/readyz` is 200, with no restart; every view answered
//!   200 has its audit record, and the chain verifies;
//! - it gets `SIGTERM` mid-stream: `/readyz` says draining, the views in flight finish, none
//!   fails mid-answer, the process exits 0, every acknowledged view has its audit record and
//!   `mcr audit verify` finds the chain intact.

use crate::helpers::{
    audited_views, practice_and_patients, serve_config, serve_sources, view_with_id,
};
use mcr_domain::{Clock, SystemClock};
use mcr_idp::SigningKey;
use mcr_synth::SynthConfig;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// The client secret the test's provider knows the gateways by.
const CLIENT_SECRET: &str = "availability-test-secret";

async fn region(latency_ms: (u64, u64)) -> Region {
    region_for(latency_ms, None).await
}

/// With `public_url`: the provider signs browsers in for gateways reached at that URL.
async fn region_for(latency_ms: (u64, u64), public_url: Option<&str>) -> Region {
    let today = SystemClock.now().date_naive();
    let region = mcr_synth::generate(&SynthConfig {
        seed: 22,
        patients: 300,
        today,
    });
    let behaviour = mcr_sources::Behaviour::with_latency(latency_ms.0, latency_ms.1);
    let (sources, handles) = serve_sources(&region, &behaviour).await;
    let (practice_org, patients) = practice_and_patients(&region, 30);
    let idp_listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let issuer = format!("http://{}", idp_listener.local_addr().expect("addr"));
    let idp = Arc::new(mcr_idp::Idp::new(
        mcr_idp::IdpConfig {
            issuer: issuer.clone(),
            api_audience: "mcr-gateway".into(),
            clients: public_url
                .map(|u| mcr_idp::ClientRegistration {
                    client_id: "mcr-gateway".into(),
                    client_secret: CLIENT_SECRET.to_owned().into(),
                    redirect_uris: vec![format!("{u}/signin/callback")],
                })
                .into_iter()
                .collect(),
            users: vec![mcr_idp::IdpUser {
                id: USER.into(),
                name: "Dr Available".into(),
                role: "clinician".into(),
                org: practice_org.code.to_string(),
                label: "Dr Available".into(),
                role_profiles: Vec::new(),
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
        auth: json!({"issuer": issuer, "client_id": "mcr-gateway", "client_secret": CLIENT_SECRET, "algorithms": ["EdDSA"]}),
        token,
        _idp_task: idp_task,
    }
}

/// A gateway config with its keys under `dir` and its store at `store`.
fn write_config(dir: &Path, store: &str, r: &Region, http: serde_json::Value) -> PathBuf {
    write_config_at(dir, store, r, http, None)
}

/// With `at`: listening on that address, reached at that public URL, audit checkpoints signed
/// with that key.
fn write_config_at(
    dir: &Path,
    store: &str,
    r: &Region,
    http: serde_json::Value,
    at: Option<(std::net::SocketAddr, &str, &Path)>,
) -> PathBuf {
    let audit_key = at.map_or_else(|| dir.join("audit-key.p8"), |(_, _, k)| k.to_owned());
    SigningKey::load_or_create(&audit_key).expect("audit key");
    let mut config = json!({
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
    if let Some((listen, public_url, _)) = at {
        config["listen"] = json!(listen.to_string());
        config["base_url"] = json!(public_url);
    }
    let path = dir.join("gateway.toml");
    std::fs::write(&path, toml::to_string(&config).expect("toml")).expect("write config");
    path
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
                    let sent = view_with_id(&http, &url, &token, nhs, &id).await;
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
    let audited = audited_views(&*store).await;
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
    let (child, url) = serve_config(&config).await;
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
        json!({"drain_seconds": 20, "drain_notice_seconds": 3}),
    );
    let (mut child, url) = serve_config(&config).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (outcomes, tasks) = stream(&url, &r, 16, stop.clone(), true);
    wait_for("views served", Duration::from_secs(60), || {
        count(&outcomes, |o| o.status == Some(200)) >= 60
    })
    .await;

    sigterm(&child).await;
    let signalled = Instant::now();
    // While it drains, readiness says so (the notice period: still answering). The signal
    // takes a moment to arrive on a busy machine: asked until it says so, within the notice.
    let http = reqwest::Client::new();
    let (mut status, mut body) = get(&http, &format!("{url}/readyz")).await;
    while status != 503 && signalled.elapsed() < Duration::from_millis(2_500) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        (status, body) = get(&http, &format!("{url}/readyz")).await;
    }
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
        .filter(|o| o.status == Some(200) && o.ended > signalled + Duration::from_millis(2_900))
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

/// A port free right now, for a gateway to listen on (and come back to after a restart).
fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

fn cookie_of(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(|c| c.split(';').next().unwrap_or_default().to_owned())
}

fn location_of(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// `url` with its scheme, host and port taken from `gateway` (the balancer sends it there).
fn at_gateway(url: &str, gateway: &str) -> String {
    let mut u = url::Url::parse(url).expect("url");
    let g = url::Url::parse(gateway).expect("gateway url");
    u.set_port(g.port()).expect("port");
    u.to_string()
}

/// Two `mcr serve` processes on one throwaway PostgreSQL database, and a client (playing the
/// load balancer) alternating between them: a sign-in started on one completes on the other,
/// the session works on both and survives a restart; sign-in rate limits are shared; one
/// gateway is restarted (SIGTERM, drain, start again) during a stream of views, which the
/// client sends to the other while it is down: no view fails, every served view is audited,
/// and `mcr audit verify` finds the one chain intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_on_postgres_share_sign_ins_sessions_and_limits_and_restart_one_by_one() {
    let pg = mcr_testkit::postgres_url().await;
    let (addr_a, addr_b) = (free_addr(), free_addr());
    let public = format!("http://{addr_a}");
    let r = region_for((20, 80), Some(&public)).await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let key = dir_a.path().join("audit-key.p8");
    let http_settings = json!({"drain_seconds": 20});
    let config_a = write_config_at(
        dir_a.path(),
        &pg,
        &r,
        http_settings.clone(),
        Some((addr_a, &public, &key)),
    );
    let config_b = write_config_at(
        dir_b.path(),
        &pg,
        &r,
        http_settings,
        Some((addr_b, &public, &key)),
    );
    // Each prints the public URL it is reached at (the same for both); the test reaches each
    // at its own address.
    let (mut gw_a, printed) = serve_config(&config_a).await;
    assert_eq!(printed, public);
    let (gw_b, _) = serve_config(&config_b).await;
    let (url_a, url_b) = (format!("http://{addr_a}"), format!("http://{addr_b}"));
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");

    // Sign in: started on A, back from the provider to B.
    let resp = browser
        .post(format!("{url_a}/signin"))
        .send()
        .await
        .expect("POST /signin");
    assert_eq!(resp.status(), 303);
    let login = cookie_of(&resp, "mcr_login").expect("mcr_login");
    let authorize = url::Url::parse(&location_of(&resp)).expect("authorize URL");
    let mut form: Vec<(String, String)> = authorize
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    form.push(("user".into(), USER.into()));
    let mut post_url = authorize.clone();
    post_url.set_query(None);
    let back = browser
        .post(post_url)
        .form(&form)
        .send()
        .await
        .expect("provider");
    assert_eq!(back.status(), 303, "the provider sends the browser back");
    let callback = location_of(&back);
    let resp = browser
        .get(at_gateway(&callback, &url_b))
        .header("cookie", &login)
        .send()
        .await
        .expect("callback on B");
    assert_eq!(resp.status(), 303, "signed in on B: {:?}", resp.headers());
    let session = cookie_of(&resp, "mcr_session").expect("a session cookie");
    let app = |url: &str| {
        browser
            .get(format!("{url}/app"))
            .header("cookie", &session)
            .send()
    };
    for url in [&url_a, &url_b, &url_a, &url_b] {
        let page = app(url).await.expect("GET /app");
        assert_eq!(page.status(), 200, "the session works on {url}");
    }

    // Sign-in rate limits are one bucket across both gateways (60 at once per address).
    let mut allowed = 0;
    let mut limited = 0;
    let started = Instant::now();
    for i in 0..100 {
        let url = if i % 2 == 0 { &url_a } else { &url_b };
        let resp = browser
            .post(format!("{url}/signin"))
            .send()
            .await
            .expect("POST /signin");
        match resp.status().as_u16() {
            303 => allowed += 1,
            429 => limited += 1,
            other => panic!("POST /signin: {other}"),
        }
    }
    let refill = started.elapsed().as_secs() * 2 + 2;
    assert!(
        limited > 0 && allowed <= 60 + refill,
        "one bucket for both gateways: {allowed} allowed, {limited} limited"
    );

    // A stream of views, alternating; a gateway that does not answer is skipped, as a load
    // balancer does.
    let stop = Arc::new(AtomicBool::new(false));
    let served_by = Arc::new(Mutex::new(Vec::<(String, u16, usize, Instant)>::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let api = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let gateways = [url_a.clone(), url_b.clone()];
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let (api, gateways, token, patients) = (
                api.clone(),
                gateways.clone(),
                r.token.clone(),
                r.patients.clone(),
            );
            let (stop, served_by, failures) = (stop.clone(), served_by.clone(), failures.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let id = format!("fleet-{w}-{i}");
                    let nhs = &patients[(w * 5 + i) % patients.len()];
                    let mut answered = false;
                    let mut why = Vec::new();
                    for attempt in 0..2 {
                        let g = (w + i + attempt) % 2;
                        let sent = api
                            .get(format!("{}/fhir/Patient/{nhs}/$everything", gateways[g]))
                            .bearer_auth(&token)
                            .header("x-request-id", &id)
                            .send()
                            .await;
                        let resp = match sent {
                            Ok(resp) => resp,
                            Err(e) => {
                                why.push(format!("{}: {e:?}", gateways[g]));
                                continue;
                            }
                        };
                        let status = resp.status().as_u16();
                        if resp.bytes().await.is_err() {
                            failures
                                .lock()
                                .expect("lock")
                                .push(format!("{id}: cut off"));
                        } else if status != 200 {
                            failures
                                .lock()
                                .expect("lock")
                                .push(format!("{id}: {status}"));
                        } else {
                            served_by.lock().expect("lock").push((
                                id.clone(),
                                status,
                                g,
                                Instant::now(),
                            ));
                        }
                        answered = true;
                        break;
                    }
                    if !answered {
                        failures
                            .lock()
                            .expect("lock")
                            .push(format!("{id}: neither gateway answered: {why:?}"));
                    }
                }
            })
        })
        .collect();
    let served_on = |g: usize, since: Instant| {
        served_by
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, _, by, at)| *by == g && *at > since)
            .count()
    };
    let t0 = Instant::now();
    wait_for("views on both", Duration::from_secs(60), || {
        served_on(0, t0) >= 20 && served_on(1, t0) >= 20
    })
    .await;

    // Restart A during the stream: drain, exit 0, start again on the same address.
    sigterm(&gw_a).await;
    let exit = tokio::time::timeout(Duration::from_secs(40), gw_a.wait())
        .await
        .expect("A exits")
        .expect("status");
    assert_eq!(exit.code(), Some(0), "{exit}");
    let down = Instant::now();
    wait_for(
        "views on B while A is down",
        Duration::from_secs(30),
        || served_on(1, down) >= 10,
    )
    .await;
    let (gw_a2, _) = serve_config(&config_a).await;
    let up = Instant::now();
    wait_for(
        "views on A after its restart",
        Duration::from_secs(60),
        || served_on(0, up) >= 20,
    )
    .await;
    stop.store(true, Ordering::Release);
    for t in tasks {
        t.await.expect("worker");
    }
    // The restart signed nobody out.
    let page = app(&url_a).await.expect("GET /app");
    assert_eq!(page.status(), 200, "the session outlives a restart");

    let failures = failures.lock().expect("lock").clone();
    assert!(failures.is_empty(), "views failed: {failures:?}");
    let served: Vec<Outcome> = served_by
        .lock()
        .expect("lock")
        .iter()
        .map(|(id, status, _, at)| Outcome {
            id: id.clone(),
            status: Some(*status),
            cut_mid_answer: false,
            refusal_is_outcome: true,
            started: *at,
            ended: *at,
        })
        .collect();
    println!(
        "{} views served across two gateways ({} on A, {} on B); {allowed} sign-ins allowed and {limited} limited across both",
        served.len(),
        served_on(0, t0),
        served_on(1, t0)
    );
    for mut g in [gw_a2, gw_b] {
        sigterm(&g).await;
        let exit = g.wait().await.expect("status");
        assert_eq!(exit.code(), Some(0), "{exit}");
    }
    assert_audited(&pg, &config_a, &served).await;
    for h in r.handles {
        h.shutdown().await;
    }
}

/// The watch's rules on the count of both gateways together: one user views patients on two
/// `mcr serve` on one PostgreSQL, alternating, with the watch's limits lowered (flag above 3,
/// refuse above 6). The fourth distinct patient is flagged, once, though no gateway saw four;
/// one gateway restarts and still counts what came before; the seventh is refused (429) by
/// the restarted one, while patients already counted can still be viewed on either.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_on_postgres_count_one_user_together_across_a_restart() {
    let pg = mcr_testkit::postgres_url().await;
    let r = region((0, 5)).await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let watch = |dir: &Path| {
        let config = write_config(dir, &pg, &r, json!({}));
        let mut text = std::fs::read_to_string(&config).expect("config");
        text.push_str("\n[watch]\nflag_patients = 3\nrefuse_patients = 6\nhours = {}\n");
        std::fs::write(&config, text).expect("write config");
        config
    };
    let (config_a, config_b) = (watch(dir_a.path()), watch(dir_b.path()));
    let (mut gw_a, url_a) = serve_config(&config_a).await;
    let (gw_b, url_b) = serve_config(&config_b).await;
    let api = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let view = |url: String, i: usize| {
        let (api, token, nhs) = (api.clone(), r.token.clone(), r.patients[i].clone());
        async move {
            let resp = api
                .get(format!("{url}/fhir/Patient/{nhs}/$everything"))
                .bearer_auth(&token)
                .send()
                .await
                .expect("view");
            let status = resp.status().as_u16();
            (status, resp.text().await.expect("body"))
        }
    };
    // Two patients on A, two on B: no gateway has seen four.
    for (url, i) in [(&url_a, 0), (&url_b, 1), (&url_a, 2), (&url_b, 3)] {
        assert_eq!(view(url.clone(), i).await.0, 200, "patient {i}");
    }
    assert_eq!(
        view(url_a.clone(), 4).await.0,
        200,
        "patient 4 (flag held back)"
    );

    // A restarts: what it counted is in the store.
    sigterm(&gw_a).await;
    let exit = gw_a.wait().await.expect("status");
    assert_eq!(exit.code(), Some(0), "{exit}");
    let (gw_a2, url_a) = serve_config(&config_a).await;
    assert_eq!(view(url_a.clone(), 5).await.0, 200, "the sixth patient");
    let (status, body) = view(url_a.clone(), 6).await;
    assert_eq!(
        status, 429,
        "the seventh is refused by the restarted A: {body}"
    );
    assert!(
        body.contains("You have viewed 6 different patients"),
        "{body}"
    );
    for (url, i) in [(&url_b, 0), (&url_a, 3)] {
        assert_eq!(
            view(url.clone(), i).await.0,
            200,
            "patient {i}, already counted"
        );
    }
    assert_eq!(view(url_b.clone(), 7).await.0, 429, "refused on B as well");

    // The flags, from the audit trail both wrote.
    let store = mcr_store::connect(&pg).await.expect("store");
    let rows = store.audit_rows(0, 5_000).await.expect("rows");
    let flags: Vec<(String, String)> = rows
        .iter()
        .filter(|row| row.record.action == "anomaly-flag")
        .map(|row| {
            let payload: serde_json::Value =
                serde_json::from_str(&row.record.payload).expect("payload");
            (
                payload["basis"].as_str().unwrap_or_default().to_owned(),
                payload["detail"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .filter(|(basis, _)| basis.contains("patients"))
        .collect();
    assert_eq!(
        flags.len(),
        2,
        "one of each rule, for both gateways: {flags:?}"
    );
    assert_eq!(flags[0].0, "many-patients");
    assert!(
        flags[0].1.starts_with("Viewed 4 different patients"),
        "{flags:?}"
    );
    assert_eq!(flags[1].0, "too-many-patients");
    let refusals = rows
        .iter()
        .filter(|row| row.record.action == "view-record" && row.record.outcome == "deny")
        .count();
    assert_eq!(refusals, 2, "both refusals audited");
    for mut g in [gw_a2, gw_b] {
        sigterm(&g).await;
        let exit = g.wait().await.expect("status");
        assert_eq!(exit.code(), Some(0), "{exit}");
    }
    for h in r.handles {
        h.shutdown().await;
    }
}

/// Waits until `/readyz` answers `want`; returns its body.
async fn readiness_becomes(
    http: &reqwest::Client,
    url: &str,
    want: u16,
    limit: Duration,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let (status, body) = get(http, &format!("{url}/readyz")).await;
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "readiness stayed {status} ({body}), waiting for {want}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A gateway on a PostgreSQL primary with a synchronous streaming standby, configured with
/// both hosts and `target_session_attrs=read-write`, under a stream of views: the primary
/// stops (views refused with 503 `OperationOutcome`s, readiness false), starts again (served
/// again, ready), then stops for good and the standby is promoted (served again, ready) — the
/// same gateway process throughout. Every view served is audited, and `mcr audit verify`
/// finds the chain intact on the promoted standby.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_carries_on_through_a_database_restart_and_failover() {
    let primary = tokio::task::spawn_blocking(mcr_testkit::PgCluster::start)
        .await
        .expect("primary");
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&primary.url())
        .await
        .expect("admin");
    sqlx::query("CREATE DATABASE mcr")
        .execute(&mut admin)
        .await
        .expect("database");
    drop(admin);
    let primary = Arc::new(primary);
    let p = primary.clone();
    let standby = tokio::task::spawn_blocking(move || p.standby())
        .await
        .expect("standby");
    let store_url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/mcr?target_session_attrs=read-write",
        primary.port(),
        standby.port()
    );
    let dir = tempfile::tempdir().expect("dir");
    let r = region((0, 0)).await;
    let config = write_config(dir.path(), &store_url, &r, json!({}));
    let (mut child, url) = serve_config(&config).await;
    let http = reqwest::Client::new();
    readiness_becomes(&http, &url, 200, Duration::from_secs(10)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (outcomes, tasks) = stream(&url, &r, 6, stop.clone(), false);
    let served_since =
        |since: Instant| count(&outcomes, |o| o.status == Some(200) && o.started > since);
    let refused_since =
        |since: Instant| count(&outcomes, |o| o.status == Some(503) && o.started > since);
    wait_for("views served", Duration::from_secs(60), || {
        served_since(Instant::now() - Duration::from_secs(3600)) >= 30
    })
    .await;

    // The database restarts.
    let p = primary.clone();
    tokio::task::spawn_blocking(move || p.stop("fast"))
        .await
        .expect("stop");
    let down = Instant::now();
    wait_for(
        "views refused while the database is down",
        Duration::from_secs(30),
        || refused_since(down) >= 3,
    )
    .await;
    let reason = readiness_becomes(&http, &url, 503, Duration::from_secs(20)).await;
    assert!(
        reason.starts_with("not ready: the store does not take writes"),
        "{reason}"
    );
    let p = primary.clone();
    tokio::task::spawn_blocking(move || p.start_again())
        .await
        .expect("start");
    let up = Instant::now();
    readiness_becomes(&http, &url, 200, Duration::from_secs(30)).await;
    wait_for(
        "views served after the restart",
        Duration::from_secs(30),
        || served_since(up) >= 20,
    )
    .await;

    // The primary goes for good; the standby is promoted.
    let p = primary.clone();
    tokio::task::spawn_blocking(move || p.stop("fast"))
        .await
        .expect("stop");
    let gone = Instant::now();
    wait_for(
        "views refused while no database takes writes",
        Duration::from_secs(30),
        || refused_since(gone) >= 3,
    )
    .await;
    let standby = Arc::new(standby);
    let s = standby.clone();
    tokio::task::spawn_blocking(move || s.promote())
        .await
        .expect("promote");
    let promoted = Instant::now();
    readiness_becomes(&http, &url, 200, Duration::from_secs(30)).await;
    wait_for(
        "views served on the promoted standby",
        Duration::from_secs(30),
        || served_since(promoted) >= 20,
    )
    .await;
    stop.store(true, Ordering::Release);
    for t in tasks {
        t.await.expect("worker");
    }
    sigterm(&child).await;
    let exit = child.wait().await.expect("status");
    assert_eq!(exit.code(), Some(0), "{exit}");

    let outcomes = outcomes.lock().expect("lock").clone();
    println!(
        "{} views served, {} refused while the database was down, across a restart and a failover",
        outcomes.iter().filter(|o| o.status == Some(200)).count(),
        outcomes.iter().filter(|o| o.status == Some(503)).count()
    );
    assert!(
        outcomes.iter().all(|o| !o.cut_mid_answer),
        "no answer was cut off"
    );
    assert!(
        outcomes.iter().all(|o| o.refusal_is_outcome),
        "refusals are OperationOutcomes"
    );
    let other: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| !matches!(o.status, Some(200 | 503)))
        .collect();
    assert!(other.is_empty(), "only served or refused: {other:?}");
    assert_audited(&store_url, &config, &outcomes).await;
    for h in r.handles {
        h.shutdown().await;
    }
}
