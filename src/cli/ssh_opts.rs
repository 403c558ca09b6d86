//! SSH options shared by `fleetctl fingerprint` and `fleetctl scan --ssh`:
//! flags as ssh(1) spells them, resolved against `~/.ssh/config` into
//! targets and one connector for the whole job.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::BadInput;
use crate::config::parse_duration;
use crate::ssh::config::{SshConfig, parse_jumps};
use crate::ssh::target::default_ssh_config;
use crate::ssh::{ConnectFlags, Connector, HostKeyPolicy, LocalUser, SshTarget, TerminalPrompt};

/// Sized for real fleets: enough to hide network latency, few enough for
/// sshd's MaxStartups and the operator's file descriptors.
const DEFAULT_CONCURRENCY: u16 = 32;

/// How to reach hosts, as ssh(1) spells it where it can.
#[derive(Debug, Args)]
pub struct SshArgs {
    /// Log in as this user [default: ~/.ssh/config, else the local user].
    #[arg(short = 'l', long)]
    user: Option<String>,
    /// Identity file, tried before the config's and the defaults (repeatable).
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    identities: Vec<PathBuf>,
    /// Jump host(s): [user@]host[:port][,...] [default: ProxyJump from ~/.ssh/config].
    #[arg(short = 'J', long = "jump", value_name = "HOST")]
    jump: Option<String>,
    /// Per-connection timeout [default: ConnectTimeout from ~/.ssh/config, else 10s].
    #[arg(long, value_parser = parse_duration)]
    connect_timeout: Option<Duration>,
    /// The user known_hosts file: host keys are checked in it and learned
    /// into it, and checked in the global files too [default: as ssh_config
    /// says (UserKnownHostsFile, GlobalKnownHostsFile), else
    /// ~/.ssh/known_hosts, ~/.ssh/known_hosts2, /etc/ssh/ssh_known_hosts,
    /// /etc/ssh/ssh_known_hosts2].
    #[arg(long, value_name = "FILE")]
    known_hosts: Option<PathBuf>,
    /// Unknown host keys: refuse (strict), learn them (accept-new), or ask on the
    /// terminal (ask). A changed key is always refused.
    #[arg(long, value_enum, default_value_t = HostKeyPolicy::Strict)]
    host_key_policy: HostKeyPolicy,
    /// ssh_config file [default: ~/.ssh/config].
    #[arg(long, value_name = "FILE")]
    ssh_config: Option<PathBuf>,
    /// Hosts fingerprinted at once.
    // `deploy` and `undeploy` give it their own help (`mut_arg`).
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
}

/// What a job needs to reach hosts: resolved once, shared by every host.
pub struct SshSetup {
    config: SshConfig,
    local: LocalUser,
    flags: ConnectFlags,
    pub connector: Arc<Connector>,
    pub concurrency: usize,
}

impl SshArgs {
    /// Whether any option was set (scan refuses them without `--ssh`).
    #[must_use]
    pub fn any_given(&self) -> bool {
        self.user.is_some()
            || !self.identities.is_empty()
            || self.jump.is_some()
            || self.connect_timeout.is_some()
            || self.known_hosts.is_some()
            || self.host_key_policy != HostKeyPolicy::default()
            || self.ssh_config.is_some()
            || self.concurrency != DEFAULT_CONCURRENCY
    }

    /// Reads the ssh_config and known_hosts files; `port` overrides the
    /// config's Port for every host (scan connects where it found SSH).
    pub fn setup(&self, port: Option<u16>) -> anyhow::Result<SshSetup> {
        // A bad -J is the operator's mistake, said before any host is tried.
        if let Some(spec) = &self.jump {
            parse_jumps(spec).map_err(|e| BadInput::wrap(anyhow::anyhow!("-J {spec}: {e}")))?;
        }
        let local = LocalUser::current();
        let config_path = self
            .ssh_config
            .clone()
            .unwrap_or_else(|| default_ssh_config(&local));
        let config = SshConfig::load(&config_path).map_err(BadInput::wrap)?;
        for warning in &config.warnings {
            eprintln!("note: {}", crate::model::text::escape(warning));
        }
        let prompt = Arc::new(TerminalPrompt);
        let connector = match &self.known_hosts {
            Some(file) => Connector::new(file, self.host_key_policy, prompt)
                .context("cannot read --known-hosts")?,
            None => Connector::with_target_files(self.host_key_policy, prompt),
        };
        Ok(SshSetup {
            config,
            local,
            flags: ConnectFlags {
                user: self.user.clone(),
                port,
                identities: self.identities.clone(),
                connect_timeout: self.connect_timeout,
                jump: self.jump.clone(),
            },
            connector: Arc::new(connector),
            concurrency: usize::from(self.concurrency),
        })
    }
}

impl SshSetup {
    /// Resolves `host` (a name, address or config alias, optionally `user@`).
    pub fn target(&self, host: &str) -> anyhow::Result<SshTarget> {
        SshTarget::resolve(host, &self.flags, &self.config, &self.local)
            .map_err(|e| BadInput::wrap(anyhow::anyhow!(e)))
    }
}
