//! SSH options shared by `fleetctl fingerprint`, `scan --ssh`, `deploy`
//! and `undeploy`: flags as ssh(1) spells them, over the config's `[ssh]`
//! (the engine lays them over it, for each job the same way).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::config::parse_duration;
use crate::engine::SshRequest;
use crate::ssh::HostKeyPolicy;

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
    /// terminal (ask). A changed key is always refused [default: the config's
    /// ssh.host_key_policy, else strict].
    #[arg(long, value_enum)]
    host_key_policy: Option<HostKeyPolicy>,
    /// ssh_config file [default: ~/.ssh/config].
    #[arg(long, value_name = "FILE")]
    ssh_config: Option<PathBuf>,
    /// Hosts fingerprinted at once [default: the config's ssh.concurrency, 32].
    // `deploy` and `undeploy` give it their own help (`mut_arg`).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: Option<u16>,
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
            || self.host_key_policy.is_some()
            || self.ssh_config.is_some()
            || self.concurrency.is_some()
    }

    /// The flags as a job's request; `port` for every host (scan connects
    /// where it found SSH).
    #[must_use]
    pub fn request(&self, port: Option<u16>) -> SshRequest {
        SshRequest {
            user: self.user.clone(),
            identities: self.identities.clone(),
            jump: self.jump.clone(),
            connect_timeout: self.connect_timeout,
            known_hosts: self.known_hosts.clone(),
            policy: self.host_key_policy,
            ssh_config: self.ssh_config.clone(),
            port,
            concurrency: self.concurrency.map(usize::from),
            timeout: None,
        }
    }
}
