//! `fleetctl demo --headless` end to end, as CI and a person without a
//! terminal run it: real sandbox hosts, real deploys, real agents. Each run
//! gets its own temp dir (the sandbox root and its lock live there) and its
//! own /24 inside 127.42.0.0/16.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `fleetctl demo --headless` with `dir` as its temp and runtime dir.
fn demo(env: &common::Env, dir: &Path, base: &str, hosts: &str) -> Command {
    let mut cmd = env.cmd();
    cmd.args([
        "demo",
        "--headless",
        "--hosts",
        hosts,
        "--base",
        base,
        "--timeout",
        "150s",
    ])
    .env("TMPDIR", dir)
    .env("XDG_RUNTIME_DIR", dir)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd
}

/// A running demo, stopped (SIGTERM, so it cleans up) if a test fails
/// before it ends.
struct Running(Option<Child>);

impl Running {
    fn id(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }

    fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }

    fn wait(mut self) -> Output {
        self.0.take().unwrap().wait_with_output().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            terminate(child.id());
            let _ = child.wait();
        }
    }
}

fn terminate(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    );
}

/// Processes of this sandbox still alive: marked with its root in their
/// environment, or running a program from inside it.
fn leftovers(dir: &Path) -> Vec<String> {
    let prefix = dir.as_os_str().as_bytes();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit(')').next().unwrap_or("").trim_start();
        if state.starts_with('Z') || state.starts_with('X') || stat.is_empty() {
            continue;
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let marked = environ.split(|&b| b == 0).any(|var| {
            var.starts_with(b"FLEETCTL_SANDBOX=")
                && var[b"FLEETCTL_SANDBOX=".len()..].starts_with(prefix)
        });
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        if marked || exe.starts_with(dir) {
            found.push(format!("{pid} {}", exe.display()));
        }
    }
    found
}

/// No process runs from `dir` and no sandbox root is left in it.
fn assert_nothing_left(dir: &Path) {
    assert_eq!(
        leftovers(dir),
        Vec::<String>::new(),
        "processes left behind"
    );
    assert_eq!(
        sandbox_roots(dir),
        Vec::<String>::new(),
        "files left behind"
    );
}

fn sandbox_roots(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.starts_with("fleetctl-sandbox-")
                && Path::new(n).extension().is_none_or(|e| e != "lock")
        })
        .collect()
}

/// Waits for the demo to hold its lock (the sandbox is up).
fn wait_started(dir: &Path, child: &mut Child) {
    let lock = dir.join(format!(
        "fleetctl-sandbox-{}.lock",
        nix::unistd::getuid().as_raw()
    ));
    let deadline = Instant::now() + Duration::from_mins(1);
    while std::fs::read_to_string(&lock).unwrap_or_default().trim() != child.id().to_string() {
        assert!(child.try_wait().unwrap().is_none(), "the demo ended early");
        assert!(Instant::now() < deadline, "the demo never took its lock");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn row<'a>(table: &'a str, addr: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.starts_with(&format!("{addr} ")))
        .unwrap_or_else(|| panic!("no row for {addr} in\n{table}"))
}

#[test]
fn headless_demo_ends_as_expected_leaves_nothing_and_runs_once() {
    let env = common::Env::new();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().canonicalize().unwrap();
    let mut first = Running(Some(demo(&env, &dir, "127.42.1.10", "5").spawn().unwrap()));
    wait_started(&dir, first.child());

    // A second demo while one runs: refused, naming the first one's pid.
    let second = demo(&env, &dir, "127.42.2.10", "5").output().unwrap();
    assert_eq!(second.status.code(), Some(1), "{}", common::stderr(&second));
    let err = common::stderr(&second);
    assert!(
        err.contains("already running") && err.contains(&format!("pid {}", first.id())),
        "{err}"
    );

    let out = first.wait();
    let (stdout, stderr) = (common::stdout(&out), common::stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    // Default roles with 5 hosts: the last three fail.
    for (addr, name) in [("127.42.1.10", "demo-01"), ("127.42.1.11", "demo-02")] {
        let r = row(&stdout, addr);
        assert!(
            r.contains(&format!(" {name} "))
                && r.contains(" running ")
                && r.contains(" registered "),
            "{r}"
        );
        assert!(r.contains('%'), "no live stats: {r}");
    }
    assert!(row(&stdout, "127.42.1.12").contains(" silent "), "{stdout}");
    assert!(
        row(&stdout, "127.42.1.13").contains(" auth-failed "),
        "{stdout}"
    );
    let cut = row(&stdout, "127.42.1.14");
    // The registry's view: heartbeats stopped (lost), or the identity ran out.
    assert!(cut.contains(" lost ") || cut.contains(" expired "), "{cut}");
    assert!(
        stdout.contains("demo-05 (127.42.1.14) token expiring")
            || stdout.contains("demo-05 (127.42.1.14) token expired"),
        "{stdout}"
    );
    let last = stdout.lines().last().unwrap();
    assert!(last.starts_with("demo: ok: 2 healthy hosts"), "{last}");
    assert!(stderr.contains("TCP connect"), "{stderr}");

    assert_nothing_left(&dir);
}

#[test]
fn sigterm_mid_deploy_stops_every_agent_and_removes_the_root() {
    let env = common::Env::new();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().canonicalize().unwrap();
    let mut child = Running(Some(demo(&env, &dir, "127.42.3.10", "4").spawn().unwrap()));
    wait_started(&dir, child.child());
    // Once an agent runs from the sandbox, stop the demo as a service manager would.
    let deadline = Instant::now() + Duration::from_mins(2);
    while !leftovers(&dir).iter().any(|p| p.contains("fleetctl-agent")) {
        assert!(
            child.child().try_wait().unwrap().is_none(),
            "the demo ended before deploying"
        );
        assert!(Instant::now() < deadline, "no agent started");
        std::thread::sleep(Duration::from_millis(50));
    }
    terminate(child.id());
    let out = child.wait();
    assert_eq!(out.status.code(), Some(130), "{}", common::stderr(&out));
    assert!(common::stderr(&out).contains("SIGTERM"));
    assert_nothing_left(&dir);
}

#[test]
fn bad_host_counts_are_bad_input() {
    let env = common::Env::new();
    for hosts in ["3", "201"] {
        let out = env.run(&["demo", "--headless", "--hosts", hosts]);
        assert_eq!(out.status.code(), Some(2), "{}", common::stderr(&out));
        assert!(common::stderr(&out).contains("choose 4 to 200"));
    }
}
