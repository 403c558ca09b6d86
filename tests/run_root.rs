//! `fleetctl run` against real sshd hosts, each in namespaces of its own
//! (its own hostname), that differ on purpose: the same command prints
//! their role from their hostname, one exits 3, one sleeps past the
//! timeout, one offers a key known_hosts does not list. Groups, folded
//! lists, ordering, the summary, JSON and the exit status are checked
//! exactly; a host printing 50 MiB is held to the output cap; `--sudo`
//! says when sudo wants a password; Ctrl-C starts no new host.
#![allow(clippy::unwrap_used)]

mod common;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use common::host::{HOST_SSH_PORT, IsolatedHost};
use common::{Env, TestUser, keygen, require_root, stderr, stdout};

/// What every host runs: its role (the hostname without digits), then
/// what the host was set up to do.
const COMMAND: &str = "hostname | tr -d 0-9; case $(cat /var/lib/behave 2>/dev/null) in \
                       exit3) exit 3;; sleep) sleep 30;; esac";

struct Fleet {
    env: Env,
    config: PathBuf,
    known_hosts: PathBuf,
    hosts: Vec<IsolatedHost>,
}

impl Fleet {
    /// `(name, last octet, behaviour, known)`.
    fn start(spec: &[(&str, u8, &str, bool)]) -> Self {
        require_root();
        let env = Env::new();
        let dir = env.dir.path().to_owned();
        let key = keygen(&dir, "client", "");
        let mut config = String::new();
        let mut known = String::new();
        let mut hosts = Vec::new();
        for &(name, octet, behave, is_known) in spec {
            let ip = format!("127.14.0.{octet}");
            let host = IsolatedHost::start(name, &ip, &key);
            if !behave.is_empty() {
                host.sh_ok(&format!("echo {behave} >/var/lib/behave"));
            }
            let _ = write!(
                config,
                "Host {name}\n HostName {ip}\n Port {HOST_SSH_PORT}\n"
            );
            if is_known {
                let _ = write!(known, "[{ip}]:{HOST_SSH_PORT} {}", host.sshd.host_key());
            }
            hosts.push(host);
        }
        let _ = write!(
            config,
            "Host *\n User root\n IdentityFile {}\n IdentitiesOnly yes\n",
            key.display()
        );
        let config_path = dir.join("ssh_config");
        std::fs::write(&config_path, config).unwrap();
        let known_hosts = dir.join("known_hosts");
        std::fs::write(&known_hosts, known).unwrap();
        Self {
            env,
            config: config_path,
            known_hosts,
            hosts,
        }
    }

    fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = self.env.cmd();
        cmd.arg("run")
            .arg("--ssh-config")
            .arg(&self.config)
            .arg("--known-hosts")
            .arg(&self.known_hosts)
            .args(args)
            .env_remove("SSH_AUTH_SOCK");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }
}

fn names(fleet: &Fleet) -> Vec<&str> {
    fleet.hosts.iter().map(|h| h.name.as_str()).collect()
}

#[test]
#[ignore = "needs root, sshd and namespaces (openssh-server, util-linux), installed by .ci/run"]
fn groups_outliers_first_with_folded_hosts_summary_json_and_exit_status() {
    let fleet = Fleet::start(&[
        ("web01", 1, "", true),
        ("web02", 2, "", true),
        ("web03", 3, "", true),
        ("web04", 4, "exit3", true),
        ("web05", 5, "", true),
        ("db1", 6, "", true),
        ("web07", 7, "sleep", true),
        ("web08", 8, "", false),
    ]);
    let mut args = vec!["--timeout", "3s"];
    args.extend(names(&fleet));
    args.extend(["--", COMMAND]);

    let started = Instant::now();
    let out = fleet.run(&args);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(took < Duration::from_secs(20), "the timeout held: {took:?}");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    // Outliers first: four groups of one (ran before failed, by exit), then the four alike.
    assert_eq!(lines[0], "---- db1 (1) ok", "{text}");
    assert_eq!(lines[1], "db");
    assert_eq!(lines[2], "---- web04 (1) exit 3");
    assert_eq!(lines[3], "web");
    assert_eq!(lines[4], "---- web07 (1) timeout");
    assert!(
        lines[5].starts_with("web07 (127.14.0.7:2222): timed out after 3s"),
        "{text}"
    );
    assert_eq!(lines[6], "---- web08 (1) host key unknown");
    assert!(
        lines[7].starts_with("web08 (127.14.0.8:2222): host key not known"),
        "{text}"
    );
    assert_eq!(lines[8], "---- web[01-03,05] (4) ok");
    assert_eq!(lines[9], "web");
    assert_eq!(
        lines[10],
        "# 8 hosts: 5 ok, 1 exit 3, 1 timeout, 1 host key unknown"
    );
    assert_eq!(lines.len(), 11, "{text}");

    // JSON: one object per host, the fields scripts read.
    let mut json_args = vec!["-o", "json"];
    json_args.extend(&args);
    let out = fleet.run(&json_args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let results: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results.len(), 8);
    let by = |name: &str| results.iter().find(|r| r["host"] == name).unwrap().clone();
    let web01 = by("web01");
    assert_eq!(web01["address"], "127.14.0.1");
    assert_eq!(web01["exit"], 0);
    assert_eq!(web01["stdout"], "web\n");
    assert_eq!(web01["stderr"], "");
    assert_eq!(web01["error_class"], serde_json::Value::Null);
    assert!(web01["duration"].as_f64().unwrap() > 0.0);
    assert_eq!(by("web04")["exit"], 3);
    assert_eq!(by("web07")["error_class"], "timeout");
    assert_eq!(by("web07")["exit"], serde_json::Value::Null);
    assert_eq!(
        by("web07")["stdout"],
        "web\n",
        "what came before the timeout is kept"
    );
    assert_eq!(by("web08")["error_class"], "host-key-unknown");
    assert!(
        stderr(&out).contains("# 8 hosts: 5 ok, 1 exit 3, 1 timeout, 1 host key unknown"),
        "{}",
        stderr(&out)
    );

    // JSON lines, and exit 0 when every host ran and exited 0.
    let out = fleet.run(&["-o", "jsonl", "web01", "web02", "db1", "--", COMMAND]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l["exit"] == 0));

    check_audit_trail(&fleet);
}

/// The three runs above are in the audit trail, newest first: who, what,
/// where and how each ended; per host, that host's outcome.
fn check_audit_trail(fleet: &Fleet) {
    let out = fleet.env.run(&["history"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 4, "{table}");
    assert!(rows[0].starts_with("ID  WHEN"), "{table}");
    let cells = |row: &str| -> Vec<String> {
        row.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect()
    };
    assert_eq!(
        cells(rows[1])[2..],
        ["root", "db1,web[01-02]", "3 hosts: 3 ok", COMMAND],
        "{table}"
    );
    for row in &rows[2..] {
        assert_eq!(
            cells(row)[2..],
            [
                "root",
                "db1,web[01-05,07-08]",
                "8 hosts: 5 ok, 1 exit 3, 1 timeout, 1 host key unknown",
                COMMAND
            ],
            "{table}"
        );
    }
    let out = fleet.env.run(&["history", "web07", "-o", "json"]);
    let runs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs.len(), 2, "the two runs that included web07");
    assert_eq!(runs[0]["results"][0]["error_class"], "timeout");
    assert_eq!(runs[0]["command"], COMMAND);
    assert_eq!(runs[0]["local_user"], "root");
    assert!(runs[0]["finished_at"].as_i64().unwrap() >= runs[0]["started_at"].as_i64().unwrap());
}

/// Max RSS of the children this process has waited for, in KiB.
fn children_max_rss_kib() -> i64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_CHILDREN).unwrap().max_rss()
}

#[test]
#[ignore = "needs root, sshd and namespaces (openssh-server, util-linux), installed by .ci/run"]
fn a_host_printing_50_mib_is_held_to_the_output_cap() {
    let fleet = Fleet::start(&[("big1", 21, "", true)]);
    // What fleetctl takes running a command that prints nothing.
    let out = fleet.run(&["big1", "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let before = children_max_rss_kib();
    let out = fleet.run(&[
        "-o",
        "json",
        "big1",
        "--",
        "head -c 52428800 /dev/zero | tr '\\0' x; echo done >&2",
    ]);
    let rss = children_max_rss_kib();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let results: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let r = &results[0];
    let kept = r["stdout"].as_str().unwrap().len() + r["stderr"].as_str().unwrap().len();
    assert_eq!(kept, 1 << 20, "the default cap is 1 MiB");
    assert_eq!(
        r["dropped"].as_u64().unwrap() + kept as u64,
        50 * (1 << 20) + "done\n".len() as u64,
        "what was dropped is counted"
    );
    assert_eq!(r["exit"], 0);
    println!("fleetctl max RSS with a 50 MiB host: {rss} KiB (before: {before} KiB)");
    // Holding it all would take 50 MiB for the bytes, and as much again as text.
    assert!(
        rss < before + 16 * 1024,
        "fleetctl held the output: max RSS {rss} KiB, {before} KiB for a quiet host"
    );

    let out = fleet.run(&["--max-output", "10KiB", "big1", "--", "seq 100000"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("---- big1 (1) ok\n1\n2\n"),
        "{}",
        &text[..40]
    );
    assert!(
        text.contains("more bytes dropped per host at most (--max-output)]"),
        "{}",
        &text[text.len() - 200..]
    );
}

#[test]
#[ignore = "needs root, sshd, sudo and namespaces (openssh-server, sudo, util-linux), installed by .ci/run"]
fn sudo_runs_as_root_and_says_when_it_wants_a_password() {
    common::require_tool("sudo");
    let user = TestUser::create("run", "not-used-by-ssh");
    let fleet = Fleet::start(&[("sudo1", 31, "", true), ("sudo2", 32, "", true)]);
    let as_user = format!("{}@sudo2", user.name);
    let out = fleet.run(&["-o", "json", "--sudo", "sudo1", &as_user, "--", "id -u"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let results: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let root = results.iter().find(|r| r["host"] == "sudo1").unwrap();
    assert_eq!(root["stdout"], "0\n");
    let user_run = results.iter().find(|r| r["host"] == "sudo2").unwrap();
    assert_eq!(user_run["error_class"], "sudo-password", "{user_run}");
    let error = user_run["error"].as_str().unwrap();
    assert!(error.contains("sudo wants a password"), "{error}");
    assert!(error.contains(&user.name), "{error}");
}

#[test]
#[ignore = "needs root, sshd and namespaces (openssh-server, util-linux), installed by .ci/run"]
fn ctrl_c_starts_no_new_host_and_reports_what_ran() {
    let fleet = Fleet::start(&[
        ("slow1", 41, "", true),
        ("slow2", 42, "", true),
        ("slow3", 43, "", true),
    ]);
    let child = fleet
        .cmd(&[
            "--concurrency",
            "1",
            "slow1",
            "slow2",
            "slow3",
            "--",
            "sleep 2; echo done",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(
        text,
        "---- slow1 (1) ok\ndone\n# 3 hosts: 1 ok, 2 not started (interrupted)\n",
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("interrupted: no new host starts"));
}

#[test]
#[ignore = "needs root, sshd and namespaces (openssh-server, util-linux), installed by .ci/run"]
fn all_and_select_take_the_hosts_from_the_inventory() {
    let fleet = Fleet::start(&[("inv1", 51, "", true), ("inv2", 52, "", true)]);
    let port = HOST_SSH_PORT.to_string();
    let out = fleet.env.run(&[
        "scan",
        "127.14.0.51-53",
        "-m",
        "tcp",
        "--ports",
        &port,
        "--no-banner",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The scan knows them by address (.53 too: loopback refuses, so it is
    // up), reached on the port given.
    let out = fleet.run(&["--all", "-p", &port, "--", "hostname"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "---- 127.14.0.51 (1) ok\ninv1\n---- 127.14.0.52 (1) ok\ninv2\n\
         ---- 127.14.0.53 (1) unreachable\n\
         127.14.0.53 (127.14.0.53:2222): cannot connect: Connection refused (os error 111)\n\
         # 3 hosts: 2 ok, 1 unreachable\n"
    );
    let out = fleet.run(&[
        "--select",
        "addr=127.14.0.52",
        "-p",
        &port,
        "--",
        "hostname",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "---- 127.14.0.52 (1) ok\ninv2\n# 1 host: 1 ok\n"
    );
}
