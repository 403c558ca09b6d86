//! The server's host key, checked during the handshake against every
//! known_hosts file of the target (user and global, see
//! [`super::host_keys`]) under the connector's policy (asking the operator
//! when it says so), and the host-key algorithms offered so that a known
//! key is the one asked for.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use russh::Preferred;
use russh::client;
use russh::keys::{Algorithm, PublicKeyOrCertificate};

use super::client::HostKeyPolicy;
use super::error::SshError;
use super::host_keys::{HostKeyStore, KnownHostsFiles};
use super::known_hosts::{HostKey, Verdict};
use super::prompt::{Answer, Confirm, Prompter};

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The host-key algorithms to offer, most preferred first: those
/// known_hosts already lists for the host lead (in the default order), as
/// OpenSSH orders them, so a host known by its RSA key is asked for that
/// key rather than for an ed25519 key it also has, which would look changed.
pub(super) fn host_key_order(known: &[String]) -> Vec<Algorithm> {
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
/// so that timeouts can wait for the operator (see [`super::Connector::within`]).
pub(super) struct Asking {
    pub(super) inner: Arc<dyn Prompter>,
    pub(super) pending: AtomicUsize,
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
    /// The host as messages name it.
    pub(super) host: String,
    /// The name known_hosts is searched for (`host`, `[host]:port`, or the
    /// HostKeyAlias).
    pub(super) name: String,
    /// The files searched, and where new keys are learned.
    pub(super) files: KnownHostsFiles,
    pub(super) known_hosts: Arc<Mutex<HostKeyStore>>,
    pub(super) policy: HostKeyPolicy,
    pub(super) prompter: Arc<Asking>,
    /// The key the server proved it holds, once verified.
    pub(super) seen: Arc<Mutex<Option<HostKey>>>,
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
        let found = lock(&self.known_hosts)
            .check(&self.files, &self.name, key)
            .map_err(|e| SshError::Protocol {
                host: self.host.clone(),
                reason: format!("{e}; {}", super::host_keys::UNREADABLE_HINT),
            })?;
        let path = found.file.unwrap_or_else(|| PathBuf::from("known_hosts"));
        match found.verdict {
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
            known_hosts: self
                .files
                .learn_into()
                .map_or_else(|| PathBuf::from("known_hosts"), Path::to_owned),
        }
    }

    /// Learns `key` unless, meanwhile, another connection learned a key for
    /// this host: the same one is fine, another is a change.
    fn learn(&self, key: &HostKey) -> Result<(), SshError> {
        let mut known = lock(&self.known_hosts);
        let protocol = |e: super::known_hosts::KnownHostsError| SshError::Protocol {
            host: self.host.clone(),
            reason: e.to_string(),
        };
        let found = known
            .check(&self.files, &self.name, key)
            .map_err(protocol)?;
        match found.verdict {
            Verdict::Known { .. } => return Ok(()),
            Verdict::Unknown => {}
            Verdict::Changed { .. } | Verdict::Revoked { .. } => {
                drop(known);
                return self.check(key).map(|_| ());
            }
        }
        let into = known
            .learn(&self.files, &self.name, key)
            .map_err(protocol)?;
        tracing::info!(
            host = %self.host,
            fingerprint = %key.fingerprint(),
            known_hosts = %into.display(),
            "learned a new host key"
        );
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
