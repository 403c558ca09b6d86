//! `demo/record.sh` end to end: it drives `fleetctl demo` in tmux while
//! asciinema records, and the cast it writes replays (through a terminal
//! emulator) to a last screen showing the fleet with registered hosts.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{require_tool, stderr, stdout};

const HOSTS: usize = 8;
const COLS: u16 = 120;
const ROWS: u16 = 36;

#[test]
#[ignore = "needs asciinema and tmux (the interop suite in .ci/run runs it)"]
fn the_recording_ends_on_the_fleet_with_registered_hosts() {
    require_tool("asciinema");
    require_tool("tmux");
    let dir = tempfile::tempdir().unwrap();
    let cast = dir.path().join("first-look.cast");
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/demo/record.sh"))
        .arg(&cast)
        .env("FLEETCTL", env!("CARGO_BIN_EXE_fleetctl"))
        .env("HOSTS", HOSTS.to_string())
        .env("SEED", "7")
        .env("COLS", COLS.to_string())
        .env("ROWS", ROWS.to_string())
        .env("WATCH", "5")
        .env("BASE", "127.42.7.10")
        .env("SVG", "0")
        .env("TMPDIR", dir.path())
        .env("XDG_RUNTIME_DIR", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "record.sh failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );

    let text = std::fs::read_to_string(&cast).unwrap();
    let mut lines = text.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert_eq!(
        (header["width"].as_u64(), header["height"].as_u64()),
        (Some(120), Some(36))
    );
    let size = |n: u16| std::num::NonZero::new(n).unwrap();
    let mut term = vt100::Parser::new(size(ROWS), size(COLS), 0);
    let mut last_time = 0.0;
    for line in lines {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        let time = event[0].as_f64().unwrap();
        assert!(time >= last_time, "events out of order");
        last_time = time;
        if event[1] == "o" {
            term.process(event[2].as_str().unwrap().as_bytes());
        }
    }
    let screen = term.screen().contents();
    assert!(
        screen.contains("ADDRESS"),
        "no fleet table on the last screen:\n{screen}"
    );
    let registered = screen
        .lines()
        .filter(|l| l.contains(" demo-") && l.contains(" running ") && l.contains(" registered "))
        .count();
    assert!(
        registered >= HOSTS - 3,
        "{registered} registered hosts on the last screen:\n{screen}"
    );
    for state in [" silent ", " auth-failed "] {
        assert!(screen.contains(state), "no {state:?} host:\n{screen}");
    }
    // Nothing of the sandbox is left in the temp dir.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.starts_with("fleetctl-sandbox-")
                && std::path::Path::new(n)
                    .extension()
                    .is_none_or(|e| e != "lock")
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
