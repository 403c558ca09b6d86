//! Certificates and TLS: the fleet CA (a root, and an intermediate for the
//! control plane), agent keys and CSRs, the control plane's pin, secret
//! files, the TLS server and the ways to build an HTTPS client.
//!
//! Keys are ECDSA P-256 (rcgen's default on aws-lc-rs). Certificates carry
//! the SANs the caller checked, never those a CSR asks for.

mod ca;
mod pin;
pub mod tls;
mod verify;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use ca::{FleetCa, RevokedSerial};
pub use pin::ControlPin;
pub use verify::RevocationList;

/// What can go wrong with keys, certificates and TLS setup.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// One half of the CA is on disk and the other is not. Never repaired by
    /// generating a new CA: every issued certificate would stop verifying.
    #[error(
        "the fleet CA in {} is incomplete: {} exists but {} is missing; restore the missing file \
         from a backup (or, to start a new CA and re-enroll every agent, move the other one away)",
        dir.display(), present, missing
    )]
    IncompleteCa {
        dir: PathBuf,
        present: &'static str,
        missing: &'static str,
    },
    #[error("{} does not hold a usable {what}: {reason}", path.display())]
    BadFile {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("the certificate request is not valid: {0}")]
    BadCsr(String),
    #[error("{0:?} cannot go in a certificate (use a DNS name or an IP address)")]
    BadName(String),
    #[error("a certificate needs at least one name or address")]
    NoNames,
    #[error("cannot read the certificate: {0}")]
    BadCert(String),
    #[error("cannot create a certificate or key: {0}")]
    Generate(String),
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    #[error("{0:?} is not a control plane pin (sha256/ and 44 characters of base64)")]
    BadPin(String),
}

/// A certificate the CA issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    pub pem: String,
    /// Unix seconds.
    pub not_after: i64,
    /// Its serial number, lowercase hex: what the CRL names.
    pub serial: String,
}

/// A fresh key pair (the key never leaves the host) and a CSR for it.
#[derive(Clone)]
pub struct KeyAndCsr {
    pub key_pem: String,
    pub csr_pem: String,
}

impl std::fmt::Debug for KeyAndCsr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyAndCsr")
            .field("key_pem", &"<secret>")
            .field("csr_pem", &self.csr_pem)
            .finish()
    }
}

/// A new key and a CSR naming `common_name` and `sans`. The CA ignores the
/// CSR's SANs; they are there for people reading it.
pub fn new_key_and_csr(common_name: &str, sans: &[String]) -> Result<KeyAndCsr, PkiError> {
    let key = rcgen::KeyPair::generate().map_err(|e| PkiError::Generate(e.to_string()))?;
    let mut params = ca::params_for(sans)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let csr = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|e| PkiError::Generate(e.to_string()))?;
    Ok(KeyAndCsr {
        key_pem: key.serialize_pem(),
        csr_pem: csr,
    })
}

/// When the first certificate in `cert_pem` expires, in Unix seconds.
pub fn cert_not_after(cert_pem: &str) -> Result<i64, PkiError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| PkiError::BadCert(e.to_string()))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| PkiError::BadCert(e.to_string()))?;
    Ok(cert.validity().not_after.timestamp())
}

/// The serial number (lowercase hex) of a certificate in DER.
#[must_use]
pub fn cert_serial_der(der: &[u8]) -> Option<String> {
    use std::fmt::Write as _;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.raw_serial().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// Writes a secret: mode 0600 from creation, atomically (a temp file in the
/// same directory, then a rename), so no reader ever sees half a key and no
/// other user ever sees any of it.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map_or_else(
        || std::borrow::Cow::Borrowed("secret"),
        |n| n.to_string_lossy(),
    );
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads a file the fleet's own code wrote, naming it in the error.
fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn private_files_are_0600_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
    }

    #[test]
    fn a_csr_never_shows_its_key() {
        let kc = new_key_and_csr("web1", &["web1".into(), "127.4.0.1".into()]).unwrap();
        assert!(
            kc.csr_pem
                .starts_with("-----BEGIN CERTIFICATE REQUEST-----")
        );
        assert!(kc.key_pem.contains("PRIVATE KEY"));
        assert!(!format!("{kc:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(matches!(
            new_key_and_csr("x", &["bad name with spaces\u{e9}".into()]),
            Err(PkiError::BadName(_))
        ));
        assert!(matches!(
            cert_not_after("garbage"),
            Err(PkiError::BadCert(_))
        ));
    }
}
