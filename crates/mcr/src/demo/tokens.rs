//! The demo's identity provider ([`mcr_idp`]) as `mcr demo` runs it: the demo users, the
//! gateway registered as its client with a fresh secret, and the gateway's `[auth]` pointing
//! at it. (A real deployment points `[auth]` at the region's provider and holds no signing key.)

use crate::demo::DemoUser;
use anyhow::Context;
use mcr_domain::Role;
use mcr_domain::SystemClock;
use mcr_idp::{ClientRegistration, Idp, IdpConfig, IdpRoleProfile, IdpUser, SigningKey};
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
            role_profiles: demo_profiles(u),
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

/// A national job role and activity for a demo role, as the shipped national RBAC mapping
/// (`mcr-oidc/cis2-rbac-mapping.toml`) reads them back.
fn national_role(role: Role) -> (&'static str, &'static str, &'static [&'static str]) {
    match role {
        Role::Clinician => (
            "S8000:G8000:R8000",
            "\"Clinical\":\"Clinical Provision\":\"Clinical Practitioner Access Role\"",
            &["B0380", "B0825"],
        ),
        Role::Nurse | Role::Paramedic => (
            "S8000:G8000:R8001",
            "\"Clinical\":\"Clinical Provision\":\"Nurse Access Role\"",
            &["B0380", "B0825"],
        ),
        Role::Pharmacist => (
            "S8000:G8000:R8003",
            "\"Clinical\":\"Clinical Provision\":\"Health Professional Access Role\"",
            &["B0570", "B0401"],
        ),
        Role::SocialCarePractitioner => (
            "S8000:G8000:R0243",
            "\"Clinical\":\"Clinical Provision\":\"Other Community Health Service - Social Care Worker\"",
            &[],
        ),
        Role::Admin => (
            "S8001:G8001:R8009",
            "\"Admin and Clerical\":\"Admin and Clerical\":\"Receptionist Access Role\"",
            &["B0825"],
        ),
        Role::PrivacyOfficer => (
            "S8002:G8003:R0001",
            "\"Admin and Clerical\":\"Admin and Clerical\":\"Privacy Officer\"",
            &["B0016", "B0015", "B0018"],
        ),
        Role::CaldicottGuardian => (
            "S8002:G8003:R5105",
            "\"Admin and Clerical\":\"Admin and Clerical\":\"Caldicott Guardian\"",
            &[],
        ),
    }
}

/// A demo user's CIS2 role profiles: their role at their organisation, and a second one
/// when they have it. Profile ids are stable per user and organisation.
pub fn demo_profiles(u: &DemoUser) -> Vec<IdpRoleProfile> {
    let profile = |n: u32, role: Role, org: &str| {
        let (role_code, role_name, acts) = national_role(role);
        IdpRoleProfile {
            person_roleid: format!("{}-{n}", u.id),
            org_code: org.to_owned(),
            role_code: role_code.into(),
            role_name: role_name.into(),
            activity_codes: acts.iter().map(|a| (*a).to_owned()).collect(),
        }
    };
    let mut out = vec![profile(1, u.role, &u.org_code)];
    if let Some((role, org)) = &u.second_profile {
        out.push(profile(2, *role, org));
    }
    out
}

/// Start the demo provider on loopback (the gateway's port + 1 when that is free, so its
/// issuer stays the same between runs) with the gateway registered as a client; returns it,
/// its task, and the gateway's `[auth]` settings for it.
/// The demo's host system: a GP practice's clinical system that launches the viewer.
pub const DEMO_EHR_NAME: &str = "Parkbury House Surgery clinical system (demo)";
/// The gateway's client id at the demo's host system.
const EHR_CLIENT: &str = "mcr-viewer";

/// The demo's NHS login client: a fresh P-384 key pair, its private key written (PKCS#8 PEM)
/// to `key_path` for the gateway, its public key registered at the demo provider.
fn nhs_login_client(
    issuer: &str,
    gateway: &str,
    key_path: &std::path::Path,
    patients: &[crate::demo::DemoPatientLogin],
) -> anyhow::Result<(
    mcr_idp::NhsLoginClient,
    Vec<mcr_idp::IdpPatient>,
    mcr_oidc::NhsLoginConfig,
)> {
    use base64::Engine;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("generating the demo NHS login client key"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| anyhow::anyhow!("reading the demo NHS login client key"))?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    );
    std::fs::write(key_path, pem).with_context(|| format!("writing {}", key_path.display()))?;
    // The public key is the uncompressed point: 0x04, x, y.
    let point = pair.public_key().as_ref();
    let enc = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let public_key =
        jsonwebtoken::DecodingKey::from_ec_components(&enc(&point[1..49]), &enc(&point[49..97]))
            .context("the demo NHS login client's public key")?;
    let client = mcr_idp::NhsLoginClient {
        client_id: DEMO_NHS_LOGIN_CLIENT.into(),
        redirect_uris: vec![format!("{gateway}/my-record/signin/callback")],
        public_key,
        alg: jsonwebtoken::Algorithm::ES384,
    };
    let accounts = patients
        .iter()
        .map(|p| mcr_idp::IdpPatient {
            id: p.login_id.clone(),
            label: format!("{} (identity proved to {})", p.label, p.level),
            level: p.level.clone(),
            nhs_number: Some(p.nhs_number.clone()),
        })
        .collect();
    let config = mcr_oidc::NhsLoginConfig {
        issuer: issuer.to_owned(),
        client_id: DEMO_NHS_LOGIN_CLIENT.into(),
        private_key: key_path.to_owned(),
        key_id: None,
        assertion_algorithm: "ES384".into(),
        scope: "openid profile".into(),
        // P9 first; P5 too, so the demo shows what a patient proofed to P5 sees.
        vtr: r#"["P9.Cp.Cd","P9.Cp.Ck","P9.Cm","P5.Cp.Cd","P5.Cp.Ck","P5.Cm"]"#.into(),
        algorithms: vec!["EdDSA".into()],
        redirect_url: None,
    };
    Ok((client, accounts, config))
}

/// The gateway's client id at the demo's stand-in for NHS login.
pub const DEMO_NHS_LOGIN_CLIENT: &str = "mcr-patient";

pub async fn start_idp(
    gateway: SocketAddr,
    key: SigningKey,
    users: &[DemoUser],
    gateway_url: &str,
    ehr_patients: Vec<mcr_idp::ehr::EhrPatient>,
    patients: &[crate::demo::DemoPatientLogin],
    nhs_login_key: &std::path::Path,
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
    let (nhs_client, accounts, nhs_login) =
        nhs_login_client(&issuer, gateway, nhs_login_key, patients)?;
    let idp = Arc::new(
        demo_idp(&issuer, key, users, vec![client])
            .with_ehr(ehr)
            .with_nhs_login(nhs_client, accounts),
    );
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
        cis2: Some(mcr_oidc::Cis2Config::default()),
        nhs_login: Some(nhs_login),
    };
    Ok((idp, task, auth, smart))
}
