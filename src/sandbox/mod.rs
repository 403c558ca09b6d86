//! The demo fleet: a sandbox of SSH hosts on loopback addresses that anyone
//! can run, with no root and no setup, for `fleetctl demo`.
//!
//! ```text
//!  Sandbox::start(options)
//!    <root>/demo_key, known_hosts         the console's key and the hosts' keys
//!    127.8.0.10:2222  demo-01  ─ russh server ─ exec: sh -c in hosts/demo-01/home
//!    127.8.0.11:2222  demo-02                 └ sftp: held to hosts/demo-02/home
//!    …                (faults: silent, rejects the demo key)
//!  Sandbox::shutdown()  kills every process the hosts started, removes <root>
//! ```
//!
//! Each host is a real SSH server with its own host key; the console logs in
//! with the demo key and checks host keys strictly against the sandbox's
//! known_hosts. Commands really run (as the invoking user), so fingerprinting
//! and deploying are the real jobs; only `hostname` is the sandbox's own.

mod exec;
mod host;
mod jail;
mod keys;
mod lock;
mod reaper;
mod relay;
mod server;
mod sftp;
mod silent;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use host::DOMAIN;
pub use reaper::MARKER;
pub use relay::Relay;
pub use silent::Silent;

use crate::ssh::known_hosts::host_name;

/// The most hosts one sandbox runs.
pub const MAX_HOSTS: usize = 1000;

/// How a host misbehaves, for the states an operator must learn to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostFault {
    /// Its SSH port never answers: connections time out.
    Silent,
    /// Its SSH server refuses the demo key: authentication fails.
    RejectsKey,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// The first host's address; the others follow it. Loopback only.
    pub base: Ipv4Addr,
    /// The SSH port of every host (above 1024, so no root is needed).
    pub port: u16,
    /// How many hosts.
    pub hosts: usize,
    /// Faulty hosts, by index (0 is the first host).
    pub faults: BTreeMap<usize, HostFault>,
    /// The lock that keeps a second sandbox from starting.
    pub lock_file: PathBuf,
    /// Where the sandbox's temporary root is made.
    pub temp_dir: PathBuf,
}

impl SandboxOptions {
    /// Twelve healthy hosts from `base`, on port 2222.
    #[must_use]
    pub fn new(base: Ipv4Addr) -> Self {
        Self {
            base,
            port: 2222,
            hosts: 12,
            faults: BTreeMap::new(),
            lock_file: lock::default_path(),
            temp_dir: std::env::temp_dir(),
        }
    }

    /// The same options with host `index` faulty.
    #[must_use]
    pub fn fault(mut self, index: usize, fault: HostFault) -> Self {
        self.faults.insert(index, fault);
        self
    }
}

/// One host of the sandbox, as the console should know it.
#[derive(Debug, Clone)]
pub struct SandboxHost {
    /// `demo-01`, … : what `hostname` says on it.
    pub name: String,
    /// Where its SSH server listens.
    pub addr: SocketAddr,
    /// Its HOME and the working directory of its commands.
    pub home: PathBuf,
    /// How it misbehaves, if it does.
    pub fault: Option<HostFault>,
    /// Its host key, OpenSSH one-line form, as listed in known_hosts.
    pub host_key: String,
}

/// What can go wrong starting or stopping a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "a sandbox fleet is already running ({}; lock {}): stop it first (Ctrl-C in its terminal)",
        pid.map_or_else(|| "pid unknown".to_string(), |p| format!("pid {p}")),
        lock.display()
    )]
    AlreadyRunning { pid: Option<u32>, lock: PathBuf },
    #[error(
        "cannot listen on {addr}: {source}; is something else using it? choose another base address or port"
    )]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("bad sandbox options: {0}")]
    Options(String),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("making sandbox keys: {reason}")]
    Key { reason: String },
}

/// A running sandbox fleet. Stop it with [`Sandbox::shutdown`]; dropping it
/// stops it too, blocking for up to about a second.
#[derive(Debug)]
pub struct Sandbox {
    root: PathBuf,
    client_key: PathBuf,
    known_hosts: PathBuf,
    user: String,
    hosts: Vec<SandboxHost>,
    stop: CancellationToken,
    servers: Vec<JoinHandle<()>>,
    /// Held so the silent hosts' ports stay silent.
    silent: Vec<Silent>,
    tracker: reaper::Tracker,
    lock: Option<lock::Lock>,
}

impl Sandbox {
    /// Starts the fleet: keys, directories, known_hosts, and a listening
    /// SSH server per host. Needs a tokio runtime.
    pub async fn start(options: SandboxOptions) -> Result<Self, SandboxError> {
        let addrs = addresses(&options)?;
        let lock = lock::Lock::acquire(&options.lock_file)?;
        let root = make_root(&options.temp_dir)?;
        let user = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map_or_else(|| "demo".to_string(), |u| u.name);
        // From here on, dropping `sandbox` (on any error) cleans up.
        let mut sandbox = Self {
            client_key: root.join("demo_key"),
            known_hosts: root.join("known_hosts"),
            root,
            user,
            hosts: Vec::with_capacity(addrs.len()),
            stop: CancellationToken::new(),
            servers: Vec::new(),
            silent: Vec::new(),
            tracker: reaper::Tracker::default(),
            lock: Some(lock),
        };
        let client = keys::ed25519("fleetctl-sandbox-demo")?;
        keys::write_private(&client, &sandbox.client_key)?;
        for (i, addr) in addrs.into_iter().enumerate() {
            let fault = options.faults.get(&i).copied();
            let authorized = (fault != Some(HostFault::RejectsKey)).then(|| client.public_key());
            sandbox.add_host(i, addr, fault, authorized).await?;
        }
        let mut known = String::new();
        for host in &sandbox.hosts {
            let entry = host_name(&host.addr.ip().to_string(), host.addr.port());
            let _ = writeln!(known, "{entry} {}", host.host_key);
        }
        keys::write_file(&sandbox.known_hosts, known.as_bytes(), 0o600)?;
        tracing::info!(hosts = sandbox.hosts.len(), root = %sandbox.root.display(), "sandbox fleet started");
        Ok(sandbox)
    }

    /// Makes host `index` at `addr` and starts its server (or its silence).
    async fn add_host(
        &mut self,
        index: usize,
        addr: SocketAddr,
        fault: Option<HostFault>,
        authorized: Option<&russh::keys::PublicKey>,
    ) -> Result<(), SandboxError> {
        let name = format!("demo-{:02}", index + 1);
        let env = host::HostEnv::create(&self.root, &name, addr, &self.user)?;
        let host_key = keys::ed25519(&name)?;
        let key_line = keys::public_line(host_key.public_key())?;
        let home = env.home.clone();
        if fault == Some(HostFault::Silent) {
            let silent = tokio::task::spawn_blocking(move || Silent::bind(addr))
                .await
                .map_err(|e| SandboxError::Bind {
                    addr,
                    source: io::Error::other(e),
                })?
                .map_err(|source| SandboxError::Bind { addr, source })?;
            self.silent.push(silent);
        } else {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| SandboxError::Bind { addr, source })?;
            let served = Arc::new(server::Host {
                env: Arc::new(env),
                config: Arc::new(server::config(host_key)),
                authorized: authorized.cloned(),
                tracker: self.tracker.clone(),
            });
            let stop = self.stop.clone();
            self.servers
                .push(tokio::spawn(server::serve(listener, served, stop)));
        }
        self.hosts.push(SandboxHost {
            name,
            addr,
            home,
            fault,
            host_key: key_line,
        });
        Ok(())
    }

    /// The hosts, in address order.
    #[must_use]
    pub fn hosts(&self) -> &[SandboxHost] {
        &self.hosts
    }

    /// The demo private key (mode 0600) every healthy host accepts.
    #[must_use]
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    /// The known_hosts file listing every host's key under `[addr]:port`.
    #[must_use]
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// The user commands run as (the one who started the sandbox); any
    /// login name is accepted, this one is the honest choice.
    #[must_use]
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The temporary root holding everything of the sandbox.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A handle that does the cleanup of [`Sandbox::shutdown`] from where
    /// the sandbox itself cannot be reached: a panic hook, before the
    /// process aborts.
    #[must_use]
    pub fn cleanup(&self) -> Cleanup {
        Cleanup {
            tracker: self.tracker.clone(),
            root: self.root.clone(),
        }
    }

    /// Stops the servers, ends every process the hosts started (including
    /// daemons that left their process group) and removes the root.
    pub async fn shutdown(mut self) -> Result<(), SandboxError> {
        self.stop.cancel();
        for server in self.servers.drain(..) {
            let _ = server.await;
        }
        let (tracker, root) = (self.tracker.clone(), self.root.clone());
        let removed = tokio::task::spawn_blocking(move || {
            tracker.kill_all(&root);
            remove_root(&root)
        })
        .await
        .map_err(|e| SandboxError::Io {
            what: "stopping the sandbox".into(),
            source: io::Error::other(e),
        })?;
        self.lock = None;
        removed
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.lock.is_none() {
            return; // shut down already
        }
        self.stop.cancel();
        self.tracker.kill_all(&self.root);
        if let Err(e) = remove_root(&self.root) {
            tracing::warn!(error = %e, "sandbox root left behind");
        }
    }
}

/// Ends a sandbox's processes and removes its root; see [`Sandbox::cleanup`].
#[derive(Debug, Clone)]
pub struct Cleanup {
    tracker: reaper::Tracker,
    root: PathBuf,
}

impl Cleanup {
    /// Blocks for up to about a second; safe to run more than once.
    pub fn run(&self) {
        self.tracker.kill_all(&self.root);
        let _ = remove_root(&self.root);
    }
}

/// The hosts' addresses, checked: loopback only, all inside 127.0.0.0/8.
fn addresses(options: &SandboxOptions) -> Result<Vec<SocketAddr>, SandboxError> {
    let bad = |m: String| Err(SandboxError::Options(m));
    if options.hosts == 0 || options.hosts > MAX_HOSTS {
        return bad(format!("{} hosts: choose 1 to {MAX_HOSTS}", options.hosts));
    }
    let first = u32::from(options.base);
    let last = first
        .checked_add(options.hosts as u32 - 1)
        .map(Ipv4Addr::from);
    match last {
        Some(last) if options.base.is_loopback() && last.is_loopback() => {}
        _ => {
            return bad(format!(
                "{} hosts from {} leave loopback (127.0.0.0/8); choose a base address in 127.x.y.z with room for them",
                options.hosts, options.base
            ));
        }
    }
    if let Some(index) = options.faults.keys().find(|&&i| i >= options.hosts) {
        return bad(format!(
            "a fault for host {index}, but hosts are numbered 0 to {}",
            options.hosts - 1
        ));
    }
    Ok((0..options.hosts as u32)
        .map(|i| SocketAddr::new(Ipv4Addr::from(first + i).into(), options.port))
        .collect())
}

/// A fresh directory of our own, mode 0700, under `parent`.
fn make_root(parent: &Path) -> Result<PathBuf, SandboxError> {
    let mut random = [0u8; 6];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| SandboxError::Key {
        reason: "the system random source failed".into(),
    })?;
    let suffix = random.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    let root = parent.join(format!("fleetctl-sandbox-{}-{suffix}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&root)
        .map_err(|source| SandboxError::Io {
            what: format!("creating the sandbox root {}", root.display()),
            source,
        })?;
    // Canonical, so the paths commands see ($HOME) match those SFTP checks.
    root.canonicalize().map_err(|source| SandboxError::Io {
        what: format!("resolving {}", root.display()),
        source,
    })
}

/// Removes the root, first making writable any directory a command locked.
fn remove_root(root: &Path) -> Result<(), SandboxError> {
    let io = |source| SandboxError::Io {
        what: format!("removing the sandbox root {}", root.display()),
        source,
    };
    match std::fs::remove_dir_all(root) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            unlock_dirs(root);
            std::fs::remove_dir_all(root).map_err(io)
        }
    }
}

fn unlock_dirs(dir: &Path) {
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.filter_map(Result::ok) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                unlock_dirs(&entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_stay_in_loopback() {
        let opts = |base: [u8; 4], hosts| SandboxOptions {
            hosts,
            ..SandboxOptions::new(Ipv4Addr::from(base))
        };
        let ok = addresses(&opts([127, 8, 0, 250], 10)).unwrap();
        assert_eq!(ok[9], "127.8.1.3:2222".parse().unwrap());
        for (base, hosts) in [
            ([10, 0, 0, 1], 1),
            ([127, 255, 255, 250], 10),
            ([127, 8, 0, 1], 0),
        ] {
            let err = addresses(&opts(base, hosts)).unwrap_err();
            assert!(matches!(err, SandboxError::Options(_)), "{err}");
        }
        let faulty = opts([127, 8, 0, 1], 3).fault(3, HostFault::Silent);
        assert!(
            addresses(&faulty)
                .unwrap_err()
                .to_string()
                .contains("0 to 2")
        );
    }
}
