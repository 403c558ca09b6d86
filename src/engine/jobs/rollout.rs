//! Deploy and undeploy: [`rollout::run`] over [`Deployer::deploy`] or
//! [`crate::deploy::undeploy`], each host's step reported as it happens
//! and kept in the inventory's deployments table.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    DeployPlan, JobError, JobOutput, Reporter, SshReach, SshRequest, blocking, target_addr,
};
use crate::control::LocalKeys;
use crate::control::client::ControlClient;
use crate::deploy::batches::{Amount, BatchSpec};
use crate::deploy::control::EnrollError;
use crate::deploy::layout::InstallScope;
use crate::deploy::{
    Artifact, ControlPlane, DeployOptions, Deployer, Enroller, Event, HostResult, Outcome,
    RolloutOptions, Secret, rollout,
};
use crate::engine::{Answer, PromptKind};
use crate::engine::{ControlLink, DeploySettings, Questions, SshSettings};
use crate::model::control::AgentRecord;
use crate::ssh::SshTarget;

mod plan;
mod writer;
use plan::{Recorded, plan};
use writer::Writer;

/// The operator token deploy reads the registry with: longer than a rollout.
const OPERATOR_TTL: Duration = Duration::from_hours(12);
const OPERATOR: &str = "fleetctl-deploy";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Events waiting for the inventory writer, at most.
const RECORD_QUEUE: usize = 256;

/// Put the agent on hosts.
#[derive(Debug, Clone, Default, PartialEq)]
#[allow(clippy::struct_excessive_bools)] // the switches a deploy is asked with
pub struct DeployRequest {
    /// Names, addresses or ssh_config aliases, optionally `user@host`.
    pub hosts: Vec<String>,
    pub ssh: SshRequest,
    /// The build to push [default: the settings', else this binary].
    pub agent_binary: Option<PathBuf>,
    /// The URLs agents register with, the first then its replicas
    /// [default: the engine's control plane's].
    pub controllers: Vec<String>,
    /// The agents' `listen`; `{host}` stands for the address deployed to.
    pub listen: Option<String>,
    pub scope: Option<InstallScope>,
    /// Hosts deployed first, one at a time; a failure among them stops the rollout.
    pub canary: usize,
    /// The batches after the canaries, as Ansible's serial (`1,2,50%`).
    pub batch: Option<BatchSpec>,
    /// Start no new host once more than this many (or this share) have failed.
    pub max_failures: Option<Amount>,
    /// With batches or a gate, a failed host stops the rollout unless this is set.
    pub continue_on_failure: bool,
    /// Ask the operator before each batch after the first.
    pub gate: bool,
    /// Go on with the newest rollout the inventory holds as unfinished (its
    /// hosts, batches and rules) instead of `hosts`.
    pub resume: bool,
    pub step_timeout: Option<Duration>,
    pub wait_timeout: Option<Duration>,
    /// Say what would be done ([`JobOutput::DeployPlan`]) and change nothing.
    pub dry_run: bool,
}

impl DeployRequest {
    #[must_use]
    pub fn hosts<T: ToString>(hosts: &[T]) -> Self {
        Self {
            hosts: hosts.iter().map(ToString::to_string).collect(),
            ..Self::default()
        }
    }
}

/// Stop the agent on hosts and remove what deploy wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UndeployRequest {
    pub hosts: Vec<String>,
    pub ssh: SshRequest,
    /// Where the agent went [default: the settings'].
    pub scope: Option<InstallScope>,
}

impl UndeployRequest {
    #[must_use]
    pub fn hosts<T: ToString>(hosts: &[T]) -> Self {
        Self {
            hosts: hosts.iter().map(ToString::to_string).collect(),
            ..Self::default()
        }
    }
}

impl DeploySettings {
    /// These settings, then what `request` sets.
    #[must_use]
    pub fn with(&self, request: &DeployRequest) -> Self {
        Self {
            agent_binary: request
                .agent_binary
                .clone()
                .or_else(|| self.agent_binary.clone()),
            listen: request
                .listen
                .clone()
                .unwrap_or_else(|| self.listen.clone()),
            step_timeout: request.step_timeout.unwrap_or(self.step_timeout),
            wait_timeout: request.wait_timeout.unwrap_or(self.wait_timeout),
            scope: request.scope.unwrap_or(self.scope),
            controller_for: self.controller_for.clone(),
        }
    }
}

/// What deploy and undeploy jobs get from the engine besides their request.
pub(in crate::engine) struct RolloutJob {
    pub ssh: SshSettings,
    pub control: Option<ControlLink>,
    pub settings: DeploySettings,
    pub inventory: Option<PathBuf>,
    pub questions: Questions,
    /// True while the front end holds the rollout (no new host starts).
    pub paused: Option<tokio::sync::watch::Receiver<bool>>,
}

pub(in crate::engine) async fn deploy(
    request: DeployRequest,
    job: RolloutJob,
    cancel: CancellationToken,
    report: Reporter,
) {
    let result = run_deploy(request, job, &cancel, &report).await;
    report.end(&cancel, result).await;
}

pub(in crate::engine) async fn undeploy(
    request: UndeployRequest,
    job: RolloutJob,
    cancel: CancellationToken,
    report: Reporter,
) {
    let result = run_undeploy(request, job, &cancel, &report).await;
    report.end(&cancel, result).await;
}

async fn run_deploy(
    request: DeployRequest,
    job: RolloutJob,
    cancel: &CancellationToken,
    report: &Reporter,
) -> Result<String, JobError> {
    let link = job
        .control
        .clone()
        .ok_or(JobError::NoControlPlane("register agents with"))?;
    let settings = job.settings.with(&request);
    let reach = SshReach::open(
        request.ssh.over(&job.ssh),
        report.prompter(&job.questions),
        report,
    )
    .await?;
    let artifact = load_artifact(settings.agent_binary.clone()).await?;
    let urls = control_urls(&request, &link)?;
    let mut planned = plan(&request, job.inventory.clone()).await?;
    planned.options.concurrency = reach.concurrency;
    let targets = reach.targets(&planned.hosts)?;
    let options = planned.options.clone();
    if request.dry_run {
        let plan = DeployPlan {
            build: artifact.describe(),
            sha256: artifact.sha256.clone(),
            url: urls.join(" "),
            rollout: options,
            hosts: targets
                .iter()
                .map(|t| (t.user.clone(), t.hostname.clone(), t.port))
                .collect(),
        };
        report.output(JobOutput::DeployPlan(Box::new(plan))).await;
        return Ok("dry run: nothing was changed".into());
    }
    let control = enrolling_control(&link, &urls).await?;
    let deployer = Arc::new(Deployer {
        connector: Arc::clone(&reach.connector),
        artifact: Arc::new(artifact),
        control: Arc::new(control),
        options: DeployOptions {
            listen: settings.listen.clone(),
            step_timeout: settings.step_timeout,
            healthy_timeout: settings.wait_timeout,
            registered_timeout: settings.wait_timeout,
            scope: settings.scope,
            controller_for: settings
                .controller_for
                .iter()
                .map(|(addr, url)| (addr.to_string(), url.clone()))
                .collect(),
        },
    });
    let build = deployer.artifact.sha256.clone();
    let pushed = deployer.artifact.build.as_str();
    // Which build goes out, said once; each host's `done` event says it too.
    report
        .output(JobOutput::Note(format!(
            "deploy: pushing {}",
            deployer.artifact.describe()
        )))
        .await;
    let work = {
        let cancel = cancel.clone();
        move |target: SshTarget, progress: rollout::Progress| {
            let deployer = Arc::clone(&deployer);
            let cancel = cancel.clone();
            async move { deployer.deploy(&target, &progress, &cancel).await }
        }
    };
    let record = match &job.inventory {
        Some(path) => Some(planned.record(path.clone()).await?),
        None => None,
    };
    let results = drive(
        targets,
        options,
        Some(build),
        job.inventory,
        record,
        job.paused,
        cancel,
        report,
        work,
    )
    .await?;
    Ok(format!("{} ({pushed})", summary(&results)))
}

/// The build to push: `binary`, else the agent-only build beside this
/// fleetctl, else this fleetctl.
async fn load_artifact(binary: Option<PathBuf>) -> Result<Artifact, JobError> {
    blocking("build reader", move || {
        let binary = match binary {
            Some(path) => path,
            None => crate::deploy::files::default_agent_binary().map_err(|e| {
                JobError::Failed(format!("cannot tell where this fleetctl binary is: {e}"))
            })?,
        };
        Artifact::load(&binary).map_err(|e| JobError::BadRequest(e.to_string()))
    })
    .await
}

/// The control planes agents are told of, the first then its replicas:
/// the request's, else the engine's.
fn control_urls(request: &DeployRequest, link: &ControlLink) -> Result<Vec<String>, JobError> {
    let urls = if request.controllers.is_empty() {
        link.urls()
    } else {
        request.controllers.clone()
    };
    if let Some(bad) = urls.iter().find(|u| !u.starts_with("https://")) {
        return Err(JobError::BadRequest(format!(
            "the control plane URL {bad:?}: agents only talk to the control plane over https://"
        )));
    }
    Ok(urls)
}

/// Deploy's view of the control planes at `urls`, enrolling with the
/// local keys. Keys nobody serves with would mint tokens every agent is
/// refused with, so they are only loaded, never made.
async fn enrolling_control(link: &ControlLink, urls: &[String]) -> Result<ControlPlane, JobError> {
    let keys = link.keys().await?;
    let token = keys.operator_token(OPERATOR, OPERATOR_TTL)?;
    let api = ControlClient::with_replicas(urls, keys.ca_pem(), keys.pin(), token, REQUEST_TIMEOUT)
        .map_err(|e| JobError::Control(e.to_string()))?;
    let (ca_pem, pin) = (keys.ca_pem().to_owned(), keys.pin());
    Ok(
        ControlPlane::new(&urls[0], ca_pem, pin, Box::new(Enrollment { keys, api }))
            .map_err(|e| JobError::Control(e.to_string()))?
            .with_replicas(&urls[1..]),
    )
}

async fn run_undeploy(
    request: UndeployRequest,
    job: RolloutJob,
    cancel: &CancellationToken,
    report: &Reporter,
) -> Result<String, JobError> {
    let reach = SshReach::open(
        request.ssh.over(&job.ssh),
        report.prompter(&job.questions),
        report,
    )
    .await?;
    let targets = reach.targets(&request.hosts)?;
    let scope = request.scope.unwrap_or(job.settings.scope);
    let step_timeout = job.settings.step_timeout;
    let connector = Arc::clone(&reach.connector);
    let work = move |target: SshTarget, progress: rollout::Progress| {
        let connector = Arc::clone(&connector);
        async move { crate::deploy::undeploy(&connector, &target, &progress, step_timeout, scope).await }
    };
    let options = RolloutOptions {
        concurrency: reach.concurrency,
        ..RolloutOptions::default()
    };
    let results = drive(
        targets,
        options,
        None,
        job.inventory,
        None,
        job.paused,
        cancel,
        report,
        work,
    )
    .await?;
    Ok(summary(&results))
}

/// Runs the rollout, recording (on a blocking thread) and reporting each
/// event; `build` is the sha256 pushed, `None` for undeploy; `record`, the
/// rollout's plan in the inventory, kept up to date. The gate asks the
/// operator through the front end.
#[allow(clippy::too_many_arguments)] // one call site each for deploy and undeploy
async fn drive<F, Fut>(
    targets: Vec<SshTarget>,
    options: RolloutOptions,
    build: Option<String>,
    inventory: Option<PathBuf>,
    record: Option<Recorded>,
    paused: Option<tokio::sync::watch::Receiver<bool>>,
    cancel: &CancellationToken,
    report: &Reporter,
    work: F,
) -> Result<Vec<HostResult>, JobError>
where
    F: Fn(SshTarget, rollout::Progress) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Outcome> + Send + 'static,
{
    let writer = match inventory {
        Some(path) => Some(Writer::start(path, targets.clone(), build, record).await?),
        None => None,
    };
    // The gate is asked from this loop, after every event the rollout sent
    // before it: the front end shows the batch's end before the question.
    let (gate_tx, mut gates) =
        mpsc::unbounded_channel::<(rollout::BatchReport, tokio::sync::oneshot::Sender<bool>)>();
    let gate = move |done: rollout::BatchReport| {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let asked = gate_tx.send((done, reply)).is_ok();
        async move { asked && answer.await.unwrap_or(false) }
    };
    let asker = report.asker();
    let total = targets.len() as u64;
    let addrs: Vec<Option<IpAddr>> = targets.iter().map(target_addr).collect();
    let list: Vec<(String, SshTarget)> =
        targets.into_iter().map(|t| (t.alias.clone(), t)).collect();
    let (event_tx, mut events) = mpsc::unbounded_channel();
    let running = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            rollout::run(list, options, &cancel, &event_tx, work, gate, paused).await
        })
    };
    report.progress(0, total).await;
    let mut done = 0;
    loop {
        let event = tokio::select! {
            biased;
            event = events.recv() => event,
            Some((done, reply)) = gates.recv() => {
                let kind = PromptKind::Gate {
                    batch: done.batch,
                    batches: done.batches,
                    ok: done.ok,
                    failed: done.failed,
                };
                let yes = tokio::select! {
                    answer = asker.ask(kind) => matches!(answer, Answer::Confirm(true)),
                    () = cancel.cancelled() => false,
                };
                let _ = reply.send(yes);
                continue;
            }
        };
        let Some(event) = event else { break };
        if let Some(writer) = &writer {
            // A host reported done is on record first: a rollout killed
            // right after never deploys it again.
            writer.record(event.clone()).await;
        }
        let index = match &event {
            Event::Start { index, .. }
            | Event::Step { index, .. }
            | Event::Note { index, .. }
            | Event::Done { index, .. } => Some(*index),
            Event::Batch { .. } | Event::BatchDone { .. } => None,
        };
        let is_done = matches!(event, Event::Done { .. });
        let addr = index.and_then(|i| addrs.get(i).copied().flatten());
        report.output(JobOutput::Rollout { addr, event }).await;
        if is_done {
            done += 1;
            report.progress(done, total).await;
        }
    }
    let results = running
        .await
        .map_err(|e| JobError::stopped("rollout task", &e))?;
    if let Some(writer) = writer {
        writer.finish(cancel.is_cancelled()).await?;
    }
    report.output(JobOutput::RolloutDone(results.clone())).await;
    Ok(results)
}

/// `2 deployed, 1 up to date, 1 failed, 0 skipped`, leaving out zeros.
fn summary(results: &[HostResult]) -> String {
    let mut counts = [0usize; 5];
    for r in results {
        let i = match r.outcome {
            Outcome::Deployed { .. } => 0,
            Outcome::UpToDate { .. } => 1,
            Outcome::Removed | Outcome::NotInstalled => 2,
            Outcome::Failed { .. } => 3,
            Outcome::Skipped { .. } => 4,
        };
        counts[i] += 1;
    }
    let names = ["deployed", "up to date", "removed", "failed", "skipped"];
    let parts: Vec<String> = counts
        .iter()
        .zip(names)
        .filter(|(n, _)| **n > 0)
        .map(|(n, name)| format!("{n} {name}"))
        .collect();
    if parts.is_empty() {
        "no hosts".into()
    } else {
        parts.join(", ")
    }
}

/// Deploy's side of the control plane: join tokens from its keys, the
/// registry through its API.
struct Enrollment {
    keys: LocalKeys,
    api: ControlClient,
}

impl Enroller for Enrollment {
    fn join_token(
        &self,
        host: &str,
        names: &[String],
        ttl: Duration,
    ) -> Result<Secret, EnrollError> {
        Ok(Secret::new(self.keys.join_token(host, names, ttl)?))
    }

    fn agents(&self) -> BoxFuture<'_, Result<Vec<AgentRecord>, EnrollError>> {
        Box::pin(async move { Ok(self.api.agents().await?) })
    }
}
