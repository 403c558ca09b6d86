//! Deploy, undeploy and revoke as engine jobs. Deploy and undeploy drive
//! the same library entry points as `fleetctl deploy`/`undeploy`
//! ([`rollout::run`] over [`Deployer::deploy`] / [`crate::deploy::undeploy`])
//! and record each host's step in the inventory with [`record`], which the
//! CLI calls too.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::jobs::{self, JobMsg};
use super::poller::OPERATOR;
use super::{ControlLink, DeploySettings, JobId, SshSettings};
use crate::auth::Audience;
use crate::control::client::ControlClient;
use crate::deploy::{
    Artifact, ControlPlane, DeployOptions, Deployer, Event, HostResult, Outcome, RolloutOptions,
    rollout,
};
use crate::model::AgentState;
use crate::ssh::SshTarget;
use crate::store::{Deployment, Inventory};

/// Operator tokens minted for one revocation live this long.
const REVOKE_TOKEN_TTL: Duration = Duration::from_mins(1);
const REVOKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Undeploy's time for each command on a host (as `fleetctl undeploy`).
const UNDEPLOY_STEP_TIMEOUT: Duration = Duration::from_mins(1);

/// What deploy and undeploy jobs need besides their hosts.
#[derive(Debug, Clone)]
pub(super) struct DeployJob {
    pub ssh: SshSettings,
    pub concurrency: usize,
    pub control: Option<ControlLink>,
    pub settings: DeploySettings,
    pub inventory: Option<PathBuf>,
}

/// Keeps the inventory's deployments table in step with a rollout's events
/// (`targets` in the rollout's order, `build` the sha256 pushed). Undeploy
/// passes `None` for the build: a host it cleared is forgotten.
pub fn record(
    inventory: &mut Inventory,
    targets: &[SshTarget],
    build: Option<&str>,
    event: &Event,
) {
    let Some(build) = build else {
        if let Event::Done {
            index,
            outcome: Outcome::Removed | Outcome::NotInstalled,
            ..
        } = event
        {
            let t = &targets[*index];
            if let Err(e) = inventory.forget_deployment(&t.hostname, t.port) {
                tracing::warn!("cannot update the inventory: {e}");
            }
        }
        return;
    };
    let (index, state, step, error) = match event {
        Event::Step { index, step, .. } => {
            (*index, AgentState::Deploying, Some(step.as_str()), None)
        }
        Event::Done { index, outcome, .. } => match outcome {
            Outcome::Deployed { .. } | Outcome::UpToDate { .. } => {
                (*index, AgentState::Running, Some("registered"), None)
            }
            Outcome::Failed { step, reason, .. } => (
                *index,
                AgentState::Failed,
                Some(step.as_str()),
                Some(reason.clone()),
            ),
            _ => return,
        },
        _ => return,
    };
    let t = &targets[index];
    let d = Deployment {
        address: t.hostname.clone(),
        port: t.port,
        host: t.alias.clone(),
        build: Some(build.to_string()),
        state,
        step: step.map(str::to_string),
        error,
        updated_at: 0,
    };
    if let Err(e) = inventory.record_deployment(&d) {
        tracing::warn!("cannot update the inventory: {e}");
    }
}

/// Deploys the agent to `hosts`.
pub(super) async fn deploy(
    id: JobId,
    hosts: Vec<IpAddr>,
    job: DeployJob,
    cancel: CancellationToken,
    tx: mpsc::UnboundedSender<JobMsg>,
) {
    let result = run_deploy(id, hosts, job, &cancel, &tx).await;
    jobs::end(&tx, id, &cancel, result);
}

/// Stops the agent on `hosts` and removes what deploy wrote.
pub(super) async fn undeploy(
    id: JobId,
    hosts: Vec<IpAddr>,
    job: DeployJob,
    cancel: CancellationToken,
    tx: mpsc::UnboundedSender<JobMsg>,
) {
    let result = run_undeploy(id, hosts, job, &cancel, &tx).await;
    jobs::end(&tx, id, &cancel, result);
}

async fn run_deploy(
    id: JobId,
    hosts: Vec<IpAddr>,
    job: DeployJob,
    cancel: &CancellationToken,
    tx: &mpsc::UnboundedSender<JobMsg>,
) -> Result<String, String> {
    let link = job.control.clone().ok_or(
        "no control plane to register agents with: set control.url, or let the console embed one",
    )?;
    let (connector, targets) = jobs::ssh_setup(id, &job.ssh, &hosts, tx).await?;
    let binary = job.settings.agent_binary.clone();
    let artifact = tokio::task::spawn_blocking(move || {
        let binary = match binary {
            Some(path) => path,
            None => std::env::current_exe()
                .map_err(|e| format!("cannot tell where this fleetctl binary is: {e}"))?,
        };
        Artifact::load(&binary).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("the deploy setup stopped: {e}"))??;
    let issuer = link.issuer().await?;
    let pin = link.control_pin().await?;
    let control = ControlPlane::new(&link.url, link.ca_pem.clone(), pin, issuer)
        .and_then(|c| c.with_replicas(&link.replicas))
        .map_err(|e| e.to_string())?;
    let deployer = Arc::new(Deployer {
        connector,
        artifact: Arc::new(artifact),
        control: Arc::new(control),
        options: DeployOptions {
            listen: job.settings.listen.clone(),
            step_timeout: job.settings.step_timeout,
            healthy_timeout: job.settings.wait_timeout,
            registered_timeout: job.settings.wait_timeout,
            scope: job.settings.scope,
            controller_for: job
                .settings
                .controller_for
                .iter()
                .map(|(addr, url)| (addr.to_string(), url.clone()))
                .collect(),
        },
    });
    let build = deployer.artifact.sha256.clone();
    let work = {
        let cancel = cancel.clone();
        move |target: SshTarget, progress: rollout::Progress| {
            let deployer = Arc::clone(&deployer);
            let cancel = cancel.clone();
            async move { deployer.deploy(&target, &progress, &cancel).await }
        }
    };
    let options = RolloutOptions {
        canary: 0,
        concurrency: job.concurrency,
        max_failures: None,
    };
    let results = drive(
        id,
        &hosts,
        targets,
        options,
        &job,
        Some(&build),
        cancel,
        tx,
        work,
    )
    .await?;
    Ok(summary(&results))
}

async fn run_undeploy(
    id: JobId,
    hosts: Vec<IpAddr>,
    job: DeployJob,
    cancel: &CancellationToken,
    tx: &mpsc::UnboundedSender<JobMsg>,
) -> Result<String, String> {
    let (connector, targets) = jobs::ssh_setup(id, &job.ssh, &hosts, tx).await?;
    let scope = job.settings.scope;
    let work = move |target: SshTarget, progress: rollout::Progress| {
        let connector = Arc::clone(&connector);
        async move {
            crate::deploy::undeploy(&connector, &target, &progress, UNDEPLOY_STEP_TIMEOUT, scope)
                .await
        }
    };
    let options = RolloutOptions {
        canary: 0,
        concurrency: job.concurrency,
        max_failures: None,
    };
    let results = drive(id, &hosts, targets, options, &job, None, cancel, tx, work).await?;
    Ok(summary(&results))
}

/// Runs the rollout, recording and forwarding each event.
#[allow(clippy::too_many_arguments)] // one private call site per job kind
async fn drive<F, Fut>(
    id: JobId,
    hosts: &[IpAddr],
    targets: Vec<SshTarget>,
    options: RolloutOptions,
    job: &DeployJob,
    build: Option<&str>,
    cancel: &CancellationToken,
    tx: &mpsc::UnboundedSender<JobMsg>,
    work: F,
) -> Result<Vec<HostResult>, String>
where
    F: Fn(SshTarget, rollout::Progress) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Outcome> + Send + 'static,
{
    let mut inventory = match &job.inventory {
        Some(path) => Some(Inventory::open(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let total = targets.len() as u64;
    let list: Vec<(String, SshTarget)> = targets
        .iter()
        .map(|t| (t.alias.clone(), t.clone()))
        .collect();
    let (event_tx, mut events) = mpsc::unbounded_channel();
    let running = {
        let cancel = cancel.clone();
        tokio::spawn(async move { rollout::run(list, options, &cancel, &event_tx, work).await })
    };
    let _ = tx.send(JobMsg::Progress { id, done: 0, total });
    let mut done = 0;
    while let Some(event) = events.recv().await {
        if let Some(inventory) = inventory.as_mut() {
            record(inventory, &targets, build, &event);
        }
        let index = match &event {
            Event::Start { index, .. }
            | Event::Step { index, .. }
            | Event::Note { index, .. }
            | Event::Done { index, .. } => *index,
        };
        if matches!(event, Event::Done { .. }) {
            done += 1;
            let _ = tx.send(JobMsg::Progress { id, done, total });
        }
        let _ = tx.send(JobMsg::Deploy {
            addr: hosts[index],
            event,
        });
    }
    running
        .await
        .map_err(|e| format!("the rollout task failed: {e}"))
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

/// Revokes the agents `ids` (host address, agent id) at the control plane.
pub(super) async fn revoke(
    id: JobId,
    agents: Vec<(IpAddr, String)>,
    link: ControlLink,
    cancel: CancellationToken,
    tx: mpsc::UnboundedSender<JobMsg>,
) {
    let result = run_revoke(id, agents, link, &cancel, &tx).await;
    jobs::end(&tx, id, &cancel, result);
}

async fn run_revoke(
    id: JobId,
    agents: Vec<(IpAddr, String)>,
    link: ControlLink,
    cancel: &CancellationToken,
    tx: &mpsc::UnboundedSender<JobMsg>,
) -> Result<String, String> {
    let (token, _) = link
        .issuer()
        .await?
        .issue(Audience::Operator, OPERATOR, REVOKE_TOKEN_TTL)
        .map_err(|e| format!("cannot mint an operator token: {e}"))?;
    let pin = link.control_pin().await?;
    let client =
        ControlClient::with_replicas(&link.urls(), &link.ca_pem, pin, token, REVOKE_TIMEOUT)
            .map_err(|e| e.to_string())?;
    let total = agents.len() as u64;
    let (mut done, mut failed) = (0, 0);
    for (addr, agent_id) in agents {
        if cancel.is_cancelled() {
            break;
        }
        let result = client.revoke(&agent_id).await.map_err(|e| e.to_string());
        failed += u64::from(result.is_err());
        done += 1;
        let _ = tx.send(JobMsg::Revoked { addr, result });
        let _ = tx.send(JobMsg::Progress { id, done, total });
    }
    Ok(format!("{} revoked, {failed} failed", done - failed))
}
