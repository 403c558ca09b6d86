//! Where the agent lives on a host, and the shell snippets that act on it.
//!
//! ```text
//!  root                                   other users
//!  /usr/local/lib/fleetctl/               ~/.local/lib/fleetctl/
//!    fleetctl-agent-<sha256[..16]>          (same names)
//!  /var/lib/fleetctl/      (0700)         ~/.local/state/fleetctl/
//!    agent.toml ca.pem join.token (0600)
//!    current   (sha256 of the binary in use)
//!    agent.pid agent.log  data/  (the agent's own key, certificate, identity)
//!  /etc/systemd/system/                   ~/.config/systemd/user/
//!    fleetctl-agent.service   (only where systemd runs)
//! ```
//! Binaries are named by content, so a new build never overwrites the file a
//! running agent executes: replacing is "start the other file".

use std::fmt::Write as _;

/// The systemd unit's name.
pub const UNIT: &str = "fleetctl-agent.service";
const BINARY_PREFIX: &str = "fleetctl-agent-";

/// Where deploy installs: system-wide, or under the login user's home.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InstallScope {
    /// System-wide when the login user is root, per user otherwise.
    #[default]
    Auto,
    /// Under the login user's home (a user unit where the user's systemd
    /// runs), even as root: never a system path, never the system manager.
    User,
    /// System-wide; the login user must be root.
    System,
}

impl InstallScope {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            InstallScope::Auto => "auto",
            InstallScope::User => "user",
            InstallScope::System => "system",
        }
    }

    /// The layout for a login user (`uid`, `home`) and whether systemd
    /// manages it: the system manager for a system-wide install, the user's
    /// own manager for a per-user one. `Err` says why the host cannot take
    /// an install of this scope.
    pub fn layout(
        self,
        uid: Option<&str>,
        home: Option<&str>,
        systemd_system: bool,
        systemd_user: bool,
    ) -> Result<(Layout, bool), String> {
        let is_root = uid == Some("0");
        let root = match self {
            InstallScope::Auto => is_root,
            InstallScope::User => false,
            InstallScope::System if is_root => true,
            InstallScope::System => {
                return Err(format!(
                    "a system-wide install needs root, but the login user's uid is {}; \
                     log in as root, or use --scope user",
                    uid.unwrap_or("unknown")
                ));
            }
        };
        let home = home.unwrap_or("");
        if !root && home.is_empty() {
            return Err("the login user has no home directory to install into".into());
        }
        let systemd = if root { systemd_system } else { systemd_user };
        Ok((Layout::new(root, home), systemd))
    }
}

/// The install layout for one login user on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub root: bool,
    /// Where binaries go.
    pub lib_dir: String,
    /// Config, secrets, pidfile, log and the agent's data.
    pub state_dir: String,
    /// The directory the systemd unit is written to.
    pub unit_dir: String,
}

impl Layout {
    /// System-wide for root, under the home directory otherwise.
    #[must_use]
    pub fn new(root: bool, home: &str) -> Self {
        if root {
            Self {
                root,
                lib_dir: "/usr/local/lib/fleetctl".into(),
                state_dir: "/var/lib/fleetctl".into(),
                unit_dir: "/etc/systemd/system".into(),
            }
        } else {
            let home = home.trim_end_matches('/');
            Self {
                root,
                lib_dir: format!("{home}/.local/lib/fleetctl"),
                state_dir: format!("{home}/.local/state/fleetctl"),
                unit_dir: format!("{home}/.config/systemd/user"),
            }
        }
    }

    /// The binary of the build whose sha256 is `sha256`.
    #[must_use]
    pub fn binary(&self, sha256: &str) -> String {
        format!("{}/{BINARY_PREFIX}{}", self.lib_dir, short(sha256))
    }

    /// Where an upload lands before it is verified.
    #[must_use]
    pub fn upload_temp(&self, sha256: &str) -> String {
        format!("{}/.{BINARY_PREFIX}{}.part", self.lib_dir, short(sha256))
    }

    #[must_use]
    pub fn state(&self, name: &str) -> String {
        format!("{}/{name}", self.state_dir)
    }

    #[must_use]
    pub fn config(&self) -> String {
        self.state("agent.toml")
    }

    #[must_use]
    pub fn ca(&self) -> String {
        self.state("ca.pem")
    }

    #[must_use]
    pub fn join_token(&self) -> String {
        self.state("join.token")
    }

    #[must_use]
    pub fn data_dir(&self) -> String {
        self.state("data")
    }

    #[must_use]
    pub fn pidfile(&self) -> String {
        self.state("agent.pid")
    }

    #[must_use]
    pub fn log(&self) -> String {
        self.state("agent.log")
    }

    /// Holds the sha256 of the build in use.
    #[must_use]
    pub fn current(&self) -> String {
        self.state("current")
    }

    #[must_use]
    pub fn unit_file(&self) -> String {
        format!("{}/{UNIT}", self.unit_dir)
    }

    /// `systemctl`, with `--user` for a per-user install.
    #[must_use]
    pub fn systemctl(&self) -> &'static str {
        if self.root {
            "systemctl"
        } else {
            "systemctl --user"
        }
    }
}

/// The first 16 hex digits name a build in file names.
#[must_use]
pub fn short(sha256: &str) -> &str {
    sha256.get(..16).unwrap_or(sha256)
}

/// Quotes `s` as one word for a POSIX shell.
#[must_use]
pub fn sh_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str(r"'\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Sets shell variables `NAME='value'` for a script, one per line.
#[must_use]
pub fn sh_vars(vars: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (name, value) in vars {
        // A path under "$HOME" (a layout made before the home is known)
        // leaves the variable to the shell.
        let quoted = match value.strip_prefix("$HOME") {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                format!(
                    "\"$HOME\"{}",
                    if rest.is_empty() {
                        String::new()
                    } else {
                        sh_quote(rest)
                    }
                )
            }
            _ => sh_quote(value),
        };
        let _ = writeln!(out, "{name}={quoted}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_installs_system_wide_and_users_under_home() {
        let root = Layout::new(true, "/root");
        assert_eq!(
            root.binary("0123456789abcdef0123"),
            "/usr/local/lib/fleetctl/fleetctl-agent-0123456789abcdef"
        );
        assert_eq!(root.config(), "/var/lib/fleetctl/agent.toml");
        assert_eq!(
            root.unit_file(),
            "/etc/systemd/system/fleetctl-agent.service"
        );
        assert_eq!(root.systemctl(), "systemctl");
        let user = Layout::new(false, "/home/ann/");
        assert_eq!(user.lib_dir, "/home/ann/.local/lib/fleetctl");
        assert_eq!(
            user.join_token(),
            "/home/ann/.local/state/fleetctl/join.token"
        );
        assert_eq!(
            user.unit_file(),
            "/home/ann/.config/systemd/user/fleetctl-agent.service"
        );
        assert_eq!(user.systemctl(), "systemctl --user");
    }

    #[test]
    fn scope_picks_the_layout_and_the_service_manager() {
        let home = Some("/root");
        let (auto, systemd) = InstallScope::Auto
            .layout(Some("0"), home, true, true)
            .unwrap();
        assert!(auto.root && systemd);
        // As root, a user install stays in the home and off the system manager.
        let (user, systemd) = InstallScope::User
            .layout(Some("0"), home, true, false)
            .unwrap();
        assert_eq!(user.state_dir, "/root/.local/state/fleetctl");
        assert!(!user.root && !systemd);
        let err = InstallScope::System
            .layout(Some("1000"), Some("/home/ann"), true, true)
            .unwrap_err();
        assert!(err.contains("needs root"), "{err}");
        let err = InstallScope::Auto
            .layout(Some("1000"), None, false, false)
            .unwrap_err();
        assert!(err.contains("no home directory"), "{err}");
    }

    #[test]
    fn quoting_survives_the_shell() {
        let nasty = "it's $HOME `id` \"x\"\n;rm";
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", sh_quote(nasty)))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), nasty);
    }
}
