//! The demo application's key for PDS's signed-JWT access: an RSA key pair made once per data
//! directory (`pds-jwt-key.pem`, PKCS#8, readable by its owner only), whose public half the
//! simulated platform is given as the application's registered JWKS.
//!
//! RSA because the platform takes RS512 only; 2048 bits, which the platform accepts (its guide
//! makes 4096-bit keys; a region's real key is made and registered by the region, not here).

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use std::path::Path;

/// The demo application's API key on the simulated platform (the JWT's `iss` and `sub`).
pub const API_KEY: &str = "demo-mcr-pds-application";
/// The key id its public key is registered under.
pub const KEY_ID: &str = "mcr-demo-pds-1";

const BITS: usize = 2048;

/// The key at `path`, made there first if there is none; answers the public JWK Set.
pub fn load_or_create(path: &Path) -> anyhow::Result<Value> {
    let key = if path.exists() {
        RsaPrivateKey::read_pkcs8_pem_file(path)
            .map_err(|e| anyhow::anyhow!("{}: not an RSA PKCS#8 PEM key: {e}", path.display()))?
    } else {
        let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, BITS)
            .context("making the demo's PDS signing key")?;
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("encoding the demo's PDS signing key: {e}"))?;
        write_private(path, pem.as_bytes())?;
        key
    };
    let b64 = |n: &rsa::BigUint| URL_SAFE_NO_PAD.encode(n.to_bytes_be());
    Ok(json!({"keys": [{
        "kty": "RSA", "use": "sig", "alg": "RS512", "kid": KEY_ID,
        "n": b64(key.n()), "e": b64(key.e()),
    }]}))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut file, bytes)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key is made once and read back after; a JWT signed with the file verifies with the
    /// JWK the simulator is given, and with no other.
    #[test]
    fn the_key_is_made_once_and_its_jwks_verifies_what_it_signs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("pds-jwt-key.pem");
        let made = load_or_create(&path).expect("made");
        let pem = std::fs::read(&path).expect("written");
        assert!(String::from_utf8_lossy(&pem).starts_with("-----BEGIN PRIVATE KEY-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o077, 0, "readable by its owner only: {mode:o}");
        }
        assert_eq!(
            load_or_create(&path).expect("read back"),
            made,
            "the same key"
        );

        let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).expect("RSA PEM");
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS512);
        header.kid = Some(KEY_ID.into());
        let jwt = jsonwebtoken::encode(&header, &json!({"iss": API_KEY}), &key).expect("sign");
        let jwk: jsonwebtoken::jwk::Jwk =
            serde_json::from_value(made["keys"][0].clone()).expect("a JWK");
        let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("RSA JWK");
        let (signed, signature) = jwt.rsplit_once('.').expect("JWT");
        assert!(jsonwebtoken::crypto::verify(
            signature,
            signed.as_bytes(),
            &decoding,
            jsonwebtoken::Algorithm::RS512
        )
        .expect("verify"));

        let other = load_or_create(&dir.path().join("other.pem")).expect("another");
        assert_ne!(other["keys"][0]["n"], made["keys"][0]["n"]);
    }
}
