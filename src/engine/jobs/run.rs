//! The run job: one command on many hosts over SSH, with fingerprint's
//! SSH settings and host-key rules; each host's result as it finishes.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{JobError, JobOutput, Reporter, SshReach, SshRequest, blocking};
use crate::engine::{Questions, SshSettings};
use crate::model::hostlist;
use crate::model::run::{RunResult, summary};
use crate::ssh::exec::{self, DEFAULT_MAX_OUTPUT, ExecOptions};
use crate::store::Inventory;

/// A command to run, where, and how.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunRequest {
    /// Names, addresses or ssh_config aliases, optionally `user@host`.
    pub hosts: Vec<String>,
    /// Run by the remote user's shell, as `ssh HOST COMMAND` runs it.
    pub command: String,
    /// Under `sudo -n`.
    pub sudo: bool,
    /// Output kept per host [default: 1 MiB].
    pub max_output: Option<usize>,
    /// `ssh.timeout` is the time allowed per host.
    pub ssh: SshRequest,
}

/// What a run job gets from the engine besides its request.
pub(in crate::engine) struct RunJob {
    pub ssh: SshSettings,
    /// Where the run is recorded (the audit trail).
    pub inventory: Option<PathBuf>,
    pub questions: Questions,
}

pub(in crate::engine) async fn run(
    request: RunRequest,
    job: RunJob,
    cancel: CancellationToken,
    report: Reporter,
) {
    let result = run_command(request, job, &cancel, &report).await;
    report.end(&cancel, result).await;
}

async fn run_command(
    request: RunRequest,
    job: RunJob,
    cancel: &CancellationToken,
    report: &Reporter,
) -> Result<String, JobError> {
    if request.command.trim().is_empty() {
        return Err(JobError::BadRequest("no command to run".into()));
    }
    if request.hosts.is_empty() {
        return Err(JobError::BadRequest("no host to run on".into()));
    }
    let settings = request.ssh.over(&job.ssh);
    let reach = SshReach::open(settings, report.prompter(&job.questions), report).await?;
    let targets = reach.targets(&request.hosts)?;
    // The audit trail first: a run that cannot be recorded does not start.
    let mut audit = match job.inventory {
        Some(path) => Some(begin(path, &request).await?),
        None => None,
    };
    let total = targets.len() as u64;
    let options = ExecOptions {
        command: request.command.clone(),
        sudo: request.sudo,
        max_output: request.max_output.unwrap_or(DEFAULT_MAX_OUTPUT),
        timeout: reach.timeout,
        concurrency: reach.concurrency,
    };
    let (out_tx, mut finished) = mpsc::unbounded_channel();
    let running = tokio::spawn(exec::run_all(
        Arc::clone(&reach.connector),
        targets,
        options,
        cancel.clone(),
        out_tx,
    ));
    report.progress(0, total).await;
    let mut results: Vec<RunResult> = Vec::new();
    while let Some(result) = finished.recv().await {
        results.push(result.clone());
        report.output(JobOutput::Ran(Box::new(result))).await;
        report.progress(results.len() as u64, total).await;
    }
    let not_started = running
        .await
        .map_err(|e| JobError::stopped("run task", &e))?;
    report.output(JobOutput::RunDone { not_started }).await;
    let line = summary(&results, not_started);
    if let Some((mut inventory, id)) = audit.take() {
        let recorded = line.clone();
        blocking("inventory writer", move || {
            inventory
                .finish_run(id, &recorded, &results)
                .map_err(|e| JobError::Inventory(format!("ran, but the end is not recorded: {e}")))
        })
        .await?;
    }
    Ok(line)
}

/// Who runs this, for the audit trail: the name of the process's user id
/// (not `$USER`, which anyone can set), and whom sudo came from.
fn audit_user() -> String {
    let uid = nix::unistd::getuid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |u| u.name);
    match std::env::var("SUDO_USER") {
        Ok(from) if !from.is_empty() && from != name => format!("{name} (sudo from {from})"),
        _ => name,
    }
}

/// Opens the inventory and records the run's start: who, what, where.
async fn begin(path: PathBuf, request: &RunRequest) -> Result<(Inventory, i64), JobError> {
    let (command, sudo) = (request.command.clone(), request.sudo);
    let hosts = hostlist::fold(&request.hosts);
    blocking("inventory writer", move || {
        let cannot = |e: crate::store::StoreError| {
            JobError::Inventory(format!(
                "cannot record the run in the inventory, so it was not started (is --data-dir writable?): {e}"
            ))
        };
        let mut inventory = Inventory::open(&path).map_err(cannot)?;
        let user = audit_user();
        let id = inventory
            .begin_run(&user, &command, sudo, &hosts)
            .map_err(cannot)?;
        Ok((inventory, id))
    })
    .await
}
