//! Demo token issuing: an Ed25519 key kept under the data directory, and tokens minted for
//! the demo users. (A real deployment verifies tokens from its identity provider and has no
//! signing key at all.)

use anyhow::Context;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcr_web::Claims;
use ring::signature::{Ed25519KeyPair, KeyPair};
use std::path::Path;

pub const DEMO_ISSUER: &str = "https://demo-idp.mycarerecord.invalid";
pub const DEMO_AUDIENCE: &str = "mcr-gateway";

/// The demo signing key: read from `path`, or created there (mode 0600) if missing.
#[derive(Debug)]
pub struct SigningKey {
    pkcs8: Vec<u8>,
    public_x: String,
}

impl SigningKey {
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        let pkcs8 = if path.exists() {
            std::fs::read(path).with_context(|| format!("reading the demo signing key {}", path.display()))?
        } else {
            let rng = ring::rand::SystemRandom::new();
            let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| anyhow::anyhow!("generating a key failed"))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            write_private(path, doc.as_ref())?;
            doc.as_ref().to_vec()
        };
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8)
            .map_err(|_| anyhow::anyhow!("{} is not an Ed25519 PKCS#8 key", path.display()))?;
        let public_x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        Ok(Self { pkcs8, public_x })
    }

    /// The public key as a JWK `x`.
    pub fn public_x(&self) -> &str {
        &self.public_x
    }

    pub fn mint(&self, claims: &Claims) -> anyhow::Result<String> {
        let header = Header::new(Algorithm::EdDSA);
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&self.pkcs8)).context("signing a token")
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("creating {}", path.display()))
}

/// Claims for a user, valid from now for `hours`.
pub fn claims_for(user_id: &str, name: &str, role: &str, org: &str, now: i64, hours: i64) -> Claims {
    Claims {
        iss: DEMO_ISSUER.into(),
        aud: DEMO_AUDIENCE.into(),
        sub: user_id.into(),
        name: name.into(),
        role: role.into(),
        org: org.into(),
        iat: now,
        nbf: now,
        exp: now + hours * 3600,
        scope: "user/*.read user/Consent.write".into(),
    }
}
