//! Several `fleetctl serve` replicas sharing one registry in a real
//! PostgreSQL 15 (started by the test, see `tests/pg/mod.rs`), with real
//! `fleetctl agent` processes told of every replica:
//! - agents enrolled across the replicas keep heartbeating and renewing
//!   through another when one is killed; none is shown lost or expired,
//!   and `fleetctl agents` from each remaining replica agrees;
//! - one join token sent to two replicas at the same instant registers once;
//! - a revocation made through one replica is refused by the other within
//!   one heartbeat (an agent's, and a stats token's).
//!
//! Replicas listen on 127.16.0.x, 127.16.2.x and 127.16.3.x; agents on
//! 127.16.1.x; PostgreSQL on .2 of each test's block.
#![allow(clippy::unwrap_used)]

mod common;
mod fleet;
mod pg;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fleet::{Agent, Control};
use fleetctl::model::control::{AgentRecord, RegisterRequest};
use fleetctl::model::{RegistrationState, TokenState};

/// Short lifetimes, so renewals happen while the test watches.
const SETTINGS: &str = "heartbeat_interval = \"2s\"\nlost_after = \"6s\"\n\
                        identity_ttl = \"15s\"\ncert_ttl = \"30s\"\n";
const HEARTBEAT: Duration = Duration::from_secs(2);

/// `n` replicas on `{block}.11`, `.12`, ... sharing the registry in `pg`.
fn replicas(block: &str, n: u8, pg: &pg::PgServer) -> Vec<Control> {
    let settings = format!("{SETTINGS}{}", pg.control_settings());
    let first = Control::start_on(&format!("{block}.11"), &settings);
    let mut all = vec![first];
    for i in 1..n {
        let replica = Control::start_replica(&format!("{block}.{}", 11 + i), &settings, &all[0]);
        all.push(replica);
    }
    for replica in &all {
        assert!(
            replica.all_logs().contains("registry postgres://"),
            "{}",
            replica.all_logs()
        );
    }
    all
}

/// `fleetctl agents -o json` run with `via`'s data dir against `url` only.
fn agents_via(via: &Control, url: &str) -> Vec<AgentRecord> {
    serde_json::from_str(&via.cli(&["agents", "-o", "json", "--url", url])).unwrap()
}

fn states(agents: &[AgentRecord]) -> BTreeMap<String, RegistrationState> {
    agents
        .iter()
        .map(|a| (a.agent_id.clone(), a.state))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL 15 server binaries (apt-get install postgresql-15) and root to run them as nobody"]
async fn agents_fail_over_when_a_replica_dies_and_none_is_lost() {
    let pg = pg::PgServer::start("127.16.0.2");
    let mut cps = replicas("127.16.0", 3, &pg);
    let urls: Vec<String> = cps.iter().map(|c| c.url.clone()).collect();
    let ca = cps[0].ca_file();
    // Agent i tries replica i % 3 first: enrollments spread over all three.
    let agents: Vec<Agent> = (0..6)
        .map(|i| {
            let ip = format!("127.16.1.{}", i + 1);
            let host = format!("node{i}.test");
            let join = cps[i % 3].join_for(&ip, &host);
            let mut order = urls.clone();
            order.rotate_left(i % 3);
            Agent::start_with(&order, &ca, &ip, &host, Some(&join))
        })
        .collect();
    let client = cps[1].stats_client();
    for agent in &agents {
        agent
            .wait_stats(&client, Duration::from_secs(30), "registered", |s| {
                s.registration.state == RegistrationState::Registered
            })
            .await;
    }
    for (i, cp) in cps.iter().enumerate() {
        let registered_here = cp
            .all_logs()
            .lines()
            .filter(|l| l.contains("agent registered"))
            .count();
        assert_eq!(registered_here, 2, "replica {i} registered its two agents");
    }
    let before: BTreeMap<String, i64> = agents_via(&cps[1], &urls[1])
        .into_iter()
        .map(|a| (a.agent_id, a.identity_expires_at))
        .collect();
    assert_eq!(before.len(), 6);

    // Replica 0 dies without a word (SIGKILL).
    let killed_at = fleetctl::model::time::now_unix();
    drop(cps[0].proc.take());

    // Over an identity lifetime and more: every agent renews (and
    // heartbeats) through another replica; at no read is one lost or expired.
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut renewed_all = false;
    while Instant::now() < deadline {
        let seen = agents_via(&cps[1], &urls[1]);
        assert_eq!(seen.len(), 6);
        for a in &seen {
            assert_eq!(
                a.state,
                RegistrationState::Registered,
                "{} after the replica died: {a:?}",
                a.hostname
            );
        }
        renewed_all = seen.iter().all(|a| {
            a.identity_expires_at > before[&a.agent_id]
                && a.last_heartbeat_at.is_some_and(|t| t > killed_at + 2)
        });
        if renewed_all {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        renewed_all,
        "not every agent renewed through another replica: {:?}",
        agents_via(&cps[1], &urls[1])
    );
    for agent in &agents {
        let stats = agent
            .wait_stats(&client, Duration::from_secs(5), "a live token", |s| {
                s.token.state == TokenState::Valid
                    && s.registration.state == RegistrationState::Registered
            })
            .await;
        assert_ne!(
            stats.registration.controller, urls[0],
            "{}: still showing the dead replica",
            agent.hostname
        );
        assert!(urls[1..].contains(&stats.registration.controller));
    }
    // Both remaining replicas tell the same registry.
    let (b, c) = (agents_via(&cps[1], &urls[1]), agents_via(&cps[2], &urls[2]));
    assert_eq!(states(&b), states(&c));
    // And the CLI, told of all three, skips the dead one by itself.
    let all_urls: Vec<&str> = urls.iter().flat_map(|u| ["--url", u.as_str()]).collect();
    let mut args = vec!["agents", "-o", "json"];
    args.extend(all_urls);
    let via_all: Vec<AgentRecord> = serde_json::from_str(&cps[2].cli(&args)).unwrap();
    assert_eq!(states(&via_all), states(&b));
    assert!(
        pg.log().lines().all(|l| !l.contains("FATAL")),
        "{}",
        pg.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL 15 server binaries (apt-get install postgresql-15) and root to run them as nobody"]
async fn one_join_token_sent_to_two_replicas_at_once_registers_once() {
    let pg = pg::PgServer::start("127.16.2.2");
    let cps = replicas("127.16.2", 2, &pg);
    let http = fleetctl::pki::tls::http_client(&cps[0].ca_pem(), Duration::from_secs(10)).unwrap();
    for n in 0..5 {
        let host = format!("race{n}.test");
        let token = cps[n % 2].join_token(&host);
        let request = |_| {
            let key = fleetctl::pki::new_key_and_csr(&host, std::slice::from_ref(&host)).unwrap();
            RegisterRequest {
                join_token: token.clone(),
                csr_pem: key.csr_pem,
                hostname: host.clone(),
                addresses: Vec::new(),
                stats_port: 9701,
                agent_version: "0.1.0".into(),
            }
        };
        let (a, b) = (request(0), request(1));
        let post = |url: String, body: RegisterRequest| {
            let http = http.clone();
            async move {
                let resp = http
                    .post(format!("{url}/v1/register"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                (resp.status().as_u16(), resp.text().await.unwrap())
            }
        };
        let (x, y) = tokio::join!(post(cps[0].url.clone(), a), post(cps[1].url.clone(), b));
        let mut statuses = [x.0, y.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 401], "{x:?} {y:?}");
        let refused = if x.0 == 401 { &x.1 } else { &y.1 };
        assert!(refused.contains("token_replayed"), "{refused}");
    }
    let listed = agents_via(&cps[1], &cps[1].url);
    let mut hosts: Vec<&str> = listed.iter().map(|a| a.hostname.as_str()).collect();
    hosts.sort_unstable();
    assert_eq!(
        hosts,
        [
            "race0.test",
            "race1.test",
            "race2.test",
            "race3.test",
            "race4.test"
        ],
        "exactly one registration per token"
    );
}

/// The `jti` of a JWT (read, not verified: the test minted it).
fn token_id(token: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&json).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL 15 server binaries (apt-get install postgresql-15) and root to run them as nobody"]
async fn a_revocation_through_one_replica_is_refused_by_the_other_within_a_heartbeat() {
    let pg = pg::PgServer::start("127.16.3.2");
    let cps = replicas("127.16.3", 2, &pg);
    // The agent knows only replica 1; revocations go through replica 0.
    let ip = "127.16.3.31";
    let join = cps[0].join_for(ip, "victim.test");
    let agent = Agent::start_with(
        std::slice::from_ref(&cps[1].url),
        &cps[1].ca_file(),
        ip,
        "victim.test",
        Some(&join),
    );
    let stats_token = cps[1].stats_token();
    let client =
        fleetctl::poll::StatsClient::new(&cps[1].ca_pem(), &stats_token, Duration::from_secs(5))
            .unwrap();
    let stats = agent
        .wait_stats(&client, Duration::from_secs(30), "registered", |s| {
            s.registration.state == RegistrationState::Registered
        })
        .await;
    let agent_id = stats.registration.agent_id.unwrap();

    // A stats token revoked through replica 0's data dir (the registry they
    // share) is refused by the agent, which hears only replica 1.
    let out = cps[0].cli(&["token", "revoke", &token_id(&stats_token)]);
    assert!(out.contains("revoked stats token"), "{out}");
    let revoked_at = Instant::now();
    let refused_after = loop {
        match client.fetch(agent.addr).await {
            Err(e) if e.to_string().contains("refused the stats token") => {
                break revoked_at.elapsed();
            }
            _ => {}
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(10),
            "the agent still takes the revoked stats token\n{}",
            agent.proc.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // One heartbeat, and the replica's one-second cache of the shared list.
    assert!(
        refused_after <= HEARTBEAT + Duration::from_millis(1_500),
        "the revoked stats token worked for {refused_after:?}"
    );

    // The agent, revoked through replica 0, is refused by replica 1.
    let fresh = cps[1].stats_client();
    let out = cps[0].cli(&["revoke", &agent_id, "--url", &cps[0].url]);
    assert!(out.contains("revoked"), "{out}");
    let revoked_at = Instant::now();
    agent
        .wait_stats(&fresh, Duration::from_secs(10), "revoked", |s| {
            s.registration.state == RegistrationState::Revoked
        })
        .await;
    let took = revoked_at.elapsed();
    assert!(
        took <= HEARTBEAT + Duration::from_secs(1),
        "the agent learned of its revocation after {took:?}"
    );
    assert!(
        cps[1].all_logs().contains("revoked"),
        "replica 1 refused it: {}",
        cps[1].all_logs()
    );
    eprintln!("stats token refused after {refused_after:?}; agent revoked after {took:?}");
}
