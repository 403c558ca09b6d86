//! The control plane's HTTPS API in-process: real TLS, the real client
//! from `pki::tls::http_client`, servers on 127.4.1.x port 0.
#![allow(clippy::unwrap_used)]

mod control_support;

use std::time::Duration;

use control_support::{Running, assert_refused, parse, register_request, sans_and_chain};
use fleetctl::auth::{Audience, TokenIssuer};
use fleetctl::control::Settings;
use fleetctl::model::RegistrationState;
use fleetctl::model::control::{
    AgentRecord, HeartbeatRequest, HeartbeatResponse, JoinTokenRequest, JoinTokenResponse,
    RenewRequest, RenewResponse, SdTargetGroup,
};
use fleetctl::pki;
use reqwest::StatusCode;

fn beat() -> HeartbeatRequest {
    HeartbeatRequest {
        agent_version: "0.1.0-test".into(),
        agent_uptime_secs: 5,
    }
}

async fn agents(cp: &Running) -> Vec<AgentRecord> {
    let (status, body) = cp.get("/v1/agents", Some(&cp.operator())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    parse(body)
}

/// The certificate serves TLS that a fleet client accepts at the agent's address.
async fn assert_serves_tls(cp: &Running, cert_pem: &str, key_pem: &str, ip: &str) {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = pki::tls::server_config(pki::tls::ReloadableCert::new(cert_pem, key_pem).unwrap());
    let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
    tokio::spawn(pki::tls::serve_https(
        listener,
        tls,
        app,
        std::future::pending(),
    ));
    let resp = cp
        .client
        .get(format!("https://{addr}/healthz"))
        .send()
        .await;
    assert_eq!(resp.unwrap().text().await.unwrap(), "ok");
}

/// After a revocation, nothing the agent sends is accepted.
async fn assert_refused_as_revoked(cp: &Running, identity: &str) {
    let plain = cp
        .post("/v1/renew", Some(identity), &RenewRequest::default())
        .await;
    assert_refused(plain, StatusCode::FORBIDDEN, "revoked");
    let csr = pki::new_key_and_csr("web1", &["web1".into()]).unwrap();
    let with_csr = RenewRequest {
        csr_pem: Some(csr.csr_pem),
    };
    let renew = cp.post("/v1/renew", Some(identity), &with_csr).await;
    assert_refused(renew, StatusCode::FORBIDDEN, "revoked");
    let heartbeat = cp.post("/v1/heartbeat", Some(identity), &beat()).await;
    assert_refused(heartbeat, StatusCode::FORBIDDEN, "revoked");
}

#[tokio::test]
async fn register_renew_heartbeat_list_then_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let cp = Running::start(dir.path(), "127.4.1.1", Settings::default()).await;
    let ca_pem = cp.plane.ca_pem().to_owned();

    let (reg, key) = cp.register(&cp.join("web1"), "web1", &["127.4.1.2"]).await;
    assert_eq!(reg.ca_pem, ca_pem);
    assert_eq!(reg.token_public_key_pem, cp.plane.token_public_key_pem());
    assert_eq!(reg.heartbeat_interval_secs, 30);
    let (sans, chains) = sans_and_chain(&reg.certificate_pem, &ca_pem);
    assert!(chains, "the agent certificate chains to the fleet CA");
    assert_eq!(
        sans,
        ["web1", "127.4.1.2"],
        "hostname and addresses, not the CSR's names"
    );
    assert_eq!(
        pki::cert_not_after(&reg.certificate_pem).unwrap(),
        reg.certificate_expires_at
    );

    assert_serves_tls(&cp, &reg.certificate_pem, &key.key_pem, "127.4.1.2").await;

    // Renew: identity only, then identity and certificate.
    let (status, body) = cp
        .post(
            "/v1/renew",
            Some(&reg.identity_token),
            &RenewRequest::default(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let renewed: RenewResponse = parse(body);
    assert!(renewed.certificate_pem.is_none());
    assert_ne!(renewed.identity_token, reg.identity_token);
    let csr = pki::new_key_and_csr("web1", &["web1".into()]).unwrap();
    let (status, body) = cp
        .post(
            "/v1/renew",
            Some(&renewed.identity_token),
            &RenewRequest {
                csr_pem: Some(csr.csr_pem),
            },
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let renewed: RenewResponse = parse(body);
    let (sans, chains) = sans_and_chain(renewed.certificate_pem.as_ref().unwrap(), &ca_pem);
    assert!(chains);
    assert_eq!(sans, ["web1", "127.4.1.2"]);

    let (status, body) = cp
        .post("/v1/heartbeat", Some(&renewed.identity_token), &beat())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hb: HeartbeatResponse = parse(body);
    assert_eq!(hb.state, RegistrationState::Registered);

    let listed = agents(&cp).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].agent_id, reg.agent_id);
    assert_eq!(listed[0].state, RegistrationState::Registered);
    assert!(listed[0].last_heartbeat_at.is_some());
    assert_eq!(listed[0].identity_expires_at, renewed.identity_expires_at);
    assert_eq!(
        listed[0].certificate_expires_at,
        renewed.certificate_expires_at.unwrap()
    );

    let path = format!("/v1/agents/{}/revoke", reg.agent_id);
    let (status, body) = cp.post(&path, Some(&cp.operator()), &()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let revoked: AgentRecord = parse(body);
    assert_eq!(revoked.state, RegistrationState::Revoked);
    assert!(revoked.revoked_at.is_some());

    assert_refused_as_revoked(&cp, &renewed.identity_token).await;
    assert_eq!(agents(&cp).await[0].state, RegistrationState::Revoked);

    assert_refused(
        cp.post("/v1/agents/ag-nobody/revoke", Some(&cp.operator()), &())
            .await,
        StatusCode::NOT_FOUND,
        "unknown_agent",
    );
    cp.stop().await;
}

#[tokio::test]
async fn join_tokens_are_one_use_bound_and_short_lived() {
    let dir = tempfile::tempdir().unwrap();
    let cp = Running::start(dir.path(), "127.4.1.3", Settings::default()).await;

    let join = cp.join("web2");
    cp.register(&join, "web2", &[]).await;
    let (replay, _) = register_request(&join, "web2", &[]);
    assert_refused(
        cp.post("/v1/register", None, &replay).await,
        StatusCode::UNAUTHORIZED,
        "token_replayed",
    );

    // Bound to a host: another hostname is refused; the bound address is fine.
    let (other, _) = register_request(&cp.join("web3"), "web4", &["127.4.1.40"]);
    assert_refused(
        cp.post("/v1/register", None, &other).await,
        StatusCode::FORBIDDEN,
        "wrong_host",
    );
    let (reg, _) = cp
        .register(&cp.join("127.4.1.41"), "web5", &["127.4.1.41"])
        .await;
    assert!(reg.agent_id.starts_with("ag-"));

    // Expired: a one-second token, used after its second is over.
    let (short, claims) = cp
        .plane
        .join_token("web6", Some(Duration::from_secs(1)))
        .unwrap();
    while fleetctl::store::now_unix() <= claims.exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (late, _) = register_request(&short, "web6", &[]);
    assert_refused(
        cp.post("/v1/register", None, &late).await,
        StatusCode::UNAUTHORIZED,
        "token_expired",
    );

    // A bad CSR is refused and does not use up the token.
    let fresh = cp.join("web7");
    let (mut bad, _) = register_request(&fresh, "web7", &[]);
    bad.csr_pem = "not a csr".into();
    assert_refused(
        cp.post("/v1/register", None, &bad).await,
        StatusCode::BAD_REQUEST,
        "bad_csr",
    );
    cp.register(&fresh, "web7", &[]).await;

    // Garbage in the body is a 400 with a reason, not a crash.
    assert_refused(
        cp.post("/v1/register", None, &serde_json::json!({"hostname": 5}))
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    cp.stop().await;
}

#[tokio::test]
async fn each_token_kind_only_where_it_belongs() {
    let dir = tempfile::tempdir().unwrap();
    let cp = Running::start(dir.path(), "127.4.1.4", Settings::default()).await;
    let (reg, _) = cp.register(&cp.join("web1"), "web1", &[]).await;
    let operator = cp.operator();
    let join = cp.join("web1");

    for (path, token) in [
        ("/v1/heartbeat", operator.as_str()),
        ("/v1/heartbeat", join.as_str()),
    ] {
        assert_refused(
            cp.post(path, Some(token), &beat()).await,
            StatusCode::FORBIDDEN,
            "wrong_audience",
        );
    }
    for token in [&reg.identity_token, &join] {
        assert_refused(
            cp.get("/v1/agents", Some(token)).await,
            StatusCode::FORBIDDEN,
            "wrong_audience",
        );
    }
    // An identity token is no join token.
    let (req, _) = register_request(&reg.identity_token, "web1", &[]);
    assert_refused(
        cp.post("/v1/register", None, &req).await,
        StatusCode::FORBIDDEN,
        "wrong_audience",
    );

    // Tokens from another data dir's key.
    let other = tempfile::tempdir().unwrap();
    let foreign = TokenIssuer::load_or_create(other.path()).unwrap();
    let (op, _) = foreign
        .issue(Audience::Operator, "x", None, Duration::from_mins(1))
        .unwrap();
    assert_refused(
        cp.get("/v1/agents", Some(&op)).await,
        StatusCode::UNAUTHORIZED,
        "bad_signature",
    );
    let (id, _) = foreign
        .issue(Audience::Agent, &reg.agent_id, None, Duration::from_mins(1))
        .unwrap();
    assert_refused(
        cp.post("/v1/heartbeat", Some(&id), &beat()).await,
        StatusCode::UNAUTHORIZED,
        "bad_signature",
    );
    let (fj, _) = foreign
        .issue(Audience::Join, "web1", Some("web1"), Duration::from_mins(1))
        .unwrap();
    let (req, _) = register_request(&fj, "web1", &[]);
    assert_refused(
        cp.post("/v1/register", None, &req).await,
        StatusCode::UNAUTHORIZED,
        "bad_signature",
    );

    // Missing and malformed.
    assert_refused(
        cp.get("/v1/sd", None).await,
        StatusCode::UNAUTHORIZED,
        "missing_token",
    );
    assert_refused(
        cp.get("/v1/agents", Some("not.a.jwt")).await,
        StatusCode::UNAUTHORIZED,
        "malformed_token",
    );
    let resp = cp
        .client
        .get(format!("{}/v1/agents", cp.url))
        .header("authorization", format!("Basic {operator}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // A valid identity token for an agent the registry does not hold.
    let own = TokenIssuer::load(&dir.path().join("control")).unwrap();
    let (ghost, _) = own
        .issue(Audience::Agent, "ag-ghost", None, Duration::from_mins(1))
        .unwrap();
    assert_refused(
        cp.post("/v1/heartbeat", Some(&ghost), &beat()).await,
        StatusCode::UNAUTHORIZED,
        "unknown_agent",
    );
    assert_refused(
        cp.post("/v1/renew", Some(&ghost), &RenewRequest::default())
            .await,
        StatusCode::UNAUTHORIZED,
        "unknown_agent",
    );

    let (status, _) = cp.get("/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_refused(
        cp.get("/v1/nothing", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    cp.stop().await;
}

#[tokio::test]
async fn a_host_registering_again_replaces_its_record_with_a_new_id() {
    let dir = tempfile::tempdir().unwrap();
    let cp = Running::start(dir.path(), "127.4.1.5", Settings::default()).await;
    let (first, _) = cp.register(&cp.join("web1"), "web1", &["127.4.1.50"]).await;
    let (second, _) = cp.register(&cp.join("web1"), "web1", &["127.4.1.51"]).await;
    assert_ne!(first.agent_id, second.agent_id);
    let listed = agents(&cp).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].agent_id, second.agent_id);
    assert_eq!(listed[0].addresses, ["127.4.1.51"]);
    // The old identity names an agent that no longer exists.
    assert_refused(
        cp.post("/v1/heartbeat", Some(&first.identity_token), &beat())
            .await,
        StatusCode::UNAUTHORIZED,
        "unknown_agent",
    );
    cp.stop().await;
}

#[tokio::test]
async fn a_client_trusting_another_ca_cannot_connect() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let cp = Running::start(dir.path(), "127.4.1.6", Settings::default()).await;
    let other_ca = pki::FleetCa::load_or_create(other.path()).unwrap();
    let client = pki::tls::http_client(other_ca.ca_pem(), Duration::from_secs(5)).unwrap();
    let err = client
        .get(format!("{}/healthz", cp.url))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    cp.stop().await;
}

#[tokio::test]
async fn service_discovery_lists_live_agents_for_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let cp = Running::start(dir.path(), "127.4.1.7", Settings::default()).await;
    let (a, _) = cp.register(&cp.join("web1"), "web1", &["127.4.1.70"]).await;
    let (b, _) = cp.register(&cp.join("web2"), "web2", &["::1"]).await;
    let (c, _) = cp.register(&cp.join("web3"), "web3", &["127.4.1.72"]).await;
    let path = format!("/v1/agents/{}/revoke", c.agent_id);
    assert_eq!(
        cp.post(&path, Some(&cp.operator()), &()).await.0,
        StatusCode::OK
    );

    let (status, body) = cp.get("/v1/sd", Some(&cp.operator())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let groups: Vec<SdTargetGroup> = parse(body.clone());
    assert_eq!(groups.len(), 2, "revoked agents are left out: {body}");
    assert_eq!(
        body[0],
        serde_json::json!({
            "targets": ["127.4.1.70:9100"],
            "labels": {
                "__meta_fleet_agent_id": a.agent_id,
                "__meta_fleet_hostname": "web1",
                "__meta_fleet_state": "registered",
                "__meta_fleet_agent_version": "0.1.0-test",
            }
        })
    );
    assert_eq!(groups[1].targets, ["[::1]:9100"]);
    assert_eq!(groups[1].labels["__meta_fleet_agent_id"], b.agent_id);
    cp.stop().await;
}

#[tokio::test]
async fn missed_heartbeats_mean_lost_and_an_unrenewed_identity_expired() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        identity_ttl: Duration::from_secs(3),
        heartbeat_interval: Duration::from_secs(1),
        lost_after: Duration::from_secs(1),
        ..Settings::default()
    };
    let cp = Running::start(dir.path(), "127.4.1.8", settings).await;
    let (reg, _) = cp.register(&cp.join("web1"), "web1", &[]).await;
    assert_eq!(agents(&cp).await[0].state, RegistrationState::Registered);
    let state_at = |deadline_secs: u64, want: RegistrationState| {
        let cp = &cp;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(deadline_secs);
            loop {
                let state = agents(cp).await[0].state;
                if state == want {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "still {state}, want {want}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    state_at(5, RegistrationState::Lost).await;
    let (status, _) = cp
        .post("/v1/heartbeat", Some(&reg.identity_token), &beat())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(agents(&cp).await[0].state, RegistrationState::Registered);
    state_at(6, RegistrationState::Expired).await;
    assert_refused(
        cp.post(
            "/v1/renew",
            Some(&reg.identity_token),
            &RenewRequest::default(),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "token_expired",
    );
    let (status, _) = cp.get("/v1/sd", Some(&cp.operator())).await;
    assert_eq!(status, StatusCode::OK);
    cp.stop().await;
}

#[tokio::test]
async fn join_tokens_from_the_api_and_state_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cp = Running::start(dir.path(), "127.4.1.9", Settings::default()).await;
    let request = JoinTokenRequest {
        host: "web1".into(),
        ttl_secs: Some(120),
    };
    let (status, body) = cp
        .post("/v1/join-tokens", Some(&cp.operator()), &request)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let minted: JoinTokenResponse = parse(body);
    assert!(
        (fleetctl::store::now_unix() + 119..=fleetctl::store::now_unix() + 120)
            .contains(&minted.expires_at)
    );
    let (reg, _) = cp.register(&minted.token, "web1", &[]).await;
    let bad = JoinTokenRequest {
        host: "no spaces please".into(),
        ttl_secs: None,
    };
    assert_refused(
        cp.post("/v1/join-tokens", Some(&cp.operator()), &bad).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    let ca_before = cp.plane.ca_pem().to_owned();
    cp.stop().await;

    let cp = Running::start(dir.path(), "127.4.1.9", Settings::default()).await;
    assert_eq!(cp.plane.ca_pem(), ca_before, "same CA after a restart");
    let listed = agents(&cp).await;
    assert_eq!(listed[0].agent_id, reg.agent_id);
    let (replay, _) = register_request(&minted.token, "web1", &[]);
    assert_refused(
        cp.post("/v1/register", None, &replay).await,
        StatusCode::UNAUTHORIZED,
        "token_replayed",
    );
    let (status, _) = cp
        .post("/v1/heartbeat", Some(&reg.identity_token), &beat())
        .await;
    assert_eq!(status, StatusCode::OK, "the identity outlives the restart");
    cp.stop().await;
}
