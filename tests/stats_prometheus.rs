//! The console's engine with a real Prometheus as its stats source, beside
//! one reading every agent directly: a real `fleetctl serve`, real agents
//! on 127.16.4.x, and Prometheus finding them through `/v1/sd` (an sd
//! token) and scraping them (a stats token), as the README configures it.
//! Both must show the same CPU and memory within the sampling tolerance;
//! Prometheus also fills the sparklines' history, and the host whose
//! detail is open is still read directly (per-core figures).
#![allow(clippy::unwrap_used)]

mod common;
mod fleet;

use std::net::IpAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fleet::{Agent, Control, Proc};
use fleetctl::engine::prometheus::{PromAuth, PromSource, StatsSource};
use fleetctl::engine::{
    self, Command as EngineCommand, ControlLink, DeploySettings, EngineConfig, EngineHandle,
    PollSettings, Questions, SshSettings,
};
use fleetctl::model::{AgentState, RegistrationState};

const AGENTS: u8 = 4;

fn engine_with(link: &ControlLink, source: StatsSource) -> EngineHandle {
    let config = EngineConfig {
        inventory: None,
        keep_fleet: true,
        scan: fleetctl::engine::ScanConfig::default(),
        max_in_flight: 64,
        ssh: SshSettings {
            known_hosts: Some("/nonexistent".into()),
            ssh_config: Some("/nonexistent".into()),
            policy: fleetctl::ssh::HostKeyPolicy::Strict,
            flags: fleetctl::ssh::ConnectFlags::default(),
            concurrency: 1,
            timeout: Duration::from_secs(1),
        },
        control: Some(link.clone()),
        poll: Some(PollSettings {
            interval: Duration::from_secs(1),
            registry_interval: Duration::from_secs(1),
            source,
            ..PollSettings::default()
        }),
        deploy: DeploySettings::default(),
        questions: Questions::Events,
    };
    engine::spawn(config).0
}

/// Waits until `engine` shows every agent running with stats.
async fn all_running(engine: &EngineHandle, what: &str) {
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let fleet = engine.snapshot();
        let running = fleet
            .hosts
            .iter()
            .filter(|h| h.agent == AgentState::Running && h.stats.is_some())
            .count();
        if running == usize::from(AGENTS) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {running} of {AGENTS} agents shown running: {:?}",
            fleet
                .hosts
                .iter()
                .map(|h| (h.addr, h.agent, h.stats_error.clone()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// (CPU %, memory %) per host, as `engine` shows them.
fn figures(engine: &EngineHandle) -> Vec<(IpAddr, f64, f64)> {
    engine
        .snapshot()
        .hosts
        .iter()
        .filter_map(|h| {
            let s = h.stats.as_ref()?;
            Some((h.addr, s.cpu.total_pct, s.memory.used_pct()))
        })
        .collect()
}

fn prometheus_config(dir: &std::path::Path, control: &Control) -> std::path::PathBuf {
    let stats = dir.join("stats.token");
    std::fs::write(&stats, control.cli(&["token", "stats"]).trim()).unwrap();
    let sd = dir.join("sd.token");
    std::fs::write(&sd, control.cli(&["token", "sd"]).trim()).unwrap();
    let ca = control.ca_file();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: fleet\n    scheme: https\n\
             \x20   tls_config:\n      ca_file: {ca}\n\
             \x20   authorization:\n      type: Bearer\n      credentials_file: {stats}\n\
             \x20   http_sd_configs:\n      - url: {url}/v1/sd\n        refresh_interval: 1s\n\
             \x20       tls_config:\n          ca_file: {ca}\n\
             \x20       authorization:\n          type: Bearer\n          credentials_file: {sd}\n",
            ca = ca.display(),
            stats = stats.display(),
            sd = sd.display(),
            url = control.url,
        ),
    )
    .unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus (apt-get install prometheus; the interop suite in .ci/run runs it)"]
async fn prometheus_as_the_stats_source_shows_what_the_agents_say() {
    let prometheus = common::require_tool("prometheus");
    let control = Control::start_on("127.16.4.1", "");
    let client = control.stats_client();
    let agents: Vec<Agent> = (0..AGENTS)
        .map(|i| {
            let ip = format!("127.16.4.{}", 11 + i);
            let host = format!("prom{i}.test");
            Agent::start(&control, &ip, &host, Some(&control.join_for(&ip, &host)))
        })
        .collect();
    for agent in &agents {
        agent
            .wait_stats(&client, Duration::from_secs(30), "registered", |s| {
                s.registration.state == RegistrationState::Registered
            })
            .await;
    }

    let dir = tempfile::tempdir().unwrap();
    let config = prometheus_config(dir.path(), &control);
    let port = std::net::TcpListener::bind("127.16.4.2:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.16.4.2:{port}");
    let mut cmd = Command::new(prometheus);
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={listen}"));
    let mut prom = Proc::spawn_command(cmd);
    prom.wait_log(
        "Server is ready to receive web requests",
        Duration::from_secs(30),
    );

    let link = ControlLink {
        url: control.url.clone(),
        replicas: Vec::new(),
        control_dir: control.data_dir().join("control"),
        operator_ttl: Duration::from_mins(10),
    };
    let source = StatsSource::Prometheus(PromSource {
        url: format!("http://{listen}"),
        auth: PromAuth::None,
        ca_pem: None,
        selector: "job=\"fleet\"".into(),
    });
    let direct = engine_with(&link, StatsSource::Agents);
    let via_prometheus = engine_with(&link, source.clone());
    all_running(&direct, "direct polling").await;
    all_running(&via_prometheus, "Prometheus").await;

    // Both cores busy, so CPU is high whatever else the machine runs.
    let stop = Arc::new(AtomicBool::new(false));
    let burners: Vec<_> = (0..2)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (a, b) = (figures(&direct), figures(&via_prometheus));
    stop.store(true, Ordering::Relaxed);
    for burner in burners {
        burner.join().unwrap();
    }
    assert_eq!(a.len(), usize::from(AGENTS));
    assert_eq!(b.len(), usize::from(AGENTS));
    for ((ip, cpu_a, mem_a), (ip_b, cpu_b, mem_b)) in a.iter().zip(&b) {
        assert_eq!(ip, ip_b);
        eprintln!(
            "{ip}: direct cpu {cpu_a:.1}% mem {mem_a:.1}%; prometheus cpu {cpu_b:.1}% mem {mem_b:.1}%"
        );
        // Each measures the last second or so of a machine kept busy.
        assert!(*cpu_a > 80.0 && *cpu_b > 80.0, "{ip}: {cpu_a} vs {cpu_b}");
        assert!((cpu_a - cpu_b).abs() < 15.0, "{ip}: {cpu_a} vs {cpu_b}");
        assert!((mem_a - mem_b).abs() < 2.0, "{ip}: {mem_a} vs {mem_b}");
    }

    late_console(&link, source).await;
    drop(prom);
}

/// A console started after Prometheus has been scraping: its sparklines are
/// filled from Prometheus's history at once, and the host whose detail is
/// opened is read directly (per-core figures).
async fn late_console(link: &ControlLink, source: StatsSource) {
    // The sparklines: Prometheus's history fills them, while a fresh
    // direct engine starts with nothing.
    let late = engine_with(link, source);
    all_running(&late, "a console started late").await;
    let fresh = late.snapshot();
    for host in &fresh.hosts {
        assert!(
            host.history.len() >= 5,
            "{}: {} samples from Prometheus's history",
            host.addr,
            host.history.len()
        );
        assert!(
            host.stats.as_ref().unwrap().cpu.per_core_pct.is_empty(),
            "the table's figures come from Prometheus"
        );
    }
    // The host whose detail is open is read directly: per-core figures.
    let focused = fresh.hosts[0].addr;
    assert!(late.send(EngineCommand::Focus {
        addr: Some(focused)
    }));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let host = late
            .snapshot()
            .hosts
            .iter()
            .find(|h| h.addr == focused)
            .cloned()
            .unwrap();
        if host
            .stats
            .as_ref()
            .is_some_and(|s| !s.cpu.per_core_pct.is_empty())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the focused host was not read directly"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
