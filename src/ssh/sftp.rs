//! SFTP over an open session: file transfer without scp's shell quoting.

use russh::ChannelMsg;
use russh_sftp::client::{Config, SftpSession};

use super::client::Session;
use super::error::SshError;

/// Writes in flight at once: loopback and LAN links stay full without
/// waiting for each acknowledgement.
const CONCURRENT_WRITES: usize = 64;
/// Seconds each SFTP request may take before the transfer is given up.
const REQUEST_TIMEOUT_SECS: u64 = 30;
/// How long the server may take to accept the subsystem and answer SFTP's
/// first message.
const START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Session {
    /// Opens the `sftp` subsystem on a new channel of this connection;
    /// `None` when the server has none (sshd_config without `Subsystem
    /// sftp`, as on many hardened and minimal images).
    pub async fn try_sftp(&self) -> Result<Option<SftpSession>, SshError> {
        let protocol = |reason: String| SshError::Protocol {
            host: self.host.clone(),
            reason,
        };
        let mut channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| protocol(format!("opening a channel for SFTP: {e}")))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| protocol(format!("asking for the sftp subsystem: {e}")))?;
        // OpenSSH answers a subsystem it does not run with a failure.
        let answer = tokio::time::timeout(START_TIMEOUT, async {
            loop {
                match channel.wait().await {
                    Some(ChannelMsg::Success) => return true,
                    Some(ChannelMsg::Failure | ChannelMsg::Close | ChannelMsg::Eof) | None => {
                        return false;
                    }
                    Some(_) => {}
                }
            }
        })
        .await;
        if answer != Ok(true) {
            let _ = channel.close().await;
            return Ok(None);
        }
        let config = Config {
            max_concurrent_writes: CONCURRENT_WRITES,
            request_timeout_secs: REQUEST_TIMEOUT_SECS,
            ..Config::default()
        };
        let start = SftpSession::new_with_config(channel.into_stream(), config);
        match tokio::time::timeout(START_TIMEOUT, start).await {
            Ok(Ok(sftp)) => Ok(Some(sftp)),
            Ok(Err(e)) => Err(protocol(format!("starting SFTP: {e}"))),
            // Accepted, then silent: no SFTP server behind the subsystem.
            Err(_) => Ok(None),
        }
    }

    /// As [`Session::try_sftp`], with a server without SFTP an error.
    pub async fn sftp(&self) -> Result<SftpSession, SshError> {
        self.try_sftp().await?.ok_or_else(|| SshError::Protocol {
            host: self.host.clone(),
            reason: "no SFTP answer: the server runs no sftp subsystem \
                     (sshd_config: Subsystem sftp ...)"
                .into(),
        })
    }
}
