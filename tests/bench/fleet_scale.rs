//! The fleet past one machine, at 10,000 simulated agents on loopback.
//!
//! `nice -n 10 cargo bench --bench fleet_scale` (as root: it starts a
//! PostgreSQL 15 as `nobody`, as `tests/pg/mod.rs` does, and raises the
//! open-files limit) prints two tables:
//!
//! 1. **Heartbeats**: one control plane on SQLite against three replicas on
//!    one PostgreSQL, all in this process. 10,000 simulated agents register
//!    through `POST /v1/register` (own key, CSR and certificate each), each
//!    from its own loopback address (127.17.10.1 and up), spread over the
//!    replicas; then each sends a heartbeat every `period` (the agent's
//!    identity token and its certificate shown in the TLS handshake), on a
//!    fresh connection each time, as real agents do at the default 30 s.
//! 2. **The console's CPU**: the engine (as `fleetctl tui`/`status` runs
//!    it) over 10,000 stats endpoints (this binary re-run as `fleet_scale
//!    serve-fleet DIR N`: a control plane and N endpoints on 127.18.x.y
//!    serving `/v1/stats` and a node_exporter-style `/metrics`, checking
//!    stats tokens), reading them directly every 2 s, against asking a real
//!    Prometheus that scrapes them (found through `/v1/sd`).
//!
//! `FLEET_BENCH_AGENTS` (10,000) and `FLEET_BENCH_SECS` (20 per run) bound it.
#![allow(clippy::unwrap_used)]

#[path = "../pg/mod.rs"]
mod pg;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;
use fleetctl::auth::{Audience, JoinGrant, TokenVerifier, stats_audience_for};
use fleetctl::control::{self, ControlPlane, Settings};
use fleetctl::engine::prometheus::{PromAuth, PromSource, StatsSource};
use fleetctl::engine::{
    self, ControlLink, DeploySettings, EngineConfig, Event, PollSettings, Questions, SshSettings,
};
use fleetctl::model::control::{HeartbeatRequest, RegisterRequest, RegisterResponse};
use fleetctl::model::stats::{
    AgentStats, CertificateStatus, CpuStats, MemoryStats, RegistrationStatus, SampleInfo,
    TokenStatus,
};
use fleetctl::model::{AgentState, RegistrationState, TokenState};
use fleetctl::pki;
use fleetctl::store::registry::Backend;

const TIMEOUT: Duration = Duration::from_secs(30);
/// Each agent's heartbeat period in the runs: the default (30 s, 333/s for
/// 10,000 agents), then three times as often.
const PERIODS: [Duration; 2] = [Duration::from_secs(30), Duration::from_secs(10)];

fn agents() -> usize {
    std::env::var("FLEET_BENCH_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn run_time() -> Duration {
    Duration::from_secs(
        std::env::var("FLEET_BENCH_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20),
    )
}

fn main() {
    raise_open_files();
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if args.get(1).map(String::as_str) == Some("serve-fleet") {
        runtime.block_on(serve_fleet(Path::new(&args[2]), args[3].parse().unwrap()));
        return;
    }
    let only = std::env::var("FLEET_BENCH_ONLY").unwrap_or_default();
    if std::env::var_os("FLEET_BENCH_QUIET").is_none() {
        println!(
            "fleet scale benchmark: {} simulated agents, {}s per run, {} CPUs",
            agents(),
            run_time().as_secs(),
            std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
        );
    }
    if only.is_empty() || only == "heartbeat" {
        runtime.block_on(heartbeats());
    }
    if only == "console" {
        runtime.block_on(console());
    } else if only.is_empty() {
        // A process of its own, so its RSS is the console's alone.
        let status = Command::new(std::env::current_exe().unwrap())
            .env("FLEET_BENCH_ONLY", "console")
            .env("FLEET_BENCH_QUIET", "1")
            .status()
            .unwrap();
        assert!(status.success(), "the console part failed");
    }
}

/// 10,000 agents hold a socket each in one process: lift the limit (root
/// may raise the hard limit too).
fn raise_open_files() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let want = hard.max(200_000);
    if setrlimit(Resource::RLIMIT_NOFILE, want, want).is_err() {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    }
}

/// The simulated agent `i`'s own loopback address.
fn agent_ip(second: u8, i: usize) -> IpAddr {
    let i = u32::try_from(i).unwrap();
    IpAddr::from([
        127,
        second,
        u8::try_from(10 + i / 250).unwrap(),
        u8::try_from(1 + i % 250).unwrap(),
    ])
}

// ---------------------------------------------------------------- heartbeats

struct Agent {
    client: reqwest::Client,
    identity: String,
    url: String,
}

#[derive(Default)]
struct Outcome {
    latencies: Vec<Duration>,
    failures: usize,
    elapsed: Duration,
}

async fn start_plane(dir: &Path, ip: &str, registry: Backend) -> String {
    let settings = Settings {
        heartbeat_interval: Duration::from_secs(30),
        lost_after: Duration::from_mins(2),
        ..Settings::default()
    };
    let plane = ControlPlane::with_registry(&dir.join("control"), registry, settings).unwrap();
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let started = control::start(listener, plane, std::future::pending()).unwrap();
    started.url
}

/// A control plane on SQLite, and three replicas on one PostgreSQL.
async fn heartbeats() {
    let n = agents();
    let mut rows = Vec::new();

    let dir = tempfile::tempdir().unwrap();
    let sqlite = Backend::sqlite(&dir.path().join("inventory.sqlite3")).unwrap();
    let url = start_plane(dir.path(), "127.17.0.1", sqlite).await;
    let t0 = Instant::now();
    let fleet = register_all(dir.path(), &[url], n).await;
    let registered = t0.elapsed();
    for period in PERIODS {
        rows.push((
            "SQLite",
            1,
            n,
            fleet.len(),
            registered,
            period,
            load(&fleet, period).await,
        ));
    }
    drop(fleet);

    let server = pg::PgServer::start("127.17.0.2");
    let settings = server.settings_for("fleet");
    let first = tempfile::tempdir().unwrap();
    let mut dirs = vec![first];
    for _ in 1..3 {
        let replica = tempfile::tempdir().unwrap();
        dirs.push(replica);
    }
    let mut urls = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        if i > 0 {
            copy_shared_keys(&dirs[0].path().join("control"), &dir.path().join("control"));
        }
        let registry = Backend::postgres(&settings).await.unwrap();
        urls.push(start_plane(dir.path(), &format!("127.17.0.{}", 11 + i), registry).await);
    }
    let t0 = Instant::now();
    let fleet = register_all(dirs[0].path(), &urls, n).await;
    let registered = t0.elapsed();
    for period in PERIODS {
        rows.push((
            "PostgreSQL",
            3,
            n,
            fleet.len(),
            registered,
            period,
            load(&fleet, period).await,
        ));
    }

    println!();
    println!(
        "| registry | control planes | agents registered | registration | offered heartbeats/s | sustained/s | failed | p50 | p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, planes, n, ok, reg, period, mut o) in rows {
        o.latencies.sort_unstable();
        let pct = |per_mille: usize| {
            let i = (o.latencies.len().saturating_sub(1) * per_mille).div_ceil(1000);
            o.latencies.get(i).copied().unwrap_or_default()
        };
        println!(
            "| {name} | {planes} | {ok} of {n} | {:.0}/s | {:.0} | {:.0} | {} | {:.1} ms | {:.1} ms |",
            ok as f64 / reg.as_secs_f64(),
            n as f64 / period.as_secs_f64(),
            o.latencies.len() as f64 / o.elapsed.as_secs_f64(),
            o.failures,
            pct(500).as_secs_f64() * 1e3,
            pct(990).as_secs_f64() * 1e3,
        );
    }
    drop(server);
}

fn copy_shared_keys(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for name in [
        "ca.key",
        "ca.pem",
        "control-ca.key",
        "control-ca.pem",
        "token.key",
        "token.next.key",
        "token-keys.json",
    ] {
        if from.join(name).exists() {
            std::fs::copy(from.join(name), to.join(name)).unwrap();
        }
    }
}

/// Registers `n` agents, agent `i` through `urls[i % len]`, 64 at once.
async fn register_all(dir: &Path, urls: &[String], n: usize) -> Vec<Agent> {
    let control = dir.join("control");
    let issuer = fleetctl::auth::TokenIssuer::load(&control).unwrap();
    let ca_pem = std::fs::read_to_string(control.join("ca.pem")).unwrap();
    let pin = pki::ControlPin::of_cert_pem(
        &std::fs::read_to_string(control.join("control-ca.pem")).unwrap(),
    )
    .unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let host = format!("node{i:05}");
        let grant = JoinGrant {
            control_pin: Some(pin.to_string()),
            ..JoinGrant::new(&host)
        };
        let (join, _) = issuer.issue_join(&grant, Duration::from_mins(30)).unwrap();
        let url = urls[i % urls.len()].clone();
        let (gate, ca_pem) = (Arc::clone(&gate), ca_pem.clone());
        let ip = agent_ip(17, i);
        tasks.spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            let plain = client_from(ip, &ca_pem, None);
            let kc = pki::new_key_and_csr(&host, std::slice::from_ref(&host)).unwrap();
            let request = RegisterRequest {
                join_token: join,
                csr_pem: kc.csr_pem.clone(),
                hostname: host,
                addresses: vec![ip.to_string()],
                stats_port: 9701,
                agent_version: "0.1.0-bench".into(),
            };
            let resp = plain
                .post(format!("{url}/v1/register"))
                .json(&request)
                .send()
                .await
                .ok()?;
            let reg: RegisterResponse = resp.error_for_status().ok()?.json().await.ok()?;
            let identity = format!("{}\n{}", reg.certificate_pem, kc.key_pem);
            Some(Agent {
                client: client_from(ip, &ca_pem, Some(&identity)),
                identity: reg.identity_token,
                url,
            })
        });
    }
    tasks.join_all().await.into_iter().flatten().collect()
}

/// An agent's client: from its own address, trusting the fleet CA, showing
/// its certificate; idle connections dropped after a second, so each
/// paced heartbeat opens a fresh one, as at the default 30 s.
fn client_from(ip: IpAddr, ca_pem: &str, identity: Option<&str>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .local_address(ip)
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes()).unwrap())
        .no_proxy()
        .timeout(TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(1));
    if let Some(pem) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

/// Every agent heartbeats once per `period`, spread over it, for the run.
async fn load(agents: &[Agent], period: Duration) -> Outcome {
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    let end = start + run_time();
    let n = agents.len();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, agent) in agents.iter().enumerate() {
        let (client, identity, url) = (
            agent.client.clone(),
            agent.identity.clone(),
            agent.url.clone(),
        );
        tasks.spawn(async move {
            let body = HeartbeatRequest {
                agent_version: "0.1.0-bench".into(),
                agent_uptime_secs: 1,
            };
            let (mut latencies, mut failures) = (Vec::new(), 0);
            let mut next = start + period * u32::try_from(i).unwrap() / u32::try_from(n).unwrap();
            while next < end {
                tokio::time::sleep_until(next).await;
                let sent = Instant::now();
                let ok = client
                    .post(format!("{url}/v1/heartbeat"))
                    .bearer_auth(&identity)
                    .json(&body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    latencies.push(sent.elapsed());
                } else {
                    failures += 1;
                }
                next += period;
            }
            (latencies, failures)
        });
    }
    let mut outcome = Outcome::default();
    for (latencies, failures) in tasks.join_all().await {
        outcome.latencies.extend(latencies);
        outcome.failures += failures;
    }
    outcome.elapsed = start.elapsed();
    outcome
}

// ---------------------------------------------------------------- console

/// The fleet side: a control plane and `n` stats endpoints, each with its
/// own address, key and fleet-CA certificate (registered through the API),
/// serving `/v1/stats` and `/metrics`; prints `READY <url>`, serves until
/// stdin closes.
async fn serve_fleet(dir: &Path, n: usize) {
    let registry = Backend::sqlite(&dir.join("inventory.sqlite3")).unwrap();
    let plane =
        ControlPlane::with_registry(&dir.join("control"), registry, Settings::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.18.0.1:0").await.unwrap();
    let started = control::start(listener, Arc::clone(&plane), std::future::pending()).unwrap();
    let verifier = Arc::new(TokenVerifier::from_keys(&plane.token_keys()).unwrap());
    let client = pki::tls::http_client(&started.ca_pem, TIMEOUT).unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(32));
    let born = fleetctl::model::time::now_unix();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let ip = agent_ip(18, i);
        let host = format!("b{i:05}.bench");
        let (join, _) = plane
            .join_token(&JoinGrant::new(&ip.to_string()), None)
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
            let (s2, v2) = (Arc::clone(&stats), Arc::clone(&verifier));
            let app = axum::Router::new()
                .route(
                    "/v1/stats",
                    get(move |headers: HeaderMap| {
                        let (stats, verifier) = (Arc::clone(&stats), Arc::clone(&verifier));
                        async move {
                            check(&headers, &verifier, &stats)?;
                            Ok::<_, StatusCode>(axum::Json((*stats).clone()))
                        }
                    }),
                )
                .route(
                    "/metrics",
                    get(move |headers: HeaderMap| {
                        let (stats, verifier) = (Arc::clone(&s2), Arc::clone(&v2));
                        async move {
                            check(&headers, &verifier, &stats)?;
                            Ok::<_, StatusCode>(metrics_page(&stats, i, born))
                        }
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
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        let _ = std::io::stdin().read_line(&mut sink);
    })
    .await
    .unwrap();
}

/// As an agent checks: a fleet-wide stats token, or one for this agent.
fn check(
    headers: &HeaderMap,
    verifier: &TokenVerifier,
    stats: &AgentStats,
) -> Result<(), StatusCode> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(StatusCode::UNAUTHORIZED)?;
    let own = stats_audience_for(stats.registration.agent_id.as_deref().unwrap_or_default());
    verifier
        .verify_for(token.trim(), &[Audience::Stats.as_str(), &own])
        .map(|_| ())
        .map_err(|_| StatusCode::UNAUTHORIZED)
}

/// The families the console's queries read, in the agent's names, with
/// CPU counters that advance (a 2-CPU host, `i % 50` % busy).
fn metrics_page(stats: &AgentStats, i: usize, born: i64) -> String {
    let secs = (fleetctl::model::time::now_unix() - born).max(1) as f64 + 1000.0;
    let busy = (i % 50) as f64 / 100.0;
    let mut page = String::with_capacity(2048);
    page.push_str("# TYPE node_cpu_seconds_total counter\n");
    for cpu in 0..2 {
        for (mode, share) in [
            ("idle", 1.0 - busy),
            ("iowait", 0.0),
            ("user", busy * 0.7),
            ("system", busy * 0.3),
        ] {
            let _ = writeln!(
                page,
                "node_cpu_seconds_total{{cpu=\"{cpu}\",mode=\"{mode}\"}} {:.2}",
                secs * share
            );
        }
    }
    let m = &stats.memory;
    let _ = writeln!(
        page,
        "node_load1 {}\nnode_load5 {}\nnode_load15 {}\nnode_memory_MemTotal_bytes {}\nnode_memory_MemAvailable_bytes {}",
        stats.cpu.load1, stats.cpu.load5, stats.cpu.load15, m.total_bytes, m.available_bytes
    );
    let _ = writeln!(
        page,
        "fleet_agent_info{{version=\"{}\",hostname=\"{}\"}} 1",
        stats.agent_version, stats.hostname
    );
    for state in RegistrationState::ALL {
        let _ = writeln!(
            page,
            "fleet_agent_registration_state{{state=\"{}\"}} {}",
            state.as_str(),
            u8::from(*state == stats.registration.state)
        );
    }
    for state in TokenState::ALL {
        let _ = writeln!(
            page,
            "fleet_agent_token_state{{state=\"{}\"}} {}",
            state.as_str(),
            u8::from(*state == stats.token.state)
        );
    }
    let _ = writeln!(
        page,
        "fleet_agent_token_expiry_timestamp_seconds {}",
        stats.token.expires_at.unwrap_or_default()
    );
    page
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
            per_core_pct: vec![10.0, 15.0],
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

/// CPU time (user + system) of process `pid` ("self" for this one).
fn cpu_of(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let tck = u64::try_from(
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    Duration::from_millis(ticks * 1000 / tck)
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    kb / 1024.0
}

struct ConsoleRow {
    source: &'static str,
    answering: usize,
    rounds: u64,
    updates: u64,
    elapsed: Duration,
    cpu: Duration,
    rss: f64,
    prom_cpu: Option<Duration>,
}

async fn console() {
    let n = agents();
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = Command::new(std::env::current_exe().unwrap())
        .arg("serve-fleet")
        .arg(dir.path())
        .arg(n.to_string())
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
        url: url.clone(),
        replicas: Vec::new(),
        control_dir: dir.path().join("control"),
        operator_ttl: Duration::from_hours(1),
    };
    let direct = measure(&link, StatsSource::Agents, "direct polling", n, None).await;

    let (prom, listen) = start_prometheus(dir.path(), &link);
    let source = StatsSource::Prometheus(PromSource {
        url: format!("http://{listen}"),
        auth: PromAuth::None,
        ca_pem: None,
        selector: "job=\"fleet\"".into(),
    });
    let via = measure(&link, source, "Prometheus", n, Some(prom.id())).await;
    let mut prom = prom;
    let _ = prom.kill();
    let _ = prom.wait();
    drop(fleet.stdin.take());
    let _ = fleet.wait();

    println!();
    println!(
        "console at {n} agents (fleet of stats endpoints set up in {:.0}s), every 2 s:",
        setup.as_secs_f64()
    );
    println!();
    println!(
        "| stats source | agents shown running | rounds | agent updates/s | console CPU (% of one core) | console RSS | Prometheus CPU (% of one core) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in [direct, via] {
        println!(
            "| {} | {} | {} | {:.0} | {:.1} % | {:.0} MiB | {} |",
            r.source,
            r.answering,
            r.rounds,
            r.updates as f64 / r.elapsed.as_secs_f64(),
            r.cpu.as_secs_f64() * 100.0 / r.elapsed.as_secs_f64(),
            r.rss,
            r.prom_cpu.map_or_else(
                || "-".into(),
                |c| format!("{:.1} %", c.as_secs_f64() * 100.0 / r.elapsed.as_secs_f64())
            ),
        );
    }
}

/// Prometheus scraping every endpoint every 30 s (10,000 targets is 333
/// scrapes a second on these same 2 cores), found through `/v1/sd`.
fn start_prometheus(dir: &Path, link: &ControlLink) -> (std::process::Child, String) {
    let issuer = fleetctl::auth::TokenIssuer::load(&link.control_dir).unwrap();
    let (stats, _) = issuer
        .issue(Audience::Stats, "bench", Duration::from_hours(2))
        .unwrap();
    let (sd, _) = issuer
        .issue(Audience::Sd, "bench", Duration::from_hours(2))
        .unwrap();
    let (stats_file, sd_file, ca) = (
        dir.join("stats.token"),
        dir.join("sd.token"),
        dir.join("control/ca.pem"),
    );
    std::fs::write(&stats_file, stats).unwrap();
    std::fs::write(&sd_file, sd).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 30s\n  scrape_timeout: 10s\n\
             scrape_configs:\n  - job_name: fleet\n    scheme: https\n\
             \x20   tls_config:\n      ca_file: {ca}\n\
             \x20   authorization:\n      type: Bearer\n      credentials_file: {stats}\n\
             \x20   http_sd_configs:\n      - url: {url}/v1/sd\n        refresh_interval: 30s\n\
             \x20       tls_config:\n          ca_file: {ca}\n\
             \x20       authorization:\n          type: Bearer\n          credentials_file: {sd}\n",
            ca = ca.display(),
            stats = stats_file.display(),
            sd = sd_file.display(),
            url = link.url,
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.18.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.18.0.2:{port}");
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={listen}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("this benchmark needs prometheus (apt-get install prometheus)");
    (child, listen)
}

/// One engine over the fleet: waits (bounded) until every agent is shown
/// running, then counts rounds, agent updates and CPU over the run.
async fn measure(
    link: &ControlLink,
    source: StatsSource,
    name: &'static str,
    n: usize,
    prom: Option<u32>,
) -> ConsoleRow {
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
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
            max_backoff: Duration::from_secs(10),
            source,
            ..PollSettings::default()
        }),
        deploy: DeploySettings::default(),
        questions: Questions::Events,
    };
    let (engine, mut events) = engine::spawn(config);
    let deadline = Instant::now() + Duration::from_mins(4);
    let running = loop {
        let running = engine
            .snapshot()
            .hosts
            .iter()
            .filter(|h| h.agent == AgentState::Running)
            .count();
        if running == n || Instant::now() > deadline {
            break running;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    if running < n {
        eprintln!(
            "{name}: only {running} of {n} agents shown running after 240 s; measuring anyway"
        );
    }
    while events.try_recv().is_ok() {}
    let cpu0 = cpu_of("self");
    let prom0 = prom.map(|pid| cpu_of(&pid.to_string()));
    let t0 = Instant::now();
    let (mut rounds, mut updates) = (0, 0);
    while let Ok(Some(event)) = tokio::time::timeout_at(
        tokio::time::Instant::from_std(t0 + run_time()),
        events.recv(),
    )
    .await
    {
        if let Event::PollRound { polled, .. } = event {
            rounds += 1;
            updates += polled;
        }
    }
    let elapsed = t0.elapsed();
    let cpu = cpu_of("self").saturating_sub(cpu0);
    let prom_cpu = prom
        .zip(prom0)
        .map(|(pid, c0)| cpu_of(&pid.to_string()).saturating_sub(c0));
    let rss = rss_mib();
    drop(engine);
    ConsoleRow {
        source: name,
        answering: running,
        rounds,
        updates,
        elapsed,
        cpu,
        rss,
        prom_cpu,
    }
}
