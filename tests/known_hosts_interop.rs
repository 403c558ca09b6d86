//! known_hosts written by OpenSSH's own tools reads back as OpenSSH means it.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{keygen, require_tool};
use fleetctl::ssh::known_hosts::{HostKey, KnownHosts, Verdict};

#[test]
#[ignore = "needs ssh-keygen (openssh-client), installed by .ci/run"]
fn entries_hashed_by_ssh_keygen_are_recognised_and_fingerprints_agree() {
    require_tool("ssh-keygen");
    let dir = tempfile::tempdir().unwrap();
    let key_path = keygen(dir.path(), "host", "");
    let public = std::fs::read_to_string(key_path.with_extension("pub")).unwrap();
    let key = HostKey::from_openssh(&public).unwrap();

    let known = dir.path().join("known_hosts");
    std::fs::write(
        &known,
        format!("# fleet\n[127.0.0.10]:2222 {public}db1 {public}"),
    )
    .unwrap();
    let hashed = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&known)
        .output()
        .unwrap();
    assert!(
        hashed.status.success(),
        "{}",
        String::from_utf8_lossy(&hashed.stderr)
    );
    let text = std::fs::read_to_string(&known).unwrap();
    assert!(
        text.contains("|1|") && !text.contains("db1"),
        "ssh-keygen -H hashed it: {text}"
    );

    let kh = KnownHosts::load(&known).unwrap();
    assert!(matches!(
        kh.check("127.0.0.10", 2222, &key),
        Verdict::Known { .. }
    ));
    assert!(matches!(kh.check("db1", 22, &key), Verdict::Known { .. }));
    assert_eq!(kh.check("db2", 22, &key), Verdict::Unknown);

    let printed = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key_path.with_extension("pub"))
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(
        printed.contains(&key.fingerprint()),
        "{printed} vs {}",
        key.fingerprint()
    );
}
