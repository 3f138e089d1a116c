//! Interoperability: the gateway (`mcr serve`) signs a user in against an OpenID provider this
//! project did not write, the `oidc-provider` package from npm (tests/oidc-interop, installed
//! with `npm ci` when missing; the test fails, never skips, if it cannot be). Authorization code
//! flow with PKCE S256, client_secret_basic, an RS256-signed ID token with custom claims.

use crate::helpers::{
    first_line_within, get_with_cookie, interop_config, interop_dir, land, location, no_redirects,
    npm_ci_once, serve_insecure, Jar, Landing,
};
use std::process::Stdio;
use std::time::Duration;

/// The `oidc-provider` server (`tests/oidc-interop/server.mjs`) with these settings, and the
/// issuer it says it is.
async fn start_provider(
    dir: &std::path::Path,
    settings: &[(&str, String)],
) -> (tokio::process::Child, String) {
    // Once, in a loaded full run, a provider printed nothing for a minute after loading its
    // package (the two started beside it answered at once); a second start is given, said on
    // stderr, before the test fails.
    for attempt in 1..=2 {
        let mut provider = tokio::process::Command::new("node");
        provider.arg("server.mjs").current_dir(dir);
        for (name, value) in settings {
            provider.env(name, value);
        }
        let mut provider = provider
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node must be installed to run the OpenID Connect interoperability test");
        if let Some(issuer) =
            first_line_within(&mut provider, "issuer ", Duration::from_secs(45)).await
        {
            return (provider, issuer);
        }
        eprintln!(
            "the OpenID provider did not say where it listens within 45 s (start {attempt} of 2)"
        );
    }
    panic!("the OpenID provider (tests/oidc-interop/server.mjs) did not start twice");
}

/// The provider's packages installed (`npm ci` when missing), and the port and address the
/// gateway will listen at: chosen first, because the provider must know the redirect URI.
fn prepare() -> (std::path::PathBuf, u16, String) {
    let dir = interop_dir();
    npm_ci_once(
        &dir,
        &["oidc-provider"],
        "the OpenID Connect interoperability test",
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    (dir, port, format!("http://127.0.0.1:{port}"))
}

/// The audit trail a stopped gateway left in `data`, its chain checked by `mcr audit verify`:
/// each record's action, payload and role profile, in order.
async fn audit_trail(data: &std::path::Path) -> Vec<(String, String, Option<String>)> {
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_mcr"))
        .args(["audit", "verify", "--data-dir"])
        .arg(data)
        .output()
        .expect("mcr audit verify");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", data.join("mcr.db").display()))
        .await
        .expect("the gateway's store");
    sqlx::query_as("SELECT action, payload, role_profile_id FROM audit_log ORDER BY seq")
        .fetch_all(&db)
        .await
        .expect("audit")
}

/// `POST /signin` at the gateway: its cookies, and where it sends the browser.
async fn staff_sign_in(http: &reqwest::Client, gateway: &str) -> (Jar, String) {
    started(http.post(format!("{gateway}/signin"))).await
}

/// A sign-in started with `request` (a `POST` to the gateway): its cookies, and where it
/// sends the browser.
async fn started(request: reqwest::RequestBuilder) -> (Jar, String) {
    let start = request.send().await.expect("POST to start a sign-in");
    assert_eq!(start.status(), 303);
    let mut jar = Jar::default();
    jar.take(&start);
    (jar, location(&start))
}

#[tokio::test]
async fn the_gateway_signs_in_with_an_independent_openid_provider() {
    let (dir, port, gateway) = prepare();
    let secret = "interop-client-secret-0123456789";
    let (mut provider, issuer) = start_provider(
        &dir,
        &[
            ("OIDC_REDIRECT_URI", format!("{gateway}/signin/callback")),
            ("OIDC_CLIENT_SECRET", secret.to_owned()),
            ("OIDC_USER_ORG", "RWH01".to_owned()),
        ],
    )
    .await;

    let tmp = tempfile::tempdir().expect("dir");
    let (config, _) = interop_config(tmp.path(), port, &issuer, secret, "");
    let mut gw = serve_insecure(&config, "warn", Stdio::inherit(), &gateway).await;

    let http = no_redirects();
    let (gateway_jar, next) = staff_sign_in(&http, &gateway).await;
    assert!(next.starts_with(&issuer), "{next}");
    assert!(
        next.contains("code_challenge_method=S256") && next.contains("nonce="),
        "{next}"
    );

    // Through the provider's own login and consent steps, as a browser would.
    let next = through_provider(&http, &issuer, next).await;
    assert!(
        next.starts_with(&format!("{gateway}/signin/callback?")),
        "back to the gateway: {next}"
    );
    assert!(next.contains("code="), "{next}");

    let back = land(&http, &next, gateway_jar).await;
    assert_eq!(back.status, 303, "signed in: {:?}", back.body);
    let gateway_jar = back.jar;
    assert!(gateway_jar.0.contains_key("mcr_session"), "a session");
    let page = get_with_cookie(&http, format!("{gateway}/app"), &gateway_jar.header()).await;
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

/// Follow the provider's login and consent redirects, as a browser would, until it sends the
/// browser back to the gateway; returns that URL.
async fn through_provider(http: &reqwest::Client, issuer: &str, mut next: String) -> String {
    let mut jar = Jar::default();
    let mut hops = 0;
    while next.starts_with(issuer) || next.starts_with('/') {
        hops += 1;
        assert!(hops < 15, "too many redirects at the provider");
        let url = if next.starts_with('/') {
            format!("{issuer}{next}")
        } else {
            next.clone()
        };
        let resp = http
            .get(&url)
            .header("cookie", jar.header())
            .send()
            .await
            .expect("provider");
        jar.take(&resp);
        assert!(
            resp.status().is_redirection(),
            "{url}: {} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
        next = location(&resp);
    }
    next
}

/// One CIS2 account at the provider: the `acr` of its sign-in and its UserInfo claims.
fn cis2_account(acr: &str, aal: &str, roles: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"acr": acr, "claims": {
        "name": "Flo Nurse", "authentication_assurance_level": aal, "nhsid_nrbac_roles": roles,
    }})
}

/// The two role profiles of the published CIS2 UserInfo example
/// (`crates/mcr-oidc/tests/fixtures/cis2/userinfo-privacy-officer-and-nurse.json`), their
/// organisations replaced by this test's: the nurse profile at a member trust, the privacy
/// officer profile at an organisation that is not a member.
fn published_profiles() -> serde_json::Value {
    serde_json::json!([
        {"person_orgid": "555057897107", "person_roleid": "555057898108", "org_code": "PRIV01",
         "role_name": "\"Admin and Clerical\":\"Admin and Clerical\":\"Privacy Officer\"",
         "role_code": "S8002:G8003:R0001", "activity_codes": ["B0016", "B0015", "B0018"]},
        {"person_orgid": "555057995106", "person_roleid": "555057996107", "org_code": "RWH01",
         "role_name": "\"Clinical\":\"Clinical Provision\":\"Nurse Access Role\"",
         "role_code": "S8000:G8000:R8001",
         "activity_codes": ["B0428", "B0380", "B0825", "B0560", "B8028"]}
    ])
}

async fn cis2_sign_in(http: &reqwest::Client, gateway: &str, issuer: &str, who: &str) -> Landing {
    let (jar, authorize) = staff_sign_in(http, gateway).await;
    assert!(
        authorize.contains("nationalrbacaccess"),
        "the gateway asks for the national RBAC scope: {authorize}"
    );
    let back = through_provider(http, issuer, format!("{authorize}&login_hint={who}")).await;
    assert!(
        back.starts_with(&format!("{gateway}/signin/callback?")),
        "{back}"
    );
    land(http, &back, jar).await
}

/// A page as the browser holding `jar` sees it: status, `Location` and body (the jar unchanged).
async fn get_page(http: &reqwest::Client, url: &str, jar: &Jar) -> (u16, String, String) {
    let page = land(http, url, jar.clone()).await;
    (page.status, page.location, page.body)
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().expect("value").to_owned()
}

#[tokio::test]
async fn cis2_role_profiles_assurance_and_bad_claims_against_an_independent_provider() {
    let (dir, port, gateway) = prepare();
    let secret = "interop-client-secret-0123456789";
    let accounts = serde_json::json!({
        "two.roles": cis2_account("AAL3_ANY", "3", published_profiles()),
        "low.assurance": cis2_account("AAL2_OR_3", "2", serde_json::json!([published_profiles()[1]])),
        "malformed": cis2_account("AAL3_ANY", "3", serde_json::json!([{"org_code": "RWH01", "role_code": "S8000:G8000:R8001"}])),
        "outsider": cis2_account("AAL3_ANY", "3", serde_json::json!([published_profiles()[0]])),
        "forger": {"acr": "AAL3_ANY", "claims": {
            "name": "Flo Nurse", "authentication_assurance_level": "3",
            "nhsid_nrbac_roles": published_profiles(), "selected_roleid": "999999999999"}},
    });
    let (mut provider, issuer) = start_provider(
        &dir,
        &[
            ("OIDC_REDIRECT_URI", format!("{gateway}/signin/callback")),
            ("OIDC_CLIENT_SECRET", secret.to_owned()),
            ("OIDC_CIS2_ACCOUNTS", accounts.to_string()),
        ],
    )
    .await;

    let tmp = tempfile::tempdir().expect("dir");
    let (config, data) = interop_config(
        tmp.path(),
        port,
        &issuer,
        secret,
        r#"scope = "openid profile nationalrbacaccess selectedrole"
[auth.cis2]
min_assurance_for_records = 3
[[organisations]]
code = "PRIV01"
name = "Acme Health Analytics Ltd"
kind = "private-company"
member = false
"#,
    );
    let mut gw = serve_insecure(&config, "warn", Stdio::inherit(), &gateway).await;
    let http = no_redirects();

    // Two role profiles, no selection: signed in, then sent to choose before anything else.
    let two = cis2_sign_in(&http, &gateway, &issuer, "two.roles").await;
    assert_eq!(
        (two.status, two.location.as_str()),
        (303, "/app"),
        "{}",
        two.body
    );
    let (status, loc, _) = get_page(&http, &format!("{gateway}/app"), &two.jar).await;
    assert_eq!((status, loc.as_str()), (303, "/signin/role"));
    let (status, _, page) = get_page(&http, &format!("{gateway}/signin/role"), &two.jar).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Nurse Access Role")
            && page.contains("East and North Hertfordshire NHS Trust"),
        "{page}"
    );
    assert!(
        page.contains("1 of your roles cannot be used here") && page.contains("not a member"),
        "the profile at a non-member is listed with its reason: {page}"
    );
    assert!(
        !page.contains("value=\"555057898108\""),
        "and cannot be chosen"
    );
    let csrf = csrf_of(&page);
    let post = |profile: &'static str| {
        let (http, url, cookie, csrf) = (
            http.clone(),
            format!("{gateway}/signin/role"),
            two.jar.header(),
            csrf.clone(),
        );
        async move {
            let r = http
                .post(url)
                .header("cookie", cookie)
                .form(&[("csrf", csrf.as_str()), ("profile", profile)])
                .send()
                .await
                .expect("post");
            let mut jar = Jar::default();
            jar.take(&r);
            (r.status().as_u16(), jar, r.text().await.expect("body"))
        }
    };
    // A profile the user does not hold (a forged form), and one at a non-member: refused.
    let (status, _, body) = post("999999999999").await;
    assert_eq!(status, 403);
    assert!(body.contains("not one of yours"), "{body}");
    let (status, _, body) = post("555057898108").await;
    assert_eq!(status, 403);
    assert!(body.contains("not a member"), "{body}");
    // Their own nurse profile: a new session, working as a nurse at the trust.
    let (status, new_jar, _) = post("555057996107").await;
    assert_eq!(status, 303);
    let mut jar = Jar(two.jar.0.clone());
    jar.0.extend(new_jar.0);
    let (status, _, app) = get_page(&http, &format!("{gateway}/app"), &jar).await;
    assert_eq!(status, 200, "{app}");
    assert!(
        app.contains("Flo Nurse, Nurse, East and North Hertfordshire NHS Trust"),
        "{app}"
    );
    assert!(app.contains("Change role"), "{app}");
    // Smartcard level: the record view is not refused for assurance.
    let (status, _, view) =
        get_page(&http, &format!("{gateway}/app/patient/9434765919"), &jar).await;
    assert!(!view.contains("assurance level"), "{status} {view}");

    // Signed in at level 2: searching is fine, a record view is refused with a sentence.
    let low = cis2_sign_in(&http, &gateway, &issuer, "low.assurance").await;
    assert_eq!(low.status, 303, "{}", low.body);
    let (status, _, _) = get_page(&http, &format!("{gateway}/app"), &low.jar).await;
    assert_eq!(status, 200);
    let (status, _, view) = get_page(
        &http,
        &format!("{gateway}/app/patient/9434765919"),
        &low.jar,
    )
    .await;
    assert_eq!(status, 403, "{view}");
    assert!(
        view.contains("assurance level 2") && view.contains("needs level 3"),
        "{view}"
    );

    // Malformed role profiles; only a profile at a non-member; a selection not held.
    let bad = cis2_sign_in(&http, &gateway, &issuer, "malformed").await;
    assert_eq!(bad.status, 403);
    assert!(
        bad.body.contains("role profile 1") && bad.body.contains("lacks `person_roleid`"),
        "{}",
        bad.body
    );
    let outsider = cis2_sign_in(&http, &gateway, &issuer, "outsider").await;
    assert_eq!(outsider.status, 403);
    assert!(outsider.body.contains("not a member"), "{}", outsider.body);
    let forger = cis2_sign_in(&http, &gateway, &issuer, "forger").await;
    assert_eq!(forger.status, 403);
    assert!(
        forger
            .body
            .contains("not one your NHS Care Identity account holds"),
        "{}",
        forger.body
    );

    gw.kill().await.ok();
    provider.kill().await.ok();

    // Every refusal is in the audit trail, and the nurse's records name their role profile.
    let rows = audit_trail(&data).await;
    let basis = |b: &str| {
        rows.iter()
            .filter(|(_, p, _)| p.contains(&format!("\"basis\":\"{b}\"")))
            .count()
    };
    assert_eq!(
        basis("role-profile-not-held"),
        2,
        "the forged form and the forged selection"
    );
    assert_eq!(
        basis("organisation-not-member"),
        2,
        "the choice and the outsider's sign-in"
    );
    assert_eq!(basis("malformed-nationalrbacaccess"), 1);
    assert_eq!(basis("assurance-too-low"), 1);
    assert!(
        rows.iter()
            .any(|(_, p, r)| r.as_deref() == Some("555057996107")
                && p.contains("\"user_id\":\"two.roles\"")),
        "the nurse's view is audited with the role profile she chose"
    );
}

/// A patient's NHS login sign-in at `/my-record`, through the provider as `who`; `authorize`
/// and `back` may change the URLs on the way (a forged nonce, state, …).
async fn patient_sign_in(
    http: &reqwest::Client,
    gateway: &str,
    issuer: &str,
    who: &str,
    authorize: impl Fn(String) -> String,
    back: impl Fn(String) -> String,
) -> Landing {
    let (jar, url) = started(
        http.post(format!("{gateway}/my-record/signin"))
            .header("content-type", "application/x-www-form-urlencoded"),
    )
    .await;
    assert!(url.starts_with(issuer), "{url}");
    for part in [
        "client_id=mcr-patient",
        "vtr=%5B%22P9.Cp.Cd%22%2C%22P9.Cp.Ck%22%2C%22P9.Cm%22%5D",
        "code_challenge_method=S256",
        "nonce=",
        "state=",
    ] {
        assert!(url.contains(part), "the authorization asks {part}: {url}");
    }
    let returned =
        through_provider(http, issuer, authorize(format!("{url}&login_hint={who}"))).await;
    assert!(
        returned.starts_with(&format!("{gateway}/my-record/signin/callback?")),
        "{returned}"
    );
    land(http, back(returned), jar).await
}

/// A patient signed in as `who` (at whatever level), sent on to `/my-record` from a page of
/// the gateway's own.
async fn patient_signed_in(
    http: &reqwest::Client,
    gateway: &str,
    issuer: &str,
    who: &str,
) -> Landing {
    let same = |u: String| u;
    let signed_in = patient_sign_in(http, gateway, issuer, who, same, same).await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    assert!(
        signed_in.body.contains("content=\"0;url=/my-record\""),
        "on to /my-record from a page of the gateway's own: {}",
        signed_in.body
    );
    signed_in
}

/// Replace the value of query parameter `name` in `url`.
fn with_param(url: &str, name: &str, value: &str) -> String {
    let mut u = url::Url::parse(url).expect("url");
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == name {
                value.to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    u.into()
}

#[tokio::test]
async fn patients_sign_in_with_nhs_login_shaped_claims_from_an_independent_provider() {
    let (dir, port, gateway) = prepare();
    let secret = "interop-client-secret-0123456789";
    let tmp = tempfile::tempdir().expect("dir");
    let key = tmp.path().join("nhs-login-client.pem");
    // NHS numbers: valid check digits (P9, P5), and one that fails its check digit.
    let (p9_nhs, p5_nhs) = ("9434765919", "9434765870");
    let account = |level: &str, nhs: Option<&str>| {
        let mut a = serde_json::json!({
            "identity_proofing_level": level, "vot": format!("{level}.Cp.Cd"), "name": "Pat Interop",
        });
        if let Some(n) = nhs {
            a["nhs_number"] = n.into();
        }
        a
    };
    let accounts = serde_json::json!({
        "p9.patient": account("P9", Some(p9_nhs)),
        "p5.patient": account("P5", Some(p5_nhs)),
        "no.number": account("P9", None),
        "bad.number": account("P9", Some("1234567890")),
    });
    let (mut provider, issuer) = start_provider(
        &dir,
        &[
            (
                "OIDC_REDIRECT_URI",
                format!("{gateway}/signin/callback {gateway}/my-record/signin/callback"),
            ),
            ("OIDC_CLIENT_SECRET", secret.to_owned()),
            ("OIDC_NHS_LOGIN_ACCOUNTS", accounts.to_string()),
            ("OIDC_NHS_LOGIN_KEY_FILE", key.display().to_string()),
        ],
    )
    .await;

    let (config, data) = interop_config(
        tmp.path(),
        port,
        &issuer,
        secret,
        &format!(
            r#"[auth.nhs_login]
issuer = "{issuer}"
client_id = "mcr-patient"
private_key = "{key}"
key_id = "mcr-patient-key"
"#,
            key = key.display(),
        ),
    );
    let log = tmp.path().join("gateway.log");
    let mut gw = serve_insecure(
        &config,
        "debug",
        std::fs::File::create(&log).expect("log file"),
        &gateway,
    )
    .await;
    let http = no_redirects();
    let same = |u: String| u;

    let page = get_page(
        &http,
        &format!("{gateway}/my-record/signin"),
        &Jar::default(),
    )
    .await;
    assert!(page.2.contains("Continue to NHS login"), "{}", page.2);
    assert!(!page.2.contains("stand-in"), "no stand-in beside NHS login");

    // P9: a patient session naming their NHS number; the access history is theirs to see.
    let p9 = patient_signed_in(&http, &gateway, &issuer, "p9.patient").await;
    let (status, _, body) = get_page(&http, &format!("{gateway}/my-record"), &p9.jar).await;
    assert_ne!(status, 403, "{body}");
    assert!(!body.contains("Prove who you are"), "{body}");

    // P5: signed in, general information only; the history and its download are refused.
    let p5 = patient_signed_in(&http, &gateway, &issuer, "p5.patient").await;
    for path in ["/my-record", "/my-record/access-history.csv"] {
        let (status, _, body) = get_page(&http, &format!("{gateway}{path}"), &p5.jar).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(
            body.contains("Prove who you are")
                && body.contains("level P5")
                && body.contains("(level P9)"),
            "{path} says why and how to reach P9: {body}"
        );
        assert!(!body.contains(p5_nhs), "{body}");
    }

    // Refusals, each with its sentence.
    let refused = |s: &Landing, status: u16, words: &str| {
        assert_eq!(s.status, status, "{}", s.body);
        assert!(s.body.contains(words), "{words}: {}", s.body);
        assert!(
            !s.jar.0.contains_key("mcr_patient"),
            "no patient session after a refusal"
        );
    };
    let none = patient_sign_in(&http, &gateway, &issuer, "no.number", same, same).await;
    refused(&none, 403, "did not give your NHS number");
    let bad = patient_sign_in(&http, &gateway, &issuer, "bad.number", same, same).await;
    refused(&bad, 403, "NHS number that is not valid");
    let forged_state = patient_sign_in(&http, &gateway, &issuer, "p9.patient", same, |u| {
        with_param(&u, "state", "forged")
    })
    .await;
    refused(&forged_state, 400, "not started here");
    let forged_nonce = patient_sign_in(
        &http,
        &gateway,
        &issuer,
        "p9.patient",
        |u| with_param(&u, "nonce", "someone-elses-nonce"),
        same,
    )
    .await;
    refused(&forged_nonce, 401, "it was not issued for this sign-in");
    let no_vtr = patient_sign_in(
        &http,
        &gateway,
        &issuer,
        "p9.patient",
        |u| with_param(&u, "vtr", "[]"),
        same,
    )
    .await;
    refused(&no_vtr, 401, "NHS login did not sign you in");
    // The callback with no sign-in in progress (no cookie).
    let (status, _, body) = get_page(
        &http,
        &format!("{gateway}/my-record/signin/callback?code=x&state=y"),
        &Jar::default(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("took too long"), "{body}");

    gw.kill().await.ok();
    provider.kill().await.ok();

    // Every sign-in and refusal is audited; the NHS number only once proofed to P9.
    let rows = audit_trail(&data).await;
    let with = |b: &str| {
        rows.iter()
            .filter(|(_, p, _)| p.contains(&format!("\"basis\":\"{b}\"")))
            .collect::<Vec<_>>()
    };
    let signed_in = with("nhs-login");
    assert_eq!(signed_in.len(), 1, "{rows:?}");
    assert!(
        signed_in[0].1.contains(p9_nhs) && signed_in[0].1.contains("identity proofing level P9"),
        "{:?}",
        signed_in[0]
    );
    assert_eq!(with("nhs-login-general-information-only").len(), 1);
    assert_eq!(
        with("proofing-level-too-low").len(),
        2,
        "history and download"
    );
    for (basis, n) in [
        ("missing-nhs-number", 1),
        ("malformed-nhs-number", 1),
        ("state-mismatch", 1),
        ("nonce-mismatch", 1),
        ("provider-refused", 1),
        ("no-sign-in-in-progress", 1),
    ] {
        assert_eq!(with(basis).len(), n, "{basis}: {rows:?}");
    }
    assert!(
        rows.iter().all(|(_, p, _)| !p.contains(p5_nhs)),
        "a P5 patient's unproofed NHS number is not kept"
    );
    let log = std::fs::read_to_string(&log).expect("log");
    assert!(
        !log.contains(p9_nhs) && !log.contains(p5_nhs),
        "no NHS number in the gateway's logs"
    );
}
