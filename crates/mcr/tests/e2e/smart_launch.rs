//! SMART App Launch against parts this project did not write: the host system's authorization
//! server is the `oidc-provider` package from npm (tests/oidc-interop/smart-host.mjs: SMART's
//! `launch` and `patient` context added through its extraParams and a token-response hook,
//! with a FHIR `Patient` endpoint beside it), and so is the region's identity provider
//! (tests/oidc-interop/server.mjs). `mcr serve` is the SMART app. Installed with `npm ci` when
//! missing; the test fails, never skips, if it cannot be.
//!
//! The launch is driven as a browser would (redirects followed by hand, cookies per site).
//! Bad input: an unknown `iss`, a replayed and an expired `launch`, a patient context that
//! does not parse (not a FHIR id; no valid NHS number), a host user who is not the region's,
//! a state that does not match; each refused with its sentence and audited.

use crate::helpers::{
    interop_config, interop_dir, no_redirects, npm_ci_once, serve_insecure, start_saying, Jar,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

/// A browser: one cookie jar per site, redirects followed by hand.
#[derive(Default, Clone)]
struct Browser {
    jars: BTreeMap<String, Jar>,
    /// Every URL visited, in order.
    visited: Vec<String>,
}

/// Where a journey ended: the last response's status, URL and body.
struct End {
    status: u16,
    url: String,
    body: String,
}

impl Browser {
    async fn go(&mut self, http: &reqwest::Client, start: &str) -> End {
        let mut url = start.to_owned();
        for _ in 0..20 {
            self.visited.push(url.clone());
            let u = url::Url::parse(&url).expect("url");
            let site = format!("{}:{}", u.host_str().unwrap_or(""), u.port().unwrap_or(0));
            let jar = self.jars.entry(site).or_default();
            let resp = http
                .get(&url)
                .header("cookie", jar.header())
                .send()
                .await
                .expect("request");
            jar.take(&resp);
            if resp.status().is_redirection() {
                let to = resp.headers()["location"].to_str().expect("location");
                url = u.join(to).expect("relative location").to_string();
                continue;
            }
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            return End { status, url, body };
        }
        panic!("too many redirects from {start}");
    }
}

struct World {
    http: reqwest::Client,
    gateway: String,
    host: String,
    fhir: String,
    region: String,
    data: PathBuf,
    _procs: Vec<tokio::process::Child>,
    _tmp: tempfile::TempDir,
}

impl World {
    async fn start() -> Self {
        let dir = interop_dir();
        npm_ci_once(&dir, &["oidc-provider"], "the SMART launch test");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let gateway = format!("http://127.0.0.1:{port}");
        let region_secret = "region-client-secret-0123456789";
        let host_secret = "host-client-secret-0123456789";
        let (region, mut said) = start_saying(
            || {
                let mut region = tokio::process::Command::new("node");
                region
                    .arg("server.mjs")
                    .current_dir(&dir)
                    .env(
                        "OIDC_REDIRECT_URI",
                        format!("{gateway}/signin/callback {gateway}/launch/signin/callback"),
                    )
                    .env("OIDC_CLIENT_SECRET", region_secret)
                    .env("OIDC_USER_ORG", "RWH01")
                    .stderr(Stdio::null());
                region
            },
            &["issuer "],
            "the region's OpenID provider (node server.mjs)",
        )
        .await;
        let region_issuer = said.remove(0);
        let (host, mut got) = start_saying(
            || {
                let mut host = tokio::process::Command::new("node");
                host.arg("smart-host.mjs")
                    .current_dir(&dir)
                    .env("SMART_REDIRECT_URI", format!("{gateway}/launch/callback"))
                    .env("SMART_CLIENT_SECRET", host_secret)
                    .env(
                        "SMART_PATIENTS",
                        r#"{"p-known":"9434765919","p-badnhs":"9434765918"}"#,
                    )
                    .env("SMART_STANDALONE_PATIENT", "p-known")
                    .stderr(Stdio::null());
                host
            },
            &["issuer ", "fhir "],
            "the SMART host (node smart-host.mjs)",
        )
        .await;
        let (host_issuer, fhir) = (got.remove(0), got.remove(0));

        let tmp = tempfile::tempdir().expect("dir");
        let (config, data) = interop_config(
            tmp.path(),
            port,
            &region_issuer,
            region_secret,
            &format!(
                r#"[[smart.hosts]]
name = "Interop EHR"
iss = "{fhir}"
client_id = "mcr-viewer"
client_secret = "{host_secret}"
algorithms = ["RS256"]
user_match = {{ host_claim = "sub", region_claim = "sub" }}
"#
            ),
        );
        let gw = serve_insecure(&config, "warn", Stdio::inherit(), &gateway).await;
        let http = no_redirects();
        World {
            http,
            gateway,
            host: host_issuer,
            fhir,
            region: region_issuer,
            data,
            _procs: vec![region, host, gw],
            _tmp: tmp,
        }
    }

    /// The host hands out a launch for `patient`, its user `user`, valid `ttl` seconds.
    async fn mint(&self, patient: &str, user: &str, ttl: i64) -> String {
        let v: serde_json::Value = self
            .http
            .post(format!("{}/_launch", self.host))
            .json(&serde_json::json!({"patient": patient, "user": user, "ttl": ttl}))
            .send()
            .await
            .expect("mint")
            .json()
            .await
            .expect("json");
        v["launch"].as_str().expect("launch").to_owned()
    }

    fn launch_url(&self, iss: &str, launch: &str) -> String {
        let mut u = url::Url::parse(&format!("{}/launch", self.gateway)).expect("url");
        u.query_pairs_mut()
            .append_pair("iss", iss)
            .append_pair("launch", launch);
        u.into()
    }

    /// Every refused launch in the audit trail: (user, basis), read from the gateway's SQLite
    /// file.
    async fn refused_launches(&self) -> Vec<(String, String)> {
        use sqlx::Connection as _;
        let url = format!("sqlite://{}", self.data.join("mcr.db").display());
        let mut db = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("open the store");
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT user_id, payload FROM audit_log WHERE action = 'authenticate:launch' AND outcome = 'deny' ORDER BY seq",
        )
        .fetch_all(&mut db)
        .await
        .expect("audit rows");
        rows.into_iter()
            .map(|(user, payload)| {
                let v: serde_json::Value = serde_json::from_str(&payload).expect("payload");
                (user, v["basis"].as_str().unwrap_or_default().to_owned())
            })
            .collect()
    }
}

#[tokio::test]
async fn a_host_system_launches_the_viewer_and_bad_launches_are_refused() {
    let w = World::start().await;

    // The clinician signed in to the region's provider when they opened their own system.
    let mut b = Browser::default();
    let signin = w
        .http
        .post(format!("{}/signin", w.gateway))
        .send()
        .await
        .expect("signin");
    b.jar_of(&w.gateway).take(&signin);
    let to = signin.headers()["location"]
        .to_str()
        .expect("loc")
        .to_owned();
    let end = b.go(&w.http, &to).await;
    assert_eq!(end.status, 200, "signed in to the gateway too: {}", end.url);

    // 1. EHR launch: straight to the patient's record page, no sign-in page, no search.
    let launch = w.mint("p-known", "interop.user", 300).await;
    let mut visited_from = b.visited.len();
    let end = b.go(&w.http, &w.launch_url(&w.fhir, &launch)).await;
    let journey = &b.visited[visited_from..];
    assert!(
        end.url.ends_with("/app/patient/9434765919"),
        "opened the launched patient's record: {} {}",
        end.url,
        end.status
    );
    assert!(
        !journey
            .iter()
            .any(|u| u.contains("/signin?") || u.ends_with("/signin") || u.contains("/app?")),
        "no gateway sign-in page and no search: {journey:?}"
    );
    assert!(
        journey
            .iter()
            .any(|u| u.starts_with(&w.region) && u.contains("prompt=none")),
        "the region's sign-in was asked without a prompt: {journey:?}"
    );
    assert!(
        !journey
            .iter()
            .any(|u| u.starts_with(&w.region) && u.contains("/interaction/")),
        "single sign-on: the region's provider asked nothing: {journey:?}"
    );
    assert!(
        journey
            .iter()
            .any(|u| u.starts_with(&format!("{}/auth", w.host))
                && u.contains("launch=")
                && u.contains("code_challenge_method=S256")),
        "authorized at the host with the launch and PKCE: {journey:?}"
    );
    // The index does not hold this patient (the only source is down): said plainly, by the
    // record page's usual path (audited as any view).
    assert_eq!(end.status, 404, "{}", end.body);
    assert!(
        end.body
            .contains("no patient with that NHS number is known to My Care Record")
            || end
                .body
                .contains("No patient with that NHS number is known to My Care Record"),
        "{}",
        end.body
    );
    assert!(
        end.body.contains("Dr Ida Interop"),
        "signed in as the region's user"
    );

    // Without a session at the region's provider: the prompt-less sign-in says so, and the
    // provider's own sign-in steps run (here they answer themselves), never the gateway's page.
    let mut fresh = Browser::default();
    let cold = w.mint("p-known", "interop.user", 300).await;
    let end = fresh.go(&w.http, &w.launch_url(&w.fhir, &cold)).await;
    assert!(end.url.ends_with("/app/patient/9434765919"), "{}", end.url);
    let j = &fresh.visited;
    assert!(
        j.iter()
            .any(|u| u.contains("/launch/signin/callback?") && u.contains("error=login_required")),
        "{j:?}"
    );
    assert!(
        j.iter()
            .any(|u| u.starts_with(&w.region) && u.contains("/interaction/")),
        "{j:?}"
    );
    assert!(
        !j.iter().any(
            |u| u.starts_with(&w.gateway) && (u.ends_with("/signin") || u.contains("/signin?"))
        ),
        "{j:?}"
    );

    // 2. The same launch again: a replay.
    visited_from = b.visited.len();
    let end = b.go(&w.http, &w.launch_url(&w.fhir, &launch)).await;
    assert_eq!(end.status, 400);
    assert!(end.body.contains("has already been used"), "{}", end.body);
    assert!(
        !b.visited[visited_from..]
            .iter()
            .any(|u| u.starts_with(&w.host)),
        "a replay never reaches the host"
    );

    // 3. An unknown iss.
    let end = b
        .go(
            &w.http,
            &w.launch_url("https://ehr.elsewhere.example/fhir", "abc"),
        )
        .await;
    assert_eq!(end.status, 400);
    assert!(end.body.contains("is not one allowed to"), "{}", end.body);

    // 4. An expired launch: the host refuses it, and the gateway says so.
    let expired = w.mint("p-known", "interop.user", -1).await;
    let end = b.go(&w.http, &w.launch_url(&w.fhir, &expired)).await;
    assert_eq!(end.status, 401, "{}", end.body);
    assert!(
        end.body.contains("did not confirm this launch"),
        "{}",
        end.body
    );

    // 5. A patient context that does not parse: not a FHIR id; a Patient with no valid NHS number.
    let bad_id = w.mint("not a fhir id!", "interop.user", 300).await;
    let end = b.go(&w.http, &w.launch_url(&w.fhir, &bad_id)).await;
    assert_eq!(end.status, 400, "{}", end.body);
    assert!(
        end.body.contains("did not say which patient to open"),
        "{}",
        end.body
    );
    let bad_nhs = w.mint("p-badnhs", "interop.user", 300).await;
    let end = b.go(&w.http, &w.launch_url(&w.fhir, &bad_nhs)).await;
    assert_eq!(end.status, 400, "{}", end.body);
    assert!(end.body.contains("has no valid NHS number"), "{}", end.body);

    // 6. A host user who is not the region's user (a fresh browser at the host: another
    // person signed in to the EHR), the region's session still this clinician's.
    let mut other = b.clone();
    other.jars.retain(|site, _| !w.host.contains(site.as_str()));
    let someone = w.mint("p-known", "someone.else", 300).await;
    let end = other.go(&w.http, &w.launch_url(&w.fhir, &someone)).await;
    assert_eq!(end.status, 403, "{}", end.body);
    assert!(end.body.contains("as someone other than"), "{}", end.body);

    // 7. A state that does not match: an answer for the launch in progress, but not its own.
    let pending = w.mint("p-known", "interop.user", 300).await;
    let mut mid = b.clone();
    mid.go_until(
        &w.http,
        &w.launch_url(&w.fhir, &pending),
        &format!("{}/auth", w.host),
    )
    .await;
    let end = mid
        .go(
            &w.http,
            &format!("{}/launch/callback?code=abc&state=forged", w.gateway),
        )
        .await;
    assert_eq!(end.status, 400, "{}", end.body);
    assert!(end.body.contains("was not started here"), "{}", end.body);

    // 8. Standalone launch: the clinician starts at the gateway and picks the host; the host
    // supplies the patient.
    let page = w
        .http
        .get(format!("{}/launch/standalone", w.gateway))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("html").contains("Interop EHR"));
    let resp = w
        .http
        .post(format!("{}/launch/standalone", w.gateway))
        .form(&[("host", "0")])
        .send()
        .await
        .expect("standalone");
    assert_eq!(resp.status(), 303);
    b.jar_of(&w.gateway).take(&resp);
    let to = resp.headers()["location"].to_str().expect("loc").to_owned();
    visited_from = b.visited.len();
    let end = b.go(&w.http, &to).await;
    assert!(end.url.ends_with("/app/patient/9434765919"), "{}", end.url);
    assert!(
        !b.visited[visited_from..]
            .iter()
            .any(|u| u.contains("launch=")),
        "a standalone launch has no launch value"
    );

    // Every refusal above is in the audit trail, with its reason; those made after the region
    // said who the user is name the user.
    let refused = w.refused_launches().await;
    for (reason, user) in [
        ("launch-replayed", "anonymous"),
        ("launch-unknown-host", "anonymous"),
        ("launch-refused-by-host", "interop.user"),
        ("launch-patient-unreadable", "interop.user"),
        ("launch-user-mismatch", "interop.user"),
        ("launch-state-mismatch", "anonymous"),
    ] {
        assert!(
            refused.iter().any(|(u, r)| r == reason && u == user),
            "{reason} audited for {user}: {refused:?}"
        );
    }
}

impl Browser {
    fn jar_of(&mut self, url: &str) -> &mut Jar {
        let u = url::Url::parse(url).expect("url");
        let site = format!("{}:{}", u.host_str().unwrap_or(""), u.port().unwrap_or(0));
        self.jars.entry(site).or_default()
    }

    /// Follow redirects until the next URL starts with `stop` (not visited).
    async fn go_until(&mut self, http: &reqwest::Client, start: &str, stop: &str) {
        let mut url = start.to_owned();
        for _ in 0..20 {
            if url.starts_with(stop) {
                return;
            }
            self.visited.push(url.clone());
            let u = url::Url::parse(&url).expect("url");
            let jar = self.jar_of(&url);
            let resp = http
                .get(&url)
                .header("cookie", jar.header())
                .send()
                .await
                .expect("request");
            self.jar_of(&url).take(&resp);
            assert!(resp.status().is_redirection(), "{url}: {}", resp.status());
            let to = resp.headers()["location"].to_str().expect("location");
            url = u.join(to).expect("relative location").to_string();
        }
        panic!("never reached {stop}");
    }
}
