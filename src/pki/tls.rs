//! TLS on both ends: a server whose certificate can be swapped while it
//! serves, the HTTPS accept loop, and the one way to build a client.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::PkiError;

/// Most connections served at once; past this, new ones wait in the
/// kernel's backlog until one closes.
pub const MAX_CONNECTIONS: usize = 4096;
/// A client that has not finished its handshake, or sent its request
/// headers, by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stop waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

fn provider() -> Arc<CryptoProvider> {
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

fn certified_key(cert_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Tls(format!("the certificate is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(PkiError::Tls("no certificate in the PEM text".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| PkiError::Tls(format!("the private key is not valid PEM: {e}")))?;
    CertifiedKey::from_der(certs, key, &provider())
        .map(Arc::new)
        .map_err(|e| PkiError::Tls(format!("the key does not fit the certificate: {e}")))
}

/// TLS 1.2 and 1.3 with aws-lc-rs, HTTP/1.1, no client certificates (the
/// API authenticates with tokens).
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

/// Serves `app` over TLS on `listener` until `shutdown` resolves; handshakes
/// run per connection (a slow client never blocks others), connections are
/// bounded by a semaphore. After `shutdown`, requests in flight get a few
/// seconds to finish.
pub async fn serve_https(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let stop = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&limit).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) if is_per_connection(&e) => {
                    tracing::debug!(error = %e, "accept failed for one connection");
                    continue;
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off, not spin.
                    tracing::warn!(error = %e, "accept failed; retrying in 100ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tcp.set_nodelay(true);
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tls), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    stop.cancel();
    let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN_TIMEOUT, limit.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("stopped with requests still in flight after {DRAIN_TIMEOUT:?}");
    }
    Ok(())
}

fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted)
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

/// THE way to build an HTTP client in fleetctl: the fleet CA as the only
/// root, no proxy, connect and request timeouts set.
pub fn http_client(ca_pem: &str, timeout: Duration) -> Result<reqwest::Client, PkiError> {
    let certs = reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes())
        .map_err(|e| PkiError::Tls(format!("the CA bundle is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(PkiError::Tls("the CA bundle holds no certificate".into()));
    }
    reqwest::Client::builder()
        .tls_certs_only(certs)
        .no_proxy()
        .https_only(true)
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent(concat!("fleetctl/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| PkiError::Tls(format!("cannot build the HTTPS client: {e}")))
}

#[cfg(test)]
mod tests {
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
