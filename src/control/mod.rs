//! The control plane: the fleet CA, tokens, the registry of agents and the
//! HTTPS API agents and operators call (documented in
//! [`crate::model::control`]).
//!
//! Embeddable: the console and the demo call [`start`] with a listener and
//! a shutdown future and get back what a client needs; `fleetctl serve`
//! calls [`run`]. Keys live in one directory (`<data_dir>/control/`):
//! `ca.key`, `control-ca.key` and the token keys (mode 0600; see
//! [`crate::auth::keys`]), `ca.pem`, `control-ca.pem`, and the control
//! plane's own `server.key`/`server.pem`, issued by its intermediate CA.
//! Replicas sharing the directory share the CA, the pin and the token
//! keys; each issues its own server certificate.

mod api;
pub mod client;
mod extract;
pub mod keys;
mod server_cert;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::auth::{Audience, AuthError, Claims, JoinGrant, TokenIssuer, TokenVerifier};
use crate::model::control::{TokenKey, TrustUpdate};
use crate::pki::{ControlPin, FleetCa, PkiError};
use crate::store::StoreError;
use crate::store::registry::{Backend, Revoked};

pub use keys::{KeysError, LocalKeys};

/// How often the control plane looks for new token keys (a rotation by
/// `fleetctl token rotate-key`, or by another replica).
const KEY_CHECK: Duration = Duration::from_secs(1);

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
    /// Operator, stats and sd tokens living longer than this are refused.
    pub max_operator_ttl: Duration,
    /// Most connections from one address at once (agents behind one NAT
    /// address share it).
    pub max_connections_per_source: usize,
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
            max_operator_ttl: Duration::from_hours(30 * 24),
            max_connections_per_source: crate::pki::tls::MAX_PER_SOURCE,
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

/// The token keys in use, reloaded when their files change.
struct Keys {
    issuer: Arc<TokenIssuer>,
    verifier: Arc<TokenVerifier>,
    stamp: Vec<Option<(u64, std::time::SystemTime)>>,
}

/// Everything the API handlers share: keys, settings and the registry.
pub struct ControlPlane {
    dir: PathBuf,
    settings: Settings,
    ca: FleetCa,
    keys: RwLock<Keys>,
    registry: Backend,
    /// The names and addresses of this control plane's own certificate:
    /// never signed for an agent.
    own_names: RwLock<Vec<String>>,
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
    /// and opens the registry in the SQLite database at `registry_db`.
    pub fn open(
        dir: &Path,
        registry_db: &Path,
        settings: Settings,
    ) -> Result<Arc<Self>, ControlError> {
        Self::with_registry(dir, Backend::sqlite(registry_db)?, settings)
    }

    /// As [`Self::open`], with a registry already opened (PostgreSQL, for
    /// replicas sharing it).
    pub fn with_registry(
        dir: &Path,
        registry: Backend,
        settings: Settings,
    ) -> Result<Arc<Self>, ControlError> {
        let ca = FleetCa::load_or_create(dir)?;
        TokenIssuer::load_or_create(dir)?;
        TokenIssuer::promote_if_due(dir)?;
        let keys = load_keys(dir)?;
        Ok(Arc::new(Self {
            dir: dir.to_owned(),
            settings,
            ca,
            keys: RwLock::new(keys),
            registry,
            own_names: RwLock::new(Vec::new()),
        }))
    }

    /// The registry this control plane keeps its agents in.
    #[must_use]
    pub fn registry(&self) -> &Backend {
        &self.registry
    }

    /// The fleet CA certificate (PEM): the root clients trust.
    #[must_use]
    pub fn ca_pem(&self) -> &str {
        self.ca.ca_pem()
    }

    /// The pin agents and the console hold for this control plane.
    #[must_use]
    pub fn control_pin(&self) -> ControlPin {
        self.ca.control_pin()
    }

    #[must_use]
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn keys(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What signs tokens now.
    #[must_use]
    pub fn issuer(&self) -> Arc<TokenIssuer> {
        Arc::clone(&self.keys().issuer)
    }

    fn verifier(&self) -> Arc<TokenVerifier> {
        Arc::clone(&self.keys().verifier)
    }

    /// Every key a valid token may be signed with.
    #[must_use]
    pub fn token_keys(&self) -> Vec<TokenKey> {
        self.keys().issuer.key_set().to_vec()
    }

    /// Reloads the token keys when their files changed (a rotation), and
    /// hands signing to a published key once its time has come.
    pub fn refresh_keys(&self) -> Result<bool, AuthError> {
        if let Some(kid) = TokenIssuer::promote_if_due(&self.dir)? {
            tracing::info!(kid, "now signing tokens with the rotated key");
        }
        // A published key takes over signing by itself when its time comes;
        // only changed files need a reload.
        if TokenIssuer::stamp(&self.dir) == self.keys().stamp {
            return Ok(false);
        }
        let keys = load_keys(&self.dir)?;
        let kids: Vec<String> = keys
            .issuer
            .key_set()
            .iter()
            .map(|k| k.kid.clone())
            .collect();
        tracing::info!(
            signing = keys.issuer.signing_kid(),
            ?kids,
            "token keys reloaded"
        );
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
        Ok(true)
    }

    /// A one-use join token for `grant` (the control plane's pin added), for
    /// the default join lifetime unless `ttl` says otherwise. Never log it.
    pub fn join_token(
        &self,
        grant: &JoinGrant,
        ttl: Option<Duration>,
    ) -> Result<(String, Claims), AuthError> {
        let ttl = ttl.unwrap_or(self.settings.join_ttl);
        let mut grant = grant.clone();
        grant.control_pin = Some(self.control_pin().to_string());
        self.issuer().issue_join(&grant, ttl)
    }

    /// An operator token (for the console, scripts and tests), not
    /// recorded for `fleetctl token list`. Never log the token.
    pub fn operator_token(&self, name: &str, ttl: Duration) -> Result<(String, Claims), AuthError> {
        self.issuer().issue(Audience::Operator, name, ttl)
    }

    /// What agents learn with every registration, renewal and heartbeat.
    fn trust_update(&self, revoked: &Revoked) -> TrustUpdate {
        let mut revoked: Vec<String> = revoked.iter().cloned().collect();
        revoked.sort();
        TrustUpdate {
            token_keys: self.token_keys(),
            revoked_tokens: revoked,
            max_token_ttl_secs: self.settings.max_operator_ttl.as_secs(),
        }
    }

    /// Whether `name` is one of this control plane's own names.
    fn is_own_name(&self, name: &str) -> bool {
        self.own_names
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|own| crate::auth::same_name(own, name))
    }
}

fn load_keys(dir: &Path) -> Result<Keys, AuthError> {
    let stamp = TokenIssuer::stamp(dir);
    let issuer = TokenIssuer::load(dir)?;
    Ok(Keys {
        verifier: Arc::new(issuer.verifier()),
        issuer: Arc::new(issuer),
        stamp,
    })
}

/// Reloads the token keys as they change, for as long as the plane serves.
async fn watch_keys(plane: Arc<ControlPlane>) {
    loop {
        tokio::time::sleep(KEY_CHECK).await;
        let p = Arc::clone(&plane);
        match tokio::task::spawn_blocking(move || p.refresh_keys()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot reload the token keys; still using the old ones");
            }
            Err(e) => tracing::error!(error = %e, "the token key check failed"),
        }
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
    /// Its pin: what clients check beyond the CA.
    pub control_pin: ControlPin,
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
    let control_pin = plane.control_pin();
    let task = tokio::spawn(serve(listener, plane, prepared, shutdown));
    Ok(Started {
        local_addr,
        url,
        ca_pem,
        control_pin,
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
    let keys = tokio::spawn(watch_keys(Arc::clone(&plane)));
    // Agents show their certificates (renewals, heartbeats); others need none.
    let tls = crate::pki::tls::server_config_with_client_certs(
        Arc::clone(&prepared.cert),
        plane.ca_pem(),
    )?;
    tracing::info!(
        addr = %listener.local_addr()?,
        dir = %plane.dir.display(),
        pin = %plane.control_pin(),
        "control plane serving"
    );
    let limits = crate::pki::tls::Limits {
        max_per_source: plane.settings.max_connections_per_source,
        ..crate::pki::tls::Limits::default()
    };
    let result =
        crate::pki::tls::serve_https_with(listener, tls, api::router(plane), limits, shutdown)
            .await;
    rotation.abort();
    keys.abort();
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
