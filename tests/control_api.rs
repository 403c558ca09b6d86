//! The control plane's HTTPS API in-process: real TLS, the real client
//! from `pki::tls::http_client`, servers on 127.4.1.x port 0.
#![allow(clippy::unwrap_used)]

mod control_support;

use std::time::Duration;

use control_support::{Running, assert_refused, parse, register_request, sans_and_chain};
use fleetctl::auth::{Audience, JoinGrant, TokenIssuer};
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
async fn assert_refused_as_revoked(cp: &Running, agent: &reqwest::Client, identity: &str) {
    let plain = cp
        .post_with(agent, "/v1/renew", Some(identity), &RenewRequest::default())
        .await;
    assert_refused(plain, StatusCode::FORBIDDEN, "revoked");
    let csr = pki::new_key_and_csr("web1", &["web1".into()]).unwrap();
    let with_csr = RenewRequest {
        csr_pem: Some(csr.csr_pem),
    };
    let renew = cp
        .post_with(agent, "/v1/renew", Some(identity), &with_csr)
        .await;
    assert_refused(renew, StatusCode::FORBIDDEN, "revoked");
    let heartbeat = cp
        .post_with(agent, "/v1/heartbeat", Some(identity), &beat())
        .await;
    assert_refused(heartbeat, StatusCode::FORBIDDEN, "revoked");
}

#[tokio::test]
async fn register_renew_heartbeat_list_then_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let cp = Running::start(dir.path(), "127.4.1.1", Settings::default()).await;
    let ca_pem = cp.plane.ca_pem().to_owned();

    let join = cp.join_vouching("web1", &["127.4.1.2"]);
    let agent = cp.register(&join, "web1", &["127.4.1.2"]).await;
    let (reg, key) = (&agent.reg, &agent.key);
    assert_eq!(reg.ca_pem, ca_pem);
    assert_eq!(reg.trust.token_keys, cp.plane.token_keys());
    assert_eq!(reg.heartbeat_interval_secs, 30);
    assert_eq!(reg.trust.max_token_ttl_secs, 30 * 86_400);
    let (sans, chains) = sans_and_chain(&reg.certificate_pem, &ca_pem);
    assert!(chains, "the agent certificate chains to the fleet CA");
    assert_eq!(
        sans,
        ["web1", "127.4.1.2"],
        "what the join token vouched for, not the CSR's names"
    );
    assert_eq!(
        pki::cert_not_after(&reg.certificate_pem).unwrap(),
        reg.certificate_expires_at
    );

    assert_serves_tls(&cp, &reg.certificate_pem, &key.key_pem, "127.4.1.2").await;

    // Renew: identity only, then identity and certificate.
    let (status, body) = cp
        .post_with(
            &agent.client,
            "/v1/renew",
            Some(&reg.identity_token),
            &RenewRequest::default(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let renewed: RenewResponse = parse(body);
    assert!(renewed.certificate_pem.is_none());
    assert_ne!(renewed.identity_token, reg.identity_token);
    let csr = pki::new_key_and_csr("web1", &["evil.example".into()]).unwrap();
    let (status, body) = cp
        .post_with(
            &agent.client,
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
    assert_eq!(sans, ["web1", "127.4.1.2"], "a renewal names the same");

    let (status, body) = cp
        .post_with(
            &agent.client,
            "/v1/heartbeat",
            Some(&renewed.identity_token),
            &beat(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hb: HeartbeatResponse = parse(body);
    assert_eq!(hb.state, RegistrationState::Registered);
    assert_eq!(hb.trust.token_keys, cp.plane.token_keys());

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

    assert_refused_as_revoked(&cp, &agent.client, &renewed.identity_token).await;
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
    let agent = cp
        .register(&cp.join("127.4.1.41"), "web5", &["127.4.1.41"])
        .await;
    assert!(agent.reg.agent_id.starts_with("ag-"));

    // Expired: a one-second token, used after its second is over.
    let (short, claims) = cp
        .plane
        .join_token(&JoinGrant::new("web6"), Some(Duration::from_secs(1)))
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
    let agent = cp.register(&cp.join("web1"), "web1", &[]).await;
    let reg = &agent.reg;
    let operator = cp.operator();
    let join = cp.join("web1");
    let issuer = cp.plane.issuer();
    let (stats_token, _) = issuer
        .issue(Audience::Stats, "prometheus", Duration::from_mins(5))
        .unwrap();
    let (sd, _) = issuer
        .issue(Audience::Sd, "prometheus", Duration::from_mins(5))
        .unwrap();

    for token in [
        operator.as_str(),
        join.as_str(),
        stats_token.as_str(),
        sd.as_str(),
    ] {
        assert_refused(
            cp.post_with(&agent.client, "/v1/heartbeat", Some(token), &beat())
                .await,
            StatusCode::FORBIDDEN,
            "wrong_audience",
        );
    }
    for token in [&reg.identity_token, &join, &stats_token, &sd] {
        assert_refused(
            cp.get("/v1/agents", Some(token)).await,
            StatusCode::FORBIDDEN,
            "wrong_audience",
        );
    }
    // Service discovery takes an sd token (or an operator's), nothing else.
    for token in [&sd, &operator] {
        assert_eq!(cp.get("/v1/sd", Some(token)).await.0, StatusCode::OK);
    }
    for token in [&stats_token, &reg.identity_token, &join] {
        assert_refused(
            cp.get("/v1/sd", Some(token)).await,
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
    let (ghost, _) = issuer
        .issue(Audience::Agent, "ag-ghost", Duration::from_mins(1))
        .unwrap();
    assert_refused(
        cp.post_with(&agent.client, "/v1/heartbeat", Some(&ghost), &beat())
            .await,
        StatusCode::UNAUTHORIZED,
        "unknown_agent",
    );
    assert_refused(
        cp.post_with(
            &agent.client,
            "/v1/renew",
            Some(&ghost),
            &RenewRequest::default(),
        )
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
async fn tokens_signed_by_another_key_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cp = Running::start(dir.path(), "127.4.1.12", Settings::default()).await;
    let agent = cp.register(&cp.join("web1"), "web1", &[]).await;
    let reg = &agent.reg;
    // Tokens from another data dir's key.
    let other = tempfile::tempdir().unwrap();
    let foreign = TokenIssuer::load_or_create(other.path()).unwrap();
    let (op, _) = foreign
        .issue(Audience::Operator, "x", Duration::from_mins(1))
        .unwrap();
    assert_refused(
        cp.get("/v1/agents", Some(&op)).await,
        StatusCode::UNAUTHORIZED,
        "unknown_key",
    );
    let (id, _) = foreign
        .issue(Audience::Agent, &reg.agent_id, Duration::from_mins(1))
        .unwrap();
    assert_refused(
        cp.post_with(&agent.client, "/v1/heartbeat", Some(&id), &beat())
            .await,
        StatusCode::UNAUTHORIZED,
        "unknown_key",
    );
    let (fj, _) = foreign
        .issue_join(&JoinGrant::new("web1"), Duration::from_mins(1))
        .unwrap();
    let (req, _) = register_request(&fj, "web1", &[]);
    assert_refused(
        cp.post("/v1/register", None, &req).await,
        StatusCode::UNAUTHORIZED,
        "unknown_key",
    );

    cp.stop().await;
}

#[tokio::test]
async fn an_identity_token_works_only_with_the_agents_own_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cp = Running::start(dir.path(), "127.4.1.10", Settings::default()).await;
    let web1 = cp.register(&cp.join("web1"), "web1", &[]).await;
    let web2 = cp.register(&cp.join("web2"), "web2", &[]).await;
    let identity = &web1.reg.identity_token;
    // No certificate on the connection: a stolen identity token alone buys nothing.
    for (path, body) in [
        ("/v1/heartbeat", serde_json::to_value(beat()).unwrap()),
        (
            "/v1/renew",
            serde_json::to_value(RenewRequest::default()).unwrap(),
        ),
    ] {
        assert_refused(
            cp.post(path, Some(identity), &body).await,
            StatusCode::UNAUTHORIZED,
            "certificate_required",
        );
        // Another agent's certificate will not do either.
        assert_refused(
            cp.post_with(&web2.client, path, Some(identity), &body)
                .await,
            StatusCode::UNAUTHORIZED,
            "certificate_required",
        );
    }
    let ok = cp
        .post_with(&web1.client, "/v1/heartbeat", Some(identity), &beat())
        .await;
    assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);
    cp.stop().await;
}

#[tokio::test]
async fn a_host_registering_again_replaces_its_record_with_a_new_id() {
    let dir = tempfile::tempdir().unwrap();
    let cp = Running::start(dir.path(), "127.4.1.5", Settings::default()).await;
    let first = cp
        .register(
            &cp.join_vouching("web1", &["127.4.1.50"]),
            "web1",
            &["127.4.1.50"],
        )
        .await;
    let second = cp
        .register(
            &cp.join_vouching("web1", &["127.4.1.51"]),
            "web1",
            &["127.4.1.51"],
        )
        .await;
    assert_ne!(first.reg.agent_id, second.reg.agent_id);
    let listed = agents(&cp).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].agent_id, second.reg.agent_id);
    assert_eq!(listed[0].addresses, ["web1", "127.4.1.51"]);
    // The old identity names an agent that no longer exists.
    assert_refused(
        cp.post_with(
            &first.client,
            "/v1/heartbeat",
            Some(&first.reg.identity_token),
            &beat(),
        )
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
    // The issuer's order decides the target, not the agent's: web1 lists
    // another address first, and it is not what SD publishes.
    let a = cp
        .register(
            &cp.join_vouching("127.4.1.70", &["web1"]),
            "web1",
            &["127.4.1.99", "127.4.1.70"],
        )
        .await;
    let b = cp.register(&cp.join("::1"), "web2", &["::1"]).await;
    let c = cp
        .register(
            &cp.join_vouching("127.4.1.72", &["web3"]),
            "web3",
            &["127.4.1.72"],
        )
        .await;
    let path = format!("/v1/agents/{}/revoke", c.reg.agent_id);
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
                "__meta_fleet_agent_id": a.reg.agent_id,
                "__meta_fleet_hostname": "web1",
                "__meta_fleet_state": "registered",
                "__meta_fleet_agent_version": "0.1.0-test",
            }
        })
    );
    assert_eq!(groups[1].targets, ["[::1]:9100"]);
    assert_eq!(groups[1].labels["__meta_fleet_agent_id"], b.reg.agent_id);
    cp.stop().await;
}

#[tokio::test]
async fn the_crl_names_a_revoked_agents_certificates() {
    use x509_parser::prelude::FromDer as _;
    let dir = tempfile::tempdir().unwrap();
    let cp = Running::start(dir.path(), "127.4.1.11", Settings::default()).await;
    let web1 = cp.register(&cp.join("web1"), "web1", &[]).await;
    let serial_of = |pem: &str| {
        let (_, cert) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = cert.parse_x509().unwrap();
        cert.raw_serial().to_vec()
    };
    let crl = || async {
        let resp = cp
            .client
            .get(format!("{}/v1/crl", cp.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "application/pkix-crl");
        let der = resp.bytes().await.unwrap().to_vec();
        let (_, list) =
            x509_parser::revocation_list::CertificateRevocationList::from_der(&der).unwrap();
        let (_, ca) = x509_parser::pem::parse_x509_pem(cp.plane.ca_pem().as_bytes()).unwrap();
        assert!(
            list.verify_signature(ca.parse_x509().unwrap().public_key())
                .is_ok()
        );
        list.iter_revoked_certificates()
            .map(|r| r.raw_serial().to_vec())
            .collect::<Vec<_>>()
    };
    assert!(crl().await.is_empty(), "open, and empty at first");
    let path = format!("/v1/agents/{}/revoke", web1.reg.agent_id);
    assert_eq!(
        cp.post(&path, Some(&cp.operator()), &()).await.0,
        StatusCode::OK
    );
    assert_eq!(crl().await, [serial_of(&web1.reg.certificate_pem)]);
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
    let agent = cp.register(&cp.join("web1"), "web1", &[]).await;
    let reg = &agent.reg;
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
        .post_with(
            &agent.client,
            "/v1/heartbeat",
            Some(&reg.identity_token),
            &beat(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(agents(&cp).await[0].state, RegistrationState::Registered);
    state_at(6, RegistrationState::Expired).await;
    assert_refused(
        cp.post_with(
            &agent.client,
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
        names: vec!["127.4.1.90".into()],
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
    let agent = cp.register(&minted.token, "web1", &[]).await;
    let (sans, _) = sans_and_chain(&agent.reg.certificate_pem, cp.plane.ca_pem());
    assert_eq!(sans, ["web1", "127.4.1.90"]);
    let bad = JoinTokenRequest {
        host: "no spaces please".into(),
        ttl_secs: None,
        names: Vec::new(),
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
    assert_eq!(listed[0].agent_id, agent.reg.agent_id);
    let (replay, _) = register_request(&minted.token, "web1", &[]);
    assert_refused(
        cp.post("/v1/register", None, &replay).await,
        StatusCode::UNAUTHORIZED,
        "token_replayed",
    );
    let client = cp.agent_client(&agent.reg.certificate_pem, &agent.key);
    let (status, _) = cp
        .post_with(
            &client,
            "/v1/heartbeat",
            Some(&agent.reg.identity_token),
            &beat(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "the identity outlives the restart");
    cp.stop().await;
}
