//! Discovery as root: ICMP over raw and unprivileged ping sockets, silent
//! hosts made by nftables in a network namespace of the test's own, and SSH
//! banners read from a real sshd.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Env, Netns, Sshd, require_root, require_tool, stderr};
use fleetctl::model::{HostScan, Reach, Via};

fn alive(hosts: &[HostScan]) -> BTreeSet<IpAddr> {
    hosts
        .iter()
        .filter(|h| h.reach == Reach::Alive)
        .map(|h| h.addr)
        .collect()
}

fn run_json(cmd: &mut Command) -> Vec<HostScan> {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{:?}: {}", cmd, stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
#[ignore = "needs root: raw ICMP sockets, network namespaces, nftables, port 22"]
fn icmp_finds_all_of_loopback_slash_24_and_slash_16() {
    require_root();
    let env = Env::new();
    let hosts = env.scan_json(&["-m", "icmp", "127.0.0.0/24"]);
    assert_eq!(alive(&hosts).len(), 254);
    assert!(hosts.iter().all(|h| h.via == Some(Via::Icmp)));

    let hosts = env.scan_json(&["-m", "icmp", "127.0.0.0/16"]);
    assert_eq!(hosts.len(), 65_534);
    assert_eq!(
        alive(&hosts).len(),
        65_534,
        "every loopback address answers"
    );
    assert_eq!(env.inventory().hosts().unwrap().len(), 65_534);
}

/// A namespace where nftables drops every probe to 127.1.0.0/24 except to
/// addresses that are multiples of 16: 15 hosts answer, 239 stay silent.
fn namespace_with_silent_hosts() -> (Netns, BTreeSet<IpAddr>) {
    let ns = Netns::new("silent");
    ns.nft(
        "table inet fleetctl_test {
           chain input {
             type filter hook input priority 0; policy accept;
             ip daddr 127.1.0.0/24 ip daddr & 0.0.0.15 != 0.0.0.0 drop
           }
         }",
    );
    let expected = (1..16)
        .map(|i| format!("127.1.0.{}", i * 16).parse().unwrap())
        .collect();
    (ns, expected)
}

/// `scan -o json -m METHOD --timeout 300ms --retries 2 RANGE` in `ns`:
/// the hosts and how long it took.
fn scan_timed(env: &Env, ns: &Netns, method: &str, range: &str) -> (Vec<HostScan>, Duration) {
    let mut cmd = env.cmd();
    cmd.args([
        "scan",
        "-o",
        "json",
        "-m",
        method,
        "--timeout",
        "300ms",
        "--retries",
        "2",
        range,
    ]);
    let start = Instant::now();
    let hosts = run_json(&mut ns.wrap(&cmd));
    (hosts, start.elapsed())
}

#[test]
#[ignore = "needs root: raw ICMP sockets, network namespaces, nftables, port 22"]
fn silent_hosts_are_silent_and_timing_follows_timeout_and_retries() {
    require_root();
    let env = Env::new();
    let (ns, expected) = namespace_with_silent_hosts();
    for method in ["icmp", "tcp"] {
        let (hosts, took) = scan_timed(&env, &ns, method, "127.1.0.0/24");
        assert_eq!(hosts.len(), 254, "{method}: every target is reported");
        assert_eq!(
            alive(&hosts),
            expected,
            "{method}: alive hosts, none missed"
        );
        assert_eq!(
            hosts.iter().filter(|h| h.reach == Reach::Silent).count(),
            239,
            "{method}: silent hosts"
        );
        if method == "icmp" {
            // Answers in microseconds teach a timeout far under the 300 ms
            // asked for, which is only the ceiling: three tries of it end
            // well before 900 ms.
            assert!(
                took < Duration::from_millis(600),
                "{method}: did not adapt to fast answers, took {took:?}"
            );
        } else {
            // TCP connect keeps the fixed timeout: three attempts of 300 ms.
            assert!(
                took >= Duration::from_millis(900),
                "{method}: gave up early, after {took:?}"
            );
            assert!(
                took < Duration::from_millis(2900),
                "{method}: took {took:?}"
            );
        }
    }

    // Where nothing answers there is nothing to learn from: the configured
    // timeout applies to each of the three tries.
    let (hosts, took) = scan_timed(&env, &ns, "icmp", "127.1.0.1-15");
    assert!(hosts.iter().all(|h| h.reach == Reach::Silent), "{hosts:?}");
    assert!(
        took >= Duration::from_millis(900),
        "gave up early, after {took:?}"
    );
    assert!(took < Duration::from_millis(2900), "took {took:?}");

    // --alive-only drops the silent ones from the output.
    let mut cmd = env.cmd();
    cmd.args([
        "scan",
        "-o",
        "json",
        "--alive-only",
        "--timeout",
        "200ms",
        "127.1.0.0/24",
    ]);
    assert_eq!(alive(&run_json(&mut ns.wrap(&cmd))), expected);
    assert_eq!(run_json(&mut ns.wrap(&cmd)).len(), 15);
}

#[test]
#[ignore = "needs root: raw ICMP sockets, network namespaces, nftables, port 22"]
fn icmp_scans_also_find_hosts_that_drop_icmp_but_answer_on_port_22() {
    require_root();
    let env = Env::new();
    let ns = Netns::new("noicmp");
    // .5 drops ICMP but refuses on 22; .6 answers ICMP but drops port 22;
    // .7 drops both.
    ns.nft(
        "table inet fleetctl_test {
           chain input {
             type filter hook input priority 0; policy accept;
             ip daddr 127.2.0.5 ip protocol icmp drop
             ip daddr 127.2.0.6 tcp dport 22 drop
             ip daddr 127.2.0.7 drop
           }
         }",
    );
    let mut cmd = env.cmd();
    cmd.args(["scan", "-o", "json", "--timeout", "300ms", "127.2.0.5-7"]);
    let hosts = run_json(&mut ns.wrap(&cmd));
    let by_addr = |last: u8| {
        hosts
            .iter()
            .find(|h| h.addr == IpAddr::from([127, 2, 0, last]))
            .unwrap()
    };
    assert_eq!(by_addr(5).reach, Reach::Alive);
    assert_eq!(
        by_addr(5).via,
        Some(Via::Tcp(22)),
        "found by its port 22 answer"
    );
    assert_eq!(by_addr(6).reach, Reach::Alive);
    assert_eq!(by_addr(6).via, Some(Via::Icmp));
    assert!(by_addr(6).open_ports.is_empty() && by_addr(6).ssh_banner.is_none());
    assert_eq!(by_addr(7).reach, Reach::Silent);
}

/// `fleetctl ARGS` as root without CAP_NET_RAW: no raw sockets.
fn without_net_raw(env: &Env, args: &[&str]) -> Command {
    require_tool("setpriv");
    let mut cmd = Command::new("setpriv");
    cmd.args(["--bounding-set=-net_raw", "--inh-caps=-net_raw", "--"])
        .arg(env!("CARGO_BIN_EXE_fleetctl"))
        .args(args)
        .env("FLEETCTL_CONFIG", env.config_file())
        .env("FLEETCTL_DATA_DIR", env.data_dir());
    cmd
}

#[test]
#[ignore = "needs root: raw ICMP sockets, network namespaces, nftables, port 22"]
fn without_raw_sockets_icmp_is_refused_and_auto_falls_back() {
    require_root();
    let env = Env::new();
    let ns = Netns::new("noraw");
    // Neither raw sockets (capability dropped) nor ping sockets (no group admitted).
    ns.sh("sysctl -qw net.ipv4.ping_group_range='1 0'");
    let unprivileged = |args: &[&str]| ns.wrap(&without_net_raw(&env, args)).output().unwrap();

    let out = unprivileged(&["scan", "-m", "icmp", "127.0.0.1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    for fix in ["root", "CAP_NET_RAW", "--method tcp"] {
        assert!(
            err.contains(fix),
            "the message names the fix {fix:?}: {err}"
        );
    }

    let out = unprivileged(&["scan", "-o", "json", "127.0.0.1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("probing with TCP connect instead"),
        "{}",
        stderr(&out)
    );
    let hosts: Vec<HostScan> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(matches!(hosts[0].via, Some(Via::Tcp(_))));
}

#[test]
#[ignore = "needs root: raw ICMP sockets, network namespaces, nftables, port 22"]
fn unprivileged_ping_sockets_are_used_when_allowed() {
    require_root();
    let env = Env::new();
    let ns = Netns::new("pingsock");
    ns.sh("sysctl -qw net.ipv4.ping_group_range='0 2147483647'");
    let cmd = without_net_raw(&env, &["scan", "-m", "icmp", "-o", "json", "127.0.0.0/28"]);
    let hosts = run_json(&mut ns.wrap(&cmd));
    assert_eq!(alive(&hosts).len(), 14);
    assert!(hosts.iter().all(|h| h.via == Some(Via::Icmp)));
}

#[test]
#[ignore = "needs root: raw ICMP sockets, network namespaces, nftables, port 22"]
fn ssh_banners_come_from_a_real_sshd() {
    require_root();
    let ns = Netns::new("sshd");
    let sshd = Sshd::start(Some(&ns), "127.0.0.77", 22);
    let env = Env::new();
    for method in ["icmp", "tcp"] {
        let mut cmd = env.cmd();
        cmd.args(["scan", "-o", "json", "-m", method, "127.0.0.76-78"]);
        let hosts = run_json(&mut ns.wrap(&cmd));
        let host = hosts.iter().find(|h| h.addr == sshd.addr.ip()).unwrap();
        assert_eq!(host.open_ports, [22], "{method}");
        let banner = host.ssh_banner.as_deref().unwrap_or_default();
        assert!(
            banner.starts_with("SSH-2.0-OpenSSH_"),
            "{method}: {banner:?}"
        );
        let others: Vec<_> = hosts.iter().filter(|h| h.addr != sshd.addr.ip()).collect();
        assert!(
            others
                .iter()
                .all(|h| h.ssh_banner.is_none() && h.reach == Reach::Alive)
        );
    }
}

#[test]
#[ignore = "needs root: raw ICMP sockets, network namespaces, nftables, port 22"]
fn ipv6_loopback_answers_icmpv6() {
    require_root();
    let env = Env::new();
    let hosts = env.scan_json(&["-m", "icmp", "::1", "127.0.0.1"]);
    assert_eq!(alive(&hosts).len(), 2);
    assert!(hosts.iter().all(|h| h.via == Some(Via::Icmp)));
}
