//! Running one command on many hosts: one connection per host, a bounded
//! number at once, each within its timeout; each host's output kept up to
//! a cap (the rest counted and dropped, so one chatty host cannot exhaust
//! memory); a host that fails never stops the others.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use russh::ChannelMsg;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Connector, Session, SshError, SshTarget};
use crate::model::run::{RunFailure, RunResult};

/// Output kept per host when nobody says otherwise: 1 MiB.
pub const DEFAULT_MAX_OUTPUT: usize = 1 << 20;

/// What the remote side says when `--sudo` cannot run without a password.
const SUDO_PASSWORD: &str = "fleetctl: sudo needs a password";
const NO_SUDO: &str = "fleetctl: no sudo on this host";

/// What to run and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOptions {
    /// As the operator typed it; the remote user's shell runs it (as ssh does).
    pub command: String,
    /// Run it as root under `sudo -n`.
    pub sudo: bool,
    /// Bytes of stdout and stderr together kept per host.
    pub max_output: usize,
    /// Per host, connecting included.
    pub timeout: Duration,
    pub concurrency: usize,
}

/// `s` quoted for a POSIX shell.
#[must_use]
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What is sent to the host: the command, or with `sudo` a script run by
/// `sh` that says in its own words when sudo is missing or wants a password
/// (sudo's own messages change with version and locale).
#[must_use]
pub fn remote_command(command: &str, sudo: bool) -> String {
    if !sudo {
        return command.to_string();
    }
    let script = format!(
        "command -v sudo >/dev/null 2>&1 || {{ echo '{NO_SUDO}' >&2; exit 127; }}; \
         sudo -n true 2>/dev/null || {{ echo '{SUDO_PASSWORD}' >&2; exit 1; }}; \
         exec sudo -n -- sh -c {}",
        shell_quote(command)
    );
    format!("sh -c {}", shell_quote(&script))
}

/// A host's output as it arrives, up to a cap.
#[derive(Debug, Default)]
struct Capture {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    max: usize,
    dropped: u64,
    exit: Option<u32>,
    signal: Option<String>,
}

impl Capture {
    fn take(&mut self, data: &[u8], stderr: bool) {
        let room = self
            .max
            .saturating_sub(self.stdout.len() + self.stderr.len());
        let kept = room.min(data.len());
        let into = if stderr {
            &mut self.stderr
        } else {
            &mut self.stdout
        };
        into.extend_from_slice(&data[..kept]);
        self.dropped += (data.len() - kept) as u64;
    }
}

/// A channel running `command`, its stdin closed: a command reading stdin
/// sees its end, as with `ssh -n`.
async fn exec_channel(
    session: &Session,
    command: &str,
) -> Result<russh::Channel<russh::client::Msg>, SshError> {
    let protocol = |e: russh::Error| SshError::Protocol {
        host: session.host.clone(),
        reason: format!("running the command: {e}"),
    };
    let channel = session
        .handle
        .channel_open_session()
        .await
        .map_err(protocol)?;
    channel.exec(true, command).await.map_err(protocol)?;
    let _ = channel.eof().await;
    Ok(channel)
}

/// Runs `command` on `session`, its output into `capture` as it comes.
async fn exec_into(
    session: &Session,
    command: &str,
    capture: &mut Capture,
) -> Result<(), SshError> {
    let mut channel = exec_channel(session, command).await?;
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => capture.take(&data, false),
            ChannelMsg::ExtendedData { data, ext: 1 } => capture.take(&data, true),
            ChannelMsg::ExitStatus { exit_status } => capture.exit = Some(exit_status),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                capture.signal = Some(format!("{signal_name:?}"));
            }
            ChannelMsg::Failure => {
                return Err(SshError::Protocol {
                    host: session.host.clone(),
                    reason: "the server refused to run the command".into(),
                });
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    Ok(())
}

/// Runs the command on one host.
pub async fn run_one(connector: &Connector, target: &SshTarget, opts: &ExecOptions) -> RunResult {
    let started = Instant::now();
    let command = remote_command(&opts.command, opts.sudo);
    let mut capture = Capture {
        max: opts.max_output,
        ..Capture::default()
    };
    let work = async {
        let session = connector.connect(target).await?;
        let ran = exec_into(&session, &command, &mut capture).await;
        session.close().await;
        ran
    };
    let outcome = match connector.within(opts.timeout, work).await {
        Some(outcome) => outcome,
        None => Err(SshError::Timeout {
            host: target.display(),
            after: opts.timeout,
            during: "running the command",
        }),
    };
    let mut result = RunResult {
        host: target.alias.clone(),
        address: target.hostname.clone(),
        exit: capture.exit,
        stdout: String::from_utf8_lossy(&capture.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&capture.stderr).into_owned(),
        dropped: capture.dropped,
        duration: started.elapsed().as_secs_f64(),
        error_class: None,
        error: None,
    };
    if let Err(e) = outcome {
        result.error_class = Some(RunFailure::from(e.kind()));
        result.error = Some(e.to_string());
        // A host that timed out has no exit status worth grouping by.
        result.exit = None;
        return result;
    }
    if let Some(signal) = capture.signal {
        result.error = Some(format!("{}: killed by signal {signal}", target.display()));
    } else if result.exit.is_none() {
        result.error = Some(format!(
            "{}: ended without an exit status",
            target.display()
        ));
    }
    if opts.sudo {
        classify_sudo(&mut result, target);
    }
    result
}

/// The remote script's own words about sudo, as failures.
fn classify_sudo(result: &mut RunResult, target: &SshTarget) {
    let said = result.stderr.trim_end();
    let (class, why) = match (result.exit, said) {
        (Some(1), SUDO_PASSWORD) => (
            RunFailure::SudoPassword,
            format!(
                "sudo wants a password for {} (--sudo runs `sudo -n`, which never asks): \
                 allow it without one (NOPASSWD in sudoers) or log in as root",
                target.user
            ),
        ),
        (Some(127), NO_SUDO) => (
            RunFailure::NoSudo,
            "sudo is not installed (--sudo needs it); log in as root instead".to_string(),
        ),
        _ => return,
    };
    result.error_class = Some(class);
    result.error = Some(format!("{}: {why}", target.display()));
    result.exit = None;
    result.stderr.clear();
}

/// Runs the command on every target, at most `concurrency` at once;
/// results go to `out` as hosts finish. Once `cancel` fires no new host
/// starts (those under way finish). Returns how many never started.
pub async fn run_all(
    connector: Arc<Connector>,
    targets: Vec<SshTarget>,
    opts: ExecOptions,
    cancel: CancellationToken,
    out: mpsc::UnboundedSender<RunResult>,
) -> usize {
    let opts = Arc::new(opts);
    let mut waiting = targets.into_iter();
    let mut running = FuturesUnordered::new();
    loop {
        while running.len() < opts.concurrency.max(1) && !cancel.is_cancelled() {
            let Some(target) = waiting.next() else { break };
            let (connector, opts) = (Arc::clone(&connector), Arc::clone(&opts));
            running.push(async move { run_one(&connector, &target, &opts).await });
        }
        tokio::select! {
            Some(done) = running.next(), if !running.is_empty() => {
                let _ = out.send(done);
            }
            () = cancel.cancelled(), if !running.is_empty() => {
                // Woken to stop starting; the loop's check does that.
                while let Some(done) = running.next().await {
                    let _ = out.send(done);
                }
            }
            else => break,
        }
    }
    waiting.count()
}

/// How a streamed command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Streamed {
    pub exit: Option<u32>,
    /// What it wrote to stderr, up to 64 KiB.
    pub stderr: Vec<u8>,
}

/// Runs `command` and sends its stdout to `out` as it arrives; stderr is
/// kept (capped) for the caller to say why it failed. Ends when the
/// command does, or when `out` is closed.
pub async fn stream(
    session: &Session,
    command: &str,
    out: mpsc::Sender<Vec<u8>>,
) -> Result<Streamed, SshError> {
    const STDERR_CAP: usize = 64 << 10;
    let mut channel = exec_channel(session, command).await?;
    let mut ended = Streamed {
        exit: None,
        stderr: Vec::new(),
    };
    while let Some(msg) = channel.wait().await {
        match msg {
            // The reader has gone: stop reading.
            ChannelMsg::Data { data } if out.send(data.to_vec()).await.is_err() => break,
            ChannelMsg::ExtendedData { data, ext: 1 } => {
                let room = STDERR_CAP.saturating_sub(ended.stderr.len());
                ended
                    .stderr
                    .extend_from_slice(&data[..room.min(data.len())]);
            }
            ChannelMsg::ExitStatus { exit_status } => ended.exit = Some(exit_status),
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_past_the_cap_is_counted_not_kept() {
        let mut c = Capture {
            max: 10,
            ..Capture::default()
        };
        c.take(b"123456", false);
        c.take(b"abcdef", true);
        c.take(b"zz", false);
        assert_eq!(c.stdout, b"123456");
        assert_eq!(c.stderr, b"abcd");
        assert_eq!(c.dropped, 4);
    }

    /// Runs what `--sudo` sends through sh, with a `sudo` of the test's own first in PATH.
    fn through_fake_sudo(command: &str, sudo: &str) -> std::process::Output {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("sudo");
        std::fs::write(&fake, format!("#!/bin/sh\n{sudo}\n")).unwrap();
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&fake)
            .status()
            .unwrap();
        let path = format!(
            "{}:{}",
            dir.path().display(),
            std::env::var("PATH").unwrap()
        );
        std::process::Command::new("sh")
            .args(["-c", &remote_command(command, true)])
            .env("PATH", path)
            .output()
            .unwrap()
    }

    #[test]
    fn sudo_runs_the_command_quoted_once_and_says_when_it_wants_a_password() {
        assert_eq!(remote_command("echo 'hi'", false), "echo 'hi'");
        let allows = r#"[ "$1" = -n ] && shift; [ "$1" = -- ] && shift; exec "$@""#;
        let out = through_fake_sudo(r#"echo "it's" 'a  b' $((6*7)); exit 3"#, allows);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "it's a  b 42\n");
        assert_eq!(out.status.code(), Some(3));
        let wants_password = "echo 'sudo: a password is required' >&2; exit 1";
        let out = through_fake_sudo("echo never", wants_password);
        assert_eq!(out.status.code(), Some(1));
        assert!(out.stdout.is_empty());
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).trim_end(),
            SUDO_PASSWORD
        );
    }
}
