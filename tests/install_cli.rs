//! Installing like a CLI: the completion scripts load in a real bash and
//! complete the subcommands; the manual page is roff that `man` renders.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{Env, stderr, stdout};

/// Every subcommand a user would look for in completions and the manual.
const SUBCOMMANDS: [&str; 16] = [
    "tui",
    "scan",
    "fingerprint",
    "deploy",
    "undeploy",
    "status",
    "agent",
    "config",
    "serve",
    "token",
    "agents",
    "revoke",
    "demo",
    "completions",
    "man",
    "help",
];

fn generated(env: &Env, args: &[&str]) -> String {
    let out = env.run(args);
    assert!(out.status.success(), "fleetctl {args:?}: {}", stderr(&out));
    stdout(&out)
}

/// Sources the script in a non-interactive bash, then runs `then`.
fn bash(script: &std::path::Path, then: &str) -> std::process::Output {
    Command::new("bash")
        .args(["--norc", "--noprofile", "-c"])
        .arg(format!("source {} && {then}", script.display()))
        .output()
        .unwrap()
}

#[test]
fn bash_completion_loads_and_completes_the_subcommands() {
    let env = Env::new();
    let script = env.dir.path().join("fleetctl.bash");
    std::fs::write(&script, generated(&env, &["completions", "bash"])).unwrap();

    let registered = bash(&script, "complete -p fleetctl");
    assert!(registered.status.success(), "{}", stderr(&registered));
    let registered = stdout(&registered);
    assert!(
        registered.starts_with("complete ") && registered.trim_end().ends_with(" fleetctl"),
        "{registered}"
    );

    // What bash does on `fleetctl <TAB>`: the function named by `complete -p`
    // with the words so far, and its answers in COMPREPLY.
    let function = registered
        .split_whitespace()
        .skip_while(|w| *w != "-F")
        .nth(1)
        .unwrap()
        .to_owned();
    let tab = |line: &str| {
        let words: Vec<&str> = line.split(' ').collect();
        let cword = words.len() - 1;
        let out = bash(
            &script,
            &format!(
                "COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{line}'; COMP_POINT={point}; \
                 {function} fleetctl '{cur}' '{prev}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                words = words
                    .iter()
                    .map(|w| format!("'{w}'"))
                    .collect::<Vec<_>>()
                    .join(" "),
                point = line.len(),
                cur = words[cword],
                prev = words[cword.saturating_sub(1)],
            ),
        );
        assert!(out.status.success(), "{line:?}: {}", stderr(&out));
        stdout(&out).lines().map(str::to_owned).collect::<Vec<_>>()
    };
    let offered = tab("fleetctl ");
    for sub in SUBCOMMANDS {
        assert!(offered.iter().any(|w| w == sub), "{sub} not in {offered:?}");
    }
    assert_eq!(tab("fleetctl dep"), ["deploy"]);
    let deploy_flags = tab("fleetctl deploy --agent-");
    assert!(
        deploy_flags.iter().any(|w| w == "--agent-binary"),
        "{deploy_flags:?}"
    );
    let shells = tab("fleetctl completions ");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        assert!(
            shells.iter().any(|w| w == shell),
            "{shell} not in {shells:?}"
        );
    }
}

#[test]
fn every_shell_gets_a_script_naming_the_subcommands() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = generated(&env, &["completions", shell]);
        for sub in ["scan", "deploy", "agent", "completions"] {
            assert!(script.contains(sub), "{shell}: no {sub}");
        }
    }
    let out = env.run(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("possible values"), "{}", stderr(&out));
}

#[test]
fn the_manual_page_is_roff_for_every_command() {
    let env = Env::new();
    let page = generated(&env, &["man"]);
    assert!(page.contains(".TH fleetctl 1"), "{page}");
    assert!(page.contains(".SH SUBCOMMANDS"), "{page}");
    for sub in SUBCOMMANDS {
        assert!(
            page.contains(&format!("fleetctl\\-{sub}")),
            "no {sub} in the page"
        );
    }

    let dir = env.dir.path().join("man1");
    let out = env.run(&["man", "--dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for page in [
        "fleetctl.1",
        "fleetctl-deploy.1",
        "fleetctl-agent.1",
        "fleetctl-config-show.1",
    ] {
        let text =
            std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.starts_with(".ie"), "{page}: {text}");
    }
    let deploy = std::fs::read_to_string(dir.join("fleetctl-deploy.1")).unwrap();
    assert!(deploy.contains("agent\\-binary"), "{deploy}");
}

#[test]
#[ignore = "needs man (man-db; the interop suite in .ci/run installs it)"]
fn man_renders_the_page() {
    let man = common::require_tool("man");
    let env = Env::new();
    let file = env.dir.path().join("fleetctl.1");
    std::fs::write(&file, generated(&env, &["man"])).unwrap();
    let out = Command::new(man)
        .arg("-l")
        .arg(&file)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .env("LANG", "C.UTF-8")
        .output()
        .unwrap();
    assert!(out.status.success(), "man -l: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("NAME"), "{text}");
    assert!(text.contains("fleetctl - Find hosts"), "{text}");
    assert!(
        !text.contains(".TH") && !text.contains("\\-"),
        "roff left raw:\n{text}"
    );
    for sub in SUBCOMMANDS {
        assert!(
            text.contains(&format!("fleetctl-{sub}")),
            "no {sub}:\n{text}"
        );
    }
}
