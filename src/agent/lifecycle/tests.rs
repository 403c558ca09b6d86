//! The lifecycle's rules, with plain numbers for time (milliseconds).

use super::*;

const S: i64 = 1000;

fn held(from: i64, life: i64) -> Held {
    Held {
        obtained_at: from,
        expires_at: from + life,
    }
}

/// Enrolled at t=0: identity 60 s, certificate 300 s, heartbeat 10 s.
fn enrolled() -> Lifecycle {
    let mut l = Lifecycle::new("https://ctl");
    l.apply(
        0,
        Outcome::Enrolled {
            agent_id: "a1".into(),
            registered_at: 0,
            identity: held(0, 60 * S),
            cert: held(0, 300 * S),
            heartbeat_interval_ms: 10 * S,
        },
        0.0,
    );
    l
}

fn transient() -> Outcome {
    Outcome::Failed {
        failure: Failure::Transient,
        error: "connection refused".into(),
    }
}

#[test]
fn a_new_agent_enrolls_first() {
    let l = Lifecycle::new("https://ctl");
    assert_eq!(l.next(5), (Step::Enroll, 5));
    assert_eq!(l.registration_state(5), RegistrationState::Pending);
    assert_eq!(l.token_state(5), TokenState::None);
}

#[test]
fn heartbeats_then_renews_identity_at_two_thirds() {
    let l = enrolled();
    assert_eq!(l.next(0), (Step::Heartbeat, 10 * S));
    assert_eq!(l.token_state(39 * S), TokenState::Valid);
    let mut l = l;
    for t in [10, 20, 30] {
        l.apply(
            t * S,
            Outcome::HeartbeatAccepted {
                state: RegistrationState::Registered,
                interval_ms: 10 * S,
            },
            0.0,
        );
    }
    // Next heartbeat at 40 s; identity renewal due at 40 s: renew first.
    assert_eq!(l.next(30 * S), (Step::Renew { certificate: false }, 40 * S));
    assert_eq!(l.token_state(40 * S), TokenState::Renewing);
    l.apply(
        40 * S,
        Outcome::Renewed {
            identity: held(40 * S, 60 * S),
            cert: None,
        },
        0.0,
    );
    assert_eq!(l.token_status(40 * S).renewals, 1);
    assert_eq!(l.token_status(40 * S).seconds_left, Some(60));
    assert_eq!(l.token_state(41 * S), TokenState::Valid);
    assert_eq!(l.next(40 * S), (Step::Heartbeat, 40 * S));
}

#[test]
fn certificate_renewal_rides_with_the_identity_when_due() {
    let mut l = Lifecycle::new("https://ctl");
    l.apply(
        0,
        Outcome::Enrolled {
            agent_id: "a1".into(),
            registered_at: 0,
            identity: held(0, 600 * S),
            cert: held(0, 30 * S),
            heartbeat_interval_ms: 100 * S,
        },
        0.0,
    );
    assert_eq!(l.next(0), (Step::Renew { certificate: true }, 20 * S));
    l.apply(
        20 * S,
        Outcome::Renewed {
            identity: held(20 * S, 600 * S),
            cert: Some(held(20 * S, 30 * S)),
        },
        0.0,
    );
    let c = l.cert_status(20 * S);
    assert_eq!(
        (c.renewals, c.expires_at, c.last_renewal_at),
        (1, Some(50), Some(20))
    );
}

#[test]
fn unreachable_controller_backs_off_and_the_token_runs_out() {
    let mut l = enrolled();
    l.apply(10 * S, transient(), 0.0);
    assert_eq!(l.registration_state(10 * S), RegistrationState::Lost);
    // Jitter 0 is half the delay. With jitter 1: 2 s, 4 s, 8 s, then
    // capped by the heartbeat interval (10 s) and by a quarter of the
    // identity's time left (36 s / 4 at t = 24 s).
    assert_eq!(l.next(10 * S).1, 10 * S + 500);
    let mut delays = Vec::new();
    let mut now = 10 * S;
    for _ in 0..6 {
        l.apply(now, transient(), 1.0);
        let (_, at) = l.next(now);
        delays.push(at - now);
        now = at;
    }
    assert_eq!(delays[..4], [2 * S, 4 * S, 8 * S, 9 * S]);
    assert!(delays.iter().all(|d| *d <= 10 * S));
    // Renewal is due (40 s): it goes first, failing heartbeats or not.
    assert!(now > 40 * S);
    assert_eq!(l.next(now).0, Step::Renew { certificate: false });

    // Renewal due at 40 s and failing: expiring, then expired at 60 s.
    assert_eq!(l.token_state(41 * S), TokenState::Expiring);
    assert!(l.token_status(41 * S).last_error.is_some());
    // Near expiry the retry gap shrinks to a quarter of what is left.
    l.apply(56 * S, transient(), 1.0);
    assert!(l.next(56 * S).1 - 56 * S <= S);
    assert_eq!(l.token_state(60 * S), TokenState::Expired);
    assert_eq!(l.registration_state(60 * S), RegistrationState::Expired);
    assert_eq!(l.next(60 * S).0, Step::Enroll);
}

#[test]
fn recovery_before_expiry_keeps_the_same_agent() {
    let mut l = enrolled();
    for t in [40, 42, 46] {
        l.apply(t * S, transient(), 0.5);
    }
    l.apply(
        50 * S,
        Outcome::Renewed {
            identity: held(50 * S, 60 * S),
            cert: None,
        },
        0.5,
    );
    assert_eq!(l.agent_id(), Some("a1"));
    assert_eq!(l.registration_state(50 * S), RegistrationState::Registered);
    assert_eq!(l.token_state(50 * S), TokenState::Valid);
    assert_eq!(l.registration_status(50 * S).consecutive_failures, 0);
}

#[test]
fn revoked_is_a_state_and_waits_for_a_new_join_token() {
    let mut l = enrolled();
    l.apply(
        40 * S,
        Outcome::Failed {
            failure: Failure::Revoked,
            error: "revoked".into(),
        },
        0.0,
    );
    assert_eq!(l.registration_state(40 * S), RegistrationState::Revoked);
    assert_eq!(l.next(40 * S), (Step::Enroll, 41 * S));
    // A heartbeat can tell it too.
    let mut l = enrolled();
    l.apply(
        10 * S,
        Outcome::HeartbeatAccepted {
            state: RegistrationState::Revoked,
            interval_ms: 10 * S,
        },
        0.0,
    );
    assert_eq!(l.registration_state(10 * S), RegistrationState::Revoked);
    assert!(
        l.registration_status(10 * S)
            .last_error
            .unwrap()
            .contains("revoked")
    );
}

#[test]
fn refused_identity_needs_a_new_join() {
    let mut l = enrolled();
    l.apply(
        10 * S,
        Outcome::Failed {
            failure: Failure::IdentityRefused,
            error: "unknown_agent".into(),
        },
        0.0,
    );
    assert_eq!(l.registration_state(10 * S), RegistrationState::Expired);
    assert_eq!(l.next(10 * S), (Step::Enroll, 11 * S));
    // Waiting for a join token polls once a second.
    l.apply(
        11 * S,
        Outcome::Failed {
            failure: Failure::NoUsableJoinToken,
            error: "no join token".into(),
        },
        0.0,
    );
    assert_eq!(l.next(11 * S), (Step::Enroll, 12 * S));
}

#[test]
fn a_restart_resumes_and_heartbeats_at_once() {
    let l = Lifecycle::resumed(
        "https://ctl",
        Resumed {
            agent_id: "a1".into(),
            registered_at: 0,
            identity: held(0, 60 * S),
            cert: held(0, 300 * S),
            heartbeat_interval_ms: 10 * S,
        },
    );
    assert_eq!(l.next(5 * S), (Step::Heartbeat, 5 * S));
    assert_eq!(l.registration_state(5 * S), RegistrationState::Registered);
    // Resumed after expiry: straight to enrollment.
    assert_eq!(l.next(61 * S).0, Step::Enroll);
}
