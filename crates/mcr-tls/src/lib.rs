//! TLS for the gateway and the simulated sources, with standard parts only (rustls on the `ring`
//! provider, rcgen): the demo regional CA and organisation certificates ([`pki`]), loading
//! certificates and keys, the rustls configurations for HTTPS, for sources that require client
//! certificates (mutual TLS), and for the gateway as a client of sources, and listeners that
//! hand axum only connections whose handshake succeeded.
//!
//! Trust is narrow on purpose: a source is trusted only if its certificate chains to the
//! configured regional CA (never the system roots), and a client only if its certificate
//! chains to that CA, names an organisation (`urn:ods:CODE`), and that organisation is not
//! refused (suspended). This crate makes no decisions about patients or users and never logs
//! certificate contents beyond an organisation code.

mod listener;
pub mod pki;

pub use listener::{accept_tls, no_delay, MaybeTlsStream, TlsListener};
pub use rustls;
pub use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::UnixTime;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig,
};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// What can go wrong setting TLS up. Messages name the file, never key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} already exists")]
    Exists(PathBuf),
    #[error("{path}: {what}")]
    Pem { path: PathBuf, what: String },
    #[error("certificate generation failed: {0}")]
    Generate(String),
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("{0}")]
    BadInput(String),
}

impl TlsError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn rcgen(e: rcgen::Error) -> Self {
        Self::Generate(e.to_string())
    }

    fn config(e: impl std::fmt::Display) -> Self {
        Self::Config(e.to_string())
    }
}

/// The crypto provider everything here uses (`ring`: builds with a C compiler only).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain and its private key, as presented by a server or a client.
#[derive(Debug)]
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Identity {
    /// Read a PEM certificate chain and a PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let chain = load_certs(cert)?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, &e))?;
        Ok(Self { chain, key })
    }

    /// The organisation the leaf certificate names (`urn:ods:CODE`), if any.
    pub fn org(&self) -> Option<String> {
        self.chain.first().and_then(|c| org_of(c))
    }
}

fn pem_error(path: &Path, e: &rustls::pki_types::pem::Error) -> TlsError {
    match e {
        rustls::pki_types::pem::Error::Io(io) => TlsError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(io.kind(), io.to_string()),
        },
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Pem {
            path: path.to_path_buf(),
            what: "no PEM item of the expected kind".into(),
        },
        other => TlsError::Pem {
            path: path.to_path_buf(),
            what: format!("not valid PEM ({other})"),
        },
    }
}

/// Every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, &e))?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            what: "no certificate in the file".into(),
        });
    }
    Ok(certs)
}

/// A root store holding exactly the certificates in `ca` (the regional CA): no system roots.
pub fn load_roots(ca: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).map_err(|e| TlsError::Pem {
            path: ca.to_path_buf(),
            what: format!("not a usable CA certificate ({e})"),
        })?;
    }
    Ok(Arc::new(roots))
}

const ALPN_HTTP1: &[u8] = b"http/1.1";

/// HTTPS for browsers and API clients: no client certificates asked for.
pub fn server_config(identity: Identity) -> Result<Arc<ServerConfig>, TlsError> {
    let mut c = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::config)?
        .with_no_client_auth()
        .with_single_cert(identity.chain, identity.key)
        .map_err(TlsError::config)?;
    c.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(c))
}

/// A source's server: a client certificate is required, must chain to `roots`, must name an
/// organisation, and that organisation must not be in `refused`.
pub fn mtls_server_config(
    identity: Identity,
    roots: Arc<RootCertStore>,
    refused: RefusedOrgs,
) -> Result<Arc<ServerConfig>, TlsError> {
    let inner = WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(TlsError::config)?;
    let verifier = Arc::new(OrgClientVerifier { inner, refused });
    let mut c = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::config)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain, identity.key)
        .map_err(TlsError::config)?;
    c.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(c))
}

/// The gateway as a client of sources: servers are trusted only if they chain to `roots`; the
/// gateway presents `identity` (its organisation certificate) when given one.
pub fn client_config(
    roots: Arc<RootCertStore>,
    identity: Option<Identity>,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::config)?
        .with_root_certificates(roots);
    let mut c = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain, id.key)
            .map_err(TlsError::config)?,
        None => builder.with_no_client_auth(),
    };
    c.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(c)
}

/// Organisations whose certificates are refused (suspended from the programme), shared between
/// a server's TLS verifier and whoever changes the list. Takes effect for new connections.
#[derive(Debug, Clone, Default)]
pub struct RefusedOrgs(Arc<RwLock<BTreeSet<String>>>);

impl RefusedOrgs {
    pub fn new(codes: impl IntoIterator<Item = String>) -> Self {
        Self(Arc::new(RwLock::new(codes.into_iter().collect())))
    }

    pub fn refuse(&self, code: &str) {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(code.to_owned());
    }

    pub fn allow(&self, code: &str) {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(code);
    }

    pub fn contains(&self, code: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(code)
    }

    pub fn list(&self) -> Vec<String> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

/// The standard WebPKI client verifier, plus: the certificate names an organisation that is
/// not refused.
#[derive(Debug)]
struct OrgClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    refused: RefusedOrgs,
}

impl ClientCertVerifier for OrgClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let Some(org) = org_of(end_entity) else {
            tracing::info!("client certificate refused: it names no organisation");
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        };
        if self.refused.contains(&org) {
            tracing::info!(org = %org, "client certificate refused: the organisation is suspended");
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        tracing::debug!(org = %org, "client certificate accepted");
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The ODS code a certificate names in a SAN URI `urn:ods:CODE`. Read only from certificates
/// whose chain has been verified (or our own).
pub fn org_of(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_cert::der::{asn1::ObjectIdentifier, Decode};
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::SubjectAltName;
    const SUBJECT_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
    let cert = x509_cert::Certificate::from_der(cert.as_ref()).ok()?;
    let exts = cert.tbs_certificate.extensions.as_ref()?;
    let san = exts.iter().find(|e| e.extn_id == SUBJECT_ALT_NAME)?;
    let san = SubjectAltName::from_der(san.extn_value.as_bytes()).ok()?;
    san.0.iter().find_map(|n| match n {
        GeneralName::UniformResourceIdentifier(u) => u
            .as_str()
            .strip_prefix(pki::ODS_URI_PREFIX)
            .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric()))
            .map(str::to_owned),
        _ => None,
    })
}

/// Walk an error's sources for the reason a TLS peer's certificate was not accepted, in words
/// fit for a record outcome: `certificate not trusted` when the peer's certificate failed our
/// checks, `certificate refused by the source` when the peer refused ours (or that we had none).
pub fn describe_tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(mut err) = cur {
        // An io::Error's `source()` skips the error it wraps: unwrap nested ones by hand.
        while let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            err = inner;
        }
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(match tls {
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
                    "certificate not trusted"
                }
                rustls::Error::AlertReceived(_) => "certificate refused by the source",
                _ => "TLS handshake failed",
            });
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_name_their_organisation_and_load() {
        let dir = tempfile::tempdir().expect("dir");
        let today = chrono::NaiveDate::from_ymd_opt(2026, 3, 1).expect("date");
        let ca = pki::init_ca(dir.path(), today).expect("ca");
        assert!(matches!(
            pki::init_ca(dir.path(), today),
            Err(TlsError::Exists(_))
        ));
        let req = pki::IssueRequest {
            org: "RWH".into(),
            org_name: Some("East and North Herts".into()),
            server_names: vec![],
        };
        let files = pki::issue(dir.path(), &req, today).expect("issue");
        let id = Identity::load(&files.cert, &files.key).expect("load");
        assert_eq!(id.org().as_deref(), Some("RWH"));
        let roots = load_roots(&ca.cert).expect("roots");
        assert_eq!(roots.len(), 1);
        server_config(id.clone()).expect("server config");
        mtls_server_config(id.clone(), roots.clone(), RefusedOrgs::default()).expect("mtls config");
        client_config(roots, Some(id)).expect("client config");
        let bad = pki::IssueRequest {
            org: "../x".into(),
            org_name: None,
            server_names: vec![],
        };
        assert!(matches!(
            pki::issue(dir.path(), &bad, today),
            Err(TlsError::BadInput(_))
        ));
    }
}
