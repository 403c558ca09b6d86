//! The control plane's pin: the SHA-256 of its intermediate CA's public
//! key (SPKI), written `sha256/<base64>` as HPKP and curl spell it.
//!
//! Agents get it with their join token and config and talk to no server
//! whose certificate was not signed by that key, so a certificate the root
//! signed for an agent can never pass for the control plane. Pinning the
//! intermediate rather than a server key lets every replica have its own
//! server certificate, renewed freely, under one pin.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;

use super::PkiError;

const PREFIX: &str = "sha256/";

/// A pin of the control plane's intermediate CA.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ControlPin([u8; 32]);

impl ControlPin {
    /// The pin of a public key in SubjectPublicKeyInfo DER.
    #[must_use]
    pub fn of_spki_der(spki: &[u8]) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Self(out)
    }

    /// The pin of a certificate's key (DER), if it parses.
    #[must_use]
    pub fn of_cert_der(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        Some(Self::of_spki_der(cert.public_key().raw))
    }

    /// The pin of the first certificate in `pem`.
    pub fn of_cert_pem(pem: &str) -> Result<Self, PkiError> {
        let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|e| PkiError::BadCert(e.to_string()))?;
        Self::of_cert_der(&parsed.contents)
            .ok_or_else(|| PkiError::BadCert("not an X.509 certificate".into()))
    }
}

impl fmt::Display for ControlPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(self.0)
        )
    }
}

impl fmt::Debug for ControlPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ControlPin({self})")
    }
}

impl FromStr for ControlPin {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, PkiError> {
        let bad = || PkiError::BadPin(s.to_owned());
        let b64 = s.trim().strip_prefix(PREFIX).ok_or_else(bad)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad())?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(Self)
            .map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_and_read_back() {
        let pin = ControlPin::of_spki_der(b"a key");
        let text = pin.to_string();
        assert!(
            text.starts_with("sha256/") && text.len() == 7 + 44,
            "{text}"
        );
        assert_eq!(text.parse::<ControlPin>().unwrap(), pin);
        for bad in [
            "",
            "sha256/",
            "sha1/abc",
            "sha256/not base64!",
            "sha256/AAAA",
        ] {
            assert!(bad.parse::<ControlPin>().is_err(), "{bad:?}");
        }
    }
}
