//! The node agent (`fleetctl agent`): collects CPU and memory figures,
//! serves them over HTTPS with its fleet-CA certificate, and keeps its
//! registration with the control plane alive.
//!
//! ```text
//!  collect ──Sample──▶ watch ──▶ api (/v1/stats, /metrics, /healthz)
//!                                 ▲
//!  supervisor ──Published──▶ watch┘     lifecycle: what to do, when
//!     │  register / renew / heartbeat ──▶ control plane (client)
//!     └─ certificate ──▶ ReloadableCert (swapped into the TLS server)
//! ```

mod api;
mod client;
pub mod collect;
pub mod config;
pub mod lifecycle;
pub mod metrics;
mod store;
mod supervisor;
mod trust;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use config::AgentConfig;

/// Why the agent could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot read the fleet CA file {}: {source}", path.display())]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the stats API stopped: {0}")]
    Serve(std::io::Error),
}

/// Runs the agent until `stop` is cancelled: samples /proc, enrolls (or
/// resumes), keeps its registration alive and serves the stats API.
pub async fn run(config: AgentConfig, stop: CancellationToken) -> Result<(), AgentError> {
    let ca_pem = std::fs::read_to_string(&config.ca_file).map_err(|source| AgentError::CaFile {
        path: config.ca_file.clone(),
        source,
    })?;
    let store = store::Store::open(&config.data_dir)?;
    let saved = store.load()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| AgentError::Bind {
            addr: config.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(AgentError::Serve)?;
    tracing::info!("stats API listening on {local}");

    let hostname = config.hostname.clone().unwrap_or_else(kernel_hostname);
    let mut addresses = config.advertise.clone();
    if !local.ip().is_unspecified() && !addresses.contains(&local.ip().to_string()) {
        addresses.insert(0, local.ip().to_string());
    }
    let samples = collect::spawn(config.sample_interval);
    let target = supervisor::ControlTarget {
        urls: config.controllers.clone(),
        preferred: Arc::default(),
        ca_pem,
        pin: config.control_pin,
    };
    let (supervisor, watches) = supervisor::Supervisor::new(
        target,
        store,
        config.join_token_file.clone(),
        supervisor::Identity {
            hostname: hostname.clone(),
            addresses,
            stats_port: local.port(),
        },
        saved,
    );
    let supervising = tokio::spawn(supervisor.run(stop.clone()));

    // HTTPS needs a certificate: before the first enrollment there is none,
    // and connections wait in the listen backlog.
    let mut cert_rx = watches.cert;
    let cert = loop {
        if let Some(cert) = cert_rx.borrow_and_update().clone() {
            break Some(cert);
        }
        tokio::select! {
            changed = cert_rx.changed() => if changed.is_err() { break None },
            () = stop.cancelled() => break None,
        }
    };
    if let Some(cert) = cert {
        let state = api::ApiState {
            samples,
            published: watches.published,
            hostname: Arc::from(hostname.as_str()),
            started_at_ms: collect::now_ms(),
        };
        let tls = crate::pki::tls::server_config(cert);
        crate::pki::tls::serve_https(
            listener,
            tls,
            api::router(state),
            stop.clone().cancelled_owned(),
        )
        .await
        .map_err(AgentError::Serve)?;
    }
    let _ = supervising.await;
    tracing::info!("agent stopped");
    Ok(())
}

/// The kernel's host name (what `hostname` prints).
fn kernel_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
