//! The fleet CA: a root, and beneath it an intermediate that signs the
//! control plane's server certificates and nothing else.
//!
//! ```text
//!  ca.key / ca.pem                  root: signs agents' certificates and the CRL
//!  control-ca.key / control-ca.pem  intermediate: signs control plane servers only
//! ```
//! Agents pin the intermediate's key ([`ControlPin`]): a certificate the
//! root signed for an agent can never pass for the control plane, and every
//! control plane replica sharing these files gets its own server
//! certificate under the same pin.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams,
    CertificateSigningRequestParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SanType,
    SerialNumber,
};
use time::OffsetDateTime;

use super::{ControlPin, IssuedCert, PkiError, read, write_private};

const KEY_FILE: &str = "ca.key";
const CERT_FILE: &str = "ca.pem";
const CONTROL_KEY_FILE: &str = "control-ca.key";
const CONTROL_CERT_FILE: &str = "control-ca.pem";
/// The CA outlives every certificate it signs by far; rotating it means
/// re-enrolling the fleet, which is an operator's decision, not a timer's.
const CA_LIFETIME: Duration = Duration::from_hours(10 * 365 * 24);
/// Certificates start a little in the past so a host whose clock lags the
/// control plane's by a minute still accepts them.
const BACKDATE: Duration = Duration::from_mins(1);

/// A revoked certificate, for the CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedSerial {
    /// Lowercase hex, as [`IssuedCert::serial`].
    pub serial: String,
    /// Unix seconds.
    pub revoked_at: i64,
}

/// The fleet CA. Keys in a directory (`*.key` mode 0600), created on first
/// start and never regenerated silently.
pub struct FleetCa {
    root: Issuer<'static, KeyPair>,
    root_pem: String,
    control: Issuer<'static, KeyPair>,
    control_pem: String,
}

impl std::fmt::Debug for FleetCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetCa").finish_non_exhaustive()
    }
}

/// Which of a key/certificate pair exists.
fn pair_state(dir: &Path, key: &'static str, cert: &'static str) -> Result<bool, PkiError> {
    match (dir.join(key).exists(), dir.join(cert).exists()) {
        (true, true) => Ok(true),
        (false, false) => Ok(false),
        (true, false) => Err(PkiError::IncompleteCa {
            dir: dir.to_owned(),
            present: key,
            missing: cert,
        }),
        (false, true) => Err(PkiError::IncompleteCa {
            dir: dir.to_owned(),
            present: cert,
            missing: key,
        }),
    }
}

impl FleetCa {
    /// Loads the CA from `dir`, creating it (and `dir`, mode 0700) when
    /// neither file exists; the control plane's intermediate likewise. One
    /// file of a pair without the other is an error.
    pub fn load_or_create(dir: &Path) -> Result<Self, PkiError> {
        let (root, root_pem) = if pair_state(dir, KEY_FILE, CERT_FILE)? {
            load_pair(&dir.join(KEY_FILE), &dir.join(CERT_FILE))?
        } else {
            create_root(dir)?
        };
        let (control, control_pem) = if pair_state(dir, CONTROL_KEY_FILE, CONTROL_CERT_FILE)? {
            load_pair(&dir.join(CONTROL_KEY_FILE), &dir.join(CONTROL_CERT_FILE))?
        } else {
            create_control(dir, &root)?
        };
        let ca = Self {
            root,
            root_pem,
            control,
            control_pem,
        };
        if !ca.control_chains_to_root() {
            return Err(PkiError::BadFile {
                path: dir.join(CONTROL_CERT_FILE),
                what: "control plane CA certificate",
                reason: format!("it was not signed by {CERT_FILE}"),
            });
        }
        warn_if_no_room_for_the_intermediate(&ca.root_pem);
        Ok(ca)
    }

    fn control_chains_to_root(&self) -> bool {
        let parse = |pem: &str| -> Option<Vec<u8>> {
            Some(
                x509_parser::pem::parse_x509_pem(pem.as_bytes())
                    .ok()?
                    .1
                    .contents,
            )
        };
        let (Some(root), Some(control)) = (parse(&self.root_pem), parse(&self.control_pem)) else {
            return false;
        };
        let (Ok((_, root)), Ok((_, control))) = (
            x509_parser::parse_x509_certificate(&root),
            x509_parser::parse_x509_certificate(&control),
        ) else {
            return false;
        };
        control.issuer() == root.subject()
            && control.verify_signature(Some(root.public_key())).is_ok()
    }

    /// The CA certificate, PEM: the one root clients of the fleet trust.
    #[must_use]
    pub fn ca_pem(&self) -> &str {
        &self.root_pem
    }

    /// The control plane's intermediate CA certificate, PEM.
    #[must_use]
    pub fn control_ca_pem(&self) -> &str {
        &self.control_pem
    }

    /// The pin agents hold for the control plane: its intermediate's key.
    ///
    /// # Panics
    /// Never: the intermediate's certificate parsed when it was loaded.
    #[must_use]
    pub fn control_pin(&self) -> ControlPin {
        ControlPin::of_cert_pem(&self.control_pem).expect("the control plane CA parsed when loaded")
    }

    /// Checks a CSR (its form and its signature) without signing it.
    pub fn check_csr(csr_pem: &str) -> Result<(), PkiError> {
        CertificateSigningRequestParams::from_pem(csr_pem)
            .map(|_| ())
            .map_err(|e| PkiError::BadCsr(e.to_string()))
    }

    /// Signs an agent's CSR. The SANs come from the caller (what the join
    /// token vouched for), not from the CSR; only its public key is used,
    /// after its signature is verified.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        sans: &[String],
        lifetime: Duration,
    ) -> Result<IssuedCert, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::BadCsr(e.to_string()))?;
        // An agent serves its stats API (server) and shows its certificate
        // to the control plane (client); nothing else.
        let (params, serial) = leaf_params(
            sans,
            lifetime,
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )?;
        let cert = params
            .signed_by(&csr.public_key, &self.root)
            .map_err(|e| generate_err(&e))?;
        Ok(IssuedCert {
            pem: cert.pem(),
            not_after: params.not_after.unix_timestamp(),
            serial,
        })
    }

    /// A key and certificate for the control plane's own server, signed by
    /// its intermediate. Returns the certificate chain (server, then the
    /// intermediate) and the key's PEM.
    pub fn issue_server(
        &self,
        sans: &[String],
        lifetime: Duration,
    ) -> Result<(IssuedCert, String), PkiError> {
        let key = KeyPair::generate().map_err(|e| generate_err(&e))?;
        let (params, serial) =
            leaf_params(sans, lifetime, vec![ExtendedKeyUsagePurpose::ServerAuth])?;
        let cert = params
            .signed_by(&key, &self.control)
            .map_err(|e| generate_err(&e))?;
        Ok((
            IssuedCert {
                pem: format!("{}{}", cert.pem(), self.control_pem),
                not_after: params.not_after.unix_timestamp(),
                serial,
            },
            key.serialize_pem(),
        ))
    }

    /// The revocation list (DER), signed by the root, naming `revoked`;
    /// good for `valid_for`.
    pub fn crl(
        &self,
        revoked: &[RevokedSerial],
        number: u64,
        valid_for: Duration,
    ) -> Result<Vec<u8>, PkiError> {
        let now = now_whole_seconds();
        let revoked_certs = revoked
            .iter()
            .map(|r| {
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&hex_bytes(&r.serial)?),
                    revocation_time: OffsetDateTime::from_unix_timestamp(r.revoked_at)
                        .unwrap_or(now),
                    reason_code: Some(RevocationReason::CessationOfOperation),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, PkiError>>()?;
        let params = CertificateRevocationListParams {
            this_update: now - BACKDATE,
            next_update: now + valid_for,
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.root)
            .map(|crl| crl.der().to_vec())
            .map_err(|e| generate_err(&e))
    }
}

fn load_pair(
    key_path: &Path,
    cert_path: &Path,
) -> Result<(Issuer<'static, KeyPair>, String), PkiError> {
    let bad = |path: &Path, what, e: &dyn std::fmt::Display| PkiError::BadFile {
        path: path.to_owned(),
        what,
        reason: e.to_string(),
    };
    let key = KeyPair::from_pem(&read(key_path)?).map_err(|e| bad(key_path, "private key", &e))?;
    let pem = read(cert_path)?;
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| bad(cert_path, "certificate", &e))?;
    let cert = parsed
        .parse_x509()
        .map_err(|e| bad(cert_path, "certificate", &e))?;
    if *cert.public_key().subject_public_key.data != *key.public_key_raw() {
        return Err(bad(
            key_path,
            "CA key",
            &format_args!("it does not belong to {}", cert_path.display()),
        ));
    }
    let issuer =
        Issuer::from_ca_cert_pem(&pem, key).map_err(|e| bad(cert_path, "CA certificate", &e))?;
    Ok((issuer, pem))
}

fn ca_params(name: &str, path_len: u8) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_LIFETIME);
    params
}

fn write_pair(
    dir: &Path,
    key_file: &str,
    key: &KeyPair,
    cert_file: &str,
    pem: &str,
) -> Result<(), PkiError> {
    // The key first: a crash in between leaves an incomplete CA, which
    // is reported, rather than a certificate nobody can sign with.
    for (name, contents) in [(key_file, key.serialize_pem()), (cert_file, pem.to_owned())] {
        let path = dir.join(name);
        write_private(&path, contents.as_bytes())
            .map_err(|source| PkiError::Write { path, source })?;
    }
    Ok(())
}

fn create_root(dir: &Path) -> Result<(Issuer<'static, KeyPair>, String), PkiError> {
    create_private_dir(dir)?;
    let key = KeyPair::generate().map_err(|e| generate_err(&e))?;
    // Path length 1: room for the control plane's intermediate below it.
    let params = ca_params("fleetctl fleet CA", 1);
    let cert = params.self_signed(&key).map_err(|e| generate_err(&e))?;
    let pem = cert.pem();
    write_pair(dir, KEY_FILE, &key, CERT_FILE, &pem)?;
    tracing::info!(dir = %dir.display(), "created a new fleet CA");
    Ok((Issuer::new(params, key), pem))
}

fn create_control(
    dir: &Path,
    root: &Issuer<'static, KeyPair>,
) -> Result<(Issuer<'static, KeyPair>, String), PkiError> {
    let key = KeyPair::generate().map_err(|e| generate_err(&e))?;
    let mut params = ca_params("fleetctl control plane CA", 0);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, root).map_err(|e| generate_err(&e))?;
    let pem = cert.pem();
    write_pair(dir, CONTROL_KEY_FILE, &key, CONTROL_CERT_FILE, &pem)?;
    tracing::info!(dir = %dir.display(), "created the control plane's intermediate CA");
    Ok((Issuer::new(params, key), pem))
}

/// A root made by an older fleetctl allows no intermediate (path length
/// 0). fleetctl's own clients do not mind (the root is their trust anchor),
/// but strict verifiers such as Prometheus's refuse the control plane.
fn warn_if_no_room_for_the_intermediate(root_pem: &str) {
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(root_pem.as_bytes()) else {
        return;
    };
    let Ok(cert) = pem.parse_x509() else { return };
    if let Ok(Some(bc)) = cert.basic_constraints()
        && bc.value.path_len_constraint == Some(0)
    {
        tracing::warn!(
            "the fleet CA was made by an older fleetctl and allows no intermediate CA:              Prometheus cannot verify the control plane's /v1/sd; a new CA (and re-enrolling) fixes it"
        );
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

/// A leaf certificate for `usages`, named after its first SAN, with a
/// random serial (renewals reuse keys, so a key-derived one would repeat).
/// Returns the parameters and the serial in hex.
fn leaf_params(
    sans: &[String],
    lifetime: Duration,
    usages: Vec<ExtendedKeyUsagePurpose>,
) -> Result<(CertificateParams, String), PkiError> {
    let mut params = params_for(sans)?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, sans[0].as_str());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = usages;
    params.use_authority_key_identifier_extension = true;
    let mut serial: [u8; 16] = rand::random();
    // Positive, and no leading zero byte: DER keeps these bytes as they are.
    serial[0] = (serial[0] & 0x7f) | 0x40;
    params.serial_number = Some(serial.to_vec().into());
    set_validity(&mut params, lifetime);
    Ok((params, hex(&serial)))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn hex_bytes(text: &str) -> Result<Vec<u8>, PkiError> {
    if !text.len().is_multiple_of(2) || text.is_empty() {
        return Err(PkiError::BadCert(format!(
            "{text:?} is not a serial number"
        )));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&text[i..i + 2], 16)
                .map_err(|_| PkiError::BadCert(format!("{text:?} is not a serial number")))
        })
        .collect()
}

fn now_whole_seconds() -> OffsetDateTime {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn set_validity(params: &mut CertificateParams, lifetime: Duration) {
    // X.509 times have whole seconds; keep not_after exactly what is reported.
    let now = now_whole_seconds();
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
        for name in [KEY_FILE, CONTROL_KEY_FILE] {
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        let again = FleetCa::load_or_create(dir.path()).unwrap();
        assert_eq!(first.ca_pem(), again.ca_pem());
        assert_eq!(first.control_pin(), again.control_pin());
        assert_eq!(
            std::fs::read(dir.path().join(KEY_FILE)).unwrap(),
            key_before
        );
        // The intermediate chains to the root; the control plane's server
        // certificate to the intermediate, and comes with it.
        assert!(issued_by(first.control_ca_pem(), first.ca_pem()));
        let (cert, _) = again
            .issue_server(&["127.4.0.1".into()], Duration::from_mins(1))
            .unwrap();
        assert!(issued_by(&cert.pem, first.control_ca_pem()));
        assert!(!issued_by(&cert.pem, first.ca_pem()));
        assert!(
            cert.pem.ends_with(first.control_ca_pem()),
            "the chain is served"
        );
        assert_eq!(
            ControlPin::of_cert_pem(first.control_ca_pem()).unwrap(),
            first.control_pin()
        );
    }

    #[test]
    fn agents_certificates_come_from_the_root_never_the_control_planes_intermediate() {
        let dir = tempfile::tempdir().unwrap();
        let ca = FleetCa::load_or_create(dir.path()).unwrap();
        let kc = new_key_and_csr("web1", &["web1".into()]).unwrap();
        let cert = ca
            .sign_csr(&kc.csr_pem, &["web1".into()], Duration::from_mins(1))
            .unwrap();
        assert!(issued_by(&cert.pem, ca.ca_pem()));
        assert!(!issued_by(&cert.pem, ca.control_ca_pem()));
        let (_, leaf) = x509_parser::pem::parse_x509_pem(cert.pem.as_bytes()).unwrap();
        let leaf = leaf.parse_x509().unwrap();
        assert_eq!(hex(leaf.raw_serial()), cert.serial);
        let eku = leaf.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth && !eku.code_signing && !eku.any);
        let ku = leaf.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && !ku.key_cert_sign() && !ku.crl_sign());
        assert!(!leaf.is_ca());
    }

    #[test]
    fn the_crl_names_revoked_serials_and_is_signed_by_the_root() {
        use x509_parser::prelude::FromDer as _;
        let dir = tempfile::tempdir().unwrap();
        let ca = FleetCa::load_or_create(dir.path()).unwrap();
        let revoked = [RevokedSerial {
            serial: "40aabb".into(),
            revoked_at: 1_700_000_000,
        }];
        let der = ca.crl(&revoked, 7, Duration::from_mins(5)).unwrap();
        let (_, crl) =
            x509_parser::revocation_list::CertificateRevocationList::from_der(&der).unwrap();
        let serials: Vec<String> = crl
            .iter_revoked_certificates()
            .map(|r| hex(r.raw_serial()))
            .collect();
        assert_eq!(serials, ["40aabb"]);
        let (_, root) = x509_parser::pem::parse_x509_pem(ca.ca_pem().as_bytes()).unwrap();
        let root = root.parse_x509().unwrap();
        assert_eq!(crl.issuer(), root.subject());
        assert!(crl.verify_signature(root.public_key()).is_ok());
        assert!(
            ca.crl(
                &[RevokedSerial {
                    serial: "xyz".into(),
                    revoked_at: 0
                }],
                1,
                Duration::from_mins(1)
            )
            .is_err()
        );
    }

    #[test]
    fn half_a_ca_is_an_error_not_a_new_ca() {
        for keep in [KEY_FILE, CERT_FILE, CONTROL_KEY_FILE, CONTROL_CERT_FILE] {
            let dir = tempfile::tempdir().unwrap();
            FleetCa::load_or_create(dir.path()).unwrap();
            let other = match keep {
                KEY_FILE => CERT_FILE,
                CERT_FILE => KEY_FILE,
                CONTROL_KEY_FILE => CONTROL_CERT_FILE,
                _ => CONTROL_KEY_FILE,
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
