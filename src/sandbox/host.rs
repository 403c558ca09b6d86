//! One sandbox host on disk: its directory, and the shims that give it a
//! name of its own. Everything else a command sees (CPU, memory, kernel, OS)
//! is the real machine's, and commands run for real as the invoking user.
//! `sudo` is refused: a demo must never escalate on the operator's machine
//! (nor fill its auth log with failed attempts). `systemctl`, `loginctl` and
//! `journalctl` are refused too: a sandbox host has no service manager, so
//! nothing run on it can install a unit on the real machine.
//!
//! ```text
//! <root>/hosts/demo-07/
//!     home/   HOME and working directory of commands; SFTP is held here
//!     bin/    first in PATH: `hostname`, `sudo`, `systemctl`, ...
//!     tmp/    TMPDIR
//! ```

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use super::SandboxError;
use super::keys::write_file;

/// The domain of the hosts' fully qualified names (`.test` is reserved, RFC 2606).
pub const DOMAIN: &str = "sandbox.test";

/// What a host's commands run with.
#[derive(Debug)]
pub(super) struct HostEnv {
    pub name: String,
    pub root: PathBuf,
    pub home: PathBuf,
    pub bin: PathBuf,
    pub tmp: PathBuf,
    pub user: String,
}

impl HostEnv {
    /// Makes the host's directories and shims under `root`.
    pub(super) fn create(
        root: &Path,
        name: &str,
        addr: SocketAddr,
        user: &str,
    ) -> Result<Self, SandboxError> {
        let dir = root.join("hosts").join(name);
        let env = Self {
            name: name.to_string(),
            root: root.to_owned(),
            home: dir.join("home"),
            bin: dir.join("bin"),
            tmp: dir.join("tmp"),
            user: user.to_string(),
        };
        for d in [&dir, &env.home, &env.bin, &env.tmp] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(d)
                .map_err(|source| SandboxError::Io {
                    what: format!("creating {}", d.display()),
                    source,
                })?;
        }
        write_file(
            &env.bin.join("hostname"),
            hostname_shim(name, addr).as_bytes(),
            0o755,
        )?;
        write_file(&env.bin.join("sudo"), sudo_shim(name).as_bytes(), 0o755)?;
        for manager in ["systemctl", "loginctl", "journalctl"] {
            write_file(
                &env.bin.join(manager),
                no_systemd_shim(name, manager).as_bytes(),
                0o755,
            )?;
        }
        Ok(env)
    }

    /// PATH for commands: the shims first, then the usual system directories.
    pub(super) fn path_var(&self) -> OsString {
        let mut path = self.bin.clone().into_os_string();
        path.push(":/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin");
        path
    }
}

/// A `hostname` that answers as the sandbox host would, and refuses to
/// rename it rather than rename the real machine.
fn hostname_shim(name: &str, addr: SocketAddr) -> String {
    let ip = addr.ip();
    format!(
        r#"#!/bin/sh
# fleetctl sandbox: the name of sandbox host {name}; all else is the real machine.
case "${{1:-}}" in
'' | -s | --short) echo {name} ;;
-f | --fqdn | --long | -A | --all-fqdns) echo {name}.{DOMAIN} ;;
-d | --domain) echo {DOMAIN} ;;
-i | -I | --ip-address | --all-ip-addresses) echo {ip} ;;
*)
    echo "hostname: sandbox host {name} cannot be renamed" >&2
    exit 1
    ;;
esac
"#
    )
}

/// A `sudo` that always refuses, as for a user with no sudo rights.
fn sudo_shim(name: &str) -> String {
    format!(
        r#"#!/bin/sh
# fleetctl sandbox: no root on sandbox host {name}; the machine is the operator's own.
echo "sudo: sandbox host {name} grants no root (it runs on the operator's own machine)" >&2
exit 1
"#
    )
}

/// A service manager command that always refuses: the real one manages the
/// operator's machine.
fn no_systemd_shim(name: &str, command: &str) -> String {
    format!(
        r#"#!/bin/sh
# fleetctl sandbox: sandbox host {name} has no service manager; the machine's is the operator's own.
echo "{command}: sandbox host {name} has no systemd (it runs on the operator's own machine)" >&2
exit 1
"#
    )
}
