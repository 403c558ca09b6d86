//! One suite of the registry's rules, run against both backends: SQLite
//! (a file in a temp dir) and a real PostgreSQL 15 started by the test
//! (`#[ignore]`d: it needs Debian's postgresql-15 and root to run it as
//! `nobody`). Each case gets two handles on the same registry (two
//! connections, or two pools: what two replicas have), and explicit
//! times, so both backends must give the same answers.
#![allow(clippy::unwrap_used)]

mod pg;

use std::time::Duration;

use fleetctl::model::RegistrationState;
use fleetctl::model::control::TokenRecord;
use fleetctl::store::registry::{Backend, CertRow, NewAgent, Refusal, Registration, RenewOutcome};

const LOST: Duration = Duration::from_secs(90);

fn agent(id: &str, host: &str) -> NewAgent {
    NewAgent {
        agent_id: id.into(),
        bound_host: host.into(),
        hostname: host.into(),
        addresses: vec!["127.16.9.9".into(), "::1".into()],
        stats_port: 9100,
        agent_version: "0.1.0".into(),
        identity_expires_at: 5_000,
    }
}

fn cert(serial: &str) -> CertRow {
    CertRow {
        serial: serial.into(),
        not_after: 90_000,
    }
}

/// Registers with certificate `serial` (signing always works).
async fn reg(r: &Backend, a: NewAgent, jti: &str, now: i64, serial: &str) -> Registration<()> {
    let row = cert(serial);
    r.register(a, jti.into(), 2_000, now, move || Ok::<_, ()>((row, ())))
        .await
        .unwrap()
        .0
        .unwrap()
}

async fn heartbeat(r: &Backend, id: &str, serial: Option<&str>, now: i64) -> Result<(), Refusal> {
    r.heartbeat(id.into(), serial.map(Into::into), "0.2.0".into(), now)
        .await
        .unwrap()
        .map(|_| ())
}

/// Renews the identity (to `exp`), and the certificate when `new` is given.
async fn renew(
    r: &Backend,
    id: &str,
    serial: Option<&str>,
    exp: i64,
    new: Option<CertRow>,
    now: i64,
) -> RenewOutcome<Vec<String>, ()> {
    r.renew(id.into(), serial.map(Into::into), exp, now, move |names| {
        Ok(new.map(|c| (c, names.to_vec())))
    })
    .await
    .unwrap()
    .0
}

async fn a_join_token_registers_once_and_nothing_is_signed_for_a_replay(r: &Backend, _: &Backend) {
    let stored = reg(r, agent("a1", "web1"), "jti-1", 1_000, "40a1").await;
    assert_eq!(
        stored,
        Registration::Stored {
            replaced: None,
            signed: ()
        }
    );
    let (again, _) = r
        .register(agent("a2", "web2"), "jti-1".into(), 2_000, 1_001, || {
            panic!("the CSR is signed only after the one-use check")
        })
        .await
        .unwrap();
    assert_eq!(again, Ok::<_, ()>(Registration::<()>::Replayed));
    let all = r.list(1_001, LOST).await.unwrap();
    assert_eq!(all.len(), 1, "a replay stores nothing");
    assert_eq!(all[0].addresses, ["127.16.9.9", "::1"]);
    assert_eq!(all[0].state, RegistrationState::Registered);
    assert_eq!(all[0].certificate_expires_at, 90_000);
    assert_eq!(all[0].stats_port, 9100);
}

async fn a_failed_signing_does_not_use_the_token(r: &Backend, _: &Backend) {
    let (failed, _) = r
        .register(agent("a1", "web1"), "jti-1".into(), 2_000, 1_000, || {
            Err::<(CertRow, ()), _>("bad csr")
        })
        .await
        .unwrap();
    assert_eq!(failed, Err("bad csr"));
    assert!(r.list(1_000, LOST).await.unwrap().is_empty());
    reg(r, agent("a1", "web1"), "jti-1", 1_001, "40a1").await;
    assert_eq!(r.list(1_001, LOST).await.unwrap().len(), 1);
}

async fn one_join_token_sent_to_two_replicas_at_once_registers_once(a: &Backend, b: &Backend) {
    for round in 0..5 {
        let jti = format!("jti-race-{round}");
        let (x, y) = tokio::join!(
            a.register(
                agent(&format!("x{round}"), &format!("hx{round}")),
                jti.clone(),
                2_000,
                1_000,
                move || Ok::<_, ()>((cert(&format!("50{round}a")), ())),
            ),
            b.register(
                agent(&format!("y{round}"), &format!("hy{round}")),
                jti.clone(),
                2_000,
                1_000,
                move || Ok::<_, ()>((cert(&format!("50{round}b")), ())),
            ),
        );
        let outcomes = [x.unwrap().0.unwrap(), y.unwrap().0.unwrap()];
        let stored = outcomes
            .iter()
            .filter(|o| matches!(o, Registration::Stored { .. }))
            .count();
        assert_eq!(stored, 1, "round {round}: {outcomes:?}");
        assert!(outcomes.contains(&Registration::Replayed), "{outcomes:?}");
    }
    assert_eq!(b.list(1_000, LOST).await.unwrap().len(), 5);
}

async fn a_host_registering_again_replaces_its_record_and_revokes_its_certificates(
    r: &Backend,
    other: &Backend,
) {
    reg(r, agent("a1", "web1"), "jti-1", 1_000, "40a1").await;
    let second = reg(other, agent("a2", "web1"), "jti-2", 1_100, "40a2").await;
    assert_eq!(
        second,
        Registration::Stored {
            replaced: Some("a1".into()),
            signed: ()
        }
    );
    let all = r.list(1_100, LOST).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(
        (all[0].agent_id.as_str(), all[0].registered_at),
        ("a2", 1_100)
    );
    assert_eq!(
        heartbeat(r, "a1", Some("40a1"), 1_101).await,
        Err(Refusal::Unknown)
    );
    assert_eq!(
        r.revoked_certs(1_101).await.unwrap(),
        [("40a1".to_string(), 1_100)]
    );
}

async fn cloned_hosts_sharing_a_hostname_keep_their_own_records(r: &Backend, _: &Backend) {
    let first = NewAgent {
        bound_host: "10.0.0.5".into(),
        ..agent("a1", "debian")
    };
    let second = NewAgent {
        bound_host: "10.0.0.6".into(),
        ..agent("a2", "debian")
    };
    reg(r, first, "jti-1", 1_000, "40a1").await;
    let outcome = reg(r, second, "jti-2", 1_001, "40a2").await;
    assert!(matches!(
        outcome,
        Registration::Stored { replaced: None, .. }
    ));
    let ids: Vec<String> = r
        .list(1_001, LOST)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.agent_id)
        .collect();
    assert_eq!(ids, ["a1", "a2"]);
}

async fn heartbeats_and_renewals_need_the_agents_own_live_certificate(r: &Backend, _: &Backend) {
    reg(r, agent("a1", "web1"), "jti-1", 1_000, "40a1").await;
    reg(r, agent("a2", "web2"), "jti-2", 1_000, "40a2").await;
    for serial in [None, Some("40a2"), Some("40ff")] {
        assert_eq!(
            heartbeat(r, "a1", serial, 1_100).await,
            Err(Refusal::Certificate),
            "{serial:?}"
        );
        assert_eq!(
            renew(r, "a1", serial, 9_000, Some(cert("40b1")), 1_100).await,
            RenewOutcome::Refused(Refusal::Certificate),
            "{serial:?}: nothing is signed without the agent's own certificate"
        );
    }
    assert_eq!(heartbeat(r, "a1", Some("40a1"), 1_100).await, Ok(()));
    // Past its not_after, a certificate no longer counts.
    assert_eq!(
        heartbeat(r, "a1", Some("40a1"), 90_001).await,
        Err(Refusal::Certificate)
    );
}

async fn heartbeats_renewals_and_revocation(r: &Backend, other: &Backend) {
    reg(r, agent("a1", "web1"), "jti-1", 1_000, "40a1").await;
    let shown = Some("40a1");
    assert_eq!(
        r.get("a1".into(), 1_200, LOST)
            .await
            .unwrap()
            .unwrap()
            .state,
        RegistrationState::Lost
    );
    heartbeat(other, "a1", shown, 1_200).await.unwrap();
    let rec = r.get("a1".into(), 1_200, LOST).await.unwrap().unwrap();
    assert_eq!(rec.state, RegistrationState::Registered);
    assert_eq!(rec.last_heartbeat_at, Some(1_200));
    assert_eq!(rec.agent_version, "0.2.0");

    let renewed = CertRow {
        serial: "40b1".into(),
        not_after: 99_000,
    };
    // The new certificate names what is on record, whatever a CSR asked.
    assert_eq!(
        renew(other, "a1", shown, 9_000, Some(renewed), 1_300).await,
        RenewOutcome::Renewed {
            signed: Some(vec!["127.16.9.9".to_owned(), "::1".to_owned()])
        }
    );
    let rec = r.get("a1".into(), 1_300, LOST).await.unwrap().unwrap();
    assert_eq!(
        (rec.identity_expires_at, rec.certificate_expires_at),
        (9_000, 99_000)
    );
    // Both certificates count until one expires or is revoked.
    assert_eq!(
        renew(r, "a1", Some("40b1"), 9_500, None, 1_400).await,
        RenewOutcome::Renewed { signed: None }
    );
    heartbeat(r, "a1", shown, 1_400).await.unwrap();
    let rec = r.get("a1".into(), 1_400, LOST).await.unwrap().unwrap();
    assert_eq!(
        (rec.identity_expires_at, rec.certificate_expires_at),
        (9_500, 99_000)
    );
    assert_eq!(
        r.get("a1".into(), 9_501, LOST)
            .await
            .unwrap()
            .unwrap()
            .state,
        RegistrationState::Expired
    );

    // Revoked through one handle, refused through the other at once.
    let revoked = r.revoke("a1".into(), 1_500, LOST).await.unwrap().unwrap();
    assert_eq!(revoked.state, RegistrationState::Revoked);
    assert_eq!(revoked.revoked_at, Some(1_500));
    assert_eq!(
        heartbeat(other, "a1", shown, 1_501).await,
        Err(Refusal::Revoked)
    );
    assert_eq!(
        other
            .revoke("a1".into(), 1_600, LOST)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(1_500),
        "the first revocation's time is kept"
    );
    assert_eq!(
        other.revoked_certs(1_600).await.unwrap(),
        [("40a1".to_string(), 1_500), ("40b1".to_string(), 1_500)]
    );
    assert_eq!(
        renew(other, "a1", shown, 9_900, None, 1_700).await,
        RenewOutcome::Refused(Refusal::Revoked)
    );
    assert_eq!(
        heartbeat(other, "nope", shown, 1_700).await,
        Err(Refusal::Unknown)
    );
    assert!(
        r.revoke("nope".into(), 1_700, LOST)
            .await
            .unwrap()
            .is_none()
    );
    // An expired certificate leaves the CRL.
    assert_eq!(r.revoked_certs(95_000).await.unwrap().len(), 1);
}

async fn tokens_are_listed_revoked_by_id_or_prefix_and_ride_on_heartbeats(
    r: &Backend,
    other: &Backend,
) {
    let token = |id: &str, kind: &str, exp: i64| TokenRecord {
        id: id.into(),
        kind: kind.into(),
        name: "prometheus".into(),
        issued_at: 1_000,
        expires_at: exp,
        revoked_at: None,
    };
    r.record_token(token("aaaa1111", "stats", 5_000))
        .await
        .unwrap();
    r.record_token(token("aaaa2222", "operator", 5_000))
        .await
        .unwrap();
    r.record_token(token("bbbb3333", "sd", 1_500))
        .await
        .unwrap();
    r.record_token(token("cc_d%", "sd", 5_000)).await.unwrap();
    assert_eq!(other.tokens(2_000, false).await.unwrap().len(), 3);
    assert_eq!(other.tokens(2_000, true).await.unwrap().len(), 4);
    assert_eq!(
        other
            .revoke_token("aaaa".into(), 2_000)
            .await
            .unwrap()
            .unwrap_err(),
        ["aaaa1111", "aaaa2222"],
        "an ambiguous prefix names the matches"
    );
    assert!(
        other
            .revoke_token("dddd".into(), 2_000)
            .await
            .unwrap()
            .unwrap_err()
            .is_empty()
    );
    assert_eq!(
        other
            .revoke_token("%".into(), 2_000)
            .await
            .unwrap()
            .unwrap_err()
            .len(),
        4,
        "a wildcard is no id: it names every token, so none is revoked"
    );
    reg(r, agent("a1", "web1"), "jti-1", 1_000, "40a1").await;
    let before = r
        .heartbeat("a1".into(), Some("40a1".into()), "0.2.0".into(), 2_000)
        .await
        .unwrap()
        .unwrap();
    assert!(before.is_empty());
    let done = other
        .revoke_token("aaaa1".into(), 2_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (done.id.as_str(), done.revoked_at),
        ("aaaa1111", Some(2_000))
    );
    // The other handle learns it within its cache's life (1 s shared).
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let after = r
        .heartbeat("a1".into(), Some("40a1".into()), "0.2.0".into(), 2_001)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.iter().collect::<Vec<_>>(), ["aaaa1111"]);
    assert!(r.revoked_tokens(2_001).await.unwrap().contains("aaaa1111"));
    assert_eq!(
        other
            .revoke_token("aaaa1111".into(), 3_000)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(2_000)
    );
    // Its own revocation cleared its cache: expired ids are gone.
    assert!(other.revoked_tokens(5_001).await.unwrap().is_empty());
}

async fn health_names_the_backend_and_its_schema(r: &Backend, _: &Backend) {
    let health = r.health().await;
    assert_eq!(health.state, "ok");
    assert_eq!(health.backend, r.name());
    assert!(health.schema_version.is_some_and(|v| v >= 1), "{health:?}");
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_registry_rules_on_sqlite() {
            $(
                eprintln!("sqlite: {}", stringify!($case));
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("inventory.sqlite3");
                let (a, b) = (Backend::sqlite(&path).unwrap(), Backend::sqlite(&path).unwrap());
                $case(&a, &b).await;
            )*
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs PostgreSQL 15 server binaries (apt-get install postgresql-15) and root to run them as nobody"]
        async fn the_registry_rules_on_postgres() {
            let server = pg::PgServer::start("127.16.9.1");
            $(
                eprintln!("postgres: {}", stringify!($case));
                let db = stringify!($case).chars().take(60).collect::<String>();
                server.create_database(&db);
                let settings = server.settings_for(&db);
                // Two pools, as two replicas have; both migrate at start.
                let (a, b) = tokio::join!(Backend::postgres(&settings), Backend::postgres(&settings));
                let (a, b) = (a.unwrap(), b.unwrap());
                $case(&a, &b).await;
            )*
        }
    };
}

suite!(
    a_join_token_registers_once_and_nothing_is_signed_for_a_replay,
    a_failed_signing_does_not_use_the_token,
    one_join_token_sent_to_two_replicas_at_once_registers_once,
    a_host_registering_again_replaces_its_record_and_revokes_its_certificates,
    cloned_hosts_sharing_a_hostname_keep_their_own_records,
    heartbeats_and_renewals_need_the_agents_own_live_certificate,
    heartbeats_renewals_and_revocation,
    tokens_are_listed_revoked_by_id_or_prefix_and_ride_on_heartbeats,
    health_names_the_backend_and_its_schema,
);

/// `fleetctl registry migrate` beside a running registry: the schema is
/// applied once, and a second run (or a replica starting) finds it done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL 15 server binaries (apt-get install postgresql-15) and root to run them as nobody"]
async fn registry_migrate_applies_the_schema_once() {
    let server = pg::PgServer::start("127.16.9.2");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, format!("[control]\n{}", server.control_settings())).unwrap();
    let migrate = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_fleetctl"))
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["registry", "migrate"])
            .env_remove("FLEETCTL_CONFIG")
            .env_remove("FLEETCTL_DATA_DIR")
            .output()
            .unwrap()
    };
    let first = migrate();
    let said = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(said.contains("schema version 0 -> 1"), "{said}");
    assert!(!said.contains(pg::PASSWORD));
    let second = migrate();
    let said = String::from_utf8_lossy(&second.stdout);
    assert!(said.contains("schema version 1, up to date"), "{said}");
    assert_eq!(
        server.psql("fleet", "SELECT count(*) FROM fleetctl_schema_version"),
        "1\n"
    );
    // Four replicas starting at once still apply nothing twice.
    let settings = server.settings_for("fleet");
    server.create_database("fresh");
    let fresh = server.settings_for("fresh");
    let started = futures_util::future::join_all((0..4).map(|_| Backend::postgres(&fresh))).await;
    assert!(started.iter().all(Result::is_ok), "{started:?}");
    assert_eq!(
        server.psql(
            "fresh",
            "SELECT string_agg(version::text, ',') FROM fleetctl_schema_version"
        ),
        "1\n"
    );
    drop(settings);
}
