//! The background engine: one task owns the fleet state and runs jobs;
//! front ends talk to it only through typed messages.
//!
//! ```text
//!  EngineHandle (cloneable) ──Command──▶ actor task ──Event──▶ front end
//!                                        │  owns the fleet,   (unbounded, never waits)
//!                                        │  spawns jobs ◀─────── JobMsg (scan, fingerprint,
//!                                        │                        deploy, undeploy, revoke)
//!                                        │  ◀── poller ───────── JobMsg (stats, registry)
//!  front end ◀── watch<Arc<FleetSnapshot>> ┘  publishes after each batch of messages
//! ```
//!
//! With a [`ControlLink`] the actor runs the [`poller`]: every agent's
//! stats and the control plane's registry, merged into the hosts.
//!
//! An actor in the shape of Alice Ryhl's "Actors with Tokio": the task ends
//! when the last handle is dropped, cancelling its jobs. Every channel the
//! front end sends on is unbounded, so a key press never waits on the engine.

mod actor;
pub mod deploy;
mod jobs;
pub mod poller;
pub mod prometheus;
mod prompt;
pub mod state;
pub mod timeline;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::config::ScanConfig;
use crate::deploy::layout::InstallScope;
use crate::model::{AgentState, AgentStats, HostScan, SshState};
use crate::ssh::{ConnectFlags, HostKeyPolicy};

pub use prompt::EnginePrompter;
pub use state::{FleetSnapshot, HISTORY_WINDOW, History, HostEvent, HostView, JobView, Sample};
pub use timeline::{Mark, TimedMark, Timeline};

/// Identifies a job for its whole life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    Scan,
    Fingerprint,
    Deploy,
    Undeploy,
    Revoke,
    Refresh,
}

impl JobKind {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Scan => "scan",
            JobKind::Fingerprint => "fingerprint",
            JobKind::Deploy => "deploy",
            JobKind::Undeploy => "undeploy",
            JobKind::Revoke => "revoke",
            JobKind::Refresh => "refresh",
        }
    }
}

/// Identifies a question a job is waiting on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PromptId(pub u64);

/// A question a job needs a person to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub id: PromptId,
    pub job: Option<JobId>,
    pub kind: PromptKind,
}

/// What is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptKind {
    /// The passphrase of an encrypted key (answer: [`Answer::Secret`]).
    Passphrase { key: PathBuf },
    /// A login password (answer: [`Answer::Secret`]).
    Password { user: String, host: String },
    /// Trust a host key known_hosts does not list (answer: [`Answer::Confirm`]).
    HostKey { host: String, fingerprint: String },
}

/// Text that must never be printed: its `Debug` is a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A person's answer to a [`Prompt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Secret(Secret),
    Confirm(bool),
    /// Closed without answering: the job skips what it asked about.
    Dismissed,
}

/// What front ends ask the engine to do.
#[derive(Debug, Clone)]
pub enum Command {
    /// Discover hosts: targets as `fleetctl scan` takes them, space separated.
    Scan {
        targets: String,
    },
    /// Learn what these hosts are over SSH.
    Fingerprint {
        hosts: Vec<IpAddr>,
    },
    /// Put the agent on these hosts.
    Deploy {
        hosts: Vec<IpAddr>,
    },
    /// Stop and remove the agent from these hosts.
    Undeploy {
        hosts: Vec<IpAddr>,
    },
    /// Revoke these agents' identities at the control plane.
    Revoke {
        hosts: Vec<IpAddr>,
    },
    /// Reread the inventory.
    Refresh,
    CancelJob(JobId),
    AnswerPrompt {
        id: PromptId,
        answer: Answer,
    },
    /// The host whose detail is open (or none): with Prometheus as the
    /// stats source, its agent is still read directly, for per-core and
    /// live values.
    Focus {
        addr: Option<IpAddr>,
    },
    /// One stats read of one agent (the poller's output).
    Stats {
        addr: IpAddr,
        result: Result<Box<AgentStats>, String>,
    },
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Finished; a one-line summary.
    Done(String),
    /// Could not run or failed as a whole (single hosts failing are
    /// reported as their own events).
    Failed(String),
    Cancelled,
}

/// What happened, for front ends to show. The snapshot holds the state;
/// events say what changed, for logs and notifications.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The inventory was read: the fleet as it was.
    InventoryLoaded {
        hosts: usize,
    },
    /// A scan found a live host (new or known).
    HostFound {
        scan: HostScan,
        new: bool,
    },
    /// A known host stopped answering.
    HostSilent {
        addr: IpAddr,
    },
    /// Fingerprinting learned a host's facts.
    Facts {
        addr: IpAddr,
        summary: String,
    },
    /// SSH to a host failed.
    SshFailed {
        addr: IpAddr,
        state: SshState,
        error: String,
    },
    /// A deploy moved to its next step on a host.
    DeployStep {
        addr: IpAddr,
        step: String,
    },
    /// The agent's state changed (stats started or stopped answering).
    AgentChanged {
        addr: IpAddr,
        from: AgentState,
        to: AgentState,
        error: Option<String>,
    },
    /// Something went wrong that is not a job's own end.
    Error {
        addr: Option<IpAddr>,
        message: String,
    },
    JobStarted {
        id: JobId,
        kind: JobKind,
        label: String,
    },
    JobProgress {
        id: JobId,
        done: u64,
        total: u64,
    },
    JobEnded {
        id: JobId,
        kind: JobKind,
        outcome: JobOutcome,
    },
    PromptNeeded(Prompt),
    /// A prompt's job ended before it was answered: close its modal.
    PromptWithdrawn {
        id: PromptId,
    },
    /// Every stats read started so far has come back: `polled` reads since
    /// the last round; `answering` of the `agents` known answered their last.
    PollRound {
        polled: u64,
        answering: u64,
        agents: u64,
    },
}

/// What the engine needs to run jobs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The SQLite inventory; `None` keeps the fleet in memory only.
    pub inventory: Option<PathBuf>,
    pub scan: ScanConfig,
    /// Most sockets a scan may hold open (below the open-files limit).
    pub max_in_flight: usize,
    pub ssh: SshSettings,
    /// Hosts fingerprinted at once.
    pub fingerprint_concurrency: usize,
    /// Time allowed per host.
    pub fingerprint_timeout: Duration,
    /// The control plane (registry, revocation, tokens); `None`: no agents
    /// are watched, and deploy and revoke say why they cannot run.
    pub control: Option<ControlLink>,
    pub poll: PollSettings,
    pub deploy: DeploySettings,
}

/// How the engine reaches the control plane: its URL, the fleet CA (the
/// only root trusted, for it and for agents) and the directory holding the
/// token signing key, from which operator and join tokens are minted.
#[derive(Debug, Clone)]
pub struct ControlLink {
    pub url: String,
    /// More control planes sharing its registry and keys (replicas): calls
    /// fail over to them, deployed agents are told of them all.
    pub replicas: Vec<String>,
    pub ca_pem: String,
    pub control_dir: PathBuf,
    /// Lifetime of the operator tokens the engine mints (renewed at 2/3).
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

    /// The control plane's signing key, read off the runtime's threads.
    /// Only loaded, never created: a key the control plane does not serve
    /// with would mint tokens nobody accepts.
    pub async fn issuer(&self) -> Result<crate::auth::TokenIssuer, String> {
        let dir = self.control_dir.clone();
        tokio::task::spawn_blocking(move || crate::auth::TokenIssuer::load(&dir))
            .await
            .map_err(|e| format!("the token key reader stopped: {e}"))?
            .map_err(|e| e.to_string())
    }

    /// The control plane's pin, from its intermediate CA in the control
    /// dir: what every call to it checks beyond the fleet CA.
    pub async fn control_pin(&self) -> Result<crate::pki::ControlPin, String> {
        let path = self.control_dir.join("control-ca.pem");
        let pem = tokio::fs::read_to_string(&path)
            .await
            .map_err(|e| format!("cannot read the control plane CA {}: {e}", path.display()))?;
        crate::pki::ControlPin::of_cert_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))
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
    pub source: prometheus::StatsSource,
}

impl Default for PollSettings {
    fn default() -> Self {
        let c = crate::config::EngineSettings::default();
        Self {
            interval: c.poll_interval,
            timeout: c.poll_timeout,
            concurrency: c.poll_concurrency,
            max_backoff: c.poll_max_backoff,
            registry_interval: c.registry_interval,
            agent_listen: c.agent_listen,
            source: prometheus::StatsSource::Agents,
        }
    }
}

/// How deploy jobs run.
#[derive(Debug, Clone)]
pub struct DeploySettings {
    /// The build to push; `None`: this binary.
    pub agent_binary: Option<PathBuf>,
    /// The agent's `listen`; `{host}` stands for the address.
    pub listen: String,
    /// Any one command or transfer on a host.
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
            listen: "0.0.0.0:9701".into(),
            step_timeout: Duration::from_mins(1),
            wait_timeout: Duration::from_mins(1),
            scope: InstallScope::Auto,
            controller_for: BTreeMap::new(),
        }
    }
}

/// How jobs reach hosts over SSH.
#[derive(Debug, Clone)]
pub struct SshSettings {
    pub known_hosts: PathBuf,
    pub ssh_config: PathBuf,
    pub policy: HostKeyPolicy,
    pub flags: ConnectFlags,
}

/// Talks to the engine. Cloneable; the engine stops when the last clone
/// is dropped.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    commands: mpsc::UnboundedSender<Command>,
    snapshot: watch::Receiver<Arc<FleetSnapshot>>,
}

impl EngineHandle {
    /// Asks the engine to do something; never waits. Returns false when the
    /// engine has stopped.
    #[allow(clippy::must_use_candidate)] // fire and forget is the usual use
    pub fn send(&self, command: Command) -> bool {
        self.commands.send(command).is_ok()
    }

    /// Feeds one stats read of one agent into the fleet state and history.
    pub fn apply_stats<E: fmt::Display>(&self, addr: IpAddr, result: Result<AgentStats, E>) {
        let result = result.map(Box::new).map_err(|e| e.to_string());
        self.send(Command::Stats { addr, result });
    }

    /// The latest snapshot; never waits.
    #[must_use]
    pub fn snapshot(&self) -> Arc<FleetSnapshot> {
        Arc::clone(&self.snapshot.borrow())
    }

    /// A receiver that wakes when a new snapshot is published.
    #[must_use]
    pub fn watch(&self) -> watch::Receiver<Arc<FleetSnapshot>> {
        self.snapshot.clone()
    }
}

/// Starts the engine on the current Tokio runtime: it reads the inventory
/// first, then serves commands. Events arrive on the returned receiver.
#[must_use]
pub fn spawn(config: EngineConfig) -> (EngineHandle, mpsc::UnboundedReceiver<Event>) {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (event_tx, event_rx) = mpsc::unbounded_channel();
    let (snap_tx, snap_rx) = watch::channel(Arc::new(FleetSnapshot::empty()));
    tokio::spawn(actor::run(config, cmd_rx, event_tx, snap_tx));
    (
        EngineHandle {
            commands: cmd_tx,
            snapshot: snap_rx,
        },
        event_rx,
    )
}

#[cfg(test)]
mod tests;
