//! The console's poller against 1,000 agents on loopback.
//!
//! `nice -n 10 cargo bench --bench poller` builds with the bench (release)
//! profile and prints a table. Two processes, so the console's CPU is its
//! own:
//! - the fleet (this binary re-run as `poller serve-fleet DIR N`): a real
//!   control plane on 127.9.0.1 and N stats endpoints on 127.9.10.1 and up,
//!   each registered through `POST /v1/register` with its own key and
//!   fleet-CA certificate, served by the agent's TLS server
//!   (`pki::tls::serve_https`) and checking the operator token as agents do;
//!   every read answers a full `AgentStats`;
//! - the console: the real engine with its poller and the control link, as
//!   `fleetctl tui` runs it. It reads the registry, then every agent's
//!   `/v1/stats` each interval; the table shows reads per second sustained
//!   and the CPU (user + system, from /proc/self/stat) this process used.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;
use fleetctl::auth::{Audience, TokenVerifier, stats_audience_for};
use fleetctl::control::{self, ControlPlane, Settings};
use fleetctl::engine::{
    self, ControlLink, DeploySettings, EngineConfig, Event, PollSettings, SshSettings,
};
use fleetctl::model::control::{RegisterRequest, RegisterResponse};
use fleetctl::model::stats::{
    AgentStats, CertificateStatus, CpuStats, MemoryStats, RegistrationStatus, SampleInfo,
    TokenStatus,
};
use fleetctl::model::{AgentState, RegistrationState, TokenState};
use fleetctl::pki;

const AGENTS: usize = 1_000;
const MEASURE: Duration = Duration::from_secs(30);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    raise_open_files();
    if args.get(1).map(String::as_str) == Some("serve-fleet") {
        let dir = PathBuf::from(&args[2]);
        let n: usize = args[3].parse().unwrap();
        runtime.block_on(serve_fleet(&dir, n));
    } else {
        runtime.block_on(console());
    }
}

fn raise_open_files() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

fn agent_ip(i: usize) -> IpAddr {
    format!("127.9.{}.{}", 10 + i / 250, 1 + i % 250)
        .parse()
        .unwrap()
}

/// The fleet side: a control plane and `n` registered stats endpoints;
/// prints `READY <url>` and serves until stdin closes.
async fn serve_fleet(dir: &Path, n: usize) {
    let plane = ControlPlane::open(
        &dir.join("control"),
        &dir.join("inventory.sqlite3"),
        Settings::default(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.9.0.1:0").await.unwrap();
    let started = control::start(listener, Arc::clone(&plane), std::future::pending()).unwrap();
    let verifier = Arc::new(TokenVerifier::from_keys(&plane.token_keys()).unwrap());
    let client = pki::tls::http_client(&started.ca_pem, Duration::from_secs(30)).unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let ip = agent_ip(i);
        let host = format!("b{i:04}.bench");
        let (join, _) = plane
            .join_token(&fleetctl::auth::JoinGrant::new(&ip.to_string()), None)
            .unwrap();
        let (client, url, gate) = (client.clone(), started.url.clone(), Arc::clone(&gate));
        let verifier = Arc::clone(&verifier);
        tasks.spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, 0))
                .await
                .unwrap();
            let port = listener.local_addr().unwrap().port();
            let kc = pki::new_key_and_csr(&host, &[ip.to_string()]).unwrap();
            let request = RegisterRequest {
                join_token: join,
                csr_pem: kc.csr_pem,
                hostname: host.clone(),
                addresses: vec![ip.to_string()],
                stats_port: port,
                agent_version: "0.1.0-bench".into(),
            };
            let resp: RegisterResponse = client
                .post(format!("{url}/v1/register"))
                .json(&request)
                .send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap()
                .json()
                .await
                .unwrap();
            let cert = pki::tls::ReloadableCert::new(&resp.certificate_pem, &kc.key_pem).unwrap();
            let stats = Arc::new(stats_for(&host, &url, &resp));
            let app = axum::Router::new().route(
                "/v1/stats",
                get(move |headers: HeaderMap| {
                    let (stats, verifier) = (Arc::clone(&stats), Arc::clone(&verifier));
                    async move { answer(&headers, &verifier, &stats) }
                }),
            );
            tokio::spawn(pki::tls::serve_https(
                listener,
                pki::tls::server_config(cert),
                app,
                std::future::pending(),
            ));
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    println!("READY {}", started.url);
    std::io::stdout().flush().unwrap();
    // Serve until the console closes our stdin (or dies).
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        let _ = std::io::stdin().read_line(&mut sink);
    })
    .await
    .unwrap();
}

/// What an agent's `/v1/stats` checks and answers.
fn answer(
    headers: &HeaderMap,
    verifier: &TokenVerifier,
    stats: &AgentStats,
) -> Result<Json<AgentStats>, StatusCode> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(StatusCode::UNAUTHORIZED)?;
    // As an agent checks: a fleet-wide stats token, or one for this agent.
    let own = stats_audience_for(stats.registration.agent_id.as_deref().unwrap_or_default());
    verifier
        .verify_for(token.trim(), &[Audience::Stats.as_str(), &own])
        .map_err(|_| StatusCode::UNAUTHORIZED)?;
    Ok(Json(stats.clone()))
}

fn stats_for(host: &str, url: &str, resp: &RegisterResponse) -> AgentStats {
    AgentStats {
        agent_version: "0.1.0-bench".into(),
        hostname: host.into(),
        host_uptime_secs: 86_400,
        agent_uptime_secs: 60,
        agent_rss_bytes: 10 << 20,
        cpu: CpuStats {
            total_pct: 12.5,
            per_core_pct: vec![10.0, 15.0, 12.0, 13.0],
            load1: 0.4,
            load5: 0.3,
            load15: 0.2,
        },
        memory: MemoryStats {
            total_bytes: 8 << 30,
            available_bytes: 5 << 30,
            swap_total_bytes: 0,
            swap_free_bytes: 0,
        },
        registration: RegistrationStatus {
            state: RegistrationState::Registered,
            agent_id: Some(resp.agent_id.clone()),
            controller: url.into(),
            registered_at: Some(0),
            last_heartbeat_at: Some(0),
            consecutive_failures: 0,
            last_error: None,
        },
        token: TokenStatus {
            state: TokenState::Valid,
            expires_at: Some(resp.identity_expires_at),
            seconds_left: None,
            last_renewal_at: None,
            renewals: 0,
            last_error: None,
        },
        certificate: CertificateStatus {
            expires_at: Some(resp.certificate_expires_at),
            seconds_left: None,
            last_renewal_at: None,
            renewals: 0,
        },
        sample: SampleInfo {
            taken_at_ms: 0,
            interval_ms: 2000,
        },
    }
}

/// This process's CPU time (user + system) and resident memory.
fn usage() -> (Duration, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which ends with ')'): utime is the 12th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let tck = u64::try_from(
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    (Duration::from_millis(ticks * 1000 / tck), rss_kb * 1024)
}

struct Row {
    interval: Duration,
    reads: u64,
    elapsed: Duration,
    cpu: Duration,
    rss: u64,
    answering: u64,
}

async fn console() {
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = Command::new(std::env::current_exe().unwrap())
        .arg("serve-fleet")
        .arg(dir.path())
        .arg(AGENTS.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let mut ready = String::new();
    BufReader::new(fleet.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    let url = ready.trim().strip_prefix("READY ").unwrap().to_owned();
    let setup = t0.elapsed();
    let link = ControlLink {
        url,
        replicas: Vec::new(),
        control_dir: dir.path().join("control"),
        operator_ttl: Duration::from_hours(1),
    };
    let mut rows = Vec::new();
    for interval in [Duration::from_secs(2), Duration::from_millis(500)] {
        rows.push(run(&link, interval).await);
    }
    println!(
        "poller benchmark: {AGENTS} agents on loopback (one fleet process), {}s per run, {} CPUs; fleet set up in {:.1}s",
        MEASURE.as_secs(),
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        setup.as_secs_f64()
    );
    println!();
    println!(
        "| interval | reads/s sustained | target reads/s | agents answering | console CPU (% of one core) | console RSS |"
    );
    println!("|---|---|---|---|---|---|");
    for r in rows {
        let target = AGENTS as f64 / r.interval.as_secs_f64();
        println!(
            "| {:.1} s | {:.0} | {target:.0} | {} | {:.1} % | {:.0} MiB |",
            r.interval.as_secs_f64(),
            r.reads as f64 / r.elapsed.as_secs_f64(),
            r.answering,
            r.cpu.as_secs_f64() * 100.0 / r.elapsed.as_secs_f64(),
            r.rss as f64 / f64::from(1u32 << 20),
        );
    }
    drop(fleet.stdin.take());
    let _ = fleet.wait();
}

/// One engine polling every agent each `interval`: warms up until all
/// answer, then counts reads and CPU over [`MEASURE`].
async fn run(link: &ControlLink, interval: Duration) -> Row {
    let config = EngineConfig {
        inventory: None,
        keep_fleet: false,
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
            interval,
            ..PollSettings::default()
        }),
        deploy: DeploySettings::default(),
        questions: fleetctl::engine::Questions::Events,
    };
    let (engine, mut events) = engine::spawn(config);
    let deadline = Instant::now() + Duration::from_mins(2);
    loop {
        let fleet = engine.snapshot();
        let running = fleet
            .hosts
            .iter()
            .filter(|h| h.agent == AgentState::Running)
            .count();
        if running == AGENTS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {running} of {AGENTS} agents answered within 120s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    while events.try_recv().is_ok() {}
    let (cpu0, _) = usage();
    let t0 = Instant::now();
    let mut reads = 0;
    let mut answering = 0;
    while let Ok(Some(event)) =
        tokio::time::timeout_at(tokio::time::Instant::from_std(t0 + MEASURE), events.recv()).await
    {
        if let Event::PollRound {
            polled,
            answering: a,
            ..
        } = event
        {
            reads += polled;
            answering = a;
        }
    }
    let elapsed = t0.elapsed();
    let (cpu1, rss) = usage();
    drop(engine);
    Row {
        interval,
        reads,
        elapsed,
        cpu: cpu1.saturating_sub(cpu0),
        rss,
        answering,
    }
}
