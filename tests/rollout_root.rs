//! Rollout control against real OpenSSH hosts on loopback, a real
//! `fleetctl serve` and the real agent (the hosts of tests/deploy_root.rs):
//! batches as Ansible's serial (`1,2,50%` of six hosts: 1, 2, 3), a host
//! that fails (its install dir read-only) stopping the rollout or not,
//! `--max-failures`, the `--gate` between batches and its abort, and a
//! rollout killed with SIGKILL mid-batch resumed with `--resume`.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write as _};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::deploy::{Fleet, results};
use common::{stderr, stdout};
use serde_json::Value;

/// (batch, hosts) of each batch event.
fn batches(events: &[Value]) -> Vec<(u64, u64)> {
    events
        .iter()
        .filter(|e| e["event"] == "batch")
        .map(|e| (e["batch"].as_u64().unwrap(), e["hosts"].as_u64().unwrap()))
        .collect()
}

fn started(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "start")
        .map(|e| e["host"].as_str().unwrap().to_string())
        .collect()
}

fn six(tag: &str, net: u8) -> Fleet {
    let ips: Vec<String> = (1..=6).map(|i| format!("127.7.{net}.{i}")).collect();
    let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
    Fleet::new(tag, &ips)
}

#[test]
#[ignore = "needs root, sshd, unshare and nsenter (the interop suite in .ci/run runs it)"]
fn batches_stop_at_a_failure_go_on_when_told_and_honour_max_failures() {
    let fleet = six("b", 31);
    let names = fleet.names();
    // b2, in the second batch: its install dir is on a read-only file system.
    fleet.host("b2").sh_ok("mount -o remount,ro /usr/local/lib");
    let mut args: Vec<&str> = names.clone();
    args.extend(["--batch", "1,2,50%", "--concurrency", "4"]);

    let (out, events) = fleet.run("deploy", &args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(batches(&events), [(1, 1), (2, 2)], "batch 3 never started");
    let done = results(&events);
    assert_eq!(done["b1"]["result"], "deployed", "{}", done["b1"]);
    assert_eq!(done["b2"]["result"], "failed", "{}", done["b2"]);
    assert_eq!(
        done["b3"]["result"], "deployed",
        "a host of the same batch under way finishes"
    );
    for later in ["b4", "b5", "b6"] {
        assert_eq!(done[later]["result"], "skipped", "{later}: {}", done[later]);
        assert_eq!(done[later]["reason"], "b2 failed");
        assert_eq!(fleet.host(later).leftovers(), "", "{later} untouched");
        assert!(!started(&events).contains(&later.to_string()));
    }

    // --continue-on-failure: every batch, the failure reported.
    args.push("--continue-on-failure");
    let (out, events) = fleet.run("deploy", &args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(batches(&events), [(1, 1), (2, 2), (3, 3)]);
    let done = results(&events);
    assert_eq!(done["b2"]["result"], "failed");
    for ok in ["b1", "b3"] {
        assert_eq!(done[ok]["result"], "up-to-date", "{ok}: {}", done[ok]);
    }
    for ok in ["b4", "b5", "b6"] {
        assert_eq!(done[ok]["result"], "deployed", "{ok}: {}", done[ok]);
        assert!(fleet.host(ok).agent_pid().is_some(), "{ok} runs its agent");
    }

    // --max-failures holds even going on: b2 first, one failure is more than 0.
    let (out, events) = fleet.run(
        "deploy",
        &[
            "b2",
            "b1",
            "b3",
            "b4",
            "b5",
            "b6",
            "--batch",
            "1,2,50%",
            "--continue-on-failure",
            "--max-failures",
            "0",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(batches(&events), [(1, 1)]);
    let done = results(&events);
    for later in ["b1", "b3", "b4", "b5", "b6"] {
        assert_eq!(
            done[later]["reason"], "more than 0 host(s) failed",
            "{later}"
        );
    }
    assert_eq!(started(&events), ["b2"]);
    assert_eq!(fleet.host("b2").leftovers(), "", "the failure rolled back");
}

/// Lines of a child's stdout, as they come, on a channel.
fn lines(child: &mut std::process::Child) -> mpsc::Receiver<Value> {
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}")));
        }
    });
    rx
}

/// Events up to and including the first for which `until` holds.
fn until(rx: &mpsc::Receiver<Value>, seen: &mut Vec<Value>, until: impl Fn(&Value) -> bool) {
    loop {
        let e = rx
            .recv_timeout(Duration::from_mins(2))
            .unwrap_or_else(|_| panic!("timed out; events so far: {seen:#?}"));
        let hit = until(&e);
        seen.push(e);
        if hit {
            return;
        }
    }
}

#[test]
#[ignore = "needs root, sshd, unshare and nsenter (the interop suite in .ci/run runs it)"]
fn the_gate_waits_between_batches_and_abort_leaves_the_rest_untouched() {
    let fleet = six("g", 32);
    let mut args: Vec<&str> = fleet.names();
    args.extend(["--batch", "1,2,50%", "--gate"]);
    let mut child = fleet
        .command("deploy", &args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    let mut seen = Vec::new();
    until(&rx, &mut seen, |e| {
        e["event"] == "batch-done" && e["batch"] == 1
    });
    // It waits: nothing of batch 2 starts while the question is open.
    assert!(
        rx.recv_timeout(Duration::from_secs(3)).is_err(),
        "batch 2 started without an answer"
    );
    assert_eq!(fleet.host("g2").leftovers(), "");
    stdin.write_all(b"y\n").unwrap();
    until(&rx, &mut seen, |e| {
        e["event"] == "batch-done" && e["batch"] == 2
    });
    stdin.write_all(b"n\n").unwrap();
    let out = child.wait_with_output().unwrap();
    seen.extend(rx.try_iter());
    let err = stderr(&out);
    assert!(
        err.contains("batch 1/3 done: 1 ok, 0 failed; continue with the next batch? [y/N]"),
        "{err}"
    );
    assert!(err.contains("batch 2/3 done: 2 ok, 0 failed"), "{err}");
    assert_eq!(
        out.status.code(),
        Some(1),
        "an aborted rollout did not finish"
    );
    let done = results(&seen);
    for ok in ["g1", "g2", "g3"] {
        assert_eq!(done[ok]["result"], "deployed", "{ok}: {}", done[ok]);
    }
    for later in ["g4", "g5", "g6"] {
        assert_eq!(done[later]["result"], "skipped");
        assert_eq!(done[later]["reason"], "aborted at the gate after batch 2/3");
        assert_eq!(fleet.host(later).leftovers(), "", "{later} untouched");
        assert!(fleet.host(later).agent_pid().is_none());
    }
    // An aborted rollout is over: nothing to resume.
    let (out, _) = fleet.run("deploy", &["--resume"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no unfinished rollout"),
        "{}",
        stderr(&out)
    );
}

#[test]
#[ignore = "needs root, sshd, unshare and nsenter (the interop suite in .ci/run runs it)"]
fn a_rollout_killed_mid_batch_resumes_and_deploys_every_host_once() {
    let fleet = six("k", 33);
    let mut args: Vec<&str> = fleet.names();
    args.extend(["--batch", "1,2,50%", "--concurrency", "1"]);
    let mut child = fleet
        .command("deploy", &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = lines(&mut child);
    let mut first = Vec::new();
    // Mid-batch: batch 3's first host is done, its second under way.
    until(&rx, &mut first, |e| {
        e["event"] == "step" && e["host"] == "k5"
    });
    child.kill().unwrap(); // SIGKILL: no cleanup, no last record
    child.wait().unwrap();
    first.extend(rx.try_iter());
    let done_first: Vec<String> = results(&first)
        .into_iter()
        .filter(|(_, e)| e["result"] == "deployed")
        .map(|(h, _)| h)
        .collect();
    assert_eq!(done_first, ["k1", "k2", "k3", "k4"], "{first:#?}");

    let (out, second) = fleet.run("deploy", &["--resume"]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), stdout(&out));
    assert_eq!(
        started(&second),
        ["k5", "k6"],
        "only what the first run did not finish"
    );
    assert_eq!(
        batches(&second),
        [(1, 2)],
        "what is left of batch 3, as one batch"
    );
    let done = results(&second);
    // k5 was cut short mid-deploy: it is finished (or found done), once.
    assert!(
        ["deployed", "up-to-date"].contains(&done["k5"]["result"].as_str().unwrap()),
        "{}",
        done["k5"]
    );
    assert_eq!(done["k6"]["result"], "deployed");
    // Every host deployed once over the two runs, and its agent runs.
    for host in &fleet.hosts {
        let deployed = first
            .iter()
            .chain(&second)
            .filter(|e| {
                e["event"] == "done"
                    && e["host"] == host.name.as_str()
                    && (e["result"] == "deployed" || e["result"] == "up-to-date")
            })
            .count();
        assert_eq!(deployed, 1, "{}", host.name);
        assert!(host.agent_pid().is_some(), "{}: no agent", host.name);
    }
    let (out, _) = fleet.run("deploy", &["--resume"]);
    assert_eq!(out.status.code(), Some(2), "finished: nothing to resume");
}
