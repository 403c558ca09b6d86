//! Connecting: TCP (or through a ProxyJump hop), the host key checked
//! against known_hosts, authentication, then commands over one connection.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{Algorithm, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect, Preferred};
use serde::{Deserialize, Serialize};

use super::auth;
use super::error::SshError;
use super::known_hosts::{HostKey, KnownHosts, KnownHostsError, Verdict};
use super::prompt::{Answer, Confirm, Prompter};
use super::target::SshTarget;

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

/// Opens sessions; shared by every connection of a job so known_hosts is
/// read once and learned keys are seen by the next connection.
pub struct Connector {
    known_hosts: Arc<Mutex<KnownHosts>>,
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
    pub fn new(
        known_hosts: &Path,
        policy: HostKeyPolicy,
        prompter: Arc<dyn Prompter>,
    ) -> Result<Self, KnownHostsError> {
        Ok(Self {
            known_hosts: Arc::new(Mutex::new(KnownHosts::load(known_hosts)?)),
            policy,
            prompter: Arc::new(Asking {
                inner: prompter,
                pending: AtomicUsize::new(0),
            }),
        })
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
            let verifier = Verifier {
                host: host.clone(),
                name: target.hostname.clone(),
                port: target.port,
                known_hosts: Arc::clone(&self.known_hosts),
                policy: self.policy,
                prompter: Arc::clone(&self.prompter),
                seen: Arc::clone(&seen),
            };
            let known = lock(&self.known_hosts).algorithms_for(&target.hostname, target.port);
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

    /// The known_hosts file keys are checked against.
    #[must_use]
    pub fn known_hosts(&self) -> PathBuf {
        lock(&self.known_hosts).path().to_owned()
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
        let protocol = |e: russh::Error| SshError::Protocol {
            host: self.host.clone(),
            reason: format!("running `{command}`: {e}"),
        };
        let mut channel = self.handle.channel_open_session().await.map_err(protocol)?;
        channel.exec(true, command).await.map_err(protocol)?;
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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

/// The host-key algorithms to offer, most preferred first: those
/// known_hosts already lists for the host lead (in the default order), as
/// OpenSSH orders them, so a host known by its RSA key is asked for that
/// key rather than for an ed25519 key it also has, which would look changed.
fn host_key_order(known: &[String]) -> Vec<Algorithm> {
    let listed = |a: &Algorithm| {
        known
            .iter()
            .any(|k| k == a.as_str() || (matches!(a, Algorithm::Rsa { .. }) && k == "ssh-rsa"))
    };
    let defaults = Preferred::DEFAULT.key;
    let (mut order, rest): (Vec<Algorithm>, Vec<Algorithm>) =
        defaults.iter().cloned().partition(|a| listed(a));
    order.extend(rest);
    order
}

/// The connector's prompter, counting the questions waiting for an answer
/// so that timeouts can wait for the operator (see [`Connector::within`]).
struct Asking {
    inner: Arc<dyn Prompter>,
    pending: AtomicUsize,
}

/// Counts one pending question for as long as it lives.
struct Pending<'a>(&'a AtomicUsize);

impl<'a> Pending<'a> {
    fn start(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Prompter for Asking {
    fn passphrase<'a>(&'a self, key: &'a Path) -> Answer<'a> {
        Box::pin(async move {
            let _pending = Pending::start(&self.pending);
            self.inner.passphrase(key).await
        })
    }
    fn password<'a>(&'a self, user: &'a str, host: &'a str) -> Answer<'a> {
        Box::pin(async move {
            let _pending = Pending::start(&self.pending);
            self.inner.password(user, host).await
        })
    }
    fn confirm_host_key<'a>(
        &'a self,
        host: &'a str,
        algorithm: &'a str,
        fingerprint: &'a str,
    ) -> Confirm<'a> {
        Box::pin(async move {
            let _pending = Pending::start(&self.pending);
            self.inner
                .confirm_host_key(host, algorithm, fingerprint)
                .await
        })
    }
}

/// Checks the server's host key during the handshake.
pub(super) struct Verifier {
    host: String,
    name: String,
    port: u16,
    known_hosts: Arc<Mutex<KnownHosts>>,
    policy: HostKeyPolicy,
    prompter: Arc<Asking>,
    seen: Arc<Mutex<Option<HostKey>>>,
}

#[derive(Debug)]
pub(super) enum HandlerError {
    Russh(russh::Error),
    HostKey(SshError),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Russh(e)
    }
}

/// What to do with a key known_hosts does not list.
enum Unlisted {
    Refuse,
    Learn,
    Ask,
}

impl Verifier {
    /// Checks `key` against known_hosts: `Ok(None)` when it is known,
    /// `Ok(Some(..))` when it is not listed at all.
    fn check(&self, key: &HostKey) -> Result<Option<Unlisted>, SshError> {
        let known = lock(&self.known_hosts);
        let path = known.path().to_owned();
        match known.check(&self.name, self.port, key) {
            Verdict::Known { .. } => Ok(None),
            Verdict::Changed { line, expected } => Err(SshError::HostKeyChanged {
                host: self.host.clone(),
                expected: format!("{} {}", expected.algorithm, expected.fingerprint()),
                got: format!("{} {}", key.algorithm, key.fingerprint()),
                known_hosts: path,
                line,
            }),
            Verdict::Revoked { line } => Err(SshError::HostKeyRevoked {
                host: self.host.clone(),
                fingerprint: key.fingerprint(),
                known_hosts: path,
                line,
            }),
            Verdict::Unknown => Ok(Some(match self.policy {
                HostKeyPolicy::Strict => Unlisted::Refuse,
                HostKeyPolicy::AcceptNew => Unlisted::Learn,
                HostKeyPolicy::Ask => Unlisted::Ask,
            })),
        }
    }

    fn unknown(&self, key: &HostKey) -> SshError {
        SshError::HostKeyUnknown {
            host: self.host.clone(),
            fingerprint: format!("{} {}", key.algorithm, key.fingerprint()),
            known_hosts: lock(&self.known_hosts).path().to_owned(),
        }
    }

    fn learn(&self, key: &HostKey) -> Result<(), SshError> {
        let mut known = lock(&self.known_hosts);
        // Another connection may have learned it while this one asked.
        if let Verdict::Known { .. } = known.check(&self.name, self.port, key) {
            return Ok(());
        }
        known
            .learn(&self.name, self.port, key)
            .map_err(|e| SshError::Protocol {
                host: self.host.clone(),
                reason: e.to_string(),
            })?;
        tracing::info!(host = %self.host, fingerprint = %key.fingerprint(), "learned a new host key");
        Ok(())
    }

    async fn verify(&self, key: &HostKey) -> Result<(), SshError> {
        match self.check(key)? {
            None => Ok(()),
            Some(Unlisted::Refuse) => Err(self.unknown(key)),
            Some(Unlisted::Learn) => self.learn(key),
            Some(Unlisted::Ask) => {
                let fingerprint = key.fingerprint();
                let yes = self
                    .prompter
                    .confirm_host_key(&self.host, &key.algorithm, &fingerprint)
                    .await;
                if !yes {
                    return Err(self.unknown(key));
                }
                // Checked again: while the operator read the question, another
                // connection may have learned a different key for this host.
                match self.check(key)? {
                    None => Ok(()),
                    Some(_) => self.learn(key),
                }
            }
        }
    }
}

impl client::Handler for Verifier {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let text = server_key.public_key().to_openssh().map_err(|e| {
            HandlerError::HostKey(SshError::Protocol {
                host: self.host.clone(),
                reason: format!("unreadable host key: {e}"),
            })
        })?;
        let key = HostKey::from_openssh(&text).ok_or_else(|| {
            HandlerError::HostKey(SshError::Protocol {
                host: self.host.clone(),
                reason: "unreadable host key".into(),
            })
        })?;
        self.verify(&key).await.map_err(HandlerError::HostKey)?;
        *lock(&self.seen) = Some(key);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(order: &[Algorithm]) -> Vec<&str> {
        order.iter().map(Algorithm::as_str).collect()
    }

    #[test]
    fn host_key_algorithms_known_for_the_host_are_offered_first() {
        let default = host_key_order(&[]);
        assert_eq!(names(&default)[0], "ssh-ed25519");
        let rsa = host_key_order(&["ssh-rsa".into()]);
        assert_eq!(
            names(&rsa)[..3],
            ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
            "every RSA signature kind verifies an ssh-rsa entry"
        );
        assert_eq!(rsa.len(), default.len(), "the others still follow");
        let ecdsa = host_key_order(&["ecdsa-sha2-nistp256".into(), "ssh-rsa".into()]);
        assert_eq!(names(&ecdsa)[0], "ecdsa-sha2-nistp256");
        assert_eq!(names(&ecdsa)[1], "rsa-sha2-512");
    }
}
