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
