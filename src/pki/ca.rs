//! The fleet CA: one key and a self-signed certificate in the data dir.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

use super::{IssuedCert, PkiError, read, write_private};

const KEY_FILE: &str = "ca.key";
const CERT_FILE: &str = "ca.pem";
/// The CA outlives every certificate it signs by far; rotating it means
/// re-enrolling the fleet, which is an operator's decision, not a timer's.
const CA_LIFETIME: Duration = Duration::from_hours(10 * 365 * 24);
/// Certificates start a little in the past so a host whose clock lags the
/// control plane's by a minute still accepts them.
const BACKDATE: Duration = Duration::from_mins(1);

/// The fleet CA. Keys in a directory (`ca.key` mode 0600, `ca.pem`),
/// created on first start and never regenerated silently.
pub struct FleetCa {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
}

impl std::fmt::Debug for FleetCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetCa").finish_non_exhaustive()
    }
}

impl FleetCa {
    /// Loads the CA from `dir`, creating it (and `dir`, mode 0700) when
    /// neither file exists. One file without the other is an error.
    pub fn load_or_create(dir: &Path) -> Result<Self, PkiError> {
        let key_path = dir.join(KEY_FILE);
        let cert_path = dir.join(CERT_FILE);
        match (key_path.exists(), cert_path.exists()) {
            (true, true) => Self::load(&key_path, &cert_path),
            (false, false) => Self::create(dir),
            (true, false) => Err(PkiError::IncompleteCa {
                dir: dir.to_owned(),
                present: KEY_FILE,
                missing: CERT_FILE,
            }),
            (false, true) => Err(PkiError::IncompleteCa {
                dir: dir.to_owned(),
                present: CERT_FILE,
                missing: KEY_FILE,
            }),
        }
    }

    fn load(key_path: &Path, cert_path: &Path) -> Result<Self, PkiError> {
        let bad = |path: &Path, what, e: &dyn std::fmt::Display| PkiError::BadFile {
            path: path.to_owned(),
            what,
            reason: e.to_string(),
        };
        let key =
            KeyPair::from_pem(&read(key_path)?).map_err(|e| bad(key_path, "private key", &e))?;
        let ca_pem = read(cert_path)?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes())
            .map_err(|e| bad(cert_path, "certificate", &e))?;
        let cert = pem
            .parse_x509()
            .map_err(|e| bad(cert_path, "certificate", &e))?;
        if *cert.public_key().subject_public_key.data != *key.public_key_raw() {
            return Err(bad(
                key_path,
                "CA key",
                &format_args!("it does not belong to {}", cert_path.display()),
            ));
        }
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, key)
            .map_err(|e| bad(cert_path, "CA certificate", &e))?;
        Ok(Self { issuer, ca_pem })
    }

    fn create(dir: &Path) -> Result<Self, PkiError> {
        create_private_dir(dir)?;
        let key = KeyPair::generate().map_err(|e| generate_err(&e))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "fleetctl fleet CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_LIFETIME);
        let cert = params.self_signed(&key).map_err(|e| generate_err(&e))?;
        let ca_pem = cert.pem();
        // The key first: a crash in between leaves an incomplete CA, which
        // is reported, rather than a certificate nobody can sign with.
        write_private(&dir.join(KEY_FILE), key.serialize_pem().as_bytes()).map_err(|source| {
            PkiError::Write {
                path: dir.join(KEY_FILE),
                source,
            }
        })?;
        write_private(&dir.join(CERT_FILE), ca_pem.as_bytes()).map_err(|source| {
            PkiError::Write {
                path: dir.join(CERT_FILE),
                source,
            }
        })?;
        tracing::info!(dir = %dir.display(), "created a new fleet CA");
        Ok(Self {
            issuer: Issuer::new(params, key),
            ca_pem,
        })
    }

    /// The CA certificate, PEM: the one root clients of the fleet trust.
    #[must_use]
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Signs an agent's CSR. The SANs come from the caller (checked names
    /// and addresses), not from the CSR; only its public key is used, after
    /// its signature is verified.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        sans: &[String],
        lifetime: Duration,
    ) -> Result<IssuedCert, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::BadCsr(e.to_string()))?;
        let params = leaf_params(sans, lifetime)?;
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(|e| generate_err(&e))?;
        Ok(IssuedCert {
            pem: cert.pem(),
            not_after: params.not_after.unix_timestamp(),
        })
    }

    /// A key and certificate for a server fleetctl runs itself (the control
    /// plane). Returns the certificate and the key's PEM.
    pub fn issue_server(
        &self,
        sans: &[String],
        lifetime: Duration,
    ) -> Result<(IssuedCert, String), PkiError> {
        let key = KeyPair::generate().map_err(|e| generate_err(&e))?;
        let params = leaf_params(sans, lifetime)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| generate_err(&e))?;
        Ok((
            IssuedCert {
                pem: cert.pem(),
                not_after: params.not_after.unix_timestamp(),
            },
            key.serialize_pem(),
        ))
    }
}

/// Parameters naming `sans` (IP addresses as such, the rest as DNS names).
pub(super) fn params_for(sans: &[String]) -> Result<CertificateParams, PkiError> {
    if sans.is_empty() {
        return Err(PkiError::NoNames);
    }
    let mut params = CertificateParams::default();
    for name in sans {
        let san = if let Ok(ip) = name.parse::<IpAddr>() {
            SanType::IpAddress(ip)
        } else {
            rustls_pki_types::DnsName::try_from(name.as_str())
                .map_err(|_| PkiError::BadName(name.clone()))?;
            SanType::DnsName(
                name.as_str()
                    .try_into()
                    .map_err(|_| PkiError::BadName(name.clone()))?,
            )
        };
        if !params.subject_alt_names.contains(&san) {
            params.subject_alt_names.push(san);
        }
    }
    Ok(params)
}

/// A leaf certificate for both ends of TLS, named after its first SAN, with
/// a random serial (renewals reuse keys, so a key-derived one would repeat).
fn leaf_params(sans: &[String], lifetime: Duration) -> Result<CertificateParams, PkiError> {
    let mut params = params_for(sans)?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, sans[0].as_str());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    params.serial_number = Some(serial.to_vec().into());
    set_validity(&mut params, lifetime);
    Ok(params)
}

fn set_validity(params: &mut CertificateParams, lifetime: Duration) {
    // X.509 times have whole seconds; keep not_after exactly what is reported.
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    params.not_before = now - BACKDATE;
    params.not_after = now + lifetime;
}

fn generate_err(e: &rcgen::Error) -> PkiError {
    PkiError::Generate(e.to_string())
}

fn create_private_dir(dir: &Path) -> Result<(), PkiError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| PkiError::Write {
            path: dir.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use x509_parser::extensions::GeneralName;

    use super::*;
    use crate::pki::{cert_not_after, new_key_and_csr};

    fn sans_of(pem: &str) -> Vec<String> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        san.value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => (*d).to_string(),
                GeneralName::IPAddress(b) if b.len() == 4 => {
                    IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string()
                }
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn issued_by(cert_pem: &str, ca_pem: &str) -> bool {
        let (_, ca) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).unwrap();
        let ca = ca.parse_x509().unwrap();
        let (_, leaf) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).unwrap();
        let leaf = leaf.parse_x509().unwrap();
        leaf.issuer() == ca.subject() && leaf.verify_signature(Some(ca.public_key())).is_ok()
    }

    #[test]
    fn created_once_then_reloaded_identically() {
        let dir = tempfile::tempdir().unwrap();
        let first = FleetCa::load_or_create(dir.path()).unwrap();
        let key_before = std::fs::read(dir.path().join(KEY_FILE)).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = FleetCa::load_or_create(dir.path()).unwrap();
        assert_eq!(first.ca_pem(), again.ca_pem());
        assert_eq!(
            std::fs::read(dir.path().join(KEY_FILE)).unwrap(),
            key_before
        );
        // What the reloaded CA signs chains to the certificate made the first time.
        let (cert, _) = again
            .issue_server(&["127.4.0.1".into()], Duration::from_mins(1))
            .unwrap();
        assert!(issued_by(&cert.pem, first.ca_pem()));
    }

    #[test]
    fn half_a_ca_is_an_error_not_a_new_ca() {
        for keep in [KEY_FILE, CERT_FILE] {
            let dir = tempfile::tempdir().unwrap();
            FleetCa::load_or_create(dir.path()).unwrap();
            let other = if keep == KEY_FILE {
                CERT_FILE
            } else {
                KEY_FILE
            };
            std::fs::remove_file(dir.path().join(other)).unwrap();
            let kept = std::fs::read(dir.path().join(keep)).unwrap();
            let err = FleetCa::load_or_create(dir.path()).unwrap_err();
            assert!(
                matches!(err, PkiError::IncompleteCa { missing, .. } if missing == other),
                "{err}"
            );
            assert!(err.to_string().contains("restore"), "{err}");
            assert!(!dir.path().join(other).exists(), "nothing regenerated");
            assert_eq!(std::fs::read(dir.path().join(keep)).unwrap(), kept);
        }
    }

    #[test]
    fn a_key_from_another_ca_is_refused() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        FleetCa::load_or_create(a.path()).unwrap();
        FleetCa::load_or_create(b.path()).unwrap();
        std::fs::copy(b.path().join(KEY_FILE), a.path().join(KEY_FILE)).unwrap();
        let err = FleetCa::load_or_create(a.path()).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
    }

    #[test]
    fn csr_signed_with_the_callers_names_and_lifetime() {
        let dir = tempfile::tempdir().unwrap();
        let ca = FleetCa::load_or_create(dir.path()).unwrap();
        // The CSR asks for a name the caller does not grant.
        let kc = new_key_and_csr("web1", &["evil.example".into()]).unwrap();
        let sans = vec!["web1".to_string(), "127.4.0.7".to_string()];
        let before = time::OffsetDateTime::now_utc().unix_timestamp();
        let cert = ca
            .sign_csr(&kc.csr_pem, &sans, Duration::from_hours(1))
            .unwrap();
        assert_eq!(sans_of(&cert.pem), sans);
        assert!(issued_by(&cert.pem, ca.ca_pem()));
        assert_eq!(cert_not_after(&cert.pem).unwrap(), cert.not_after);
        assert!((before + 3600..=before + 3601).contains(&cert.not_after));
        // The certificate is for the CSR's key.
        let (_, leaf) = x509_parser::pem::parse_x509_pem(cert.pem.as_bytes()).unwrap();
        let key = KeyPair::from_pem(&kc.key_pem).unwrap();
        assert_eq!(
            *leaf
                .parse_x509()
                .unwrap()
                .public_key()
                .subject_public_key
                .data,
            *key.public_key_raw()
        );
    }

    #[test]
    fn bad_csrs_and_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = FleetCa::load_or_create(dir.path()).unwrap();
        let kc = new_key_and_csr("web1", &["web1".into()]).unwrap();
        let lifetime = Duration::from_mins(1);
        assert!(matches!(
            ca.sign_csr("not a csr", &["web1".into()], lifetime),
            Err(PkiError::BadCsr(_))
        ));
        // A tampered CSR fails its signature check.
        let mut der = x509_parser::pem::parse_x509_pem(kc.csr_pem.as_bytes())
            .unwrap()
            .1
            .contents;
        let at = der.len() / 2;
        der[at] ^= 0x01;
        let tampered = pem_encode("CERTIFICATE REQUEST", &der);
        assert!(matches!(
            ca.sign_csr(&tampered, &["web1".into()], lifetime),
            Err(PkiError::BadCsr(_))
        ));
        assert!(matches!(
            ca.sign_csr(&kc.csr_pem, &[], lifetime),
            Err(PkiError::NoNames)
        ));
        assert!(matches!(
            ca.sign_csr(&kc.csr_pem, &["two words".into()], lifetime),
            Err(PkiError::BadName(_))
        ));
    }

    fn pem_encode(label: &str, der: &[u8]) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }
}
