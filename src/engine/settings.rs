//! What the engine is started with: its front end builds these (the CLI
//! from the config file), so the engine reads no config of its own. A job
//! lays what its [request](super::Command) sets over them, in one place
//! per job.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::jobs::JobError;
use crate::control::LocalKeys;
use crate::deploy::layout::InstallScope;
use crate::model::duration;
use crate::model::stats::default_agent_listen;
use crate::scan::MethodChoice;
use crate::ssh::{ConnectFlags, HostKeyPolicy, Prompter};

/// What the engine needs to run jobs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The SQLite inventory jobs record in; `None` keeps the fleet in memory only.
    pub inventory: Option<PathBuf>,
    /// Keep the fleet: read from the inventory at start, then updated by
    /// every job's results and every agent read (the console, `status`).
    /// A headless job keeps none: it records in the inventory and hands
    /// its results to its front end, which prints them.
    pub keep_fleet: bool,
    /// Scans' defaults (`[scan]`).
    pub scan: ScanConfig,
    /// Most sockets a scan may hold open, whatever `scan.max_in_flight`
    /// says (below the process's open-files limit).
    pub max_in_flight: usize,
    /// How jobs reach hosts over SSH (`[ssh]`).
    pub ssh: SshSettings,
    /// The control plane (registry, revocation, tokens); `None`: deploy
    /// and revoke say why they cannot run.
    pub control: Option<ControlLink>,
    /// Watch the agents (the poller, over `control`); `None`: no agent is read.
    pub poll: Option<PollSettings>,
    pub deploy: DeploySettings,
    /// Where jobs' questions go.
    pub questions: Questions,
}

/// `[scan]`: how scans probe unless a request says otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScanConfig {
    pub method: MethodChoice,
    pub ports: Vec<u16>,
    pub rate: u32,
    #[serde(with = "duration")]
    pub timeout: Duration,
    pub retries: u32,
    pub max_hosts: u64,
    pub ssh_banner: bool,
    #[serde(with = "duration")]
    pub banner_timeout: Duration,
    pub resolve: bool,
    pub max_in_flight: usize,
}

impl Default for ScanConfig {
    fn default() -> Self {
        Self {
            method: MethodChoice::Auto,
            ports: vec![22, 80, 443],
            rate: 100_000,
            timeout: Duration::from_millis(500),
            retries: 1,
            max_hosts: 65_536,
            ssh_banner: true,
            banner_timeout: Duration::from_secs(2),
            resolve: false,
            max_in_flight: 4096,
        }
    }
}

/// How jobs reach hosts over SSH.
#[derive(Debug, Clone)]
pub struct SshSettings {
    /// Learn and check host keys in this file (and the global ones);
    /// `None`: in the files each host's ssh_config names, as OpenSSH does.
    pub known_hosts: Option<PathBuf>,
    /// `None`: `~/.ssh/config`.
    pub ssh_config: Option<PathBuf>,
    pub policy: HostKeyPolicy,
    pub flags: ConnectFlags,
    /// Hosts fingerprinted, deployed or undeployed at once.
    pub concurrency: usize,
    /// Time allowed per host for fingerprinting, connection included.
    pub timeout: Duration,
}

/// How the engine reaches the control plane: its URL, and the directory
/// of its keys (the fleet CA, its pin, the token signing key).
#[derive(Debug, Clone)]
pub struct ControlLink {
    pub url: String,
    /// More control planes sharing its registry and keys (replicas): calls
    /// fail over to them, deployed agents are told of them all.
    pub replicas: Vec<String>,
    pub control_dir: PathBuf,
    /// Lifetime of the operator and stats tokens the engine mints
    /// (renewed at 2/3).
    pub operator_ttl: Duration,
}

impl ControlLink {
    /// Every control plane URL: `url` first, then the replicas.
    #[must_use]
    pub fn urls(&self) -> Vec<String> {
        let mut urls = vec![self.url.clone()];
        for r in &self.replicas {
            if !urls.contains(r) {
                urls.push(r.clone());
            }
        }
        urls
    }

    /// The control plane's keys, read off the runtime's threads.
    pub(crate) async fn keys(&self) -> Result<LocalKeys, JobError> {
        let dir = self.control_dir.clone();
        tokio::task::spawn_blocking(move || LocalKeys::load(&dir))
            .await
            .map_err(|e| JobError::stopped("key reader", &e))?
            .map_err(JobError::from)
    }
}

/// How agents are watched (`[engine]` in the config).
#[derive(Debug, Clone)]
pub struct PollSettings {
    pub interval: Duration,
    /// Per read, connect included.
    pub timeout: Duration,
    /// Reads at once.
    pub concurrency: usize,
    /// Longest wait between reads of an agent that does not answer.
    pub max_backoff: Duration,
    pub registry_interval: Duration,
    /// Where deployed agents listen (for those the registry does not list).
    pub agent_listen: String,
    /// Where the fleet table's stats come from.
    pub source: super::prometheus::StatsSource,
}

impl Default for PollSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(3),
            concurrency: 256,
            max_backoff: Duration::from_mins(1),
            registry_interval: Duration::from_secs(5),
            agent_listen: default_agent_listen(),
            source: super::prometheus::StatsSource::Agents,
        }
    }
}

/// How deploy jobs run unless a request says otherwise.
#[derive(Debug, Clone)]
pub struct DeploySettings {
    /// The build to push; `None`: this binary.
    pub agent_binary: Option<PathBuf>,
    /// The agent's `listen`; `{host}` stands for the address.
    pub listen: String,
    /// Any one command or transfer on a host (undeploy's too).
    pub step_timeout: Duration,
    /// For `/healthz`, and again for the registry to list the agent.
    pub wait_timeout: Duration,
    /// Where agents are installed (and undeploy looks for them).
    pub scope: InstallScope,
    /// Agents at these addresses reach the control plane at another URL
    /// (the demo sends one through a relay it cuts).
    pub controller_for: BTreeMap<IpAddr, String>,
}

impl Default for DeploySettings {
    fn default() -> Self {
        Self {
            agent_binary: None,
            listen: default_agent_listen(),
            step_timeout: Duration::from_mins(1),
            wait_timeout: Duration::from_mins(1),
            scope: InstallScope::Auto,
            controller_for: BTreeMap::new(),
        }
    }
}

/// Where jobs' questions (key passphrases, passwords, unknown host keys) go.
#[derive(Clone, Default)]
pub enum Questions {
    /// Out as [`Event::PromptNeeded`](super::Event), answered with
    /// [`Command::AnswerPrompt`](super::Command): the console's modals.
    #[default]
    Events,
    /// To this prompter, answered where the job waits: a headless
    /// command's terminal (or `SSH_ASKPASS`).
    Ask(Arc<dyn Prompter>),
}

impl fmt::Debug for Questions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Events => "Questions::Events",
            Self::Ask(_) => "Questions::Ask(..)",
        })
    }
}
