//! The demo's backend services client: the acute trust's EPR, registered with an ES384 key
//! made once per data directory (`DATA_DIR/system-client/key.pem`, PKCS#8; its public half
//! inline in the gateway's configuration), allowed `system/*.rs`. `mcr demo-assertion` signs a
//! client assertion with it, naming a demo user as the end user, for the README's tour.

use crate::demo::DemoUser;
use anyhow::Context;
use base64::Engine;
use mcr_web::system::SystemClientConfig;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const DEMO_SYSTEM_CLIENT: &str = "acute-epr";
pub const DEMO_SYSTEM_SCOPE: &str = "system/*.rs";

/// The demo system client, as `demo.json` → `system_client` describes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoSystem {
    pub client_id: String,
    pub name: String,
    pub organisation: String,
    /// The private key (PEM, PKCS#8, P-384), for signing client assertions.
    pub key: PathBuf,
    pub kid: String,
    pub token_endpoint: String,
    pub scope: String,
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The demo system's key (made once) and its registration.
pub fn load_or_create(
    data_dir: &Path,
    organisation: &str,
    gateway_url: &str,
) -> anyhow::Result<(SystemClientConfig, DemoSystem)> {
    let dir = data_dir.join("system-client");
    let der_path = dir.join("key.der");
    let pem_path = dir.join("key.pem");
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = match std::fs::read(&der_path) {
        Ok(b) => b,
        Err(_) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
                .map_err(|_| anyhow::anyhow!("could not make the demo system's key"))?;
            let der = doc.as_ref().to_vec();
            let body = base64::engine::general_purpose::STANDARD.encode(&der);
            let lines: Vec<&str> = body
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap_or(""))
                .collect();
            let pem = format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                lines.join("\n")
            );
            write_private(&pem_path, pem.as_bytes())?;
            write_private(&der_path, &der)?;
            der
        }
    };
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &pkcs8, &rng)
        .map_err(|_| anyhow::anyhow!("{} is not a P-384 key", der_path.display()))?;
    // The public key is the uncompressed point: 0x04, then x and y, 48 bytes each.
    let point = pair.public_key().as_ref();
    anyhow::ensure!(point.len() == 97, "unexpected P-384 public key length");
    let digest = ring::digest::digest(&ring::digest::SHA256, point);
    let kid = b64(&digest.as_ref()[..12]);
    let jwks = serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-384", "use": "sig", "alg": "ES384", "kid": kid,
        "x": b64(&point[1..49]), "y": b64(&point[49..]),
    }]});
    let name = "Acute trust EPR (demo)".to_owned();
    let config = SystemClientConfig {
        client_id: DEMO_SYSTEM_CLIENT.into(),
        name: name.clone(),
        organisation: organisation.into(),
        jwks_url: None,
        jwks: Some(jwks),
        scopes: vec![DEMO_SYSTEM_SCOPE.into()],
        unattended_role: None,
    };
    let info = DemoSystem {
        client_id: DEMO_SYSTEM_CLIENT.into(),
        name,
        organisation: organisation.into(),
        key: pem_path,
        kid,
        token_endpoint: format!("{gateway_url}{}", mcr_web::system::TOKEN_PATH),
        scope: DEMO_SYSTEM_SCOPE.into(),
    };
    Ok((config, info))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
        .and_then(|mut f| f.write_all(bytes))
        .with_context(|| format!("writing {}", path.display()))
}

/// A client assertion for the demo system, four minutes long from `clock`'s now, naming `user`
/// as the end user it acts for (no one: `None`).
pub fn assertion(
    system: &DemoSystem,
    user: Option<&DemoUser>,
    clock: &dyn mcr_domain::Clock,
) -> anyhow::Result<String> {
    let pem =
        std::fs::read(&system.key).with_context(|| format!("reading {}", system.key.display()))?;
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&pem).context("the demo system's key")?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
    header.kid = Some(system.kid.clone());
    let now = clock.now().timestamp();
    let mut claims = serde_json::json!({
        "iss": system.client_id, "sub": system.client_id, "aud": system.token_endpoint,
        "exp": now + 240, "iat": now, "jti": uuid::Uuid::new_v4().to_string(),
    });
    if let Some(u) = user {
        claims["requesting_user"] =
            serde_json::json!({"id": u.id, "name": u.name, "role": u.role.as_str()});
    }
    Ok(jsonwebtoken::encode(&header, &claims, &key)?)
}
