//! The dependency tree keeps to the one crypto backend the project chose,
//! and the agent-only build carries nothing of the console.
//!
//! aws-lc-rs is the backend everywhere (jsonwebtoken 11 has no ring
//! backend, and rustls, russh, rcgen and reqwest all offer aws-lc-rs), so a
//! second implementation of the same primitives must never be compiled in.
//! Cargo.lock also lists optional dependencies no feature turns on (`ring`
//! is in it), so this asks `cargo tree` what a build really compiles, on
//! every target.
//!
//! Which optional dependencies and features a crate turns on is written in
//! its own manifest, which cargo reads from the downloaded crate, not from
//! the index or the lockfile. A build fetches only the host platform's
//! crates, so on a fresh machine the other platforms' crates are not in the
//! cargo cache yet: `cargo tree` is run online and fetches them (a few small
//! crates, from the same registry the build used). `--offline` would make
//! the check depend on what an earlier build happened to leave in the cache.

use std::process::Command;

/// The packages `cargo tree` lists for every target, with `args` added
/// (features, edge kinds).
fn packages(args: &[&str]) -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--locked", "--target", "all"])
        .args(args)
        .args(["--prefix", "none", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree failed (it fetches the other platforms' crates from the registry the build used: is it reachable?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let packages: Vec<String> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    assert!(
        packages.iter().any(|p| p == "fleetctl"),
        "not a dependency tree: {tree}"
    );
    packages
}

#[test]
fn no_second_crypto_backend_is_compiled_in() {
    let packages = packages(&["-e", "normal,build"]);
    let packages: Vec<&str> = packages.iter().map(String::as_str).collect();
    for banned in ["ring", "openssl", "openssl-sys", "native-tls"] {
        assert!(
            !packages.contains(&banned),
            "{banned} is compiled in: select the aws-lc-rs features of the crate that pulls it in (cargo tree -i {banned} --target all)"
        );
    }
}

/// The console's crates: terminal UI, SSH client, SQLite, progress bars.
const CONSOLE_ONLY: [&str; 6] = [
    "ratatui",
    "crossterm",
    "russh",
    "russh-sftp",
    "rusqlite",
    "indicatif",
];

#[test]
fn the_agent_only_build_carries_nothing_of_the_console() {
    let agent = packages(&[
        "--no-default-features",
        "--features",
        "agent",
        "-e",
        "normal",
    ]);
    for console in CONSOLE_ONLY {
        assert!(
            !agent.iter().any(|p| p == console),
            "{console} is in the agent-only build: make it an optional dependency of the \
             `console` feature (cargo tree --no-default-features --features agent -i {console})"
        );
    }
    // The names are the ones cargo lists: the console's own build has them all.
    let console = packages(&["-e", "normal"]);
    for name in CONSOLE_ONLY {
        assert!(
            console.iter().any(|p| p == name),
            "{name} is not in the default build's tree: is the name right?"
        );
    }
}
