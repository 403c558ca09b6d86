//! A command run across hosts: each host's result, and the results
//! grouped by identical output, outliers first, as `clush -b` and
//! `dshbak -c` show them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::FailureKind;
use super::hostlist;

/// Why a command could not run on a host. Serialised kebab-case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunFailure {
    Unreachable,
    /// Connecting and running took longer than the per-host timeout.
    Timeout,
    AuthFailed,
    HostKeyUnknown,
    HostKeyChanged,
    HostKeyRevoked,
    Protocol,
    /// `--sudo`, and sudo wants a password (runs use `sudo -n`).
    SudoPassword,
    /// `--sudo`, and the host has no sudo.
    NoSudo,
}

impl RunFailure {
    /// As tables and summaries say it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            RunFailure::Unreachable => "unreachable",
            RunFailure::Timeout => "timeout",
            RunFailure::AuthFailed => "auth failed",
            RunFailure::HostKeyUnknown => "host key unknown",
            RunFailure::HostKeyChanged => "host key CHANGED",
            RunFailure::HostKeyRevoked => "host key REVOKED",
            RunFailure::Protocol => "ssh error",
            RunFailure::SudoPassword => "sudo needs a password",
            RunFailure::NoSudo => "no sudo",
        }
    }
}

impl From<FailureKind> for RunFailure {
    fn from(kind: FailureKind) -> Self {
        match kind {
            FailureKind::Unreachable => Self::Unreachable,
            FailureKind::Timeout => Self::Timeout,
            FailureKind::AuthFailed => Self::AuthFailed,
            FailureKind::HostKeyUnknown => Self::HostKeyUnknown,
            FailureKind::HostKeyChanged => Self::HostKeyChanged,
            FailureKind::HostKeyRevoked => Self::HostKeyRevoked,
            FailureKind::CommandFailed | FailureKind::Protocol => Self::Protocol,
        }
    }
}

/// One host's run. Output is kept as received (lossy UTF-8); escape it
/// before it reaches a terminal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// The name the host was asked by.
    pub host: String,
    pub address: String,
    /// The command's exit status; none when it could not run (or was
    /// killed by a signal, or timed out).
    pub exit: Option<u32>,
    pub stdout: String,
    pub stderr: String,
    /// Output past `--max-output`, counted and dropped (bytes).
    #[serde(default)]
    pub dropped: u64,
    /// Seconds from the first connection attempt to the end.
    pub duration: f64,
    /// Why it could not run (or did not finish).
    pub error_class: Option<RunFailure>,
    /// The error in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RunResult {
    /// Ran and exited 0.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.error_class.is_none() && self.exit == Some(0)
    }
}

/// What makes two hosts' results the same.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupKey {
    /// It ran: identical stdout, stderr and exit status.
    Ran {
        exit: Option<u32>,
        stdout: String,
        stderr: String,
    },
    /// It did not run, for this reason (messages differ per host).
    Failed(RunFailure),
}

/// Hosts whose results are the same.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub key: GroupKey,
    /// Indices into the results grouped, in host order.
    pub members: Vec<usize>,
    /// The hosts, folded (`web[01-05,09]`).
    pub hosts: String,
}

impl Group {
    /// A one-word status for the group: `ok`, `exit 3`, `timeout`.
    #[must_use]
    pub fn status(&self) -> String {
        match &self.key {
            GroupKey::Ran { exit: Some(0), .. } => "ok".into(),
            GroupKey::Ran { exit: Some(c), .. } => format!("exit {c}"),
            GroupKey::Ran { exit: None, .. } => "no exit status".into(),
            GroupKey::Failed(f) => f.as_str().into(),
        }
    }
}

/// `results` grouped by identical (stdout, stderr, exit status), failures
/// by class; the groups with the fewest hosts first (the outliers), ties
/// in a fixed order (by key, which puts exit statuses before failures).
#[must_use]
pub fn group(results: &[RunResult]) -> Vec<Group> {
    let mut by_key: BTreeMap<GroupKey, Vec<usize>> = BTreeMap::new();
    for (i, r) in results.iter().enumerate() {
        let key = match r.error_class {
            Some(class) => GroupKey::Failed(class),
            None => GroupKey::Ran {
                exit: r.exit,
                stdout: r.stdout.clone(),
                stderr: r.stderr.clone(),
            },
        };
        by_key.entry(key).or_default().push(i);
    }
    let mut groups: Vec<Group> = by_key
        .into_iter()
        .map(|(key, members)| {
            let names: Vec<&str> = members.iter().map(|&i| results[i].host.as_str()).collect();
            Group {
                key,
                hosts: hostlist::fold(&names),
                members,
            }
        })
        .collect();
    // Stable: equal sizes keep the key order.
    groups.sort_by_key(|g| g.members.len());
    groups
}

/// The summary line: hosts ok, non-zero exits by code, failures by class.
/// `not_started`: hosts an interrupt kept from starting.
#[must_use]
pub fn summary(results: &[RunResult], not_started: usize) -> String {
    let ok = results.iter().filter(|r| r.ok()).count();
    let mut exits: BTreeMap<u32, usize> = BTreeMap::new();
    let mut failures: BTreeMap<RunFailure, usize> = BTreeMap::new();
    let mut no_status = 0;
    for r in results {
        match (r.error_class, r.exit) {
            (Some(class), _) => *failures.entry(class).or_default() += 1,
            (None, Some(0)) => {}
            (None, Some(code)) => *exits.entry(code).or_default() += 1,
            (None, None) => no_status += 1,
        }
    }
    let total = results.len() + not_started;
    let mut line = format!("{total} host{}: {ok} ok", if total == 1 { "" } else { "s" });
    for (code, n) in exits {
        let _ = write!(line, ", {n} exit {code}");
    }
    if no_status > 0 {
        let _ = write!(line, ", {no_status} no exit status");
    }
    for (class, n) in failures {
        let _ = write!(line, ", {n} {}", class.as_str());
    }
    if not_started > 0 {
        let _ = write!(line, ", {not_started} not started (interrupted)");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ran(host: &str, exit: u32, stdout: &str) -> RunResult {
        RunResult {
            host: host.into(),
            address: host.into(),
            exit: Some(exit),
            stdout: stdout.into(),
            stderr: String::new(),
            dropped: 0,
            duration: 0.1,
            error_class: None,
            error: None,
        }
    }

    fn failed(host: &str, class: RunFailure) -> RunResult {
        RunResult {
            exit: None,
            error_class: Some(class),
            error: Some(format!("{host}: {}", class.as_str())),
            ..ran(host, 0, "")
        }
    }

    #[test]
    fn identical_results_group_and_outliers_come_first() {
        let mut results: Vec<RunResult> = (1..=5)
            .map(|n| ran(&format!("web{n:02}"), 0, "Linux x86_64\n"))
            .collect();
        results.push(ran("web09", 0, "Linux x86_64\n"));
        results.push(ran("web06", 3, "Linux x86_64\n"));
        results.push(ran("web07", 0, "Linux aarch64\n"));
        results.push(failed("web08", RunFailure::Timeout));
        results.push(failed("web10", RunFailure::Timeout));
        let groups = group(&results);
        let shown: Vec<(String, usize, String)> = groups
            .iter()
            .map(|g| (g.hosts.clone(), g.members.len(), g.status()))
            .collect();
        assert_eq!(
            shown,
            [
                ("web07".into(), 1, "ok".into()),
                ("web06".into(), 1, "exit 3".into()),
                ("web[08,10]".into(), 2, "timeout".into()),
                ("web[01-05,09]".into(), 6, "ok".into()),
            ]
        );
        assert_eq!(summary(&results, 0), "10 hosts: 7 ok, 1 exit 3, 2 timeout");
        assert_eq!(
            summary(&results[..1], 2),
            "3 hosts: 1 ok, 2 not started (interrupted)"
        );
    }

    #[test]
    fn stderr_alone_tells_results_apart() {
        let mut a = ran("a1", 0, "x");
        a.stderr = "warning\n".into();
        let groups = group(&[a, ran("a2", 0, "x")]);
        assert_eq!(groups.len(), 2);
    }

    #[test]
    fn json_carries_the_fields_scripts_read() {
        let r = failed("db1", RunFailure::SudoPassword);
        let json: serde_json::Value = serde_json::to_value(&r).unwrap();
        for field in [
            "host",
            "address",
            "exit",
            "stdout",
            "stderr",
            "duration",
            "error_class",
        ] {
            assert!(json.get(field).is_some(), "{field} in {json}");
        }
        assert_eq!(json["error_class"], "sudo-password");
        assert_eq!(json["exit"], serde_json::Value::Null);
    }
}
