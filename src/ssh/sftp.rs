//! SFTP over an open session: file transfer without scp's shell quoting.

use russh_sftp::client::{Config, SftpSession};

use super::client::Session;
use super::error::SshError;

/// Writes in flight at once: loopback and LAN links stay full without
/// waiting for each acknowledgement.
const CONCURRENT_WRITES: usize = 64;
/// Seconds each SFTP request may take before the transfer is given up.
const REQUEST_TIMEOUT_SECS: u64 = 30;
/// A server without an sftp subsystem never answers the handshake.
const START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Session {
    /// Opens the `sftp` subsystem on a new channel of this connection.
    pub async fn sftp(&self) -> Result<SftpSession, SshError> {
        let protocol = |reason: String| SshError::Protocol {
            host: self.host.clone(),
            reason,
        };
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| protocol(format!("opening a channel for SFTP: {e}")))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| protocol(format!("the server refused the sftp subsystem: {e}")))?;
        let config = Config {
            max_concurrent_writes: CONCURRENT_WRITES,
            request_timeout_secs: REQUEST_TIMEOUT_SECS,
            ..Config::default()
        };
        let start = SftpSession::new_with_config(channel.into_stream(), config);
        match tokio::time::timeout(START_TIMEOUT, start).await {
            Ok(Ok(sftp)) => Ok(sftp),
            Ok(Err(e)) => Err(protocol(format!("starting SFTP: {e}"))),
            Err(_) => Err(protocol(
                "no SFTP answer: the server runs no sftp subsystem (sshd_config: Subsystem sftp ...)"
                    .into(),
            )),
        }
    }
}
