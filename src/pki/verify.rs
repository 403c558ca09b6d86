//! Server certificate checks beyond "chains to the fleet CA":
//!
//! - [`PinnedVerifier`]: the server must be the control plane, its
//!   certificate signed by the intermediate whose key the pin names. A
//!   certificate the root signed (an agent's) is refused.
//! - [`RevocationList`]: the server's certificate must not be on the fleet
//!   CA's revocation list, which the console refreshes from the control
//!   plane while it polls agents.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};

use super::{ControlPin, PkiError};

/// A server that chained to the fleet CA but is not the control plane.
#[derive(thiserror::Error)]
#[error(
    "the server is not this fleet's control plane: its certificate was not issued by the pinned control plane CA ({0})"
)]
struct NotTheControlPlane(ControlPin);

// rustls shows this error with `{:?}`: make that the sentence too.
impl std::fmt::Debug for NotTheControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

pub(super) fn roots_of(pem: &str) -> Result<Arc<RootCertStore>, PkiError> {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert =
            cert.map_err(|e| PkiError::Tls(format!("the CA bundle is not valid PEM: {e}")))?;
        roots.add(cert).map_err(|e| {
            PkiError::Tls(format!("the CA bundle holds an unusable certificate: {e}"))
        })?;
    }
    if roots.is_empty() {
        return Err(PkiError::Tls("the CA bundle holds no certificate".into()));
    }
    Ok(Arc::new(roots))
}

fn webpki(
    roots: Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<WebPkiServerVerifier>, PkiError> {
    let mut builder = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(provider));
    if !crls.is_empty() {
        // Agents' certificates hang off the root directly: the CRL covers them.
        builder = builder.with_crls(crls).only_check_end_entity_revocation();
    }
    builder
        .build()
        .map_err(|e| PkiError::Tls(format!("cannot check certificates: {e}")))
}

/// Accepts only the control plane: a chain to the fleet CA whose leaf the
/// pinned intermediate signed.
#[derive(Debug)]
pub(super) struct PinnedVerifier {
    chain: Arc<WebPkiServerVerifier>,
    pin: ControlPin,
    provider: Arc<CryptoProvider>,
}

impl PinnedVerifier {
    pub(super) fn new(
        ca_pem: &str,
        pin: ControlPin,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Self, PkiError> {
        Ok(Self {
            chain: webpki(roots_of(ca_pem)?, provider, Vec::new())?,
            pin,
            provider: Arc::clone(provider),
        })
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Chains to the root, names the server, in its validity period...
        self.chain.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        // ...and was signed by the pinned key itself: the pinned
        // certificate as the only anchor, with no path through anything else.
        let pinned = intermediates
            .iter()
            .find(|c| ControlPin::of_cert_der(c) == Some(self.pin));
        let refused = || {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(NotTheControlPlane(self.pin)),
            )))
        };
        let Some(pinned) = pinned else {
            return Err(refused());
        };
        let mut anchor = RootCertStore::empty();
        anchor
            .add(pinned.clone().into_owned())
            .map_err(|_| refused())?;
        let direct = webpki(Arc::new(anchor), &self.provider, Vec::new()).map_err(|_| refused())?;
        direct
            .verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
            .map_err(|_| refused())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// The fleet CA and its latest revocation list: a server verifier whose
/// list can be replaced while clients use it. A list that revokes more
/// bumps [`Self::generation`]: clients then drop their pooled
/// connections, which were checked before (TLS checks a certificate once,
/// at the handshake).
#[derive(Debug)]
pub struct RevocationList {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<WebPkiServerVerifier>>,
    serials: Mutex<BTreeSet<Vec<u8>>>,
    generation: AtomicU64,
}

impl RevocationList {
    /// Trusts `ca_pem`, with nothing revoked until [`Self::replace`].
    pub fn new(ca_pem: &str) -> Result<Arc<Self>, PkiError> {
        let provider = super::tls::provider();
        let roots = roots_of(ca_pem)?;
        let current = RwLock::new(webpki(Arc::clone(&roots), &provider, Vec::new())?);
        Ok(Arc::new(Self {
            roots,
            provider,
            current,
            serials: Mutex::new(BTreeSet::new()),
            generation: AtomicU64::new(0),
        }))
    }

    /// Checks certificates against `crl_der` from now on. A list that does
    /// not parse is refused and the previous one kept. Returns whether it
    /// names other certificates than the last one.
    pub fn replace(&self, crl_der: Vec<u8>) -> Result<bool, PkiError> {
        use x509_parser::prelude::FromDer as _;
        let serials: BTreeSet<Vec<u8>> =
            x509_parser::revocation_list::CertificateRevocationList::from_der(&crl_der)
                .map_err(|e| PkiError::Tls(format!("the revocation list does not parse: {e}")))?
                .1
                .iter_revoked_certificates()
                .map(|r| r.raw_serial().to_vec())
                .collect();
        let verifier = webpki(
            Arc::clone(&self.roots),
            &self.provider,
            vec![CertificateRevocationListDer::from(crl_der)],
        )?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = verifier;
        let mut known = self
            .serials
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let changed = *known != serials;
        if changed {
            *known = serials;
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        Ok(changed)
    }

    /// Goes up each time the list changes.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn get(&self) -> Arc<WebPkiServerVerifier> {
        Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// [`RevocationList`] as rustls sees it.
#[derive(Debug)]
pub(super) struct RevocationVerifier(pub Arc<RevocationList>);

impl ServerCertVerifier for RevocationVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0
            .get()
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.get().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.get().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.get().supported_verify_schemes()
    }
}
