//! `fleetctl serve`, `token`, `agents` and `revoke` as an operator runs
//! them: the real binary on 127.4.2.x, agents simulated with the real
//! client and the shared wire types.
#![allow(clippy::unwrap_used)]

mod common;
mod control_support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Env, stderr, stdout};
use control_support::{assert_refused, register_request};
use fleetctl::auth::{Audience, TokenIssuer};
use fleetctl::model::RegistrationState;
use fleetctl::model::control::{
    AgentRecord, HeartbeatRequest, RegisterRequest, RegisterResponse, RenewRequest, RenewResponse,
    SdTargetGroup,
};
use fleetctl::pki::tls::ClientIdentity;
use reqwest::StatusCode;

/// A running `fleetctl serve` with RUST_LOG=debug, its stderr collected.
struct Serve {
    child: Child,
    url: String,
    log: Arc<Mutex<String>>,
}

impl Serve {
    fn start(env: &Env, ip: &str, extra: &[&str]) -> Self {
        let mut child = env
            .cmd()
            .args(["serve", "--listen", &format!("{ip}:0")])
            .args(extra)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let reader = BufReader::new(child.stderr.take().unwrap());
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in reader.lines() {
                let line = line.unwrap();
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let url = rest.split_whitespace().next().unwrap().to_owned();
                    let _ = tx.send(url);
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let Ok(url) = rx.recv_timeout(Duration::from_secs(20)) else {
            let _ = child.kill();
            panic!("fleetctl serve did not start: {}", log.lock().unwrap());
        };
        Self { child, url, log }
    }

    /// SIGTERM, then the exit status must be success within a few seconds.
    fn stop(mut self) -> String {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "serve ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        // Let the reader thread take the last lines.
        std::thread::sleep(Duration::from_millis(200));
        let log = self.log.lock().unwrap().clone();
        assert!(status.success(), "serve exited with {status}: {log}");
        assert!(log.contains("fleetctl serve: stopped"), "{log}");
        log
    }
}

/// A test that fails half way leaves no `fleetctl serve` behind.
impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(env: &Env, args: &[&str]) -> String {
    let out = env.run(args);
    assert!(out.status.success(), "fleetctl {args:?}: {}", stderr(&out));
    stdout(&out)
}

fn client(env: &Env) -> reqwest::Client {
    let ca = std::fs::read_to_string(env.data_dir().join("control/ca.pem")).unwrap();
    fleetctl::pki::tls::http_client(&ca, Duration::from_secs(10)).unwrap()
}

/// The API of one running `serve`, through the real client.
struct Api {
    http: reqwest::Client,
    url: String,
}

impl Api {
    fn new(env: &Env, serve: &Serve) -> Self {
        Self {
            http: client(env),
            url: serve.url.clone(),
        }
    }

    /// The same API as an agent calls it: the control plane pinned, the
    /// agent's certificate shown.
    fn agent(&self, env: &Env, cert_pem: &str, key_pem: &str) -> Self {
        let control = env.data_dir().join("control");
        let ca = std::fs::read_to_string(control.join("ca.pem")).unwrap();
        let pin = fleetctl::pki::ControlPin::of_cert_pem(
            &std::fs::read_to_string(control.join("control-ca.pem")).unwrap(),
        )
        .unwrap();
        let identity = ClientIdentity {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        };
        Self {
            http: fleetctl::pki::tls::control_client(
                &ca,
                pin,
                Some(&identity),
                Duration::from_secs(10),
            )
            .unwrap(),
            url: self.url.clone(),
        }
    }

    async fn post<B: serde::Serialize>(
        &self,
        path: &str,
        bearer: Option<&str>,
        body: &B,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = self.http.post(format!("{}{path}", self.url)).json(body);
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        (resp.status(), resp.json().await.unwrap())
    }
}

fn beat() -> HeartbeatRequest {
    HeartbeatRequest {
        agent_version: "0.1.0-test".into(),
        agent_uptime_secs: 1,
    }
}

/// What the first run leaves for the second to check.
struct FirstRun {
    tokens: Vec<String>,
    register: RegisterRequest,
    /// The agent's certificate and key.
    agent_cert: (String, String),
    identity: String,
    log: String,
}

/// A fresh `serve`: enroll, renew, heartbeat, list, discover, revoke.
async fn first_run(env: &Env) -> FirstRun {
    let serve = Serve::start(env, "127.4.2.1", &["--identity-ttl", "10m"]);
    let api = Api::new(env, &serve);
    let join = cli(env, &["token", "join", "127.4.2.10", "--name", "web1"])
        .trim()
        .to_owned();
    let operator = cli(env, &["token", "operator", "--ttl", "5m"]);
    let operator = operator.trim();

    let (register, key) = register_request(&join, "web1", &["127.4.2.10"]);
    let (status, body) = api.post("/v1/register", None, &register).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let reg: RegisterResponse = serde_json::from_value(body).unwrap();
    let ttl = reg.identity_expires_at - fleetctl::store::now_unix();
    assert_eq!(ttl, 600, "--identity-ttl applies");
    let agent = api.agent(env, &reg.certificate_pem, &key.key_pem);
    let renew = RenewRequest::default();
    let (status, body) = agent
        .post("/v1/renew", Some(&reg.identity_token), &renew)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let renewed: RenewResponse = serde_json::from_value(body).unwrap();
    let identity = renewed.identity_token;
    let (status, _) = agent.post("/v1/heartbeat", Some(&identity), &beat()).await;
    assert_eq!(status, StatusCode::OK);

    // Refusals are logged with their reason, never with the token.
    let replay = api.post("/v1/register", None, &register).await;
    assert_refused(replay, StatusCode::UNAUTHORIZED, "token_replayed");
    let misuse = agent.post("/v1/heartbeat", Some(operator), &beat()).await;
    assert_refused(misuse, StatusCode::FORBIDDEN, "wrong_audience");

    let json = cli(env, &["agents", "-o", "json", "--url", &api.url]);
    let listed: Vec<AgentRecord> = serde_json::from_str(&json).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].agent_id, reg.agent_id);
    assert_eq!(listed[0].state, RegistrationState::Registered);
    let table = cli(env, &["agents", "--url", &api.url]);
    assert!(table.starts_with("AGENT"), "{table}");
    assert!(
        table.contains("web1") && table.contains("registered"),
        "{table}"
    );

    let sd_token = cli(env, &["token", "sd"]);
    let sd = api
        .http
        .get(format!("{}/v1/sd", api.url))
        .bearer_auth(sd_token.trim());
    let groups: Vec<SdTargetGroup> = sd.send().await.unwrap().json().await.unwrap();
    assert_eq!(groups[0].targets, ["127.4.2.10:9100"]);

    let revoked = cli(env, &["revoke", &reg.agent_id, "--url", &api.url]);
    assert!(
        revoked.contains(&reg.agent_id) && revoked.contains("web1"),
        "{revoked}"
    );
    let after = agent.post("/v1/heartbeat", Some(&identity), &beat()).await;
    assert_refused(after, StatusCode::FORBIDDEN, "revoked");
    let out = env.run(&["revoke", "ag-nobody", "--url", &api.url]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("unknown_agent"), "{}", stderr(&out));

    FirstRun {
        tokens: vec![
            join,
            operator.to_owned(),
            sd_token.trim().to_owned(),
            reg.identity_token,
            identity.clone(),
        ],
        register,
        agent_cert: (reg.certificate_pem.clone(), key.key_pem.clone()),
        identity,
        log: serve.stop(),
    }
}

/// A second `serve` on the same data dir: the registry, the spent join
/// token and the revocation all survived.
async fn second_run(env: &Env, first: &FirstRun) -> String {
    let serve = Serve::start(env, "127.4.2.1", &[]);
    let api = Api::new(env, &serve);
    let json = cli(env, &["agents", "-o", "json", "--url", &api.url]);
    let listed: Vec<AgentRecord> = serde_json::from_str(&json).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, RegistrationState::Revoked);
    let replay = api.post("/v1/register", None, &first.register).await;
    assert_refused(replay, StatusCode::UNAUTHORIZED, "token_replayed");
    let agent = api.agent(env, &first.agent_cert.0, &first.agent_cert.1);
    let renew = agent
        .post("/v1/renew", Some(&first.identity), &RenewRequest::default())
        .await;
    assert_refused(renew, StatusCode::FORBIDDEN, "revoked");
    serve.stop()
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_keeps_registry_and_ca_across_restarts_and_never_logs_a_token() {
    let env = Env::new();
    let control = env.data_dir().join("control");
    let first = first_run(&env).await;
    let ca_before = std::fs::read_to_string(control.join("ca.pem")).unwrap();
    let key_before = std::fs::read(control.join("ca.key")).unwrap();
    let second_log = second_run(&env, &first).await;
    assert_eq!(
        std::fs::read_to_string(control.join("ca.pem")).unwrap(),
        ca_before
    );
    assert_eq!(std::fs::read(control.join("ca.key")).unwrap(), key_before);

    let (first_log, tokens) = (&first.log, &first.tokens);
    for log in [first_log, &second_log] {
        assert!(
            log.contains("token_replayed"),
            "refusals are logged with their code: {log}"
        );
        assert!(log.contains("DEBUG"), "RUST_LOG=debug took effect");
        for token in tokens {
            assert!(
                !log.contains(token.as_str()),
                "a token appears in the serve log"
            );
            // Nor its signature alone, however a line might be cut.
            let signature = token.rsplit('.').next().unwrap();
            assert!(
                !log.contains(signature),
                "a token signature appears in the serve log"
            );
        }
    }
    assert!(first_log.contains("wrong_audience") && first_log.contains("revoked"));
}

#[test]
fn token_commands_need_the_keys_and_good_input() {
    let env = Env::new();
    let out = env.run(&["token", "join", "web1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("fleetctl serve"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());

    let control = env.data_dir().join("control");
    let ca = fleetctl::pki::FleetCa::load_or_create(&control).unwrap();
    let issuer = TokenIssuer::load_or_create(&control).unwrap();
    let verifier = issuer.verifier();
    let join = cli(
        &env,
        &[
            "token",
            "join",
            "web1",
            "--ttl",
            "2m",
            "--name",
            "127.4.2.21",
        ],
    );
    let claims = verifier.verify(join.trim(), Audience::Join).unwrap();
    assert_eq!(
        (claims.host.as_deref(), claims.exp - claims.iat),
        (Some("web1"), 120)
    );
    assert_eq!(claims.names, ["web1", "127.4.2.21"]);
    assert_eq!(
        claims.control_pin,
        Some(ca.control_pin().to_string()),
        "the join token carries the control plane's pin"
    );
    let default = cli(&env, &["token", "join", "127.4.2.20"]);
    let claims = verifier.verify(default.trim(), Audience::Join).unwrap();
    assert_eq!(claims.exp - claims.iat, 15 * 60, "control.join_ttl");
    let op = cli(&env, &["token", "operator", "--name", "ci"]);
    let claims = verifier.verify(op.trim(), Audience::Operator).unwrap();
    assert_eq!((claims.sub.as_str(), claims.exp - claims.iat), ("ci", 3600));
    let stats = cli(&env, &["token", "stats", "--ttl", "30d"]);
    let stats_claims = verifier.verify(stats.trim(), Audience::Stats).unwrap();
    assert_eq!(
        (
            stats_claims.sub.as_str(),
            stats_claims.exp - stats_claims.iat
        ),
        ("prometheus", 30 * 86_400)
    );
    let sd = cli(&env, &["token", "sd"]);
    verifier.verify(sd.trim(), Audience::Sd).unwrap();

    // Listed (never the tokens themselves) and revocable by id.
    let list = cli(&env, &["token", "list"]);
    assert!(list.starts_with("ID"), "{list}");
    assert_eq!(list.lines().count(), 4, "operator, stats, sd: {list}");
    for token in [&op, &stats, &sd] {
        let signature = token.trim().rsplit('.').next().unwrap();
        assert!(!list.contains(signature), "a token in the list: {list}");
    }
    assert!(list.contains(&claims.jti));
    let revoked = cli(&env, &["token", "revoke", &stats_claims.jti[..12]]);
    assert!(revoked.contains(&stats_claims.jti), "{revoked}");
    let json = cli(&env, &["token", "list", "-o", "json"]);
    let records: Vec<fleetctl::model::control::TokenRecord> = serde_json::from_str(&json).unwrap();
    let record = records.iter().find(|r| r.id == stats_claims.jti).unwrap();
    assert!(record.revoked_at.is_some());
    assert_eq!(record.kind, "stats");

    for args in [
        &["token", "join", "two words"][..],
        &["token", "join", "web1", "--name", "not a name"],
        &["token", "join", "web1", "--ttl", "0s"],
        &["token", "join", "web1", "--ttl", "25h"],
        &["token", "operator", "--ttl", "soon"],
        &["token", "revoke", "zz"],
        &["token", "revoke", "00000000"],
    ] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{args:?}");
    }
}

#[test]
fn serve_refuses_bad_settings_and_a_busy_port() {
    let env = Env::new();
    let out = env.run(&[
        "serve",
        "--listen",
        "127.4.2.2:0",
        "--heartbeat",
        "1m",
        "--lost-after",
        "30s",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("lost_after"), "{}", stderr(&out));

    let busy = std::net::TcpListener::bind("127.4.2.3:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = env.run(&["serve", "--listen", &addr]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("cannot listen on {addr}")),
        "{}",
        stderr(&out)
    );

    // The keys exist now (serve made them before finding the port busy);
    // nothing listens on port 1.
    let out = env.run(&["agents", "--url", "https://127.4.2.3:1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot reach the control plane at https://127.4.2.3:1"),
        "{}",
        stderr(&out)
    );
}
