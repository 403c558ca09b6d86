//! A deploy target on this machine: sshd in a mount and UTS namespace of its
//! own, with tmpfs over the system install and state dirs, so several root
//! installs stay apart, nothing touches the real /var, and each host has its
//! own hostname (the control plane's registry and the agent report it).

use std::path::Path;
use std::process::{Command, Output};

use super::{Sshd, public_key, require_tool, stderr, stdout};

/// The port every namespaced sshd listens on (each on its own address).
pub const HOST_SSH_PORT: u16 = 2222;

pub struct IsolatedHost {
    pub name: String,
    pub ip: String,
    pub sshd: Sshd,
}

impl IsolatedHost {
    /// Starts sshd for `name` on `ip`, letting `client_key`'s holder log in.
    pub fn start(name: &str, ip: &str, client_key: &Path) -> Self {
        Self::start_with_sftp(name, ip, client_key, true)
    }

    /// As [`IsolatedHost::start`], with an sshd that runs no SFTP server.
    pub fn start_without_sftp(name: &str, ip: &str, client_key: &Path) -> Self {
        Self::start_with_sftp(name, ip, client_key, false)
    }

    fn start_with_sftp(name: &str, ip: &str, client_key: &Path, sftp: bool) -> Self {
        require_tool("unshare");
        require_tool("nsenter");
        let setup = r#"mount -t tmpfs -o mode=755 tmpfs /usr/local/lib && \
mount -t tmpfs -o mode=755 tmpfs /var/lib && hostname "$1" && shift && exec "$@""#;
        let wrap = |cmd: Command| {
            let mut wrapped = Command::new("unshare");
            wrapped
                .args(["--mount", "--uts", "--propagation", "private", "--"])
                .args(["sh", "-c", setup, "sh", name])
                .arg(cmd.get_program())
                .args(cmd.get_args());
            wrapped
        };
        let sshd = if sftp {
            Sshd::start_wrapped(ip, HOST_SSH_PORT, "", wrap)
        } else {
            Sshd::start_wrapped_without_sftp(ip, HOST_SSH_PORT, wrap)
        };
        sshd.authorize(&public_key(client_key));
        Self {
            name: name.to_string(),
            ip: ip.to_string(),
            sshd,
        }
    }

    /// Runs `script` inside this host's namespaces.
    pub fn sh(&self, script: &str) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.sshd.pid().to_string(), "-m", "-u", "--"])
            .args(["sh", "-c", script])
            .output()
            .unwrap()
    }

    /// Runs `script` inside this host's namespaces; it must succeed.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "{}: {script}: {}",
            self.name,
            stderr(&out)
        );
        stdout(&out)
    }

    /// Files deploy may have left: none once undeployed or rolled back.
    pub fn leftovers(&self) -> String {
        self.sh_ok("find /usr/local/lib/fleetctl /var/lib/fleetctl 2>/dev/null; true")
    }

    /// The pid the installed agent wrote, if it runs.
    pub fn agent_pid(&self) -> Option<u32> {
        let out = self.sh("cat /var/lib/fleetctl/agent.pid");
        out.status
            .success()
            .then(|| stdout(&out).trim().parse().unwrap())
    }
}

impl Drop for IsolatedHost {
    fn drop(&mut self) {
        // A failed test must not leave agents holding the port.
        let _ = self.sh("kill $(cat /var/lib/fleetctl/agent.pid) 2>/dev/null");
    }
}
