//! The run job: one command on many hosts over SSH, with fingerprint's
//! SSH settings and host-key rules; each host's result as it finishes.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{JobError, JobOutput, Reporter, SshReach, SshRequest};
use crate::engine::{Questions, SshSettings};
use crate::model::run::{RunResult, summary};
use crate::ssh::exec::{self, DEFAULT_MAX_OUTPUT, ExecOptions};

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
    Ok(summary(&results, not_started))
}
