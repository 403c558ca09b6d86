//! The actor task: owns the fleet, turns commands into jobs and job reports
//! into state, events and snapshots.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::jobs::fingerprint::{self, FingerprintJob};
use super::jobs::logs::{self as logs_job, LogsJob};
use super::jobs::rollout::{self, RolloutJob};
use super::jobs::run::{self as run_job, RunJob};
use super::jobs::scan::{self, ScanJob};
use super::jobs::{JobMsg, JobOutput, Reporter, hosts_label, inventory, revoke};
use super::poller;
use super::state::{FleetSnapshot, HostView, JobView};
use super::{
    Answer, Command, EngineConfig, Event, JobError, JobId, JobKind, JobOutcome, Prompt, PromptId,
    PromptKind, RevokeRequest,
};
use crate::deploy::Event as DeployEvent;
use crate::model::time::now_unix;
use crate::store::StoredHost;

mod agents;
mod merge;
mod runs;
mod scans;

/// Messages handled before a snapshot is published, at most: a flood of
/// scan results still shows progress.
const BATCH: usize = 1024;
/// How often an idle engine republishes, so times shown ("5s ago") move.
const REPUBLISH_EVERY: Duration = Duration::from_secs(1);
/// Job reports waiting for the actor, at most: a job (or the poller)
/// ahead of it waits.
pub(super) const JOB_QUEUE: usize = 1024;
/// Events held for a front end that is behind, at most, before the actor
/// stops taking in job reports.
const OUTBOX: usize = 4096;

struct RunningJob {
    view: JobView,
    cancel: CancellationToken,
    /// Rollouts: held (true) or running.
    pause: Option<watch::Sender<bool>>,
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
    /// Events not yet taken by the front end's channel; `None` once the
    /// front end has gone (the engine still finishes its work).
    outbox: Option<VecDeque<Event>>,
    snapshot: watch::Sender<Arc<FleetSnapshot>>,
    to_self: mpsc::Sender<JobMsg>,
    /// Parent of every job's token: dropping the engine cancels them all.
    root: CancellationToken,
    /// Why the registry could not be read, while it cannot.
    registry_error: Option<String>,
    /// The host whose detail is open, for the poller.
    focus: watch::Sender<Option<IpAddr>>,
    /// The command of each run job under way, for host events.
    run_commands: HashMap<JobId, String>,
}

/// Serves commands until the last handle is dropped.
pub(super) async fn run(
    config: EngineConfig,
    mut commands: mpsc::UnboundedReceiver<Command>,
    (to_self, mut from_jobs): (mpsc::Sender<JobMsg>, mpsc::Receiver<JobMsg>),
    events: mpsc::Sender<Event>,
    snapshot: watch::Sender<Arc<FleetSnapshot>>,
) {
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
        outbox: Some(VecDeque::new()),
        snapshot,
        to_self,
        root: CancellationToken::new(),
        registry_error: None,
        focus,
        run_commands: HashMap::new(),
    };
    if actor.config.keep_fleet {
        actor.refresh();
    }
    if let (Some(link), Some(settings)) = (actor.config.control.clone(), actor.config.poll.clone())
    {
        tokio::spawn(poller::run(
            settings,
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
        let room = actor.has_room();
        let waiting = actor.outbox.as_ref().is_some_and(|o| !o.is_empty());
        tokio::select! {
            command = commands.recv() => match command {
                Some(command) => actor.command(command),
                None => break,
            },
            Some(msg) = from_jobs.recv(), if room => actor.job_msg(msg),
            permit = events.reserve(), if waiting => match permit {
                Ok(permit) => {
                    if let Some(event) = actor.outbox.as_mut().and_then(VecDeque::pop_front) {
                        permit.send(event);
                    }
                }
                Err(_) => actor.outbox = None,
            },
            _ = tick.tick() => actor.dirty = true,
        }
        for _ in 0..BATCH {
            if let Ok(command) = commands.try_recv() {
                actor.command(command);
            } else if actor.has_room()
                && let Ok(msg) = from_jobs.try_recv()
            {
                actor.job_msg(msg);
            } else {
                break;
            }
        }
        actor.flush(&events);
        actor.publish();
    }
    actor.root.cancel();
}

impl Actor {
    fn emit(&mut self, event: Event) {
        if let Some(outbox) = &mut self.outbox {
            outbox.push_back(event);
        }
    }

    /// Whether job reports may come in: the front end is not too far behind.
    fn has_room(&self) -> bool {
        self.outbox.as_ref().is_none_or(|o| o.len() < OUTBOX)
    }

    /// Hands the front end every event its channel has room for.
    fn flush(&mut self, events: &mpsc::Sender<Event>) {
        let Some(outbox) = &mut self.outbox else {
            return;
        };
        while let Some(event) = outbox.pop_front() {
            match events.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(event)) => {
                    outbox.push_front(event);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.outbox = None;
                    return;
                }
            }
        }
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
    ) -> (Reporter, CancellationToken) {
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
                    batch: None,
                    batch_results: Vec::new(),
                    paused: false,
                },
                cancel: cancel.clone(),
                pause: None,
            },
        );
        self.dirty = true;
        self.emit(Event::JobStarted { id, kind, label });
        (Reporter::new(id, self.to_self.clone()), cancel)
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Scan(request) => {
                let label = request.targets.join(" ");
                let (report, cancel) = self.start_job(JobKind::Scan, label, 0);
                let job = ScanJob {
                    config: self.config.scan.clone(),
                    max_in_flight: self.config.max_in_flight,
                    inventory: self.config.inventory.clone(),
                    ssh: self.config.ssh.clone(),
                    questions: self.config.questions.clone(),
                };
                tokio::spawn(scan::run(request, job, cancel, report));
            }
            Command::Fingerprint(request) => {
                let label = hosts_label(&request.hosts);
                let total = request.hosts.len() as u64;
                let (report, cancel) = self.start_job(JobKind::Fingerprint, label, total);
                let job = FingerprintJob {
                    ssh: self.config.ssh.clone(),
                    inventory: self.config.inventory.clone(),
                    questions: self.config.questions.clone(),
                };
                tokio::spawn(fingerprint::run(request, job, cancel, report));
            }
            Command::Deploy(request) => {
                let label = hosts_label(&request.hosts);
                let total = request.hosts.len() as u64;
                let (report, cancel) = self.start_job(JobKind::Deploy, label, total);
                let job = self.rollout_job(report.id);
                tokio::spawn(rollout::deploy(request, job, cancel, report));
            }
            Command::Undeploy(request) => {
                let label = hosts_label(&request.hosts);
                let total = request.hosts.len() as u64;
                let (report, cancel) = self.start_job(JobKind::Undeploy, label, total);
                let job = self.rollout_job(report.id);
                tokio::spawn(rollout::undeploy(request, job, cancel, report));
            }
            Command::Run(request) => {
                let label = format!("{} on {}", request.command, hosts_label(&request.hosts));
                let total = request.hosts.len() as u64;
                let (report, cancel) = self.start_job(JobKind::Run, label, total);
                self.run_commands.insert(report.id, request.command.clone());
                let job = RunJob {
                    ssh: self.config.ssh.clone(),
                    inventory: self.config.inventory.clone(),
                    questions: self.config.questions.clone(),
                };
                tokio::spawn(run_job::run(request, job, cancel, report));
            }
            Command::Logs(request) => {
                let label = format!("agent log of {}", request.host);
                let (report, cancel) = self.start_job(JobKind::Logs, label, 0);
                let job = LogsJob {
                    ssh: self.config.ssh.clone(),
                    questions: self.config.questions.clone(),
                };
                tokio::spawn(logs_job::run(request, job, cancel, report));
            }
            Command::Revoke(request) => self.revoke(request),
            Command::Refresh => self.refresh(),
            Command::CancelJob(id) => {
                if let Some(job) = self.jobs.get(&id) {
                    job.cancel.cancel();
                }
            }
            Command::PauseJob { id, paused } => {
                if let Some(job) = self.jobs.get_mut(&id)
                    && let Some(pause) = &job.pause
                {
                    let _ = pause.send(paused);
                    job.view.paused = paused;
                    self.dirty = true;
                }
            }
            Command::AnswerPrompt { id, answer } => {
                if let Some((_, reply)) = self.prompts.remove(&id) {
                    let _ = reply.send(answer);
                }
            }
            Command::Focus { addr } => {
                self.focus.send_replace(addr);
            }
        }
    }

    /// What a rollout job `id` gets, its pause switch kept with the job.
    fn rollout_job(&mut self, id: JobId) -> RolloutJob {
        let (pause, paused) = watch::channel(false);
        if let Some(job) = self.jobs.get_mut(&id) {
            job.pause = Some(pause);
        }
        RolloutJob {
            ssh: self.config.ssh.clone(),
            control: self.config.control.clone(),
            settings: self.config.deploy.clone(),
            inventory: self.config.inventory.clone(),
            questions: self.config.questions.clone(),
            paused: Some(paused),
        }
    }

    /// Revokes the agents a request names: those of its hosts as the
    /// registry lists them, and its agent ids.
    fn revoke(&mut self, request: RevokeRequest) {
        let mut label: Vec<String> = request.hosts.iter().map(ToString::to_string).collect();
        label.extend(request.agents.iter().cloned());
        let total = label.len() as u64;
        let (report, cancel) = self.start_job(JobKind::Revoke, hosts_label(&label), total);
        let Some(link) = self.config.control.clone() else {
            self.end_job(
                report.id,
                JobOutcome::Failed(JobError::NoControlPlane("revoke at")),
            );
            return;
        };
        let mut agents: Vec<(Option<IpAddr>, String)> = Vec::new();
        for addr in request.hosts {
            match self.hosts.get(&addr).and_then(|h| h.registry.as_ref()) {
                Some(record) => agents.push((Some(addr), record.agent_id.clone())),
                None => self.emit(Event::Error {
                    addr: Some(addr),
                    message: "no agent of this host is registered: nothing to revoke".into(),
                }),
            }
        }
        agents.extend(request.agents.into_iter().map(|id| (None, id)));
        if agents.is_empty() {
            self.end_job(
                report.id,
                JobOutcome::Failed(JobError::BadRequest(
                    "none of these hosts has a registered agent".into(),
                )),
            );
            return;
        }
        tokio::spawn(revoke::run(agents, link, cancel, report));
    }

    fn refresh(&mut self) {
        let Some(path) = self.config.inventory.clone() else {
            return;
        };
        let (report, _) = self.start_job(JobKind::Refresh, "inventory".into(), 0);
        tokio::spawn(inventory::load(path, report));
    }

    fn end_job(&mut self, id: JobId, outcome: JobOutcome) {
        self.run_commands.remove(&id);
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
            JobMsg::Output { id, output } => self.output(id, output),
            JobMsg::Inventory {
                hosts,
                facts,
                deployments,
                runs,
                tags,
                unfinished,
            } => {
                self.inventory(hosts);
                self.stored_facts(facts);
                self.deployments(deployments);
                self.past_runs(&runs);
                self.tags(tags);
                if let Some(hosts) = unfinished.filter(|n| *n > 0) {
                    self.emit(Event::RolloutUnfinished { hosts });
                }
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
            JobMsg::Ended { id, outcome } => self.end_job(id, outcome),
            JobMsg::Prompt { job, kind, reply } => self.prompt(job, kind, reply),
        }
    }

    /// Takes what a job produced into the fleet, and passes it on whole.
    fn output(&mut self, id: JobId, output: JobOutput) {
        if let JobOutput::Rollout { event, .. } = &output
            && let Some(job) = self.jobs.get_mut(&id)
        {
            match *event {
                DeployEvent::Batch { batch, batches, .. } => {
                    job.view.batch = Some((batch, batches));
                    self.dirty = true;
                }
                DeployEvent::BatchDone { ok, failed, .. } => {
                    job.view.batch_results.push((ok, failed));
                    self.dirty = true;
                }
                _ => {}
            }
        }
        if !self.config.keep_fleet {
            self.emit(Event::Output { id, output });
            return;
        }
        match &output {
            JobOutput::Scanned { host, .. } => self.scanned(host.clone()),
            JobOutput::Fingerprinted(result) => self.fingerprinted((**result).clone()),
            JobOutput::Ran(result) => self.ran(id, result),
            JobOutput::Rollout {
                addr: Some(addr),
                event,
            } => self.deploy_event(*addr, event.clone()),
            JobOutput::Revoked {
                addr: Some(addr),
                result,
                ..
            } => self.revoked(*addr, result.clone().map(|record| *record)),
            _ => {}
        }
        self.emit(Event::Output { id, output });
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

#[cfg(test)]
#[path = "actor_tests.rs"]
mod tests;
