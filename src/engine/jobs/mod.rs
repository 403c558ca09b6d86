//! The jobs the engine runs, each once: scan, fingerprint, deploy,
//! undeploy, revoke, run (and reading the inventory). The console and the
//! headless commands both send a request ([`super::Command`]); the job lays
//! it over the engine's settings, drives the capability modules, and
//! reports to the actor, which keeps the fleet and tells front ends
//! ([`JobOutput`] carries each job's results whole, for those that print
//! them).
//!
//! Adding a job: a request type and a `run` function here, a
//! [`super::Command`] variant and a [`super::JobKind`], and its outputs.

pub mod fingerprint;
pub mod inventory;
pub mod logs;
pub mod revoke;
pub mod rollout;
pub mod run;
pub mod scan;
pub mod session;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::poller::WatchError;
use super::prompt::EnginePrompter;
use super::{Answer, JobId, JobOutcome, PromptKind, Questions, SshSettings};
use crate::control::KeysError;
use crate::deploy::{Event as RolloutEvent, HostResult, RolloutOptions};
use crate::model::control::AgentRecord;
use crate::model::run::RunResult;
use crate::model::tags::Tags;
use crate::model::{AgentStats, Fingerprint, HostScan};
use crate::poll::PollError;
use crate::scan::ScanSummary;
use crate::ssh::config::{SshConfig, parse_jumps};
use crate::ssh::target::default_ssh_config;
use crate::ssh::{ConnectFlags, Connector, HostKeyPolicy, LocalUser, Prompter, SshTarget};
use crate::store::{Deployment, RunRecord, StoredFacts, StoredHost};

/// Why a job failed as a whole (single hosts failing are their own outputs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The request cannot be done as asked: the targets, hosts, files or
    /// settings it names are wrong (headless commands exit 2).
    #[error("{0}")]
    BadRequest(String),
    /// Deploy and revoke need a control plane; there is none.
    #[error("no control plane to {0}: set control.url, or let the console embed one")]
    NoControlPlane(&'static str),
    /// The inventory cannot be read or written.
    #[error("{0}")]
    Inventory(String),
    /// The control plane's keys or API failed.
    #[error("{0}")]
    Control(String),
    /// A task of the job stopped before it finished.
    #[error("the {what} stopped: {reason}")]
    Stopped { what: &'static str, reason: String },
    /// Anything else, said whole.
    #[error("{0}")]
    Failed(String),
}

impl JobError {
    pub(crate) fn stopped(what: &'static str, e: &tokio::task::JoinError) -> Self {
        Self::Stopped {
            what,
            reason: e.to_string(),
        }
    }
}

impl From<KeysError> for JobError {
    fn from(e: KeysError) -> Self {
        match e {
            // The operator pointed at a data dir no control plane uses.
            KeysError::NoKey { .. } => Self::BadRequest(e.to_string()),
            other => Self::Control(other.to_string()),
        }
    }
}

/// What a job produced, whole: the console takes what it needs into the
/// fleet; headless commands print it.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutput {
    /// Worth telling the operator: a fallback taken, what ssh_config says
    /// that is not followed. Text from files: escape before printing.
    Note(String),
    /// A scan's targets, expanded and in order, and how they are probed;
    /// `names`: reverse DNS names are looked up.
    ScanStarted {
        targets: Arc<[IpAddr]>,
        method: &'static str,
        names: bool,
    },
    /// One scanned host, silent ones too. `fingerprinting`: it showed SSH
    /// and its fingerprint follows (a scan with SSH).
    Scanned {
        host: HostScan,
        fingerprinting: bool,
    },
    /// How a scan went.
    ScanDone(ScanSummary),
    /// One host fingerprinted; `host` is the name it was asked by.
    Fingerprinted(Box<Fingerprint>),
    /// A deploy's plan (a dry run): nothing was changed.
    DeployPlan(Box<DeployPlan>),
    /// A step of deploying or undeploying one host; `addr` when the host
    /// was named by its address.
    Rollout {
        addr: Option<IpAddr>,
        event: RolloutEvent,
    },
    /// Every host's result, in the order the hosts were given.
    RolloutDone(Vec<HostResult>),
    /// One host's run of a command, as it finished.
    Ran(Box<RunResult>),
    /// A run is over: every started host has reported; `not_started`
    /// hosts were kept from starting by a cancel (Ctrl-C).
    RunDone { not_started: usize },
    /// Lines of an agent's log, as received (escape before showing).
    LogLines { host: String, lines: Vec<String> },
    /// An agent revoked (the registry's record after it), or why not.
    Revoked {
        addr: Option<IpAddr>,
        agent_id: String,
        result: Result<Box<AgentRecord>, JobError>,
    },
}

/// What a deploy would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployPlan {
    /// The build pushed, as [`crate::deploy::Artifact::describe`] says it.
    pub build: String,
    pub sha256: String,
    /// Where agents register.
    pub url: String,
    pub rollout: RolloutOptions,
    /// In order: (user, address or name, port).
    pub hosts: Vec<(String, String, u16)>,
}

/// How to reach hosts, as a request sets it (ssh(1)'s flags, the
/// console's nothing); what it leaves unset, the engine's [`SshSettings`] say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SshRequest {
    pub user: Option<String>,
    /// Tried before ssh_config's; replaces the settings' list when given.
    pub identities: Vec<PathBuf>,
    pub jump: Option<String>,
    pub connect_timeout: Option<Duration>,
    pub known_hosts: Option<PathBuf>,
    pub policy: Option<HostKeyPolicy>,
    pub ssh_config: Option<PathBuf>,
    /// Every host's port, over ssh_config's.
    pub port: Option<u16>,
    pub concurrency: Option<usize>,
    /// Per host, for fingerprinting.
    pub timeout: Option<Duration>,
}

impl SshRequest {
    /// The settings in effect: the engine's (the config file's), then
    /// what this request sets (the flags).
    #[must_use]
    pub fn over(&self, base: &SshSettings) -> SshSettings {
        let flags = &base.flags;
        SshSettings {
            known_hosts: self
                .known_hosts
                .clone()
                .or_else(|| base.known_hosts.clone()),
            ssh_config: self.ssh_config.clone().or_else(|| base.ssh_config.clone()),
            policy: self.policy.unwrap_or(base.policy),
            flags: ConnectFlags {
                user: self.user.clone().or_else(|| flags.user.clone()),
                port: self.port.or(flags.port),
                identities: if self.identities.is_empty() {
                    flags.identities.clone()
                } else {
                    self.identities.clone()
                },
                connect_timeout: self.connect_timeout.or(flags.connect_timeout),
                jump: self.jump.clone().or_else(|| flags.jump.clone()),
            },
            concurrency: self.concurrency.unwrap_or(base.concurrency).max(1),
            timeout: self.timeout.unwrap_or(base.timeout),
        }
    }
}

/// What jobs tell the actor.
#[derive(Debug)]
pub(super) enum JobMsg {
    Progress {
        id: JobId,
        done: u64,
        total: u64,
    },
    Output {
        id: JobId,
        output: JobOutput,
    },
    Inventory {
        hosts: Vec<StoredHost>,
        facts: Vec<StoredFacts>,
        deployments: Vec<Deployment>,
        /// The newest runs of the audit trail, newest first.
        runs: Vec<RunRecord>,
        tags: BTreeMap<IpAddr, Tags>,
        /// Hosts left in a rollout a crash or a quit cut short.
        unfinished: Option<usize>,
    },
    /// One stats read (from the poller): `failures` in a row, and when the
    /// next read comes after a failure.
    Stats {
        addr: IpAddr,
        result: Result<Box<AgentStats>, PollError>,
        failures: u32,
        retry_in: Option<Duration>,
    },
    /// A read of the control plane's registry.
    Registry(Result<Vec<AgentRecord>, WatchError>),
    /// CPU and memory history of one host from Prometheus (the range
    /// query), oldest first.
    History {
        addr: IpAddr,
        points: Vec<super::prometheus::PromPoint>,
    },
    PollRound {
        polled: u64,
        answering: u64,
        agents: u64,
    },
    Ended {
        id: JobId,
        outcome: JobOutcome,
    },
    Prompt {
        job: Option<JobId>,
        kind: PromptKind,
        reply: oneshot::Sender<Answer>,
    },
}

/// A job's line to the actor. Sends wait when the actor is behind (it
/// waits for the front end in turn): a job never outruns who shows it.
#[derive(Debug, Clone)]
pub(super) struct Reporter {
    pub id: JobId,
    tx: mpsc::Sender<JobMsg>,
}

impl Reporter {
    pub fn new(id: JobId, tx: mpsc::Sender<JobMsg>) -> Self {
        Self { id, tx }
    }

    async fn send(&self, msg: JobMsg) {
        // The engine may have stopped; the job then ends unheard.
        let _ = self.tx.send(msg).await;
    }

    pub async fn output(&self, output: JobOutput) {
        self.send(JobMsg::Output {
            id: self.id,
            output,
        })
        .await;
    }

    pub async fn progress(&self, done: u64, total: u64) {
        self.send(JobMsg::Progress {
            id: self.id,
            done,
            total,
        })
        .await;
    }

    /// Reports the job's end: cancelled if its token fired, else what it returned.
    pub async fn end(&self, cancel: &CancellationToken, result: Result<String, JobError>) {
        let outcome = match result {
            _ if cancel.is_cancelled() => JobOutcome::Cancelled,
            Ok(summary) => JobOutcome::Done(summary),
            Err(error) => JobOutcome::Failed(error),
        };
        self.send(JobMsg::Ended {
            id: self.id,
            outcome,
        })
        .await;
    }

    /// Asks the front end on this job's behalf (a rollout's gate).
    pub fn asker(&self) -> EnginePrompter {
        EnginePrompter::new(Some(self.id), self.tx.clone())
    }

    /// Who answers this job's questions.
    pub fn prompter(&self, questions: &Questions) -> Arc<dyn Prompter> {
        match questions {
            Questions::Events => Arc::new(EnginePrompter::new(Some(self.id), self.tx.clone())),
            Questions::Ask(prompter) => Arc::clone(prompter),
        }
    }
}

/// How one job reaches its hosts: read once, shared by every host.
pub(super) struct SshReach {
    config: SshConfig,
    local: LocalUser,
    flags: ConnectFlags,
    pub connector: Arc<Connector>,
    pub concurrency: usize,
    pub timeout: Duration,
}

impl SshReach {
    /// Reads ssh_config and known_hosts (off the runtime's threads) and
    /// says what the config holds that is not followed.
    pub async fn open(
        settings: SshSettings,
        prompter: Arc<dyn Prompter>,
        report: &Reporter,
    ) -> Result<Self, JobError> {
        let (reach, warnings) = Self::load(settings, prompter).await?;
        for warning in warnings {
            report.output(JobOutput::Note(warning)).await;
        }
        Ok(reach)
    }

    /// As [`SshReach::open`], with what the config holds that is not
    /// followed returned rather than reported.
    pub async fn load(
        settings: SshSettings,
        prompter: Arc<dyn Prompter>,
    ) -> Result<(Self, Vec<String>), JobError> {
        // A bad jump host is the asker's mistake, said before any host is tried.
        if let Some(spec) = &settings.flags.jump {
            parse_jumps(spec).map_err(|e| JobError::BadRequest(format!("-J {spec}: {e}")))?;
        }
        let (reach, warnings) = tokio::task::spawn_blocking(move || {
            let local = LocalUser::current();
            let path = settings
                .ssh_config
                .clone()
                .unwrap_or_else(|| default_ssh_config(&local));
            let config = SshConfig::load(&path).map_err(|e| JobError::BadRequest(e.to_string()))?;
            let connector = match &settings.known_hosts {
                Some(file) => Connector::new(file, settings.policy, prompter)
                    .map_err(|e| JobError::Failed(e.to_string()))?,
                None => Connector::with_target_files(settings.policy, prompter),
            };
            let warnings = config.warnings.clone();
            let reach = Self {
                config,
                local,
                flags: settings.flags,
                connector: Arc::new(connector),
                concurrency: settings.concurrency,
                timeout: settings.timeout,
            };
            Ok::<_, JobError>((reach, warnings))
        })
        .await
        .map_err(|e| JobError::stopped("SSH setup", &e))??;
        Ok((reach, warnings))
    }

    /// Resolves `host` (a name, address or ssh_config alias, optionally
    /// `user@`) as ssh would.
    pub fn target(&self, host: &str) -> Result<SshTarget, JobError> {
        SshTarget::resolve(host, &self.flags, &self.config, &self.local)
            .map_err(JobError::BadRequest)
    }

    pub fn targets(&self, hosts: &[String]) -> Result<Vec<SshTarget>, JobError> {
        hosts.iter().map(|h| self.target(h)).collect()
    }
}

/// The address a target names, when it names one: the fleet knows hosts
/// by address.
pub(super) fn target_addr(target: &SshTarget) -> Option<IpAddr> {
    target
        .alias
        .parse()
        .ok()
        .or_else(|| target.hostname.parse().ok())
}

/// A short label for a job over hosts: the first few, then a count.
pub(super) fn hosts_label<T: std::fmt::Display>(hosts: &[T]) -> String {
    use std::fmt::Write as _;
    const SHOWN: usize = 3;
    let mut label = hosts
        .iter()
        .take(SHOWN)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    if hosts.len() > SHOWN {
        let _ = write!(label, " +{}", hosts.len() - SHOWN);
    }
    label
}

/// Runs `work` on a blocking thread: SQLite and file reads never hold
/// the runtime's workers.
pub(super) async fn blocking<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> Result<T, JobError> + Send + 'static,
) -> Result<T, JobError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| JobError::stopped(what, &e))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> SshSettings {
        SshSettings {
            known_hosts: Some("/etc/fleet/known_hosts".into()),
            ssh_config: None,
            policy: HostKeyPolicy::Ask,
            flags: ConnectFlags {
                user: Some("ops".into()),
                identities: vec!["/etc/fleet/id".into()],
                ..ConnectFlags::default()
            },
            concurrency: 32,
            timeout: Duration::from_secs(30),
        }
    }

    #[test]
    fn a_request_leaves_what_it_does_not_set_to_the_settings() {
        let same = SshRequest::default().over(&base());
        assert_eq!(same.flags.user.as_deref(), Some("ops"));
        assert_eq!(same.flags.identities, [PathBuf::from("/etc/fleet/id")]);
        assert_eq!(same.policy, HostKeyPolicy::Ask);
        assert_eq!((same.concurrency, same.timeout.as_secs()), (32, 30));
        let flags = SshRequest {
            user: Some("root".into()),
            identities: vec!["/k".into()],
            policy: Some(HostKeyPolicy::Strict),
            port: Some(2222),
            concurrency: Some(4),
            timeout: Some(Duration::from_secs(5)),
            ..SshRequest::default()
        }
        .over(&base());
        assert_eq!(flags.flags.user.as_deref(), Some("root"));
        assert_eq!(flags.flags.identities, [PathBuf::from("/k")]);
        assert_eq!(flags.flags.port, Some(2222));
        assert_eq!(flags.policy, HostKeyPolicy::Strict);
        assert_eq!((flags.concurrency, flags.timeout.as_secs()), (4, 5));
        assert_eq!(
            flags.known_hosts.as_deref(),
            Some(std::path::Path::new("/etc/fleet/known_hosts"))
        );
    }
}
