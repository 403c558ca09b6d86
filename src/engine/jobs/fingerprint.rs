//! The fingerprint job: what each host is, over SSH, recorded in the
//! inventory.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{JobError, JobOutput, Reporter, SshReach, SshRequest, blocking};
use crate::engine::{Questions, SshSettings};
use crate::fingerprint::job as fingerprint_job;
use crate::store::Inventory;

/// Hosts to fingerprint, and how to reach them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FingerprintRequest {
    /// Names, addresses or ssh_config aliases, optionally `user@host`.
    pub hosts: Vec<String>,
    pub ssh: SshRequest,
}

impl FingerprintRequest {
    /// These hosts, reached as the settings say.
    #[must_use]
    pub fn hosts<T: ToString>(hosts: &[T]) -> Self {
        Self {
            hosts: hosts.iter().map(ToString::to_string).collect(),
            ..Self::default()
        }
    }
}

/// What a fingerprint job gets from the engine besides its request.
pub(in crate::engine) struct FingerprintJob {
    pub ssh: SshSettings,
    pub inventory: Option<PathBuf>,
    pub questions: Questions,
}

pub(in crate::engine) async fn run(
    request: FingerprintRequest,
    job: FingerprintJob,
    cancel: CancellationToken,
    report: Reporter,
) {
    let result = fingerprint(request, job, &cancel, &report).await;
    report.end(&cancel, result).await;
}

async fn fingerprint(
    request: FingerprintRequest,
    job: FingerprintJob,
    cancel: &CancellationToken,
    report: &Reporter,
) -> Result<String, JobError> {
    let settings = request.ssh.over(&job.ssh);
    let reach = SshReach::open(settings, report.prompter(&job.questions), report).await?;
    let targets = reach.targets(&request.hosts)?;
    // Facts that could not be recorded are not gathered.
    let mut inventory = match job.inventory {
        Some(path) => Some(
            blocking("inventory writer", move || {
                Inventory::open(&path).map_err(|e| {
                    JobError::Inventory(format!(
                        "cannot record facts in the inventory (is --data-dir writable?): {e}"
                    ))
                })
            })
            .await?,
        ),
        None => None,
    };
    let total = targets.len() as u64;
    let (out_tx, mut results) = mpsc::unbounded_channel();
    let running = tokio::spawn(fingerprint_job::run(
        Arc::clone(&reach.connector),
        targets,
        reach.concurrency,
        reach.timeout,
        cancel.clone(),
        out_tx,
    ));
    report.progress(0, total).await;
    let (mut done, mut failed) = (0, 0);
    let mut facts = Vec::new();
    while let Some(result) = results.recv().await {
        done += 1;
        failed += u64::from(result.failure.is_some());
        facts.push(result.clone());
        report
            .output(JobOutput::Fingerprinted(Box::new(result)))
            .await;
        report.progress(done, total).await;
    }
    running
        .await
        .map_err(|e| JobError::stopped("fingerprint task", &e))?;
    if let Some(mut inventory) = inventory.take() {
        blocking("inventory writer", move || {
            inventory
                .record_fingerprints(&facts)
                .map_err(|e| JobError::Inventory(format!("fingerprinted but not recorded: {e}")))
        })
        .await?;
    }
    Ok(format!("{} ok, {failed} failed of {total}", done - failed))
}
