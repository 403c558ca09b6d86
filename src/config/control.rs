//! `[control]`: the control plane's settings.

use std::net::SocketAddr;
use std::path::PathBuf;
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
    /// The URLs of the other `fleetctl serve` replicas sharing this one's
    /// registry and keys: agents (deploy writes them all), the CLI and the
    /// console fail over among `url` and these.
    pub replicas: Vec<String>,
    /// Where the registry lives: `sqlite` (the inventory file in the data
    /// dir: one control plane) or a `postgres://` URL (shared by replicas).
    pub registry: String,
    /// The CA (PEM) that signed the PostgreSQL server's certificate: TLS to
    /// the database, checked against it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_ca_file: Option<PathBuf>,
    /// A file holding the database password (mode 0600), so neither the
    /// URL nor the config file carries it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_password_file: Option<PathBuf>,
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
    /// The control plane's own defaults, one place for each.
    fn default() -> Self {
        let plane = crate::control::Settings::default();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            url: plane.url,
            names: plane.names,
            replicas: Vec::new(),
            registry: "sqlite".into(),
            registry_ca_file: None,
            registry_password_file: None,
            cert_ttl: plane.cert_ttl,
            identity_ttl: plane.identity_ttl,
            join_ttl: plane.join_ttl,
            operator_ttl: Duration::from_hours(1),
            max_operator_ttl: plane.max_operator_ttl,
            max_connections_per_source: plane.max_connections_per_source,
            heartbeat_interval: plane.heartbeat_interval,
            lost_after: plane.lost_after,
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

    /// Every control plane a client may call: [`Self::client_url`] first,
    /// then the replicas, each once.
    #[must_use]
    pub fn client_urls(&self) -> Vec<String> {
        let mut urls = vec![self.client_url()];
        for replica in &self.replicas {
            let replica = replica.trim_end_matches('/').to_owned();
            if !urls.contains(&replica) {
                urls.push(replica);
            }
        }
        urls
    }

    /// The PostgreSQL URL when the registry lives there.
    #[must_use]
    pub fn postgres_url(&self) -> Option<&str> {
        let r = self.registry.as_str();
        (r.starts_with("postgres://") || r.starts_with("postgresql://")).then_some(r)
    }

    /// Whether the settings make sense together; the message names the key.
    pub fn check(&self) -> Result<(), String> {
        if let Some(url) = &self.url
            && !url.starts_with("https://")
        {
            return Err(format!("control.url: {url:?} must start with https://"));
        }
        for url in &self.replicas {
            if !url.starts_with("https://") {
                return Err(format!(
                    "control.replicas: {url:?} must start with https://"
                ));
            }
        }
        if self.registry != "sqlite" && self.postgres_url().is_none() {
            return Err(
                "control.registry: must be \"sqlite\" or a postgres:// URL (postgres://user@host:5432/fleet)"
                    .into(),
            );
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
