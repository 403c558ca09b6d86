//! Deploy's view of the control plane: join tokens minted locally with its
//! signing key (vouching for the address deploy connected to and the name
//! the host reported, and carrying the control plane's pin), and the two
//! checks that a deployed agent works (its `/healthz` over the fleet CA,
//! and its entry in the registry).

use std::time::Duration;

use crate::auth::{Audience, AuthError, JoinGrant, TokenIssuer};
use crate::control::client::ControlClient;
use crate::model::control::AgentRecord;
use crate::pki::tls::http_client;
use crate::pki::{ControlPin, PkiError};

use super::Secret;

/// How long a join token is good for: enough for a slow host to start.
const JOIN_TTL: Duration = Duration::from_mins(15);
/// The operator token deploy mints for itself: longer than a rollout.
const OPERATOR_TTL: Duration = Duration::from_hours(12);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why talking to the control plane (or an agent) failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot mint a token: {0}")]
    Token(#[from] AuthError),
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
    issuer: TokenIssuer,
    /// Talks to agents' `/healthz`.
    client: reqwest::Client,
    /// Reads the registry.
    api: ControlClient,
}

impl ControlPlane {
    /// `url` is the control plane's base URL (`https://host:port`), as
    /// agents will reach it; `ca_pem` the fleet CA; `pin` the control
    /// plane's pin; `issuer` holds the control plane's token signing key.
    pub fn new(
        url: &str,
        ca_pem: String,
        pin: ControlPin,
        issuer: TokenIssuer,
    ) -> Result<Self, ControlError> {
        let client = http_client(&ca_pem, REQUEST_TIMEOUT)?;
        let (token, _) = issuer.issue(Audience::Operator, "fleetctl-deploy", OPERATOR_TTL)?;
        let api = ControlClient::new(url, &ca_pem, pin, token, REQUEST_TIMEOUT)?;
        Ok(Self {
            url: url.trim_end_matches('/').to_string(),
            replicas: Vec::new(),
            ca_pem,
            pin,
            issuer,
            client,
            api,
        })
    }

    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Adds the URLs of replicas sharing this control plane's registry and
    /// keys: deployed agents fail over among them all, and so do deploy's
    /// own registry reads.
    pub fn with_replicas(mut self, replicas: &[String]) -> Result<Self, ControlError> {
        if replicas.is_empty() {
            return Ok(self);
        }
        self.replicas = replicas
            .iter()
            .map(|r| r.trim_end_matches('/').to_owned())
            .filter(|r| *r != self.url)
            .collect();
        let (token, _) = self
            .issuer
            .issue(Audience::Operator, "fleetctl-deploy", OPERATOR_TTL)?;
        self.api = ControlClient::with_replicas(
            &self.urls(),
            &self.ca_pem,
            self.pin,
            token,
            REQUEST_TIMEOUT,
        )?;
        Ok(self)
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
        let grant = JoinGrant {
            host: host.to_owned(),
            names: reported_name
                .filter(|n| usable_name(n))
                .map(str::to_owned)
                .into_iter()
                .collect(),
            control_pin: Some(self.pin.to_string()),
        };
        let (token, _) = self.issuer.issue_join(&grant, JOIN_TTL)?;
        Ok(Secret::new(token))
    }

    /// Every agent the registry knows.
    pub async fn agents(&self) -> Result<Vec<AgentRecord>, ControlError> {
        self.api.agents().await.map_err(|e| ControlError::Request {
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
