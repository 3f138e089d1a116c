//! Application-restricted access to PDS by signed JWT, over real HTTP: the client's exchange
//! with the simulated platform's token endpoint; each fault in a JWT refused with the
//! platform's own status and words (github.com/NHSDigital/identity-service-api, see
//! tests/fixtures/pds-auth/README.md); the token held until near its expiry, then renewed; the
//! published example request and answer; and the client's JWT checked by PyJWT, a library this
//! project did not write.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcr_domain::{Clock, FixedClock, NhsNumber, SystemClock};
use mcr_index::pds::token::CLIENT_ASSERTION_TYPE;
use mcr_index::pds::{PdsClient, PdsError, PdsSettings};
use mcr_sources::pds::{PdsAccess, PdsData, PdsHandle};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use std::sync::Arc;

const API_KEY: &str = "pds-test-application";
const KID: &str = "test-1";

fn fixture_path(name: &str) -> std::path::PathBuf {
    format!(
        "{}/tests/fixtures/pds-auth/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
    .into()
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name)).expect("fixture")
}

async fn pds(clock: Arc<dyn Clock>) -> PdsHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("test setup");
    let access = PdsAccess {
        api_key: API_KEY.into(),
        jwks: serde_json::from_str(&fixture("jwks.json")).expect("fixture JSON"),
        clock,
    };
    mcr_sources::pds::serve(listener, PdsData::demo(), access)
        .await
        .expect("test setup")
}

fn settings(pds: &PdsHandle) -> PdsSettings {
    PdsSettings {
        base_url: pds.base_url(),
        token_url: pds.token_url(),
        api_key: API_KEY.to_owned().into(),
        key_id: KID.into(),
        private_key: fixture_path("application-key.pem"),
        link_score: 1.0,
        timeout_ms: 5000,
    }
}

fn nhs(s: &str) -> NhsNumber {
    NhsNumber::parse(s).expect("test NHS number")
}

/// A clock both sides read, moved by the test.
fn fixed() -> Arc<FixedClock> {
    Arc::new(FixedClock::new("2026-12-05T09:00:00Z".parse().expect("t")))
}

#[tokio::test]
async fn the_exchange_gets_a_token_and_pds_answers_with_it() {
    let pds = pds(Arc::new(SystemClock)).await;
    let client = PdsClient::new(settings(&pds), Arc::new(SystemClock)).expect("client");
    assert_eq!(
        pds.token_requests(),
        (0, 0),
        "no token is asked for at start"
    );
    let p = client
        .read(&nhs("9990000034"))
        .await
        .expect("read")
        .expect("held");
    assert_eq!(p.nhs_number.as_str(), "9990000034");
    assert_eq!(pds.token_requests(), (1, 1));
    // The same token serves the next requests.
    client.read(&nhs("9990000026")).await.expect("read");
    client.read(&nhs("9990000018")).await.expect("read");
    assert_eq!(pds.token_requests(), (1, 1));
    assert_eq!(client.access_tokens().exchanges(), 1);
    assert_eq!(pds.reads(), 3);
}

#[tokio::test]
async fn the_token_is_reused_until_near_expiry_then_renewed() {
    let clock = fixed();
    let pds = pds(clock.clone()).await;
    let client = PdsClient::new(settings(&pds), clock.clone()).expect("client");
    client.read(&nhs("9990000034")).await.expect("read");
    let first = client
        .access_tokens()
        .bearer()
        .await
        .expect("held")
        .expose_secret()
        .to_owned();
    assert_eq!(pds.token_requests(), (1, 1));
    // 599 seconds of life, renewed in its last minute: at 538 s still the same token.
    clock.advance(chrono::Duration::seconds(538));
    client.read(&nhs("9990000034")).await.expect("read");
    assert_eq!(pds.token_requests(), (1, 1), "reused");
    // At 540 s a new one is asked for before the next request.
    clock.advance(chrono::Duration::seconds(2));
    client.read(&nhs("9990000034")).await.expect("read");
    assert_eq!(pds.token_requests(), (2, 2), "renewed");
    let second = client
        .access_tokens()
        .bearer()
        .await
        .expect("held")
        .expose_secret()
        .to_owned();
    assert_ne!(first, second);
    // PDS takes the old token until it expires, then refuses it.
    let ask = |token: String| {
        let url = format!("{}/Patient/9990000034", pds.base_url());
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .header("x-request-id", "60E0B220-8136-4CA5-AE46-1D97EF59D068")
                .send()
                .await
                .expect("request")
                .status()
                .as_u16()
        }
    };
    assert_eq!(ask(first.clone()).await, 200);
    clock.advance(chrono::Duration::seconds(60));
    assert_eq!(ask(first).await, 401, "expired at 599 s");
    assert_eq!(ask(second).await, 200);
}

/// Sign `claims` with `header` by a fixture key.
fn sign(header: &Header, claims: &Value, key: &str) -> String {
    let key = EncodingKey::from_rsa_pem(fixture(key).as_bytes()).expect("fixture key");
    jsonwebtoken::encode(header, claims, &key).expect("sign")
}

fn header(alg: Algorithm, kid: Option<&str>) -> Header {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    h
}

async fn post_form(pds: &PdsHandle, form: &[(&str, &str)]) -> (u16, Value) {
    let answer = reqwest::Client::new()
        .post(pds.token_url())
        .form(form)
        .send()
        .await
        .expect("request");
    let status = answer.status().as_u16();
    (status, answer.json().await.expect("JSON"))
}

async fn exchange(pds: &PdsHandle, jwt: &str) -> (u16, Value) {
    post_form(
        pds,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("client_assertion", jwt),
        ],
    )
    .await
}

/// The platform's error body without its `message_id` (random), which must be there.
fn error_of(status: u16, mut body: Value) -> (u16, Value) {
    let id = body
        .as_object_mut()
        .and_then(|o| o.remove("message_id"))
        .expect("a message_id");
    assert!(id.as_str().is_some_and(|s| !s.is_empty()));
    (status, body)
}

fn refusal(status: u16, error: &str, description: &str) -> (u16, Value) {
    (
        status,
        json!({"error": error, "error_description": description}),
    )
}

#[tokio::test]
async fn each_jwt_fault_is_refused_with_the_platforms_error() {
    let clock = fixed();
    let pds = pds(clock.clone()).await;
    let now = clock.now().timestamp();
    let aud = pds.token_url();
    let claims = |jti: &str| json!({"iss": API_KEY, "sub": API_KEY, "aud": aud, "jti": jti, "exp": now + 300});
    let with = |jti: &str, k: &str, v: Value| {
        let mut c = claims(jti);
        c[k] = v;
        c
    };
    let without = |jti: &str, k: &str| {
        let mut c = claims(jti);
        c.as_object_mut().expect("object").remove(k);
        c
    };
    let rs512 = header(Algorithm::RS512, Some(KID));
    let good_key = "application-key.pem";
    // (what, JWT, expected status and body), in the platform's words
    // (identity-service-api e2e/tests/oauth/test_client_credentials.py).
    let cases: Vec<(&str, String, (u16, Value))> = vec![
        (
            "wrong signature",
            sign(&rs512, &claims("j-sig"), "other-key.pem"),
            refusal(401, "public_key error", "JWT signature verification failed"),
        ),
        (
            "expired",
            sign(&rs512, &with("j-exp", "exp", json!(now - 20)), good_key),
            refusal(400, "invalid_request", "Invalid 'exp' claim in client_assertion JWT - JWT has expired"),
        ),
        (
            "exp more than five minutes ahead",
            sign(&rs512, &with("j-far", "exp", json!(now + 360)), good_key),
            refusal(400, "invalid_request", "Invalid 'exp' claim in client_assertion JWT - more than 5 minutes in future"),
        ),
        (
            "wrong aud",
            sign(&rs512, &with("j-aud", "aud", json!("https://api.service.nhs.uk/oauth2/token")), good_key),
            refusal(401, "invalid_request", "Missing or invalid 'aud' claim in client_assertion JWT"),
        ),
        (
            "unknown kid",
            sign(&header(Algorithm::RS512, Some("invalid")), &claims("j-kid"), good_key),
            refusal(401, "invalid_request", "Invalid 'kid' header in client_assertion JWT - no matching public key"),
        ),
        (
            "no kid",
            sign(&header(Algorithm::RS512, None), &claims("j-nokid"), good_key),
            refusal(400, "invalid_request", "Missing 'kid' header in client_assertion JWT"),
        ),
        (
            "RS256",
            sign(&header(Algorithm::RS256, Some(KID)), &claims("j-alg"), good_key),
            refusal(400, "invalid_request", "Invalid 'alg' header in client_assertion JWT - unsupported JWT algorithm - must be 'RS512'"),
        ),
        (
            "typ not JWT",
            {
                let mut h = rs512.clone();
                h.typ = Some("invalid".into());
                sign(&h, &claims("j-typ"), good_key)
            },
            refusal(400, "invalid_request", "Invalid 'typ' header in client_assertion JWT - must be 'JWT'"),
        ),
        (
            "iss not sub",
            sign(&rs512, &with("j-iss", "iss", json!("invalid")), good_key),
            refusal(400, "invalid_request", "Missing or non-matching 'iss'/'sub' claims in client_assertion JWT"),
        ),
        (
            "iss = sub, not a known application",
            {
                let mut c = with("j-app", "iss", json!("invalid"));
                c["sub"] = json!("invalid");
                sign(&rs512, &c, good_key)
            },
            refusal(401, "invalid_request", "Invalid 'iss'/'sub' claims in client_assertion JWT"),
        ),
        (
            "no jti",
            sign(&rs512, &without("j-none", "jti"), good_key),
            refusal(400, "invalid_request", "Missing 'jti' claim in client_assertion JWT"),
        ),
        (
            "jti a number",
            sign(&rs512, &with("j-num", "jti", json!(1234567890)), good_key),
            refusal(400, "invalid_request", "Invalid 'jti' claim in client_assertion JWT - must be a unique string value such as a GUID"),
        ),
        (
            "exp a string",
            sign(&rs512, &with("j-str", "exp", json!((now + 300).to_string())), good_key),
            refusal(400, "invalid_request", "Invalid 'exp' claim in client_assertion JWT - must be an integer"),
        ),
        (
            "no exp",
            sign(&rs512, &without("j-noexp", "exp"), good_key),
            refusal(400, "invalid_request", "Missing 'exp' claim in client_assertion JWT"),
        ),
        (
            "not a JWT",
            "invalid".to_owned(),
            refusal(400, "invalid_request", "Malformed JWT in client_assertion"),
        ),
    ];
    for (what, jwt, expected) in cases {
        let (status, body) = exchange(&pds, &jwt).await;
        assert_eq!(error_of(status, body), expected, "{what}");
    }

    // A jti is used once: the same JWT again is refused.
    let once = sign(&rs512, &claims("j-once"), good_key);
    let (status, body) = exchange(&pds, &once).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = exchange(&pds, &once).await;
    assert_eq!(
        error_of(status, body),
        refusal(
            400,
            "invalid_request",
            "Non-unique 'jti' claim in client_assertion JWT"
        )
    );

    // The form itself.
    let good = sign(&rs512, &claims("j-form"), good_key);
    type Form<'a> = Vec<(&'a str, &'a str)>;
    let form_cases: Vec<(&str, Form, (u16, Value))> = vec![
        (
            "grant_type wrong",
            vec![("grant_type", "invalid"), ("client_assertion_type", CLIENT_ASSERTION_TYPE), ("client_assertion", &good)],
            refusal(400, "unsupported_grant_type", "grant_type is invalid"),
        ),
        (
            "grant_type missing",
            vec![("client_assertion_type", CLIENT_ASSERTION_TYPE), ("client_assertion", &good)],
            refusal(400, "invalid_request", "grant_type is missing"),
        ),
        (
            "client_assertion_type wrong",
            vec![("grant_type", "client_credentials"), ("client_assertion_type", "invalid"), ("client_assertion", &good)],
            refusal(400, "invalid_request", "Missing or invalid client_assertion_type - must be 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'"),
        ),
        (
            "client_assertion missing",
            vec![("grant_type", "client_credentials"), ("client_assertion_type", CLIENT_ASSERTION_TYPE)],
            refusal(400, "invalid_request", "Missing client_assertion"),
        ),
    ];
    for (what, form, expected) in form_cases {
        let (status, body) = post_form(&pds, &form).await;
        assert_eq!(error_of(status, body), expected, "{what}");
    }
    // A JSON body is refused before anything is read.
    let answer = reqwest::Client::new()
        .post(pds.token_url())
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .expect("request");
    let status = answer.status().as_u16();
    let body: Value = answer.json().await.expect("JSON");
    assert_eq!(
        error_of(status, body),
        refusal(
            415,
            "invalid_request",
            "Content-Type header must be application/x-www-form-urlencoded"
        )
    );
    // Only the one good exchange was granted.
    let (asked, granted) = pds.token_requests();
    assert_eq!((asked, granted), (22, 1));
}

#[tokio::test]
async fn the_client_is_refused_in_the_platforms_words() {
    let clock = fixed();
    let pds = pds(clock.clone()).await;
    let faults: Vec<(&str, PdsSettings, &str)> = vec![
        (
            "unknown kid",
            PdsSettings {
                key_id: "not-registered".into(),
                ..settings(&pds)
            },
            "401 invalid_request: Invalid 'kid' header in client_assertion JWT - no matching public key",
        ),
        (
            "another key",
            PdsSettings {
                private_key: fixture_path("other-key.pem"),
                ..settings(&pds)
            },
            "401 public_key error: JWT signature verification failed",
        ),
        (
            "unknown API key",
            PdsSettings {
                api_key: "not-registered".to_owned().into(),
                ..settings(&pds)
            },
            "401 invalid_request: Invalid 'iss'/'sub' claims in client_assertion JWT",
        ),
    ];
    for (what, s, says) in faults {
        let client = PdsClient::new(s, clock.clone()).expect("client");
        let e = client.read(&nhs("9990000034")).await.expect_err(what);
        assert!(matches!(e, PdsError::TokenRefused { .. }), "{what}: {e:?}");
        assert_eq!(
            e.to_string(),
            format!("the PDS token endpoint refused the signed JWT: {says}"),
            "{what}"
        );
        // Held for half a minute: not asked again at once.
        client.read(&nhs("9990000034")).await.expect_err(what);
        assert_eq!(client.access_tokens().exchanges(), 1, "{what}");
    }
    // The clock this client runs on is the simulated platform's too: past the hold it asks again.
    let client = PdsClient::new(
        PdsSettings {
            key_id: "not-registered".into(),
            ..settings(&pds)
        },
        clock.clone(),
    )
    .expect("client");
    client.read(&nhs("9990000034")).await.expect_err("refused");
    clock.advance(chrono::Duration::seconds(31));
    client.read(&nhs("9990000034")).await.expect_err("refused");
    assert_eq!(client.access_tokens().exchanges(), 2);
    assert_eq!(pds.reads(), 0, "PDS never asked without a token");
}

#[tokio::test]
async fn the_private_key_problems_are_named() {
    let pds = pds(Arc::new(SystemClock)).await;
    let dir = tempfile::tempdir().expect("test setup");
    let not_rsa = dir.path().join("not-rsa.pem");
    std::fs::write(
        &not_rsa,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .expect("test setup");
    let missing = dir.path().join("missing.pem");
    for (path, says) in [
        (missing.clone(), "cannot be read"),
        (not_rsa.clone(), "is not an RSA private key in PEM"),
    ] {
        let e = PdsClient::new(
            PdsSettings {
                private_key: path.clone(),
                ..settings(&pds)
            },
            Arc::new(SystemClock),
        )
        .expect_err("refused");
        let text = e.to_string();
        assert!(text.starts_with("[pds] private_key `"), "{text}");
        assert!(
            text.contains(&path.display().to_string()) && text.contains(says),
            "{text}"
        );
    }
    let e = PdsClient::new(
        PdsSettings {
            token_url: "http://pds.example.org/oauth2/token".into(),
            ..settings(&pds)
        },
        Arc::new(SystemClock),
    )
    .expect_err("refused");
    assert_eq!(
        e.to_string(),
        "[pds] token_url `http://pds.example.org/oauth2/token` must be an https:// URL (http:// only on a loopback address)"
    );
}

/// The published example request (tests/fixtures/pds-auth/published-token-request.json), sent as
/// published: its form fields and content type reach the claim checks, and its JWT, signed in
/// 2021 by a key this platform never registered, is refused as expired, which is the first check
/// the platform makes of its claims. The same request with a JWT of the published shape, signed
/// by the registered key and current, gets a token in the published answer's shape.
#[tokio::test]
async fn the_published_example_request_and_answer() {
    let published: Value =
        serde_json::from_str(&fixture("published-token-request.json")).expect("fixture");
    let answer_example: Value =
        serde_json::from_str(&fixture("published-token-response.json")).expect("fixture");
    let clock = fixed();
    let pds = pds(clock.clone()).await;
    let form: Vec<(String, String)> = published["form"]
        .as_array()
        .expect("form")
        .iter()
        .map(|kv| {
            (
                kv[0].as_str().expect("name").to_owned(),
                kv[1].as_str().expect("value").to_owned(),
            )
        })
        .collect();
    let content_type = published["headers"]["Content-Type"]
        .as_str()
        .expect("header");
    let send = |form: Vec<(String, String)>| {
        let url = pds.token_url();
        async move {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form)
                .finish();
            let answer = reqwest::Client::new()
                .post(url)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .expect("request");
            let status = answer.status().as_u16();
            (status, answer.json::<Value>().await.expect("JSON"))
        }
    };
    let (status, body) = send(form.clone()).await;
    assert_eq!(
        error_of(status, body),
        refusal(
            400,
            "invalid_request",
            "Invalid 'exp' claim in client_assertion JWT - JWT has expired"
        )
    );

    // The published JWT's header and claims, as this application would send them now.
    let published_jwt = &form
        .iter()
        .find(|(k, _)| k == "client_assertion")
        .expect("jwt")
        .1;
    let part = |i: usize| -> Value {
        use base64::Engine;
        let raw = published_jwt.split('.').nth(i).expect("part");
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(raw)
                .expect("base64url"),
        )
        .expect("JSON")
    };
    let (mut h, mut c) = (part(0), part(1));
    assert_eq!(
        (h["alg"].as_str(), h["typ"].as_str()),
        (Some("RS512"), Some("JWT"))
    );
    let now = clock.now().timestamp();
    h["kid"] = json!(KID);
    for k in ["iss", "sub"] {
        c[k] = json!(API_KEY);
    }
    c["kid"] = json!(KID);
    c["aud"] = json!(pds.token_url());
    c["iat"] = json!(now);
    c["nbf"] = json!(now);
    c["exp"] = json!(now + 300);
    let header: Header = serde_json::from_value(h).expect("header");
    let ours = sign(&header, &c, "application-key.pem");
    let form: Vec<(String, String)> = form
        .into_iter()
        .map(|(k, v)| {
            if k == "client_assertion" {
                (k, ours.clone())
            } else {
                (k, v)
            }
        })
        .collect();
    let (status, token) = send(form).await;
    assert_eq!(status, 200, "{token}");
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&token), keys(&answer_example));
    assert_eq!(token["expires_in"], answer_example["expires_in"]);
    assert_eq!(token["token_type"], answer_example["token_type"]);
    assert_eq!(
        token["issued_at"],
        json!(clock.now().timestamp_millis().to_string())
    );
}

/// The JWT the client makes, checked by PyJWT (from PyPI; `scripts/test` installs it): the
/// RS512 signature with the public key, `aud`, `exp` required and current, and the header and
/// claims the platform asks for.
#[tokio::test]
async fn the_clients_jwt_verifies_with_pyjwt() {
    let pds = pds(Arc::new(SystemClock)).await;
    let client = PdsClient::new(settings(&pds), Arc::new(SystemClock)).expect("client");
    let jwt = client.access_tokens().client_assertion().expect("signed");
    let script = r#"
import json, sys, time, jwt
token, key, aud = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3]
claims = jwt.decode(token, key, algorithms=["RS512"], audience=aud,
                    options={"require": ["exp", "iss", "sub", "aud", "jti"]})
print(json.dumps({"header": jwt.get_unverified_header(token), "claims": claims,
                  "now": int(time.time())}))
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(jwt.expose_secret())
        .arg(fixture_path("application-public.pem"))
        .arg(pds.token_url())
        .output()
        .expect("python3 (scripts/test installs it, with PyJWT)");
    assert!(
        out.status.success(),
        "PyJWT refused the client's JWT: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        seen["header"],
        json!({"alg": "RS512", "typ": "JWT", "kid": KID})
    );
    let claims = &seen["claims"];
    assert_eq!(
        (claims["iss"].as_str(), claims["sub"].as_str()),
        (Some(API_KEY), Some(API_KEY))
    );
    assert_eq!(claims["aud"], json!(pds.token_url()));
    let ahead = claims["exp"].as_i64().expect("exp") - seen["now"].as_i64().expect("now");
    assert!((200..=300).contains(&ahead), "exp {ahead} s ahead");
    let jti = claims["jti"].as_str().expect("jti");
    assert!(uuid_shaped(jti), "{jti}");
    // A second JWT has another jti.
    let again = client.access_tokens().client_assertion().expect("signed");
    assert_ne!(again.expose_secret(), jwt.expose_secret());
}

fn uuid_shaped(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && parts
            .iter()
            .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}
