//! The dependency tree keeps to the one crypto backend the project chose.
//!
//! aws-lc-rs is the backend everywhere (jsonwebtoken 11 has no ring
//! backend, and rustls, russh and rcgen all offer aws-lc-rs), so a second
//! implementation of the same primitives must never be compiled in. This
//! reads the committed Cargo.lock, which is what every build uses.

#[test]
fn no_second_crypto_backend_is_locked_in() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock"))
        .expect("Cargo.lock is committed");
    let packages: Vec<&str> = lock
        .lines()
        .filter_map(|line| line.strip_prefix("name = \""))
        .map(|rest| rest.trim_end_matches('"'))
        .collect();
    assert!(
        packages.contains(&"fleetctl"),
        "not a Cargo.lock: {packages:?}"
    );
    for banned in ["ring", "openssl", "openssl-sys", "native-tls"] {
        assert!(
            !packages.contains(&banned),
            "{banned} is in Cargo.lock: select the aws-lc-rs features of the crate that pulled it in (cargo tree -i {banned})"
        );
    }
}
