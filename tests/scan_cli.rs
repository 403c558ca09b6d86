//! `fleetctl scan` as a user runs it, without privileges: TCP discovery on
//! loopback, output formats, the inventory, Ctrl-C, and every bad input.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::net::{IpAddr, TcpListener};
use std::process::Stdio;
use std::time::Duration;

use common::{Env, assert_causes_once, stderr, stdout};
use fleetctl::model::{Reach, Via};

#[test]
fn tcp_finds_all_of_a_loopback_slash_24() {
    let env = Env::new();
    let hosts = env.scan_json(&["-m", "tcp", "--no-banner", "127.0.0.0/24"]);
    assert_eq!(
        hosts.len(),
        254,
        "network and broadcast addresses are left out"
    );
    assert!(hosts.iter().all(|h| h.reach == Reach::Alive), "{hosts:?}");
    assert!(hosts.iter().all(|h| matches!(h.via, Some(Via::Tcp(_)))));
    let unique: HashSet<IpAddr> = hosts.iter().map(|h| h.addr).collect();
    assert_eq!(unique.len(), 254);
}

#[test]
fn tcp_finds_all_of_a_loopback_slash_16() {
    let env = Env::new();
    let hosts = env.scan_json(&["-m", "tcp", "--no-banner", "127.0.0.0/16"]);
    assert_eq!(hosts.len(), 65_534);
    assert!(hosts.iter().all(|h| h.reach == Reach::Alive));
}

#[test]
fn open_ports_are_reported() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let env = Env::new();
    let hosts = env.scan_json(&["-m", "tcp", "--ports", &format!("{port},1"), "127.0.0.1-2"]);
    assert_eq!(hosts[0].open_ports, [port.parse::<u16>().unwrap()]);
    assert_eq!(
        hosts[1].reach,
        Reach::Alive,
        "a refused port proves the host is up"
    );
    assert!(hosts[1].open_ports.is_empty());
}

#[test]
fn every_output_format_parses() {
    let env = Env::new();
    let out = env.run(&["scan", "-m", "tcp", "-o", "jsonl", "127.0.0.1-4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<fleetctl::model::HostScan> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);

    let out = env.run(&["scan", "-m", "tcp", "-o", "csv", "127.0.0.1-4"]);
    let text = stdout(&out);
    let mut rows = text.lines();
    assert_eq!(
        rows.next(),
        Some("address,name,reach,via,rtt_ms,open_ports,ssh_banner")
    );
    assert_eq!(rows.filter(|r| r.contains(",alive,tcp:")).count(), 4);

    let out = env.run(&["scan", "-m", "tcp", "127.0.0.1-4"]);
    let table = stdout(&out);
    assert!(table.starts_with("ADDRESS "), "{table}");
    assert!(
        table.contains("# 4 addresses: 4 alive, 0 silent (tcp,"),
        "{table}"
    );
    assert!(
        stderr(&out).is_empty(),
        "no progress bar when stderr is not a terminal"
    );
}

#[test]
fn exclude_leaves_out_addresses_and_ranges() {
    let env = Env::new();
    let hosts = env.scan_json(&[
        "-m",
        "tcp",
        "127.0.0.1-6",
        "--exclude",
        "127.0.0.2,127.0.0.4-5",
    ]);
    let addrs: Vec<String> = hosts.iter().map(|h| h.addr.to_string()).collect();
    assert_eq!(addrs, ["127.0.0.1", "127.0.0.3", "127.0.0.6"]);
}

#[test]
fn rescanning_updates_the_inventory_instead_of_duplicating() {
    let env = Env::new();
    env.scan_json(&["-m", "tcp", "127.0.0.1-8"]);
    env.scan_json(&["-m", "tcp", "127.0.0.5-12"]);
    let hosts = env.inventory().hosts().unwrap();
    assert_eq!(hosts.len(), 12);
    let fifth = hosts
        .iter()
        .find(|h| h.scan.addr.to_string() == "127.0.0.5")
        .unwrap();
    let first = hosts
        .iter()
        .find(|h| h.scan.addr.to_string() == "127.0.0.1")
        .unwrap();
    assert!(
        fifth.last_scan.0 > first.last_scan.0,
        "127.0.0.5 was updated by the second scan"
    );
}

#[test]
fn ctrl_c_prints_what_was_found_and_exits_130() {
    let env = Env::new();
    // Slow enough that the scan is still sending when the signal comes.
    let child = env
        .cmd()
        .args([
            "scan",
            "-m",
            "tcp",
            "--rate",
            "3000",
            "-o",
            "json",
            "127.0.0.0/16",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let hosts: Vec<fleetctl::model::HostScan> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!hosts.is_empty(), "hosts found before Ctrl-C are printed");
    assert!(
        hosts.len() < 65_534,
        "sending stopped early ({} hosts)",
        hosts.len()
    );
    assert!(hosts.iter().all(|h| h.reach == Reach::Alive));
    assert_eq!(
        env.inventory().hosts().unwrap().len(),
        hosts.len(),
        "and recorded"
    );
}

/// Runs `fleetctl ARGS` and checks it fails with status 2 and this message.
fn assert_bad_input(env: &Env, args: &[&str], message: &str) {
    let out = env.run(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    assert_causes_once(&stderr(&out));
    assert!(
        stdout(&out).is_empty(),
        "{args:?} printed: {}",
        stdout(&out)
    );
}

#[test]
fn every_address_of_ipv6_and_one_more_is_refused_at_once() {
    // 2^128 + 1 addresses once wrapped to 1 and passed --max-hosts, then
    // grew without bound. The bound is generous; the refusal is instant.
    let env = Env::new();
    for (args, message) in [
        (vec!["scan", "::/0", "::1"], "more than 2^128 addresses"),
        (vec!["scan", "::/0"], "more than 2^128 addresses"),
        (
            vec!["scan", "::/1", "--max-hosts", "18446744073709551615"],
            "more than --max-hosts 18446744073709551615",
        ),
        (
            vec!["scan", "::/65", "--max-hosts", "18446744073709551615"],
            "no scan can hold that many",
        ),
    ] {
        let mut child = env
            .cmd()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{args:?} still runs after 20s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{args:?}");
    }
}

#[test]
fn bad_input_is_named_and_exits_2() {
    let env = Env::new();
    let empty = env.dir.path().join("empty.txt");
    std::fs::write(&empty, "# nothing here\n\n").unwrap();
    let empty = format!("@{}", empty.display());
    for (args, message) in [
        (
            vec!["scan", "127.0.0.0/33"],
            "prefix \"33\" must be a number from 0 to 32",
        ),
        (
            vec!["scan", "127.0.0.256/24"],
            "\"127.0.0.256\" is not an IP address",
        ),
        (
            vec!["scan", "127.0.0.5/24"],
            "127.0.0.5/24 has host bits set: did you mean 127.0.0.0/24 (the whole network) or 127.0.0.5 (one host)?",
        ),
        (
            vec!["scan", "127.0.0.9-3"],
            "ends (127.0.0.3) before it starts",
        ),
        (
            vec!["scan", "no-such-host.invalid"],
            "cannot resolve host name \"no-such-host.invalid\"",
        ),
        (
            vec!["scan", "not a host"],
            "not an address, network, range or host name",
        ),
        (
            vec!["scan", &empty],
            "no targets to scan: the target list is empty",
        ),
        (
            vec!["scan", "@/nonexistent/hosts.txt"],
            "cannot read target file /nonexistent/hosts.txt",
        ),
        (
            vec!["scan", "127.0.0.1", "--exclude", "127.0.0.0/24"],
            "--exclude removed every target",
        ),
        (
            vec!["scan", "127.0.0.0/8"],
            "the targets cover 16777214 addresses, more than --max-hosts 65536; pass --max-hosts 16777214",
        ),
        (
            vec!["scan", "127.0.0.1", "--timeout", "soon"],
            "not a duration",
        ),
        (
            vec!["scan", "127.0.0.1", "--ports", "0"],
            "0 is not in 1..=65535",
        ),
        (
            vec!["scan", "127.0.0.1", "-m", "udp"],
            "invalid value 'udp'",
        ),
        (vec!["scan"], "required arguments were not provided"),
    ] {
        assert_bad_input(&env, &args, message);
    }
}

#[test]
fn a_broken_config_file_is_named() {
    let env = Env::new();
    std::fs::write(env.config_file(), "[scan]\nrate = \"fast\"\n").unwrap();
    let out = env.run(&["scan", "127.0.0.1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&env.config_file().display().to_string()),
        "{err}"
    );
    assert!(err.contains("line 2"), "{err}");

    let out = env.run(&["--config", "/nonexistent/fleetctl.toml", "config", "path"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read the config file /nonexistent/fleetctl.toml"));
    assert_causes_once(&stderr(&out));
    assert_eq!(
        stderr(&out).matches("No such file or directory").count(),
        1,
        "{}",
        stderr(&out)
    );
}

#[test]
fn config_path_and_defaults_are_shown() {
    let env = Env::new();
    let out = env.run(&["config", "path"]);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("data dir     {}", env.data_dir().display())),
        "{text}"
    );
    assert!(text.contains("inventory.sqlite3"), "{text}");

    std::fs::write(env.config_file(), "[scan]\nrate = 500\n").unwrap();
    let shown = stdout(&env.run(&["config", "show"]));
    assert!(shown.contains("rate = 500"), "{shown}");
    assert!(shown.contains("timeout = \"500ms\""), "{shown}");

    let default = stdout(&env.run(&["config", "default"]));
    std::fs::write(env.config_file(), &default).unwrap();
    assert!(
        env.run(&["config", "show"]).status.success(),
        "the default file loads"
    );
}
