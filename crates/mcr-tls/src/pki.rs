//! A demo regional certificate authority on disk, and organisation certificates issued by it.
//!
//! Layout of a PKI directory:
//!
//! ```text
//! DIR/ca.pem            the regional CA certificate (the trust anchor to hand out)
//! DIR/ca.key.pem        its private key (mode 0600)
//! DIR/ORG.pem           an organisation's certificate, e.g. RWH.pem
//! DIR/ORG.key.pem       its private key (mode 0600)
//! ```
//!
//! An organisation certificate names the organisation by its ODS code twice: as the subject's
//! common name and as a SAN URI `urn:ods:CODE` (which is what [`crate::org_of`] reads). It is
//! usable both as a TLS client certificate (the gateway towards sources) and as a server
//! certificate for the names given (a source, or the gateway's HTTPS endpoint).

use crate::TlsError;
use chrono::{Datelike, NaiveDate};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The prefix of the SAN URI that carries an organisation's ODS code.
pub const ODS_URI_PREFIX: &str = "urn:ods:";

const CA_COMMON_NAME: &str = "My Care Record demo regional CA";
const CA_ORGANISATION: &str = "My Care Record programme (demo)";

/// Where a certificate and its key were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The CA files in `dir`.
pub fn ca_files(dir: &Path) -> CertFiles {
    CertFiles {
        cert: dir.join("ca.pem"),
        key: dir.join("ca.key.pem"),
    }
}

/// An organisation's files in `dir`.
pub fn org_files(dir: &Path, org: &str) -> CertFiles {
    CertFiles {
        cert: dir.join(format!("{org}.pem")),
        key: dir.join(format!("{org}.key.pem")),
    }
}

/// The CA's parameters. They are the same every time, so that a CA loaded from disk (its key
/// and these parameters) issues certificates whose issuer is exactly the CA certificate's subject.
fn ca_params(today: NaiveDate) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, CA_ORGANISATION);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut p, today, 3650);
    p
}

/// `today` moved by `offset_days`, as (year, month, day).
fn ymd(today: NaiveDate, offset_days: i64) -> (i32, u8, u8) {
    let d = today
        .checked_add_signed(chrono::Duration::days(offset_days))
        .unwrap_or(today);
    (
        d.year(),
        u8::try_from(d.month()).unwrap_or(1),
        u8::try_from(d.day()).unwrap_or(1),
    )
}

fn set_validity(p: &mut CertificateParams, today: NaiveDate, days: i64) {
    let (y, m, d) = ymd(today, -1);
    p.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = ymd(today, days);
    p.not_after = rcgen::date_time_ymd(y, m, d);
}

/// Create a regional CA in `dir` (created if missing). Refuses to overwrite an existing CA.
pub fn init_ca(dir: &Path, today: NaiveDate) -> Result<CertFiles, TlsError> {
    let files = ca_files(dir);
    if files.cert.exists() || files.key.exists() {
        return Err(TlsError::Exists(files.cert));
    }
    std::fs::create_dir_all(dir).map_err(|e| TlsError::io(dir, e))?;
    let key = KeyPair::generate().map_err(TlsError::rcgen)?;
    let cert = ca_params(today)
        .self_signed(&key)
        .map_err(TlsError::rcgen)?;
    write_private(&files.key, key.serialize_pem().as_bytes())?;
    std::fs::write(&files.cert, cert.pem()).map_err(|e| TlsError::io(&files.cert, e))?;
    Ok(files)
}

/// Create the CA in `dir` unless it is already there.
pub fn ensure_ca(dir: &Path, today: NaiveDate) -> Result<CertFiles, TlsError> {
    let files = ca_files(dir);
    if files.cert.exists() && files.key.exists() {
        Ok(files)
    } else {
        init_ca(dir, today)
    }
}

/// What to put in an organisation certificate.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    /// ODS code, e.g. `RWH`.
    pub org: String,
    /// The organisation's name (subject O), if known.
    pub org_name: Option<String>,
    /// DNS names and IP addresses it may serve as (default: `localhost` and `127.0.0.1`).
    pub server_names: Vec<String>,
}

/// Issue a certificate for an organisation from the CA in `dir`, and write it (and a fresh key)
/// there, replacing an earlier one for the same organisation.
pub fn issue(dir: &Path, req: &IssueRequest, today: NaiveDate) -> Result<CertFiles, TlsError> {
    let org_ok =
        (2..=16).contains(&req.org.len()) && req.org.bytes().all(|b| b.is_ascii_alphanumeric());
    if !org_ok {
        return Err(TlsError::BadInput(format!(
            "`{}` is not an ODS code (letters and digits)",
            req.org
        )));
    }
    let ca = ca_files(dir);
    let ca_key_pem = std::fs::read_to_string(&ca.key).map_err(|e| TlsError::io(&ca.key, e))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(TlsError::rcgen)?;
    let ca_cert = ca_params(today)
        .self_signed(&ca_key)
        .map_err(TlsError::rcgen)?;

    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, req.org.as_str());
    if let Some(name) = &req.org_name {
        dn.push(DnType::OrganizationName, name.as_str());
    }
    p.distinguished_name = dn;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::ServerAuth,
    ];
    p.use_authority_key_identifier_extension = true;
    set_validity(&mut p, today, 397);
    let uri = format!("{ODS_URI_PREFIX}{}", req.org);
    p.subject_alt_names.push(SanType::URI(
        uri.as_str().try_into().map_err(TlsError::rcgen)?,
    ));
    let names: Vec<String> = if req.server_names.is_empty() {
        vec!["localhost".into(), "127.0.0.1".into()]
    } else {
        req.server_names.clone()
    };
    for n in &names {
        let san = match n.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                n.as_str()
                    .try_into()
                    .map_err(|_| TlsError::BadInput(format!("`{n}` is not a server name")))?,
            ),
        };
        p.subject_alt_names.push(san);
    }
    let key = KeyPair::generate().map_err(TlsError::rcgen)?;
    let cert = p
        .signed_by(&key, &ca_cert, &ca_key)
        .map_err(TlsError::rcgen)?;
    let files = org_files(dir, &req.org);
    if files.key.exists() {
        std::fs::remove_file(&files.key).map_err(|e| TlsError::io(&files.key, e))?;
    }
    write_private(&files.key, key.serialize_pem().as_bytes())?;
    std::fs::write(&files.cert, cert.pem()).map_err(|e| TlsError::io(&files.cert, e))?;
    Ok(files)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| TlsError::io(path, e))?;
    f.write_all(bytes).map_err(|e| TlsError::io(path, e))?;
    f.sync_all().map_err(|e| TlsError::io(path, e))
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    std::fs::write(path, bytes).map_err(|e| TlsError::io(path, e))
}
