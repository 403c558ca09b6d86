use super::*;
use crate::model::control::AgentRecord;

const T0: i64 = 1_700_000_000;

/// What an agent registered at `T0` reports at `now`.
#[derive(Clone, Copy)]
struct Report {
    token: TokenState,
    registration: RegistrationState,
    renewed_at: Option<i64>,
    cert_renewed_at: Option<i64>,
    heartbeat_at: Option<i64>,
}

impl Default for Report {
    fn default() -> Self {
        Self {
            token: TokenState::Valid,
            registration: RegistrationState::Registered,
            renewed_at: None,
            cert_renewed_at: None,
            heartbeat_at: None,
        }
    }
}

fn stats(r: Report) -> AgentStats {
    serde_json::from_value(serde_json::json!({
        "agent_version": "0.1.0", "hostname": "h", "host_uptime_secs": 1,
        "agent_uptime_secs": 1, "agent_rss_bytes": 1,
        "cpu": {"total_pct": 1.0, "per_core_pct": [1.0], "load1": 0.0, "load5": 0.0, "load15": 0.0},
        "memory": {"total_bytes": 10, "available_bytes": 5, "swap_total_bytes": 0, "swap_free_bytes": 0},
        "registration": {"state": r.registration, "controller": "https://127.0.0.1:1",
            "registered_at": T0, "last_heartbeat_at": r.heartbeat_at, "consecutive_failures": 0},
        "token": {"state": r.token, "expires_at": T0 + 60, "last_renewal_at": r.renewed_at, "renewals": 0},
        "certificate": {"expires_at": T0 + 120, "last_renewal_at": r.cert_renewed_at, "renewals": 0},
        "sample": {"taken_at_ms": 0, "interval_ms": 1000},
    }))
    .unwrap()
}

fn observe(timeline: &mut Timeline, r: Report, now: i64) {
    let stats = stats(r);
    timeline.observe(
        Observed {
            token: r.token,
            registration: r.registration,
            token_expires_at: stats.token.expires_at,
            stats: Some(&stats),
            registry: None,
        },
        now,
    );
}

fn kinds(timeline: &Timeline) -> Vec<(i64, Mark)> {
    timeline.marks().map(|m| (m.at - T0, m.mark)).collect()
}

#[test]
fn a_registration_its_renewals_heartbeats_and_failures_are_marked_once_each() {
    let mut t = Timeline::default();
    assert!(t.is_empty());
    observe(&mut t, Report::default(), T0 + 1);
    // Seen again with nothing new: nothing recorded twice.
    observe(&mut t, Report::default(), T0 + 2);
    let beat = Report {
        heartbeat_at: Some(T0 + 5),
        ..Report::default()
    };
    observe(&mut t, beat, T0 + 6);
    observe(&mut t, beat, T0 + 7);
    let renewed = Report {
        renewed_at: Some(T0 + 40),
        cert_renewed_at: Some(T0 + 40),
        ..beat
    };
    observe(&mut t, renewed, T0 + 41);
    let lost = Report {
        token: TokenState::Expiring,
        registration: RegistrationState::Lost,
        ..renewed
    };
    observe(&mut t, lost, T0 + 90);
    observe(&mut t, lost, T0 + 91);
    let expired = Report {
        token: TokenState::Expired,
        registration: RegistrationState::Expired,
        ..renewed
    };
    observe(&mut t, expired, T0 + 101);
    assert_eq!(
        kinds(&t),
        [
            (0, Mark::Issued),
            (5, Mark::Heartbeat),
            (40, Mark::TokenRenewed),
            (40, Mark::CertRenewed),
            (90, Mark::Token(TokenState::Expiring)),
            (90, Mark::Registration(RegistrationState::Lost)),
            (101, Mark::Token(TokenState::Expired)),
            (101, Mark::Registration(RegistrationState::Expired)),
        ]
    );
    assert_eq!(t.token_at(T0 - 1), TokenState::None);
    assert_eq!(t.token_at(T0 + 50), TokenState::Valid);
    assert_eq!(t.token_at(T0 + 95), TokenState::Expiring);
    assert_eq!(t.registration_at(T0 + 95), RegistrationState::Lost);
    assert_eq!(t.registration_at(T0 + 200), RegistrationState::Expired);
    assert!(!t.cert_at(T0 - 1) && t.cert_at(T0));
    assert_eq!(
        (t.token_expires_at, t.cert_expires_at),
        (Some(T0 + 60), Some(T0 + 120))
    );
}

#[test]
fn a_host_first_seen_long_after_registering_starts_its_window_registered() {
    let mut t = Timeline::default();
    // Registered an hour before the console first read it.
    observe(&mut t, Report::default(), T0 + 3600);
    assert_eq!(kinds(&t), []);
    assert!(!t.is_empty());
    let start = T0 + 3600 - 300;
    assert_eq!(t.token_at(start), TokenState::Valid);
    assert_eq!(t.registration_at(start), RegistrationState::Registered);
    assert!(t.cert_at(start));
}

#[test]
fn marks_older_than_the_window_fold_into_the_starting_state() {
    let mut t = Timeline::default();
    t.record(T0, Mark::Issued);
    t.record(T0 + 10, Mark::Registration(RegistrationState::Lost));
    t.record(T0 + 20, Mark::Token(TokenState::Expiring));
    t.record(T0 + 400, Mark::Heartbeat);
    t.prune(T0 + 100);
    assert_eq!(kinds(&t), [(400, Mark::Heartbeat)]);
    assert_eq!(t.registration_at(T0 + 100), RegistrationState::Lost);
    assert_eq!(t.token_at(T0 + 100), TokenState::Expiring);
    assert!(t.cert_at(T0 + 100));
}

#[test]
fn the_mark_count_is_bounded_and_marks_stay_in_time_order() {
    let mut t = Timeline::default();
    t.record(T0, Mark::Issued);
    for i in 0..i64::try_from(TIMELINE_MARKS * 3).unwrap() {
        t.record(T0 + 1 + i, Mark::Heartbeat);
    }
    // A late report of an earlier time goes in its place.
    t.record(T0 + 500, Mark::TokenRenewed);
    assert_eq!(t.marks().len(), TIMELINE_MARKS);
    assert!(t.marks().zip(t.marks().skip(1)).all(|(a, b)| a.at <= b.at));
    // The issue fell off the front, and what it began still holds.
    assert_eq!(t.registration_at(T0 + 1), RegistrationState::Registered);
}

#[test]
fn a_revocation_in_the_registry_is_marked_at_its_time() {
    let mut t = Timeline::default();
    let record = AgentRecord {
        agent_id: "ag-1".into(),
        hostname: "h".into(),
        addresses: vec!["127.6.0.1".into()],
        stats_port: 9701,
        agent_version: "0.1.0".into(),
        state: RegistrationState::Revoked,
        registered_at: T0,
        last_heartbeat_at: Some(T0 + 30),
        identity_expires_at: T0 + 60,
        certificate_expires_at: T0 + 120,
        revoked_at: Some(T0 + 45),
    };
    t.observe(
        Observed {
            token: TokenState::Valid,
            registration: RegistrationState::Revoked,
            token_expires_at: Some(T0 + 60),
            stats: None,
            registry: Some(&record),
        },
        T0 + 50,
    );
    assert_eq!(
        kinds(&t),
        [
            (0, Mark::Issued),
            (30, Mark::Heartbeat),
            (45, Mark::Revoked)
        ]
    );
    assert_eq!(t.registration_at(T0 + 44), RegistrationState::Registered);
    assert_eq!(t.registration_at(T0 + 45), RegistrationState::Revoked);
    assert_eq!(t.cert_expires_at, Some(T0 + 120));
}
