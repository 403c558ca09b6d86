//! `fleetctl deploy` / `undeploy` against real OpenSSH "hosts" on loopback,
//! with a real `fleetctl serve` and the real agent.
//!
//! Five hosts on one machine are kept apart by namespaces: each sshd runs in
//! a mount and UTS namespace of its own (`unshare --mount --uts`), with
//! tmpfs over /usr/local/lib and /var/lib and its own host name. Everything
//! deploy does as root (install dir, state dir, pidfile, log, the agent
//! process it starts) lands inside that host's namespace, so five root
//! installs never see each other and nothing touches the real machine's
//! /usr/local or /var. Faults are injected per host the same way: a
//! read-only remount, or a lying sha256sum bind-mounted over the real one.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use common::deploy::{Fleet, alive, results};
use common::{stderr, stdout};

/// A copy of `binary` whose version string reads `to` (same length) where
/// it read `from`: an honest different build, told apart by what it reports.
/// Every occurrence is patched: string literals sit back to back in
/// `.rodata` with no separator, so the agent's own copy may touch a digit
/// in one build and a letter in the next, and a neighbour check would
/// skip it in some builds only.
fn patched_version(binary: &Path, from: &str, to: &str, out: &Path) {
    assert_eq!(from.len(), to.len());
    let mut bytes = std::fs::read(binary).unwrap();
    let (from, to) = (from.as_bytes(), to.as_bytes());
    let mut patched = 0;
    let mut i = 0;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            patched += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    assert!(patched > 0, "no version string found to patch");
    std::fs::write(out, bytes).unwrap();
    std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
#[ignore = "needs root, sshd, unshare and nsenter (the interop suite in .ci/run runs it)"]
fn deploys_five_hosts_then_up_to_date_then_replaces_then_undeploys() {
    let fleet = Fleet::new(
        "web",
        &[
            "127.7.0.10",
            "127.7.0.11",
            "127.7.0.12",
            "127.7.0.13",
            "127.7.0.14",
        ],
    );
    let names = fleet.names();
    let started = Instant::now();
    let mut args = names.clone();
    args.extend(["--concurrency", "5"]);
    let (out, events) = fleet.run("deploy", &args);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    eprintln!(
        "first deploy of 5 hosts: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let done = results(&events);
    for name in &names {
        assert_eq!(done[*name]["result"], "deployed", "{name}: {}", done[*name]);
        assert_eq!(done[*name]["transfer"], "sftp", "{name}: {}", done[*name]);
    }
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["deployed"], 5);

    let version = env!("CARGO_PKG_VERSION");
    for host in &fleet.hosts {
        // The agent outlived the SSH session that started it, and answers.
        let stats = fleet.stats(host);
        assert_eq!(stats.hostname, host.name);
        assert_eq!(stats.agent_version, version);
        assert!(stats.memory.total_bytes > 0);
        // Secrets are files of mode 0600; the join token was used up.
        let modes =
            host.sh_ok("stat -c '%a %n' /var/lib/fleetctl/agent.toml /var/lib/fleetctl/ca.pem");
        assert!(modes.lines().all(|l| l.starts_with("600 ")), "{modes}");
        assert!(
            host.sh("test -e /var/lib/fleetctl/join.token")
                .status
                .code()
                == Some(1)
        );
        // Nothing secret in the agent's argv or environment.
        let pid = host.agent_pid().unwrap();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        for (what, bytes) in [("cmdline", &cmdline), ("environ", &environ)] {
            let text = String::from_utf8_lossy(bytes);
            assert!(!text.contains("eyJ"), "a JWT in the agent's {what}: {text}");
            assert!(!text.contains("PRIVATE KEY"), "a key in the agent's {what}");
        }
        assert!(String::from_utf8_lossy(&cmdline).contains("agent\0--config\0"));
    }

    // Again: nothing to do.
    let (out, events) = fleet.run("deploy", &args);
    assert!(out.status.success(), "{}", stderr(&out));
    for (name, r) in results(&events) {
        assert_eq!(r["result"], "up-to-date", "{name}: {r}");
    }

    // A different build (it reports another version): replaced and restarted.
    let other = fleet.env.dir.path().join("fleetctl-other");
    let bumped: String = {
        let mut v = version.to_string();
        let last = v.pop().unwrap();
        v.push(if last == '9' { '8' } else { '9' });
        v
    };
    patched_version(&fleet.agent_binary, version, &bumped, &other);
    let old_pids: Vec<u32> = fleet.hosts.iter().map(|h| h.agent_pid().unwrap()).collect();
    let mut replace_args = args.clone();
    let other_arg = other.to_str().unwrap();
    replace_args.extend(["--agent-binary", other_arg]);
    let (out, events) = fleet.run("deploy", &replace_args);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    for (name, r) in results(&events) {
        assert_eq!(r["result"], "deployed", "{name}: {r}");
        assert!(r["replaced"].is_string(), "{name}: {r}");
    }
    for (host, old) in fleet.hosts.iter().zip(old_pids) {
        assert_eq!(fleet.stats(host).agent_version, bumped, "{}", host.name);
        assert!(!alive(old), "{}: the old agent still runs", host.name);
        let binaries = host.sh_ok("ls /usr/local/lib/fleetctl");
        assert_eq!(
            binaries.lines().count(),
            1,
            "{}: the old build stays: {binaries}",
            host.name
        );
    }

    // Undeploy: processes gone, files removed.
    let pids: Vec<u32> = fleet.hosts.iter().map(|h| h.agent_pid().unwrap()).collect();
    let (out, events) = fleet.run("undeploy", &names);
    assert!(out.status.success(), "{}", stderr(&out));
    for (name, r) in results(&events) {
        assert_eq!(r["result"], "removed", "{name}: {r}");
    }
    for (host, pid) in fleet.hosts.iter().zip(pids) {
        assert!(!alive(pid), "{}: agent {pid} still runs", host.name);
        assert_eq!(host.leftovers(), "", "{}", host.name);
    }
}

#[test]
#[ignore = "needs root, sshd, unshare and nsenter (the interop suite in .ci/run runs it)"]
fn failures_stop_the_rollout_and_leave_nothing_half_installed() {
    let fleet = Fleet::new(
        "db",
        &[
            "127.7.0.20",
            "127.7.0.21",
            "127.7.0.22",
            "127.7.0.23",
            "127.7.0.24",
        ],
    );
    // db20, db24: the install directory is on a read-only file system.
    for bad in ["db20", "db24"] {
        fleet.host(bad).sh_ok("mount -o remount,ro /usr/local/lib");
    }
    // db21: sha256sum reports another sum, as for a corrupted upload.
    let liar = fleet.env.dir.path().join("lying-sha256sum");
    std::fs::write(&liar, "#!/bin/sh\ncat >/dev/null\necho 0000000000000000000000000000000000000000000000000000000000000000  -\n").unwrap();
    std::fs::set_permissions(&liar, std::fs::Permissions::from_mode(0o755)).unwrap();
    fleet.host("db21").sh_ok(&format!(
        "mount --bind {} \"$(command -v sha256sum)\"",
        liar.display()
    ));

    let (out, events) = fleet.run("deploy", &["db20"]);
    assert_eq!(out.status.code(), Some(1));
    let r = &results(&events)["db20"];
    assert_eq!(r["step"], "upload", "{r}");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("Read-only file system"),
        "{r}"
    );
    assert_eq!(r["rolled_back"], true);
    assert_eq!(fleet.host("db20").leftovers(), "");

    let (out, events) = fleet.run("deploy", &["db21"]);
    assert_eq!(out.status.code(), Some(1));
    let r = &results(&events)["db21"];
    assert_eq!(r["step"], "verify", "{r}");
    assert!(r["reason"].as_str().unwrap().contains("corrupted"), "{r}");
    assert_eq!(fleet.host("db21").leftovers(), "");

    // A failed canary stops the rollout before any other host.
    let (out, events) = fleet.run("deploy", &["db20", "db22", "db23", "--canary", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let done = results(&events);
    assert_eq!(done["db20"]["result"], "failed");
    for other in ["db22", "db23"] {
        assert_eq!(done[other]["result"], "skipped", "{}", done[other]);
        assert_eq!(done[other]["reason"], "canary db20 failed");
        assert_eq!(fleet.host(other).leftovers(), "", "{other}");
    }
    assert!(
        !events
            .iter()
            .any(|e| e["event"] == "start" && e["host"] == "db22")
    );

    // --max-failures 1 with three bad hosts: the second failure stops it.
    let (out, events) = fleet.run(
        "deploy",
        &[
            "db20",
            "db21",
            "db24",
            "db22",
            "db23",
            "--concurrency",
            "1",
            "--max-failures",
            "1",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let done = results(&events);
    assert_eq!(done["db20"]["result"], "failed");
    assert_eq!(done["db21"]["result"], "failed");
    for later in ["db24", "db22", "db23"] {
        assert_eq!(done[later]["result"], "skipped", "{later}: {}", done[later]);
        assert_eq!(done[later]["reason"], "more than 1 host(s) failed");
    }
    for host in &fleet.hosts {
        assert_eq!(host.leftovers(), "", "{}", host.name);
        assert!(host.agent_pid().is_none(), "{}", host.name);
    }
}

#[test]
#[ignore = "needs root, sshd, unshare and nsenter (the interop suite in .ci/run runs it)"]
fn a_late_failure_keeps_the_verified_build_and_the_next_run_resumes() {
    let fleet = Fleet::new("app", &["127.7.0.30"]);
    // An agent that cannot reach its control plane: the run fails waiting,
    // with the agent's own words; only the verified build stays, and the
    // next run resumes at configure.
    let (out, events) = fleet.run(
        "deploy",
        &[
            "app30",
            "--controller",
            "https://127.7.0.1:1",
            "--wait-timeout",
            "3s",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let r = &results(&events)["app30"];
    assert_eq!(r["step"], "healthy", "{r}");
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.contains("/healthz") && reason.contains("log"),
        "{reason}"
    );
    let host = fleet.host("app30");
    let left = host.leftovers();
    assert_eq!(left.lines().count(), 2, "{left}");
    assert!(
        left.starts_with("/usr/local/lib/fleetctl\n/usr/local/lib/fleetctl/fleetctl-agent-"),
        "{left}"
    );
    assert!(host.agent_pid().is_none());
    let (out, events) = fleet.run("deploy", &["app30"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        events.iter().any(|e| e["event"] == "note"
            && e["message"]
                .as_str()
                .unwrap()
                .contains("resuming at configure")),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|e| e["step"] == "upload"),
        "uploaded again"
    );
    assert_eq!(results(&events)["app30"]["result"], "deployed");
    assert_eq!(fleet.stats(host).hostname, "app30");

    // A replacement that never becomes healthy: the build that ran before
    // runs again, with its config and identity.
    let before = host.agent_pid().unwrap();
    let (out, events) = fleet.run(
        "deploy",
        &[
            "app30",
            "--agent-binary",
            "/bin/true",
            "--wait-timeout",
            "3s",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let r = &results(&events)["app30"];
    assert_eq!(r["step"], "healthy", "{r}");
    assert_eq!(r["rolled_back"], true, "{r}");
    let after = host.agent_pid().unwrap();
    assert!(after != before && alive(after) && !alive(before));
    let deadline = Instant::now() + Duration::from_secs(20);
    let stats = loop {
        match fleet.try_stats(host) {
            Ok(stats) => break stats,
            Err(e) if Instant::now() > deadline => panic!("the old build never came back: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    assert_eq!(stats.agent_version, env!("CARGO_PKG_VERSION"));
    let config = host.sh_ok("cat /var/lib/fleetctl/agent.toml");
    assert!(config.contains(&fleet.url), "{config}");

    let (out, _) = fleet.run("undeploy", &["app30"]);
    assert!(out.status.success());
    assert_eq!(host.leftovers(), "");
}

#[test]
#[ignore = "needs root, sshd, unshare and nsenter (the interop suite in .ci/run runs it)"]
fn a_host_without_sftp_is_deployed_over_the_exec_channel_and_undeployed() {
    let fleet = Fleet::without_sftp("bare", &["127.7.0.40"]);
    let host = fleet.host("bare40");
    let (out, events) = fleet.run("deploy", &["bare40"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let r = &results(&events)["bare40"];
    assert_eq!(r["result"], "deployed", "{r}");
    assert_eq!(r["transfer"], "exec", "the outcome says how: {r}");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "note"
                && e["message"].as_str().unwrap().contains("no SFTP server")),
        "the progress says so: {events:?}"
    );
    // Registered (deploy waited for it), answering, secrets 0600.
    assert_eq!(fleet.stats(host).hostname, "bare40");
    let modes = host.sh_ok("stat -c '%a %n' /var/lib/fleetctl/agent.toml /var/lib/fleetctl/ca.pem");
    assert!(modes.lines().all(|l| l.starts_with("600 ")), "{modes}");
    let binary = host.sh_ok("stat -c '%a' /usr/local/lib/fleetctl/fleetctl-agent-*");
    assert_eq!(binary.trim(), "755");

    // The detached agent's stderr is a file: no colour codes in it.
    let log = host.sh("cat /var/lib/fleetctl/agent.log").stdout;
    assert!(!log.is_empty(), "the agent logged nothing");
    assert!(
        !log.contains(&0x1b),
        "an ESC byte in the agent's log: {}",
        String::from_utf8_lossy(&log)
    );

    let (out, events) = fleet.run("undeploy", &["bare40"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(results(&events)["bare40"]["result"], "removed");
    assert_eq!(host.leftovers(), "");
    assert!(host.agent_pid().is_none());
}

#[test]
#[ignore = "needs root, sshd, unshare and nsenter (the interop suite in .ci/run runs it)"]
fn a_build_id_the_host_forged_is_refused_naming_the_host() {
    let fleet = Fleet::new("odd", &["127.7.0.41"]);
    let host = fleet.host("odd41");
    host.sh_ok(
        "mkdir -p /var/lib/fleetctl && \
         printf '%s\n' '../../../tmp/x$(touch /var/lib/pwned)' >/var/lib/fleetctl/current",
    );
    let (out, events) = fleet.run("deploy", &["odd41"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let r = &results(&events)["odd41"];
    assert_eq!(r["step"], "inspect", "{r}");
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.contains("odd41") && reason.contains("reports its build in use"),
        "{reason}"
    );
    assert!(reason.contains("/var/lib/fleetctl/current"), "{reason}");
    // Inspect made the (empty) directories in its one round trip; nothing
    // of what the host said ran, and nothing was uploaded.
    assert_eq!(host.sh_ok("ls -A /var/lib/fleetctl"), "current\n");
    assert_eq!(host.sh_ok("ls -A /usr/local/lib/fleetctl"), "");
    assert!(host.sh("test -e /var/lib/pwned").status.code() == Some(1));
}
