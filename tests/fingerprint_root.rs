//! `fleetctl fingerprint` against real sshd hosts on loopback, reached through
//! ssh_config aliases: facts match the machine, failures are classified and
//! never stop the other hosts.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::process::Command;

use common::{Env, Sshd, keygen, public_key, require_root, stderr, stdout};
use fleetctl::model::FailureKind;
use fleetctl::ssh::known_hosts::HostKey;

fn local(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn mem_total_bytes() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

#[test]
#[ignore = "needs root and sshd (openssh-server), installed by .ci/run"]
fn fingerprints_real_hosts_and_classifies_failures() {
    require_root();
    let env = Env::new();
    let dir = env.dir.path();
    let key = keygen(dir, "client", "");
    let one = Sshd::start(None, "127.3.0.50", 2250);
    let two = Sshd::start(None, "127.3.0.51", 2251);
    one.authorize(&public_key(&key));
    two.authorize(&public_key(&key));
    let silent = TcpListener::bind("127.3.0.52:0").unwrap();
    let closed = TcpListener::bind("127.3.0.53:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let config = dir.join("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host one\n HostName 127.3.0.50\n Port 2250\nHost two\n HostName 127.3.0.51\n Port 2251\n\
             Host silent\n HostName 127.3.0.52\n Port {}\nHost closed\n HostName 127.3.0.53\n Port {closed_port}\n\
             Host *\n User root\n IdentityFile {}\n",
            silent.local_addr().unwrap().port(),
            key.display()
        ),
    )
    .unwrap();
    let known_hosts = dir.join("known_hosts");
    let run = |policy: &str, hosts: &[&str]| {
        let mut cmd = env.cmd();
        cmd.args([
            "fingerprint",
            "-o",
            "json",
            "--connect-timeout",
            "1s",
            "--host-key-policy",
            policy,
        ])
        .arg("--ssh-config")
        .arg(&config)
        .arg("--known-hosts")
        .arg(&known_hosts)
        .args(hosts);
        cmd.output().unwrap()
    };

    // Strict with an empty known_hosts: every reachable host is refused, by name.
    let out = run("strict", &["one"]);
    assert_eq!(out.status.code(), Some(1));
    let results: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results[0]["failure"], "host-key-unknown");

    let out = run("accept-new", &["one", "two", "silent", "closed"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "some hosts failed: {}",
        stderr(&out)
    );
    let results: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let by_host = |name: &str| results.iter().find(|r| r["host"] == name).unwrap().clone();
    assert_eq!(by_host("silent")["failure"], "timeout");
    assert_eq!(by_host("closed")["failure"], "unreachable");
    for (name, sshd) in [("one", &one), ("two", &two)] {
        let r = by_host(name);
        assert!(r.get("failure").is_none(), "{r}");
        let facts = &r["facts"];
        assert_eq!(facts["arch"], local("uname", &["-m"]));
        assert_eq!(facts["kernel"], local("uname", &["-srv"]));
        assert_eq!(
            facts["cpu_count"],
            local("nproc", &[]).parse::<u64>().unwrap()
        );
        assert_eq!(facts["mem_total_bytes"], mem_total_bytes());
        assert_eq!(facts["is_root"], true);
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap();
        let id = os_release
            .lines()
            .find_map(|l| l.strip_prefix("ID="))
            .unwrap()
            .trim_matches('"');
        assert_eq!(facts["os_id"], id);
        let expected = HostKey::from_openssh(&sshd.host_key())
            .unwrap()
            .fingerprint();
        assert_eq!(r["host_key"], expected.as_str());
    }

    // The keys were learned: strict now succeeds, and the table says so.
    let mut cmd = env.cmd();
    cmd.args(["fingerprint", "--ssh-config"])
        .arg(&config)
        .arg("--known-hosts")
        .arg(&known_hosts)
        .args(["one", "two"]);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("HOST "), "{table}");
    assert!(table.contains("# 2 hosts: 2 ok, 0 failed"), "{table}");

    check_recorded(&env, silent.local_addr().unwrap().port());
}

/// The first test's outcomes are in the inventory, per address, with when
/// they were gathered.
fn check_recorded(env: &Env, silent_port: u16) {
    let inventory = env.inventory();
    let stored = inventory.facts("127.3.0.50", 2250).unwrap().unwrap();
    assert_eq!(stored.failure, None);
    assert!(stored.gathered_at.unwrap() > 1_700_000_000);
    assert_eq!(
        stored.facts.unwrap().arch.as_deref(),
        Some(local("uname", &["-m"]).as_str())
    );
    let timed_out = inventory.facts("127.3.0.52", silent_port).unwrap();
    assert_eq!(timed_out.unwrap().failure, Some(FailureKind::Timeout));
}

#[test]
#[ignore = "needs root and sshd (openssh-server), installed by .ci/run"]
fn scan_ssh_fingerprints_the_hosts_that_run_ssh_and_records_their_facts() {
    require_root();
    let env = Env::new();
    let dir = env.dir.path();
    let key = keygen(dir, "client", "");
    let known = Sshd::start(None, "127.3.0.60", 22);
    let stranger = Sshd::start(None, "127.3.0.61", 22);
    known.authorize(&public_key(&key));
    stranger.authorize(&public_key(&key));
    // 127.3.0.62 is alive (loopback refuses port 22 = up) but runs no SSH.
    let known_hosts = dir.join("known_hosts");
    std::fs::write(&known_hosts, format!("127.3.0.60 {}", known.host_key())).unwrap();
    let scan = |format: &str| {
        let mut cmd = env.cmd();
        cmd.args([
            "scan",
            "127.3.0.60-62",
            "-m",
            "tcp",
            "--ports",
            "22",
            "--ssh",
        ])
        .args(["-o", format, "-l", "root", "-i"])
        .arg(&key)
        .arg("--known-hosts")
        .arg(&known_hosts)
        .env_remove("SSH_AUTH_SOCK");
        cmd.output().unwrap()
    };

    let out = scan("json");
    assert_eq!(
        out.status.code(),
        Some(1),
        "one host failed: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("host key not known"),
        "{}",
        stderr(&out)
    );
    let hosts: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(hosts.len(), 3);
    assert_eq!(hosts[0]["addr"], "127.3.0.60");
    let fingerprint = &hosts[0]["fingerprint"];
    assert_eq!(fingerprint["facts"]["arch"], local("uname", &["-m"]));
    assert_eq!(
        fingerprint["host_key"],
        HostKey::from_openssh(&known.host_key())
            .unwrap()
            .fingerprint()
            .as_str()
    );
    assert_eq!(hosts[1]["fingerprint"]["failure"], "host-key-unknown");
    assert_eq!(hosts[2]["reach"], "alive");
    assert!(
        hosts[2].get("fingerprint").is_none(),
        "no SSH, no fingerprint"
    );

    let inventory = env.inventory();
    let stored = inventory.facts("127.3.0.60", 22).unwrap().unwrap();
    assert_eq!(stored.facts.unwrap().os_id, {
        let facts: fleetctl::model::HostFacts =
            serde_json::from_value(fingerprint["facts"].clone()).unwrap();
        facts.os_id
    });
    let refused = inventory.facts("127.3.0.61", 22).unwrap().unwrap();
    assert_eq!(refused.failure, Some(FailureKind::HostKeyUnknown));
    assert_eq!(inventory.facts("127.3.0.62", 22).unwrap(), None);

    let table = stdout(&scan("table"));
    let row = table
        .lines()
        .find(|l| l.starts_with("127.3.0.60 "))
        .unwrap();
    assert!(
        row.contains(" ok ") && row.contains("SSH-2.0-OpenSSH"),
        "{table}"
    );
    assert!(
        table.contains("# 2 fingerprinted over SSH: 1 ok, 1 failed"),
        "{table}"
    );
    let csv = stdout(&scan("csv"));
    assert!(
        csv.lines().next().unwrap().contains(",ssh_status,"),
        "{csv}"
    );
    assert!(csv.contains("host key unknown"), "{csv}");
}
