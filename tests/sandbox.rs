//! The demo fleet against real clients: OpenSSH's ssh and sftp, and
//! fleetctl's own SSH layer and fingerprint job. Each test has its own
//! /24 of 127.8.0.0/16 and its own lock file, so they run in parallel.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetctl::model::Reach;
use fleetctl::sandbox::{HostFault, Relay, Sandbox, SandboxError, SandboxHost, SandboxOptions};
use fleetctl::ssh::{Connector, FailureKind, HostKeyPolicy, NoPrompt, Session, SshTarget};

struct Fixture {
    sandbox: Sandbox,
    lock_dir: tempfile::TempDir,
}

async fn start(block: u8, hosts: usize, faults: &[(usize, HostFault)]) -> Fixture {
    let lock_dir = tempfile::tempdir().unwrap();
    let mut options = SandboxOptions::new(Ipv4Addr::new(127, 8, block, 10));
    options.hosts = hosts;
    options.lock_file = lock_dir.path().join("sandbox.lock");
    for &(i, f) in faults {
        options = options.fault(i, f);
    }
    let sandbox = Sandbox::start(options).await.unwrap();
    Fixture { sandbox, lock_dir }
}

/// OpenSSH client options with nothing of the user's own: only the
/// sandbox's key and known_hosts, checked strictly.
fn client_options(sandbox: &Sandbox) -> Vec<std::ffi::OsString> {
    let mut known_hosts = std::ffi::OsString::from("UserKnownHostsFile=");
    known_hosts.push(sandbox.known_hosts());
    vec![
        "-F".into(),
        "/dev/null".into(),
        "-i".into(),
        sandbox.client_key().into(),
        "-o".into(),
        known_hosts,
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
    ]
}

/// `ssh` with nothing of the user's own: only the sandbox's key and known_hosts.
fn ssh(sandbox: &Sandbox, host: &SandboxHost, command: &str, stdin: &[u8]) -> Output {
    let mut child = Command::new(common::require_tool("ssh"))
        .args(client_options(sandbox))
        .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-p"])
        .arg(host.addr.port().to_string())
        .arg(format!("{}@{}", sandbox.user(), host.addr.ip()))
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn target(sandbox: &Sandbox, host: &SandboxHost, timeout: Duration) -> SshTarget {
    SshTarget {
        alias: host.name.clone(),
        hostname: host.addr.ip().to_string(),
        port: host.addr.port(),
        user: sandbox.user().to_string(),
        identities: vec![sandbox.client_key().to_owned()],
        identities_only: true,
        connect_timeout: timeout,
        jump: None,
        // The sandbox's own known_hosts only (the connector's file).
        known_hosts: fleetctl::ssh::host_keys::KnownHostsFiles::default(),
        host_key_alias: None,
    }
}

fn connector(sandbox: &Sandbox) -> Connector {
    Connector::new(
        sandbox.known_hosts(),
        HostKeyPolicy::Strict,
        Arc::new(NoPrompt),
    )
    .unwrap()
}

async fn session(sandbox: &Sandbox, index: usize) -> Session {
    let host = &sandbox.hosts()[index];
    connector(sandbox)
        .connect(&target(sandbox, host, Duration::from_secs(5)))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_client_logs_in_with_strict_host_keys_and_runs_commands() {
    let fx = start(1, 3, &[]).await;
    let sb = &fx.sandbox;
    let host = sb.hosts()[1].clone();
    let sb2_known = sb.known_hosts().to_owned();
    let out = tokio::task::block_in_place(|| ssh(sb, &host, "hostname", b""));
    assert!(out.status.success(), "ssh failed: {}", common::stderr(&out));
    assert_eq!(common::stdout(&out), "demo-02\n");

    let out = tokio::task::block_in_place(|| ssh(sb, &host, "hostname -f; pwd; echo $HOME", b""));
    let home = host.home.display().to_string();
    assert_eq!(
        common::stdout(&out),
        format!("demo-02.sandbox.test\n{home}\n{home}\n")
    );

    // stdin reaches the command; stderr and the exit status come back apart.
    let out = tokio::task::block_in_place(|| {
        ssh(sb, &host, "tr a-z A-Z; echo oops >&2; exit 3", b"hello\n")
    });
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(common::stdout(&out), "HELLO\n");
    assert_eq!(common::stderr(&out), "oops\n");

    // Large transfers both ways, as a deploy piping a binary through `cat` would.
    let big = vec![b'x'; 3_000_000];
    let out = tokio::task::block_in_place(|| {
        ssh(sb, &host, "cat > blob && wc -c < blob && cat blob", &big)
    });
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(out.stdout.starts_with(b"3000000\n"));
    assert_eq!(out.stdout.len(), "3000000\n".len() + big.len());

    // Strict checking is real: with another host's key listed, ssh refuses.
    let text = std::fs::read_to_string(&sb2_known).unwrap();
    assert_eq!(text.lines().count(), 3);
    let entry = format!("[{}]:2222 ", host.addr.ip());
    assert!(text.contains(&format!("{entry}{}", host.host_key)));
    let swapped = text.replace(&host.host_key, &sb.hosts()[0].host_key);
    std::fs::write(&sb2_known, swapped).unwrap();
    let out = tokio::task::block_in_place(|| ssh(sb, &host, "hostname", b""));
    assert_eq!(out.status.code(), Some(255));
    assert!(
        common::stderr(&out).contains("Host key verification failed"),
        "{}",
        common::stderr(&out)
    );
    fx.sandbox.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleetctl_ssh_layer_runs_commands_and_the_fingerprint_job() {
    let fx = start(2, 4, &[]).await;
    let sb = &fx.sandbox;
    let s = session(sb, 3).await;
    let out = s
        .run("hostname; echo $FLEETCTL_SANDBOX_HOST")
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "demo-04\ndemo-04\n");
    let sudo = s.exec("sudo -n true").await.unwrap();
    assert_eq!(sudo.status, 1);
    assert!(String::from_utf8_lossy(&sudo.stderr).contains("grants no root"));
    let failed = s.exec("exit 7").await.unwrap();
    assert_eq!(failed.status, 7);
    let killed = s.exec("kill -TERM $$").await.unwrap_err();
    assert!(killed.to_string().contains("TERM"), "{killed}");
    s.close().await;

    let targets = sb
        .hosts()
        .iter()
        .map(|h| target(sb, h, Duration::from_secs(5)))
        .collect();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    fleetctl::fingerprint::job::run(
        Arc::new(connector(sb)),
        targets,
        4,
        Duration::from_secs(20),
        tokio_util::sync::CancellationToken::new(),
        tx,
    )
    .await;
    let mut names = Vec::new();
    let uname = Command::new("uname").arg("-srv").output().unwrap();
    while let Some(done) = rx.recv().await {
        assert_eq!(done.error, None, "{}", done.host);
        let host = sb.hosts().iter().find(|h| h.name == done.host).unwrap();
        let facts = done.facts.unwrap();
        let name = facts.hostname.clone().unwrap();
        assert_eq!(facts.fqdn, Some(format!("{name}.sandbox.test")));
        assert_eq!(facts.kernel.as_deref(), Some(common::stdout(&uname).trim()));
        assert!(facts.cpu_count.unwrap() >= 1);
        assert!(facts.mem_total_bytes.unwrap() > 0);
        assert_eq!(facts.user.as_deref(), Some(sb.user()));
        assert!(host.host_key.starts_with("ssh-ed25519 "));
        names.push(name);
    }
    names.sort();
    assert_eq!(names, ["demo-01", "demo-02", "demo-03", "demo-04"]);
    fx.sandbox.shutdown().await.unwrap();
}

fn sftp_batch(sandbox: &Sandbox, host: &SandboxHost, batch: &str) -> Output {
    let file = sandbox.root().with_extension("batch");
    std::fs::write(&file, batch).unwrap();
    let out = Command::new(common::require_tool("sftp"))
        .args(client_options(sandbox))
        .arg("-P")
        .arg(host.addr.port().to_string())
        .arg("-b")
        .arg(&file)
        .arg(format!("{}@{}", sandbox.user(), host.addr.ip()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    std::fs::remove_file(file).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_sftp_uploads_and_downloads_inside_the_host_only() {
    let fx = start(3, 2, &[]).await;
    let sb = &fx.sandbox;
    let host = sb.hosts()[0].clone();
    let local = tempfile::tempdir().unwrap();
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(local.path().join("up.bin"), &payload).unwrap();
    let l = local.path().display();
    let batch = format!(
        "mkdir agent\nput {l}/up.bin agent/fleetctl\nchmod 755 agent/fleetctl\nget agent/fleetctl {l}/down.bin\nls -l agent\n"
    );
    let out = tokio::task::block_in_place(|| sftp_batch(sb, &host, &batch));
    assert!(
        out.status.success(),
        "sftp failed: {}",
        common::stderr(&out)
    );
    let uploaded = host.home.join("agent/fleetctl");
    assert_eq!(std::fs::read(&uploaded).unwrap(), payload);
    assert_eq!(
        std::fs::read(local.path().join("down.bin")).unwrap(),
        payload
    );
    assert_eq!(
        std::fs::metadata(&uploaded).unwrap().permissions().mode() & 0o777,
        0o755
    );

    // Outside the host's directory: by `..`, by absolute path, through a symlink.
    let s = session(sb, 0).await;
    s.run("ln -s / escape").await.unwrap();
    s.close().await;
    let other_home = sb.hosts()[1].home.display().to_string();
    for escape in [
        "get ../../demo-02/home/x /dev/null".to_string(),
        format!("put {l}/up.bin {other_home}/planted"),
        "get /etc/hostname /dev/null".to_string(),
        "get escape/etc/hostname /dev/null".to_string(),
        "ls escape/".to_string(),
    ] {
        let out = tokio::task::block_in_place(|| sftp_batch(sb, &host, &format!("{escape}\n")));
        assert!(
            !out.status.success(),
            "`{escape}` was not refused: {}{}",
            common::stdout(&out),
            common::stderr(&out)
        );
    }
    assert!(!sb.hosts()[1].home.join("planted").exists());
    fx.sandbox.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faulty_hosts_fail_as_an_operator_would_see_them() {
    let fx = start(4, 3, &[(1, HostFault::RejectsKey), (2, HostFault::Silent)]).await;
    let sb = &fx.sandbox;
    let c = connector(sb);
    let t = |i: usize| target(sb, &sb.hosts()[i], Duration::from_secs(2));

    let err = c.connect(&t(1)).await.err().unwrap();
    assert_eq!(err.kind(), FailureKind::AuthFailed, "{err}");

    // A TCP connect to the silent host gets neither an answer nor a refusal.
    let silent = sb.hosts()[2].addr;
    let started = Instant::now();
    let tcp = tokio::task::block_in_place(|| {
        TcpStream::connect_timeout(&silent, Duration::from_millis(1500))
    });
    let e = tcp.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
    assert!(started.elapsed() >= Duration::from_millis(1400));
    let err = c.connect(&t(2)).await.err().unwrap();
    assert_eq!(err.kind(), FailureKind::Timeout, "{err}");
    // fleetctl's own TCP scan of the SSH port finds the silent host silent.
    let env = common::Env::new();
    let [healthy, silent] = [0, 2].map(|i| sb.hosts()[i].addr.ip().to_string());
    let scanned = tokio::task::block_in_place(|| {
        env.scan_json(&[
            "-m",
            "tcp",
            "--ports",
            "2222",
            "--no-banner",
            &healthy,
            &silent,
        ])
    });
    let reach = |ip: &str| {
        let h = scanned.iter().find(|h| h.addr.to_string() == ip).unwrap();
        (h.reach, h.open_ports.clone())
    };
    assert_eq!(reach(&healthy), (Reach::Alive, vec![2222]));
    assert_eq!(reach(&silent), (Reach::Silent, vec![]));

    // The healthy host is unaffected.
    c.connect(&t(0)).await.unwrap().close().await;
    fx.sandbox.shutdown().await.unwrap();
}

/// Whether `pid` still runs (a zombie has exited: only its reaping is left).
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat.rsplit(')').next().unwrap().trim_start();
    !state.starts_with('Z') && !state.starts_with('X')
}

fn wait_for(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_every_process_and_removes_the_root() {
    let fx = start(5, 2, &[]).await;
    let sb = &fx.sandbox;
    let s = session(sb, 1).await;
    // One in the background of its exec's group, one daemonized out of it.
    let bg = s
        .run("sleep 300 >/dev/null 2>&1 </dev/null & echo $!")
        .await
        .unwrap();
    s.run("setsid sh -c 'echo $$ > daemon.pid; exec sleep 301' >/dev/null 2>&1 </dev/null &")
        .await
        .unwrap();
    // And one that dropped the sandbox's mark from its environment.
    let bare = s
        .run("env -i sleep 302 >/dev/null 2>&1 </dev/null & echo $!")
        .await
        .unwrap();
    s.close().await;
    let bare: u32 = String::from_utf8_lossy(&bare.stdout)
        .trim()
        .parse()
        .unwrap();
    let bg: u32 = String::from_utf8_lossy(&bg.stdout).trim().parse().unwrap();
    let daemon: u32 = wait_for(&sb.hosts()[1].home.join("daemon.pid"))
        .trim()
        .parse()
        .unwrap();
    assert!(alive(bg) && alive(daemon) && alive(bare));
    let root = sb.root().to_owned();
    assert!(root.join("demo_key").exists());

    fx.sandbox.shutdown().await.unwrap();
    assert!(!alive(bg), "background process {bg} survived");
    assert!(!alive(daemon), "daemon {daemon} survived");
    assert!(!alive(bare), "unmarked process {bare} survived");
    assert!(!root.exists(), "{} left behind", root.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sandbox_is_refused_naming_the_running_one() {
    let fx = start(6, 1, &[]).await;
    let mut options = SandboxOptions::new(Ipv4Addr::new(127, 8, 6, 100));
    options.hosts = 1;
    options.lock_file = fx.lock_dir.path().join("sandbox.lock");
    let err = Sandbox::start(options.clone()).await.unwrap_err();
    assert!(
        matches!(err, SandboxError::AlreadyRunning { pid: Some(p), .. } if p == std::process::id())
    );
    assert!(
        err.to_string()
            .contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    // Dropping the first (the fallback path) releases the lock and cleans up.
    let root = fx.sandbox.root().to_owned();
    drop(fx.sandbox);
    assert!(!root.exists());
    Sandbox::start(options)
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_forwards_until_cut_then_goes_silent_until_restored() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let echo = tokio::net::TcpListener::bind("127.8.7.1:0").await.unwrap();
    let target = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let relay = Relay::start("127.8.7.2:0".parse().unwrap(), target)
        .await
        .unwrap();
    let through = |relay: &Relay| {
        let addr: SocketAddr = relay.addr();
        async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"ping").await.unwrap();
            let mut buf = [0; 4];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
            s
        }
    };
    let mut live = through(&relay).await;
    assert_eq!(relay.relayed(), 1);

    relay.cut().await.unwrap();
    assert!(relay.is_cut().await);
    let mut buf = [0; 1];
    let read = tokio::time::timeout(Duration::from_secs(2), live.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "the live connection was not cut"
    );
    let addr = relay.addr();
    let e =
        tokio::task::block_in_place(|| TcpStream::connect_timeout(&addr, Duration::from_secs(1)))
            .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");

    relay.restore().await.unwrap();
    through(&relay).await;
    assert_eq!(relay.relayed(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_hosts_start_and_answer() {
    let started = Instant::now();
    let lock_dir = tempfile::tempdir().unwrap();
    let mut options = SandboxOptions::new(Ipv4Addr::new(127, 8, 10, 0));
    options.hosts = 200;
    options.lock_file = lock_dir.path().join("sandbox.lock");
    let sb = Sandbox::start(options).await.unwrap();
    eprintln!("200 hosts started in {:?}", started.elapsed());
    assert_eq!(sb.hosts()[199].addr, "127.8.10.199:2222".parse().unwrap());
    for i in [0, 199] {
        let s = session(&sb, i).await;
        let out = s.run("hostname").await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("demo-{:02}\n", i + 1)
        );
        s.close().await;
    }
    sb.shutdown().await.unwrap();
}

/// A russh client that trusts exactly one host key: the one the sandbox listed.
struct PinnedKey(russh::keys::PublicKey);

impl russh::client::Handler for PinnedKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(
            matches!(offered, russh::keys::PublicKeyOrCertificate::PublicKey { key, .. }
            if key.key_data() == self.0.key_data()),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn russh_sftp_client_uploads_as_a_deploy_would() {
    use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey};
    use russh_sftp::protocol::FileAttributes;
    use tokio::io::AsyncWriteExt as _;

    let fx = start(8, 1, &[]).await;
    let sb = &fx.sandbox;
    let host = &sb.hosts()[0];
    let pinned = PinnedKey(PublicKey::from_openssh(&host.host_key).unwrap());
    let config = Arc::new(russh::client::Config::default());
    let mut handle = russh::client::connect(config, host.addr, pinned)
        .await
        .unwrap();
    let key = PrivateKey::from_openssh(std::fs::read(sb.client_key()).unwrap()).unwrap();
    let auth = handle
        .authenticate_publickey(sb.user(), PrivateKeyWithHashAlg::new(Arc::new(key), None))
        .await
        .unwrap();
    assert!(auth.success());
    let channel = handle.channel_open_session().await.unwrap();
    channel.request_subsystem(true, "sftp").await.unwrap();
    let sftp = russh_sftp::client::SftpSession::new(channel.into_stream())
        .await
        .unwrap();

    let home = sftp.canonicalize(".").await.unwrap();
    assert_eq!(Path::new(&home), host.home);
    sftp.create_dir(".fleetctl").await.unwrap();
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let mut file = sftp.create(".fleetctl/agent.part").await.unwrap();
    file.write_all(&payload).await.unwrap();
    file.shutdown().await.unwrap();
    let attrs = FileAttributes {
        permissions: Some(0o755),
        ..FileAttributes::default()
    };
    sftp.set_metadata(".fleetctl/agent.part", attrs)
        .await
        .unwrap();
    sftp.rename(".fleetctl/agent.part", format!("{home}/.fleetctl/agent"))
        .await
        .unwrap();
    let meta = sftp.metadata(".fleetctl/agent").await.unwrap();
    assert_eq!(meta.size, Some(payload.len() as u64));
    assert_eq!(sftp.read(".fleetctl/agent").await.unwrap(), payload);
    assert!(!sftp.try_exists("missing").await.unwrap());
    let names: Vec<String> = sftp
        .read_dir(".fleetctl")
        .await
        .unwrap()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["agent"]);
    let on_disk = host.home.join(".fleetctl/agent");
    assert_eq!(
        std::fs::metadata(&on_disk).unwrap().permissions().mode() & 0o777,
        0o755
    );

    for outside in ["../outside", "/tmp/outside", "../../../../../tmp/outside"] {
        assert!(sftp.create(outside).await.is_err(), "{outside} was created");
    }
    assert!(sftp.metadata("/etc/passwd").await.is_err());
    fx.sandbox.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleetctl_fingerprint_cli_tells_healthy_rejecting_and_silent_hosts_apart() {
    let fx = start(9, 3, &[(1, HostFault::RejectsKey), (2, HostFault::Silent)]).await;
    let sb = &fx.sandbox;
    let env = common::Env::new();
    let key = sb.client_key().display().to_string();
    let known = sb.known_hosts().display().to_string();
    let mut args = vec![
        "fingerprint",
        "-o",
        "json",
        "-l",
        sb.user(),
        "-p",
        "2222",
        "-i",
        &key,
        "--known-hosts",
        &known,
        "--connect-timeout",
        "1s",
    ];
    let ips: Vec<String> = sb.hosts().iter().map(|h| h.addr.ip().to_string()).collect();
    args.extend(ips.iter().map(String::as_str));
    let out = tokio::task::block_in_place(|| env.run(&args));
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let row = |ip: &str| rows.iter().find(|r| r["address"] == ip).unwrap().clone();
    assert_eq!(row(&ips[0])["facts"]["hostname"], "demo-01");
    assert_eq!(row(&ips[1])["failure"], "auth-failed");
    assert_eq!(row(&ips[2])["failure"], "timeout");
    fx.sandbox.shutdown().await.unwrap();
}
