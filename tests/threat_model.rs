//! The README's threat model, one test per "cannot", each run as the
//! attacker would run it: against real `fleetctl serve` and `fleetctl
//! agent` processes (and the real console, `fleetctl status`) on
//! 127.11.0.x, over real TLS. Every one of them must fail for the attacker.
//!
//! ```text
//!  127.11.0.1            the control plane (fleetctl serve)
//!  127.11.0.2            an impostor of it
//!  127.11.0.10..         real agents
//!  127.11.0.30..         fake agents (root on a host, with a real fleet certificate)
//!  127.11.0.20 / .21     a flooding client / an honest one
//! ```
#![allow(clippy::unwrap_used)]

mod common;
mod control_support;
mod fleet;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleet::{Agent, Control};
use fleetctl::auth::{Audience, TokenIssuer};
use fleetctl::model::RegistrationState;
use fleetctl::model::control::{
    AgentRecord, HeartbeatRequest, RegisterResponse, RenewRequest, SdTargetGroup,
};
use fleetctl::pki::{self, tls::ClientIdentity};
use fleetctl::poll::{PollError, StatsClient};
use reqwest::StatusCode;

const ENROLL: Duration = Duration::from_secs(20);
/// The control plane's heartbeat interval in these tests.
const HEARTBEAT: Duration = Duration::from_secs(2);
const SETTINGS: &str = "heartbeat_interval = \"2s\"\nlost_after = \"6s\"\n";

fn registered(s: &fleetctl::model::stats::AgentStats) -> bool {
    s.registration.state == RegistrationState::Registered
}

fn control_dir(control: &Control) -> std::path::PathBuf {
    control.data_dir().join("control")
}

/// A client of the control plane as anyone with the (public) fleet CA
/// certificate has one; with `identity`, it shows that certificate.
fn client(control: &Control, identity: Option<&ClientIdentity>) -> reqwest::Client {
    match identity {
        None => pki::tls::http_client(&control.ca_pem(), Duration::from_secs(10)).unwrap(),
        Some(id) => {
            let pin = pki::ControlPin::of_cert_pem(
                &std::fs::read_to_string(control_dir(control).join("control-ca.pem")).unwrap(),
            )
            .unwrap();
            pki::tls::control_client(&control.ca_pem(), pin, Some(id), Duration::from_secs(10))
                .unwrap()
        }
    }
}

/// Every route of the control plane, called with `token` where a token
/// goes; the statuses, by route.
async fn every_route(
    control: &Control,
    http: &reqwest::Client,
    token: &str,
    agent_id: &str,
) -> Vec<(String, StatusCode)> {
    let url = &control.url;
    let mut out = Vec::new();
    let beat = HeartbeatRequest {
        agent_version: "0.1.0".into(),
        agent_uptime_secs: 1,
    };
    let (register, _) = control_support::register_request(token, "evil.test", &["127.11.0.99"]);
    let calls = [
        (
            "GET /v1/agents",
            http.get(format!("{url}/v1/agents")).bearer_auth(token),
        ),
        (
            "GET /v1/sd",
            http.get(format!("{url}/v1/sd")).bearer_auth(token),
        ),
        (
            "POST /v1/join-tokens",
            http.post(format!("{url}/v1/join-tokens"))
                .bearer_auth(token)
                .json(&serde_json::json!({"host": "127.11.0.99", "ttl_secs": 86400})),
        ),
        (
            "POST /v1/agents/{id}/revoke",
            http.post(format!("{url}/v1/agents/{agent_id}/revoke"))
                .bearer_auth(token),
        ),
        (
            "POST /v1/renew",
            http.post(format!("{url}/v1/renew"))
                .bearer_auth(token)
                .json(&RenewRequest::default()),
        ),
        (
            "POST /v1/heartbeat",
            http.post(format!("{url}/v1/heartbeat"))
                .bearer_auth(token)
                .json(&beat),
        ),
        (
            "POST /v1/register",
            http.post(format!("{url}/v1/register")).json(&register),
        ),
    ];
    for (route, call) in calls {
        let status = call.send().await.unwrap().status();
        out.push((route.to_owned(), status));
    }
    out
}

#[track_caller]
fn assert_all_refused(answers: &[(String, StatusCode)], what: &str) {
    for (route, status) in answers {
        assert!(
            *status == StatusCode::UNAUTHORIZED || *status == StatusCode::FORBIDDEN,
            "{what}: {route} answered {status}"
        );
    }
}

/// A host whose root runs their own server with the host's real fleet
/// certificate and keeps every `Authorization` header it is sent.
struct FakeAgent {
    reg: RegisterResponse,
    key_pem: String,
    addr: SocketAddr,
    captured: Arc<Mutex<Vec<String>>>,
}

impl FakeAgent {
    /// Registers `ip` with a join token for it (as deploy would give the
    /// host), then serves on `ip`.
    async fn enroll(control: &Control, ip: &str, name: &str) -> Self {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let join = control.join_for(ip, name);
        let (mut req, key) = control_support::register_request(&join, name, &[ip]);
        req.stats_port = addr.port();
        let resp = client(control, None)
            .post(format!("{}/v1/register", control.url))
            .json(&req)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let reg: RegisterResponse = resp.json().await.unwrap();
        let captured = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&captured);
        let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
            let sink = Arc::clone(&sink);
            async move {
                if let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
                    sink.lock()
                        .unwrap()
                        .push(auth.trim_start_matches("Bearer ").to_owned());
                }
                StatusCode::SERVICE_UNAVAILABLE
            }
        });
        let cert = pki::tls::ReloadableCert::new(&reg.certificate_pem, &key.key_pem).unwrap();
        tokio::spawn(pki::tls::serve_https(
            listener,
            pki::tls::server_config(cert),
            app,
            std::future::pending(),
        ));
        Self {
            reg,
            key_pem: key.key_pem,
            addr,
            captured,
        }
    }

    fn identity(&self) -> ClientIdentity {
        ClientIdentity {
            cert_pem: self.reg.certificate_pem.clone(),
            key_pem: self.key_pem.clone(),
        }
    }
}

fn registry(control: &Control) -> Vec<AgentRecord> {
    serde_json::from_str(&control.cli(&["agents", "-o", "json"])).unwrap()
}

// ---------------------------------------------------------------------------
// Root on one agent host
// ---------------------------------------------------------------------------

/// The console (`fleetctl status`, the console's engine headless) reads a
/// fake agent; the token it sends is tried on every control-plane route
/// and on a real agent next door.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_host_root_cannot_use_the_consoles_token_on_the_control_plane_or_other_agents() {
    let control = Control::start_on("127.11.0.1", SETTINGS);
    let honest = Agent::start(
        &control,
        "127.11.0.10",
        "honest.test",
        Some(&control.join_for("127.11.0.10", "honest.test")),
    );
    honest
        .wait_stats(&control.stats_client(), ENROLL, "registered", registered)
        .await;
    let fake = FakeAgent::enroll(&control, "127.11.0.30", "fake.test").await;

    let out = control.run_cli(&["status", "-o", "json", "--wait", "8s"]);
    let captured = fake.captured.lock().unwrap().clone();
    assert!(
        !captured.is_empty(),
        "the console never read the fake agent: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = captured[0].clone();
    // It is a stats token for that one agent...
    let claims = TokenIssuer::load(&control_dir(&control))
        .unwrap()
        .verifier()
        .verify_for(
            &token,
            &[&fleetctl::auth::stats_audience_for(&fake.reg.agent_id)],
        )
        .unwrap();
    assert_eq!(claims.aud, format!("fleet-stats:{}", fake.reg.agent_id));

    // ...worthless on every route of the control plane, even on a
    // connection showing the host's own certificate...
    let plain = client(&control, None);
    let with_cert = client(&control, Some(&fake.identity()));
    for http in [&plain, &with_cert] {
        let answers = every_route(&control, http, &token, &honest_id(&control)).await;
        assert_all_refused(&answers, "the console's token");
    }
    // ...and on the agent next door, for /v1/stats and /metrics.
    let http = pki::tls::http_client(&control.ca_pem(), Duration::from_secs(5)).unwrap();
    for path in ["/v1/stats", "/metrics"] {
        let resp = http
            .get(format!("https://{}{path}", honest.addr))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{path}");
        let body: fleetctl::model::control::ApiError = resp.json().await.unwrap();
        assert_eq!(body.error, "wrong_audience");
    }
    // The honest agent is untouched.
    let listed = registry(&control);
    assert!(
        listed
            .iter()
            .all(|a| a.state == RegistrationState::Registered),
        "{listed:?}"
    );
}

fn honest_id(control: &Control) -> String {
    registry(control)
        .into_iter()
        .find(|a| a.hostname == "honest.test")
        .unwrap()
        .agent_id
}

/// A join token bound to host A, registering with the names and
/// addresses of host B and of the control plane (in the body and in the
/// CSR): the certificate names only what the token vouched for, and the
/// console and SD use the vouched address, not the one the agent put first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_host_root_cannot_get_a_certificate_for_another_host_or_the_control_plane() {
    let control = Control::start_on("127.11.0.1", SETTINGS);
    let http = client(&control, None);
    let join = control.join_for("127.11.0.40", "a.test");
    let grabs = [
        "127.11.0.41",
        "b.test",
        "127.11.0.1",
        "localhost",
        "127.0.0.1",
        "*.test",
    ];
    let mut asked: Vec<&str> = vec!["127.11.0.41", "127.11.0.40"];
    asked.extend(grabs.iter().copied().filter(|n| !n.starts_with('*')));
    let key = pki::new_key_and_csr(
        "a.test",
        &grabs
            .iter()
            .filter(|n| !n.starts_with('*'))
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let (mut req, _) = control_support::register_request(&join, "a.test", &asked);
    req.csr_pem = key.csr_pem.clone();
    let resp = http
        .post(format!("{}/v1/register", control.url))
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let reg: RegisterResponse = resp.json().await.unwrap();
    let (sans, chains) = control_support::sans_and_chain(&reg.certificate_pem, &control.ca_pem());
    assert!(chains);
    assert_eq!(
        sans,
        ["127.11.0.40", "a.test"],
        "exactly what the join token vouched for, in its order"
    );
    let (_, pem) = x509_parser::pem::parse_x509_pem(reg.certificate_pem.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    assert!(!cert.is_ca());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth && !eku.any && !eku.code_signing);

    // Where the console reads it and what Prometheus scrapes: the vouched
    // address, though the agent listed another first.
    let record = registry(&control)
        .into_iter()
        .find(|a| a.agent_id == reg.agent_id)
        .unwrap();
    assert_eq!(record.addresses, ["127.11.0.40", "a.test"]);
    let sd_token = control.cli(&["token", "sd"]);
    let groups: Vec<SdTargetGroup> = http
        .get(format!("{}/v1/sd", control.url))
        .bearer_auth(sd_token.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(groups[0].targets, ["127.11.0.40:9100"]);

    // A token bound to A cannot register as B at all.
    let join_a = control.join_for("127.11.0.40", "a.test");
    let (as_b, _) = control_support::register_request(&join_a, "b.test", &["127.11.0.41"]);
    let resp = http
        .post(format!("{}/v1/register", control.url))
        .json(&as_b)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // Even a token that vouches for the control plane's own address (an
    // operator's slip) never gets it into an agent's certificate.
    let slip = control.cli(&["token", "join", "127.11.0.42", "--name", "127.11.0.1"]);
    let (req, _) = control_support::register_request(slip.trim(), "c.test", &["127.11.0.42"]);
    let reg: RegisterResponse = http
        .post(format!("{}/v1/register", control.url))
        .json(&req)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (sans, _) = control_support::sans_and_chain(&reg.certificate_pem, &control.ca_pem());
    assert_eq!(sans, ["127.11.0.42"]);
}

/// A revoked agent keeps its key and certificate (valid for a day), and
/// tries them where they used to work: the console, the control plane
/// and service discovery all refuse them within one heartbeat interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_host_root_cannot_keep_using_a_revoked_agents_certificate() {
    let control = Control::start_on("127.11.0.1", SETTINGS);
    let fake = FakeAgent::enroll(&control, "127.11.0.31", "revoked.test").await;
    let issuer = TokenIssuer::load(&control_dir(&control)).unwrap();
    let (token, _) = issuer
        .issue_stats_for(&fake.reg.agent_id, "test", Duration::from_mins(5))
        .unwrap();
    // Before: the console's client (fleet CA and its revocation list) connects.
    let list = pki::RevocationList::new(&control.ca_pem()).unwrap();
    let console = StatsClient::with_revocations(Arc::clone(&list), Duration::from_secs(5)).unwrap();
    let crl = || async {
        client(&control, None)
            .get(format!("{}/v1/crl", control.url))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec()
    };
    list.replace(crl().await).unwrap();
    assert!(
        matches!(
            console.fetch_with(fake.addr, &token).await,
            Err(PollError::BadResponse(_))
        ),
        "the TLS handshake works before the revocation (the fake answers 503)"
    );

    let sd_token = control.cli(&["token", "sd"]);
    control.cli(&["revoke", &fake.reg.agent_id]);
    let revoked_at = Instant::now();
    // The control plane: its certificate and identity are refused at once.
    let with_cert = client(&control, Some(&fake.identity()));
    let beat = with_cert
        .post(format!("{}/v1/heartbeat", control.url))
        .bearer_auth(&fake.reg.identity_token)
        .json(&HeartbeatRequest {
            agent_version: "0".into(),
            agent_uptime_secs: 1,
        })
        .send()
        .await
        .unwrap();
    assert_eq!(beat.status(), StatusCode::FORBIDDEN);
    let csr = pki::new_key_and_csr("revoked.test", &["revoked.test".into()]).unwrap();
    let renew = with_cert
        .post(format!("{}/v1/renew", control.url))
        .bearer_auth(&fake.reg.identity_token)
        .json(&RenewRequest {
            csr_pem: Some(csr.csr_pem),
        })
        .send()
        .await
        .unwrap();
    assert_eq!(
        renew.status(),
        StatusCode::FORBIDDEN,
        "no fresh certificate either"
    );
    // Prometheus: service discovery no longer lists it.
    let groups: Vec<SdTargetGroup> = client(&control, None)
        .get(format!("{}/v1/sd", control.url))
        .bearer_auth(sd_token.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        groups
            .iter()
            .all(|g| g.labels["__meta_fleet_agent_id"] != fake.reg.agent_id)
    );
    // The console: its next revocation list read (one per registry read,
    // every engine.registry_interval, 5 s by default: well within the 30 s
    // heartbeat interval) refuses the certificate in the TLS handshake.
    list.replace(crl().await).unwrap();
    match console.fetch_with(fake.addr, &token).await {
        Err(PollError::Tls(e)) => assert!(e.to_ascii_lowercase().contains("revoked"), "{e}"),
        other => panic!("the console still talks to a revoked agent: {other:?}"),
    }
    assert!(
        revoked_at.elapsed() < HEARTBEAT,
        "refused everywhere {:?} after the revocation",
        revoked_at.elapsed()
    );
    // And the real console, end to end: `fleetctl status` shows it refused.
    let out = control.run_cli(&["status", "-o", "json", "--wait", "5s"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let row: serde_json::Value = serde_json::from_str::<Vec<serde_json::Value>>(&text)
        .unwrap()
        .into_iter()
        .find(|r| r["address"] == "127.11.0.31")
        .unwrap_or_else(|| panic!("no row for the revoked agent: {text}"));
    assert_eq!(row["registration"], "revoked", "{row}");
    let error = row["agent_error"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(error.contains("revoked") || error.contains("tls"), "{row}");
    assert!(
        fake.captured.lock().unwrap().len() <= 1,
        "the console sent no token over the revoked certificate after the revocation"
    );
}

// ---------------------------------------------------------------------------
// Someone on the fleet network
// ---------------------------------------------------------------------------

/// The attacker holds a certificate the fleet CA signed (for the control
/// plane's own address, even: what the old registration bug handed out)
/// and answers where the agent looks for the control plane. The agent
/// refuses: it never sends its join token there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_attacker_cannot_impersonate_the_control_plane_with_another_fleet_certificate() {
    let mut control = Control::start_on("127.11.0.1", SETTINGS);
    let join = control.join_for("127.11.0.11", "victim.test");
    let addr: SocketAddr = control.url.trim_start_matches("https://").parse().unwrap();
    control.stop();
    // The fleet CA itself signs the impostor's certificate.
    let ca = pki::FleetCa::load_or_create(&control_dir(&control)).unwrap();
    let kc = pki::new_key_and_csr("impostor", &["impostor".into()]).unwrap();
    let cert = ca
        .sign_csr(
            &kc.csr_pem,
            &[addr.ip().to_string()],
            Duration::from_hours(1),
        )
        .unwrap();
    let seen = Arc::new(Mutex::new(0u32));
    let count = Arc::clone(&seen);
    let app = axum::Router::new().fallback(move || {
        let count = Arc::clone(&count);
        async move {
            *count.lock().unwrap() += 1;
            StatusCode::INTERNAL_SERVER_ERROR
        }
    });
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(pki::tls::serve_https(
        listener,
        pki::tls::server_config(pki::tls::ReloadableCert::new(&cert.pem, &kc.key_pem).unwrap()),
        app,
        std::future::pending(),
    ));
    // A client trusting only the fleet CA would accept it: the certificate
    // is good. That is exactly what the pin is for.
    let naive = pki::tls::http_client(&control.ca_pem(), Duration::from_secs(5)).unwrap();
    assert!(
        naive
            .get(format!("{}/healthz", control.url))
            .send()
            .await
            .is_ok()
    );
    *seen.lock().unwrap() = 0;

    let mut victim = Agent::start(&control, "127.11.0.11", "victim.test", Some(&join));
    let line = victim
        .proc
        .wait_log("not this fleet's control plane", ENROLL);
    assert!(line.contains("registering"), "{line}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(*seen.lock().unwrap(), 0, "the impostor got a request");
    assert!(
        victim.token_file().exists(),
        "the join token was neither used nor sent"
    );
    // The operator's CLI refuses it too.
    let out = control.run_cli(&["agents"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not this fleet's control plane"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(*seen.lock().unwrap(), 0);
}

/// 2,000 connections from one address, each sending headers and part of a
/// body, then nothing. `/healthz` from another address still answers in
/// under a second, and every one of the 2,000 is closed within 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_attacker_cannot_hold_the_control_plane_with_slow_bodies() {
    raise_open_files(5_000);
    let control = Control::start_on("127.11.0.1", SETTINGS);
    let addr: SocketAddr = control.url.trim_start_matches("https://").parse().unwrap();
    flood_and_probe(addr, &control.ca_pem(), "/v1/register", 2_000).await;
}

/// The same against an agent's stats API, which shares the server code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_attacker_cannot_hold_an_agents_stats_api_with_slow_bodies() {
    raise_open_files(5_000);
    let control = Control::start_on("127.11.0.1", SETTINGS);
    let agent = Agent::start(
        &control,
        "127.11.0.12",
        "flooded.test",
        Some(&control.join_for("127.11.0.12", "flooded.test")),
    );
    agent
        .wait_stats(&control.stats_client(), ENROLL, "registered", registered)
        .await;
    flood_and_probe(agent.addr, &control.ca_pem(), "/v1/stats", 2_000).await;
}

fn raise_open_files(need: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        hard >= need,
        "this test needs {need} open files; the hard limit is {hard} (raise it: ulimit -Hn)"
    );
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

fn tls_connector(ca_pem: &str) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// One slow-body connection from `from`; how long until the server closed
/// it (from the moment it was opened).
async fn slow_body(
    from: IpAddr,
    to: SocketAddr,
    tls: tokio_rustls::TlsConnector,
    path: &str,
) -> Duration {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let opened = Instant::now();
    let Ok(tcp) = connect_from(from, to).await else {
        return opened.elapsed();
    };
    let name = rustls_pki_types::ServerName::IpAddress(to.ip().into());
    let Ok(Ok(mut stream)) =
        tokio::time::timeout(Duration::from_secs(45), tls.connect(name, tcp)).await
    else {
        return opened.elapsed();
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {to}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"join"
    );
    if stream.write_all(head.as_bytes()).await.is_err() || stream.flush().await.is_err() {
        return opened.elapsed();
    }
    let mut buf = [0u8; 512];
    // Never send the rest; read until the server gives up on us.
    loop {
        match tokio::time::timeout(Duration::from_mins(1), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => return opened.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

/// `GET /healthz` from `from` on a fresh connection; the time it took.
async fn healthz(from: IpAddr, to: SocketAddr, tls: &tokio_rustls::TlsConnector) -> Duration {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let started = Instant::now();
    let tcp = connect_from(from, to).await.unwrap();
    let name = rustls_pki_types::ServerName::IpAddress(to.ip().into());
    let mut stream = tls.connect(name, tcp).await.unwrap();
    stream
        .write_all(
            format!("GET /healthz HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap_or_default();
    // An agent answers `ok`; the control plane its health as JSON.
    assert!(
        answer.starts_with("HTTP/1.1 200")
            && (answer.ends_with("ok") || answer.contains(r#""status":"ok""#)),
        "{answer:?}"
    );
    started.elapsed()
}

async fn flood_and_probe(target: SocketAddr, ca_pem: &str, path: &str, connections: usize) {
    let attacker: IpAddr = "127.11.0.20".parse().unwrap();
    let honest: IpAddr = "127.11.0.21".parse().unwrap();
    let tls = tls_connector(ca_pem);
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (tls, path) = (tls.clone(), path.to_owned());
        flood.spawn(async move { slow_body(attacker, target, tls, &path).await });
    }
    // While the flood holds what it can: the honest client is served at once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut probes = Vec::new();
    for _ in 0..5 {
        probes.push(healthz(honest, target, &tls).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        probes.iter().all(|t| *t < Duration::from_secs(1)),
        "/healthz took {probes:?} during the flood"
    );
    eprintln!("{target}: /healthz from another address during the flood: {probes:?}");
    let mut held = Vec::with_capacity(connections);
    while let Some(closed_after) = flood.join_next().await {
        held.push(closed_after.unwrap());
    }
    held.sort();
    let longest = *held.last().unwrap();
    assert_eq!(held.len(), connections);
    assert!(
        longest < Duration::from_secs(30),
        "a slow connection was held for {longest:?}"
    );
    // Some were served (and then cut off); the rest were refused at once.
    assert!(held[0] < Duration::from_secs(2), "{:?}", held[0]);
    let cut_off = held
        .iter()
        .filter(|t| **t >= Duration::from_secs(5))
        .count();
    eprintln!(
        "{target}: {connections} slow connections: {cut_off} held until the body timeout, \
         the rest refused at once; the longest was closed after {longest:?}"
    );
    // Afterwards the attacker's address is served again: the slots came back.
    assert!(healthz(attacker, target, &tls).await < Duration::from_secs(1));
}

/// Bodies over 64 KiB are refused with 413 before they are read, and an
/// idle keep-alive connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_attacker_cannot_send_huge_bodies_or_keep_idle_connections() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let control = Control::start_on("127.11.0.1", SETTINGS);
    let to: SocketAddr = control.url.trim_start_matches("https://").parse().unwrap();
    let tls = tls_connector(&control.ca_pem());
    let open = || async {
        let tcp = connect_from("127.11.0.22".parse().unwrap(), to)
            .await
            .unwrap();
        tls.connect(rustls_pki_types::ServerName::IpAddress(to.ip().into()), tcp)
            .await
            .unwrap()
    };
    // 70 KiB announced: refused before a byte of it is read.
    let mut stream = open().await;
    stream
        .write_all(
            format!(
                "POST /v1/register HTTP/1.1\r\nHost: {to}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n",
                70 * 1024
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer:?}"
    );

    let mut stream = open().await;
    stream
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {to}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let opened = Instant::now();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Kept alive, then idle: the server ends it.
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "an idle keep-alive connection is still open after 30s"
    );
    assert!(
        opened.elapsed() < Duration::from_secs(15),
        "{:?}",
        opened.elapsed()
    );
}

// ---------------------------------------------------------------------------
// A leaked stats token
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaked_stats_token_cannot_use_the_control_plane() {
    let control = Control::start_on("127.11.0.1", SETTINGS);
    let fake = FakeAgent::enroll(&control, "127.11.0.32", "any.test").await;
    let stats = control.stats_token();
    for http in [
        client(&control, None),
        client(&control, Some(&fake.identity())),
    ] {
        let answers = every_route(&control, &http, &stats, &fake.reg.agent_id).await;
        assert_all_refused(&answers, "a stats token");
    }
}

/// Revoked with `fleetctl token revoke`: refused by an agent within one
/// heartbeat interval (the control plane tells agents with each heartbeat).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaked_stats_token_cannot_be_used_after_it_is_revoked() {
    let control = Control::start_on("127.11.0.1", SETTINGS);
    let agent = Agent::start(
        &control,
        "127.11.0.13",
        "revokes.test",
        Some(&control.join_for("127.11.0.13", "revokes.test")),
    );
    let stats = control.stats_token();
    let leaked = StatsClient::new(&control.ca_pem(), &stats, Duration::from_secs(5)).unwrap();
    agent
        .wait_stats(&leaked, ENROLL, "registered", registered)
        .await;
    let id = TokenIssuer::load(&control_dir(&control))
        .unwrap()
        .verifier()
        .verify(&stats, Audience::Stats)
        .unwrap()
        .jti;
    let revoked_at = Instant::now();
    control.cli(&["token", "revoke", &id]);
    let refused = loop {
        match leaked.fetch(agent.addr).await {
            Err(PollError::Unauthorized { code, .. }) => break code,
            other => {
                assert!(
                    revoked_at.elapsed() < HEARTBEAT + Duration::from_secs(1),
                    "still served {:?} after the revocation: {other:?}",
                    revoked_at.elapsed()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(refused, "token_revoked");
    assert!(revoked_at.elapsed() < HEARTBEAT + Duration::from_secs(1));
    // Another stats token still works: the revocation is of that one token.
    agent
        .wait_stats(&control.stats_client(), ENROLL, "served", registered)
        .await;
}

/// A stats token longer-lived than the fleet allows (minted with the key
/// itself, bypassing the CLI's cap) is refused by agents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaked_stats_token_cannot_live_longer_than_the_cap() {
    let control = Control::start_on("127.11.0.1", SETTINGS);
    let agent = Agent::start(
        &control,
        "127.11.0.14",
        "cap.test",
        Some(&control.join_for("127.11.0.14", "cap.test")),
    );
    agent
        .wait_stats(&control.stats_client(), ENROLL, "registered", registered)
        .await;
    let (long, _) = TokenIssuer::load(&control_dir(&control))
        .unwrap()
        .issue(Audience::Stats, "x", Duration::from_hours(400 * 24))
        .unwrap();
    let client = StatsClient::new(&control.ca_pem(), &long, Duration::from_secs(5)).unwrap();
    match client.fetch(agent.addr).await {
        Err(PollError::Unauthorized { code, .. }) => assert_eq!(code, "token_too_long"),
        other => panic!("a 400-day stats token was accepted: {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// A leaked operator token
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaked_operator_token_cannot_read_agents() {
    let control = Control::start_on("127.11.0.1", SETTINGS);
    let agent = Agent::start(
        &control,
        "127.11.0.15",
        "op.test",
        Some(&control.join_for("127.11.0.15", "op.test")),
    );
    agent
        .wait_stats(&control.stats_client(), ENROLL, "registered", registered)
        .await;
    let operator = control.operator_token();
    let http = pki::tls::http_client(&control.ca_pem(), Duration::from_secs(5)).unwrap();
    for path in ["/v1/stats", "/metrics"] {
        let resp = http
            .get(format!("https://{}{path}", agent.addr))
            .bearer_auth(&operator)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{path}");
    }
}

/// Revoked with `fleetctl token revoke`: refused by the control plane at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaked_operator_token_cannot_be_used_after_it_is_revoked() {
    let control = Control::start_on("127.11.0.1", SETTINGS);
    let operator = control.operator_token();
    let http = client(&control, None);
    let get = || async {
        http.get(format!("{}/v1/agents", control.url))
            .bearer_auth(&operator)
            .send()
            .await
            .unwrap()
    };
    assert_eq!(get().await.status(), StatusCode::OK);
    let list = control.cli(&["token", "list", "-o", "json"]);
    let records: Vec<fleetctl::model::control::TokenRecord> = serde_json::from_str(&list).unwrap();
    let id = &records.iter().find(|r| r.kind == "operator").unwrap().id;
    control.cli(&["token", "revoke", id]);
    let resp = get().await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: fleetctl::model::control::ApiError = resp.json().await.unwrap();
    assert_eq!(body.error, "token_revoked");
}

/// `fleetctl token operator --ttl 400d` is refused (exit 2, naming the
/// cap); a 400-day token minted with the key itself is refused by the
/// control plane.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaked_operator_token_cannot_live_longer_than_30_days() {
    let control = Control::start_on("127.11.0.1", SETTINGS);
    for kind in ["operator", "stats", "sd"] {
        let out = control.run_cli(&["token", kind, "--ttl", "400d"]);
        assert_eq!(out.status.code(), Some(2), "{kind}");
        assert!(out.stdout.is_empty(), "{kind}: a token was printed");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("control.max_operator_ttl") && err.contains("30 days"),
            "{err}"
        );
    }
    assert!(
        !control
            .cli(&["token", "operator", "--ttl", "30d"])
            .is_empty()
    );
    let (long, _) = TokenIssuer::load(&control_dir(&control))
        .unwrap()
        .issue(Audience::Operator, "x", Duration::from_hours(400 * 24))
        .unwrap();
    let resp = client(&control, None)
        .get(format!("{}/v1/agents", control.url))
        .bearer_auth(&long)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: fleetctl::model::control::ApiError = resp.json().await.unwrap();
    assert_eq!(body.error, "token_too_long");
}

// ---------------------------------------------------------------------------
// Key rotation
// ---------------------------------------------------------------------------

/// `fleetctl token rotate-key` under a running fleet with the demo's
/// short lifetimes: every agent stays registered under the same id (none
/// enrolls again), renews onto the new key, and the console's reads never
/// fail, before, during or after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_loses_no_agent() {
    let control = Control::start_on(
        "127.11.0.1",
        "identity_ttl = \"8s\"\ncert_ttl = \"20s\"\nheartbeat_interval = \"1s\"\nlost_after = \"4s\"\n",
    );
    let agents: Vec<Agent> = (16..19)
        .map(|i| {
            let ip = format!("127.11.0.{i}");
            let name = format!("rot{i}.test");
            Agent::start(&control, &ip, &name, Some(&control.join_for(&ip, &name)))
        })
        .collect();
    let stats = control.stats_client();
    for a in &agents {
        a.wait_stats(&stats, ENROLL, "registered", registered).await;
    }
    let before = registry(&control);
    let old_operator = control.operator_token();
    let old_kid = TokenIssuer::load(&control_dir(&control))
        .unwrap()
        .signing_kid()
        .to_owned();

    let said = control.cli(&["token", "rotate-key", "--publish-for", "3s"]);
    assert!(said.contains("published now"), "{said}");
    // Read every agent as the console does (a token per agent, from the
    // keys on disk as they are now) until every identity has been renewed
    // twice over on the new key.
    let until = Instant::now() + Duration::from_secs(3 + 2 * 8 + 2);
    let mut reads = 0;
    while Instant::now() < until {
        let issuer = TokenIssuer::load(&control_dir(&control)).unwrap();
        for (a, rec) in agents.iter().zip(&before) {
            let (token, _) = issuer
                .issue_stats_for(&rec.agent_id, "fleetctl-console", Duration::from_mins(1))
                .unwrap();
            let client =
                StatsClient::new(&control.ca_pem(), &token, Duration::from_secs(5)).unwrap();
            let s = client.fetch(a.addr).await.unwrap_or_else(|e| {
                panic!("a read failed during the rotation: {e}\n{}", a.proc.log())
            });
            assert_eq!(
                s.registration.agent_id.as_deref(),
                Some(rec.agent_id.as_str())
            );
            reads += 1;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(reads > 30);
    let new_kid = TokenIssuer::load(&control_dir(&control))
        .unwrap()
        .signing_kid()
        .to_owned();
    assert_ne!(new_kid, old_kid, "the new key signs now");
    let after = registry(&control);
    assert_eq!(
        after.iter().map(|a| &a.agent_id).collect::<Vec<_>>(),
        before.iter().map(|a| &a.agent_id).collect::<Vec<_>>(),
        "the same agents, none enrolled again"
    );
    assert!(
        after
            .iter()
            .all(|a| a.state == RegistrationState::Registered),
        "{after:?}"
    );
    for a in &agents {
        let identity = std::fs::read_to_string(a.dir.path().join("data/identity.jwt")).unwrap();
        let kid = jsonwebtoken::decode_header(identity.trim())
            .unwrap()
            .kid
            .unwrap();
        assert_eq!(kid, new_kid, "{} renewed onto the new key", a.hostname);
        assert_eq!(
            a.proc
                .log()
                .matches("registered with the control plane")
                .count(),
            1,
            "{} enrolled again",
            a.hostname
        );
    }
    // A token the old key signed still verifies until it expires.
    let resp = client(&control, None)
        .get(format!("{}/v1/agents", control.url))
        .bearer_auth(&old_operator)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

// ---------------------------------------------------------------------------
// Another local user on the console's machine
// ---------------------------------------------------------------------------

/// As `nobody`: the keys and the registry cannot be read, no token can be
/// minted, and no secret shows in a process's command line or environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root to run commands as another user (the interop suite in .ci/run runs it)"]
async fn another_local_user_cannot_read_the_keys_or_mint_tokens() {
    use std::os::unix::fs::PermissionsExt as _;
    common::require_root();
    let control = Control::start_on("127.11.0.1", SETTINGS);
    let agent = Agent::start(
        &control,
        "127.11.0.19",
        "local.test",
        Some(&control.join_for("127.11.0.19", "local.test")),
    );
    agent
        .wait_stats(&control.stats_client(), ENROLL, "registered", registered)
        .await;
    // Only fleetctl's own permissions stand in the way: the temp dirs
    // around the data are opened up, as a home directory often is.
    for dir in [control.dir.path(), agent.dir.path()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let bin = control.dir.path().join("fleetctl");
    std::fs::copy(env!("CARGO_BIN_EXE_fleetctl"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = control.data_dir();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data dir");
    assert_eq!(mode(&data.join("control")), 0o700, "the control dir");
    for key in ["ca.key", "control-ca.key", "token.key", "server.key"] {
        assert_eq!(mode(&data.join("control").join(key)), 0o600, "{key}");
    }
    assert_eq!(
        mode(&agent.dir.path().join("data")),
        0o700,
        "the agent's data dir"
    );

    let as_nobody = |program: &std::path::Path, args: &[&str]| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(program)
            .args(args)
            .env_remove("FLEETCTL_CONFIG")
            .env_remove("FLEETCTL_DATA_DIR")
            .output()
            .unwrap()
    };
    // The test itself: nobody can run the binary and read a world-readable file.
    let out = as_nobody(&bin, &["--version"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = control.dir.path().join("public.txt");
    std::fs::write(&public, "anyone").unwrap();
    let out = as_nobody(
        std::path::Path::new("/bin/cat"),
        &[public.to_str().unwrap()],
    );
    assert_eq!(
        out.stdout, b"anyone",
        "the harness cannot run commands as nobody"
    );
    for secret in [
        data.join("control/ca.key"),
        data.join("control/control-ca.key"),
        data.join("control/token.key"),
        data.join("control/token-keys.json"),
        data.join("inventory.sqlite3"),
        agent.dir.path().join("data/agent.key"),
        agent.dir.path().join("data/identity.jwt"),
    ] {
        if !secret.exists() {
            continue;
        }
        let out = as_nobody(
            std::path::Path::new("/bin/cat"),
            &[secret.to_str().unwrap()],
        );
        assert!(!out.status.success(), "nobody read {}", secret.display());
        assert!(out.stdout.is_empty());
    }
    let data_arg = data.to_str().unwrap();
    let config = control.dir.path().join("config.toml");
    for args in [
        vec!["token", "operator"],
        vec!["token", "stats"],
        vec!["token", "join", "127.11.0.99"],
        vec!["token", "list"],
        vec!["token", "rotate-key"],
    ] {
        let mut full = vec!["--config", config.to_str().unwrap(), "--data-dir", data_arg];
        full.extend(args.iter().copied());
        let out = as_nobody(&bin, &full);
        assert!(!out.status.success(), "nobody ran {args:?}");
        assert!(out.stdout.is_empty(), "nobody got a token from {args:?}");
    }
    // No secret in any process's argv or environment (readable via /proc).
    let join = control.join_for("127.11.0.98", "x.test");
    let identity = std::fs::read_to_string(agent.dir.path().join("data/identity.jwt")).unwrap();
    assert_no_process_shows(&[&join, identity.trim()]);
}

/// No process's command line or environment holds any of `tokens` (their
/// signatures, which are what make them credentials).
fn assert_no_process_shows(tokens: &[&str]) {
    let pids = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok());
    for pid in pids {
        for file in ["cmdline", "environ"] {
            let Ok(bytes) = std::fs::read(format!("/proc/{pid}/{file}")) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            for token in tokens {
                let sig = token.rsplit('.').next().unwrap();
                assert!(!text.contains(sig), "a token in /proc/{pid}/{file}");
            }
        }
    }
}
