//! 1,000 simulated agents heartbeating against one control plane.
//!
//! `nice -n 10 cargo bench --bench control_heartbeat` builds with the bench
//! (release) profile and prints a table. The control plane runs in this
//! process on 127.4.3.1 (port 0) with its registry in SQLite on disk; the
//! load generator shares the process and the cores. Each agent registers
//! with its own join token and CSR, then keeps its own HTTPS connection
//! (its own client showing its own certificate, as a real agent has) and
//! sends heartbeats. All of them connect from one address, so the control
//! plane's per-source cap is raised above 1,000 for the run:
//! - saturation: every agent sends its next heartbeat as soon as the
//!   last one is answered, for a fixed time;
//! - paced: every agent sends one heartbeat a second (1,000/s offered),
//!   far above the default pace of one per 30 s per agent.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetctl::auth::JoinGrant;
use fleetctl::control::{self, ControlPlane, Settings};
use fleetctl::model::control::{HeartbeatRequest, RegisterRequest, RegisterResponse};
use fleetctl::pki::{self, ControlPin};

const AGENTS: usize = 1_000;
const RUN: Duration = Duration::from_secs(10);
const TIMEOUT: Duration = Duration::from_secs(30);

struct Agent {
    client: reqwest::Client,
    identity: String,
}

struct Outcome {
    latencies: Vec<Duration>,
    failures: usize,
    elapsed: Duration,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

async fn bench() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        heartbeat_interval: Duration::from_secs(1),
        lost_after: Duration::from_mins(1),
        max_connections_per_source: 2 * AGENTS,
        ..Settings::default()
    };
    let plane = ControlPlane::open(
        &dir.path().join("control"),
        &dir.path().join("inventory.sqlite3"),
        settings,
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.4.3.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = control::start(listener, Arc::clone(&plane), async {
        let _ = stopped.await;
    })
    .unwrap();
    let url = Arc::new(started.url.clone());

    let t0 = Instant::now();
    let agents = register_all(&plane, &url, &started.ca_pem, started.control_pin).await;
    let register = Outcome {
        latencies: Vec::new(),
        failures: AGENTS - agents.len(),
        elapsed: t0.elapsed(),
    };
    let agents: Arc<Vec<Agent>> = Arc::new(agents);

    let saturated = load(&agents, &url, None).await;
    let paced = load(&agents, &url, Some(Duration::from_secs(1))).await;

    println!(
        "control plane heartbeat benchmark: {AGENTS} agents, {}s per run, {} CPUs",
        RUN.as_secs(),
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    println!();
    println!("| run | requests | failed | requests/s | p50 | p99 | max |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| register {AGENTS} agents (CSR signing, SQLite insert) | {AGENTS} | {} | {:.0} | | | |",
        register.failures,
        AGENTS as f64 / register.elapsed.as_secs_f64()
    );
    row("heartbeat, saturated (closed loop)", saturated);
    row("heartbeat, 1/s per agent (1,000/s offered)", paced);

    stop.send(()).unwrap();
    started.task.await.unwrap().unwrap();
}

fn row(name: &str, mut o: Outcome) {
    o.latencies.sort_unstable();
    // Nearest rank: the sample below which `per_mille`/1000 of them lie.
    let pct = |per_mille: usize| {
        let i = (o.latencies.len().saturating_sub(1) * per_mille).div_ceil(1000);
        o.latencies.get(i).copied().unwrap_or_default()
    };
    println!(
        "| {name} | {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms |",
        o.latencies.len(),
        o.failures,
        o.latencies.len() as f64 / o.elapsed.as_secs_f64(),
        pct(500).as_secs_f64() * 1e3,
        pct(990).as_secs_f64() * 1e3,
        pct(1000).as_secs_f64() * 1e3,
    );
}

async fn register_all(
    plane: &Arc<ControlPlane>,
    url: &Arc<String>,
    ca_pem: &str,
    pin: ControlPin,
) -> Vec<Agent> {
    let mut tasks = tokio::task::JoinSet::new();
    // Registrations are a burst at deploy time; 64 at once is plenty.
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    for i in 0..AGENTS {
        let host = format!("node{i:04}");
        let (join, _) = plane.join_token(&JoinGrant::new(&host), None).unwrap();
        let client = pki::tls::http_client(ca_pem, TIMEOUT).unwrap();
        let (url, gate, ca_pem) = (Arc::clone(url), Arc::clone(&gate), ca_pem.to_owned());
        tasks.spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            let kc = pki::new_key_and_csr(&host, std::slice::from_ref(&host)).unwrap();
            let request = RegisterRequest {
                join_token: join,
                csr_pem: kc.csr_pem.clone(),
                hostname: host,
                addresses: vec![format!("127.4.{}.{}", 100 + i / 250, 1 + i % 250)],
                stats_port: 9100,
                agent_version: "0.1.0-bench".into(),
            };
            let resp = client
                .post(format!("{url}/v1/register"))
                .json(&request)
                .send()
                .await
                .ok()?;
            let reg: RegisterResponse = resp.error_for_status().ok()?.json().await.ok()?;
            let identity = pki::tls::ClientIdentity {
                cert_pem: reg.certificate_pem,
                key_pem: kc.key_pem,
            };
            let client = pki::tls::control_client(&ca_pem, pin, Some(&identity), TIMEOUT).ok()?;
            Some(Agent {
                client,
                identity: reg.identity_token,
            })
        });
    }
    tasks.join_all().await.into_iter().flatten().collect()
}

/// Every agent heartbeats until `RUN` is over: back to back, or once per `pace`.
async fn load(agents: &Arc<Vec<Agent>>, url: &Arc<String>, pace: Option<Duration>) -> Outcome {
    let start = tokio::time::Instant::now();
    let end = start + RUN;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..agents.len() {
        let (agents, url) = (Arc::clone(agents), Arc::clone(url));
        tasks.spawn(async move {
            let agent = &agents[i];
            let body = HeartbeatRequest {
                agent_version: "0.1.0-bench".into(),
                agent_uptime_secs: 1,
            };
            let mut latencies = Vec::new();
            let mut failures = 0;
            // Paced agents start spread over the first period.
            let mut next = start + pace.map_or(Duration::ZERO, |p| p * i as u32 / AGENTS as u32);
            while next < end {
                tokio::time::sleep_until(next).await;
                let sent = Instant::now();
                let ok = agent
                    .client
                    .post(format!("{url}/v1/heartbeat"))
                    .bearer_auth(&agent.identity)
                    .json(&body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    latencies.push(sent.elapsed());
                } else {
                    failures += 1;
                }
                next = match pace {
                    Some(p) => next + p,
                    None => tokio::time::Instant::now(),
                };
            }
            (latencies, failures)
        });
    }
    let mut outcome = Outcome {
        latencies: Vec::new(),
        failures: 0,
        elapsed: Duration::ZERO,
    };
    for (latencies, failures) in tasks.join_all().await {
        outcome.latencies.extend(latencies);
        outcome.failures += failures;
    }
    outcome.elapsed = start.elapsed();
    outcome
}
