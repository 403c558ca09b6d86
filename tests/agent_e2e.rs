//! The agent end to end: real `fleetctl serve` and `fleetctl agent`
//! processes on 127.5.0.x, read by the console's stats client.
#![allow(clippy::unwrap_used)]

mod fleet;

use std::time::Duration;

use fleet::{Agent, Control};
use fleetctl::model::state::{RegistrationState, TokenState};
use fleetctl::poll::{PollError, StatsClient};

const ENROLL: Duration = Duration::from_secs(20);

fn meminfo_total() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    kb * 1024
}

fn registered(s: &fleetctl::model::stats::AgentStats) -> bool {
    s.registration.state == RegistrationState::Registered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_enroll_and_their_stats_match_proc() {
    let control = Control::start("");
    let client = control.stats_client();
    let agents = Agent::enrolled(&control, 10..13);
    let cores = std::thread::available_parallelism().unwrap().get();
    let mut ids = Vec::new();
    for agent in &agents {
        // CPU figures need two samples; wait for a second one.
        let s = agent
            .wait_stats(&client, ENROLL, "registered", |s| {
                registered(s) && s.sample.taken_at_ms > 0 && s.agent_uptime_secs >= 1
            })
            .await;
        assert_eq!(s.hostname, agent.hostname);
        assert_eq!(s.memory.total_bytes, meminfo_total());
        assert!(s.memory.available_bytes <= s.memory.total_bytes);
        assert!((0.0..=100.0).contains(&s.cpu.total_pct), "{:?}", s.cpu);
        assert_eq!(s.cpu.per_core_pct.len(), cores, "{:?}", s.cpu);
        assert!(s.cpu.per_core_pct.iter().all(|p| (0.0..=100.0).contains(p)));
        assert!(s.cpu.load1 >= 0.0);
        assert_eq!(s.token.state, TokenState::Valid);
        assert!(s.token.seconds_left.unwrap() > 0);
        assert!(s.certificate.seconds_left.unwrap() > 0);
        assert!(s.agent_rss_bytes > 1_000_000);
        assert!(s.host_uptime_secs > 0);
        assert_eq!(s.sample.interval_ms, 500);
        assert_eq!(s.registration.controller, control.url);
        ids.push(s.registration.agent_id.clone().unwrap());
        // The join token was used once and is gone.
        assert!(!agent.token_file().exists());
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 3, "each agent has its own id");

    // A restarted agent resumes from its data dir: same id, no join token.
    let mut agents = agents;
    agents[0].restart();
    assert!(!agents[0].token_file().exists());
    let resumed = agents[0]
        .wait_stats(&client, ENROLL, "registered after restart", |s| {
            registered(s) && s.registration.last_heartbeat_at.is_some()
        })
        .await;
    assert_eq!(resumed.registration.agent_id.as_ref(), Some(&ids[0]));
    assert!(
        !agents[0]
            .proc
            .log()
            .contains("registered with the control plane")
    );

    for mut agent in agents {
        let status = agent.proc.stop();
        assert!(
            status.success(),
            "agent exit {status}:\n{}",
            agent.proc.log()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_tokens_and_tls() {
    let control = Control::start("");
    let client = control.stats_client();
    let token = control.join_for("127.5.0.20", "node20.test");
    let agent = Agent::start(&control, "127.5.0.20", "node20.test", Some(&token));
    agent
        .wait_stats(&client, ENROLL, "registered", registered)
        .await;
    let operator = control.operator_token();
    let stats = control.stats_token();

    // A used join token is refused (replayed), and deleted: it can never work.
    let replay = Agent::start(&control, "127.5.0.20", "node20.test", Some(&token));
    let mut replay_proc = replay.proc;
    replay_proc.wait_log("token_replayed", ENROLL);
    fleet::wait_file_gone(&replay.dir.path().join("join.token"), ENROLL);

    // A token for another host is refused.
    let other = control.join_token("elsewhere.test");
    let mut wrong = Agent::start(&control, "127.5.0.22", "node22.test", Some(&other));
    wrong.proc.wait_log("wrong_host", ENROLL);

    // Stats without a token, or with a bad one: 401 with a reason.
    let http = fleetctl::pki::tls::http_client(&control.ca_pem(), Duration::from_secs(5)).unwrap();
    let url = format!("https://{}/v1/stats", agent.addr);
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: fleetctl::model::control::ApiError = resp.json().await.unwrap();
    assert_eq!(body.error, "missing_token");
    let metrics = format!("https://{}/metrics", agent.addr);
    assert_eq!(http.get(&metrics).send().await.unwrap().status(), 401);
    let forged =
        StatsClient::new(&control.ca_pem(), "e30.e30.e30", Duration::from_secs(5)).unwrap();
    assert!(matches!(
        forged.fetch(agent.addr).await,
        Err(PollError::Unauthorized { .. })
    ));
    // Neither a join token nor an operator token is a stats token.
    for (what, wrong) in [
        ("join", control.join_token("node20.test")),
        ("operator", operator.clone()),
    ] {
        let misuse = StatsClient::new(&control.ca_pem(), &wrong, Duration::from_secs(5)).unwrap();
        match misuse.fetch(agent.addr).await {
            Err(PollError::Unauthorized { code, .. }) => assert_eq!(code, "wrong_audience"),
            other => panic!("a {what} token was accepted as a stats token: {other:?}"),
        }
        let resp = http.get(&metrics).bearer_auth(&wrong).send().await.unwrap();
        assert_eq!(resp.status(), 403, "{what} token on /metrics");
    }
    // /healthz is open; /metrics with a stats token is Prometheus text.
    let health = format!("https://{}/healthz", agent.addr);
    assert_eq!(http.get(&health).send().await.unwrap().status(), 200);
    let page = http
        .get(&metrics)
        .bearer_auth(&stats)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("# TYPE node_cpu_seconds_total counter"),
        "{page}"
    );
    assert!(page.contains("fleet_agent_registration_state{state=\"registered\"} 1"));

    // A client trusting another CA cannot connect.
    let other_ca_dir = tempfile::tempdir().unwrap();
    let other_ca = fleetctl::pki::FleetCa::load_or_create(other_ca_dir.path()).unwrap();
    let stranger = StatsClient::new(other_ca.ca_pem(), &stats, Duration::from_secs(5)).unwrap();
    match stranger.fetch(agent.addr).await {
        Err(PollError::Tls(_)) => {}
        other => panic!("a client of another CA got {other:?}"),
    }
    // No secret in any log, at RUST_LOG=debug.
    let key = std::fs::read_to_string(agent.dir.path().join("data/agent.key")).unwrap();
    let identity = std::fs::read_to_string(agent.dir.path().join("data/identity.jwt")).unwrap();
    let logs = [
        agent.proc.log(),
        replay_proc.log(),
        wrong.proc.log(),
        control.all_logs(),
    ]
    .concat();
    assert!(logs.contains("DEBUG"), "logs are at debug level");
    for (name, secret) in [
        ("join token", token.as_str()),
        ("other join token", other.as_str()),
        ("operator token", operator.as_str()),
        ("stats token", stats.as_str()),
        ("identity token", identity.trim()),
    ] {
        // A JWT's signature part is what makes it a credential.
        let signature = secret.rsplit('.').next().unwrap();
        assert!(signature.len() > 20);
        assert!(!logs.contains(signature), "the {name} appears in a log");
    }
    let key_body = key.lines().nth(1).unwrap();
    assert!(
        !logs.contains(key_body),
        "the agent's private key appears in a log"
    );
    assert!(!logs.contains("PRIVATE KEY"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stats_client_says_why_a_poll_failed() {
    let control = Control::start("");
    let client = control.stats_client();
    let stats = control.stats_token();
    // A peer that accepts but never answers: a timeout, in bounded time.
    let silent = std::net::TcpListener::bind("127.5.0.28:0").unwrap();
    let impatient =
        StatsClient::new(&control.ca_pem(), &stats, Duration::from_millis(500)).unwrap();
    let started = std::time::Instant::now();
    match impatient.fetch(silent.local_addr().unwrap()).await {
        Err(PollError::Timeout(_)) => {}
        other => panic!("a silent peer gave {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    // Nothing listening: unreachable, not a hang.
    let closed = std::net::SocketAddr::from(([127, 5, 0, 29], 9));
    assert!(matches!(
        client.fetch(closed).await,
        Err(PollError::Unreachable(_))
    ));
}

/// Identity 12 s, certificate 15 s, heartbeat 1 s: renewals every few
/// seconds, and an outage long enough to watch the states change.
const SHORT: &str =
    "identity_ttl = \"12s\"\ncert_ttl = \"15s\"\nheartbeat_interval = \"1s\"\nlost_after = \"3s\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_outage_recovery_and_expiry() {
    let mut control = Control::start(SHORT);
    let client = control.stats_client();
    let agent = Agent::start(
        &control,
        "127.5.0.30",
        "node30.test",
        Some(&control.join_for("127.5.0.30", "node30.test")),
    );
    let first = agent
        .wait_stats(&client, ENROLL, "registered", registered)
        .await;
    let id = first.registration.agent_id.clone().unwrap();

    // Renewals happen and show: identity and certificate both move on.
    let renewed = agent
        .wait_stats(&client, Duration::from_secs(40), "two renewals", |s| {
            s.token.renewals >= 2 && s.certificate.renewals >= 1
        })
        .await;
    assert!(renewed.token.expires_at > first.token.expires_at);
    assert!(renewed.certificate.expires_at > first.certificate.expires_at);
    assert!(renewed.token.last_renewal_at.is_some());
    assert_eq!(renewed.registration.agent_id.as_deref(), Some(id.as_str()));

    // Control plane down: the agent keeps serving and shows renewal failing.
    control.stop();
    let failing = agent
        .wait_stats(&client, Duration::from_secs(15), "renewal failing", |s| {
            s.token.state == TokenState::Expiring
        })
        .await;
    assert_eq!(failing.registration.state, RegistrationState::Lost);
    assert!(failing.registration.consecutive_failures > 0);
    assert!(failing.registration.last_error.is_some());
    assert!(failing.token.seconds_left.unwrap() > 0);

    // Back before the identity runs out: same agent, no new enrollment.
    control.restart();
    let recovered = agent
        .wait_stats(&client, Duration::from_secs(15), "recovery", |s| {
            registered(s) && s.token.state == TokenState::Valid
        })
        .await;
    assert_eq!(
        recovered.registration.agent_id.as_deref(),
        Some(id.as_str())
    );
    assert!(recovered.token.renewals > renewed.token.renewals);
    assert_eq!(recovered.registration.consecutive_failures, 0);

    // Down for longer than the identity lives: expired.
    control.stop();
    let expired = agent
        .wait_stats(&client, Duration::from_secs(20), "expiry", |s| {
            s.token.state == TokenState::Expired
        })
        .await;
    assert_eq!(expired.registration.state, RegistrationState::Expired);

    // A new join token brings it back, as a new registration.
    control.restart();
    agent.give_join_token(&control.join_for("127.5.0.30", "node30.test"));
    let again = agent
        .wait_stats(&client, ENROLL, "re-enrollment", |s| {
            registered(s) && s.token.state == TokenState::Valid
        })
        .await;
    assert_ne!(again.registration.agent_id.as_deref(), Some(id.as_str()));
    assert!(!agent.token_file().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_agent_cannot_renew_and_says_so() {
    let control = Control::start(SHORT);
    let client = control.stats_client();
    let agent = Agent::start(
        &control,
        "127.5.0.40",
        "node40.test",
        Some(&control.join_for("127.5.0.40", "node40.test")),
    );
    let s = agent
        .wait_stats(&client, ENROLL, "registered", registered)
        .await;
    let id = s.registration.agent_id.unwrap();
    control.cli(&["revoke", &id]);
    let revoked = agent
        .wait_stats(&client, Duration::from_secs(15), "revoked", |s| {
            s.registration.state == RegistrationState::Revoked
        })
        .await;
    assert!(revoked.registration.last_error.unwrap().contains("revoked"));
    // It stays revoked: no renewal gets through, the identity runs out.
    let later = agent
        .wait_stats(
            &client,
            Duration::from_secs(20),
            "expiry after revocation",
            |s| s.token.state == TokenState::Expired,
        )
        .await;
    assert_eq!(later.registration.state, RegistrationState::Revoked);
    assert_eq!(later.token.renewals, revoked.token.renewals);
}

#[test]
fn a_bad_config_file_is_named_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "controller = \"https://127.5.0.1:1\"\nca_file = \"/x\"\njoin_token_file = \"/y\"\n\
         data_dir = \"/z\"\nlisten = \"here\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleetctl"))
        .arg("agent")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&config.display().to_string()), "{err}");
    assert!(err.contains("listen"), "{err}");
    let none = std::process::Command::new(env!("CARGO_BIN_EXE_fleetctl"))
        .arg("agent")
        .env_remove("FLEETCTL_CONFIG")
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(2));
}
