//! The engine wired to a real fleet: a control plane started in-process on
//! 127.9.0.1 (as the console embeds it) and real `fleetctl agent`
//! processes on 127.9.1.x. The snapshot must show them registered, with a
//! valid token and live CPU and memory whose history grows; a revocation
//! from the engine shows as revoked and its certificate is then refused; a
//! killed agent becomes unreachable
//! and is read less and less often. `fleetctl status` shows the same fleet.
#![allow(clippy::unwrap_used)]

mod fleet;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleet::Proc;
use fleetctl::control::{self, ControlPlane, Settings};
use fleetctl::engine::{
    self, Command as EngineCommand, ControlLink, DeploySettings, EngineConfig, Event, Events,
    FleetSnapshot, HostView, JobKind, JobOutcome, PollSettings, Questions, RevokeRequest,
    SshSettings,
};
use fleetctl::model::{AgentState, RegistrationState, TokenState};
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(30);

struct Plane {
    dir: tempfile::TempDir,
    url: String,
    control: Arc<ControlPlane>,
    stop: CancellationToken,
}

async fn start_plane() -> Plane {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        heartbeat_interval: Duration::from_secs(1),
        lost_after: Duration::from_secs(5),
        ..Settings::default()
    };
    let plane = ControlPlane::open(
        &dir.path().join("control"),
        &dir.path().join("inventory.sqlite3"),
        settings,
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.9.0.1:0").await.unwrap();
    let stop = CancellationToken::new();
    let started =
        control::start(listener, Arc::clone(&plane), stop.clone().cancelled_owned()).unwrap();
    Plane {
        dir,
        url: started.url,
        control: plane,
        stop,
    }
}

/// A `fleetctl agent` on `ip` (port 0), enrolled with a join token for `ip`.
fn start_agent(plane: &Plane, ip: &str) -> (Proc, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let token = plane
        .control
        .join_token(&fleetctl::auth::JoinGrant::new(ip), None)
        .unwrap()
        .0;
    let token_file = dir.path().join("join.token");
    write_secret(&token_file, &token);
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "controller = \"{}\"\nca_file = \"{}\"\njoin_token_file = \"{}\"\n\
             data_dir = \"{}\"\nlisten = \"{ip}:0\"\nhostname = \"node-{}.test\"\n\
             sample_interval = \"300ms\"\n",
            plane.url,
            plane.dir.path().join("control/ca.pem").display(),
            token_file.display(),
            dir.path().join("data").display(),
            ip.replace('.', "-"),
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleetctl"));
    cmd.env_remove("FLEETCTL_CONFIG")
        .env_remove("FLEETCTL_DATA_DIR")
        .env("RUST_LOG", "info")
        .arg("agent")
        .arg("--config")
        .arg(&config);
    let mut proc = Proc::spawn_command(cmd);
    let line = proc.wait_log("stats API listening on", Duration::from_secs(10));
    let addr = line.rsplit(' ').next().unwrap().parse().unwrap();
    (proc, addr, dir)
}

fn write_secret(path: &Path, text: &str) {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
}

fn engine_config(plane: &Plane) -> EngineConfig {
    EngineConfig {
        inventory: Some(plane.dir.path().join("inventory.sqlite3")),
        keep_fleet: true,
        scan: fleetctl::engine::ScanConfig::default(),
        max_in_flight: 16,
        ssh: SshSettings {
            known_hosts: Some("/nonexistent/known_hosts".into()),
            ssh_config: Some("/nonexistent/ssh_config".into()),
            policy: fleetctl::ssh::HostKeyPolicy::Strict,
            flags: fleetctl::ssh::ConnectFlags::default(),
            concurrency: 4,
            timeout: Duration::from_secs(5),
        },
        control: Some(ControlLink {
            url: plane.url.clone(),
            replicas: Vec::new(),
            control_dir: plane.dir.path().join("control"),
            operator_ttl: Duration::from_mins(1),
        }),
        poll: Some(PollSettings {
            interval: Duration::from_millis(400),
            timeout: Duration::from_secs(1),
            concurrency: 8,
            max_backoff: Duration::from_secs(4),
            registry_interval: Duration::from_millis(500),
            agent_listen: "0.0.0.0:9701".into(),
            ..PollSettings::default()
        }),
        deploy: DeploySettings::default(),
        questions: Questions::Events,
    }
}

/// Waits (bounded) until the host at `addr` satisfies `ok`.
async fn wait_host(
    engine: &engine::EngineHandle,
    addr: IpAddr,
    what: &str,
    ok: impl Fn(&HostView) -> bool,
) -> Arc<HostView> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let fleet: Arc<FleetSnapshot> = engine.snapshot();
        if let Some(host) = fleet.host(addr)
            && ok(host)
        {
            return Arc::clone(host);
        }
        assert!(
            Instant::now() < deadline,
            "{addr}: never {what}; last: {:#?}",
            fleet.host(addr)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn job_end(events: &mut Events, kind: JobKind) -> JobOutcome {
    tokio::time::timeout(LIMIT, async {
        loop {
            if let Some(Event::JobEnded {
                kind: k, outcome, ..
            }) = events.recv().await
                && k == kind
            {
                return outcome;
            }
        }
    })
    .await
    .unwrap()
}

fn live(h: &HostView) -> bool {
    h.registration == RegistrationState::Registered
        && h.token == TokenState::Valid
        && h.agent == AgentState::Running
        && h.stats.is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_watches_real_agents_revokes_one_and_backs_off_a_dead_one() {
    let plane = start_plane().await;
    let (_a1, addr1, _d1) = start_agent(&plane, "127.9.1.1");
    let (mut a2, addr2, _d2) = start_agent(&plane, "127.9.1.2");
    let (engine, mut events) = engine::spawn(engine_config(&plane));
    let (ip1, ip2) = (addr1.ip(), addr2.ip());

    // Registered (the control plane's view), token valid, live stats.
    for ip in [ip1, ip2] {
        let host = wait_host(&engine, ip, "registered with live stats", live).await;
        let record = host.registry.as_ref().unwrap();
        assert_eq!(
            record.hostname,
            format!("node-{}.test", ip.to_string().replace('.', "-"))
        );
        assert!(host.token_left(engine.snapshot().now_unix).unwrap() > 3000);
        let stats = host.stats.as_ref().unwrap();
        assert!((0.0..=100.0).contains(&stats.cpu.total_pct));
        assert!(stats.memory.total_bytes > 0);
    }
    // History grows with each read.
    let before = engine.snapshot().host(ip1).unwrap().history.len();
    let grown = wait_host(&engine, ip1, "more history", |h| {
        h.history.len() >= before + 3
    })
    .await;
    assert!(
        grown
            .history
            .iter()
            .all(|s| (0.0..=100.0).contains(&s.mem_pct))
    );

    // `fleetctl status` over the same data dir: control.listen is taken by
    // our control plane, so it uses that one.
    let status = status_json(&plane);
    let row = status
        .iter()
        .find(|r| r["address"] == ip2.to_string())
        .unwrap_or_else(|| panic!("no row for {ip2}: {status:?}"));
    assert_eq!(row["registration"], "registered");
    assert_eq!(row["token"], "valid");
    assert_eq!(row["agent"], "running");
    assert!(
        row["cpu_pct"].is_number() && row["mem_pct"].is_number(),
        "{row}"
    );

    // Revoke from the engine.
    engine.send(EngineCommand::Revoke(RevokeRequest::hosts(&[ip1])));
    let outcome = job_end(&mut events, JobKind::Revoke).await;
    assert_eq!(outcome, JobOutcome::Done("1 revoked, 0 failed".into()));
    let host = wait_host(&engine, ip1, "revoked", |h| {
        h.registration == RegistrationState::Revoked
    })
    .await;
    assert!(host.registry.as_ref().unwrap().revoked_at.is_some());

    // A killed agent: unreachable, then read less and less often.
    let status = a2.stop();
    assert!(status.success());
    let dead_at = Instant::now();
    wait_host(&engine, ip2, "unreachable", |h| {
        h.agent == AgentState::Unreachable
    })
    .await;
    let backed_off = wait_host(&engine, ip2, "backed off", |h| {
        h.poll_retry_in.is_some_and(|d| d >= Duration::from_secs(3))
    })
    .await;
    let elapsed = dead_at.elapsed();
    // Without backoff a read every 400 ms would have failed elapsed/400ms times.
    let unbacked = u32::try_from(elapsed.as_millis() / 400).unwrap();
    assert!(
        backed_off.poll_failures < unbacked.max(4),
        "{} failures in {elapsed:?}",
        backed_off.poll_failures
    );
    assert!(backed_off.stats_error.is_some());
    // The revoked one's certificate is refused from the next revocation
    // list read on (it is on the fleet CA's CRL).
    wait_host(&engine, ip1, "refused as revoked", |h| {
        h.stats_error
            .as_deref()
            .is_some_and(|e| e.to_ascii_lowercase().contains("revoked"))
    })
    .await;
    drop(engine);
    plane.stop.cancel();
}

fn status_json(plane: &Plane) -> Vec<serde_json::Value> {
    let listen = plane.url.trim_start_matches("https://");
    let config = plane.dir.path().join("config.toml");
    std::fs::write(&config, format!("[control]\nlisten = \"{listen}\"\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fleetctl"))
        .env_remove("FLEETCTL_CONFIG")
        .env_remove("FLEETCTL_DATA_DIR")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(plane.dir.path())
        .args(["status", "-o", "json", "--wait", "10s"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fleetctl status: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status -o json: {e}\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
