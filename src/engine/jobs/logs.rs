//! The logs job: an agent's log from its host over SSH, the last lines
//! and, when following, each line it writes next, until cancelled.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{JobError, JobOutput, Reporter, SshReach, SshRequest};
use crate::deploy::logs::{self, NO_AGENT};
use crate::engine::{Questions, SshSettings};
use crate::ssh::exec;

/// A partial line longer than this is passed on as it is.
const LONGEST_LINE: usize = 64 << 10;

/// Whose log, how much, and whether to follow it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogsRequest {
    pub host: String,
    /// The last lines shown first.
    pub lines: u32,
    /// Keep showing what the agent writes, until cancelled.
    pub follow: bool,
    pub ssh: SshRequest,
}

/// What a logs job gets from the engine besides its request.
pub(in crate::engine) struct LogsJob {
    pub ssh: SshSettings,
    pub questions: Questions,
}

pub(in crate::engine) async fn run(
    request: LogsRequest,
    job: LogsJob,
    cancel: CancellationToken,
    report: Reporter,
) {
    let result = tokio::select! {
        result = follow(&request, job, &report) => result,
        () = cancel.cancelled() => Ok("stopped".into()),
    };
    report.end(&cancel, result).await;
}

async fn follow(
    request: &LogsRequest,
    job: LogsJob,
    report: &Reporter,
) -> Result<String, JobError> {
    let settings = request.ssh.over(&job.ssh);
    let reach = SshReach::open(settings, report.prompter(&job.questions), report).await?;
    let target = reach.target(&request.host)?;
    let connecting = reach.connector.connect(&target);
    let session = match reach.connector.within(reach.timeout, connecting).await {
        Some(Ok(session)) => session,
        Some(Err(e)) => return Err(JobError::Failed(e.to_string())),
        None => {
            return Err(JobError::Failed(format!(
                "{}: timed out after {}s while connecting",
                target.display(),
                reach.timeout.as_secs()
            )));
        }
    };
    let (tx, mut chunks) = mpsc::channel::<Vec<u8>>(64);
    let script = logs::script(request.lines, request.follow);
    let lines_of = |bytes: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(bytes)
            .lines()
            .map(str::to_string)
            .collect()
    };
    // Read and pass on in one future: cancelling the job drops both, and
    // with them the connection.
    let pass_on = async {
        let mut partial: Vec<u8> = Vec::new();
        let mut shown = 0usize;
        while let Some(chunk) = chunks.recv().await {
            partial.extend_from_slice(&chunk);
            let cut = match partial.iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                None if partial.len() > LONGEST_LINE => partial.len(),
                None => continue,
            };
            let rest = partial.split_off(cut);
            let lines = lines_of(&partial);
            partial = rest;
            shown += lines.len();
            let host = request.host.clone();
            report.output(JobOutput::LogLines { host, lines }).await;
        }
        if !partial.is_empty() {
            let host = request.host.clone();
            let lines = lines_of(&partial);
            shown += lines.len();
            report.output(JobOutput::LogLines { host, lines }).await;
        }
        shown
    };
    let (ended, shown) = tokio::join!(exec::stream(&session, &script, tx), pass_on);
    session.close().await;
    let ended = ended.map_err(|e| JobError::Failed(e.to_string()))?;
    let said = String::from_utf8_lossy(&ended.stderr).trim().to_string();
    match ended.exit {
        Some(0) => Ok(format!("{shown} lines")),
        Some(NO_AGENT) => Err(JobError::BadRequest(format!(
            "{}: {said}",
            target.display()
        ))),
        Some(code) => Err(JobError::Failed(format!(
            "{}: reading the agent's log failed (exit {code}): {said}",
            target.display()
        ))),
        None => Err(JobError::Failed(format!(
            "{}: the log reader ended without an exit status",
            target.display()
        ))),
    }
}
