//! The poller's backoff, token lifetimes and addresses.
use super::*;

#[tokio::test(start_paused = true)]
async fn a_silent_agent_is_read_less_and_less_often_then_at_once_when_back() {
    let interval = Duration::from_secs(2);
    let max = Duration::from_mins(1);
    let start = Instant::now();
    let mut b = Backoff::new(start);
    assert!(b.is_due(start));
    let waits: Vec<u64> = (0..8)
        .map(|_| b.failed(Instant::now(), interval, max).as_secs())
        .collect();
    assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60, 60]);
    assert_eq!(b.failures(), 8);
    assert!(!b.is_due(Instant::now()));
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(!b.is_due(Instant::now()), "still waiting out the ceiling");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(b.is_due(Instant::now()));
    b.succeeded(Instant::now());
    assert_eq!(b.failures(), 0);
    assert!(b.is_due(Instant::now()));
    // A later failure starts over at the interval.
    assert_eq!(b.failed(Instant::now(), interval, max), interval);
}

#[tokio::test(start_paused = true)]
async fn the_operator_token_is_replaced_at_two_thirds_of_its_life() {
    let dir = tempfile::tempdir().unwrap();
    let ca = crate::pki::FleetCa::load_or_create(dir.path()).unwrap();
    let (to_actor, _from) = mpsc::channel(16);
    crate::auth::TokenIssuer::load_or_create(dir.path()).unwrap();
    let keys = LocalKeys::load(dir.path()).unwrap();
    let mut poller = Poller {
        settings: PollSettings::default(),
        link: ControlLink {
            url: "https://127.9.0.1:9".into(),
            replicas: Vec::new(),
            control_dir: dir.path().to_owned(),
            operator_ttl: Duration::from_secs(90),
        },
        keys: Arc::new(keys),
        keys_stamp: LocalKeys::stamp(dir.path()),
        revocations: RevocationList::new(ca.ca_pem()).unwrap(),
        clients: None,
        targets: HashMap::new(),
        to_actor,
        focus: watch::channel(None).1,
    };
    let start = Instant::now();
    let first = poller.ensure_clients().unwrap().renew_at;
    assert_eq!(first, start + Duration::from_mins(1));
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(
        poller.ensure_clients().unwrap().renew_at,
        first,
        "still fresh"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    let second = poller.ensure_clients().unwrap().renew_at;
    assert_eq!(second, first + Duration::from_mins(1), "renewed at 2/3");
}

#[tokio::test(start_paused = true)]
async fn each_agent_gets_its_own_stats_token_replaced_at_two_thirds() {
    let dir = tempfile::tempdir().unwrap();
    crate::pki::FleetCa::load_or_create(dir.path()).unwrap();
    let issuer = crate::auth::TokenIssuer::load_or_create(dir.path()).unwrap();
    let verifier = issuer.verifier();
    let keys = LocalKeys::load(dir.path()).unwrap();
    let ttl = Duration::from_secs(90);
    let target = |agent_id: Option<&str>| Target {
        addr: "127.9.0.7:9701".parse().unwrap(),
        agent_id: agent_id.map(str::to_owned),
        token: None,
        backoff: Backoff::new(Instant::now()),
        in_flight: false,
        registered: agent_id.is_some(),
        deployed: true,
    };
    let mut unknown = target(None);
    assert!(
        unknown.stats_token(&keys, ttl, Instant::now()).is_none(),
        "no id, no token"
    );
    let (mut a, mut b) = (target(Some("ag-a")), target(Some("ag-b")));
    let first = a.stats_token(&keys, ttl, Instant::now()).unwrap();
    let other = b.stats_token(&keys, ttl, Instant::now()).unwrap();
    let own = crate::auth::stats_audience_for("ag-a");
    assert!(verifier.verify_for(&first, &[&own]).is_ok());
    assert!(
        verifier.verify_for(&other, &[&own]).is_err(),
        "b's token is worthless at a"
    );
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(a.stats_token(&keys, ttl, Instant::now()).unwrap(), first);
    tokio::time::advance(Duration::from_secs(1)).await;
    let second = a.stats_token(&keys, ttl, Instant::now()).unwrap();
    assert_ne!(second, first, "replaced at 2/3 of its life");
    assert!(verifier.verify_for(&second, &[&own]).is_ok());
}

#[test]
fn the_primary_address_is_the_first_usable_one() {
    let record = AgentRecord {
        agent_id: "ag-1".into(),
        hostname: "web1".into(),
        addresses: vec!["web1.local".into(), "0.0.0.0".into(), "127.9.0.7".into()],
        stats_port: 9701,
        agent_version: "0".into(),
        state: crate::model::RegistrationState::Registered,
        registered_at: 0,
        last_heartbeat_at: None,
        identity_expires_at: 0,
        certificate_expires_at: 0,
        revoked_at: None,
    };
    assert_eq!(primary_addr(&record), Some("127.9.0.7".parse().unwrap()));
}
