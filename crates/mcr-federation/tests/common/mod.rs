//! What the GP Connect tests share: a stand-in provider served on port 0, a GP Connect
//! source that reaches it through the stand-in Spine Secure Proxy, and the gateway's identity
//! signer on a fixed clock.

use mcr_domain::{OdsCode, OrgKind, Organisation, SourceId};
use mcr_federation::gpconnect::GpConnectConfig;
use mcr_federation::{IdentitySigner, SourceConfig, SourceKind};
use std::net::SocketAddr;
use std::sync::Arc;

/// Serve `app` on a port of its own; its address.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// The GP Connect source of the practice `A20047` (named `practice`) at `provider`, reached
/// through the proxy at `proxy`.
pub fn source_config(provider: &str, practice: &str, proxy: SocketAddr) -> SourceConfig {
    SourceConfig {
        id: SourceId::parse("gp").expect("id"),
        organisation: Organisation {
            code: OdsCode::parse("A20047").expect("ods"),
            name: practice.into(),
            kind: OrgKind::GpPractice,
            member: true,
            suspended: false,
        },
        base_url: url::Url::parse(provider).expect("url"),
        resource_types: vec![],
        batch: false,
        kind: SourceKind::GpConnect,
        gp_connect: Some(GpConnectConfig {
            ssp_prefix: Some(url::Url::parse(&format!("http://{proxy}/ssp")).expect("url")),
            consumer_asid: "200000000115".into(),
            provider_asid: "200000000116".into(),
            directory: None,
        }),
        deadline_ms: None,
        feed_timeout_secs: None,
        patient_search: Default::default(),
        identifier_search: Default::default(),
    }
}

/// The gateway `MCR01`'s identity signer, with a fresh key, on a fixed clock.
pub fn signer() -> Arc<IdentitySigner> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("key");
    let clock = Arc::new(mcr_domain::FixedClock::new(
        chrono::DateTime::<chrono::Utc>::from_timestamp(1_795_000_000, 0).expect("time"),
    ));
    Arc::new(
        IdentitySigner::new(
            pkcs8.as_ref(),
            "https://mcr.example",
            OdsCode::parse("MCR01").expect("ods"),
            clock,
        )
        .expect("signer"),
    )
}
