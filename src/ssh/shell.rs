//! An interactive shell on a host: a PTY of the operator's terminal type
//! and size, keystrokes and resizes in, the terminal's bytes out, until
//! the remote shell exits or the connection drops.
//!
//! The local terminal (raw mode, reading keys) is the caller's: this
//! module only moves bytes, so the console and `fleetctl shell` share it.
//! Output is written as it comes (a terminal takes it at once).

use russh::ChannelMsg;
use std::io::Write;

use tokio::sync::mpsc;

use super::{Session, SshError};

/// What the operator's side sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellInput {
    /// Bytes typed (Ctrl-C included: it is the remote side's to handle).
    Data(Vec<u8>),
    /// The local terminal changed size.
    Resize { cols: u16, rows: u16 },
}

/// How the shell ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellEnd {
    /// The shell exited with this status.
    Exited(u32),
    /// Killed by a signal.
    Signalled(String),
    /// The channel closed with no status (the connection dropped, or the
    /// server ended the session).
    Closed,
}

/// Opens a shell with a PTY (`term`, `cols` × `rows`) and runs it until it
/// ends; typed bytes and resizes come from `input`, what the shell prints
/// goes to `output`. When `input` closes, the shell's stdin is closed.
pub async fn run(
    session: &Session,
    term: &str,
    (cols, rows): (u16, u16),
    mut input: mpsc::Receiver<ShellInput>,
    mut output: impl Write,
) -> Result<ShellEnd, SshError> {
    let protocol = |e: russh::Error| SshError::Protocol {
        host: session.host.clone(),
        reason: format!("opening a shell: {e}"),
    };
    let channel = session
        .handle
        .channel_open_session()
        .await
        .map_err(protocol)?;
    channel
        .request_pty(true, term, u32::from(cols), u32::from(rows), 0, 0, &[])
        .await
        .map_err(protocol)?;
    channel.request_shell(true).await.map_err(protocol)?;
    let (mut read, write) = channel.split();
    let mut input_open = true;
    let mut end = ShellEnd::Closed;
    loop {
        tokio::select! {
            msg = read.wait() => match msg {
                Some(ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. }) => {
                    // The local terminal went away: nothing more to show.
                    if output.write_all(&data).is_err() || output.flush().is_err() {
                        break;
                    }
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => end = ShellEnd::Exited(exit_status),
                Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                    end = ShellEnd::Signalled(format!("{signal_name:?}"));
                }
                Some(ChannelMsg::Close) | None => break,
                Some(_) => {}
            },
            typed = input.recv(), if input_open => match typed {
                Some(ShellInput::Data(bytes)) => {
                    write.data_bytes(bytes).await.map_err(protocol)?;
                }
                Some(ShellInput::Resize { cols, rows }) => {
                    write
                        .window_change(u32::from(cols), u32::from(rows), 0, 0)
                        .await
                        .map_err(protocol)?;
                }
                None => {
                    input_open = false;
                    let _ = write.eof().await;
                }
            },
        }
    }
    Ok(end)
}
