//! The demo runs commands for real: `!` `uname -sm` on every host the
//! scan found shows the healthy hosts as one group, and the demo's
//! failure hosts (the one that rejects the key, the silent one) as their
//! own groups; the run lands in the demo's audit trail.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::Env;
use common::tmux::{Tmux, quote};

/// Quits the demo however the test ends, so its agents stop.
struct Demo(Tmux);

impl Drop for Demo {
    fn drop(&mut self) {
        for key in ["Escape", "Escape", "q"] {
            let _ = std::panic::catch_unwind(|| self.0.keys(&[key]));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[test]
#[ignore = "needs tmux (the interop suite in .ci/run runs it)"]
fn bang_uname_in_the_demo_groups_the_healthy_hosts_and_the_failures_apart() {
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo(Tmux::start("fleetctl-demo-run", 120, 36));
    let tmux = &demo.0;
    // Default roles with 8 hosts: demo-03 silent, demo-05 rejects the key.
    tmux.line(&format!(
        "TMPDIR={dir} XDG_RUNTIME_DIR={dir} FLEETCTL_CONFIG={} FLEETCTL_DATA_DIR={} {} \
         demo --hosts 8 --base 127.43.8.10",
        quote(&env.config_file()),
        quote(&env.data_dir()),
        quote(Path::new(env!("CARGO_BIN_EXE_fleetctl"))),
        dir = quote(dir.path()),
    ));
    let minutes = |n: u64| Duration::from_secs(n * 60);
    tmux.wait_until("the scan prompt", minutes(1), |s| {
        s.contains("s Enter scans")
    });
    tmux.keys(&["s", "Enter"]);
    tmux.wait_until("scan done", minutes(1), |s| s.contains("scan done"));
    tmux.keys(&["*", "!"]);
    tmux.run(&["send-keys", "-t", "t", "-l", "uname -sm"]);
    tmux.keys(&["Enter"]);
    let asking = tmux.wait_for("Run on 8 hosts?");
    assert!(asking.contains("$ uname -sm"), "{asking}");
    tmux.keys(&["y"]);
    let uname = Command::new("uname").arg("-sm").output().unwrap();
    let uname = String::from_utf8_lossy(&uname.stdout).trim().to_string();
    let done = tmux.wait_until("the run's summary", minutes(1), |s| {
        s.contains("8 hosts: 6 ok")
    });
    let row = |needle: &str| {
        done.lines()
            .find(|l| l.starts_with("│  ") && l.contains(needle))
            .unwrap_or_else(|| panic!("no row with {needle:?}:\n{done}"))
            .to_string()
    };
    // The healthy six as one group, their one line of output.
    let healthy = row(&uname);
    assert!(healthy.contains(" 6 ") && healthy.contains("ok"), "{done}");
    assert!(
        row("auth failed").contains("127.43.8.14"),
        "demo-05:\n{done}"
    );
    let silent = row("127.43.8.12 ");
    assert!(
        silent.contains("timeout") || silent.contains("unreachable"),
        "{done}"
    );
    // Outliers first: the failures above the six.
    let line_of = |needle: &str| done.lines().position(|l| l == row(needle)).unwrap();
    assert!(line_of("auth failed") < line_of(&uname), "{done}");
    assert!(line_of("127.43.8.12 ") < line_of(&uname), "{done}");
}
