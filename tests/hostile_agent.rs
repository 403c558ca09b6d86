//! An agent (root on its host, so it can send anything) registers and
//! heartbeats with a version full of terminal escapes: the real `fleetctl
//! serve` refuses it, and neither `fleetctl agents` nor `/v1/sd` ever
//! carries a raw control character, even for a record an older control
//! plane stored. On 127.12.1.x.
#![allow(clippy::unwrap_used)]

mod common;
mod control_support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{Env, stderr, stdout};
use control_support::{assert_refused, register_request};
use fleetctl::model::control::{HeartbeatRequest, RegisterResponse};
use fleetctl::store::registry::{CertRow, NewAgent, Registry};
use reqwest::StatusCode;

const HOSTILE: &str = "0.1\x1b]0;PWNED\x07\x1b[2J\u{9b}1m";

/// `fleetctl serve` on `ip`, port 0; killed on drop.
struct Serve {
    child: Child,
    url: String,
}

impl Serve {
    fn start(env: &Env, ip: &str) -> Self {
        let mut child = env
            .cmd()
            .args(["serve", "--listen", &format!("{ip}:0")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = loop {
            let line = lines.next().expect("fleetctl serve exited").unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Self { child, url }
    }
}

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

#[track_caller]
fn assert_clean(what: &str, text: &str) {
    assert!(
        !text.contains(['\x1b', '\x07', '\u{9b}']),
        "{what} carries a raw control character: {text:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[allow(clippy::too_many_lines)] // one hostile record's way through every writer, start to end
async fn an_agent_version_full_of_escapes_never_reaches_the_operator() {
    let env = Env::new();
    let serve = Serve::start(&env, "127.12.1.1");
    let ca = std::fs::read_to_string(env.data_dir().join("control/ca.pem")).unwrap();
    let http = fleetctl::pki::tls::http_client(&ca, Duration::from_secs(10)).unwrap();
    let post = |path: &str, bearer: Option<String>, body: serde_json::Value| {
        let mut req = http.post(format!("{}{path}", serve.url)).json(&body);
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        async move {
            let resp = req.send().await.unwrap();
            (
                resp.status(),
                resp.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };

    // Registering with it: refused, and the join token is not spent.
    let join = cli(&env, &["token", "join", "127.12.1.10", "--name", "web1"])
        .trim()
        .to_owned();
    let (mut request, _) = register_request(&join, "web1", &["127.12.1.10"]);
    request.agent_version = HOSTILE.into();
    let refused = post(
        "/v1/register",
        None,
        serde_json::to_value(&request).unwrap(),
    )
    .await;
    assert_clean("the refusal", &refused.1.to_string());
    assert_refused(refused, StatusCode::BAD_REQUEST, "bad_request");
    request.agent_version = "0.1.0".into();
    let (status, body) = post(
        "/v1/register",
        None,
        serde_json::to_value(&request).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let registered: RegisterResponse = serde_json::from_value(body).unwrap();

    // Heartbeating with it: refused too, and the version stays.
    let beat = HeartbeatRequest {
        agent_version: HOSTILE.into(),
        agent_uptime_secs: 1,
    };
    let refused = post(
        "/v1/heartbeat",
        Some(registered.identity_token.clone()),
        serde_json::to_value(&beat).unwrap(),
    )
    .await;
    assert_refused(refused, StatusCode::BAD_REQUEST, "bad_request");

    // A record stored by a control plane that took anything.
    let mut registry = Registry::open(&env.data_dir().join("inventory.sqlite3")).unwrap();
    let now = fleetctl::store::now_unix();
    registry
        .register(
            &NewAgent {
                agent_id: "ag-00000000000000aa".into(),
                bound_host: "127.12.1.11".into(),
                hostname: "old1".into(),
                addresses: vec!["127.12.1.11".into()],
                stats_port: 9100,
                agent_version: HOSTILE.into(),
                identity_expires_at: now + 600,
            },
            "jti-old1",
            now + 600,
            now,
            || {
                let cert = CertRow {
                    serial: "0a".into(),
                    not_after: now + 6000,
                };
                Ok::<_, std::convert::Infallible>((cert, ()))
            },
        )
        .unwrap()
        .unwrap();

    let table = cli(&env, &["agents", "--url", &serve.url]);
    assert_clean("fleetctl agents", &table);
    assert!(table.contains("web1") && table.contains("0.1.0"), "{table}");
    assert!(
        table.contains("0.1\\x1b]0;PWNED\\x07"),
        "the stored version is shown, escaped: {table}"
    );
    let json = cli(&env, &["agents", "-o", "json", "--url", &serve.url]);
    assert_clean("fleetctl agents -o json", &json);
    let listed: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert!(
        listed.iter().any(|a| a["agent_version"] == HOSTILE),
        "JSON keeps what was stored, escaped as JSON: {json}"
    );

    let operator = cli(&env, &["token", "operator", "--ttl", "5m"]);
    let sd = http
        .get(format!("{}/v1/sd", serve.url))
        .bearer_auth(operator.trim())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Prometheus reads it, not a terminal; serde escapes the C0 controls.
    assert!(!sd.contains(['\x1b', '\x07']), "/v1/sd: {sd:?}");
    assert!(sd.contains("127.12.1.10:9100"), "{sd}");
}
