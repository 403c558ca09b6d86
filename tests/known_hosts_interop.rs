//! known_hosts written by OpenSSH's own tools reads back as OpenSSH means
//! it, and hosts are checked as OpenSSH checks them: against user and
//! global files as ssh_config names them (never this machine's own
//! /etc/ssh: a temporary ssh_config points at a temporary global file),
//! with HostKeyAlias and HashKnownHosts honoured. Real sshd on 127.12.2.x.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Env, Sshd, keygen, public_key, require_root, require_tool, stderr, stdout};
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

/// A real sshd, the operator's key, and a temporary ssh_config whose
/// `kh` host reaches it with `options` (known-hosts settings) added.
struct Setup {
    env: Env,
    sshd: Sshd,
    key: PathBuf,
}

impl Setup {
    fn new(ip: &str) -> Self {
        require_root();
        let env = Env::new();
        let key = keygen(env.dir.path(), "operator", "");
        let sshd = Sshd::start(None, ip, 2222);
        sshd.authorize(&public_key(&key));
        Self { env, sshd, key }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.env.dir.path().join(name)
    }

    /// `fleetctl fingerprint kh` under `policy`, with this ssh_config.
    fn fingerprint(&self, policy: &str, options: &str) -> Output {
        let config = self.path("ssh_config");
        std::fs::write(
            &config,
            format!(
                "Host kh\n HostName {}\n Port {}\n User root\n IdentityFile {}\n{options}",
                self.sshd.addr.ip(),
                self.sshd.addr.port(),
                self.key.display()
            ),
        )
        .unwrap();
        let mut cmd = self.env.cmd();
        cmd.args(["fingerprint", "-o", "json", "--host-key-policy", policy])
            .arg("--ssh-config")
            .arg(&config)
            .arg("kh");
        cmd.output().unwrap()
    }

    /// The known_hosts name of the server, as OpenSSH writes it.
    fn name(&self) -> String {
        format!("[{}]:{}", self.sshd.addr.ip(), self.sshd.addr.port())
    }
}

/// Another ed25519 public key, as a host that is not this one would show.
fn other_key(dir: &Path) -> String {
    public_key(&keygen(dir, "impostor", ""))
}

#[test]
#[ignore = "needs root and sshd (openssh-server), installed by .ci/run"]
fn a_key_pinned_in_a_global_file_is_changed_not_new_under_accept_new() {
    let setup = Setup::new("127.12.2.10");
    let global = setup.path("ssh_known_hosts");
    let user = setup.path("known_hosts");
    std::fs::write(
        &global,
        format!(
            "# pinned by the fleet\n{} {}",
            setup.name(),
            other_key(setup.env.dir.path())
        ),
    )
    .unwrap();
    let options = format!(
        " GlobalKnownHostsFile {}\n UserKnownHostsFile {}\n",
        global.display(),
        user.display()
    );
    for policy in ["accept-new", "ask", "strict"] {
        let out = setup.fingerprint(policy, &options);
        assert_eq!(out.status.code(), Some(1), "{policy}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("HOST KEY CHANGED") && err.contains(&format!("{}:2", global.display())),
            "{policy}: the message names the global file and line: {err}"
        );
        let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(json[0]["failure"], "host-key-changed", "{policy}");
        assert!(!user.exists(), "{policy}: nothing learned");
    }

    // Revoked in the global file: refused whatever the user file says.
    let real = setup.sshd.host_key();
    std::fs::write(&global, format!("@revoked * {real}")).unwrap();
    std::fs::write(&user, format!("{} {real}", setup.name())).unwrap();
    let out = setup.fingerprint("accept-new", &options);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("@revoked") && stderr(&out).contains(&global.display().to_string()),
        "{}",
        stderr(&out)
    );

    // Pinned globally with the right key: known, nothing learned.
    std::fs::write(&global, format!("{} {real}", setup.name())).unwrap();
    std::fs::remove_file(&user).unwrap();
    let out = setup.fingerprint("strict", &options);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!user.exists(), "a key known globally is not learned again");
}

#[test]
#[ignore = "needs root and sshd (openssh-server), installed by .ci/run"]
fn hash_known_hosts_yes_learns_a_hashed_entry_openssh_reads() {
    let setup = Setup::new("127.12.2.11");
    let user = setup.path("known_hosts");
    let options = format!(
        " UserKnownHostsFile {} {}\n GlobalKnownHostsFile none\n HashKnownHosts yes\n",
        user.display(),
        setup.path("known_hosts2").display()
    );
    let out = setup.fingerprint("accept-new", &options);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&user).unwrap();
    assert!(
        text.starts_with("|1|") && !text.contains("127.12.2.11"),
        "hashed: {text}"
    );
    assert!(
        !setup.path("known_hosts2").exists(),
        "the first user file learns"
    );
    // OpenSSH's own tools find it, and the next run knows the host.
    let found = Command::new(require_tool("ssh-keygen"))
        .args(["-F", &setup.name(), "-f"])
        .arg(&user)
        .output()
        .unwrap();
    assert!(found.status.success(), "ssh-keygen -F: {}", stdout(&found));
    let ssh = Command::new(require_tool("ssh"))
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
        .args(["-o", "GlobalKnownHostsFile=/dev/null", "-o"])
        .arg(format!("UserKnownHostsFile={}", user.display()))
        .arg("-i")
        .arg(&setup.key)
        .args(["-p", "2222", "root@127.12.2.11", "true"])
        .output()
        .unwrap();
    assert!(
        ssh.status.success(),
        "ssh with the learned entry: {}",
        stderr(&ssh)
    );
    let again = setup.fingerprint("strict", &options);
    assert!(again.status.success(), "{}", stderr(&again));
}

#[test]
#[ignore = "needs root and sshd (openssh-server), installed by .ci/run"]
fn host_key_alias_names_the_entry_and_a_second_user_file_counts() {
    let setup = Setup::new("127.12.2.12");
    let (first, second) = (setup.path("known_hosts"), setup.path("known_hosts2"));
    std::fs::write(&second, format!("fleet-db {}", setup.sshd.host_key())).unwrap();
    let options = format!(
        " HostKeyAlias fleet-db\n UserKnownHostsFile {} {}\n GlobalKnownHostsFile none\n",
        first.display(),
        second.display()
    );
    let out = setup.fingerprint("strict", &options);
    assert!(
        out.status.success(),
        "known under its alias: {}",
        stderr(&out)
    );

    // Learned under the alias, as `ssh -o HostKeyAlias=` writes it.
    std::fs::remove_file(&second).unwrap();
    let out = setup.fingerprint("accept-new", &options);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&first).unwrap();
    assert!(text.starts_with("fleet-db ssh-ed25519 "), "{text}");
}

#[test]
fn an_unreadable_known_hosts_file_stops_the_connection_before_it_starts() {
    // Skipping it could hide the key a host is pinned to: refused, with
    // what to do, before any packet is sent.
    let env = Env::new();
    let config = env.dir.path().join("ssh_config");
    std::fs::write(
        &config,
        format!("Host *\n UserKnownHostsFile {}\n", env.dir.path().display()),
    )
    .unwrap();
    let out = env
        .cmd()
        .args(["fingerprint", "127.12.2.20", "--ssh-config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("Is a directory") && err.contains("make it readable"),
        "{err}"
    );
    common::assert_causes_once(&err);
}
