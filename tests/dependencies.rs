//! The dependency tree keeps to the one crypto backend the project chose.
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

#[test]
fn no_second_crypto_backend_is_compiled_in() {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--locked",
            "--target",
            "all",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree failed (it fetches the other platforms' crates from the registry the build used: is it reachable?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let packages: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(
        packages.contains(&"fleetctl"),
        "not a dependency tree: {tree}"
    );
    for banned in ["ring", "openssl", "openssl-sys", "native-tls"] {
        assert!(
            !packages.contains(&banned),
            "{banned} is compiled in: select the aws-lc-rs features of the crate that pulls it in (cargo tree -i {banned} --target all)"
        );
    }
}
