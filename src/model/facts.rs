//! What a host is, as learned by fingerprinting it over SSH.
//!
//! Every fact is optional: a minimal host (busybox, no systemd, no `ip`)
//! cannot answer every question, and a fact it could not answer is absent
//! rather than guessed, so the console can tell "unknown" from a real value.

use serde::{Deserialize, Serialize};

/// The facts gathered from one host. Absent fields were not reported.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HostFacts {
    /// Short host name (`hostname`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Fully qualified name (`hostname -f`), when the host knows one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
    /// `ID` from os-release, e.g. `debian`, `alpine`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_id: Option<String>,
    /// `NAME` from os-release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_name: Option<String>,
    /// `VERSION_ID` from os-release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    /// `PRETTY_NAME` from os-release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_pretty: Option<String>,
    /// Kernel name, release and version (`uname -srv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// Machine hardware name (`uname -m`), e.g. `x86_64`, `aarch64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// CPU model as /proc/cpuinfo names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
    /// CPUs available to the login session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_count: Option<u32>,
    /// `MemTotal` from /proc/meminfo, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_total_bytes: Option<u64>,
    /// `SwapTotal` from /proc/meminfo, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_total_bytes: Option<u64>,
    /// Size of the file system holding `/`, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_fs_size_bytes: Option<u64>,
    /// Space used on the file system holding `/`, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_fs_used_bytes: Option<u64>,
    /// Seconds since boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_secs: Option<u64>,
    /// Changes at every boot: tells a reboot from a long outage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// /etc/machine-id: tells the same machine behind a new address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    /// `kvm`, `docker`, `lxc`, `wsl`, `vm` (some hypervisor), `none`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtualization: Option<String>,
    /// `systemd`, or the command name of PID 1 (`init`, `busybox`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_system: Option<String>,
    /// The user the session logged in as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Whether that user is root (uid 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_root: Option<bool>,
    /// Whether `sudo -n true` works, i.e. root is reachable without a password
    /// (always true for root itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudo_nopasswd: Option<bool>,
    /// The host's primary non-loopback addresses, as the host reports them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

/// Why fingerprinting (or any SSH job) could not reach a host, in the
/// classes an operator acts on. Serialised kebab-case (`auth-failed`);
/// [`FailureKind::as_str`] is the form tables show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    Unreachable,
    Timeout,
    AuthFailed,
    HostKeyUnknown,
    HostKeyChanged,
    HostKeyRevoked,
    CommandFailed,
    Protocol,
}

impl FailureKind {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Unreachable => "unreachable",
            FailureKind::Timeout => "timeout",
            FailureKind::AuthFailed => "auth failed",
            FailureKind::HostKeyUnknown => "host key unknown",
            FailureKind::HostKeyChanged => "host key CHANGED",
            FailureKind::HostKeyRevoked => "host key REVOKED",
            FailureKind::CommandFailed => "command failed",
            FailureKind::Protocol => "ssh error",
        }
    }
}

/// The outcome of fingerprinting one host: its facts, or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The host as the operator named it.
    pub host: String,
    /// What was connected to.
    pub address: String,
    pub port: u16,
    /// `SHA256:...` of the host key seen (and verified) in the handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<HostFacts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Unix seconds when the facts were gathered (or the attempt ended).
    pub gathered_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_facts_are_left_out_of_json() {
        let facts = HostFacts {
            hostname: Some("db1".into()),
            cpu_count: Some(4),
            ..HostFacts::default()
        };
        let json = serde_json::to_string(&facts).unwrap();
        assert_eq!(json, r#"{"hostname":"db1","cpu_count":4}"#);
    }

    #[test]
    fn failure_classes_serialise_kebab_case() {
        let json = serde_json::to_string(&FailureKind::HostKeyChanged).unwrap();
        assert_eq!(json, r#""host-key-changed""#);
        assert_eq!(
            serde_json::from_str::<FailureKind>(&json).unwrap(),
            FailureKind::HostKeyChanged
        );
    }

    #[test]
    fn round_trips_through_json() {
        let facts = HostFacts {
            os_id: Some("alpine".into()),
            is_root: Some(false),
            mem_total_bytes: Some(8 << 30),
            addresses: vec!["10.0.0.5".into(), "fd00::5".into()],
            ..HostFacts::default()
        };
        let json = serde_json::to_string(&facts).unwrap();
        assert_eq!(serde_json::from_str::<HostFacts>(&json).unwrap(), facts);
        assert_eq!(
            serde_json::from_str::<HostFacts>("{}").unwrap(),
            HostFacts::default()
        );
    }
}
