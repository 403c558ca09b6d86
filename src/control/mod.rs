//! The control plane: the fleet CA, tokens, the registry of agents and the
//! HTTPS API agents and operators call (documented in
//! [`crate::model::control`]).
//!
//! Embeddable: the console and the demo call [`start`] with a listener and
//! a shutdown future and get back what a client needs; `fleetctl serve`
//! calls [`run`]. Keys live in one directory (`<data_dir>/control/`):
//! `ca.key` and `token.key` (mode 0600), `ca.pem`, and the control plane's
//! own `server.key`/`server.pem`, issued by the CA.

mod api;
pub mod client;
mod extract;
mod server_cert;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::auth::{Audience, AuthError, Claims, TokenIssuer, TokenVerifier};
use crate::pki::{FleetCa, PkiError};
use crate::store::StoreError;
use crate::store::registry::Registry;

/// How the control plane runs; `[control]` in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The URL agents use, when not `https://<listen address>`.
    pub url: Option<String>,
    /// More names and addresses for the control plane's own certificate.
    pub names: Vec<String>,
    /// Lifetime of the certificates the CA issues.
    pub cert_ttl: Duration,
    pub identity_ttl: Duration,
    /// Default lifetime of join tokens.
    pub join_ttl: Duration,
    pub heartbeat_interval: Duration,
    /// No heartbeat for this long: the agent is lost.
    pub lost_after: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            url: None,
            names: Vec::new(),
            cert_ttl: Duration::from_hours(24),
            identity_ttl: Duration::from_hours(1),
            join_ttl: Duration::from_mins(15),
            heartbeat_interval: Duration::from_secs(30),
            lost_after: Duration::from_secs(90),
        }
    }
}

/// Why the control plane cannot start or go on.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the URL {0:?} is not an https:// URL with a host")]
    BadUrl(String),
}

/// Everything the API handlers share: keys, settings and the registry.
pub struct ControlPlane {
    dir: PathBuf,
    settings: Settings,
    ca: FleetCa,
    issuer: TokenIssuer,
    verifier: TokenVerifier,
    registry: Mutex<Registry>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("dir", &self.dir)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Loads (creating on first start) the CA and the token key in `dir`,
    /// and opens the registry in the database at `registry_db`.
    pub fn open(
        dir: &Path,
        registry_db: &Path,
        settings: Settings,
    ) -> Result<Arc<Self>, ControlError> {
        let ca = FleetCa::load_or_create(dir)?;
        let issuer = TokenIssuer::load_or_create(dir)?;
        let registry = Registry::open(registry_db)?;
        Ok(Arc::new(Self {
            dir: dir.to_owned(),
            settings,
            verifier: issuer.verifier(),
            ca,
            issuer,
            registry: Mutex::new(registry),
        }))
    }

    /// The fleet CA certificate (PEM): the root clients trust.
    #[must_use]
    pub fn ca_pem(&self) -> &str {
        self.ca.ca_pem()
    }

    /// The key that verifies operator tokens (PEM); agents get it at registration.
    #[must_use]
    pub fn token_public_key_pem(&self) -> &str {
        self.issuer.public_key_pem()
    }

    #[must_use]
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// A one-use join token bound to `host`, for the default join lifetime
    /// unless `ttl` says otherwise. Never log the token.
    pub fn join_token(
        &self,
        host: &str,
        ttl: Option<Duration>,
    ) -> Result<(String, Claims), AuthError> {
        let ttl = ttl.unwrap_or(self.settings.join_ttl);
        self.issuer.issue(Audience::Join, host, Some(host), ttl)
    }

    /// An operator token (for the console, or a Prometheus that reads /v1/sd
    /// and agents' /metrics). Never log the token.
    pub fn operator_token(&self, name: &str, ttl: Duration) -> Result<(String, Claims), AuthError> {
        self.issuer.issue(Audience::Operator, name, None, ttl)
    }

    /// Runs `f` on the registry off the async threads.
    async fn db<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Registry) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let plane = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut registry = plane
                .registry
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut registry)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }
}

/// What a client of a started control plane needs.
#[derive(Debug)]
pub struct Started {
    /// Where it listens.
    pub local_addr: SocketAddr,
    /// The URL to reach it: the configured one, else `https://<local_addr>`.
    pub url: String,
    /// The CA to trust (its certificate chains to it).
    pub ca_pem: String,
    /// The server; it ends (with `Ok`) once the shutdown future resolves.
    pub task: tokio::task::JoinHandle<Result<(), ControlError>>,
}

/// Starts the control plane in the background on `listener` (call it
/// inside a tokio runtime): its certificate is ready when this returns, so
/// clients can connect at once.
pub fn start(
    listener: TcpListener,
    plane: Arc<ControlPlane>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Started, ControlError> {
    let local_addr = listener.local_addr()?;
    let prepared = server_cert::prepare(&plane, local_addr)?;
    let url = plane
        .settings
        .url
        .clone()
        .unwrap_or_else(|| local_url(local_addr));
    let ca_pem = plane.ca_pem().to_owned();
    let task = tokio::spawn(serve(listener, plane, prepared, shutdown));
    Ok(Started {
        local_addr,
        url,
        ca_pem,
        task,
    })
}

/// Serves the control plane on `listener` until `shutdown` resolves (the
/// mini-redis shape). Its own certificate is issued or renewed first, and
/// rotated while it runs.
pub async fn run(
    listener: TcpListener,
    plane: Arc<ControlPlane>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ControlError> {
    let prepared = server_cert::prepare(&plane, listener.local_addr()?)?;
    serve(listener, plane, prepared, shutdown).await
}

async fn serve(
    listener: TcpListener,
    plane: Arc<ControlPlane>,
    prepared: server_cert::Prepared,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ControlError> {
    let rotation = tokio::spawn(server_cert::keep_fresh(
        Arc::clone(&plane),
        prepared.clone(),
    ));
    let tls = crate::pki::tls::server_config(Arc::clone(&prepared.cert));
    tracing::info!(
        addr = %listener.local_addr()?,
        dir = %plane.dir.display(),
        "control plane serving"
    );
    let result = crate::pki::tls::serve_https(listener, tls, api::router(plane), shutdown).await;
    rotation.abort();
    Ok(result?)
}

/// `https://addr`, with a loopback address for one that listens on all.
#[must_use]
pub fn local_url(mut addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    format!("https://{addr}")
}

fn unix_now() -> i64 {
    crate::store::now_unix()
}
