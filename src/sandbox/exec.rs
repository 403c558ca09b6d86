//! Exec requests: `sh -c COMMAND` in the host's directory, as sshd runs
//! them, with stdin, stdout, stderr and the exit status carried over the
//! channel.
//!
//! Like OpenSSH, the channel ends when the command has exited *and* its
//! stdout and stderr are closed: a command that leaves a background process
//! holding them keeps the channel open, on the sandbox as on a real host.

use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::process::Stdio;
use std::sync::Arc;

use russh::server::{Handle, Msg};
use russh::{Channel, ChannelMsg, Sig};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::process::Command;

use super::host::HostEnv;
use super::reaper::{MARKER, Tracker};

/// Runs `command` for the client on `channel`, to the end.
pub(super) async fn run(
    channel: Channel<Msg>,
    session: Handle,
    command: Vec<u8>,
    host: Arc<HostEnv>,
    tracker: Tracker,
) {
    let id = channel.id();
    let (mut from_client, to_client) = channel.split();
    let mut child = match command_for(&host, &command).spawn() {
        Ok(child) => child,
        Err(e) => {
            let msg = format!("{}: cannot start sh: {e}\n", host.name);
            let _ = to_client.extended_data_bytes(1, msg.into_bytes()).await;
            let _ = to_client.exit_status(127).await;
            let _ = to_client.eof().await;
            let _ = to_client.close().await;
            return;
        }
    };
    let pgid = child.id();
    if let Some(pgid) = pgid {
        tracker.add(pgid);
    }
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());

    // Client data to the command's stdin until the client's EOF; detached so
    // a command that never reads stdin cannot hold up its own exit.
    tokio::spawn(async move {
        let mut stdin = stdin;
        while let Some(msg) = from_client.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    if let Some(pipe) = stdin.as_mut()
                        && pipe.write_all(&data).await.is_err()
                    {
                        stdin = None;
                    }
                }
                ChannelMsg::Eof => stdin = None,
                _ => {}
            }
        }
    });

    let out = pump(stdout, to_client.make_writer());
    let err = pump(stderr, to_client.make_writer_ext(Some(1)));
    let (status, (), ()) = tokio::join!(child.wait(), out, err);
    match status {
        Ok(status) => {
            if let Some(code) = status.code() {
                let _ = to_client.exit_status(code.cast_unsigned()).await;
            } else if let Some(signal) = status.signal() {
                let _ = session
                    .exit_signal_request(
                        id,
                        sig(signal),
                        status.core_dumped(),
                        String::new(),
                        "en".into(),
                    )
                    .await;
            }
        }
        Err(e) => tracing::warn!(host = %host.name, error = %e, "lost track of a command"),
    }
    if let Some(pgid) = pgid {
        tracker.forget_if_empty(pgid);
    }
    let _ = to_client.eof().await;
    let _ = to_client.close().await;
}

fn command_for(host: &HostEnv, command: &[u8]) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(std::ffi::OsStr::from_bytes(command))
        .current_dir(&host.home)
        .env_clear()
        .env("HOME", &host.home)
        .env("PATH", host.path_var())
        .env("USER", &host.user)
        .env("LOGNAME", &host.user)
        .env("SHELL", "/bin/sh")
        .env("TMPDIR", &host.tmp)
        .env(MARKER, &host.root)
        .env("FLEETCTL_SANDBOX_HOST", &host.name)
        // Its own group, so the group can be killed at shutdown without
        // touching the sandbox's own process.
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Copies a pipe to the channel until the pipe's EOF.
async fn pump<R, W>(pipe: Option<R>, mut to: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if let Some(mut pipe) = pipe {
        let _ = tokio::io::copy(&mut pipe, &mut to).await;
    }
}

fn sig(signal: i32) -> Sig {
    use nix::sys::signal::Signal;
    match Signal::try_from(signal) {
        Ok(Signal::SIGABRT) => Sig::ABRT,
        Ok(Signal::SIGALRM) => Sig::ALRM,
        Ok(Signal::SIGFPE) => Sig::FPE,
        Ok(Signal::SIGHUP) => Sig::HUP,
        Ok(Signal::SIGILL) => Sig::ILL,
        Ok(Signal::SIGINT) => Sig::INT,
        Ok(Signal::SIGKILL) => Sig::KILL,
        Ok(Signal::SIGPIPE) => Sig::PIPE,
        Ok(Signal::SIGQUIT) => Sig::QUIT,
        Ok(Signal::SIGSEGV) => Sig::SEGV,
        Ok(Signal::SIGTERM) => Sig::TERM,
        Ok(Signal::SIGUSR1) => Sig::USR1,
        Ok(other) => Sig::Custom(other.as_str().trim_start_matches("SIG").to_string()),
        Err(_) => Sig::Custom(signal.to_string()),
    }
}
