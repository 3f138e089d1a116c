//! The watch on every permitted view, over real HTTP (issue 16, finding 4): with the demo's
//! limits lowered, a user who views more patients than the flag limit is flagged and one above
//! the hard limit is refused with 429 and a sentence (audited); a view of a patient with the
//! user's own family name, of a protected person, and at a GP practice outside its working
//! hours is flagged, while the same view at an acute trust is not; every flag is in the
//! privacy officer's review queue with its evidence; and privacy officers are told: the flags
//! arrive batched at a real SMTP server (Python's aiosmtpd, from PyPI) and, signed, at a webhook
//! receiver that checks the signature.

use crate::helpers::*;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::Datelike;
use mcr::watch_settings::{EmailSettings, NotifySettings, WatchSettings, WebhookSettings};
use mcr_domain::{Clock, NhsNumber};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "watch-test-secret-0123456789";

/// A real SMTP server: aiosmtpd writing each message into a Maildir. Killed when dropped.
struct SmtpServer {
    child: std::process::Child,
    port: u16,
    maildir: PathBuf,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start_smtp(dir: &Path) -> SmtpServer {
    let port = free_port();
    let maildir = dir.join("maildir");
    let child = std::process::Command::new("python3")
        .args(["-m", "aiosmtpd", "-n", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 must be installed to run the SMTP server for this test");
    let mut server = SmtpServer {
        child,
        port,
        maildir,
    };
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = server.child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = server.child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!(
                "the SMTP server did not start ({status}): {err}\n\
                 Install it with: python3 -m pip install aiosmtpd==1.4.6"
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the SMTP server did not listen within 20 s (python3 -m pip install aiosmtpd==1.4.6)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

/// Every message aiosmtpd has delivered, as text.
fn mails(maildir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(entries) = std::fs::read_dir(maildir.join(sub)) {
            for e in entries.flatten() {
                out.push(std::fs::read_to_string(e.path()).expect("a message"));
            }
        }
    }
    out
}

/// What the webhook receiver saw: each body whose signature verified, and how many did not.
#[derive(Default)]
struct Received {
    good: Vec<Value>,
    bad: usize,
    calls: usize,
}

async fn hook(
    State(seen): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut seen = seen.lock().expect("lock");
    seen.calls += 1;
    // The first delivery is refused, to show the notifier retries.
    if seen.calls == 1 {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let ts = headers
        .get("x-mcr-timestamp")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    let sig = headers
        .get("x-mcr-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match ts {
        Some(ts) if mcr_notify::webhook::verify(SECRET.as_bytes(), ts, &body, sig) => {
            let now = mcr_domain::SystemClock.now().timestamp();
            assert!((now - ts).abs() < 120, "a fresh timestamp");
            seen.good
                .push(serde_json::from_slice(&body).expect("a JSON body"));
            StatusCode::NO_CONTENT
        }
        _ => {
            seen.bad += 1;
            StatusCode::UNAUTHORIZED
        }
    }
}

fn claim(nhs: &str) -> Value {
    json!({
        "resourceType": "Consent",
        "category": [{"coding": [{"system": "https://mycarerecord.example/fhir/CodeSystem/consent-category", "code": "care-relationship"}]}],
        "patient": {"reference": format!("Patient/{nhs}")},
        "provision": {"type": "permit"},
        "extension": [{"url": "https://mycarerecord.example/fhir/StructureDefinition/reason", "valueString": "Referred for respite care"}]
    })
}

impl TestDemo {
    /// The hospice clinician claims a relationship, records permission and views.
    async fn hospice_views(&self, nhs: &str) -> (u16, Value) {
        let (status, body) = self.post("hospice.ali", "/fhir/Consent", &claim(nhs)).await;
        assert_eq!(status, 201, "relationship claimed: {body}");
        self.give_permission("hospice.ali", nhs).await;
        self.everything("hospice.ali", nhs).await
    }
}

/// Patients in the index, by family name (case-insensitive) or not, skipping `except`.
/// A request context for the demo user `user`.
fn ctx_of(t: &TestDemo, user: &str) -> mcr_gateway::RequestContext {
    let g = &t.demo.gateway.gateway;
    let u = t
        .demo
        .info
        .users
        .iter()
        .find(|u| u.id == user)
        .expect("a demo user");
    mcr_gateway::RequestContext {
        principal: mcr_domain::Principal {
            role_profile: None,
            user_id: u.id.clone(),
            name: u.name.clone(),
            role: u.role,
            organisation: g
                .orgs()
                .get(&mcr_domain::OdsCode::parse(&u.org_code).expect("code"))
                .cloned()
                .expect("the user's organisation"),
        },
        correlation_id: "watch-test".into(),
        system: None,
    }
}

async fn indexed(t: &TestDemo, family: Option<&str>, except: &[String], n: usize) -> Vec<String> {
    let g = &t.demo.gateway.gateway;
    let mut out = Vec::new();
    for p in &t.demo.region.people {
        if out.len() == n {
            break;
        }
        let wanted = family.is_none_or(|f| p.family.eq_ignore_ascii_case(f));
        if wanted
            && !except.contains(&p.nhs_number.to_string())
            && g.store()
                .patient(&p.nhs_number)
                .await
                .expect("index")
                .is_some_and(|ip| family.is_none_or(|f| ip.family.eq_ignore_ascii_case(f)))
        {
            out.push(p.nhs_number.to_string());
        }
    }
    out
}

/// A day that is neither today nor tomorrow in UK time: GP "working hours" on that day only
/// make any view in this test out of hours, whenever it runs.
fn another_day() -> String {
    let today = mcr_gateway::uk_local(mcr_domain::SystemClock.now()).weekday();
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        [today.succ().succ().num_days_from_monday() as usize]
        .to_owned()
}

#[tokio::test]
async fn the_watch_flags_refuses_and_tells_privacy_officers() {
    let dir = tempfile::tempdir().expect("dir");
    let smtp = start_smtp(dir.path());
    let received = Arc::new(Mutex::new(Received::default()));
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook_url = format!("http://{}/hooks/mcr", receiver.local_addr().expect("addr"));
    let app = axum::Router::new()
        .route("/hooks/mcr", axum::routing::post(hook))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(receiver, app).await.expect("receiver") });

    let mut hours = BTreeMap::new();
    hours.insert(
        "gp-practice".to_owned(),
        format!("{} 00:00-24:00", another_day()),
    );
    let watch = WatchSettings {
        flag_patients: 3,
        refuse_patients: 5,
        hours,
        contact: "the privacy officer at Garden House Hospice Care on 01707 000000".into(),
        notify: NotifySettings {
            review_url: None,
            batch_seconds: 8,
            webhook: Some(WebhookSettings {
                url: url::Url::parse(&hook_url).expect("url"),
                secret: SECRET.into(),
                ca: None,
                attempts: 4,
            }),
            email: Some(EmailSettings {
                host: "127.0.0.1".into(),
                port: smtp.port,
                tls: "none".into(),
                ca: None,
                username: None,
                password: None,
                from: "mcr-watch@example.org".into(),
                to: vec!["privacy.officer@example.org".into()],
                attempts: 3,
            }),
        },
        ..WatchSettings::default()
    };
    let t = start_opts(mcr::demo::DemoOptions {
        watch,
        ..test_options()
    })
    .await;
    let g = &t.demo.gateway.gateway;

    // The protected person list: privacy officers only, audited.
    let staff_member = indexed(&t, None, &[], 1).await.remove(0);
    let add = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueIdentifier": {"system": NhsNumber::SYSTEM, "value": staff_member}},
        {"name": "category", "valueCode": "staff"},
        {"name": "note", "valueString": "Nurse on the hospice ward"}
    ]});
    let (status, body) = t
        .post("hospice.ali", "/fhir/List/protected-persons", &add)
        .await;
    assert_eq!(status, 403, "only privacy officers keep the list: {body}");
    let (status, body) = t
        .post("po.wright", "/fhir/List/protected-persons", &add)
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, list) = t.get("po.wright", "/fhir/List/protected-persons").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        list["entry"][0]["item"]["identifier"]["value"],
        staff_member
    );
    assert_eq!(list["entry"][0]["flag"]["coding"][0]["code"], "staff");
    let (status, _) = t.get("ae.okafor", "/fhir/List/protected-persons").await;
    assert_eq!(status, 403);
    // The refused change is in the audit trail, like the accepted one.
    let (status, trail) = t
        .get(
            "po.wright",
            "/fhir/AuditEvent?agent=hospice.ali&outcome=deny",
        )
        .await;
    assert_eq!(status, 200, "{trail}");
    assert!(
        trail["entry"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["resource"]["subtype"]
                .to_string()
                .contains("protect-person"))),
        "{trail}"
    );

    // 1. A patient with the hospice doctor's own family name (Dr Sara Ali).
    let namesake = indexed(&t, Some("Ali"), std::slice::from_ref(&staff_member), 1)
        .await
        .pop()
        .expect("a patient named Ali in the synthetic region");
    let (status, body) = t.hospice_views(&namesake).await;
    assert_eq!(status, 200, "a flag does not stop the view: {body}");
    // 2. The protected person.
    let (status, _) = t.hospice_views(&staff_member).await;
    assert_eq!(status, 200);
    // 3. Two more patients: four in the hour, above the flag limit of three.
    let others = indexed(&t, None, &[staff_member.clone(), namesake.clone()], 4).await;
    for nhs in &others[..3] {
        let (status, body) = t.hospice_views(nhs).await;
        assert_eq!(status, 200, "{body}");
    }
    // 4. A sixth patient is above the hard limit of five: refused, with why and who to call.
    let (status, body) = t.hospice_views(&others[3]).await;
    assert_eq!(status, 429, "{body}");
    let text = body["issue"][0]["diagnostics"].as_str().unwrap_or("");
    assert!(
        text.contains("You have viewed 5 different patients' records within an hour")
            && text.contains("Garden House Hospice Care on 01707 000000"),
        "{text}"
    );
    assert_eq!(body["issue"][0]["code"], "throttled");
    // A patient already viewed can still be seen.
    let (status, _) = t.everything("hospice.ali", &others[0]).await;
    assert_eq!(status, 200);
    // The refusal is in the audit trail.
    let (status, refusals) = t
        .get(
            "po.wright",
            &format!(
                "/fhir/AuditEvent?agent=hospice.ali&patient={}&outcome=deny",
                others[3]
            ),
        )
        .await;
    assert_eq!(status, 200, "{refusals}");
    assert!(
        refusals["entry"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| {
                e["resource"]["entity"]
                    .to_string()
                    .contains("too-many-patients")
            })),
        "{refusals}"
    );

    // 5. Out of hours: a GP view is flagged; the same at the acute trust (an emergency setting)
    //    is not.
    let gp_patient = t.patient("all_four_sources", 0);
    t.give_permission("gp.patel", &gp_patient).await;
    let (status, _) = t.everything("gp.patel", &gp_patient).await;
    assert_eq!(status, 200);
    let (status, body) = t
        .emergency_access("ae.okafor", &gp_patient, "Brought in unresponsive at night")
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = t.everything("ae.okafor", &gp_patient).await;
    assert_eq!(status, 200);

    // Every flag is a case in the review queue, with its evidence.
    let po = ctx_of(&t, "po.wright");
    let queue = g
        .review_queue(&po, &mcr_gateway::ReviewFilter::default())
        .await
        .expect("queue");
    let flags: Vec<(String, String, String)> = queue
        .items
        .iter()
        .filter(|i| i.kind == "anomaly-flag")
        .map(|i| {
            (
                i.user_id.clone(),
                i.reason_code.clone().unwrap_or_default(),
                i.reason.clone().unwrap_or_default(),
            )
        })
        .collect();
    let has = |user: &str, rule: &str| flags.iter().any(|(u, r, _)| u == user && r == rule);
    assert!(has("hospice.ali", "same-family-name"), "{flags:?}");
    assert!(has("hospice.ali", "protected-person"), "{flags:?}");
    assert!(has("hospice.ali", "many-patients"), "{flags:?}");
    assert!(has("hospice.ali", "too-many-patients"), "{flags:?}");
    assert!(has("gp.patel", "out-of-hours"), "{flags:?}");
    assert!(
        !flags.iter().any(|(u, _, _)| u == "ae.okafor"),
        "the acute trust is exempt from working hours: {flags:?}"
    );
    assert_eq!(
        flags
            .iter()
            .filter(|(u, r, _)| u == "hospice.ali" && r == "many-patients")
            .count(),
        1,
        "one flag per user, rule and window: {flags:?}"
    );
    let many = flags
        .iter()
        .find(|(_, r, _)| r == "many-patients")
        .map(|f| f.2.clone())
        .unwrap_or_default();
    assert!(
        many.starts_with("Viewed 4 different patients within an hour (flagged above 3"),
        "{many}"
    );

    // The privacy officer's page shows them in words, and a flag is reviewed like any case.
    let po_page = t.sign_in("po.wright").await;
    let page = po_page
        .http
        .get(t.url("/app/review"))
        .header("cookie", &po_page.cookie)
        .send()
        .await
        .expect("GET /app/review")
        .text()
        .await
        .expect("page");
    for words in [
        "Unusual view",
        "Evidence",
        "Many patients in a short time: Viewed 4 different patients within an hour",
        "Patient on the protected person list: The patient is on the protected person list (staff).",
        "Patient with the user&#x27;s own family name",
        "View outside working hours: Viewed at",
    ] {
        assert!(page.contains(words), "the review page says {words:?}");
    }
    let seq = queue
        .items
        .iter()
        .find(|i| i.kind == "anomaly-flag" && i.reason_code.as_deref() == Some("protected-person"))
        .map(|i| i.seq)
        .expect("the protected person's flag");
    g.record_review(
        &po,
        seq,
        mcr_gateway::ReviewOutcome::Appropriate,
        "The nurse was admitted to the hospice as a patient.",
    )
    .await
    .expect("a flag is reviewed like any case");

    // Every emergency access is told to privacy officers the same way, at once; the words the
    // doctor typed stay in the audit trail (they may say something about the patient).
    g.emergency_access(
        &ctx_of(&t, "ae.okafor"),
        &mcr_gateway::EmergencyRequest {
            nhs_number: nhs(&gp_patient),
            reason_code: "unconscious".into(),
            reason_text: "Found collapsed at the bus station".into(),
        },
    )
    .await
    .expect("emergency access");

    // Privacy officers are told: the flags arrive by email (batched, naming no patient) and by
    // the signed webhook (after one refused delivery, retried).
    let raised = flags.len() + 1;
    let deadline = Instant::now() + Duration::from_secs(40);
    let (mut mail, mut hooks) = (Vec::new(), Vec::new());
    while Instant::now() < deadline {
        mail = mails(&smtp.maildir);
        hooks = received.lock().expect("lock").good.clone();
        let listed = |bodies: &[Value]| -> usize {
            bodies
                .iter()
                .map(|b| b["flags"].as_array().map_or(0, Vec::len))
                .sum()
        };
        let mailed: usize = mail
            .iter()
            .filter_map(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("Subject: My Care Record: "))
                    .and_then(|s| s.split(' ').next())
                    .and_then(|n| n.parse::<usize>().ok())
            })
            .sum();
        if listed(&hooks) >= raised && mailed >= raised {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        !mail.is_empty() && mail.len() <= 3,
        "{raised} flags in one to three emails, not one each: {} message(s)",
        mail.len()
    );
    for m in &mail {
        assert!(m.contains("see the review queue"), "{m}");
        assert!(m.contains("/app/review"), "{m}");
        for nhs in [&namesake, &staff_member, &gp_patient] {
            assert!(!m.contains(nhs.as_str()), "no NHS number in email: {m}");
        }
        assert!(!m.contains("Nurse on the hospice ward"), "{m}");
        assert!(!m.contains("bus station"), "{m}");
    }
    assert!(
        mail.iter().any(|m| m.contains("Emergency access declared")),
        "the emergency access is in an email"
    );
    assert!(
        mail.iter().any(|m| m.contains("Dr Sara Ali (hospice.ali)")),
        "the user is named"
    );
    let (bad, calls) = {
        let seen = received.lock().expect("lock");
        (seen.bad, seen.calls)
    };
    assert_eq!(bad, 0, "every webhook delivery was signed correctly");
    assert!(calls >= 2, "the refused delivery was retried");
    let listed: Vec<&Value> = hooks
        .iter()
        .flat_map(|b| b["flags"].as_array().into_iter().flatten())
        .collect();
    assert!(
        listed.len() >= raised,
        "every flag reached the webhook: {hooks:?}"
    );
    assert!(
        hooks.len() <= 3,
        "batched: {} webhook messages",
        hooks.len()
    );
    assert!(listed
        .iter()
        .any(|f| f["rule"] == "many-patients" && f["user_id"] == "hospice.ali" && f["count"] == 4));
    assert!(listed.iter().any(|f| f["rule"] == "emergency-access"
        && f["user_id"] == "ae.okafor"
        && f["evidence"]
            .as_str()
            .is_some_and(|e| e.contains("unconscious"))));
    let body = serde_json::to_string(&hooks).expect("json");
    assert!(
        !body.contains(staff_member.as_str()) && !body.contains(gp_patient.as_str()),
        "no NHS number in the webhook"
    );
    assert!(!body.contains("bus station"), "no words typed by staff");

    // And the counts are in /metrics.
    let metrics = t
        .http
        .get(t.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for series in [
        "mcr_watch_flags_total{rule=\"many-patients\"} 1",
        "mcr_watch_flags_total{rule=\"too-many-patients\"} 1",
        "mcr_watch_notifications_total{channel=\"webhook\",outcome=\"retried\"} 1",
        "mcr_watch_notifications_total{channel=\"email\",outcome=\"sent\"}",
    ] {
        assert!(metrics.contains(series), "missing {series}");
    }
    t.demo.stop().await;
}
