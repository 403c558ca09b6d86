//! The actor task: owns the fleet, turns commands into jobs and job reports
//! into state, events and snapshots.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::deploy::{self as deploy_jobs, DeployJob};
use super::jobs::{self, FingerprintJob, JobMsg, ScanJob};
use super::poller;
use super::state::{FleetSnapshot, HostView, JobView};
use super::{
    Answer, Command, EngineConfig, Event, JobId, JobKind, JobOutcome, Prompt, PromptId, PromptKind,
};
use crate::store::{StoredHost, now_unix};

mod agents;
mod merge;
mod scans;

/// Messages handled before a snapshot is published, at most: a flood of
/// scan results still shows progress.
const BATCH: usize = 1024;
/// How often an idle engine republishes, so times shown ("5s ago") move.
const REPUBLISH_EVERY: Duration = Duration::from_secs(1);

struct RunningJob {
    view: JobView,
    cancel: CancellationToken,
}

struct Actor {
    config: EngineConfig,
    hosts: BTreeMap<IpAddr, Arc<HostView>>,
    jobs: BTreeMap<JobId, RunningJob>,
    prompts: HashMap<PromptId, (Option<JobId>, oneshot::Sender<Answer>)>,
    next_job: u64,
    next_prompt: u64,
    generation: u64,
    dirty: bool,
    events: mpsc::UnboundedSender<Event>,
    snapshot: watch::Sender<Arc<FleetSnapshot>>,
    to_self: mpsc::UnboundedSender<JobMsg>,
    /// Parent of every job's token: dropping the engine cancels them all.
    root: CancellationToken,
    /// Why the registry could not be read, while it cannot.
    registry_error: Option<String>,
    /// The host whose detail is open, for the poller.
    focus: watch::Sender<Option<IpAddr>>,
}

/// Serves commands until the last handle is dropped.
pub(super) async fn run(
    config: EngineConfig,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
    snapshot: watch::Sender<Arc<FleetSnapshot>>,
) {
    let (to_self, mut from_jobs) = mpsc::unbounded_channel();
    let (focus, focused) = watch::channel(None);
    let mut actor = Actor {
        config,
        hosts: BTreeMap::new(),
        jobs: BTreeMap::new(),
        prompts: HashMap::new(),
        next_job: 0,
        next_prompt: 0,
        generation: 0,
        dirty: true,
        events,
        snapshot,
        to_self,
        root: CancellationToken::new(),
        registry_error: None,
        focus,
    };
    actor.refresh();
    if let Some(link) = actor.config.control.clone() {
        tokio::spawn(poller::run(
            actor.config.poll.clone(),
            link,
            actor.config.inventory.clone(),
            actor.to_self.clone(),
            focused,
            actor.root.child_token(),
        ));
    }
    let mut tick = tokio::time::interval(REPUBLISH_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(command) => actor.command(command),
                None => break,
            },
            Some(msg) = from_jobs.recv() => actor.job_msg(msg),
            _ = tick.tick() => actor.dirty = true,
        }
        for _ in 0..BATCH {
            if let Ok(command) = commands.try_recv() {
                actor.command(command);
            } else if let Ok(msg) = from_jobs.try_recv() {
                actor.job_msg(msg);
            } else {
                break;
            }
        }
        actor.publish();
    }
    actor.root.cancel();
}

impl Actor {
    fn emit(&self, event: Event) {
        // The front end may have gone; the engine still finishes its work.
        let _ = self.events.send(event);
    }

    fn publish(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        self.generation += 1;
        let snapshot = FleetSnapshot {
            hosts: self.hosts.values().cloned().collect(),
            jobs: self.jobs.values().map(|j| j.view.clone()).collect(),
            generation: self.generation,
            now_unix: now_unix(),
            taken_at: Instant::now(),
        };
        self.snapshot.send_replace(Arc::new(snapshot));
    }

    fn start_job(
        &mut self,
        kind: JobKind,
        label: String,
        total: u64,
    ) -> (JobId, CancellationToken) {
        self.next_job += 1;
        let id = JobId(self.next_job);
        let cancel = self.root.child_token();
        self.jobs.insert(
            id,
            RunningJob {
                view: JobView {
                    id,
                    kind,
                    label: label.clone(),
                    done: 0,
                    total,
                    started_at: now_unix(),
                },
                cancel: cancel.clone(),
            },
        );
        self.dirty = true;
        self.emit(Event::JobStarted { id, kind, label });
        (id, cancel)
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Scan { targets } => {
                let (id, cancel) = self.start_job(JobKind::Scan, targets.clone(), 0);
                let job = ScanJob {
                    config: self.config.scan.clone(),
                    max_in_flight: self.config.max_in_flight,
                    inventory: self.config.inventory.clone(),
                };
                tokio::spawn(jobs::scan(id, targets, job, cancel, self.to_self.clone()));
            }
            Command::Fingerprint { hosts } => {
                let label = hosts_label(&hosts);
                let (id, cancel) = self.start_job(JobKind::Fingerprint, label, hosts.len() as u64);
                let job = FingerprintJob {
                    ssh: self.config.ssh.clone(),
                    concurrency: self.config.fingerprint_concurrency,
                    timeout: self.config.fingerprint_timeout,
                    inventory: self.config.inventory.clone(),
                };
                tokio::spawn(jobs::fingerprint(
                    id,
                    hosts,
                    job,
                    cancel,
                    self.to_self.clone(),
                ));
            }
            Command::Deploy { hosts } => {
                let (id, cancel) =
                    self.start_job(JobKind::Deploy, hosts_label(&hosts), hosts.len() as u64);
                let job = self.deploy_job();
                tokio::spawn(deploy_jobs::deploy(
                    id,
                    hosts,
                    job,
                    cancel,
                    self.to_self.clone(),
                ));
            }
            Command::Undeploy { hosts } => {
                let (id, cancel) =
                    self.start_job(JobKind::Undeploy, hosts_label(&hosts), hosts.len() as u64);
                let job = self.deploy_job();
                tokio::spawn(deploy_jobs::undeploy(
                    id,
                    hosts,
                    job,
                    cancel,
                    self.to_self.clone(),
                ));
            }
            Command::Revoke { hosts } => self.revoke(&hosts),
            Command::Refresh => self.refresh(),
            Command::CancelJob(id) => {
                if let Some(job) = self.jobs.get(&id) {
                    job.cancel.cancel();
                }
            }
            Command::AnswerPrompt { id, answer } => {
                if let Some((_, reply)) = self.prompts.remove(&id) {
                    let _ = reply.send(answer);
                }
            }
            Command::Stats { addr, result } => self.stats(addr, result),
            Command::Focus { addr } => {
                self.focus.send_replace(addr);
            }
        }
    }

    fn deploy_job(&self) -> DeployJob {
        DeployJob {
            ssh: self.config.ssh.clone(),
            concurrency: self.config.fingerprint_concurrency,
            control: self.config.control.clone(),
            settings: self.config.deploy.clone(),
            inventory: self.config.inventory.clone(),
        }
    }

    /// Revokes the agents of `hosts`, as the registry names them.
    fn revoke(&mut self, hosts: &[IpAddr]) {
        let (id, cancel) = self.start_job(JobKind::Revoke, hosts_label(hosts), hosts.len() as u64);
        let Some(link) = self.config.control.clone() else {
            self.end_job(
                id,
                JobOutcome::Failed(
                    "no control plane to revoke at: set control.url, or let the console embed one"
                        .into(),
                ),
            );
            return;
        };
        let mut agents = Vec::new();
        for addr in hosts {
            match self.hosts.get(addr).and_then(|h| h.registry.as_ref()) {
                Some(record) => agents.push((*addr, record.agent_id.clone())),
                None => self.emit(Event::Error {
                    addr: Some(*addr),
                    message: "no agent of this host is registered: nothing to revoke".into(),
                }),
            }
        }
        if agents.is_empty() {
            self.end_job(
                id,
                JobOutcome::Failed("none of these hosts has a registered agent".into()),
            );
            return;
        }
        tokio::spawn(deploy_jobs::revoke(
            id,
            agents,
            link,
            cancel,
            self.to_self.clone(),
        ));
    }

    fn refresh(&mut self) {
        let Some(path) = self.config.inventory.clone() else {
            return;
        };
        let (id, _) = self.start_job(JobKind::Refresh, "inventory".into(), 0);
        tokio::spawn(jobs::load_inventory(id, path, self.to_self.clone()));
    }

    fn end_job(&mut self, id: JobId, outcome: JobOutcome) {
        let kind = self
            .jobs
            .remove(&id)
            .map_or(JobKind::Refresh, |j| j.view.kind);
        let withdrawn: Vec<PromptId> = self
            .prompts
            .iter()
            .filter(|(_, (job, _))| *job == Some(id))
            .map(|(pid, _)| *pid)
            .collect();
        for pid in withdrawn {
            self.prompts.remove(&pid);
            self.emit(Event::PromptWithdrawn { id: pid });
        }
        self.dirty = true;
        self.emit(Event::JobEnded { id, kind, outcome });
    }

    fn job_msg(&mut self, msg: JobMsg) {
        match msg {
            JobMsg::Progress { id, done, total } => {
                if let Some(job) = self.jobs.get_mut(&id)
                    && (job.view.done, job.view.total) != (done, total)
                {
                    job.view.done = done;
                    job.view.total = total;
                    self.dirty = true;
                    self.emit(Event::JobProgress { id, done, total });
                }
            }
            JobMsg::Scanned { host } => self.scanned(host),
            JobMsg::Fingerprinted { result } => self.fingerprinted(*result),
            JobMsg::Inventory {
                hosts,
                facts,
                deployments,
            } => {
                self.inventory(hosts);
                self.stored_facts(facts);
                self.deployments(deployments);
            }
            JobMsg::Stats {
                addr,
                result,
                failures,
                retry_in,
            } => {
                self.stats(addr, result);
                if let Some(host) = self.hosts.get_mut(&addr) {
                    let host = Arc::make_mut(host);
                    host.poll_failures = failures;
                    host.poll_retry_in = retry_in;
                }
            }
            JobMsg::Registry(result) => self.registry(result),
            JobMsg::History { addr, points } => self.history(addr, &points),
            JobMsg::PollRound {
                polled,
                answering,
                agents,
            } => self.emit(Event::PollRound {
                polled,
                answering,
                agents,
            }),
            JobMsg::Deploy { addr, event } => self.deploy_event(addr, event),
            JobMsg::Revoked { addr, result } => self.revoked(addr, result),
            JobMsg::Ended { id, outcome } => self.end_job(id, outcome),
            JobMsg::Prompt { job, kind, reply } => self.prompt(job, kind, reply),
        }
    }

    fn prompt(&mut self, job: Option<JobId>, kind: PromptKind, reply: oneshot::Sender<Answer>) {
        self.next_prompt += 1;
        let id = PromptId(self.next_prompt);
        // Drop answers nobody waits for any more (their jobs were cancelled).
        self.prompts.retain(|_, (_, r)| !r.is_closed());
        self.prompts.insert(id, (job, reply));
        self.emit(Event::PromptNeeded(Prompt { id, job, kind }));
    }

    fn inventory(&mut self, stored: Vec<StoredHost>) {
        let count = stored.len();
        for host in stored {
            let addr = host.scan.addr;
            if let Some(known) = self.hosts.get_mut(&addr) {
                let known = Arc::make_mut(known);
                known.last_seen = known.last_seen.max(host.last_seen);
            } else {
                let view = HostView::from_scan(host.scan, host.last_seen);
                self.hosts.insert(addr, Arc::new(view));
            }
        }
        self.dirty = true;
        self.emit(Event::InventoryLoaded { hosts: count });
    }
}

/// A short label for a job over hosts: the first few, then a count.
fn hosts_label(hosts: &[IpAddr]) -> String {
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

#[cfg(test)]
#[path = "actor_tests.rs"]
mod tests;
