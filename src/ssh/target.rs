//! Where and as whom to connect: command-line flags over `~/.ssh/config`
//! over OpenSSH's built-in defaults.

use std::path::PathBuf;
use std::time::Duration;

use super::config::{Jump, SshConfig, expand_path, parse_jumps};
use super::host_keys::KnownHostsFiles;

/// What the operator said on the command line (or the console's settings).
#[derive(Debug, Clone, Default)]
pub struct ConnectFlags {
    pub user: Option<String>,
    pub port: Option<u16>,
    /// `-i`: tried before any IdentityFile from the config.
    pub identities: Vec<PathBuf>,
    pub connect_timeout: Option<Duration>,
    /// `-J`: overrides ProxyJump from the config.
    pub jump: Option<String>,
}

/// The local facts OpenSSH's defaults and `%` tokens need.
#[derive(Debug, Clone)]
pub struct LocalUser {
    pub home: PathBuf,
    pub name: String,
}

impl LocalUser {
    #[must_use]
    pub fn current() -> Self {
        let home = directories::BaseDirs::new()
            .map_or_else(|| PathBuf::from("/"), |b| b.home_dir().to_owned());
        let name = std::env::var("USER")
            .ok()
            .or_else(|| {
                nix::unistd::User::from_uid(nix::unistd::getuid())
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .unwrap_or_else(|| "root".into());
        Self { home, name }
    }
}

/// A fully resolved destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// The name as the operator typed it (a config alias, a name, an address).
    pub alias: String,
    /// What to connect to; also the name looked up in known_hosts.
    pub hostname: String,
    pub port: u16,
    pub user: String,
    pub identities: Vec<PathBuf>,
    /// Only the identities listed, never other agent keys.
    pub identities_only: bool,
    pub connect_timeout: Duration,
    pub jump: Option<Box<SshTarget>>,
    /// Where its host key is checked and learned (ssh_config's
    /// UserKnownHostsFile, GlobalKnownHostsFile, HashKnownHosts).
    pub known_hosts: KnownHostsFiles,
    /// HostKeyAlias: the name its key is listed under instead of
    /// `hostname` (and port).
    pub host_key_alias: Option<String>,
}

const DEFAULT_IDENTITIES: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl SshTarget {
    /// Resolves `host` (as typed, optionally `user@host`).
    pub fn resolve(
        host: &str,
        flags: &ConnectFlags,
        config: &SshConfig,
        local: &LocalUser,
    ) -> Result<Self, String> {
        let (user_in_name, alias) = match host.rsplit_once('@') {
            Some((user, alias)) => (Some(user.to_string()), alias),
            None => (None, host),
        };
        let jump = match &flags.jump {
            Some(spec) => Some(parse_jumps(spec)?),
            None => None,
        };
        Self::resolve_inner(alias, user_in_name, flags, jump, config, local, 0)
    }

    fn resolve_inner(
        alias: &str,
        user_in_name: Option<String>,
        flags: &ConnectFlags,
        jump_override: Option<Vec<Jump>>,
        config: &SshConfig,
        local: &LocalUser,
        depth: usize,
    ) -> Result<Self, String> {
        if depth > 4 {
            return Err(format!(
                "ProxyJump chain through {alias} is too long (a loop?)"
            ));
        }
        let opts = config.options_for(alias);
        let hostname = opts.hostname.clone().unwrap_or_else(|| alias.to_string());
        let port = flags.port.or(opts.port).unwrap_or(22);
        let user = user_in_name
            .or_else(|| flags.user.clone())
            .or(opts.user.clone())
            .unwrap_or_else(|| local.name.clone());
        let expand = |raw: &str| expand_path(raw, &local.home, &local.name, &hostname, &user, port);
        let mut identities: Vec<PathBuf> = flags.identities.clone();
        identities.extend(opts.identity_files.iter().map(|raw| expand(raw)));
        if identities.is_empty() {
            identities = DEFAULT_IDENTITIES
                .iter()
                .map(|name| local.home.join(".ssh").join(name))
                .collect();
        }
        let jumps = jump_override
            .or(opts.proxy_jump.clone())
            .unwrap_or_default();
        // The last hop is the one nearest the target; it is reached through the ones before it.
        let jump = match jumps.split_last() {
            None => None,
            Some((last, before)) => {
                let hop_flags = ConnectFlags {
                    port: last.port,
                    connect_timeout: flags.connect_timeout,
                    ..ConnectFlags::default()
                };
                let before = (!before.is_empty()).then(|| before.to_vec());
                let hop = Self::resolve_inner(
                    &last.host,
                    last.user.clone(),
                    &hop_flags,
                    before.or(Some(Vec::new())),
                    config,
                    local,
                    depth + 1,
                )?;
                Some(Box::new(hop))
            }
        };
        let mut known_hosts = KnownHostsFiles::openssh_defaults(&local.home);
        if let Some(files) = &opts.user_known_hosts {
            known_hosts.user = files.iter().map(|raw| expand(raw)).collect();
        }
        if let Some(files) = &opts.global_known_hosts {
            known_hosts.global = files.iter().map(|raw| expand(raw)).collect();
        }
        known_hosts.hash = opts.hash_known_hosts.unwrap_or(false);
        Ok(Self {
            alias: alias.to_string(),
            hostname,
            port,
            user,
            identities,
            identities_only: opts.identities_only.unwrap_or(false),
            connect_timeout: flags
                .connect_timeout
                .or(opts.connect_timeout)
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            jump,
            known_hosts,
            host_key_alias: opts.host_key_alias,
        })
    }

    /// The name its host key is listed under in known_hosts: the
    /// HostKeyAlias as written, else `host` or `[host]:port`.
    #[must_use]
    pub fn known_hosts_name(&self) -> String {
        self.host_key_alias
            .clone()
            .unwrap_or_else(|| super::known_hosts::host_name(&self.hostname, self.port))
    }

    /// `user@host:port`, for messages.
    #[must_use]
    pub fn display(&self) -> String {
        if self.alias == self.hostname && self.port == 22 {
            self.alias.clone()
        } else {
            format!("{} ({}:{})", self.alias, self.hostname, self.port)
        }
    }
}

/// `~/.ssh/config` of `local`.
#[must_use]
pub fn default_ssh_config(local: &LocalUser) -> PathBuf {
    local.home.join(".ssh").join("config")
}

/// `~/.ssh/known_hosts` of `local`.
#[must_use]
pub fn default_known_hosts(local: &LocalUser) -> PathBuf {
    local.home.join(".ssh").join("known_hosts")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn local() -> LocalUser {
        LocalUser {
            home: PathBuf::from("/home/op"),
            name: "op".into(),
        }
    }

    fn config(text: &str) -> SshConfig {
        SshConfig::parse(text, Path::new("config")).unwrap()
    }

    #[test]
    fn flags_beat_config_which_beats_defaults() {
        let cfg = config(
            "Host db\n HostName 127.0.0.20\n User admin\n Port 2200\n IdentityFile ~/.ssh/db_key\n",
        );
        let plain = SshTarget::resolve("db", &ConnectFlags::default(), &cfg, &local()).unwrap();
        assert_eq!(
            (plain.hostname.as_str(), plain.port, plain.user.as_str()),
            ("127.0.0.20", 2200, "admin")
        );
        assert_eq!(plain.identities, [PathBuf::from("/home/op/.ssh/db_key")]);

        let flags = ConnectFlags {
            user: Some("root".into()),
            port: Some(22),
            identities: vec!["/keys/k".into()],
            ..ConnectFlags::default()
        };
        let flagged = SshTarget::resolve("db", &flags, &cfg, &local()).unwrap();
        assert_eq!((flagged.port, flagged.user.as_str()), (22, "root"));
        assert_eq!(
            flagged.identities,
            [
                PathBuf::from("/keys/k"),
                PathBuf::from("/home/op/.ssh/db_key")
            ]
        );

        let at = SshTarget::resolve("ops@db", &flags, &cfg, &local()).unwrap();
        assert_eq!(at.user, "ops", "user@host wins over -l, as in ssh");

        let bare =
            SshTarget::resolve("10.1.1.1", &ConnectFlags::default(), &cfg, &local()).unwrap();
        assert_eq!(bare.user, "op");
        assert_eq!(bare.identities.len(), 3, "OpenSSH's default identity files");
        assert_eq!(bare.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
    }

    #[test]
    fn host_keys_are_looked_up_as_openssh_does() {
        let plain = SshTarget::resolve("10.1.1.1", &ConnectFlags::default(), &config(""), &local())
            .unwrap();
        assert_eq!(
            plain.known_hosts,
            KnownHostsFiles::openssh_defaults(Path::new("/home/op"))
        );
        assert!(
            plain
                .known_hosts
                .global
                .contains(&PathBuf::from("/etc/ssh/ssh_known_hosts")),
            "the system file is read by default"
        );
        assert_eq!(plain.known_hosts_name(), "10.1.1.1");

        let cfg = config(
            "Host db
 HostName 127.0.0.20
 Port 2200
 HostKeyAlias db-cluster
             UserKnownHostsFile ~/.ssh/fleet_%h
 GlobalKnownHostsFile /srv/pinned none-such
             HashKnownHosts yes
",
        );
        let db = SshTarget::resolve("db", &ConnectFlags::default(), &cfg, &local()).unwrap();
        assert_eq!(
            db.known_hosts_name(),
            "db-cluster",
            "no [ ]:port around an alias"
        );
        assert_eq!(
            db.known_hosts.user,
            [PathBuf::from("/home/op/.ssh/fleet_127.0.0.20")]
        );
        assert_eq!(
            db.known_hosts.global,
            [PathBuf::from("/srv/pinned"), PathBuf::from("none-such")]
        );
        assert!(db.known_hosts.hash);
        let other = SshTarget::resolve("other", &ConnectFlags::default(), &cfg, &local()).unwrap();
        assert_eq!(
            SshTarget {
                port: 2222,
                ..other
            }
            .known_hosts_name(),
            "[other]:2222"
        );
    }

    #[test]
    fn proxy_jump_resolves_each_hop_through_the_config() {
        let cfg =
            config("Host inner\n ProxyJump gw\nHost gw\n HostName 127.0.0.30\n User jumper\n");
        let target = SshTarget::resolve("inner", &ConnectFlags::default(), &cfg, &local()).unwrap();
        let hop = target.jump.unwrap();
        assert_eq!(
            (hop.hostname.as_str(), hop.user.as_str()),
            ("127.0.0.30", "jumper")
        );
        assert!(hop.jump.is_none());

        let flags = ConnectFlags {
            jump: Some("a@127.0.0.31:2201,127.0.0.32".into()),
            ..ConnectFlags::default()
        };
        let chained = SshTarget::resolve("inner", &flags, &cfg, &local()).unwrap();
        let near = chained.jump.unwrap();
        assert_eq!(near.hostname, "127.0.0.32");
        let far = near.jump.unwrap();
        assert_eq!(
            (far.hostname.as_str(), far.port, far.user.as_str()),
            ("127.0.0.31", 2201, "a")
        );
    }
}
