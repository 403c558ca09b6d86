//! Connecting: TCP (or through a ProxyJump hop), the host key checked
//! against known_hosts, authentication, then commands over one connection.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::{ChannelMsg, Disconnect, Preferred};
use serde::{Deserialize, Serialize};

use super::auth;
use super::error::SshError;
use super::host_keys::HostKeyStore;
use super::known_hosts::{HostKey, KnownHostsError};
use super::prompt::Prompter;
use super::target::SshTarget;
use super::verify::{Asking, HandlerError, Verifier, host_key_order, lock};

/// What to do with a host key known_hosts does not list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// Refuse it (as `StrictHostKeyChecking=yes`).
    #[default]
    Strict,
    /// Learn it into known_hosts and go on. A changed key is still refused.
    AcceptNew,
    /// Ask the operator (as `StrictHostKeyChecking=ask`); yes learns it.
    /// A changed key is still refused, never asked about.
    Ask,
}

/// A command's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: u32,
}

/// Opens sessions; shared by every connection of a job so each known_hosts
/// file is read once and learned keys are seen by the next connection.
pub struct Connector {
    known_hosts: Arc<Mutex<HostKeyStore>>,
    /// `--known-hosts FILE`: the one user file for every target (as
    /// `ssh -o UserKnownHostsFile=FILE`); global files still apply.
    user_file: Option<PathBuf>,
    policy: HostKeyPolicy,
    prompter: Arc<Asking>,
}

/// An authenticated connection. Commands may run on it concurrently.
pub struct Session {
    pub(super) handle: Arc<Handle<Verifier>>,
    pub(super) host: String,
    host_key: HostKey,
    /// Kept alive while this session tunnels through it.
    _jump: Option<Box<Session>>,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

const KEEPALIVE: Duration = Duration::from_secs(15);

impl Connector {
    /// Host keys are checked against `known_hosts` (learned into it) in
    /// place of each target's user files, and against its global files.
    pub fn new(
        known_hosts: &Path,
        policy: HostKeyPolicy,
        prompter: Arc<dyn Prompter>,
    ) -> Result<Self, KnownHostsError> {
        let mut store = HostKeyStore::default();
        store.load(known_hosts)?;
        let mut connector = Self::with_target_files(policy, prompter);
        connector.known_hosts = Arc::new(Mutex::new(store));
        connector.user_file = Some(known_hosts.to_owned());
        Ok(connector)
    }

    /// Host keys are checked in the files each target's ssh_config names
    /// ([`SshTarget::known_hosts`]), as OpenSSH checks them.
    #[must_use]
    pub fn with_target_files(policy: HostKeyPolicy, prompter: Arc<dyn Prompter>) -> Self {
        Self {
            known_hosts: Arc::new(Mutex::new(HostKeyStore::default())),
            user_file: None,
            policy,
            prompter: Arc::new(Asking {
                inner: prompter,
                pending: AtomicUsize::new(0),
            }),
        }
    }

    /// Runs `work` within `limit`, except that time spent waiting for the
    /// operator to answer a prompt (host key, passphrase, password) of this
    /// connector does not count: a person is slower than any timeout.
    /// `None` when the time ran out.
    pub async fn within<F: Future>(&self, limit: Duration, work: F) -> Option<F::Output> {
        let mut work = std::pin::pin!(work);
        let deadline = tokio::time::sleep(limit);
        let mut deadline = std::pin::pin!(deadline);
        loop {
            tokio::select! {
                out = &mut work => return Some(out),
                () = &mut deadline => {
                    if self.prompter.pending.load(Ordering::SeqCst) == 0 {
                        return None;
                    }
                    deadline.as_mut().reset(tokio::time::Instant::now() + limit);
                }
            }
        }
    }

    /// Connects to and authenticates with `target`, through its jump host if any.
    #[must_use = "the session is only opened when the future is awaited"]
    pub fn connect<'a>(
        &'a self,
        target: &'a SshTarget,
    ) -> BoxFuture<'a, Result<Session, SshError>> {
        Box::pin(async move {
            let host = target.display();
            let timeout = target.connect_timeout;
            let seen = Arc::new(Mutex::new(None));
            let mut files = target.known_hosts.clone();
            if let Some(user_file) = &self.user_file {
                files.user = vec![user_file.clone()];
            }
            let name = target.known_hosts_name();
            let known = lock(&self.known_hosts)
                .algorithms_for(&files, &name)
                .map_err(|e| SshError::Protocol {
                    host: host.clone(),
                    reason: format!("{e}; {}", super::host_keys::UNREADABLE_HINT),
                })?;
            let verifier = Verifier {
                host: host.clone(),
                name,
                files,
                known_hosts: Arc::clone(&self.known_hosts),
                policy: self.policy,
                prompter: Arc::clone(&self.prompter),
                seen: Arc::clone(&seen),
            };
            let config = Arc::new(client::Config {
                keepalive_interval: Some(KEEPALIVE),
                keepalive_max: 3,
                // One exec round trip per host: Nagle would hold its small packets back.
                nodelay: true,
                preferred: Preferred {
                    key: host_key_order(&known).into(),
                    ..Preferred::default()
                },
                ..client::Config::default()
            });
            let jump = match &target.jump {
                Some(hop) => Some(Box::new(self.connect(hop).await?)),
                None => None,
            };
            let handshake = async {
                match &jump {
                    None => {
                        client::connect(config, (target.hostname.as_str(), target.port), verifier)
                            .await
                    }
                    Some(hop) => {
                        let channel = hop
                            .handle
                            .channel_open_direct_tcpip(
                                target.hostname.as_str(),
                                u32::from(target.port),
                                "127.0.0.1",
                                0,
                            )
                            .await?;
                        client::connect_stream(config, channel.into_stream(), verifier).await
                    }
                }
            };
            let mut handle = match self.within(timeout, handshake).await {
                None => {
                    return Err(SshError::Timeout {
                        host,
                        after: timeout,
                        during: "connecting and exchanging keys",
                    });
                }
                Some(Err(HandlerError::HostKey(e))) => return Err(e),
                Some(Err(HandlerError::Russh(e))) => return Err(connect_error(&host, e)),
                Some(Ok(handle)) => handle,
            };
            let host_key = lock(&seen).clone().ok_or_else(|| SshError::Protocol {
                host: host.clone(),
                reason: "the server sent no host key".into(),
            })?;
            auth::authenticate(&mut handle, target, &host, self.prompter.as_ref(), timeout).await?;
            Ok(Session {
                handle: Arc::new(handle),
                host,
                host_key,
                _jump: jump,
            })
        })
    }
}

impl Session {
    /// The key the host proved it holds, as verified against known_hosts.
    #[must_use]
    pub fn host_key(&self) -> &HostKey {
        &self.host_key
    }

    /// Runs `command`; its exit status is in the output, whatever it is.
    pub async fn exec(&self, command: &str) -> Result<Output, SshError> {
        self.exec_with_input(command, None).await
    }

    /// Runs `command` with `input` (then end of file) on its stdin, as
    /// `ssh host command <file` does; its exit status is in the output.
    /// With no input, stdin stays open (as [`Session::exec`]).
    pub async fn exec_with_input(
        &self,
        command: &str,
        input: Option<&[u8]>,
    ) -> Result<Output, SshError> {
        let protocol = |e: russh::Error| SshError::Protocol {
            host: self.host.clone(),
            reason: format!("running `{}`: {e}", first_line(command)),
        };
        let mut channel = self.handle.channel_open_session().await.map_err(protocol)?;
        channel.exec(true, command).await.map_err(protocol)?;
        if let Some(input) = input {
            // A command that ends early closes its stdin: what it said
            // (below) explains that better than the failed send.
            if channel.data(input).await.is_ok() {
                let _ = channel.eof().await;
            }
        }
        let (mut stdout, mut stderr, mut status) = (Vec::new(), Vec::new(), None);
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => stdout.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, ext: 1 } => stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    return Err(SshError::CommandFailed {
                        host: self.host.clone(),
                        command: command.to_string(),
                        status: 255,
                        stderr: format!("killed by signal {signal_name:?}"),
                    });
                }
                ChannelMsg::Failure => {
                    return Err(SshError::Protocol {
                        host: self.host.clone(),
                        reason: format!("the server refused to run `{command}`"),
                    });
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        let status = status.ok_or_else(|| SshError::Protocol {
            host: self.host.clone(),
            reason: format!("`{command}` ended without an exit status"),
        })?;
        Ok(Output {
            stdout,
            stderr,
            status,
        })
    }

    /// Runs `command`; a non-zero exit is an error carrying its stderr.
    pub async fn run(&self, command: &str) -> Result<Output, SshError> {
        let out = self.exec(command).await?;
        if out.status != 0 {
            return Err(SshError::CommandFailed {
                host: self.host.clone(),
                command: command.chars().take(80).collect(),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(out)
    }

    /// Says goodbye to the server rather than dropping the connection.
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }
}

/// The first line of a script, for messages.
fn first_line(command: &str) -> &str {
    command.lines().next().unwrap_or_default()
}

fn connect_error(host: &str, e: russh::Error) -> SshError {
    match e {
        russh::Error::IO(io) => SshError::Unreachable {
            host: host.to_string(),
            reason: io.to_string(),
        },
        other => SshError::Protocol {
            host: host.to_string(),
            reason: format!("SSH handshake failed: {other}"),
        },
    }
}
