//! What the end-to-end modules share: start what `mcr demo` starts (four sources and the
//! gateway over real HTTP on port 0) in a fresh data directory and talk to it as a client
//! would, and the fixtures more than one module uses, each defined here once.

use mcr::demo::{self, Demo, DemoOptions};
use mcr_domain::NhsNumber;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The demo's A&E doctor at the acute trust.
pub const AE: &str = "ae.okafor";

/// An NHS number the test knows is valid.
pub fn nhs(s: &str) -> NhsNumber {
    NhsNumber::parse(s).expect("a valid NHS number")
}

/// A valid NHS number (modulus 11) that the demo's patient index does not hold.
pub async fn unknown_patient(t: &TestDemo) -> String {
    for i in 0..10_000u32 {
        let candidate = format!("99980{i:05}");
        if let Ok(n) = NhsNumber::parse(&candidate) {
            if t.demo
                .gateway
                .gateway
                .store()
                .patient(&n)
                .await
                .expect("index")
                .is_none()
            {
                return candidate;
            }
        }
    }
    panic!("no unknown NHS number found");
}

/// A synthetic region's sources, each served over real HTTP on its own port with
/// `behaviour`: their entries for a gateway config's `sources`, and the handles that keep
/// them running.
pub async fn serve_sources(
    region: &mcr_synth::Region,
    behaviour: &mcr_sources::Behaviour,
) -> (Vec<Value>, Vec<mcr_sources::SourceHandle>) {
    let mut sources = Vec::new();
    let mut handles = Vec::new();
    for slice in &region.sources {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind");
        let h = mcr_sources::serve(slice.clone(), listener, behaviour.clone())
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
    (sources, handles)
}

/// The GP practice of a patient every source holds, and the NHS numbers of (up to `n`, at
/// least five) patients registered there.
pub fn practice_and_patients(
    region: &mcr_synth::Region,
    n: usize,
) -> (mcr_domain::Organisation, Vec<String>) {
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
        .take(n)
        .collect();
    assert!(patients.len() >= 5, "patients at the practice");
    (practice_org, patients)
}

/// A body as JSON, or as a JSON string when it is not JSON.
fn json_or_text(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// The `mcr` binary this test run built, to run as an operator would.
pub fn mcr() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_mcr"))
}

/// Base64url without padding, as JWTs and JWKs use.
pub fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The detail code of an `OperationOutcome`'s first issue (why a request was refused).
pub fn deny_code(body: &Value) -> String {
    body["issue"][0]["details"]["coding"][0]["code"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// A FHIR `Consent` of our `category` for `nhs`, with string extensions named by `ext`.
pub fn consent(category: &str, nhs: &str, provision: &str, ext: &[(&str, &str)]) -> Value {
    json!({
        "resourceType": "Consent",
        "category": [{"coding": [{"system": "https://mycarerecord.example/fhir/CodeSystem/consent-category", "code": category}]}],
        "patient": {"reference": format!("Patient/{nhs}")},
        "provision": {"type": provision},
        "extension": ext.iter().map(|(k, v)| json!({"url": format!("https://mycarerecord.example/fhir/StructureDefinition/{k}"), "valueString": v})).collect::<Vec<_>>()
    })
}

/// The decision `/access/explain` gives `user` for `nhs`, and the relationship rule's sentence.
pub async fn relationship(t: &TestDemo, user: &str, nhs: &str) -> (String, String) {
    let (status, body) = t.get(user, &format!("/access/explain?patient={nhs}")).await;
    assert_eq!(status, 200, "{body}");
    let step = body["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["rule"] == "relationship")
        .map(|s| s["sentence"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    (
        body["decision"].as_str().unwrap_or_default().to_owned(),
        step,
    )
}

/// `tests/oidc-interop`: the npm OpenID providers (`oidc-provider`) the sign-in tests run.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc-interop")
}

/// `npm ci` in `dir` unless every package in `packages` is installed there; `needed_by` says
/// which test needs them when npm is missing. Fails, never skips.
///
/// One test at a time: `npm ci` first deletes `node_modules`, so a test checking for its
/// packages while another installs them would find them gone.
pub fn npm_ci_once(dir: &Path, packages: &[&str], needed_by: &str) {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALLING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if packages.iter().all(|p| {
        dir.join("node_modules")
            .join(p)
            .join("package.json")
            .exists()
    }) {
        return;
    }
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .unwrap_or_else(|e| {
            panic!("npm must be installed to run {needed_by} (apt-get install npm): {e}")
        });
    assert!(status.success(), "npm ci in {} failed", dir.display());
}

pub const PATIENTS: usize = 2_000;

pub struct TestDemo {
    pub demo: Demo,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

pub async fn start() -> TestDemo {
    start_with(None, 1_500).await
}

pub async fn start_with(store: Option<String>, deadline_ms: u64) -> TestDemo {
    start_opts(DemoOptions {
        store,
        deadline_ms,
        ..test_options()
    })
    .await
}

/// What the tests start: port 0, [`PATIENTS`] patients, 1.5 s deadline (the data directory
/// is set by [`start_opts`]).
pub fn test_options() -> DemoOptions {
    DemoOptions {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: std::path::PathBuf::new(),
        seed: 2017,
        patients: PATIENTS,
        deadline_ms: 1_500,
        store: None,
        insecure_http: false,
        source_batch: true,
        trusted_proxy_hops: 0,
        refusal_flush_seconds: 60,
        watch: Default::default(),
        gp_connect: true,
        system_clients: Vec::new(),
        records_as_of: None,
    }
}

/// Start a demo with `opts`, in a fresh data directory.
pub async fn start_opts(mut opts: DemoOptions) -> TestDemo {
    let dir = tempfile::tempdir().expect("temp dir");
    opts.data_dir = dir.path().to_path_buf();
    let demo = demo::start(&opts).await.expect("demo starts");
    let http = trusting_client(&demo)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    TestDemo {
        demo,
        http,
        _dir: dir,
    }
}

/// A client builder that trusts the demo's regional CA (and nothing else), as
/// `curl --cacert DATA_DIR/pki/ca.pem` does: the gateway serves HTTPS.
pub fn trusting_client(demo: &Demo) -> reqwest::ClientBuilder {
    let ca = demo
        .info
        .ca_cert
        .as_ref()
        .expect("demo.json names the CA certificate");
    let pem = std::fs::read(ca).expect("the demo CA certificate");
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("a PEM certificate"))
}

impl TestDemo {
    /// How many requests the demo's sources have answered, all together.
    pub fn requests_served(&self) -> u64 {
        self.demo
            .sources
            .iter()
            .map(mcr_sources::SourceHandle::requests_served)
            .sum()
    }

    /// The demo's data directory (a fresh temporary one).
    pub fn data_dir(&self) -> &Path {
        self._dir.path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.demo.info.gateway_url, path)
    }

    pub fn token(&self, user: &str) -> String {
        self.demo.token(user).expect("token")
    }

    pub fn patient(&self, case: &str, i: usize) -> String {
        self.demo.info.patients[case][i].clone()
    }

    pub async fn get(&self, user: &str, path: &str) -> (u16, Value) {
        self.get_with(&self.token(user), path).await
    }

    /// A GET with the bearer `token`: the status, and the body as JSON (as a string when it is
    /// not JSON).
    pub async fn get_with(&self, token: &str, path: &str) -> (u16, Value) {
        let (status, text) = self.get_text_with(token, path).await;
        (status, json_or_text(text))
    }

    pub async fn get_text(&self, user: &str, path: &str) -> (u16, String) {
        self.get_text_with(&self.token(user), path).await
    }

    async fn get_text_with(&self, token: &str, path: &str) -> (u16, String) {
        let resp = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("body"))
    }

    pub async fn post(&self, user: &str, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .bearer_auth(self.token(user))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, json_or_text(resp.text().await.expect("body")))
    }

    /// Every record of the demo's audit trail, oldest first.
    pub async fn audit_trail(&self) -> Vec<mcr_store::AuditRow> {
        self.demo
            .gateway
            .gateway
            .store()
            .audit_rows(0, 100_000)
            .await
            .expect("audit rows")
    }

    /// Record "the patient gave permission" for `user`'s organisation.
    pub async fn give_permission(&self, user: &str, nhs: &str) {
        let (status, body) = self
            .post(user, "/fhir/Consent", &permission(nhs, "permit", "patient"))
            .await;
        assert_eq!(status, 201, "permission recorded: {body}");
    }

    /// Record "the patient refused permission" for `user`'s organisation.
    pub async fn refuse_permission(&self, user: &str, nhs: &str) {
        let (status, body) = self
            .post(user, "/fhir/Consent", &permission(nhs, "deny", "patient"))
            .await;
        assert_eq!(status, 201, "refusal recorded: {body}");
    }

    /// `$emergency-access` to `nhs`'s record by `user`: the patient is unconscious, `text`
    /// says more.
    pub async fn emergency_access(&self, user: &str, nhs: &str, text: &str) -> (u16, Value) {
        let params = json!({"resourceType": "Parameters", "parameter": [
            {"name": "reason", "valueCode": "unconscious"},
            {"name": "text", "valueString": text}]});
        self.post(
            user,
            &format!("/fhir/Patient/{nhs}/$emergency-access"),
            &params,
        )
        .await
    }

    pub async fn everything(&self, user: &str, nhs: &str) -> (u16, Value) {
        self.get(user, &format!("/fhir/Patient/{nhs}/$everything"))
            .await
    }
}

pub fn permission(nhs: &str, provision: &str, given_by: &str) -> Value {
    json!({
        "resourceType": "Consent",
        "status": "active",
        "category": [{"coding": [{"system": "https://mycarerecord.example/fhir/CodeSystem/consent-category", "code": "permission-to-view"}]}],
        "patient": {"reference": format!("Patient/{nhs}")},
        "provision": {"type": provision},
        "extension": [{"url": "https://mycarerecord.example/fhir/StructureDefinition/given-by", "valueCode": given_by}]
    })
}

/// The OperationOutcome entry of a `$everything` Bundle.
pub fn outcome(bundle: &Value) -> &Value {
    bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "OperationOutcome")
        .expect("an OperationOutcome entry")
}

/// Detail codes of an OperationOutcome's issues, with their expression.
pub fn issue_codes(oo: &Value) -> Vec<(String, String)> {
    oo["issue"]
        .as_array()
        .expect("issues")
        .iter()
        .map(|i| {
            (
                i["details"]["coding"][0]["code"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                i["expression"][0].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

pub fn resources<'a>(bundle: &'a Value, ty: &str) -> Vec<&'a Value> {
    bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == ty)
        .collect()
}

/// ODS codes named as agents across all Provenances.
pub fn provenance_orgs(bundle: &Value) -> std::collections::BTreeSet<String> {
    resources(bundle, "Provenance")
        .iter()
        .flat_map(|p| p["agent"].as_array().expect("agents").iter())
        .map(|a| {
            a["who"]["identifier"]["value"]
                .as_str()
                .expect("ods")
                .to_owned()
        })
        .collect()
}

/// A browser signed in to the pages through the OpenID Connect flow with the demo identity
/// provider: its session cookie and the session's CSRF token for forms.
pub struct SignedIn {
    pub http: reqwest::Client,
    pub cookie: String,
    pub csrf: String,
}

impl SignedIn {
    /// The HTML of the page at `url`, as this browser sees it.
    pub async fn html(&self, url: String) -> String {
        get_with_cookie(&self.http, url, &self.cookie)
            .await
            .text()
            .await
            .expect("html")
    }
}

/// The first `Set-Cookie` value named `name` (`name=value` only).
pub fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

pub fn location(resp: &reqwest::Response) -> String {
    resp.headers()["location"]
        .to_str()
        .expect("a Location")
        .to_owned()
}

/// Where the gateway's sign-in sends the browser: the provider's authorize URL, and the
/// `mcr_login` cookie that ties the sign-in to this browser.
pub async fn start_sign_in(t: &TestDemo, http: &reqwest::Client) -> (url::Url, String) {
    let resp = http
        .post(t.url("/signin"))
        .send()
        .await
        .expect("POST /signin");
    assert_eq!(resp.status(), 303, "sign-in goes to the provider");
    let login = set_cookie(&resp, "mcr_login").expect("an mcr_login cookie");
    let login = login.split(';').next().expect("cookie").to_owned();
    (
        url::Url::parse(&location(&resp)).expect("authorize URL"),
        login,
    )
}

/// At the provider's sign-in page, choose `user`; returns where the provider sends the browser.
pub async fn choose_user(
    http: &reqwest::Client,
    authorize: &url::Url,
    user: &str,
) -> reqwest::Response {
    let page = http
        .get(authorize.clone())
        .send()
        .await
        .expect("authorize page");
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .expect("page")
            .contains(&format!("value=\"{user}\"")),
        "{user} is offered"
    );
    let mut form: Vec<(String, String)> = authorize
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    form.push(("user".into(), user.into()));
    let mut post_url = authorize.clone();
    post_url.set_query(None);
    http.post(post_url)
        .form(&form)
        .send()
        .await
        .expect("POST authorize")
}

/// A sign-in as far as the provider's answer: started at the gateway, `user` chosen at the
/// provider. Returns the callback URL the provider sends the browser back to (with its `code`
/// and `state`) and the sign-in's `mcr_login` cookie.
pub async fn provider_answer(
    t: &TestDemo,
    http: &reqwest::Client,
    user: &str,
) -> (url::Url, String) {
    let (authorize, login) = start_sign_in(t, http).await;
    let back = location(&choose_user(http, &authorize, user).await);
    (url::Url::parse(&back).expect("a callback URL"), login)
}

/// The value of query parameter `name` in `url`.
pub fn query_param(url: &url::Url, name: &str) -> String {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("{name} in {url}"))
        .1
        .into_owned()
}

/// `callback` with only `code` and `state` in its query: a return from the provider as a
/// forger or a replayer would make it.
pub fn with_code_and_state(callback: &url::Url, code: &str, state: &str) -> url::Url {
    let mut url = callback.clone();
    url.query_pairs_mut()
        .clear()
        .append_pair("code", code)
        .append_pair("state", state);
    url
}

/// `GET url` with `cookie` sent, as the browser holding it would.
pub async fn get_with_cookie(
    http: &reqwest::Client,
    url: impl reqwest::IntoUrl,
    cookie: &str,
) -> reqwest::Response {
    http.get(url)
        .header("cookie", cookie)
        .send()
        .await
        .expect("GET with a cookie")
}

/// Where a browser's return to the gateway from a provider landed: the answer's status,
/// `Location` (empty when none), body, and the browser's cookies after it.
pub struct Landing {
    pub status: u16,
    pub location: String,
    pub body: String,
    pub jar: Jar,
}

/// The browser holding `jar` comes back to the gateway at `url` (a sign-in's callback).
pub async fn land(http: &reqwest::Client, url: impl reqwest::IntoUrl, mut jar: Jar) -> Landing {
    let resp = get_with_cookie(http, url, &jar.header()).await;
    jar.take(&resp);
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .map(|l| l.to_str().expect("ascii").to_owned())
        .unwrap_or_default();
    let body = resp.text().await.expect("body");
    Landing {
        status,
        location,
        body,
        jar,
    }
}

impl TestDemo {
    /// A client builder trusting this demo's CA.
    pub fn browser_builder(&self) -> reqwest::ClientBuilder {
        trusting_client(&self.demo)
    }

    /// A client that, like a test of a browser, follows no redirects by itself.
    pub fn browser(&self) -> reqwest::Client {
        trusting_client(&self.demo)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }

    /// A sign-in through the provider that the gateway refuses: its status and page.
    pub async fn refused_sign_in(&self, user: &str) -> (u16, String) {
        let http = self.browser();
        let (authorize, login) = start_sign_in(self, &http).await;
        let back = choose_user(&http, &authorize, user).await;
        assert_eq!(back.status(), 303, "the provider sends the browser back");
        let resp = get_with_cookie(&http, location(&back), &login).await;
        assert!(
            set_cookie(&resp, "mcr_session").is_none(),
            "no session for a refused sign-in"
        );
        (resp.status().as_u16(), resp.text().await.expect("page"))
    }

    /// Sign in to the pages as a demo user, through the provider, like a browser would.
    pub async fn sign_in(&self, user: &str) -> SignedIn {
        let http = self.browser();
        let (authorize, login) = start_sign_in(self, &http).await;
        let back = choose_user(&http, &authorize, user).await;
        assert_eq!(back.status(), 303, "the provider sends the browser back");
        let callback = location(&back);
        assert!(
            callback.starts_with(&self.url("/signin/callback?")),
            "{callback}"
        );
        let resp = get_with_cookie(&http, &callback, &login).await;
        assert_eq!(resp.status(), 303, "signed in: {:?}", resp.headers());
        assert_eq!(location(&resp), "/app");
        let cookie = set_cookie(&resp, "mcr_session").expect("a session cookie");
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
            "{cookie}"
        );
        let mut cookie = cookie.split(';').next().expect("cookie").to_owned();
        let mut page = get_with_cookie(&http, self.url("/app"), &cookie).await;
        if page.status() == 303 && location(&page) == "/signin/role" {
            // Several NHS CIS2 role profiles: work in the first offered.
            let html = get_with_cookie(&http, self.url("/signin/role"), &cookie)
                .await
                .text()
                .await
                .expect("page");
            let field = |name: &str| {
                html.split(name)
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .expect("the role page's field")
                    .to_owned()
            };
            let (csrf, profile) = (
                field("name=\"csrf\" value=\""),
                field("name=\"profile\" type=\"radio\" value=\""),
            );
            let chosen = http
                .post(self.url("/signin/role"))
                .header("cookie", &cookie)
                .form(&[("csrf", csrf), ("profile", profile)])
                .send()
                .await
                .expect("POST /signin/role");
            assert_eq!(chosen.status(), 303, "a role chosen");
            cookie = set_cookie(&chosen, "mcr_session")
                .expect("a new session")
                .split(';')
                .next()
                .expect("cookie")
                .to_owned();
            page = get_with_cookie(&http, self.url("/app"), &cookie).await;
        }
        assert_eq!(page.status(), 200);
        let html = page.text().await.expect("page");
        let csrf = html
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the page's forms carry a CSRF token")
            .to_owned();
        SignedIn { http, cookie, csrf }
    }
}

/// The lines a process prints, by prefix, as they come.
pub async fn lines_with(child: &mut tokio::process::Child, prefixes: &[&str]) -> Vec<String> {
    lines_within(child, prefixes, Duration::from_secs(60))
        .await
        .expect("started in time")
}

/// Start `make()`'s process (its stdout piped, killed on drop) and wait for its lines
/// `prefixes` ([`lines_within`]). A process that has said nothing within 45 s gets a second
/// start, said on stderr: once in a loaded full run, a node server printed nothing for a
/// minute after loading its packages while others started beside it answered at once.
pub async fn start_saying(
    make: impl Fn() -> tokio::process::Command,
    prefixes: &[&str],
    what: &str,
) -> (tokio::process::Child, Vec<String>) {
    for attempt in 1..=2 {
        let mut command = make();
        command
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("{what} cannot be started: {e}"));
        if let Some(lines) = lines_within(&mut child, prefixes, Duration::from_secs(45)).await {
            return (child, lines);
        }
        eprintln!("{what} did not say where it listens within 45 s (start {attempt} of 2)");
    }
    panic!("{what} did not start twice");
}

/// [`lines_with`], or `None` if they have not all come `within`.
pub async fn lines_within(
    child: &mut tokio::process::Child,
    prefixes: &[&str],
    within: Duration,
) -> Option<Vec<String>> {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let prefixes: Vec<String> = prefixes.iter().map(|p| (*p).to_owned()).collect();
    let want = prefixes.len();
    // Keep reading after the lines: a closed pipe would kill the process at its next write.
    tokio::spawn(async move {
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        while let Ok(Some(line)) = lines.next_line().await {
            for (i, p) in prefixes.iter().enumerate() {
                if let Some(rest) = line.strip_prefix(p.as_str()) {
                    let _ = tx.send((i, rest.trim().to_owned()));
                }
            }
        }
    });
    let mut out = vec![String::new(); want];
    let deadline = tokio::time::Instant::now() + within;
    for _ in 0..want {
        let (i, v) = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .ok()?
            .expect("the process exited before saying where it listens");
        out[i] = v;
    }
    Some(out)
}

/// Cookies by name, as a browser keeps them for one site.
#[derive(Default, Clone)]
pub struct Jar(pub std::collections::BTreeMap<String, String>);

impl Jar {
    pub fn take(&mut self, resp: &reqwest::Response) {
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

    pub fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The rest of the first line a process prints that starts with `prefix`.
pub async fn first_line_with(child: &mut tokio::process::Child, prefix: &str) -> String {
    lines_with(child, &[prefix]).await.remove(0)
}

/// As [`first_line_with`], but `None` if the process has not printed it within `within`.
pub async fn first_line_within(
    child: &mut tokio::process::Child,
    prefix: &str,
    within: Duration,
) -> Option<String> {
    tokio::time::timeout(within, first_line_with(child, prefix))
        .await
        .ok()
}

/// The config of a gateway tested against an independent provider: `gateway.toml` in `dir`
/// listening on `port`, signing staff in at `issuer` as `mcr-gateway` with `secret` (RS256),
/// then `more` (more `[auth]` keys, then tables), and one acute trust's source that is never
/// reached; and its data directory.
pub fn interop_config(
    dir: &Path,
    port: u16,
    issuer: &str,
    secret: &str,
    more: &str,
) -> (PathBuf, PathBuf) {
    let config = dir.join("gateway.toml");
    let data = dir.join("data");
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
{more}[[sources]]
id = "acute"
base_url = "http://127.0.0.1:9"
resource_types = ["Patient"]
organisation = {{ code = "RWH01", name = "East and North Hertfordshire NHS Trust", kind = "acute-trust", member = true }}
"#,
            data = data.display()
        ),
    )
    .expect("config");
    (config, data)
}

/// A client that, like a test of a browser, follows no redirects by itself.
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// `mcr serve` over plain HTTP with `config`, listening where the config says: the process,
/// and the URL it says it listens at (within a minute).
pub async fn serve_config(config: &Path) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcr"))
        .args(["serve", "--insecure-http", "--config"])
        .arg(config)
        .env("MCR_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
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

/// The record of `nhs` (`$everything`) asked of the gateway at `url` with the bearer `token`,
/// under the correlation id `id`.
pub async fn view_with_id(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    nhs: &str,
    id: &str,
) -> reqwest::Result<reqwest::Response> {
    http.get(format!("{url}/fhir/Patient/{nhs}/$everything"))
        .bearer_auth(token)
        .header("x-request-id", id)
        .send()
        .await
}

/// The correlation ids of every `view-record` record in the audit trail.
pub async fn audited_views(store: &dyn mcr_store::Store) -> std::collections::HashSet<String> {
    let mut audited = std::collections::HashSet::new();
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
    audited
}

/// `mcr serve --insecure-http` on `config`, logging at `log` to `stderr`, once it says it
/// listens at `gateway` (killed when dropped).
pub async fn serve_insecure(
    config: &Path,
    log: &str,
    stderr: impl Into<std::process::Stdio>,
    gateway: &str,
) -> tokio::process::Child {
    let mut gw = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcr"))
        .args(["serve", "--insecure-http", "--config"])
        .arg(config)
        .env("MCR_LOG", log)
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("start mcr serve");
    assert_eq!(
        first_line_with(&mut gw, "gateway listening on ").await,
        gateway
    );
    gw
}

/// A member of staff signed in to the pages: their cookie and the form token.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: String,
    csrf: String,
}

/// `user` signed in to the demo's pages.
pub async fn sign_in(t: &TestDemo, user: &str) -> Browser {
    let s = t.sign_in(user).await;
    Browser {
        http: s.http,
        base: t.demo.info.gateway_url.clone(),
        cookie: s.cookie,
        csrf: s.csrf,
    }
}

impl Browser {
    pub async fn get(&self, path: &str) -> (u16, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .expect("test step");
        let s = resp.status().as_u16();
        (s, resp.text().await.expect("test step"))
    }

    async fn send_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .form(&[form, &[("csrf", self.csrf.as_str())]].concat())
            .send()
            .await
            .expect("test step")
    }

    /// Posts the form (with the form token): the status and the page.
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let resp = self.send_form(path, form).await;
        let s = resp.status().as_u16();
        (s, resp.text().await.expect("test step"))
    }

    /// Posts the form: the status and the `location` of a redirect (or the page).
    pub async fn post_then(&self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let resp = self.send_form(path, form).await;
        let s = resp.status().as_u16();
        match resp.headers().get("location").and_then(|l| l.to_str().ok()) {
            Some(l) => (s, l.to_owned()),
            None => (s, resp.text().await.expect("test step")),
        }
    }
}
