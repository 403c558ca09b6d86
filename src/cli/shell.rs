//! `fleetctl shell HOST`: an interactive shell on the host, reached as
//! every job reaches it. The terminal goes raw while the shell runs (keys,
//! Ctrl-C included, go to the remote side; resizes follow) and comes back
//! exactly as it was, whatever ends the shell.

use std::os::fd::AsFd as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio::sync::mpsc;

use super::console::{FrontEnd, engine_config};
use super::ssh_opts::SshArgs;
use super::{BadInput, Context};
use crate::engine::{self, JobError, SshSettings};
use crate::model::text;
use crate::ssh::shell::{self, ShellEnd, ShellInput};
use crate::ssh::{HostKeyPolicy, Session, TerminalPrompt};

/// Exit status when the connection, not the shell, ended it (as ssh's 255).
const EXIT_CONNECTION: u8 = 255;

#[derive(Debug, Args)]
#[command(mut_arg("concurrency", |a| a.hide(true)))]
pub struct ShellArgs {
    /// The host: a name, address or ~/.ssh/config alias, optionally user@host.
    host: String,
    #[command(flatten)]
    ssh: SshArgs,
    /// SSH port [default: ~/.ssh/config, else 22].
    #[arg(short = 'p', long)]
    port: Option<u16>,
}

pub async fn run(args: ShellArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal as _;
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        return Err(BadInput::wrap(anyhow::anyhow!(
            "fleetctl shell needs a terminal; to run a command, use `fleetctl run HOST -- COMMAND`"
        )));
    }
    let config = engine_config(ctx, FrontEnd::Headless, None, 16)?;
    let mut ssh = config.ssh;
    // Someone is at this terminal: an unknown host key is asked about,
    // unless the config or --host-key-policy says otherwise.
    if ctx.config.ssh.host_key_policy.is_none() {
        ssh.policy = HostKeyPolicy::Ask;
    }
    let end = open(&ssh, &args.ssh.request(args.port), &args.host).await?;
    Ok(exit_code(&args.host, &end))
}

/// Connects to `host` and runs an interactive shell on this terminal
/// until it ends (what the console's `S` runs, its screen suspended).
pub async fn open(
    ssh: &SshSettings,
    request: &crate::engine::SshRequest,
    host: &str,
) -> anyhow::Result<ShellEnd> {
    let (session, notes) = engine::connect(ssh, request, host, Arc::new(TerminalPrompt))
        .await
        .map_err(|e| match e {
            JobError::BadRequest(_) => BadInput::wrap(e),
            other => other.into(),
        })?;
    for note in notes {
        eprintln!("note: {}", text::escape_lines(&note));
    }
    let end = on_terminal(&session).await;
    session.close().await;
    end
}

/// What `fleetctl shell` exits with: the shell's status, as ssh does.
fn exit_code(host: &str, end: &ShellEnd) -> ExitCode {
    match end {
        ShellEnd::Exited(status) => ExitCode::from(u8::try_from(*status).unwrap_or(u8::MAX)),
        ShellEnd::Signalled(signal) => {
            eprintln!("the shell on {} was killed by {signal}", text::escape(host));
            ExitCode::from(EXIT_CONNECTION)
        }
        ShellEnd::Closed => {
            eprintln!("connection to {} closed", text::escape(host));
            ExitCode::from(EXIT_CONNECTION)
        }
    }
}

/// How the shell ended, in words.
#[must_use]
pub fn describe(end: &ShellEnd) -> String {
    match end {
        ShellEnd::Exited(status) => format!("exited {status}"),
        ShellEnd::Signalled(signal) => format!("killed by {signal}"),
        ShellEnd::Closed => "the connection closed".into(),
    }
}

/// Leaves raw mode however the shell ends (an error, a panic unwinding).
struct RawMode;

impl RawMode {
    fn enter() -> anyhow::Result<Self> {
        crossterm::terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
        Ok(Self)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// Runs the shell on `session` with this process's terminal.
async fn on_terminal(session: &Session) -> anyhow::Result<ShellEnd> {
    let term = std::env::var("TERM")
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "xterm-256color".into());
    let size = crossterm::terminal::size().unwrap_or((80, 24));
    let raw = RawMode::enter()?;
    let (tx, rx) = mpsc::channel(64);
    let stop = Arc::new(AtomicBool::new(false));
    let keys = {
        let (tx, stop) = (tx.clone(), Arc::clone(&stop));
        std::thread::spawn(move || read_keys(&tx, &stop))
    };
    let resizes = tokio::spawn(forward_resizes(tx));
    let end = shell::run(session, &term, size, rx, std::io::stdout()).await;
    stop.store(true, Ordering::SeqCst);
    resizes.abort();
    // The reader looks at `stop` at least every 50ms: once it is gone, no
    // key typed after the shell ended is taken from whoever reads next.
    let _ = keys.join();
    drop(raw);
    Ok(end?)
}

/// Sends what is typed on stdin, as bytes, until `stop` or end of input.
fn read_keys(tx: &mpsc::Sender<ShellInput>, stop: &AtomicBool) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let stdin = std::io::stdin();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(50u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => return,
        }
        match nix::unistd::read(stdin.as_fd(), &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tx
                    .blocking_send(ShellInput::Data(buf[..n].to_vec()))
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Passes the terminal's new size on at each SIGWINCH.
async fn forward_resizes(tx: mpsc::Sender<ShellInput>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut winch) = signal(SignalKind::window_change()) else {
        return;
    };
    while winch.recv().await.is_some() {
        if let Ok((cols, rows)) = crossterm::terminal::size()
            && tx.send(ShellInput::Resize { cols, rows }).await.is_err()
        {
            return;
        }
        // Resizes come in bursts while a window is dragged.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
