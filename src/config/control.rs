//! `[control]`: the control plane's settings.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;

/// `[control]`: the control plane (`fleetctl serve`) and how the CLI reaches it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// Address and port `fleetctl serve` listens on.
    pub listen: SocketAddr,
    /// The URL agents and the CLI use; `https://<listen>` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// More names and addresses for the control plane's certificate.
    pub names: Vec<String>,
    #[serde(with = "duration")]
    pub cert_ttl: Duration,
    #[serde(with = "duration")]
    pub identity_ttl: Duration,
    #[serde(with = "duration")]
    pub join_ttl: Duration,
    #[serde(with = "duration")]
    pub operator_ttl: Duration,
    /// The longest an operator, stats or sd token may live: longer ones are
    /// never minted, and refused by the control plane and agents.
    #[serde(with = "duration")]
    pub max_operator_ttl: Duration,
    /// Most connections from one address at once (below the 4,096 in all).
    pub max_connections_per_source: usize,
    #[serde(with = "duration")]
    pub heartbeat_interval: Duration,
    #[serde(with = "duration")]
    pub lost_after: Duration,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            url: None,
            names: Vec::new(),
            cert_ttl: Duration::from_hours(24),
            identity_ttl: Duration::from_hours(1),
            join_ttl: Duration::from_mins(15),
            operator_ttl: Duration::from_hours(1),
            max_operator_ttl: Duration::from_hours(30 * 24),
            max_connections_per_source: crate::pki::tls::MAX_PER_SOURCE,
            heartbeat_interval: Duration::from_secs(30),
            lost_after: Duration::from_secs(90),
        }
    }
}

impl ControlConfig {
    /// The URL clients use: `url`, else the listen address (loopback when
    /// it listens on every address).
    #[must_use]
    pub fn client_url(&self) -> String {
        self.url.as_ref().map_or_else(
            || crate::control::local_url(self.listen),
            |url| url.trim_end_matches('/').to_owned(),
        )
    }

    /// Whether the settings make sense together; the message names the key.
    pub fn check(&self) -> Result<(), String> {
        if let Some(url) = &self.url
            && !url.starts_with("https://")
        {
            return Err(format!("control.url: {url:?} must start with https://"));
        }
        for (name, d) in [
            ("cert_ttl", self.cert_ttl),
            ("identity_ttl", self.identity_ttl),
            ("join_ttl", self.join_ttl),
            ("operator_ttl", self.operator_ttl),
            ("max_operator_ttl", self.max_operator_ttl),
            ("heartbeat_interval", self.heartbeat_interval),
            ("lost_after", self.lost_after),
        ] {
            if d.as_secs() == 0 {
                return Err(format!("control.{name}: must be at least 1s"));
            }
        }
        if self.max_connections_per_source == 0
            || self.max_connections_per_source >= crate::pki::tls::MAX_CONNECTIONS
        {
            return Err(format!(
                "control.max_connections_per_source: must be between 1 and {} (below the cap on all connections)",
                crate::pki::tls::MAX_CONNECTIONS - 1
            ));
        }
        if self.operator_ttl > self.max_operator_ttl {
            return Err(format!(
                "control.operator_ttl: {} is longer than control.max_operator_ttl ({})",
                super::duration::format_duration(self.operator_ttl),
                super::duration::format_duration(self.max_operator_ttl)
            ));
        }
        if self.lost_after < self.heartbeat_interval {
            return Err(
                "control.lost_after: must be at least heartbeat_interval, or every agent is lost"
                    .into(),
            );
        }
        Ok(())
    }
}
