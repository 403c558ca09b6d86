//! `fleetctl run`, `history`, `shell` and `logs` refuse what cannot work
//! with a clear message and exit 2, before reaching any host.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Env, stderr, stdout};

#[test]
fn bad_requests_are_said_and_exit_2() {
    let env = Env::new();
    let cases: &[(&[&str], &str)] = &[
        (&["run", "web1"], "COMMAND"),
        (&["run", "web1", "--", "  "], "no command to run"),
        (
            &["run", "--max-output", "lots", "web1", "--", "true"],
            "a size is a number of bytes",
        ),
        (
            &["run", "--all", "--", "uptime"],
            "no host in the inventory matches",
        ),
        (
            &["run", "--select", "colour=blue", "--", "uptime"],
            "unknown field \"colour\"",
        ),
        (&["shell", "web1"], "needs a terminal"),
    ];
    for (args, says) in cases {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn history_of_a_new_inventory_is_empty() {
    let env = Env::new();
    let out = env.run(&["history"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "no commands run yet\n");
    let out = env.run(&["history", "-o", "json"]);
    assert_eq!(stdout(&out).trim(), "[]");
}
