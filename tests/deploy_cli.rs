//! `fleetctl deploy` / `undeploy` input handling, with no hosts needed:
//! bad input exits 2 with a message naming the problem; --dry-run shows the
//! plan and touches nothing.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Env, assert_causes_once, stderr, stdout};

#[test]
fn bad_input_says_what_is_wrong_and_exits_2() {
    let env = Env::new();
    for (args, needle) in [
        (
            vec!["deploy", "--select", "colour=red"],
            "unknown field \"colour\"",
        ),
        (vec!["deploy", "--select", "os="], "empty value"),
        (vec!["deploy", "--all"], "no host in the inventory matches"),
        (
            vec!["deploy", "h1", "--agent-binary", "/etc/hostname"],
            "not an ELF executable",
        ),
        (
            vec!["deploy", "h1", "--controller", "http://127.7.0.1:1"],
            "https://",
        ),
        (
            vec!["deploy", "h1", "--controller", "https://127.7.0.1:1"],
            "no token signing key",
        ),
        (
            vec!["undeploy", "--select", "web:&"],
            "nothing after its operator",
        ),
        (
            vec!["fingerprint", "--select", "~web["],
            "not a regular expression",
        ),
    ] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
        assert_causes_once(&stderr(&out));
    }
    let out = env.run(&["deploy"]);
    assert_eq!(out.status.code(), Some(2), "no hosts: {}", stderr(&out));
}

#[test]
fn dry_run_shows_canaries_then_the_rest_and_changes_nothing() {
    let env = Env::new();
    let out = env.run(&[
        "deploy",
        "root@127.7.0.10",
        "127.7.0.11",
        "127.7.0.12",
        "--canary",
        "1",
        "--max-failures",
        "1",
        "--controller",
        "https://127.7.0.1:8443",
        "--dry-run",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("agents register with https://127.7.0.1:8443"),
        "{text}"
    );
    assert!(text.contains("1. canary   root@127.7.0.10:22"), "{text}");
    assert!(text.contains("3. rollout"), "{text}");
    assert!(text.contains("stop after more than 1 failure(s)"), "{text}");
    assert!(
        !env.data_dir().join("control").exists(),
        "dry run minted keys"
    );
}

#[test]
fn concurrency_is_described_for_what_each_command_does() {
    let env = Env::new();
    for (command, words) in [
        ("deploy", "Hosts deployed at once"),
        ("undeploy", "Hosts undeployed at once"),
        ("fingerprint", "Hosts fingerprinted at once"),
    ] {
        let help = stdout(&env.run(&[command, "--help"]));
        let line = help
            .lines()
            .skip_while(|l| !l.contains("--concurrency"))
            .nth(1)
            .unwrap_or_default();
        assert!(line.contains(words), "{command}: {line}");
    }
}

#[test]
fn errors_say_each_cause_once() {
    let env = Env::new();
    let dir = env.dir.path().to_str().unwrap().to_owned();
    // Under a file: no directory can be made there.
    let not_a_dir = env.config_file().join("data");
    let not_a_dir = not_a_dir.to_str().unwrap();
    for (args, needle) in [
        (
            vec!["fingerprint", "127.12.0.1", "--known-hosts", &dir],
            "Is a directory",
        ),
        (
            vec!["--data-dir", not_a_dir, "fingerprint", "127.12.0.1"],
            "Not a directory",
        ),
        (
            vec!["--data-dir", not_a_dir, "scan", "127.12.0.1"],
            "Not a directory",
        ),
        (
            vec!["--config", "/nonexistent/c.toml", "deploy", "h1"],
            "No such file or directory",
        ),
    ] {
        let out = env.run(&args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(err.matches(needle).count(), 1, "{args:?}: {err}");
        assert_causes_once(&err);
    }
}

#[test]
fn batches_in_the_plan_and_bad_rollout_flags_exit_2() {
    let env = Env::new();
    let hosts = [
        "127.7.0.10",
        "127.7.0.11",
        "127.7.0.12",
        "127.7.0.13",
        "127.7.0.14",
        "127.7.0.15",
    ];
    let mut args = vec!["deploy"];
    args.extend(hosts);
    args.extend([
        "--batch",
        "1,2,50%",
        "--gate",
        "--controller",
        "https://127.7.0.1:8443",
        "--dry-run",
    ]);
    let out = env.run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("in 3 batch(es)"), "{text}");
    assert!(text.contains("a failed host stops the rollout"), "{text}");
    assert!(text.contains("the operator says when each batch"), "{text}");
    assert!(text.contains("1. batch 1"), "{text}");
    assert!(text.contains("3. batch 2"), "{text}");
    assert!(text.contains("6. batch 3"), "{text}");
    for (args, needle) in [
        (vec!["deploy", "h1", "--batch", "0"], "at least 1 host"),
        (vec!["deploy", "h1", "--batch", "1,,2"], "a number of hosts"),
        (vec!["deploy", "h1", "--max-failures", "150%"], "1% to 100%"),
        (vec!["deploy", "h1", "--resume"], "cannot be used with"),
        (vec!["deploy", "--resume"], "no unfinished rollout"),
    ] {
        let mut args = args.clone();
        args.extend(["--controller", "https://127.7.0.1:8443"]);
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
}
