//! What can go wrong reaching a host, in the classes an operator acts on.

use std::path::PathBuf;
use std::time::Duration;

pub use crate::model::FailureKind;

#[derive(Debug, Clone, thiserror::Error)]
pub enum SshError {
    #[error("{host}: cannot connect: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("{host}: timed out after {}s while {during}", after.as_secs_f32())]
    Timeout {
        host: String,
        after: Duration,
        during: &'static str,
    },
    #[error(
        "{host}: authentication failed for user {user:?} (tried: {tried}); check the user, keys (-i, ssh-agent) and authorized_keys"
    )]
    AuthFailed {
        host: String,
        user: String,
        tried: String,
    },
    #[error(
        "{host}: host key not known ({fingerprint}) and not accepted; \
         verify it out of band, then connect once with --host-key-policy accept-new \
         or ask (or add it to {})",
        known_hosts.display()
    )]
    HostKeyUnknown {
        host: String,
        fingerprint: String,
        known_hosts: PathBuf,
    },
    #[error(
        "{host}: HOST KEY CHANGED: {path}:{line} expects {expected} but the host offered {got}. \
         Someone may be intercepting the connection, or the host was reinstalled. \
         Verify the new key out of band, then remove line {line} of {path}",
        path = known_hosts.display()
    )]
    HostKeyChanged {
        host: String,
        expected: String,
        got: String,
        known_hosts: PathBuf,
        line: usize,
    },
    #[error("{host}: host key {fingerprint} is marked @revoked at {}:{line}", known_hosts.display())]
    HostKeyRevoked {
        host: String,
        fingerprint: String,
        known_hosts: PathBuf,
        line: usize,
    },
    #[error("{host}: `{command}` exited with status {status}: {}", stderr.trim())]
    CommandFailed {
        host: String,
        command: String,
        status: u32,
        stderr: String,
    },
    #[error("{host}: {reason}")]
    Protocol { host: String, reason: String },
}

impl SshError {
    #[must_use]
    pub fn kind(&self) -> FailureKind {
        match self {
            SshError::Unreachable { .. } => FailureKind::Unreachable,
            SshError::Timeout { .. } => FailureKind::Timeout,
            SshError::AuthFailed { .. } => FailureKind::AuthFailed,
            SshError::HostKeyUnknown { .. } => FailureKind::HostKeyUnknown,
            SshError::HostKeyChanged { .. } => FailureKind::HostKeyChanged,
            SshError::HostKeyRevoked { .. } => FailureKind::HostKeyRevoked,
            SshError::CommandFailed { .. } => FailureKind::CommandFailed,
            SshError::Protocol { .. } => FailureKind::Protocol,
        }
    }
}
