//! The secure network: HTTPS to the gateway, mutual TLS from the gateway to every source, and
//! the bad input at that boundary (a source with a certificate from another CA, a suspended
//! organisation's certificate, no client certificate, plain HTTP where it is not allowed).

use crate::helpers::{issue_codes, outcome, provenance_orgs, start, trusting_client, TestDemo, AE};
use std::process::Stdio;

fn today() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2026, 1, 15).expect("date")
}

/// A certificate from a CA that is not the region's, for `localhost` and 127.0.0.1.
fn rogue_identity(dir: &std::path::Path, org: &str) -> mcr_tls::Identity {
    mcr_tls::pki::init_ca(dir, today()).expect("rogue CA");
    let req = mcr_tls::pki::IssueRequest {
        org: org.into(),
        org_name: None,
        server_names: vec![],
    };
    let files = mcr_tls::pki::issue(dir, &req, today()).expect("rogue certificate");
    mcr_tls::Identity::load(&files.cert, &files.key).expect("load")
}

/// A client presenting `org`'s certificate from the demo CA (and trusting only that CA).
fn client_for(t: &TestDemo, org: &str) -> reqwest::Client {
    let ca = t.demo.info.ca_cert.as_ref().expect("ca");
    let data_dir = ca
        .parent()
        .and_then(|p| p.parent())
        .expect("DATA_DIR/pki/ca.pem");
    let pki = mcr::demo::DemoPki::open(data_dir, today()).expect("demo pki");
    let (files, _) = pki.issue(org, org, &[]).expect("issue");
    let mut pem = std::fs::read(&files.cert).expect("cert");
    pem.extend(std::fs::read(&files.key).expect("key"));
    trusting_client(&t.demo)
        .identity(reqwest::Identity::from_pem(&pem).expect("identity"))
        .build()
        .expect("client")
}

#[tokio::test]
async fn the_gateway_serves_https_and_sources_are_reached_over_mutual_tls() {
    let t = start().await;
    assert!(
        t.demo.info.gateway_url.starts_with("https://"),
        "{}",
        t.demo.info.gateway_url
    );
    assert!(t
        .demo
        .info
        .sources
        .iter()
        .all(|s| s.url.starts_with("https://")));
    // A client that does not trust the regional CA cannot talk to the gateway.
    let stranger = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .build()
        .expect("client");
    let err = stranger
        .get(t.url("/healthz"))
        .send()
        .await
        .expect_err("untrusted server certificate");
    assert!(err.is_connect(), "{err:?}");
    // One that does, can; and a record view gathers all four sources over mutual TLS.
    let nhs = t.patient("all_four_sources", 0);
    t.give_permission(AE, &nhs).await;
    let (status, bundle) = t.everything(AE, &nhs).await;
    assert_eq!(status, 200, "{bundle}");
    let codes = issue_codes(outcome(&bundle));
    assert_eq!(
        codes.iter().filter(|(c, _)| c == "source-ok").count(),
        4,
        "{codes:?}"
    );
}

#[tokio::test]
async fn a_source_presenting_a_certificate_from_another_ca_is_failed_and_the_rest_are_shown() {
    let mut t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    t.give_permission(AE, &nhs).await;
    // Replace the community source, on the same address, by one whose certificate comes from
    // another CA (it would accept the gateway: the gateway must still not trust it).
    let i = t
        .demo
        .info
        .sources
        .iter()
        .position(|s| s.id == "community")
        .expect("community");
    let old = t.demo.sources.remove(i);
    let (addr, slice) = (old.addr(), old.slice().clone());
    old.shutdown().await;
    let rogue_dir = tempfile::tempdir().expect("dir");
    let tls = mcr_sources::SourceTls {
        identity: rogue_identity(rogue_dir.path(), "RY4"),
        client_ca: mcr_tls::load_roots(t.demo.info.ca_cert.as_ref().expect("ca")).expect("roots"),
        refused: vec![],
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("same address");
    let rogue = mcr_sources::serve_with(
        slice,
        listener,
        Default::default(),
        mcr_sources::SourceOptions {
            tls: Some(tls),
            ..Default::default()
        },
    )
    .await
    .expect("rogue source");

    let (status, bundle) = t.everything(AE, &nhs).await;
    assert_eq!(status, 200, "{bundle}");
    let oo = outcome(&bundle);
    let codes = issue_codes(oo);
    assert!(
        codes.contains(&("source-unreachable".to_owned(), "community".to_owned())),
        "{codes:?}"
    );
    assert!(oo.to_string().contains("certificate not trusted"), "{oo}");
    assert_eq!(
        codes.iter().filter(|(c, _)| c == "source-ok").count(),
        3,
        "{codes:?}"
    );
    let orgs = provenance_orgs(&bundle);
    assert!(!orgs.contains("RY4"), "nothing from the untrusted source");
    assert!(orgs.contains("RWH"), "{orgs:?}");
    assert_eq!(
        rogue.requests_served(),
        0,
        "no request was sent to the untrusted source"
    );
    rogue.shutdown().await;
}

#[tokio::test]
async fn a_suspended_organisations_client_certificate_is_refused_by_the_source() {
    let t = start().await;
    let acute = t.demo.source("acute").expect("acute");
    let url = format!("{}/metadata", acute.base_url());
    // A member organisation's certificate from the regional CA is accepted...
    let hospice = client_for(&t, "G9H01");
    assert_eq!(
        hospice.get(&url).send().await.expect("accepted").status(),
        200
    );
    // ...until the organisation is suspended: then the source refuses the handshake.
    acute.set_org_refused("G9H01", true);
    let refused = client_for(&t, "G9H01");
    let err = refused
        .get(&url)
        .send()
        .await
        .expect_err("a suspended organisation is refused");
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    // The gateway's own organisation suspended by a source: that source fails in the view, named.
    let nhs = t.patient("all_four_sources", 0);
    t.give_permission(AE, &nhs).await;
    acute.set_org_refused(mcr::demo::GATEWAY_ORG, true);
    let (status, bundle) = t.everything(AE, &nhs).await;
    assert_eq!(status, 200, "{bundle}");
    // Refused on a new connection (the handshake) or on one opened before the suspension (a
    // 403, and the connection closed): either way that source failed, and says so.
    let codes = issue_codes(outcome(&bundle));
    assert!(
        codes.contains(&("source-unreachable".to_owned(), "acute".to_owned()))
            || codes.contains(&("source-http-status".to_owned(), "acute".to_owned())),
        "{codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|(c, _)| c == "source-ok").count(),
        3,
        "{codes:?}"
    );
}

#[tokio::test]
async fn sources_refuse_a_client_without_a_certificate_or_with_one_from_another_ca() {
    let t = start().await;
    let url = format!("{}/metadata", t.demo.source("gp").expect("gp").base_url());
    let served_before = t.demo.source("gp").expect("gp").requests_served();
    let anonymous = trusting_client(&t.demo).build().expect("client");
    assert!(
        anonymous.get(&url).send().await.is_err(),
        "no client certificate: refused"
    );
    let rogue_dir = tempfile::tempdir().expect("dir");
    let rogue = rogue_identity(rogue_dir.path(), "RWH");
    let mut config = mcr_tls::client_config(
        mcr_tls::load_roots(t.demo.info.ca_cert.as_ref().expect("ca")).expect("roots"),
        Some(rogue),
    )
    .expect("config");
    config.alpn_protocols.clear();
    let stranger = reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .build()
        .expect("client");
    assert!(
        stranger.get(&url).send().await.is_err(),
        "a certificate from another CA: refused"
    );
    assert_eq!(
        t.demo.source("gp").expect("gp").requests_served(),
        served_before,
        "no request got through"
    );
}

#[tokio::test]
async fn plain_http_is_refused_at_start_up_except_on_loopback() {
    // The demo: --insecure-http on a non-loopback address.
    let dir = tempfile::tempdir().expect("dir");
    let opts = mcr::demo::DemoOptions {
        listen: "0.0.0.0:0".parse().expect("addr"),
        data_dir: dir.path().to_path_buf(),
        patients: 200,
        insecure_http: true,
        ..Default::default()
    };
    let err = mcr::demo::start(&opts).await.expect_err("refused");
    assert!(
        format!("{err:#}").contains("refusing to serve plain HTTP"),
        "{err:#}"
    );

    // `mcr serve --insecure-http` on 0.0.0.0: a clear error and a failing exit, before anything starts.
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"0.0.0.0:0\"\ndata_dir = \"{}\"\n[auth]\nissuer = \"https://idp.invalid\"\nclient_id = \"mcr\"\nclient_secret = \"s\"\n\n\
             [[sources]]\nid = \"gp\"\nbase_url = \"http://127.0.0.1:9\"\nresource_types = [\"Patient\"]\n\
             organisation = {{ code = \"E82000\", name = \"GP\", kind = \"gp-practice\", member = true }}\n",
            dir.path().display()
        ),
    )
    .expect("config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcr"))
        .args(["serve", "--insecure-http", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .expect("mcr serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("refusing to serve plain HTTP on 0.0.0.0"),
        "{stderr}"
    );

    // Plain HTTP on loopback, explicitly asked for, works (local development).
    let dir = tempfile::tempdir().expect("dir");
    let opts = mcr::demo::DemoOptions {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().to_path_buf(),
        patients: 200,
        insecure_http: true,
        ..Default::default()
    };
    let demo = mcr::demo::start(&opts)
        .await
        .expect("plain HTTP on loopback");
    assert!(demo.info.gateway_url.starts_with("http://127.0.0.1:"));
    let body = reqwest::get(format!("{}/healthz", demo.info.gateway_url))
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    assert_eq!(body, "ok");
    demo.stop().await;
}

#[tokio::test]
async fn the_end_users_identity_arrives_at_each_source_as_a_signed_token() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    t.give_permission(AE, &nhs).await;
    let (status, bundle) = t.everything(AE, &nhs).await;
    assert_eq!(status, 200, "{bundle}");
    // The GP system is asked through GP Connect, at the patient's registered practice's
    // endpoint: its token is the one GP Connect requires, with that endpoint as audience.
    let gp = t.demo.source("gp").expect("gp");
    let seen = gp.identities_seen();
    let c = seen
        .iter()
        .rev()
        .find(|c| c["sub"] == AE)
        .unwrap_or_else(|| panic!("gp saw {seen:?}"));
    let practice = t
        .demo
        .region
        .person(&mcr_domain::NhsNumber::parse(&nhs).expect("nhs"))
        .expect("person")
        .gp_practice
        .clone();
    assert_eq!(
        c["aud"],
        format!(
            "{}{}",
            gp.base_url(),
            mcr_sources::gpconnect::practice_path(practice.as_str())
        )
    );
    assert_eq!(c["reason_for_request"], "directcare");
    assert_eq!(c["requested_scope"], "patient/*.read");
    assert_eq!(c["requesting_device"]["resourceType"], "Device");
    assert_eq!(
        c["requesting_organization"]["identifier"][0]["value"], "RWH",
        "the user's organisation"
    );
    assert_eq!(c["requesting_practitioner"]["id"], AE);
    assert!(
        c["requesting_practitioner"]["identifier"]
            .as_array()
            .expect("identifiers")
            .iter()
            .any(|i| i["value"] == mcr_domain::Role::Clinician.as_str()),
        "the user's role: {c}"
    );
    assert_eq!(
        c["exp"].as_i64().expect("exp") - c["iat"].as_i64().expect("iat"),
        300
    );
    assert_eq!(gp.identity_counts().1, 0, "gp: every token was valid");
    for id in ["acute", "community", "socialcare"] {
        let source = t.demo.source(id).expect("source");
        let seen = source.identities_seen();
        let c = seen
            .iter()
            .rev()
            .find(|c| c["sub"] == AE)
            .unwrap_or_else(|| panic!("{id} saw {seen:?}"));
        assert_eq!(c["iss"], t.demo.info.gateway_url.as_str());
        assert_eq!(c["aud"], source.base_url().as_str());
        assert_eq!(c["reason_for_request"], "directcare");
        assert_eq!(c["requested_scope"], "patient/*.read");
        assert_eq!(
            c["requested_record"]["identifier"][0]["value"],
            nhs.as_str()
        );
        assert_eq!(
            c["requesting_organization"]["identifier"][0]["system"],
            "https://fhir.nhs.uk/Id/ods-organization-code"
        );
        assert_eq!(
            c["requesting_organization"]["identifier"][0]["value"], "RWH",
            "the user's organisation"
        );
        assert_eq!(c["requesting_practitioner"]["id"], AE);
        assert_eq!(
            c["requesting_practitioner"]["practitionerRole"][0]["role"]["coding"][0]["code"],
            mcr_domain::Role::Clinician.as_str()
        );
        let (iat, exp) = (
            c["iat"].as_i64().expect("iat"),
            c["exp"].as_i64().expect("exp"),
        );
        assert!(exp > iat && exp - iat <= 300, "short-lived: {iat}..{exp}");
        let (verified, rejected) = source.identity_counts();
        assert!(verified > 0);
        assert_eq!(
            rejected, 0,
            "{id}: every request of the gateway carried a valid token"
        );
    }
    // The index sync at start-up carried the gateway's own identity.
    let gp = t.demo.source("gp").expect("gp");
    let system = gp
        .identities_seen()
        .into_iter()
        .find(|c| c["sub"] == "system:patient-index");
    let system = system.expect("index sync identified itself");
    assert_eq!(
        system["requesting_organization"]["identifier"][0]["value"],
        mcr::demo::GATEWAY_ORG
    );

    // A client with a good certificate but no token, or a token signed with another key: 401.
    let client = client_for(&t, "G9H01");
    let url = format!("{}/Patient?_count=1", gp.base_url());
    let resp = client.get(&url).send().await.expect("request");
    assert_eq!(resp.status(), 401);
    let stranger_key =
        ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .expect("key");
    let claims = serde_json::json!({
        "iss": t.demo.info.gateway_url, "sub": AE, "aud": gp.base_url(), "iat": 1_900_000_000i64, "exp": 1_900_000_100i64,
        "reason_for_request": "directcare",
        "requesting_organization": {"identifier": [{"value": "RWH"}]},
    });
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_der(stranger_key.as_ref()),
    )
    .expect("sign");
    let resp = client
        .get(&url)
        .bearer_auth(forged)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 401);
    assert!(gp.identity_counts().1 >= 2);
}
