//! Sign-in and API credentials under attack: every bad token and every broken sign-in is
//! refused with a clean 401/403/400 (an `OperationOutcome` or the sign-in page with its error
//! summary) and leaves an audit record of the attempt. Plus scopes, sessions, CSRF, security
//! headers and rate limits.

use crate::helpers::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::Ed25519KeyPair;
use serde_json::{json, Value};

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("test helper")
            .as_secs(),
    )
    .expect("test helper")
}

/// Claims as the demo provider issues them for ae.okafor, to be spoilt one way or another.
fn good_claims(t: &TestDemo) -> Value {
    let n = now();
    let org = t
        .demo
        .info
        .users
        .iter()
        .find(|u| u.id == AE)
        .map(|u| u.org_code.clone())
        .expect("the A&E doctor");
    json!({
        "iss": t.demo.info.token_issuer, "aud": t.demo.info.token_audience, "sub": AE,
        "name": "Dr Chidi Okafor", "role": "clinician", "org": org,
        "iat": n, "nbf": n, "exp": n + 600, "scope": "user/*.read user/Consent.write",
        "client_id": "test", "jti": "j", "authentication_assurance_level": "3"
    })
}

fn with(mut v: Value, key: &str, val: Value) -> Value {
    v[key] = val;
    v
}

fn real_key(t: &TestDemo) -> mcr_idp::SigningKey {
    mcr_idp::SigningKey::load_or_create(&t.demo.info.signing_key).expect("test helper")
}

/// Signed with a key the provider never published, under the provider's own key id.
fn sign_with_other_key(kid: &str, claims: &Value) -> String {
    let doc =
        Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).expect("test helper");
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_ed_der(doc.as_ref())).expect("test helper")
}

async fn auth_failures(t: &TestDemo) -> Vec<Value> {
    t.audit_trail()
        .await
        .into_iter()
        .filter(|r| r.record.action.starts_with("authenticate"))
        .map(|r| serde_json::from_str(&r.record.payload).expect("test helper"))
        .collect()
}

async fn assert_audited(t: &TestDemo, channel: &str, reason: &str, user: &str) {
    let all = auth_failures(t).await;
    assert!(
        all.iter()
            .any(|e| e["action"] == format!("authenticate:{channel}")
                && e["basis"] == reason
                && e["user_id"] == user
                && e["outcome"] == "deny"),
        "no audit record of {channel}/{reason} by {user}: {all:#?}"
    );
}

/// The token request the gateway makes for `code` at the demo provider, as client
/// `mcr-gateway` with `secret`, and without the PKCE verifier.
async fn token_without_verifier(
    t: &TestDemo,
    http: &reqwest::Client,
    secret: &str,
    code: &str,
) -> reqwest::Response {
    http.post(format!("{}/token", t.demo.info.token_issuer))
        .basic_auth("mcr-gateway", Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &t.url("/signin/callback")),
        ])
        .send()
        .await
        .expect("POST /token")
}

#[tokio::test]
async fn bad_bearer_tokens_are_refused_and_audited() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    let path = format!("/fhir/Patient/{nhs}/$everything");
    let key = real_key(&t);
    let good = good_claims(&t);
    let n = now();

    // The control: the real key and good claims are accepted.
    let ok = key.sign(&good).unwrap();
    let resp = t
        .http
        .get(t.url(&path))
        .bearer_auth(&ok)
        .send()
        .await
        .unwrap();
    assert_ne!(resp.status(), 401, "a good token is accepted");

    let tampered = {
        let parts: Vec<&str> = ok.split('.').collect();
        let claims = b64url(
            serde_json::to_string(&with(good.clone(), "org", json!("E82001")))
                .unwrap()
                .as_bytes(),
        );
        format!("{}.{claims}.{}", parts[0], parts[2])
    };
    let alg_none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(serde_json::to_string(&good).unwrap().as_bytes())
    );
    // HS256 keyed with the provider's public key, the classic algorithm-confusion attack.
    let hs256 = {
        let x = key.jwk()["x"].as_str().unwrap().to_owned();
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(key.kid().to_owned());
        jsonwebtoken::encode(&h, &good, &EncodingKey::from_secret(x.as_bytes())).unwrap()
    };
    let other_key_same_kid = sign_with_other_key(key.kid(), &good);
    let other_key_other_kid = sign_with_other_key("someone-elses-key", &good);
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no token", None, "no-token"),
        ("garbage", Some("not-a-jwt".into()), "malformed-token"),
        (
            "expired",
            Some(
                key.sign(&with(
                    with(good.clone(), "exp", json!(n - 3600)),
                    "nbf",
                    json!(n - 7200),
                ))
                .unwrap(),
            ),
            "expired-token",
        ),
        (
            "not yet valid",
            Some(
                key.sign(&with(good.clone(), "nbf", json!(n + 3600)))
                    .unwrap(),
            ),
            "token-not-yet-valid",
        ),
        (
            "another key, same kid",
            Some(other_key_same_kid),
            "bad-signature",
        ),
        ("another key", Some(other_key_other_kid), "unknown-key"),
        ("alg none", Some(alg_none), "malformed-token"),
        (
            "HS256 with the public key",
            Some(hs256),
            "algorithm-not-accepted",
        ),
        (
            "wrong issuer",
            Some(
                key.sign(&with(good.clone(), "iss", json!("https://evil.example")))
                    .unwrap(),
            ),
            "wrong-issuer",
        ),
        (
            "wrong audience",
            Some(
                key.sign(&with(good.clone(), "aud", json!("another-service")))
                    .unwrap(),
            ),
            "wrong-audience",
        ),
        ("tampered claims", Some(tampered), "bad-signature"),
        (
            "no role",
            Some(key.sign(&with(good.clone(), "role", Value::Null)).unwrap()),
            "missing-claim",
        ),
    ];
    for (what, token, code) in cases {
        let mut req = t.http.get(t.url(&path));
        if let Some(tok) = &token {
            req = req.bearer_auth(tok);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{what}");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer", "{what}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["resourceType"], "OperationOutcome", "{what}");
        assert_eq!(
            body["issue"][0]["details"]["coding"][0]["code"], code,
            "{what}: {body}"
        );
        if let Some(tok) = &token {
            assert!(
                !body.to_string().contains(tok.as_str()),
                "{what}: the token is never echoed"
            );
        }
        assert_audited(&t, "api", code, "anonymous").await;
    }
}

#[tokio::test]
async fn scopes_limit_what_a_token_may_do() {
    let t = start().await;
    let nhs = t.patient("needs_permission", 0);
    let key = real_key(&t);
    let read_only = key
        .sign(&with(good_claims(&t), "scope", json!("user/*.read")))
        .unwrap();
    let write_only = key
        .sign(&with(good_claims(&t), "scope", json!("user/Consent.write")))
        .unwrap();
    let no_scopes = key
        .sign(&with(good_claims(&t), "scope", json!("openid profile")))
        .unwrap();

    let post = |tok: String| {
        let body = permission(&nhs, "permit", "patient").to_string();
        let req = t
            .http
            .post(t.url("/fhir/Consent"))
            .bearer_auth(tok)
            .header("content-type", "application/fhir+json")
            .body(body);
        async move { req.send().await.unwrap() }
    };
    let resp = post(read_only.clone()).await;
    assert_eq!(
        resp.status(),
        403,
        "a read-only token cannot record permission"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["issue"][0]["details"]["coding"][0]["code"],
        "insufficient-scope"
    );
    assert_audited(&t, "scope", "insufficient-scope", AE).await;

    for tok in [write_only.clone(), no_scopes] {
        let resp = t
            .http
            .get(t.url(&format!("/fhir/Patient/{nhs}/$everything")))
            .bearer_auth(tok)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            403,
            "without a read scope nothing can be read"
        );
    }
    let resp = post(write_only).await;
    let status = resp.status();
    assert_eq!(
        status,
        201,
        "with the write scope the permission is recorded: {}",
        resp.text().await.unwrap()
    );
    let resp = t
        .http
        .get(t.url(&format!("/fhir/Patient/{nhs}/$everything")))
        .bearer_auth(read_only)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "and the read scope can then read");
}

/// `POST /signout` with the session's cookie, from `origin` if given, with the form token
/// `csrf` if given: the answer's status.
async fn sign_out(t: &TestDemo, s: &SignedIn, origin: Option<&str>, csrf: Option<&str>) -> u16 {
    let mut post = s.http.post(t.url("/signout")).header("cookie", &s.cookie);
    if let Some(origin) = origin {
        post = post.header("origin", origin);
    }
    if let Some(csrf) = csrf {
        post = post.form(&[("csrf", csrf)]);
    }
    post.send().await.expect("POST /signout").status().as_u16()
}

#[tokio::test]
async fn a_browser_signs_in_through_the_provider_and_out_again() {
    let t = start().await;
    let s = t.sign_in("gp.patel").await;
    let resp = get_with_cookie(&s.http, t.url("/app"), &s.cookie).await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert!(resp.text().await.unwrap().contains("Dr Asha Patel"));

    // A form without the session's CSRF token, or from another site, is refused.
    assert_eq!(sign_out(&t, &s, None, None).await, 403, "no CSRF token");
    let csrf = Some(s.csrf.as_str());
    assert_eq!(
        sign_out(&t, &s, Some("https://evil.example"), csrf).await,
        403,
        "another origin"
    );
    assert_eq!(
        sign_out(&t, &s, None, Some("guess")).await,
        403,
        "a wrong token"
    );

    // Sign-out ends the session on the server: the old cookie is worthless.
    assert_eq!(sign_out(&t, &s, None, csrf).await, 303);
    let resp = get_with_cookie(&s.http, t.url("/app"), &s.cookie).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/signin");
}

#[tokio::test]
async fn broken_sign_ins_are_refused_and_audited() {
    let t = start().await;
    let http = t.browser();

    // State mismatch: the browser comes back with a state this sign-in did not send.
    let (back, login) = provider_answer(&t, &http, AE).await;
    let forged = with_code_and_state(&back, &query_param(&back, "code"), "forged");
    let resp = get_with_cookie(&http, forged, &login).await;
    assert_eq!(resp.status(), 400, "state mismatch");
    assert!(set_cookie(&resp, "mcr_session").is_none());
    assert!(resp.text().await.unwrap().contains("nhsuk-error-summary"));
    assert_audited(&t, "sign-in", "state-mismatch", "anonymous").await;

    // Replayed authorization code: a completed sign-in's code, replayed in a new sign-in.
    let (back, login) = provider_answer(&t, &http, AE).await;
    let resp = get_with_cookie(&http, back.clone(), &login).await;
    assert_eq!(resp.status(), 303, "the first use signs in");
    let used = query_param(&back, "code");
    let (authorize2, login2) = start_sign_in(&t, &http).await;
    let state2 = query_param(&authorize2, "state");
    let callback = url::Url::parse(&t.url("/signin/callback")).unwrap();
    let replay = with_code_and_state(&callback, &used, &state2);
    let resp = get_with_cookie(&http, replay, &login2).await;
    assert_eq!(resp.status(), 401, "a replayed code");
    assert!(set_cookie(&resp, "mcr_session").is_none());
    assert_audited(&t, "sign-in", "code-refused", "anonymous").await;
    // The same callback URL twice: the sign-in it belonged to is over.
    let resp = get_with_cookie(&http, back, &login).await;
    assert_eq!(resp.status(), 400);
    assert_audited(&t, "sign-in", "no-sign-in-in-progress", "anonymous").await;

    // A code issued to another browser's sign-in (so for another PKCE verifier) is useless.
    let (back_a, _login_a) = provider_answer(&t, &http, AE).await;
    let code_a = query_param(&back_a, "code");
    let (authorize_b, login_b) = start_sign_in(&t, &http).await;
    let state_b = query_param(&authorize_b, "state");
    let injected = with_code_and_state(&callback, &code_a, &state_b);
    let resp = get_with_cookie(&http, injected, &login_b).await;
    assert_eq!(resp.status(), 401, "PKCE verifier does not match");

    // Missing PKCE: the provider refuses a request without a challenge, and a token request
    // without the verifier.
    let (authorize4, login4) = start_sign_in(&t, &http).await;
    let mut no_pkce = authorize4.clone();
    let kept: Vec<(String, String)> = authorize4
        .query_pairs()
        .filter(|(k, _)| !k.starts_with("code_challenge"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    no_pkce.query_pairs_mut().clear().extend_pairs(kept);
    let resp = http.get(no_pkce.as_str()).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    let back = location(&resp);
    assert!(back.contains("error=invalid_request"), "{back}");
    let resp = get_with_cookie(&http, &back, &login4).await;
    assert_eq!(resp.status(), 401);
    assert!(set_cookie(&resp, "mcr_session").is_none());
    assert_audited(&t, "sign-in", "provider-refused", "anonymous").await;

    let (back, _) = provider_answer(&t, &http, AE).await;
    let code = query_param(&back, "code");
    let resp = token_without_verifier(&t, &http, "wrong", &code).await;
    assert_eq!(resp.status(), 401, "client authentication is required");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
}

#[tokio::test]
async fn the_provider_wants_the_pkce_verifier() {
    let t = start().await;
    let http = t.browser();
    let (back, _) = provider_answer(&t, &http, AE).await;
    let code = query_param(&back, "code");
    // The demo provider's client secret is the gateway's own; a verifier-less request by
    // someone who somehow had it still fails on PKCE.
    let secret = secrecy::ExposeSecret::expose_secret(&t.demo.gateway_client_secret).to_owned();
    let resp = token_without_verifier(&t, &http, &secret, &code).await;
    assert_eq!(resp.status(), 400, "no verifier");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn sign_in_is_rate_limited_per_address() {
    let t = start().await;
    let http = t.browser();
    let mut limited = None;
    for _ in 0..100 {
        let resp = http.post(t.url("/signin")).send().await.unwrap();
        if resp.status() == 429 {
            limited = Some(resp);
            break;
        }
        assert_eq!(resp.status(), 303);
    }
    let resp = limited.expect("sign-in attempts are limited");
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry));
}

/// A search by NHS number through the FHIR API with the bearer `token`.
async fn search_by_nhs(t: &TestDemo, token: &str, nhs: &str) -> reqwest::Response {
    t.http
        .get(t.url(&format!(
            "/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}"
        )))
        .bearer_auth(token)
        .send()
        .await
        .expect("search")
}

#[tokio::test]
async fn patient_search_is_rate_limited_per_user() {
    let t = start().await;
    let token = t.token(AE);
    let nhs = t.patient("all_four_sources", 0);
    let mut statuses = Vec::new();
    for _ in 0..80 {
        let resp = search_by_nhs(&t, &token, &nhs).await;
        statuses.push(resp.status().as_u16());
        if resp.status() == 429 {
            assert!(resp.headers().contains_key("retry-after"));
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["issue"][0]["code"], "throttled");
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert!(
        statuses.iter().filter(|s| **s == 200).count() >= 20,
        "a normal burst is fine: {statuses:?}"
    );
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let t = start().await;
    let resp = t
        .http
        .get(t.url("/"))
        .header("x-padding", "a".repeat(40 * 1024))
        .send()
        .await
        .unwrap();
    assert!(
        resp.status() == 431 || resp.status() == 400,
        "{}",
        resp.status()
    );
}

/// Staff behind one hospital address (NAT) do not share a bucket: 40 different users from
/// one address can all search several times and sign in within a minute; a limit is per user.
#[tokio::test]
async fn forty_users_behind_one_address_can_all_search_and_sign_in() {
    let t = start().await;
    let key = real_key(&t);
    let nhs = t.patient("all_four_sources", 0);
    for i in 0..40 {
        let mut claims = good_claims(&t);
        claims["sub"] = json!(format!("staff.{i}"));
        claims["jti"] = json!(format!("forty-{i}"));
        let token = key.sign(&claims).unwrap();
        for k in 0..5 {
            let resp = search_by_nhs(&t, &token, &nhs).await;
            assert_eq!(resp.status(), 200, "user {i}, search {k}");
        }
    }
    // 40 sign-ins through the provider from the one address: every demo user who can sign in
    // (not the private company's, nor the suspended organisation's: their CIS2 role profiles
    // are at organisations that are not members, refused at sign-in), over and over.
    let users: Vec<String> = t
        .demo
        .info
        .users
        .iter()
        .map(|u| u.id.clone())
        .filter(|id| id != "acme.jones" && id != "pharm.lee")
        .collect();
    for i in 0..40 {
        t.sign_in(&users[i % users.len()]).await;
    }
}

/// How many `POST /signin`s from this demo, each with the `X-Forwarded-For` that `xff`
/// gives, are answered before the first 429 (`None`: never limited in `tries`).
async fn signins_until_limited(
    t: &TestDemo,
    tries: usize,
    xff: impl Fn(usize) -> String,
) -> Option<usize> {
    let http = t.browser();
    for i in 0..tries {
        let resp = http
            .post(t.url("/signin"))
            .header("x-forwarded-for", xff(i))
            .send()
            .await
            .expect("POST /signin");
        if resp.status() == 429 {
            return Some(i);
        }
        assert_eq!(resp.status(), 303);
    }
    None
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxy_hops() {
    // Default, 0 hops: the header is ignored, so changing it does not escape the address limit.
    let t = start().await;
    let limited = signins_until_limited(&t, 100, |i| format!("203.0.113.{i}")).await;
    assert!(limited.is_some(), "a spoofed X-Forwarded-For is ignored");
    // One trusted hop: the client address is the last entry the proxy appended.
    let t = start_opts(mcr::demo::DemoOptions {
        trusted_proxy_hops: 1,
        ..test_options()
    })
    .await;
    let limited = signins_until_limited(&t, 100, |i| format!("198.51.100.7, 203.0.113.{i}")).await;
    assert_eq!(
        limited, None,
        "each client behind the proxy has its own bucket"
    );
    let limited = signins_until_limited(&t, 100, |_| "10.1.2.3, 192.0.2.9".to_owned()).await;
    assert!(
        limited.is_some(),
        "one client behind the proxy is still limited"
    );
}

/// Single sign-on at the demo provider, as a SMART launch's sign-in uses it: `prompt=none`
/// answers `login_required` to a browser that has not signed in there, and a code, without a
/// page, to one that has.
#[tokio::test]
async fn the_demo_provider_answers_prompt_none_only_from_its_session() {
    let t = start().await;
    let http = t.browser();
    let (authorize, _) = start_sign_in(&t, &http).await;
    let mut silent = authorize.clone();
    silent.query_pairs_mut().append_pair("prompt", "none");
    let resp = http.get(silent.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 303, "no page: straight back");
    let back = location(&resp);
    assert!(back.contains("error=login_required"), "{back}");
    assert!(!back.contains("code="), "{back}");

    let chosen = choose_user(&http, &authorize, AE).await;
    let sso = set_cookie(&chosen, "mcr_idp_sso").expect("a single sign-on cookie");
    assert!(
        sso.contains("HttpOnly") && sso.contains("SameSite=Lax"),
        "{sso}"
    );
    let sso = sso.split(';').next().unwrap().to_owned();
    let resp = http
        .get(silent.clone())
        .header("cookie", &sso)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let back = location(&resp);
    assert!(back.contains("code=") && !back.contains("error="), "{back}");
    // A made-up session is nobody's.
    let resp = http
        .get(silent)
        .header("cookie", "mcr_idp_sso=made-up")
        .send()
        .await
        .unwrap();
    assert!(location(&resp).contains("error=login_required"));
}

#[tokio::test]
async fn a_record_view_needs_smartcard_level_assurance() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    let key = real_key(&t);
    for low in [
        with(
            good_claims(&t),
            "authentication_assurance_level",
            json!("2"),
        ),
        with(
            good_claims(&t),
            "authentication_assurance_level",
            Value::Null,
        ),
    ] {
        let resp = t
            .http
            .get(t.url(&format!("/fhir/Patient/{nhs}/$everything")))
            .bearer_auth(key.sign(&low).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body["issue"][0]["details"]["coding"][0]["code"], "assurance-too-low",
            "{body}"
        );
        assert!(
            body.to_string().contains("needs level 3"),
            "the answer says what is needed: {body}"
        );
    }
    assert_audited(&t, "assurance", "assurance-too-low", AE).await;
    // Finding a patient is not a record view: served at level 2.
    let low = with(
        good_claims(&t),
        "authentication_assurance_level",
        json!("2"),
    );
    let resp = t
        .http
        .get(t.url(&format!(
            "/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number%7C{nhs}"
        )))
        .bearer_auth(key.sign(&low).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
