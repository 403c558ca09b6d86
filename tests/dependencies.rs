//! The dependency tree keeps to the one crypto backend the project chose.
//!
//! aws-lc-rs is the backend everywhere (jsonwebtoken 11 has no ring
//! backend, and rustls, russh, rcgen and reqwest all offer aws-lc-rs), so a
//! second implementation of the same primitives must never be compiled in.
//! Cargo.lock also lists optional dependencies no feature turns on, so this
//! asks `cargo tree` what a build really compiles, on every target.

use std::process::Command;

#[test]
fn no_second_crypto_backend_is_compiled_in() {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--locked",
            "--offline",
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
        "cargo tree failed: {}",
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
