//! The console's sections: `[ssh]`, `[engine]` and `[tui]`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;
use crate::ssh::HostKeyPolicy;

/// `[ssh]`: how jobs reach hosts over SSH, in the console and headless;
/// headless commands' flags override it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SshConsoleConfig {
    /// Log in as this user [default: ~/.ssh/config, else the local user].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Identity files tried before the config's and the defaults.
    pub identities: Vec<PathBuf>,
    /// [default: ~/.ssh/known_hosts]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<PathBuf>,
    /// [default: ~/.ssh/config]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_config: Option<PathBuf>,
    /// Unknown host keys: strict, accept-new, or ask. Unset: ask in the
    /// console (a modal), strict in headless commands (nobody may be there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_key_policy: Option<HostKeyPolicy>,
    /// Hosts fingerprinted, deployed or undeployed at once.
    pub concurrency: usize,
    /// Time allowed per host for fingerprinting.
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl Default for SshConsoleConfig {
    fn default() -> Self {
        Self {
            user: None,
            identities: Vec::new(),
            known_hosts: None,
            ssh_config: None,
            host_key_policy: None,
            concurrency: 32,
            timeout: Duration::from_secs(30),
        }
    }
}

/// `[engine]`: how the console watches agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSettings {
    /// How often each agent's stats are read.
    #[serde(with = "duration")]
    pub poll_interval: Duration,
    /// Time allowed for one stats read.
    #[serde(with = "duration")]
    pub poll_timeout: Duration,
    /// Stats reads at once.
    pub poll_concurrency: usize,
    /// Longest wait between reads of an agent that does not answer.
    #[serde(with = "duration")]
    pub poll_max_backoff: Duration,
    /// How often the control plane's registry is read.
    #[serde(with = "duration")]
    pub registry_interval: Duration,
    /// Where deployed agents listen; `{host}` stands for the host's address.
    pub agent_listen: String,
    /// Which control plane the console uses.
    pub control: ControlChoice,
    /// Where the fleet table's stats come from.
    pub stats_source: StatsSourceChoice,
    /// The Prometheus to read them from, with `stats_source = "prometheus"`.
    pub prometheus: PrometheusConfig,
}

/// `engine.stats_source`: read every agent (the default), or ask Prometheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatsSourceChoice {
    /// The console reads every agent's `/v1/stats` itself.
    #[default]
    Agents,
    /// A few PromQL queries per interval to `[engine.prometheus]`, whatever
    /// the fleet's size; the host detail still reads its agent.
    Prometheus,
}

/// `[engine.prometheus]`: the Prometheus (or Thanos, Mimir: the same HTTP
/// API) that scrapes the agents.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Its base URL, `https://prometheus.example:9090` (a path prefix is kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A bearer token, in a file (mode 0600).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<PathBuf>,
    /// Basic authentication: the user, and the password in a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic_user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic_password_file: Option<PathBuf>,
    /// The CA (PEM) its certificate chains to, for https.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Label matchers picking the agents' series, as in the README's
    /// scrape config: `job="fleet"`.
    pub selector: String,
}

/// `engine.control`: embed the control plane in the console, or use one
/// that runs elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ControlChoice {
    /// `control.url` set: use it; else embed on `control.listen` (or use
    /// the `fleetctl serve` already listening there).
    #[default]
    Auto,
    /// Always embed on `control.listen`; agents are told `control.url`
    /// when set (a name they can reach).
    Embed,
    /// Never embed: use `control.url` (else `https://<control.listen>`).
    External,
}

impl Default for EngineSettings {
    /// The engine's own defaults: one place for each.
    fn default() -> Self {
        let poll = crate::engine::PollSettings::default();
        Self {
            poll_interval: poll.interval,
            poll_timeout: poll.timeout,
            poll_concurrency: poll.concurrency,
            poll_max_backoff: poll.max_backoff,
            registry_interval: poll.registry_interval,
            agent_listen: poll.agent_listen,
            control: ControlChoice::Auto,
            stats_source: StatsSourceChoice::Agents,
            prometheus: PrometheusConfig {
                selector: "job=\"fleet\"".into(),
                ..PrometheusConfig::default()
            },
        }
    }
}

impl EngineSettings {
    pub(super) fn check(&self) -> Result<(), String> {
        for (name, d) in [
            ("poll_interval", self.poll_interval),
            ("poll_timeout", self.poll_timeout),
            ("registry_interval", self.registry_interval),
        ] {
            if d.is_zero() {
                return Err(format!("engine.{name}: must be more than 0"));
            }
        }
        if self.poll_concurrency == 0 {
            return Err("engine.poll_concurrency: must be at least 1".into());
        }
        if self.poll_max_backoff < self.poll_interval {
            return Err("engine.poll_max_backoff: must be at least poll_interval".into());
        }
        let prom = &self.prometheus;
        if self.stats_source == StatsSourceChoice::Prometheus && prom.url.is_none() {
            return Err(
                "engine.prometheus.url: stats_source = \"prometheus\" needs the Prometheus URL"
                    .into(),
            );
        }
        if let Some(url) = &prom.url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(format!(
                "engine.prometheus.url: {url:?} must start with https:// (or http:// on loopback)"
            ));
        }
        if prom.bearer_token_file.is_some() && prom.basic_user.is_some() {
            return Err(
                "engine.prometheus: bearer_token_file and basic_user are two ways to log in; pick one"
                    .into(),
            );
        }
        if prom.basic_user.is_some() != prom.basic_password_file.is_some() {
            return Err("engine.prometheus: basic_user and basic_password_file go together".into());
        }
        if prom.selector.contains(['{', '}']) {
            return Err(
                "engine.prometheus.selector: label matchers without braces, e.g. job=\"fleet\""
                    .into(),
            );
        }
        Ok(())
    }
}

/// The console's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TuiConfig {
    /// A built-in theme, or `NAME` for `<config dir>/themes/NAME.toml`.
    pub theme: String,
}

impl Default for TuiConfig {
    fn default() -> Self {
        Self {
            theme: "default".into(),
        }
    }
}
