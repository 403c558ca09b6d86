//! The demo's world: the sandbox fleet, an embedded control plane with
//! short lifetimes, a relay that one host's agent reaches it through, a
//! data dir inside the sandbox's temporary root, and the engine's settings
//! for all of it.
//!
//! ```text
//!  127.42.0.1:port   control plane (CA, registry; identity 60s, cert 120s)
//!  127.42.0.2:port   relay ─▶ control plane   (cut once its agent registered)
//!  127.42.0.10..     sandbox hosts, SSH on 2222, agents on :9701
//!  <sandbox root>/console/   inventory, control keys: gone at exit
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::control::{self, ControlPlane};
use crate::deploy::layout::InstallScope;
use crate::engine::{
    ControlLink, DeploySettings, EngineConfig, FleetSnapshot, PollSettings, Questions, ScanConfig,
    SshSettings,
};
use crate::sandbox::{HostFault, Relay, Sandbox, SandboxError, SandboxOptions};
use crate::scan::MethodChoice;
use crate::ssh::{ConnectFlags, HostKeyPolicy};

/// The SSH port of every sandbox host.
pub const SSH_PORT: u16 = 2222;
/// Where each host's agent listens: its own address, the agents' port.
fn agent_listen() -> String {
    format!("{{host}}:{}", crate::model::stats::AGENT_PORT)
}
/// A debug build is mostly debug info; above this size the demo pushes a
/// stripped copy, so a dozen hosts do not each get a quarter gigabyte.
const STRIP_ABOVE: u64 = 64 << 20;

/// Which hosts fail, and how (indices into the sandbox's hosts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Its SSH port never answers.
    pub silent: usize,
    /// Its SSH server refuses the demo key.
    pub rejects_key: usize,
    /// Its agent reaches the control plane through the relay, then not at all.
    pub cut_off: usize,
}

impl Roles {
    /// demo-03, demo-05 and demo-07 by default (the last three hosts when
    /// there are fewer than eight); with a seed, three hosts that seed picks.
    #[must_use]
    pub fn pick(hosts: usize, seed: Option<u64>) -> Self {
        let Some(seed) = seed else {
            let [silent, rejects_key, cut_off] = if hosts >= 8 {
                [2, 4, 6]
            } else {
                [hosts - 3, hosts - 2, hosts - 1]
            };
            return Self {
                silent,
                rejects_key,
                cut_off,
            };
        };
        // splitmix64: a fixed sequence per seed, on every platform and version.
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let mut picked: Vec<usize> = Vec::with_capacity(3);
        while picked.len() < 3 {
            let i = (next() % hosts as u64) as usize;
            if !picked.contains(&i) {
                picked.push(i);
            }
        }
        Self {
            silent: picked[0],
            rejects_key: picked[1],
            cut_off: picked[2],
        }
    }
}

/// How long tokens and certificates live, and how often agents report.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub identity: Duration,
    pub cert: Duration,
    pub heartbeat: Duration,
    pub lost_after: Duration,
}

impl Lifetimes {
    /// Renewals within a minute of watching.
    pub const CONSOLE: Self = Self {
        identity: Duration::from_mins(1),
        cert: Duration::from_mins(2),
        heartbeat: Duration::from_secs(5),
        lost_after: Duration::from_secs(15),
    };
    /// Short enough for a headless run to see a token expire within its time.
    pub const HEADLESS: Self = Self {
        identity: Duration::from_secs(20),
        cert: Duration::from_mins(1),
        heartbeat: Duration::from_secs(2),
        lost_after: Duration::from_secs(6),
    };
}

/// What to start.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub base: Ipv4Addr,
    pub hosts: usize,
    pub roles: Roles,
    pub lifetimes: Lifetimes,
    /// The build to push; `None`: this binary.
    pub agent_binary: Option<PathBuf>,
}

/// The running demo world; [`DemoFleet::shutdown`] ends all of it.
pub struct DemoFleet {
    pub sandbox: Sandbox,
    pub roles: Roles,
    pub relay: Arc<Relay>,
    /// The sandbox's addresses as a scan target: `127.42.0.10-21`.
    pub range: String,
    pub engine: EngineConfig,
    control_stop: CancellationToken,
    control_task: tokio::task::JoinHandle<Result<(), control::ControlError>>,
}

impl DemoFleet {
    /// Starts the sandbox (refused while another runs), the control plane
    /// and the relay, and writes the engine's settings.
    pub async fn start(options: FleetOptions) -> anyhow::Result<Self> {
        let FleetOptions {
            base,
            hosts,
            roles,
            lifetimes,
            agent_binary,
        } = options;
        let mut sandbox_options = SandboxOptions::new(base)
            .fault(roles.silent, HostFault::Silent)
            .fault(roles.rejects_key, HostFault::RejectsKey);
        sandbox_options.hosts = hosts;
        sandbox_options.port = SSH_PORT;
        let sandbox = Sandbox::start(sandbox_options).await.map_err(|e| match e {
            SandboxError::AlreadyRunning { .. } => {
                anyhow::anyhow!("{e}; only one `fleetctl demo` runs at a time on this machine")
            }
            other => anyhow::Error::new(other).context("cannot start the sandbox fleet"),
        })?;
        // From here on an error drops the sandbox, which cleans up.
        let console = sandbox.root().join("console");
        crate::store::create_private_dir(&console)
            .context("cannot create the demo's data directory")?;
        let (started, relay, control_stop) = start_control(base, &console, lifetimes).await?;
        let inventory = console.join("inventory.sqlite3");
        let listed: Vec<(IpAddr, Option<String>)> = sandbox
            .hosts()
            .iter()
            .map(|h| (h.addr.ip(), Some(h.name.clone())))
            .collect();
        let path = inventory.clone();
        tokio::task::spawn_blocking(move || {
            crate::store::Inventory::open(&path)
                .and_then(|mut inv| inv.add_listed("fleetctl demo: the sandbox's hosts", &listed))
        })
        .await
        .context("the demo's inventory writer stopped")?
        .context("cannot write the demo's inventory")?;

        let cut_off_ip = sandbox.hosts()[roles.cut_off].addr.ip();
        let relay_url = control::local_url(relay.addr());
        let agent_binary = match agent_binary {
            Some(path) => Some(path),
            None => slim_binary(sandbox.root()).await,
        };
        let first = sandbox.hosts()[0].addr.ip();
        let last = sandbox.hosts()[hosts - 1].addr.ip();
        let range = if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        };
        let link = ControlLink {
            url: started.url,
            replicas: Vec::new(),
            control_dir: console.join("control"),
            operator_ttl: Duration::from_mins(10),
        };
        let deploy = DeploySettings {
            agent_binary,
            listen: agent_listen(),
            step_timeout: Duration::from_mins(2),
            wait_timeout: Duration::from_mins(1),
            scope: InstallScope::User,
            controller_for: BTreeMap::from([(cut_off_ip, relay_url)]),
        };
        let engine = engine_config(&sandbox, &console, inventory, link, deploy)?;
        Ok(Self {
            sandbox,
            roles,
            relay: Arc::new(relay),
            range,
            engine,
            control_stop,
            control_task: started.task,
        })
    }

    /// The host playing `index`'s part, for messages: `demo-07 (127.42.0.16)`.
    #[must_use]
    pub fn describe(&self, index: usize) -> String {
        let h = &self.sandbox.hosts()[index];
        format!("{} ({})", h.name, h.addr.ip())
    }

    #[must_use]
    pub fn addr(&self, index: usize) -> IpAddr {
        self.sandbox.hosts()[index].addr.ip()
    }

    /// Stops the control plane, then the sandbox: every agent and command
    /// ends and the temporary root (the demo's data dir with it) goes.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.control_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.control_task).await;
        drop(self.relay);
        self.sandbox
            .shutdown()
            .await
            .context("the sandbox did not clean up fully")
    }
}

/// Cuts the relay once the cut-off host's agent shows as registered, so its
/// token goes renewing → expiring → expired while the operator watches.
pub async fn cut_when_registered(
    mut snapshots: tokio::sync::watch::Receiver<Arc<FleetSnapshot>>,
    relay: Arc<Relay>,
    addr: IpAddr,
    name: String,
    tell: impl Fn(String) + Send,
) {
    loop {
        let registered = snapshots.borrow_and_update().host(addr).is_some_and(|h| {
            h.registration == crate::model::RegistrationState::Registered
                && h.agent == crate::model::AgentState::Running
        });
        if registered {
            match relay.cut().await {
                Ok(()) => tell(format!(
                    "{name}: its agent registered; its link to the control plane is now cut, \
                     so its token goes renewing → expiring → expired"
                )),
                Err(e) => tell(format!("{name}: cannot cut its link: {e}")),
            }
            return;
        }
        if snapshots.changed().await.is_err() {
            return;
        }
    }
}

/// The control plane on .1 of `base`'s /24 and a relay to it on .2 (named
/// in its certificate, for the agent that goes through it).
async fn start_control(
    base: Ipv4Addr,
    console: &Path,
    lifetimes: Lifetimes,
) -> anyhow::Result<(control::Started, Relay, CancellationToken)> {
    let [a, b, c, _] = base.octets();
    let control_ip = Ipv4Addr::new(a, b, c, 1);
    let relay_ip = Ipv4Addr::new(a, b, c, 2);
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(control_ip.into(), 0))
        .await
        .with_context(|| format!("cannot listen on {control_ip} for the control plane"))?;
    let control_addr = listener.local_addr()?;
    let relay = Relay::start(SocketAddr::new(relay_ip.into(), 0), control_addr)
        .await
        .context("cannot start the relay to the control plane")?;
    let settings = control::Settings {
        url: None,
        names: vec![relay_ip.to_string()],
        cert_ttl: lifetimes.cert,
        identity_ttl: lifetimes.identity,
        join_ttl: Duration::from_mins(5),
        heartbeat_interval: lifetimes.heartbeat,
        lost_after: lifetimes.lost_after,
        ..control::Settings::default()
    };
    let plane = ControlPlane::open(
        &console.join("control"),
        &console.join("inventory.sqlite3"),
        settings,
    )
    .context("cannot start the demo's control plane")?;
    let stop = CancellationToken::new();
    let started = control::start(listener, plane, stop.clone().cancelled_owned())
        .context("cannot start the demo's control plane")?;
    Ok((started, relay, stop))
}

/// The engine set up for the sandbox: TCP connect to the SSH port (no
/// root), the demo key only, strict host keys against the sandbox's
/// known_hosts, agents on each host's own address.
fn engine_config(
    sandbox: &Sandbox,
    console: &Path,
    inventory: PathBuf,
    link: ControlLink,
    deploy: DeploySettings,
) -> anyhow::Result<EngineConfig> {
    Ok(EngineConfig {
        inventory: Some(inventory),
        keep_fleet: true,
        scan: ScanConfig {
            method: MethodChoice::Tcp,
            ports: vec![SSH_PORT],
            ssh_banner: false,
            ..ScanConfig::default()
        },
        max_in_flight: 256,
        ssh: SshSettings {
            known_hosts: Some(sandbox.known_hosts().to_owned()),
            ssh_config: Some(write_ssh_config(sandbox, console)?),
            policy: HostKeyPolicy::Strict,
            flags: ConnectFlags {
                user: Some(sandbox.user().to_string()),
                port: Some(SSH_PORT),
                identities: vec![sandbox.client_key().to_owned()],
                connect_timeout: Some(Duration::from_secs(3)),
                jump: None,
            },
            concurrency: 16,
            timeout: Duration::from_secs(30),
        },
        control: Some(link),
        poll: Some(PollSettings {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(3),
            concurrency: 64,
            max_backoff: Duration::from_secs(5),
            registry_interval: Duration::from_secs(2),
            agent_listen: agent_listen(),
            ..PollSettings::default()
        }),
        deploy,
        questions: Questions::Events,
    })
}

/// `Host *` settings: the sandbox's user and port, and only the demo key
/// (passed as `-i` is): never the operator's own keys or ssh-agent.
fn write_ssh_config(sandbox: &Sandbox, dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("ssh_config");
    let text = format!(
        "# fleetctl demo: the sandbox's hosts only.\nHost *\n    User {}\n    Port {SSH_PORT}\n    \
         IdentitiesOnly yes\n    ConnectTimeout 3\n",
        sandbox.user(),
    );
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// A stripped copy of this binary in `dir` when this one is a large debug
/// build and `strip` is at hand; `None` (push the agent-only build beside
/// this binary, else this binary) otherwise.
async fn slim_binary(dir: &Path) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    if exe
        .with_file_name(crate::deploy::files::AGENT_BINARY_NAME)
        .is_file()
    {
        return None;
    }
    let size = std::fs::metadata(&exe).ok()?.len();
    if size <= STRIP_ABOVE {
        return None;
    }
    let out = dir.join("fleetctl-agent-stripped");
    let status = tokio::process::Command::new("strip")
        .arg("-o")
        .arg(&out)
        .arg(&exe)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await;
    if status.is_ok_and(|s| s.success()) {
        tracing::info!(size, "pushing a stripped copy of this debug build");
        Some(out)
    } else {
        tracing::warn!(
            size,
            "this is a debug build and `strip` (binutils) is not available: each host gets all of it"
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_fixed_by_default_and_by_seed() {
        let default = Roles::pick(12, None);
        assert_eq!(
            (default.silent, default.rejects_key, default.cut_off),
            (2, 4, 6)
        );
        let small = Roles::pick(4, None);
        assert_eq!((small.silent, small.rejects_key, small.cut_off), (1, 2, 3));
        for hosts in [4, 12, 200] {
            for seed in 0..50 {
                let r = Roles::pick(hosts, Some(seed));
                assert_eq!(r, Roles::pick(hosts, Some(seed)), "same seed, same roles");
                let all = [r.silent, r.rejects_key, r.cut_off];
                assert!(all.iter().all(|&i| i < hosts));
                assert!(all[0] != all[1] && all[1] != all[2] && all[0] != all[2]);
            }
        }
        assert_ne!(Roles::pick(200, Some(1)), Roles::pick(200, Some(2)));
    }
}
