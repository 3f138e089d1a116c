//! The demo's identity provider ([`mcr_idp`]) as `mcr demo` runs it: the demo users, the
//! gateway registered as its client with a fresh secret, and the gateway's `[auth]` pointing
//! at it. (A real deployment points `[auth]` at the region's provider and holds no signing key.)

use crate::demo::DemoUser;
use anyhow::Context;
use mcr_domain::SystemClock;
use mcr_idp::{ClientRegistration, Idp, IdpConfig, IdpUser, SigningKey};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The `aud` of the gateway's API tokens.
pub const DEMO_AUDIENCE: &str = "mcr-gateway";
/// The gateway's client id at the demo provider.
pub const GATEWAY_CLIENT: &str = "mcr-gateway";
/// The client id named in tokens that `mcr demo-token` prints.
pub const DEMO_TOKEN_CLIENT: &str = "mcr-demo-token";
/// Lifetime of demo tokens: a working day.
const TOKEN_SECONDS: i64 = 12 * 3600;

/// The provider for the demo users.
pub fn demo_idp(
    issuer: &str,
    key: SigningKey,
    users: &[DemoUser],
    clients: Vec<ClientRegistration>,
) -> Idp {
    let users = users
        .iter()
        .map(|u| IdpUser {
            id: u.id.clone(),
            name: u.name.clone(),
            role: u.role.as_str().to_owned(),
            org: u.org_code.clone(),
            label: format!("{} — {}, {}", u.name, u.role.label(), u.org_name),
        })
        .collect();
    let config = IdpConfig {
        issuer: issuer.to_owned(),
        api_audience: DEMO_AUDIENCE.into(),
        clients,
        users,
        token_seconds: TOKEN_SECONDS,
    };
    Idp::new(config, key, Arc::new(SystemClock))
}

/// Start the demo provider on loopback (the gateway's port + 1 when that is free, so its
/// issuer stays the same between runs) with the gateway registered as a client; returns it,
/// its task, and the gateway's `[auth]` settings for it.
/// The demo's host system: a GP practice's clinical system that launches the viewer.
pub const DEMO_EHR_NAME: &str = "Parkbury House Surgery clinical system (demo)";
/// The gateway's client id at the demo's host system.
const EHR_CLIENT: &str = "mcr-viewer";

pub async fn start_idp(
    gateway: SocketAddr,
    key: SigningKey,
    users: &[DemoUser],
    gateway_url: &str,
    ehr_patients: Vec<mcr_idp::ehr::EhrPatient>,
) -> anyhow::Result<(
    Arc<Idp>,
    tokio::task::JoinHandle<()>,
    mcr_web::AuthConfig,
    mcr_web::SmartSettings,
)> {
    let preferred = match gateway.port() {
        0 | u16::MAX => 0,
        p => p + 1,
    };
    let listener = match TcpListener::bind(("127.0.0.1", preferred)).await {
        Ok(l) => l,
        Err(_) => TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the demo identity provider's port")?,
    };
    let issuer = format!("http://{}", listener.local_addr()?);
    let gateway = gateway_url.trim_end_matches('/');
    let secret = mcr_oidc::random_token();
    let client = ClientRegistration {
        client_id: GATEWAY_CLIENT.into(),
        client_secret: secret.clone().into(),
        redirect_uris: vec![
            format!("{gateway}/signin/callback"),
            format!("{gateway}/launch/signin/callback"),
        ],
    };
    // The demo's host system (`/ehr` beside the provider): the gateway is its SMART client.
    let ehr_secret = mcr_oidc::random_token();
    let ehr = mcr_idp::ehr::Ehr::new(
        DEMO_EHR_NAME,
        gateway_url,
        ClientRegistration {
            client_id: EHR_CLIENT.into(),
            client_secret: ehr_secret.clone().into(),
            redirect_uris: vec![format!("{gateway}/launch/callback")],
        },
        ehr_patients,
    );
    let idp = Arc::new(demo_idp(&issuer, key, users, vec![client]).with_ehr(ehr));
    let smart = mcr_web::SmartSettings {
        hosts: vec![mcr_web::launch::SmartHostSettings {
            name: DEMO_EHR_NAME.into(),
            iss: mcr_idp::ehr::fhir_base(&issuer),
            client_id: EHR_CLIENT.into(),
            client_secret: Some(ehr_secret.into()),
            algorithms: vec!["EdDSA".into()],
            user_match: mcr_web::launch::UserMatch {
                host_claim: "sub".into(),
                region_claim: "sub".into(),
            },
        }],
        ..mcr_web::SmartSettings::default()
    };
    let task = mcr_idp::serve(idp.clone(), listener);
    let auth = mcr_web::AuthConfig {
        issuer,
        client_id: GATEWAY_CLIENT.into(),
        client_secret: secret.into(),
        redirect_url: None,
        api_audience: DEMO_AUDIENCE.into(),
        algorithms: vec!["EdDSA".into()],
        scope: "openid profile".into(),
        claims: mcr_oidc::ClaimNames::default(),
    };
    Ok((idp, task, auth, smart))
}
