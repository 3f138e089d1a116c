//! Crash safety: the gateway runs as its own process (`mcr serve`), concurrent views are fired
//! at it, and it is killed with SIGKILL mid-load. Every view whose response status line
//! reached the client must have its audit record (matched by the `X-Request-ID` correlation
//! id), and the chain, with its signed checkpoints, must verify.
//!
//! Also the operator's commands on a real file: `mcr audit checkpoint` and `mcr audit verify`
//! (exit 0 when intact, 1 when tampered, naming the record).

use crate::helpers::{
    audited_views, mcr, practice_and_patients, serve_config, serve_sources, view_with_id,
};
use mcr_domain::{Clock, SystemClock};
use mcr_idp::SigningKey;
use mcr_synth::SynthConfig;
use serde_json::json;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PRACTICE_USER: &str = "gp.crash";

/// A gateway config: the given sources, a SQLite store and keys under `dir`, legal-basis
/// consent (so a GP's views of their registered patients are permitted), checkpoints every 25.
fn write_config(
    dir: &Path,
    sources: &[serde_json::Value],
    orgs: &[serde_json::Value],
    auth: serde_json::Value,
) -> std::path::PathBuf {
    let audit_key = dir.join("audit-key.p8");
    SigningKey::load_or_create(&audit_key).expect("audit key");
    let config = json!({
        "listen": "127.0.0.1:0",
        "data_dir": dir.display().to_string(),
        "store": format!("sqlite://{}", dir.join("mcr.db").display()),
        "sync_on_start": true,
        "auth": auth,
        "policy": {"consent_model": "legal-basis"},
        "audit": {"signing_key": audit_key.display().to_string(), "checkpoint_every": 25},
        "organisations": orgs,
        "sources": sources,
    });
    let path = dir.join("gateway.toml");
    std::fs::write(&path, toml::to_string(&config).expect("toml")).expect("write config");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_killed_mid_load_loses_no_acknowledged_audit_record() {
    let dir = tempfile::tempdir().expect("dir");
    let today = SystemClock.now().date_naive();
    let region = mcr_synth::generate(&SynthConfig {
        seed: 4,
        patients: 600,
        today,
    });
    let (sources, handles) = serve_sources(&region, &mcr_sources::Behaviour::default()).await;
    let (practice_org, patients) = practice_and_patients(&region, 40);
    // An identity provider for the gateway to verify the user's API token against.
    let idp_listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let issuer = format!("http://{}", idp_listener.local_addr().expect("addr"));
    let user = mcr_idp::IdpUser {
        id: PRACTICE_USER.into(),
        name: "Dr Crash Test".into(),
        role: "clinician".into(),
        org: practice_org.code.to_string(),
        label: "Dr Crash Test".into(),
        role_profiles: Vec::new(),
    };
    let idp_config = mcr_idp::IdpConfig {
        issuer: issuer.clone(),
        api_audience: "mcr-gateway".into(),
        clients: Vec::new(),
        users: vec![user],
        token_seconds: 3600,
    };
    let idp = Arc::new(mcr_idp::Idp::new(
        idp_config,
        SigningKey::generate().expect("key"),
        Arc::new(SystemClock),
    ));
    let _idp_task = mcr_idp::serve(idp.clone(), idp_listener);
    let auth = json!({"issuer": issuer, "client_id": "mcr-gateway", "client_secret": "not-used-here", "algorithms": ["EdDSA"]});
    let config = write_config(
        dir.path(),
        &sources,
        &[serde_json::to_value(&practice_org).expect("org")],
        auth,
    );
    let token = idp
        .access_token(PRACTICE_USER, mcr_idp::DEFAULT_API_SCOPES, "crash-test")
        .expect("token");

    let (mut child, url) = serve_config(&config).await;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let acknowledged = Arc::new(Mutex::new(Vec::<(String, u16)>::new()));
    let failed = Arc::new(Mutex::new(0usize));
    let stop_at = Instant::now() + Duration::from_secs(20);
    let mut tasks = Vec::new();
    for w in 0..32 {
        let (http, url, token, patients) =
            (http.clone(), url.clone(), token.clone(), patients.clone());
        let (acknowledged, failed) = (acknowledged.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                if Instant::now() > stop_at {
                    break;
                }
                let id = format!("crash-{w}-{i}");
                let nhs = &patients[(w * 7 + i) % patients.len()];
                let sent = view_with_id(&http, &url, &token, nhs, &id).await;
                match sent {
                    // The status line (and headers) arrived: the gateway acknowledged this view.
                    Ok(resp) => {
                        acknowledged
                            .lock()
                            .expect("lock")
                            .push((id, resp.status().as_u16()));
                        let _ = resp.bytes().await;
                    }
                    Err(_) => {
                        *failed.lock().expect("lock") += 1;
                        break;
                    }
                }
            }
        }));
    }
    // Let the load build up, then kill the gateway without warning.
    let deadline = Instant::now() + Duration::from_secs(15);
    while acknowledged.lock().expect("lock").len() < 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;
    for t in tasks {
        t.await.expect("task");
    }
    let acked = acknowledged.lock().expect("lock").clone();
    let in_flight = *failed.lock().expect("lock");
    let permitted = acked.iter().filter(|(_, s)| *s == 200).count();
    println!("acknowledged {} views ({permitted} served with 200); {in_flight} requests cut off by the kill", acked.len());
    assert!(
        permitted >= 50,
        "enough views were served before the kill: {acked:?}"
    );
    assert!(
        in_flight > 0,
        "the gateway was killed while requests were in flight"
    );

    // Every acknowledged view has its audit record, and the chain verifies.
    let store = mcr_store::connect_and_migrate(&format!(
        "sqlite://{}",
        dir.path().join("mcr.db").display()
    ))
    .await
    .expect("store");
    let audited = audited_views(&*store).await;
    let missing: Vec<_> = acked
        .iter()
        .filter(|(id, _)| !audited.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not audited: {missing:?}"
    );
    let key = mcr_audit::CheckpointKey::from_bytes(
        &std::fs::read(dir.path().join("audit-key.p8")).expect("key"),
    )
    .expect("key");
    match mcr_audit::verify_with(store.as_ref(), &[key.verifying_key()])
        .await
        .expect("verify")
    {
        mcr_audit::Verification::Intact {
            records,
            checkpoints,
            ..
        } => {
            assert!(records as usize >= acked.len());
            assert!(
                checkpoints >= 2,
                "checkpoints were signed under load: {checkpoints}"
            );
        }
        broken => panic!("{broken:?}"),
    }
    // And the operator's command agrees.
    let out = mcr()
        .args(["audit", "verify", "--config"])
        .arg(&config)
        .output()
        .expect("mcr audit verify");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for h in handles {
        h.shutdown().await;
    }
}

#[tokio::test]
async fn mcr_audit_verify_finds_a_tampered_record_in_a_sqlite_file() {
    let dir = tempfile::tempdir().expect("dir");
    let auth = json!({"issuer": "https://idp.example.nhs.uk", "client_id": "mcr-gateway", "client_secret": "not-used-here"});
    let source = json!({
        "id": "gp",
        "base_url": "http://127.0.0.1:9",
        "resource_types": ["Patient"],
        "organisation": {"code": "E82000", "name": "GP", "kind": "gp-practice", "member": true},
    });
    let config = write_config(dir.path(), &[source], &[], auth);
    let url = format!("sqlite://{}", dir.path().join("mcr.db").display());
    let store = mcr_store::connect_and_migrate(&url).await.expect("store");
    for i in 0..30 {
        let event = mcr_audit::AuditEvent {
            at: SystemClock.now(),
            correlation_id: format!("req-{i}"),
            system: None,
            user_id: "gp.one".into(),
            user_name: "Dr One".into(),
            role: "clinician".into(),
            org_code: "E82000".into(),
            org_name: "GP".into(),
            patient: Some("9990000018".into()),
            purpose: "directcare".into(),
            action: mcr_audit::Action::ViewRecord,
            outcome: mcr_audit::Outcome::Permit,
            basis: Some("legal-basis".into()),
            detail: None,
            sources: Vec::new(),
            role_profile_id: None,
        };
        mcr_audit::record(store.as_ref(), &event)
            .await
            .expect("record");
    }

    let run = |args: &[&str]| {
        let out = mcr()
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .expect("run mcr");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, text) = run(&["audit", "checkpoint"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("checkpoint signed at record 30"), "{text}");
    let (code, text) = run(&["audit", "verify"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("audit trail intact: 30 records") && text.contains("1 signed checkpoint"),
        "{text}"
    );

    // Someone with the file edits record 12 (after removing the append-only guard).
    let pool = sqlx::SqlitePool::connect(&url).await.expect("open");
    sqlx::raw_sql("DROP TRIGGER audit_log_no_update; UPDATE audit_log SET user_id = 'someone.else' WHERE seq = 12;")
        .execute(&pool)
        .await
        .expect("tamper");
    let (code, text) = run(&["audit", "verify"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("BROKEN at record 12") && text.contains("altered"),
        "{text}"
    );
}
