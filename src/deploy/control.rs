//! Deploy's view of the control plane: join tokens (vouching for the
//! address deploy connected to and the name the host reported, and
//! carrying the control plane's pin), and the two checks that a deployed
//! agent works (its `/healthz` over the fleet CA, and its entry in the
//! registry).
//!
//! Deploy mints no token and knows no API client: its caller hands it an
//! [`Enroller`] (the engine's, over the control plane's keys and client).

use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::model::control::AgentRecord;
use crate::pki::tls::http_client;
use crate::pki::{ControlPin, PkiError};

use super::Secret;

/// How long a join token is good for: enough for a slow host to start.
const JOIN_TTL: Duration = Duration::from_mins(15);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an [`Enroller`] could not do what was asked (its own error, said whole).
pub type EnrollError = Box<dyn std::error::Error + Send + Sync>;

/// The control plane's side of enrolling an agent, as deploy's caller
/// provides it.
pub trait Enroller: Send + Sync {
    /// A one-use join token bound to `host`, vouching for it and `names`
    /// (in that order), carrying the control plane's pin, good for `ttl`.
    fn join_token(
        &self,
        host: &str,
        names: &[String],
        ttl: Duration,
    ) -> Result<Secret, EnrollError>;
    /// Every agent the registry knows.
    fn agents(&self) -> BoxFuture<'_, Result<Vec<AgentRecord>, EnrollError>>;
}

/// Why talking to the control plane (or an agent) failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    Token(String),
    #[error(transparent)]
    Tls(#[from] PkiError),
    #[error("{url}: {reason}")]
    Request { url: String, reason: String },
}

/// The control plane as deploy uses it.
pub struct ControlPlane {
    url: String,
    /// More replicas sharing the registry: agents are told of them all.
    replicas: Vec<String>,
    ca_pem: String,
    pin: ControlPin,
    enroller: Box<dyn Enroller>,
    /// Talks to agents' `/healthz`.
    client: reqwest::Client,
}

impl ControlPlane {
    /// `url` is the control plane's base URL (`https://host:port`), as
    /// agents will reach it; `ca_pem` the fleet CA; `pin` the control
    /// plane's pin; `enroller` mints join tokens and reads the registry.
    pub fn new(
        url: &str,
        ca_pem: String,
        pin: ControlPin,
        enroller: Box<dyn Enroller>,
    ) -> Result<Self, ControlError> {
        let client = http_client(&ca_pem, REQUEST_TIMEOUT)?;
        Ok(Self {
            url: url.trim_end_matches('/').to_string(),
            replicas: Vec::new(),
            ca_pem,
            pin,
            enroller,
            client,
        })
    }

    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Adds the URLs of replicas sharing this control plane's registry and
    /// keys: deployed agents fail over among them all (the [`Enroller`]
    /// fails over on its own).
    #[must_use]
    pub fn with_replicas(mut self, replicas: &[String]) -> Self {
        self.replicas = replicas
            .iter()
            .map(|r| r.trim_end_matches('/').to_owned())
            .filter(|r| *r != self.url)
            .collect();
        self
    }

    /// Every URL agents are told: this control plane's, then the replicas'.
    #[must_use]
    pub fn urls(&self) -> Vec<String> {
        std::iter::once(self.url.clone())
            .chain(self.replicas.iter().cloned())
            .collect()
    }

    #[must_use]
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The control plane's pin, for the agent's config.
    #[must_use]
    pub fn pin(&self) -> ControlPin {
        self.pin
    }

    /// A fresh one-use join token bound to `host` (the address deploy
    /// connected to), vouching for it and for `reported_name` (what the
    /// host called itself, when that is a usable host name), in that
    /// order: the console reads the agent at `host`.
    pub fn join_token(
        &self,
        host: &str,
        reported_name: Option<&str>,
    ) -> Result<Secret, ControlError> {
        let names: Vec<String> = reported_name
            .filter(|n| usable_name(n))
            .map(str::to_owned)
            .into_iter()
            .collect();
        self.enroller
            .join_token(host, &names, JOIN_TTL)
            .map_err(|e| ControlError::Token(e.to_string()))
    }

    /// Every agent the registry knows.
    pub async fn agents(&self) -> Result<Vec<AgentRecord>, ControlError> {
        self.enroller
            .agents()
            .await
            .map_err(|e| ControlError::Request {
                url: format!("{}/v1/agents", self.url),
                reason: e.to_string(),
            })
    }

    /// Whether the agent at `host:port` answers `/healthz` with a
    /// certificate from the fleet CA.
    pub async fn healthz(&self, host: &str, port: u16) -> Result<(), ControlError> {
        let url = format!("https://{}:{port}/healthz", url_host(host));
        let failed = |reason: String| ControlError::Request {
            url: url.clone(),
            reason,
        };
        let response = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| failed(crate::pki::tls::error_chain(&e)))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(failed(response.status().to_string()))
        }
    }
}

/// A name a host reported that may go in its certificate: a DNS name, not
/// an address (an address is vouched for only when deploy connected to
/// it), and not `localhost`.
#[must_use]
pub fn usable_name(name: &str) -> bool {
    name.parse::<std::net::IpAddr>().is_err()
        && rustls_pki_types::DnsName::try_from(name).is_ok()
        && !name.eq_ignore_ascii_case("localhost")
        && !name.to_ascii_lowercase().ends_with(".localhost")
}

/// An address as URLs spell it (`[::1]` for IPv6).
#[must_use]
pub fn url_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}
