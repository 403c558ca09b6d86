//! The agent with the real Prometheus tools: `promtool check metrics` on its
//! page, and a Prometheus that finds the agents through the control plane's
//! HTTP service discovery and scrapes them over HTTPS.
#![allow(clippy::unwrap_used)]

mod common;
mod fleet;

use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};
use std::time::Duration;

use fleet::{Agent, Control, Proc};
use fleetctl::model::state::RegistrationState;

async fn metrics_page(control: &Control, agent: &Agent) -> String {
    let http = fleetctl::pki::tls::http_client(&control.ca_pem(), Duration::from_secs(5)).unwrap();
    let resp = http
        .get(format!("https://{}/metrics", agent.addr))
        .bearer_auth(control.stats_token())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    resp.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs promtool (the interop suite in .ci/run runs it)"]
async fn promtool_accepts_the_metrics_page() {
    let promtool = common::require_tool("promtool");
    let control = Control::start("");
    let client = control.stats_client();
    let agent = Agent::start(
        &control,
        "127.5.0.50",
        "node50.test",
        Some(&control.join_for("127.5.0.50", "node50.test")),
    );
    agent
        .wait_stats(&client, Duration::from_secs(20), "registered", |s| {
            s.registration.state == RegistrationState::Registered
        })
        .await;
    let page = metrics_page(&control, &agent).await;
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Exit 1 is a page that does not parse; 3 is lint findings only. The
    // one finding allowed is node_exporter's own camelCase memory names
    // (node_memory_MemTotal_bytes...), kept so dashboards work unchanged.
    let code = out.status.code();
    assert!(
        code == Some(0) || code == Some(3),
        "promtool ({code:?}): {said}\n{page}"
    );
    for finding in said.lines() {
        assert!(
            finding.starts_with("node_memory_") && finding.contains("'snake_case' not 'camelCase'"),
            "promtool lint: {finding}\n{page}"
        );
    }
    assert!(page.contains("node_memory_MemTotal_bytes "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus (the interop suite in .ci/run runs it)"]
async fn prometheus_finds_and_scrapes_every_agent() {
    let prometheus = common::require_tool("prometheus");
    let control = Control::start("");
    let client = control.stats_client();
    let agents = Agent::enrolled(&control, 51..54);
    for agent in &agents {
        agent
            .wait_stats(&client, Duration::from_secs(20), "registered", |s| {
                s.registration.state == RegistrationState::Registered
            })
            .await;
    }

    let dir = tempfile::tempdir().unwrap();
    // Two read-only tokens, as the README's Prometheus section has it: a
    // stats token for scraping agents, an sd token for service discovery.
    let token_file = dir.path().join("stats.token");
    std::fs::write(&token_file, control.cli(&["token", "stats"]).trim()).unwrap();
    let sd_file = dir.path().join("sd.token");
    std::fs::write(&sd_file, control.cli(&["token", "sd"]).trim()).unwrap();
    let ca = control.ca_file();
    // `type: Bearer` is the documented default, but Prometheus 2.42 leaves
    // the scheme out of service discovery requests unless it is spelled out.
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: fleet\n    scheme: https\n\
             \x20   tls_config:\n      ca_file: {ca}\n\
             \x20   authorization:\n      type: Bearer\n      credentials_file: {tok}\n\
             \x20   http_sd_configs:\n      - url: {url}/v1/sd\n        refresh_interval: 1s\n\
             \x20       tls_config:\n          ca_file: {ca}\n\
             \x20       authorization:\n          type: Bearer\n          credentials_file: {sd}\n",
            ca = ca.display(),
            tok = token_file.display(),
            sd = sd_file.display(),
            url = control.url,
        ),
    )
    .unwrap();
    let port = free_port("127.5.0.2");
    let listen = format!("127.5.0.2:{port}");
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

    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    let mut last = String::new();
    loop {
        last = http_get(&listen, "/api/v1/targets?state=active").unwrap_or(last);
        let up = count_up(&last, &agents);
        if up == agents.len() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Prometheus has {up} of {} agents up; /api/v1/targets: {last}\nprometheus log:\n{}",
            agents.len(),
            prom.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Agents whose target Prometheus reports up.
fn count_up(targets_json: &str, agents: &[Agent]) -> usize {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(targets_json) else {
        return 0;
    };
    let active = v["data"]["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    agents
        .iter()
        .filter(|a| {
            active.iter().any(|t| {
                t["health"] == "up"
                    && t["scrapeUrl"]
                        .as_str()
                        .is_some_and(|u| u.contains(&format!(":{}/metrics", a.addr.port())))
            })
        })
        .count()
}

fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.0 GET on loopback (Prometheus's own API).
fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    resp.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}
