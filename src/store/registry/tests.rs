//! The registry's rules, on an in-memory database (and one on disk where
//! reopening is the point).

use super::*;
use crate::model::control::TokenRecord;

const LOST: Duration = Duration::from_secs(90);

#[test]
fn states_follow_from_stored_times() {
    use RegistrationState::{Expired, Lost, Registered, Revoked};
    let t = 1_000_000;
    // (revoked_at, identity_expires_at, last_seen, now) -> state
    for (revoked, ident, seen, now, want) in [
        (None, t + 3600, t, t, Registered),
        (None, t + 3600, t, t + 90, Registered),
        (None, t + 3600, t, t + 91, Lost),
        (None, t + 60, t, t + 60, Registered),
        (None, t + 60, t, t + 61, Expired),
        (None, t + 60, t, t + 500, Expired),
        (Some(t), t + 3600, t, t, Revoked),
        (Some(t), t - 5, t - 500, t, Revoked),
    ] {
        assert_eq!(
            registration_state(revoked, ident, seen, now, LOST),
            want,
            "revoked {revoked:?} identity {ident} seen {seen} now {now}"
        );
    }
}

fn agent(id: &str, host: &str) -> NewAgent {
    NewAgent {
        agent_id: id.into(),
        bound_host: host.into(),
        hostname: host.into(),
        addresses: vec!["127.4.0.9".into(), "::1".into()],
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

/// Registers with a certificate `serial` (signing always works).
fn reg(r: &mut Registry, a: &NewAgent, jti: &str, now: i64, serial: &str) -> Registration<()> {
    r.register(a, jti, 2_000, now, || Ok::<_, ()>((cert(serial), ())))
        .unwrap()
        .unwrap()
}

#[test]
fn a_join_token_registers_once_and_nothing_is_signed_for_a_replay() {
    let mut r = Registry::open_in_memory().unwrap();
    let stored = reg(&mut r, &agent("a1", "web1"), "jti-1", 1_000, "40a1");
    assert_eq!(
        stored,
        Registration::Stored {
            replaced: None,
            signed: ()
        }
    );
    let mut signed = false;
    let again = r
        .register(&agent("a2", "web2"), "jti-1", 2_000, 1_001, || {
            signed = true;
            Ok::<_, ()>((cert("40a2"), ()))
        })
        .unwrap()
        .unwrap();
    assert_eq!(again, Registration::Replayed);
    assert!(!signed, "the CSR is signed only after the one-use check");
    let all = r.list(1_001, LOST).unwrap();
    assert_eq!(all.len(), 1, "a replay stores nothing");
    assert_eq!(all[0].addresses, ["127.4.0.9", "::1"]);
    assert_eq!(all[0].state, RegistrationState::Registered);
    assert_eq!(all[0].certificate_expires_at, 90_000);
}

#[test]
fn a_failed_signing_does_not_use_the_token() {
    let mut r = Registry::open_in_memory().unwrap();
    let failed = r
        .register(&agent("a1", "web1"), "jti-1", 2_000, 1_000, || {
            Err::<(CertRow, ()), _>("bad csr")
        })
        .unwrap();
    assert_eq!(failed, Err("bad csr"));
    assert!(r.list(1_000, LOST).unwrap().is_empty());
    reg(&mut r, &agent("a1", "web1"), "jti-1", 1_001, "40a1");
    assert_eq!(r.list(1_001, LOST).unwrap().len(), 1);
}

#[test]
fn a_host_registering_again_replaces_its_record_and_revokes_its_certificates() {
    let mut r = Registry::open_in_memory().unwrap();
    reg(&mut r, &agent("a1", "web1"), "jti-1", 1_000, "40a1");
    let second = reg(&mut r, &agent("a2", "web1"), "jti-2", 1_100, "40a2");
    assert_eq!(
        second,
        Registration::Stored {
            replaced: Some("a1".into()),
            signed: ()
        }
    );
    let all = r.list(1_100, LOST).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].agent_id, "a2");
    assert_eq!(all[0].registered_at, 1_100);
    assert_eq!(
        r.heartbeat("a1", Some("40a1"), "0.1.0", 1_101).unwrap(),
        Err(Refusal::Unknown)
    );
    assert_eq!(
        r.revoked_certs(1_101).unwrap(),
        [("40a1".to_string(), 1_100)]
    );
}

#[test]
fn cloned_hosts_sharing_a_hostname_keep_their_own_records() {
    let mut r = Registry::open_in_memory().unwrap();
    let first = NewAgent {
        bound_host: "10.0.0.5".into(),
        ..agent("a1", "debian")
    };
    let second = NewAgent {
        bound_host: "10.0.0.6".into(),
        ..agent("a2", "debian")
    };
    reg(&mut r, &first, "jti-1", 1_000, "40a1");
    let outcome = reg(&mut r, &second, "jti-2", 1_001, "40a2");
    assert_eq!(
        outcome,
        Registration::Stored {
            replaced: None,
            signed: ()
        }
    );
    let ids: Vec<String> = r
        .list(1_001, LOST)
        .unwrap()
        .into_iter()
        .map(|a| a.agent_id)
        .collect();
    assert_eq!(ids, ["a1", "a2"]);
}

#[test]
fn heartbeats_and_renewals_need_the_agents_own_live_certificate() {
    let mut r = Registry::open_in_memory().unwrap();
    reg(&mut r, &agent("a1", "web1"), "jti-1", 1_000, "40a1");
    reg(&mut r, &agent("a2", "web2"), "jti-2", 1_000, "40a2");
    for serial in [None, Some("40a2"), Some("40ff")] {
        assert_eq!(
            r.heartbeat("a1", serial, "0.2.0", 1_100).unwrap(),
            Err(Refusal::Certificate),
            "{serial:?}"
        );
        assert_eq!(
            r.renew("a1", serial, 9_000, None, 1_100).unwrap(),
            Err(Refusal::Certificate)
        );
        assert_eq!(
            r.check("a1", serial, 1_100).unwrap(),
            Err(Refusal::Certificate)
        );
    }
    assert_eq!(r.check("a1", Some("40a1"), 1_100).unwrap(), Ok(()));
    // Past its not_after, a certificate no longer counts.
    assert_eq!(
        r.heartbeat("a1", Some("40a1"), "0.2.0", 90_001).unwrap(),
        Err(Refusal::Certificate)
    );
}

#[test]
fn heartbeats_renewals_and_revocation() {
    let mut r = Registry::open_in_memory().unwrap();
    reg(&mut r, &agent("a1", "web1"), "jti-1", 1_000, "40a1");
    let shown = Some("40a1");
    assert_eq!(
        r.get("a1", 1_200, LOST).unwrap().unwrap().state,
        RegistrationState::Lost
    );
    r.heartbeat("a1", shown, "0.2.0", 1_200).unwrap().unwrap();
    let rec = r.get("a1", 1_200, LOST).unwrap().unwrap();
    assert_eq!(rec.state, RegistrationState::Registered);
    assert_eq!(rec.last_heartbeat_at, Some(1_200));
    assert_eq!(rec.agent_version, "0.2.0");

    let renewed = CertRow {
        serial: "40b1".into(),
        not_after: 99_000,
    };
    r.renew("a1", shown, 9_000, Some(&renewed), 1_300)
        .unwrap()
        .unwrap();
    let rec = r.get("a1", 1_300, LOST).unwrap().unwrap();
    assert_eq!(
        (rec.identity_expires_at, rec.certificate_expires_at),
        (9_000, 99_000)
    );
    // Both certificates count until one expires or is revoked.
    r.renew("a1", Some("40b1"), 9_500, None, 1_400)
        .unwrap()
        .unwrap();
    r.heartbeat("a1", shown, "0.2.0", 1_400).unwrap().unwrap();
    let rec = r.get("a1", 1_400, LOST).unwrap().unwrap();
    assert_eq!(
        (rec.identity_expires_at, rec.certificate_expires_at),
        (9_500, 99_000)
    );
    assert_eq!(
        r.get("a1", 9_501, LOST).unwrap().unwrap().state,
        RegistrationState::Expired
    );

    let revoked = r.revoke("a1", 1_500, LOST).unwrap().unwrap();
    assert_eq!(revoked.state, RegistrationState::Revoked);
    assert_eq!(revoked.revoked_at, Some(1_500));
    assert_eq!(
        r.revoke("a1", 1_600, LOST).unwrap().unwrap().revoked_at,
        Some(1_500)
    );
    assert_eq!(
        r.revoked_certs(1_600).unwrap(),
        [("40a1".to_string(), 1_500), ("40b1".to_string(), 1_500)]
    );
    assert_eq!(
        r.heartbeat("a1", shown, "0.2.0", 1_700).unwrap(),
        Err(Refusal::Revoked)
    );
    assert_eq!(
        r.renew("a1", shown, 9_900, None, 1_700).unwrap(),
        Err(Refusal::Revoked)
    );
    assert_eq!(
        r.heartbeat("nope", shown, "0.2.0", 1_700).unwrap(),
        Err(Refusal::Unknown)
    );
    assert!(r.revoke("nope", 1_700, LOST).unwrap().is_none());
    // An expired certificate leaves the CRL.
    assert_eq!(r.revoked_certs(95_000).unwrap().len(), 1);
}

#[test]
fn tokens_are_listed_revoked_by_id_or_prefix_and_forgotten_once_expired() {
    let mut r = Registry::open_in_memory().unwrap();
    let token = |id: &str, kind: &str, exp: i64| TokenRecord {
        id: id.into(),
        kind: kind.into(),
        name: "prometheus".into(),
        issued_at: 1_000,
        expires_at: exp,
        revoked_at: None,
    };
    r.record_token(&token("aaaa1111", "stats", 5_000)).unwrap();
    r.record_token(&token("aaaa2222", "operator", 5_000))
        .unwrap();
    r.record_token(&token("bbbb3333", "sd", 1_500)).unwrap();
    let before = r.data_version().unwrap();
    assert_eq!(r.tokens(2_000, false).unwrap().len(), 2);
    assert_eq!(r.tokens(2_000, true).unwrap().len(), 3);
    assert_eq!(
        r.revoke_token("aaaa", 2_000).unwrap().unwrap_err(),
        ["aaaa1111", "aaaa2222"],
        "an ambiguous prefix names the matches"
    );
    assert!(
        r.revoke_token("cccc", 2_000)
            .unwrap()
            .unwrap_err()
            .is_empty()
    );
    let done = r.revoke_token("aaaa1", 2_000).unwrap().unwrap();
    assert_eq!(
        (done.id.as_str(), done.revoked_at),
        ("aaaa1111", Some(2_000))
    );
    assert_eq!(r.revoked_tokens(2_000).unwrap(), ["aaaa1111"]);
    assert_eq!(
        r.revoke_token("aaaa1111", 3_000)
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(2_000)
    );
    assert!(r.revoked_tokens(5_001).unwrap().is_empty());
    // This connection's own writes leave its data version alone.
    assert_eq!(r.data_version().unwrap(), before);
}

#[test]
fn another_connections_write_changes_the_data_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.sqlite3");
    let server = Registry::open(&path).unwrap();
    let before = server.data_version().unwrap();
    let mut cli = Registry::open(&path).unwrap();
    cli.record_token(&TokenRecord {
        id: "t1".into(),
        kind: "operator".into(),
        name: "me".into(),
        issued_at: 1,
        expires_at: 2,
        revoked_at: None,
    })
    .unwrap();
    assert_ne!(server.data_version().unwrap(), before);
}

#[test]
fn survives_reopening_and_remembers_used_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.sqlite3");
    {
        let mut r = Registry::open(&path).unwrap();
        reg(&mut r, &agent("a1", "web1"), "jti-1", 1_000, "40a1");
        r.revoke("a1", 1_100, LOST).unwrap();
    }
    let mut r = Registry::open(&path).unwrap();
    assert_eq!(
        r.get("a1", 1_200, LOST).unwrap().unwrap().state,
        RegistrationState::Revoked
    );
    assert_eq!(
        reg(&mut r, &agent("a2", "web2"), "jti-1", 1_200, "40a2"),
        Registration::Replayed
    );
    // Once expired, a used jti is forgotten; the token itself no longer verifies.
    r.register(&agent("a3", "web3"), "jti-3", 9_000, 2_001, || {
        Ok::<_, ()>((cert("40a3"), ()))
    })
    .unwrap()
    .unwrap();
    let kept: i64 = r
        .conn
        .query_row("SELECT count(*) FROM used_join_tokens", [], |r| r.get(0))
        .unwrap();
    assert_eq!(kept, 1);
}
