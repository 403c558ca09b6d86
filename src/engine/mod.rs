//! The background engine: one task owns the fleet state and runs jobs;
//! front ends talk to it only through typed messages. The console and the
//! headless commands are both front ends: each job is written once, in
//! [`jobs`], whoever asks for it.
//!
//! ```text
//!  EngineHandle (cloneable) ──Command──▶ actor task ──Event──▶ front end
//!   (unbounded: a key press       │  owns the fleet,   (bounded; a slow front end
//!    never waits)                 │  spawns jobs        holds the jobs back)
//!                                 │  ◀── JobMsg (bounded) ── jobs: scan, fingerprint,
//!                                 │                          deploy, undeploy, revoke
//!                                 │  ◀── JobMsg (bounded) ── poller (stats, registry)
//!  front end ◀── watch<Arc<FleetSnapshot>> ┘  published after each batch of messages
//! ```
//!
//! With a [`ControlLink`] and [`PollSettings`] the actor runs the
//! [`poller`]: every agent's stats and the control plane's registry,
//! merged into the hosts.
//!
//! An actor in the shape of Alice Ryhl's "Actors with Tokio": the task ends
//! when the last handle is dropped, cancelling its jobs. The command
//! channel is the only unbounded one, and nothing the actor does waits on
//! a front end, so there is no cycle of bounded channels.

mod actor;
mod jobs;
pub mod poller;
pub mod prometheus;
mod prompt;
mod settings;
pub mod state;
pub mod timeline;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::model::{AgentState, HostScan, SshState};

pub use jobs::fingerprint::FingerprintRequest;
pub use jobs::logs::LogsRequest;
pub use jobs::revoke::RevokeRequest;
pub use jobs::rollout::{DeployRequest, UndeployRequest};
pub use jobs::run::RunRequest;
pub use jobs::scan::{SSH_PORT, ScanRequest, ScanSettings};
pub use jobs::session::connect;
pub use jobs::{DeployPlan, JobError, JobOutput, SshRequest};
pub use poller::WatchError;
pub use prompt::EnginePrompter;
pub use settings::{
    ControlLink, DeploySettings, EngineConfig, PollSettings, Questions, ScanConfig, SshSettings,
};
pub use state::{FleetSnapshot, HISTORY_WINDOW, History, HostEvent, HostView, JobView, Sample};
pub use timeline::{Mark, TimedMark, Timeline};

/// Events waiting for the front end in the channel, at most; more wait in
/// the actor, which then stops taking in job reports (and jobs wait).
const EVENT_QUEUE: usize = 1024;

/// The front end's end of the event channel.
pub type Events = mpsc::Receiver<Event>;

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
    Run,
    Logs,
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
            JobKind::Run => "run",
            JobKind::Logs => "logs",
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
    /// A rollout's batch ended: start the next? (answer: [`Answer::Confirm`];
    /// anything but yes aborts, leaving the hosts not started untouched).
    Gate {
        batch: usize,
        batches: usize,
        ok: usize,
        failed: usize,
    },
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

/// What front ends ask the engine to do. Each job's request carries what
/// the asker set; the rest comes from the engine's settings.
#[derive(Debug, Clone)]
pub enum Command {
    /// Discover hosts.
    Scan(ScanRequest),
    /// Learn what these hosts are over SSH.
    Fingerprint(FingerprintRequest),
    /// Put the agent on these hosts.
    Deploy(DeployRequest),
    /// Stop and remove the agent from these hosts.
    Undeploy(UndeployRequest),
    /// Revoke agents' identities at the control plane.
    Revoke(RevokeRequest),
    /// Run a command on these hosts over SSH.
    Run(RunRequest),
    /// Read (and follow) a host's agent log.
    Logs(LogsRequest),
    /// Reread the inventory.
    Refresh,
    CancelJob(JobId),
    /// Hold a rollout (no new host starts; hosts under way finish) or let it go on.
    PauseJob {
        id: JobId,
        paused: bool,
    },
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
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Finished; a one-line summary.
    Done(String),
    /// Could not run or failed as a whole (single hosts failing are
    /// reported as their own events).
    Failed(JobError),
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
    /// The inventory holds a rollout a crash or a quit cut short, with
    /// this many hosts left (`DeployRequest::resume` goes on with it).
    RolloutUnfinished {
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
    /// What a job produced, whole (each scanned host, fingerprint, deploy
    /// step, revocation): what headless commands print.
    Output {
        id: JobId,
        output: JobOutput,
    },
    /// Every stats read started so far has come back: `polled` reads since
    /// the last round; `answering` of the `agents` known answered their last.
    PollRound {
        polled: u64,
        answering: u64,
        agents: u64,
    },
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
/// first (when told to), then serves commands. Events arrive on the
/// returned receiver; a front end that stops reading them holds the jobs
/// back, never the commands it sends.
#[must_use]
pub fn spawn(config: EngineConfig) -> (EngineHandle, Events) {
    let (handle, events, _) = start(config);
    (handle, events)
}

/// [`spawn`], with the line jobs report on (tests feed stats through it).
fn start(config: EngineConfig) -> (EngineHandle, Events, mpsc::Sender<jobs::JobMsg>) {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (event_tx, event_rx) = mpsc::channel(EVENT_QUEUE);
    let (snap_tx, snap_rx) = watch::channel(Arc::new(FleetSnapshot::empty()));
    let (job_tx, job_rx) = mpsc::channel(actor::JOB_QUEUE);
    tokio::spawn(actor::run(
        config,
        cmd_rx,
        (job_tx.clone(), job_rx),
        event_tx,
        snap_tx,
    ));
    let handle = EngineHandle {
        commands: cmd_tx,
        snapshot: snap_rx,
    };
    (handle, event_rx, job_tx)
}

#[cfg(test)]
mod tests;
