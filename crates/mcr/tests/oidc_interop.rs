//! Interoperability: the gateway (`mcr serve`) signs a user in against an OpenID provider this
//! project did not write, the `oidc-provider` package from npm (tests/oidc-interop, installed
//! with `npm ci` when missing; the test fails, never skips, if it cannot be). Authorization code
//! flow with PKCE S256, client_secret_basic, an RS256-signed ID token with custom claims.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncBufReadExt as _;

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc-interop")
}

/// `npm ci` once if the provider is not installed yet.
fn ensure_installed(dir: &Path) {
    if dir.join("node_modules/oidc-provider/package.json").exists() {
        return;
    }
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .expect("npm must be installed to run the OpenID Connect interoperability test (apt-get install npm)");
    assert!(status.success(), "npm ci in {} failed", dir.display());
}

async fn first_line_with(child: &mut tokio::process::Child, prefix: &str) -> String {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let prefix = prefix.to_owned();
    // Keep reading after the line: a closed pipe would kill the process at its next write.
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let mut tx = Some(tx);
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix(&prefix) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(rest.trim().to_owned());
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(60), rx)
        .await
        .expect("started in time")
        .expect("the process exited before saying where it listens")
}

/// Cookies by name, as a browser would keep them for one host.
#[derive(Default)]
struct Jar(BTreeMap<String, String>);

impl Jar {
    fn take(&mut self, resp: &reqwest::Response) {
        for v in resp.headers().get_all("set-cookie") {
            let Some((name, value)) = v
                .to_str()
                .expect("ascii")
                .split(';')
                .next()
                .and_then(|kv| kv.split_once('='))
            else {
                continue;
            };
            if value.is_empty() {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned()
}

#[tokio::test]
async fn the_gateway_signs_in_with_an_independent_openid_provider() {
    let dir = interop_dir();
    ensure_installed(&dir);

    // The gateway's port first: the provider must know the redirect URI.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let gateway = format!("http://127.0.0.1:{port}");
    let secret = "interop-client-secret-0123456789";
    let mut provider = tokio::process::Command::new("node")
        .arg("server.mjs")
        .current_dir(&dir)
        .env("OIDC_REDIRECT_URI", format!("{gateway}/signin/callback"))
        .env("OIDC_CLIENT_SECRET", secret)
        .env("OIDC_USER_ORG", "RWH01")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node must be installed to run the OpenID Connect interoperability test");
    let issuer = first_line_with(&mut provider, "issuer ").await;

    let tmp = tempfile::tempdir().expect("dir");
    let config = tmp.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"listen = "127.0.0.1:{port}"
data_dir = "{data}"
[auth]
issuer = "{issuer}"
client_id = "mcr-gateway"
client_secret = "{secret}"
algorithms = ["RS256"]
[[sources]]
id = "acute"
base_url = "http://127.0.0.1:9"
resource_types = ["Patient"]
organisation = {{ code = "RWH01", name = "East and North Hertfordshire NHS Trust", kind = "acute-trust", member = true }}
"#,
            data = tmp.path().join("data").display()
        ),
    )
    .expect("config");
    let mut gw = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcr"))
        .args(["serve", "--insecure-http", "--config"])
        .arg(&config)
        .env("MCR_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start mcr serve");
    let listening = first_line_with(&mut gw, "gateway listening on ").await;
    assert_eq!(listening, gateway);

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let start = http
        .post(format!("{gateway}/signin"))
        .send()
        .await
        .expect("POST /signin");
    assert_eq!(start.status(), 303);
    let mut gateway_jar = Jar::default();
    gateway_jar.take(&start);
    let mut next = location(&start);
    assert!(next.starts_with(&issuer), "{next}");
    assert!(
        next.contains("code_challenge_method=S256") && next.contains("nonce="),
        "{next}"
    );

    // Through the provider's own login and consent steps, as a browser would.
    let mut provider_jar = Jar::default();
    let mut hops = 0;
    while next.starts_with(&issuer) || next.starts_with('/') {
        hops += 1;
        assert!(hops < 15, "too many redirects at the provider");
        let url = if next.starts_with('/') {
            format!("{issuer}{next}")
        } else {
            next.clone()
        };
        let resp = http
            .get(&url)
            .header("cookie", provider_jar.header())
            .send()
            .await
            .expect("provider");
        provider_jar.take(&resp);
        assert!(
            resp.status().is_redirection(),
            "{url}: {} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
        next = location(&resp);
    }
    assert!(
        next.starts_with(&format!("{gateway}/signin/callback?")),
        "back to the gateway: {next}"
    );
    assert!(next.contains("code="), "{next}");

    let resp = http
        .get(&next)
        .header("cookie", gateway_jar.header())
        .send()
        .await
        .expect("callback");
    let status = resp.status();
    gateway_jar.take(&resp);
    assert_eq!(status, 303, "signed in: {:?}", resp.text().await);
    assert!(gateway_jar.0.contains_key("mcr_session"), "a session");
    let page = http
        .get(format!("{gateway}/app"))
        .header("cookie", gateway_jar.header())
        .send()
        .await
        .expect("app");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(
        html.contains("Dr Ida Interop"),
        "the provider's name claim is shown"
    );
    assert!(
        html.contains("East and North Hertfordshire NHS Trust"),
        "the org claim maps to the registry"
    );

    gw.kill().await.ok();
    provider.kill().await.ok();
}
