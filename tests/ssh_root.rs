//! The SSH layer against real OpenSSH servers on loopback: host key
//! policies, key and passphrase authentication, failures classified, exec,
//! ProxyJump, and a listener that never speaks SSH.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use common::{Sshd, keygen, public_key, require_root};
use fleetctl::ssh::config::SshConfig;
use fleetctl::ssh::prompt::Answer;
use fleetctl::ssh::{
    ConnectFlags, Connector, FailureKind, HostKeyPolicy, LocalUser, NoPrompt, Prompter, SshError,
    SshTarget,
};

/// Answers passphrase questions with a fixed passphrase, and counts them.
struct Passphrase(&'static str, AtomicUsize);

impl Prompter for Passphrase {
    fn passphrase<'a>(&'a self, _key: &'a Path) -> Answer<'a> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move { Some(self.0.to_string()) })
    }
    fn password<'a>(&'a self, _user: &'a str, _host: &'a str) -> Answer<'a> {
        Box::pin(async { None })
    }
}

fn target(sshd: &Sshd, identity: &Path, user: &str) -> SshTarget {
    let flags = ConnectFlags {
        user: Some(user.into()),
        port: Some(sshd.addr.port()),
        identities: vec![identity.to_owned()],
        connect_timeout: Some(Duration::from_secs(5)),
        ..ConnectFlags::default()
    };
    SshTarget::resolve(
        &sshd.addr.ip().to_string(),
        &flags,
        &SshConfig::default(),
        &LocalUser::current(),
    )
    .unwrap()
}

/// Connects where the test expects a refusal, and returns why.
async fn refused(connector: &Connector, target: &SshTarget) -> SshError {
    match connector.connect(target).await {
        Ok(_) => panic!("connecting to {} should have failed", target.display()),
        Err(e) => e,
    }
}

fn connector(known_hosts: &Path, policy: HostKeyPolicy) -> Connector {
    Connector::new(known_hosts, policy, Arc::new(NoPrompt)).unwrap()
}

/// A host whose key is known, and a client key it accepts.
struct Fixture {
    dir: tempfile::TempDir,
    sshd: Sshd,
    key: PathBuf,
    known_hosts: PathBuf,
}

fn fixture(ip: &str, port: u16) -> Fixture {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(None, ip, port);
    let key = keygen(dir.path(), "client", "");
    sshd.authorize(&public_key(&key));
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("[{ip}]:{port} {}", sshd.host_key())).unwrap();
    Fixture {
        dir,
        sshd,
        key,
        known_hosts,
    }
}

#[tokio::test]
#[ignore = "needs root and sshd (openssh-server), installed by .ci/run"]
async fn exec_returns_stdout_stderr_and_status_separately() {
    let f = fixture("127.3.0.40", 2240);
    let session = connector(&f.known_hosts, HostKeyPolicy::Strict)
        .connect(&target(&f.sshd, &f.key, "root"))
        .await
        .unwrap();
    let out = session
        .exec("echo out; echo err >&2; exit 3")
        .await
        .unwrap();
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(out.status, 3);
    // The same connection serves several commands, also at once.
    let (a, b) = tokio::join!(session.run("uname -m"), session.run("id -u"));
    assert_eq!(String::from_utf8_lossy(&b.unwrap().stdout).trim(), "0");
    let local_arch = std::process::Command::new("uname")
        .arg("-m")
        .output()
        .unwrap()
        .stdout;
    assert_eq!(a.unwrap().stdout, local_arch);
    let err = session.run("echo broken >&2; false").await.unwrap_err();
    assert_eq!(err.kind(), FailureKind::CommandFailed);
    assert!(err.to_string().contains("broken"), "{err}");
    session.close().await;
}

#[tokio::test]
#[ignore = "needs root and sshd (openssh-server), installed by .ci/run"]
async fn unknown_keys_are_refused_learned_on_request_and_changes_refused() {
    let f = fixture("127.3.0.41", 2241);
    let fresh = f.dir.path().join("fresh_known_hosts");
    let t = target(&f.sshd, &f.key, "root");

    let err = refused(&connector(&fresh, HostKeyPolicy::Strict), &t).await;
    assert_eq!(err.kind(), FailureKind::HostKeyUnknown, "{err}");
    assert!(!fresh.exists(), "strict learns nothing");

    let learned = connector(&fresh, HostKeyPolicy::AcceptNew)
        .connect(&t)
        .await
        .unwrap();
    let fingerprint = learned.host_key().fingerprint();
    learned.close().await;
    let text = std::fs::read_to_string(&fresh).unwrap();
    assert!(text.starts_with("[127.3.0.41]:2241 ssh-ed25519 "), "{text}");
    // Learned: a strict connection now succeeds.
    connector(&fresh, HostKeyPolicy::Strict)
        .connect(&t)
        .await
        .unwrap()
        .close()
        .await;

    // Same address, new host key (the host was "reinstalled").
    drop(f.sshd);
    let reinstalled = Sshd::start(None, "127.3.0.41", 2241);
    reinstalled.authorize(&public_key(&f.key));
    for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
        let err = refused(&connector(&fresh, policy), &t).await;
        assert_eq!(err.kind(), FailureKind::HostKeyChanged, "{err}");
        let message = err.to_string();
        let new_fp = fleetctl::ssh::known_hosts::HostKey::from_openssh(&reinstalled.host_key())
            .unwrap()
            .fingerprint();
        assert!(
            message.contains(&fingerprint),
            "shows the expected key: {message}"
        );
        assert!(
            message.contains(&new_fp),
            "shows the offered key: {message}"
        );
        assert!(
            message.contains(&format!("{}:1", fresh.display())),
            "names the line: {message}"
        );
    }
}

#[tokio::test]
#[ignore = "needs root and sshd (openssh-server), installed by .ci/run"]
async fn wrong_key_and_wrong_user_are_auth_failures() {
    let f = fixture("127.3.0.42", 2242);
    let stranger = keygen(f.dir.path(), "stranger", "");
    let c = connector(&f.known_hosts, HostKeyPolicy::Strict);
    let err = refused(&c, &target(&f.sshd, &stranger, "root")).await;
    assert_eq!(err.kind(), FailureKind::AuthFailed, "{err}");
    assert!(
        err.to_string().contains("stranger"),
        "says what it tried: {err}"
    );
    let err = refused(&c, &target(&f.sshd, &f.key, "nosuchuser")).await;
    assert_eq!(err.kind(), FailureKind::AuthFailed, "{err}");
}

#[tokio::test]
#[ignore = "needs root and sshd (openssh-server), installed by .ci/run"]
async fn encrypted_keys_are_unlocked_with_the_prompted_passphrase() {
    let f = fixture("127.3.0.43", 2243);
    let locked = keygen(f.dir.path(), "locked", "correct horse");
    f.sshd.authorize(&public_key(&locked));
    let asked = Arc::new(Passphrase("correct horse", AtomicUsize::new(0)));
    let c = Connector::new(
        &f.known_hosts,
        HostKeyPolicy::Strict,
        Arc::clone(&asked) as Arc<dyn Prompter>,
    )
    .unwrap();
    c.connect(&target(&f.sshd, &locked, "root"))
        .await
        .unwrap()
        .close()
        .await;
    assert_eq!(asked.1.load(std::sync::atomic::Ordering::SeqCst), 1);

    // Nobody to ask: the key is skipped and authentication fails cleanly.
    let err = refused(
        &connector(&f.known_hosts, HostKeyPolicy::Strict),
        &target(&f.sshd, &locked, "root"),
    )
    .await;
    assert_eq!(err.kind(), FailureKind::AuthFailed, "{err}");
}

#[tokio::test]
#[ignore = "needs root and sshd (openssh-server), installed by .ci/run"]
async fn proxy_jump_reaches_a_host_through_another() {
    let inner = fixture("127.3.0.44", 2244);
    let jump = Sshd::start(None, "127.3.0.45", 2245);
    jump.authorize(&public_key(&inner.key));
    let known = std::fs::read_to_string(&inner.known_hosts).unwrap();
    let known = format!("{known}\n[127.3.0.45]:2245 {}", jump.host_key());
    std::fs::write(&inner.known_hosts, known).unwrap();

    let config = SshConfig::parse(
        &format!(
            "Host inner\n HostName 127.3.0.44\n Port 2244\n User root\n IdentityFile {key}\n ProxyJump gw\n\
             Host gw\n HostName 127.3.0.45\n Port 2245\n User root\n IdentityFile {key}\n",
            key = inner.key.display()
        ),
        Path::new("test-config"),
    )
    .unwrap();
    let t = SshTarget::resolve(
        "inner",
        &ConnectFlags::default(),
        &config,
        &LocalUser::current(),
    )
    .unwrap();
    let session = connector(&inner.known_hosts, HostKeyPolicy::Strict)
        .connect(&t)
        .await
        .unwrap();
    let out = session.run("echo $SSH_CONNECTION").await.unwrap();
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(seen.trim_end().ends_with("127.3.0.44 2244"), "{seen}");
    // And it went through the jump host: its sshd accepted our key.
    let jump_log = jump.log.lock().unwrap().clone();
    assert!(
        jump_log.contains("Accepted publickey for root"),
        "{jump_log}"
    );
}

#[tokio::test]
#[ignore = "needs root and sshd (openssh-server), installed by .ci/run"]
async fn a_listener_that_never_speaks_ssh_times_out_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.3.0.46:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let flags = ConnectFlags {
        port: Some(port),
        identities: vec![dir.path().join("none")],
        connect_timeout: Some(Duration::from_millis(800)),
        ..ConnectFlags::default()
    };
    let t = SshTarget::resolve(
        "127.3.0.46",
        &flags,
        &SshConfig::default(),
        &LocalUser::current(),
    )
    .unwrap();
    let start = Instant::now();
    let err = refused(
        &connector(&dir.path().join("kh"), HostKeyPolicy::Strict),
        &t,
    )
    .await;
    let took = start.elapsed();
    assert!(matches!(err, SshError::Timeout { .. }), "{err}");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(3),
        "{took:?}"
    );

    // A closed port is unreachable, at once.
    drop(listener);
    let err = refused(
        &connector(&dir.path().join("kh"), HostKeyPolicy::Strict),
        &t,
    )
    .await;
    assert_eq!(err.kind(), FailureKind::Unreachable, "{err}");
}
