//! SMART backend services against the running demo over real HTTPS: a system finds the token
//! endpoint (SMART configuration and CapabilityStatement), signs a client assertion (RS384 with
//! a key given inline, ES384 with a key published at a JWKS URL), gets a token and reads a
//! record for the end user its assertion names, audited with the system. Every bad input is
//! refused with a clear message and audited: a replayed, expired or wrongly addressed
//! assertion, one signed by a key not in the client's JWKS, an unknown client, a scope beyond
//! the client's, and a view that names no user.
//!
//! The RSA key in `tests/backend/` was made for this test only (`rs384-test-key.pem`, with its
//! public JWK Set beside it); it is registered nowhere else.

use crate::helpers::{b64url, resources, start, start_opts, test_options, TestDemo};
use mcr_web::system::SystemClientConfig;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
use serde_json::{json, Value};

const RS_KEY: &str = include_str!("backend/rs384-test-key.pem");
const RS_JWKS: &str = include_str!("backend/rs384-test-jwks.json");

/// A P-384 key: its signing key and its public JWK Set.
fn p384(kid: &str) -> (jsonwebtoken::EncodingKey, Value) {
    let rng = ring::rand::SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).expect("key");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, doc.as_ref(), &rng)
        .expect("key");
    let point = pair.public_key().as_ref();
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-384", "kid": kid, "alg": "ES384",
        "x": b64url(&point[1..49]), "y": b64url(&point[49..])}]});
    (jsonwebtoken::EncodingKey::from_ec_der(doc.as_ref()), jwks)
}

/// Serve a JWKS on loopback over plain HTTP (allowed for loopback only).
async fn serve_jwks(jwks: Value) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let j = jwks.clone();
            async move { axum::Json(j) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/jwks.json")
}

fn sign(
    alg: jsonwebtoken::Algorithm,
    kid: &str,
    key: &jsonwebtoken::EncodingKey,
    claims: &Value,
) -> String {
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

fn claims(client: &str, aud: &str, user: Option<Value>) -> Value {
    let now = mcr_domain::Clock::now(&mcr_domain::SystemClock).timestamp();
    let mut c = json!({"iss": client, "sub": client, "aud": aud, "exp": now + 240,
        "jti": uuid::Uuid::new_v4().to_string()});
    if let Some(u) = user {
        c["requesting_user"] = u;
    }
    c
}

async fn ask_token(t: &TestDemo, assertion: &str, scope: &str) -> (u16, Value) {
    let resp = t
        .http
        .post(t.url("/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
            ("scope", scope),
        ])
        .send()
        .await
        .expect("token request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON"))
}

/// The audit records of an action, as events.
async fn audited(t: &TestDemo, action: &str) -> Vec<mcr_audit::AuditEvent> {
    t.demo
        .gateway
        .gateway
        .store()
        .query_audit(&mcr_store::AuditQuery {
            actions: vec![action.into()],
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("audit query")
        .iter()
        .map(|r| serde_json::from_str(&r.record.payload).expect("event"))
        .collect()
}

#[tokio::test]
async fn a_system_reads_a_record_for_its_end_user_and_bad_assertions_are_refused() {
    let (es_key, es_jwks) = p384("es-1");
    let jwks_url = serve_jwks(es_jwks).await;
    let acute = "RWH";
    let rs_client = SystemClientConfig {
        client_id: "rs-epr".into(),
        name: "Test EPR (RS384, inline keys)".into(),
        organisation: acute.into(),
        jwks_url: None,
        jwks: Some(serde_json::from_str(RS_JWKS).expect("JWKS")),
        scopes: vec!["system/*.rs".into()],
        unattended_role: None,
    };
    let es_client = SystemClientConfig {
        client_id: "es-engine".into(),
        name: "Test integration engine (ES384, JWKS URL)".into(),
        organisation: acute.into(),
        jwks_url: Some(jwks_url),
        jwks: None,
        scopes: vec!["system/Patient.rs".into()],
        unattended_role: None,
    };
    let t = start_opts(mcr::demo::DemoOptions {
        system_clients: vec![rs_client, es_client],
        ..test_options()
    })
    .await;
    let aud = t.url("/oauth/token");
    let info = &t.demo.info;
    assert_eq!(
        info.system_client.as_ref().map(|s| s.organisation.as_str()),
        Some(acute),
        "the demo's own system client is the acute trust's"
    );

    // Discovery: the SMART configuration and the CapabilityStatement name the token endpoint.
    let (status, config) = t
        .get_with("unused", "/fhir/.well-known/smart-configuration")
        .await;
    assert_eq!(status, 200, "{config}");
    assert_eq!(config["token_endpoint"], json!(aud));
    assert_eq!(
        config["grant_types_supported"],
        json!(["client_credentials"])
    );
    assert_eq!(
        config["token_endpoint_auth_methods_supported"],
        json!(["private_key_jwt"])
    );
    assert_eq!(
        config["token_endpoint_auth_signing_alg_values_supported"],
        json!(["RS384", "ES384"])
    );
    for cap in ["client-confidential-asymmetric", "permission-v2"] {
        assert!(config["capabilities"]
            .as_array()
            .expect("list")
            .contains(&json!(cap)));
    }
    let (_, metadata) = t.get_with("unused", "/fhir/metadata").await;
    let security = &metadata["rest"][0]["security"];
    assert_eq!(security["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
    assert_eq!(
        security["extension"][0]["url"],
        "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    );
    assert_eq!(
        security["extension"][0]["extension"][0]["valueUri"],
        json!(aud)
    );

    // The A&E doctor has the patient's permission; the acute trust's EPR reads the record
    // for them with an RS384 assertion.
    let doctor = info
        .users
        .iter()
        .find(|u| u.id == "ae.okafor")
        .expect("demo user")
        .clone();
    let nhs = t.patient("all_four_sources", 0);
    t.give_permission("ae.okafor", &nhs).await;
    let rs = jsonwebtoken::EncodingKey::from_rsa_pem(RS_KEY.as_bytes()).expect("RSA key");
    let user = json!({"id": doctor.id, "name": doctor.name, "role": "clinician"});
    let assertion = sign(
        jsonwebtoken::Algorithm::RS384,
        "test-rs384-1",
        &rs,
        &claims("rs-epr", &aud, Some(user.clone())),
    );
    let (status, token) = ask_token(&t, &assertion, "system/*.rs").await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["token_type"], "bearer");
    assert_eq!(token["scope"], "system/*.rs");
    assert!(token["expires_in"]
        .as_i64()
        .is_some_and(|s| (30..=300).contains(&s)));
    let access = token["access_token"].as_str().expect("token").to_owned();
    let (status, bundle) = t
        .get_with(&access, &format!("/fhir/Patient/{nhs}/$everything"))
        .await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(bundle["resourceType"], "Bundle");
    assert!(!resources(&bundle, "Patient").is_empty());
    // The view is audited for the doctor, at the acute trust, through the system.
    let views = audited(&t, "view-record").await;
    let view = views
        .iter()
        .find(|e| e.system.as_deref() == Some("rs-epr"))
        .expect("the system's view is audited");
    assert_eq!(
        (
            view.user_id.as_str(),
            view.org_code.as_str(),
            view.outcome.as_str()
        ),
        ("ae.okafor", acute, "permit")
    );
    // And shown so to privacy officers: the system is an agent of the FHIR AuditEvent.
    let (status, events) = t
        .get("po.wright", &format!("/fhir/AuditEvent?patient={nhs}"))
        .await;
    assert_eq!(status, 200, "{events}");
    assert!(
        events.to_string().contains("\"value\":\"rs-epr\""),
        "the system named in the AuditEvent"
    );

    // The same token for a patient the doctor has no relationship with: decided like any view.
    let stranger = t.patient("gp_only", 0);
    let (status, body) = t
        .get_with(&access, &format!("/fhir/Patient/{stranger}/$everything"))
        .await;
    assert_eq!(status, 403, "{body}");

    // ES384, keys at the client's JWKS URL, a one-type scope: reads Patient, not the record.
    let es_assertion = |c: &Value| sign(jsonwebtoken::Algorithm::ES384, "es-1", &es_key, c);
    let (status, token) = ask_token(
        &t,
        &es_assertion(&claims("es-engine", &aud, Some(user.clone()))),
        "system/Patient.rs",
    )
    .await;
    assert_eq!(status, 200, "{token}");
    let es_access = token["access_token"].as_str().expect("token").to_owned();
    let (status, body) = t
        .get_with(
            &es_access,
            &format!("/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = t
        .get_with(&es_access, &format!("/fhir/Patient/{nhs}/$everything"))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.to_string().contains("insufficient-scope"), "{body}");

    // Bad inputs: each refused with the OAuth error and a sentence, and audited.
    let replayed = assertion.clone();
    let (status, body) = ask_token(&t, &replayed, "system/*.rs").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    assert!(body["error_description"]
        .as_str()
        .expect("words")
        .contains("used already"));

    let mut expired = claims("rs-epr", &aud, Some(user.clone()));
    expired["exp"] = json!(mcr_domain::Clock::now(&mcr_domain::SystemClock).timestamp() - 10);
    let cases: Vec<(&str, String, &str, u16, &str, &str)> = vec![
        (
            "expired",
            sign(
                jsonwebtoken::Algorithm::RS384,
                "test-rs384-1",
                &rs,
                &expired,
            ),
            "system/*.rs",
            401,
            "invalid_client",
            "assertion-expired",
        ),
        (
            "wrong aud",
            sign(
                jsonwebtoken::Algorithm::RS384,
                "test-rs384-1",
                &rs,
                &claims("rs-epr", &t.url("/fhir"), None),
            ),
            "system/*.rs",
            401,
            "invalid_client",
            "assertion-wrong-audience",
        ),
        (
            "a key not in the client's JWKS",
            {
                let (other, _) = p384("es-1");
                sign(
                    jsonwebtoken::Algorithm::ES384,
                    "es-1",
                    &other,
                    &claims("es-engine", &aud, None),
                )
            },
            "system/Patient.rs",
            401,
            "invalid_client",
            "assertion-bad-signature",
        ),
        (
            "a key id not in the client's JWKS",
            sign(
                jsonwebtoken::Algorithm::RS384,
                "someone-elses",
                &rs,
                &claims("rs-epr", &aud, None),
            ),
            "system/*.rs",
            401,
            "invalid_client",
            "assertion-unknown-key",
        ),
        (
            "unknown client",
            sign(
                jsonwebtoken::Algorithm::RS384,
                "test-rs384-1",
                &rs,
                &claims("not-registered", &aud, None),
            ),
            "system/*.rs",
            401,
            "invalid_client",
            "unknown-client",
        ),
        (
            "scope beyond the client's",
            es_assertion(&claims("es-engine", &aud, None)),
            "system/*.rs",
            400,
            "invalid_scope",
            "scope-beyond-client",
        ),
        (
            "a write scope",
            sign(
                jsonwebtoken::Algorithm::RS384,
                "test-rs384-1",
                &rs,
                &claims("rs-epr", &aud, None),
            ),
            "system/Consent.cu",
            400,
            "invalid_scope",
            "scope-beyond-client",
        ),
        (
            "a malformed end user",
            sign(
                jsonwebtoken::Algorithm::RS384,
                "test-rs384-1",
                &rs,
                &claims("rs-epr", &aud, Some(json!({"id": "x", "role": "overlord"}))),
            ),
            "system/*.rs",
            400,
            "invalid_request",
            "malformed-requesting-user",
        ),
    ];
    for (what, assertion, scope, want_status, want_error, _) in &cases {
        let (status, body) = ask_token(&t, assertion, scope).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (*want_status, Some(*want_error)),
            "{what}: {body}"
        );
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| d.len() > 20),
            "{what}: a sentence saying why: {body}"
        );
    }
    // A symmetric "signature" is no signature.
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims("rs-epr", &aud, None),
        &jsonwebtoken::EncodingKey::from_secret(b"guess"),
    )
    .expect("sign");
    let (status, body) = ask_token(&t, &hs, "system/*.rs").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );

    let tokens = audited(&t, "issue-system-token").await;
    let denied: Vec<&str> = tokens
        .iter()
        .filter(|e| e.outcome == "deny")
        .filter_map(|e| e.basis.as_deref())
        .collect();
    for code in cases
        .iter()
        .map(|c| c.5)
        .chain(["assertion-replayed", "assertion-algorithm"])
    {
        assert!(denied.contains(&code), "{code} audited: {denied:?}");
    }
    let issued = tokens
        .iter()
        .find(|e| e.outcome == "permit" && e.system.as_deref() == Some("rs-epr"))
        .expect("the issued token audited");
    assert_eq!(
        (issued.user_id.as_str(), issued.org_code.as_str()),
        ("ae.okafor", acute)
    );

    // A token that names no end user views nothing (the demo system is not unattended).
    let demo_system = info.system_client.as_ref().expect("demo system");
    let (status, token) = ask_token(
        &t,
        &mcr::demo::system::assertion(demo_system, None, &mcr_domain::SystemClock)
            .expect("assertion"),
        "system/*.rs",
    )
    .await;
    assert_eq!(status, 200, "{token}");
    let (status, body) = t
        .get_with(
            token["access_token"].as_str().expect("token"),
            &format!("/fhir/Patient/{nhs}/$everything"),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.to_string().contains("system-without-user"), "{body}");
    let refused = audited(&t, "authenticate:system").await;
    assert!(
        refused
            .iter()
            .any(|e| e.system.as_deref() == Some("acute-epr")
                && e.basis.as_deref() == Some("system-without-user")),
        "{refused:?}"
    );
    // A token this gateway never issued.
    let (status, body) = t
        .get_with("mcrs.forged", &format!("/fhir/Patient/{nhs}/$everything"))
        .await;
    assert_eq!(status, 401, "{body}");

    // The demo's own client, through `mcr demo-assertion`'s code, for the named doctor.
    let (status, token) = ask_token(
        &t,
        &mcr::demo::system::assertion(demo_system, Some(&doctor), &mcr_domain::SystemClock)
            .expect("assertion"),
        "system/*.rs",
    )
    .await;
    assert_eq!(status, 200, "{token}");
    let (status, bundle) = t
        .get_with(
            token["access_token"].as_str().expect("token"),
            &format!("/fhir/Patient/{nhs}/$everything"),
        )
        .await;
    assert_eq!(status, 200, "{bundle}");
    t.demo.stop().await;
}

/// A standard SMART client library from PyPI (`fhirclient`, with `PyJWT` for the assertion:
/// `tests/smart-client/`) discovers the gateway's SMART configuration, gets a backend services
/// token with the demo system's key and reads `$everything`. Fails, never skips, without them
/// (`python3 -m pip install -r tests/smart-client/requirements.txt`).
#[tokio::test]
async fn a_standard_smart_client_library_reads_everything_with_a_backend_services_token() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let t = start().await;
    let info = &t.demo.info;
    let nhs = t.patient("all_four_sources", 0);
    t.give_permission("ae.okafor", &nhs).await;
    let system = info
        .system_client
        .as_ref()
        .expect("demo.json names the system client");
    let doctor = info
        .users
        .iter()
        .find(|u| u.id == "ae.okafor")
        .expect("demo user");
    let args = json!({
        "fhir_base": info.fhir_base,
        "client_id": system.client_id,
        "key": system.key,
        "kid": system.kid,
        "alg": "ES384",
        "scope": system.scope,
        "nhs": nhs,
        "requesting_user": {"id": doctor.id, "name": doctor.name, "role": doctor.role.as_str()},
    });
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/smart-client/backend_services.py"
    );
    let mut child = Command::new("python3")
        .arg(script)
        .env("REQUESTS_CA_BUNDLE", info.ca_cert.as_ref().expect("CA"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(args.to_string().as_bytes())
        .expect("write");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("the client ran");
    assert!(
        out.status.success(),
        "the SMART client failed (python3 -m pip install -r tests/smart-client/requirements.txt): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("the client's JSON");
    assert_eq!(summary["token_endpoint"], json!(t.url("/oauth/token")));
    assert_eq!(summary["resourceType"], "Bundle");
    let types = summary["types"].as_array().expect("types");
    for ty in ["Patient", "Provenance", "OperationOutcome"] {
        assert!(types.contains(&json!(ty)), "{ty} in {summary}");
    }
    // The view it made is the doctor's, through the demo's system, audited.
    let views = audited(&t, "view-record").await;
    assert!(views
        .iter()
        .any(|e| e.system.as_deref() == Some("acute-epr")
            && e.user_id == "ae.okafor"
            && e.outcome == "permit"));
    t.demo.stop().await;
}
