//! Authentication and host keys against real OpenSSH, the ways an operator
//! meets them: keys held by a real ssh-agent, passwords (answered by the
//! front end's prompter, or by SSH_ASKPASS for the CLI), host keys confirmed
//! by the operator (`--host-key-policy ask`), and a host known only by its
//! RSA key that also has an ed25519 key.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Agent, Env, Sshd, TestUser, keygen, public_key, require_root, stderr};
use fleetctl::ssh::config::SshConfig;
use fleetctl::ssh::known_hosts::HostKey;
use fleetctl::ssh::prompt::{Answer, Confirm};
use fleetctl::ssh::{
    ConnectFlags, Connector, FailureKind, HostKeyPolicy, LocalUser, NoPrompt, Prompter, SshError,
    SshTarget,
};

/// Answers as a script says, and remembers what it was asked.
#[derive(Default)]
struct Scripted {
    password: Option<&'static str>,
    trust: bool,
    asked: Mutex<Vec<String>>,
}

impl Prompter for Scripted {
    fn passphrase<'a>(&'a self, _key: &'a Path) -> Answer<'a> {
        Box::pin(async { None })
    }
    fn password<'a>(&'a self, user: &'a str, host: &'a str) -> Answer<'a> {
        self.asked
            .lock()
            .unwrap()
            .push(format!("password {user}@{host}"));
        Box::pin(async { self.password.map(str::to_string) })
    }
    fn confirm_host_key<'a>(
        &'a self,
        host: &'a str,
        algorithm: &'a str,
        fingerprint: &'a str,
    ) -> Confirm<'a> {
        self.asked
            .lock()
            .unwrap()
            .push(format!("host key {host} {algorithm} {fingerprint}"));
        Box::pin(async { self.trust })
    }
}

fn target(ip: &str, port: u16, user: &str, identity: &Path) -> SshTarget {
    let flags = ConnectFlags {
        user: Some(user.into()),
        port: Some(port),
        identities: vec![identity.to_owned()],
        connect_timeout: Some(Duration::from_secs(5)),
        ..ConnectFlags::default()
    };
    SshTarget::resolve(ip, &flags, &SshConfig::default(), &LocalUser::current()).unwrap()
}

async fn refused(connector: &Connector, target: &SshTarget) -> SshError {
    match connector.connect(target).await {
        Ok(_) => panic!("connecting to {} should have failed", target.display()),
        Err(e) => e,
    }
}

fn fingerprint_of(public_key: &str) -> String {
    HostKey::from_openssh(public_key).unwrap().fingerprint()
}

#[test]
#[ignore = "needs root, sshd and ssh-agent (openssh-server, openssh-client), installed by .ci/run"]
fn keys_held_by_a_real_ssh_agent_log_in() {
    require_root();
    let env = Env::new();
    let dir = env.dir.path();
    let sshd = Sshd::start(None, "127.3.0.70", 2270);
    let key = keygen(dir, "agent-only", "");
    sshd.authorize(&public_key(&key));
    let agent = Agent::start(dir);
    agent.add(&key);
    // The key file goes: only the agent can sign now.
    std::fs::remove_file(&key).unwrap();
    let known_hosts = dir.join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("[127.3.0.70]:2270 {}", sshd.host_key()),
    )
    .unwrap();
    let run = |sock: Option<&Path>| {
        let mut cmd = env.cmd();
        cmd.args([
            "fingerprint",
            "-o",
            "json",
            "-l",
            "root",
            "-p",
            "2270",
            "-i",
        ])
        .arg(dir.join("agent-only"))
        .arg("--known-hosts")
        .arg(&known_hosts)
        .arg("127.3.0.70");
        match sock {
            Some(sock) => cmd.env("SSH_AUTH_SOCK", sock),
            None => cmd.env_remove("SSH_AUTH_SOCK"),
        };
        cmd.output().unwrap()
    };

    let out = run(Some(&agent.socket));
    assert!(
        out.status.success(),
        "{}\n{}",
        stderr(&out),
        sshd.log.lock().unwrap()
    );
    let results: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results[0]["facts"]["is_root"], true);
    assert!(
        sshd.log
            .lock()
            .unwrap()
            .contains("Accepted publickey for root")
    );

    let out = run(None);
    assert_eq!(
        out.status.code(),
        Some(1),
        "without the agent there is no key"
    );
    let results: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results[0]["failure"], "auth-failed");
}

#[tokio::test]
#[ignore = "needs root (useradd) and sshd (openssh-server), installed by .ci/run"]
async fn passwords_come_from_the_prompter_or_askpass_and_a_wrong_one_is_auth_failed() {
    require_root();
    let env = Env::new();
    let dir = env.dir.path();
    let user = TestUser::create("pw", "s3cret-pass");
    let sshd = Sshd::start_with(
        None,
        "127.3.0.71",
        2271,
        "PasswordAuthentication yes\nKbdInteractiveAuthentication no\n",
    );
    let known_hosts = dir.join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("[127.3.0.71]:2271 {}", sshd.host_key()),
    )
    .unwrap();
    let no_key = dir.join("no-such-key");
    let t = target("127.3.0.71", 2271, &user.name, &no_key);

    let right = Arc::new(Scripted {
        password: Some("s3cret-pass"),
        ..Scripted::default()
    });
    let c = Connector::new(&known_hosts, HostKeyPolicy::Strict, right.clone()).unwrap();
    let session = c.connect(&t).await.unwrap();
    let out = session.run("id -un").await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), user.name);
    session.close().await;
    assert_eq!(
        *right.asked.lock().unwrap(),
        [format!(
            "password {}@127.3.0.71 (127.3.0.71:2271)",
            user.name
        )]
    );

    let wrong = Arc::new(Scripted {
        password: Some("not-it"),
        ..Scripted::default()
    });
    let c = Connector::new(&known_hosts, HostKeyPolicy::Strict, wrong.clone()).unwrap();
    let err = refused(&c, &t).await;
    assert_eq!(err.kind(), FailureKind::AuthFailed, "{err}");
    assert!(err.to_string().contains("auth") || err.to_string().contains("authentication"));
    assert_eq!(
        wrong.asked.lock().unwrap().len(),
        3,
        "asked three times, as ssh does"
    );
    let c = Connector::new(&known_hosts, HostKeyPolicy::Strict, Arc::new(NoPrompt)).unwrap();
    assert_eq!(refused(&c, &t).await.kind(), FailureKind::AuthFailed);

    // The CLI asks through SSH_ASKPASS; the password is never in argv.
    let askpass = dir.join("askpass");
    std::fs::write(&askpass, "#!/bin/sh\necho s3cret-pass\n").unwrap();
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
    let fingerprint = |program: &Path| {
        env.cmd()
            .args([
                "fingerprint",
                "-o",
                "json",
                "-p",
                "2271",
                "-l",
                &user.name,
                "-i",
            ])
            .arg(&no_key)
            .arg("--known-hosts")
            .arg(&known_hosts)
            .arg("127.3.0.71")
            .env("SSH_ASKPASS", program)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .unwrap()
    };
    let out = fingerprint(&askpass);
    assert!(out.status.success(), "{}", stderr(&out));
    let results: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results[0]["facts"]["user"], user.name.as_str());
    assert_eq!(results[0]["facts"]["is_root"], false);

    let wrong_askpass = dir.join("wrong-askpass");
    std::fs::write(&wrong_askpass, "#!/bin/sh\necho guess\n").unwrap();
    std::fs::set_permissions(&wrong_askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = fingerprint(&wrong_askpass);
    assert_eq!(out.status.code(), Some(1));
    let results: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results[0]["failure"], "auth-failed");
    assert!(
        stderr(&out).contains("authentication failed"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
#[ignore = "needs root and sshd (openssh-server), installed by .ci/run"]
async fn ask_learns_a_key_on_yes_refuses_on_no_and_never_asks_about_a_changed_key() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "client", "");
    let sshd = Sshd::start(None, "127.3.0.73", 2273);
    sshd.authorize(&public_key(&key));
    let known_hosts = dir.path().join("known_hosts");
    let t = target("127.3.0.73", 2273, "root", &key);
    let expected = format!(
        "host key 127.3.0.73 (127.3.0.73:2273) ssh-ed25519 {}",
        fingerprint_of(&sshd.host_key())
    );

    let no = Arc::new(Scripted::default());
    let c = Connector::new(&known_hosts, HostKeyPolicy::Ask, no.clone()).unwrap();
    let err = refused(&c, &t).await;
    assert_eq!(err.kind(), FailureKind::HostKeyUnknown, "{err}");
    assert_eq!(
        no.asked.lock().unwrap().as_slice(),
        std::slice::from_ref(&expected)
    );
    assert!(!known_hosts.exists(), "no learns nothing");

    let yes = Arc::new(Scripted {
        trust: true,
        ..Scripted::default()
    });
    let c = Connector::new(&known_hosts, HostKeyPolicy::Ask, yes.clone()).unwrap();
    c.connect(&t).await.unwrap().close().await;
    c.connect(&t).await.unwrap().close().await;
    assert_eq!(
        *yes.asked.lock().unwrap(),
        [expected],
        "asked once, then known"
    );
    let text = std::fs::read_to_string(&known_hosts).unwrap();
    assert!(text.starts_with("[127.3.0.73]:2273 ssh-ed25519 "), "{text}");

    // Reinstalled: a changed key is refused without a question.
    drop(sshd);
    let reinstalled = Sshd::start(None, "127.3.0.73", 2273);
    reinstalled.authorize(&public_key(&key));
    let c = Connector::new(&known_hosts, HostKeyPolicy::Ask, yes.clone()).unwrap();
    let err = refused(&c, &t).await;
    assert_eq!(err.kind(), FailureKind::HostKeyChanged, "{err}");
    assert_eq!(
        yes.asked.lock().unwrap().len(),
        1,
        "not asked about a changed key"
    );
}

#[tokio::test]
#[ignore = "needs root and sshd (openssh-server), installed by .ci/run"]
async fn a_host_known_by_its_rsa_key_is_asked_for_that_key_not_reported_changed() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "client", "");
    let rsa = dir.path().join("host_rsa");
    let ok = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f"])
        .arg(&rsa)
        .status()
        .unwrap();
    assert!(ok.success());
    let sshd = Sshd::start_with(
        None,
        "127.3.0.74",
        2274,
        &format!("HostKey {}\n", rsa.display()),
    );
    sshd.authorize(&public_key(&key));
    let rsa_pub = std::fs::read_to_string(rsa.with_extension("pub")).unwrap();
    let t = target("127.3.0.74", 2274, "root", &key);
    let connect = |known: &str| {
        let known_hosts = dir.path().join("known_hosts");
        std::fs::write(&known_hosts, format!("[127.3.0.74]:2274 {known}")).unwrap();
        let c = Connector::new(&known_hosts, HostKeyPolicy::Strict, Arc::new(NoPrompt)).unwrap();
        let t = t.clone();
        async move {
            let session = c.connect(&t).await.unwrap();
            let seen = session.host_key().clone();
            session.close().await;
            seen
        }
    };
    let seen = connect(&rsa_pub).await;
    assert_eq!(seen.algorithm, "ssh-rsa");
    assert_eq!(seen.fingerprint(), fingerprint_of(&rsa_pub));
    let seen = connect(&sshd.host_key()).await;
    assert_eq!(
        seen.algorithm, "ssh-ed25519",
        "and ed25519 when that is the one known"
    );
}
