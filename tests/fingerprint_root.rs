//! `fleetctl fingerprint` against real sshd hosts on loopback, reached through
//! ssh_config aliases: facts match the machine, failures are classified and
//! never stop the other hosts.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::process::Command;

use common::{Env, Sshd, keygen, public_key, require_root, stderr};
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
    let one = Sshd::start(None, "127.0.0.50", 2250);
    let two = Sshd::start(None, "127.0.0.51", 2251);
    one.authorize(&public_key(&key));
    two.authorize(&public_key(&key));
    let silent = TcpListener::bind("127.0.0.52:0").unwrap();
    let closed = TcpListener::bind("127.0.0.53:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let config = dir.join("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host one\n HostName 127.0.0.50\n Port 2250\nHost two\n HostName 127.0.0.51\n Port 2251\n\
             Host silent\n HostName 127.0.0.52\n Port {}\nHost closed\n HostName 127.0.0.53\n Port {closed_port}\n\
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
}
