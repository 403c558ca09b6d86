//! TLS on both ends: a server whose certificate can be swapped while it
//! serves, the HTTPS accept loop that no client can hold ([`server`]), and the
//! ways to build a client (fleet CA; pinned control plane; CA plus revocation list).
//!
//! Limits every server here keeps (the control plane's and the agents'):
//!
//! | what                                | limit                         |
//! |-------------------------------------|-------------------------------|
//! | connections at once                 | 4,096 ([`MAX_CONNECTIONS`])   |
//! | connections from one address        | 256 ([`MAX_PER_SOURCE`]; the control plane's is `control.max_connections_per_source`) |
//! | TLS handshake                       | 10 s                          |
//! | request headers; idle keep-alive    | 10 s, then the connection ends|
//! | request body                        | 10 s whole, else 408 and close|
//! | request body size                   | 64 KiB, else 413 and close    |
//! | request headers size                | 64 KiB                        |

mod server;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use server::{
    Limits, MAX_BODY, MAX_CONNECTIONS, MAX_PER_SOURCE, PeerCertificate, serve_https,
    serve_https_with,
};

use super::verify::{PinnedVerifier, RevocationVerifier};
use super::{ControlPin, PkiError, RevocationList};

/// Clients drop pooled connections before the server's idle timeout ends
/// them, so no request races a closing connection.
const CLIENT_POOL_IDLE: Duration = Duration::from_secs(5);

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A server certificate that can be swapped while serving (agent
/// certificate renewal, control plane certificate rotation).
#[derive(Debug)]
pub struct ReloadableCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    /// A resolver serving `cert_pem` (leaf first, then any chain) with `key_pem`.
    pub fn new(cert_pem: &str, key_pem: &str) -> Result<Arc<Self>, PkiError> {
        Ok(Arc::new(Self {
            current: RwLock::new(certified_key(cert_pem, key_pem)?),
        }))
    }

    /// Serves `cert_pem` and `key_pem` to every handshake from now on.
    pub fn replace(&self, cert_pem: &str, key_pem: &str) -> Result<(), PkiError> {
        let new = certified_key(cert_pem, key_pem)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = new;
        Ok(())
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ))
    }
}

fn certs_of(cert_pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Tls(format!("the certificate is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(PkiError::Tls("no certificate in the PEM text".into()));
    }
    Ok(certs)
}

fn key_of(key_pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| PkiError::Tls(format!("the private key is not valid PEM: {e}")))
}

fn certified_key(cert_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, PkiError> {
    CertifiedKey::from_der(certs_of(cert_pem)?, key_of(key_pem)?, &provider())
        .map(Arc::new)
        .map_err(|e| PkiError::Tls(format!("the key does not fit the certificate: {e}")))
}

/// TLS 1.2 and 1.3 with aws-lc-rs, HTTP/1.1, no client certificates.
///
/// # Panics
/// Never: aws-lc-rs supports the default protocol versions.
#[must_use]
pub fn server_config(cert: Arc<ReloadableCert>) -> Arc<rustls::ServerConfig> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions");
    let mut config = builder.with_no_client_auth().with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// As [`server_config`], asking clients for a certificate from `ca_pem`
/// (optional: operators and enrolling agents have none). A certificate
/// that is shown must chain to the CA; handlers read it as
/// [`PeerCertificate`].
pub fn server_config_with_client_certs(
    cert: Arc<ReloadableCert>,
    ca_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in certs_of(ca_pem)? {
        roots
            .add(ca)
            .map_err(|e| PkiError::Tls(format!("the CA is not usable: {e}")))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| PkiError::Tls(format!("cannot check client certificates: {e}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// An HTTP client error as one line with its causes: reqwest's own message
/// ("error sending request") is terse, the cause (connection refused,
/// certificate unknown) is what an operator needs. Timeouts say so first.
#[must_use]
pub fn error_chain(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = if e.is_timeout() {
        format!("timed out: {e}")
    } else {
        e.to_string()
    };
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// The usual way to build an HTTP client in fleetctl: the fleet CA as the
/// only root, no proxy, connect and request timeouts set. For agents'
/// endpoints; the control plane gets [`control_client`].
pub fn http_client(ca_pem: &str, timeout: Duration) -> Result<reqwest::Client, PkiError> {
    let certs = reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes())
        .map_err(|e| PkiError::Tls(format!("the CA bundle is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(PkiError::Tls("the CA bundle holds no certificate".into()));
    }
    finish(reqwest::Client::builder().tls_certs_only(certs), timeout)
}

fn finish(builder: reqwest::ClientBuilder, timeout: Duration) -> Result<reqwest::Client, PkiError> {
    builder
        .no_proxy()
        .https_only(true)
        .connect_timeout(timeout)
        .timeout(timeout)
        .pool_idle_timeout(CLIENT_POOL_IDLE)
        .user_agent(concat!("fleetctl/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| PkiError::Tls(format!("cannot build the HTTPS client: {e}")))
}

fn with_verifier(
    verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
    identity: Option<&ClientIdentity>,
) -> Result<rustls::ClientConfig, PkiError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(certs_of(&id.cert_pem)?, key_of(&id.key_pem)?)
            .map_err(|e| PkiError::Tls(format!("the client certificate is not usable: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A certificate and key a client shows (an agent, to the control plane).
#[derive(Clone)]
pub struct ClientIdentity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity").finish_non_exhaustive()
    }
}

/// A client for the control plane only: the server's certificate must
/// chain to `ca_pem` *and* be signed by the pinned control plane CA, so a
/// certificate the CA gave an agent never passes. With `identity`, the
/// client shows that certificate (agents do, for renewals and heartbeats).
pub fn control_client(
    ca_pem: &str,
    pin: ControlPin,
    identity: Option<&ClientIdentity>,
    timeout: Duration,
) -> Result<reqwest::Client, PkiError> {
    let verifier = Arc::new(PinnedVerifier::new(ca_pem, pin, &provider())?);
    let config = with_verifier(verifier, identity)?;
    finish(
        reqwest::Client::builder().tls_backend_preconfigured(config),
        timeout,
    )
}

/// A plain TLS client configuration trusting only the certificates in
/// `ca_pem` (no pin, no ALPN): for servers that are not fleetctl's own,
/// such as the registry's PostgreSQL server.
pub fn client_config_trusting(ca_pem: &str) -> Result<rustls::ClientConfig, PkiError> {
    let roots = super::verify::roots_of(ca_pem)?;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| PkiError::Tls(format!("cannot check certificates: {e}")))?;
    let mut config = with_verifier(verifier, None)?;
    config.alpn_protocols.clear();
    Ok(config)
}

/// A client for agents' endpoints that refuses certificates on `list`
/// (the console's stats client; the list is replaced as it changes).
pub fn revocation_checked_client(
    list: Arc<RevocationList>,
    timeout: Duration,
) -> Result<reqwest::Client, PkiError> {
    let config = with_verifier(Arc::new(RevocationVerifier(list)), None)?;
    finish(
        reqwest::Client::builder().tls_backend_preconfigured(config),
        timeout,
    )
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;
    use crate::pki::FleetCa;

    async fn serve(
        ca: &FleetCa,
    ) -> (
        String,
        Arc<ReloadableCert>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let (cert, key) = ca
            .issue_server(&["127.4.0.1".into()], Duration::from_mins(10))
            .unwrap();
        let reloadable = ReloadableCert::new(&cert.pem, &key).unwrap();
        let listener = TcpListener::bind("127.4.0.1:0").await.unwrap();
        let url = format!("https://{}/", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let tls = server_config(Arc::clone(&reloadable));
        tokio::spawn(serve_https(listener, tls, app, async {
            let _ = rx.await;
        }));
        (url, reloadable, tx)
    }

    #[tokio::test]
    async fn trusts_its_ca_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let ca = FleetCa::load_or_create(dir.path()).unwrap();
        let other_ca = FleetCa::load_or_create(other.path()).unwrap();
        let (url, _cert, _stop) = serve(&ca).await;

        let good = http_client(ca.ca_pem(), Duration::from_secs(5)).unwrap();
        let body = good.get(&url).send().await.unwrap().text().await.unwrap();
        assert_eq!(body, "hello");

        let wrong = http_client(other_ca.ca_pem(), Duration::from_secs(5)).unwrap();
        let err = wrong.get(&url).send().await.unwrap_err();
        assert!(err.is_connect(), "{err:?}");
    }

    #[tokio::test]
    async fn a_replaced_certificate_is_served_to_new_connections() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let ca = FleetCa::load_or_create(dir.path()).unwrap();
        let other_ca = FleetCa::load_or_create(other.path()).unwrap();
        let (url, cert, _stop) = serve(&ca).await;
        let (new, key) = other_ca
            .issue_server(&["127.4.0.1".into()], Duration::from_mins(10))
            .unwrap();
        cert.replace(&new.pem, &key).unwrap();
        let client = http_client(other_ca.ca_pem(), Duration::from_secs(5)).unwrap();
        assert!(client.get(&url).send().await.unwrap().status().is_success());
        assert!(cert.replace(&new.pem, "not a key").is_err());
    }

    #[tokio::test]
    async fn a_pinned_client_takes_the_control_plane_and_no_other_fleet_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let ca = FleetCa::load_or_create(dir.path()).unwrap();
        let (url, cert, _stop) = serve(&ca).await;
        let pinned =
            control_client(ca.ca_pem(), ca.control_pin(), None, Duration::from_secs(5)).unwrap();
        assert_eq!(
            pinned.get(&url).send().await.unwrap().text().await.unwrap(),
            "hello"
        );
        // The same fleet CA's root signs a certificate for the same address
        // (as it does for agents): a plain fleet client takes it, the
        // pinned one does not.
        let kc = crate::pki::new_key_and_csr("x", &["x".into()]).unwrap();
        let agent_cert = ca
            .sign_csr(&kc.csr_pem, &["127.4.0.1".into()], Duration::from_mins(10))
            .unwrap();
        cert.replace(&agent_cert.pem, &kc.key_pem).unwrap();
        let pinned =
            control_client(ca.ca_pem(), ca.control_pin(), None, Duration::from_secs(5)).unwrap();
        let err = pinned.get(&url).send().await.unwrap_err();
        assert!(
            error_chain(&err).contains("not this fleet's control plane"),
            "{}",
            error_chain(&err)
        );
        let plain = http_client(ca.ca_pem(), Duration::from_secs(5)).unwrap();
        assert!(plain.get(&url).send().await.is_ok());
        // Another fleet's control plane CA, even with the root's chain shown, is no match.
        let other = tempfile::tempdir().unwrap();
        let other_ca = FleetCa::load_or_create(other.path()).unwrap();
        let wrong_pin = control_client(
            ca.ca_pem(),
            other_ca.control_pin(),
            None,
            Duration::from_secs(5),
        )
        .unwrap();
        let (server, key) = ca
            .issue_server(&["127.4.0.1".into()], Duration::from_mins(10))
            .unwrap();
        cert.replace(&server.pem, &key).unwrap();
        assert!(wrong_pin.get(&url).send().await.is_err());
    }

    #[tokio::test]
    async fn a_client_needs_a_ca() {
        assert!(http_client("", Duration::from_secs(1)).is_err());
    }

    #[tokio::test]
    async fn stops_when_told() {
        let dir = tempfile::tempdir().unwrap();
        let ca = FleetCa::load_or_create(dir.path()).unwrap();
        let (cert, key) = ca
            .issue_server(&["127.4.0.1".into()], Duration::from_mins(10))
            .unwrap();
        let listener = TcpListener::bind("127.4.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_https(
            listener,
            server_config(ReloadableCert::new(&cert.pem, &key).unwrap()),
            axum::Router::new(),
            async {
                let _ = rx.await;
            },
        ));
        tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
