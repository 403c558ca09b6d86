//! Discovery at the machine's limit, as root: a routed /16 with one
//! address in 16 alive behind a veth pair, a slow jittery link (a
//! user-space delay line: the kernels this runs on lack netem, and a test
//! that needs it would fail there whatever fleetctl does), and `--rate` as
//! nftables counts it. Every namespace, link and rule is the test's own.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Env, Netns, require_root, require_tool, stderr};
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

/// A range behind a link, as a routed network looks to a scanner: the
/// `hosts` namespace answers for every address of `net` (an AnyIP local
/// route) and nftables silently drops probes to 15 of every 16, so the
/// addresses ending in a zero nibble are the live set.
struct Routed {
    scanner: Netns,
    hosts: Netns,
    net: ipnet::Ipv4Net,
    /// The user-space slow link, when there is one.
    delay_line: Option<std::process::Child>,
}

impl Routed {
    /// The range behind a veth pair.
    fn new(tag: &str, net: &str) -> Self {
        let range = Self::namespaces(tag, net);
        range.scanner.sh(&format!(
            "ip link add fcs type veth peer name fch netns {hosts}
             ip addr add 10.99.0.1/30 dev fcs && ip link set fcs up
             ip route add {net} via 10.99.0.2",
            hosts = range.hosts.name
        ));
        range
            .hosts
            .sh("ip addr add 10.99.0.2/30 dev fch && ip link set fch up");
        range
    }

    /// The range behind a slow link made in user space: two TUN devices
    /// and tests/scan_delay_line.py holding every packet `delay_ms` ±
    /// `jitter_ms`, as netem would on a kernel that has it.
    fn delayed(tag: &str, net: &str, delay_ms: u32, jitter_ms: u32) -> Self {
        require_tool("python3");
        let mut range = Self::namespaces(tag, net);
        let id = std::process::id() % 1_000_000;
        let (tun_s, tun_h) = (format!("fcds{id}"), format!("fcdh{id}"));
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scan_delay_line.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args([&tun_s, &range.scanner.name, &tun_h, &range.hosts.name])
            .args([delay_ms.to_string(), jitter_ms.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut ready,
        )
        .unwrap();
        assert_eq!(ready.trim(), "ready", "the delay line did not start");
        range.delay_line = Some(child);
        range.scanner.sh(&format!(
            "ip addr add 10.98.0.1/32 dev {tun_s} && ip route add {net} dev {tun_s}"
        ));
        range
            .hosts
            .sh(&format!("ip route add 10.98.0.1/32 dev {tun_h}"));
        range
    }

    fn namespaces(tag: &str, net: &str) -> Self {
        let scanner = Netns::new(&format!("{tag}-s"));
        let hosts = Netns::new(&format!("{tag}-h"));
        hosts.sh(&format!("ip route add local {net} dev lo"));
        hosts.nft(&format!(
            "table inet fleetctl_test {{
               chain input {{
                 type filter hook input priority 0; policy accept;
                 ip daddr {net} ip daddr & 0.0.0.15 != 0.0.0.0 drop
               }}
             }}"
        ));
        Self {
            scanner,
            hosts,
            net: net.parse().unwrap(),
            delay_line: None,
        }
    }

    /// The addresses that answer (fleetctl, like fping, leaves out the
    /// network and broadcast addresses).
    fn live(&self) -> BTreeSet<IpAddr> {
        self.net
            .hosts()
            .filter(|a| a.octets()[3] % 16 == 0)
            .map(IpAddr::V4)
            .collect()
    }

    /// `fleetctl scan -o jsonl --alive-only ARGS NET` from the scanner's side:
    /// the live hosts it printed, and how long it took.
    fn scan(&self, env: &Env, args: &[&str]) -> (Vec<HostScan>, Duration) {
        let net = self.net.to_string();
        self.scan_args(env, &[args, &[net.as_str()]].concat())
    }

    /// `fleetctl scan -o jsonl --alive-only ARGS` from the scanner's side.
    fn scan_args(&self, env: &Env, args: &[&str]) -> (Vec<HostScan>, Duration) {
        let mut cmd = env.cmd();
        cmd.args(["scan", "-o", "jsonl", "--alive-only"]).args(args);
        let start = Instant::now();
        let out = self.scanner.wrap(&cmd).output().unwrap();
        let took = start.elapsed();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let hosts = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (hosts, took)
    }
}

impl Drop for Routed {
    fn drop(&mut self) {
        if let Some(child) = &mut self.delay_line {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The live set as a readable difference, so a failure says which were missed.
fn assert_exactly(found: &[HostScan], live: &BTreeSet<IpAddr>, what: &str) {
    let got = alive(found);
    let missed: Vec<_> = live.difference(&got).take(10).collect();
    let extra: Vec<_> = got.difference(live).take(10).collect();
    assert!(
        missed.is_empty() && extra.is_empty() && found.len() == live.len(),
        "{what}: {} found of {}; missed (first 10) {missed:?}; not live but reported {extra:?}",
        got.len(),
        live.len()
    );
}

#[test]
#[ignore = "needs root: raw sockets, network namespaces, a veth pair, nftables"]
fn a_routed_slash_16_with_one_in_16_alive_finds_exactly_the_live_set_five_runs_in_a_row() {
    require_root();
    let env = Env::new();
    let range = Routed::new("mixed16", "10.77.0.0/16");
    let live = range.live();
    assert_eq!(live.len(), 4095);
    // As fast as the machine sends (where fping loses hosts), then at the
    // defaults: every run finds every live host and nothing else.
    for run in 1..=5 {
        let args: &[&str] = if run < 5 { &["--rate", "0"] } else { &[] };
        let (hosts, took) = range.scan(&env, args);
        assert_exactly(&hosts, &live, &format!("run {run} {args:?} ({took:?})"));
        assert!(
            hosts
                .iter()
                .all(|h| h.via == Some(Via::Icmp) && h.open_ports.is_empty()),
            "run {run}: answered the echo, port 22 closed"
        );
    }
}

#[test]
#[ignore = "needs root: raw sockets, a network namespace, nftables counters"]
fn rate_1000_on_a_slash_20_sends_at_most_1000_packets_per_second() {
    require_root();
    let env = Env::new();
    let ns = Netns::new("rate");
    // Every packet to the range is counted, and separately every packet
    // beyond a token bucket of 1,000/s (with the 5-packet burst nft allows
    // by default): that second count must stay at zero.
    ns.nft(
        "table inet fleetctl_test {
           chain output {
             type filter hook output priority 0; policy accept;
             ip daddr 127.17.0.0/20 counter
             ip daddr 127.17.0.0/20 limit rate over 1000/second burst 5 packets counter
           }
         }",
    );
    // (sent, beyond 1,000/s) so far.
    let counters = || {
        let mut list = ns.wrap(&Command::new("nft"));
        list.args(["list", "chain", "inet", "fleetctl_test", "output"]);
        let rules = String::from_utf8(list.output().unwrap().stdout).unwrap();
        let counts: Vec<u64> = rules
            .lines()
            .filter_map(|l| l.split("counter packets ").nth(1))
            .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
            .collect();
        let [sent, over] = counts[..] else {
            panic!("two counters expected: {rules}");
        };
        (sent, over, rules)
    };

    // The check can fail: unlimited, a /24's 508 packets go in a burst.
    let mut cmd = env.cmd();
    cmd.args(["scan", "-o", "json", "--rate", "0", "127.17.0.0/24"]);
    run_json(&mut ns.wrap(&cmd));
    let (sent_before, over_before, rules) = counters();
    assert_eq!(sent_before, 2 * 254, "{rules}");
    assert!(over_before > 0, "--rate 0 should exceed 1,000/s: {rules}");

    let mut cmd = env.cmd();
    cmd.args(["scan", "-o", "json", "--rate", "1000", "127.17.0.0/20"]);
    let start = Instant::now();
    let hosts = run_json(&mut ns.wrap(&cmd));
    let took = start.elapsed();
    assert_eq!(alive(&hosts).len(), 4094, "every loopback address answers");
    let (sent, over, rules) = counters();
    let (sent, over) = (sent - sent_before, over - over_before);
    // An echo and a SYN to port 22 per address, both counted by --rate.
    assert_eq!(sent, 2 * 4094, "{rules}");
    assert_eq!(over, 0, "packets sent faster than 1,000/s: {rules}");
    let rate = sent as f64 / took.as_secs_f64();
    assert!(rate <= 1000.0, "{sent} packets in {took:?}");
    // ...and not needlessly slower either. The wall time includes start-up
    // and the inventory (785/s once while other interop tests shared the
    // two cores), so this only catches a pacer gone wrong; the rate itself
    // is the bench's (tests/bench/scan.sh).
    assert!(rate > 500.0, "{sent} packets in {took:?}: {rate:.0}/s");
}

#[test]
#[ignore = "needs root: network namespaces, TUN devices, python3, nftables"]
fn a_slow_jittery_link_made_in_user_space_loses_no_live_host_at_defaults() {
    require_root();
    let env = Env::new();
    // A slow WAN link as netem would make it: 80 ms ± 20 ms
    // each way, so answers take 120-200 ms and come back reordered.
    let range = Routed::delayed("delay", "10.78.0.0/20", 80, 20);
    let live = range.live();
    for args in [&[][..], &["--no-banner"][..]] {
        let (hosts, took) = range.scan(&env, args);
        assert_exactly(
            &hosts,
            &live,
            &format!("{args:?} over the delay line ({took:?})"),
        );
        let slowest = hosts
            .iter()
            .filter_map(|h| h.rtt_ms)
            .fold(0.0_f64, f64::max);
        assert!(
            slowest >= 100.0,
            "the delay was applied: slowest answer {slowest} ms"
        );
    }
    // Fast answers first (the scanner's own loopback) teach a timeout of
    // milliseconds; a small slow range probed after them is retried at that
    // pace and all its tries are out before its first answer is back, but it
    // is given up only after the full --timeout, so none of it is lost.
    let fast: ipnet::Ipv4Net = "127.18.0.0/22".parse().unwrap();
    let slow: ipnet::Ipv4Net = "10.78.0.0/24".parse().unwrap();
    let mut expected: BTreeSet<IpAddr> = fast.hosts().map(IpAddr::V4).collect();
    expected.extend(live.iter().filter(|a| match a {
        IpAddr::V4(a) => slow.contains(a),
        IpAddr::V6(_) => false,
    }));
    let (hosts, took) = range.scan_args(&env, &["127.18.0.0/22", "10.78.0.0/24"]);
    assert_exactly(&hosts, &expected, &format!("fast then slow ({took:?})"));
}

/// Answers every echo request it sees in `ns` with replies from the probed
/// address, over and over until killed: a hostile host flooding the scanner
/// with answers it has every right to send.
const FLOODER: &str = r#"
import socket, sys
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
out = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
def checksum(b):
    s = sum(int.from_bytes(b[i:i + 2], "big") for i in range(0, len(b) - 1, 2))
    if len(b) % 2: s += b[-1] << 8
    while s >> 16: s = (s & 0xFFFF) + (s >> 16)
    return (~s & 0xFFFF).to_bytes(2, "big")
print("ready", flush=True)
while True:
    pkt, _ = raw.recvfrom(2048)
    ihl = (pkt[0] & 15) * 4
    if pkt[ihl] != 8:
        continue
    icmp = bytearray(pkt[ihl:])
    icmp[0], icmp[2:4] = 0, b"\0\0"
    icmp[2:4] = checksum(bytes(icmp))
    src, dst = pkt[16:20], pkt[12:16]
    ip = bytearray(pkt[:20])
    ip[12:16], ip[16:20], ip[10:12] = src, dst, b"\0\0"
    reply = bytes(ip) + bytes(icmp)
    while True:
        out.sendto(reply, (socket.inet_ntoa(dst), 0))
"#;

#[test]
#[ignore = "needs root: raw sockets, network namespaces, a veth pair, nftables, python3"]
fn a_host_that_keeps_answering_cannot_hold_the_scan_open() {
    require_root();
    require_tool("python3");
    let env = Env::new();
    let range = Routed::new("flood", "10.79.0.0/24");
    let mut flooder = Command::new("ip")
        .args(["netns", "exec", &range.hosts.name, "python3", "-c", FLOODER])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(flooder.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready.trim(), "ready", "the flooder did not start");
    // The first echo request it sees, it answers without end.
    let (hosts, took) = range.scan(&env, &[]);
    let _ = flooder.kill();
    let _ = flooder.wait();
    assert_exactly(&hosts, &range.live(), "under a flood of answers");
    assert!(
        took < Duration::from_secs(5),
        "the scan ended although answers kept coming: {took:?}"
    );
}
