//! The engine through its handle: commands in, events and snapshots out.

use std::net::{IpAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;

use super::jobs::JobMsg;
use super::*;
use crate::model::AgentStats;
use crate::model::stats::{
    CertificateStatus, CpuStats, MemoryStats, RegistrationStatus, SampleInfo, TokenStatus,
};
use crate::model::{Reach, RegistrationState, TokenState, Via};
use crate::poll::PollError;
use crate::scan::MethodChoice;
use crate::ssh::{ConnectFlags, HostKeyPolicy};
use crate::store::Inventory;

fn config(inventory: Option<PathBuf>, ports: Vec<u16>) -> EngineConfig {
    EngineConfig {
        inventory,
        scan: ScanConfig {
            method: MethodChoice::Tcp,
            ports,
            timeout: Duration::from_millis(300),
            retries: 0,
            ssh_banner: false,
            ..ScanConfig::default()
        },
        keep_fleet: true,
        max_in_flight: 64,
        ssh: SshSettings {
            known_hosts: Some(PathBuf::from("/nonexistent/known_hosts")),
            ssh_config: Some(PathBuf::from("/nonexistent/ssh_config")),
            policy: HostKeyPolicy::Strict,
            flags: ConnectFlags::default(),
            concurrency: 4,
            timeout: Duration::from_secs(5),
        },
        control: None,
        poll: None,
        deploy: crate::engine::DeploySettings::default(),
        questions: Questions::Events,
    }
}

/// Feeds one stats read of one agent, as the poller does.
async fn apply_stats(jobs: &mpsc::Sender<JobMsg>, addr: IpAddr, result: Result<AgentStats, &str>) {
    let result = result
        .map(Box::new)
        .map_err(|e| PollError::Unreachable(e.to_owned()));
    jobs.send(JobMsg::Stats {
        addr,
        result,
        failures: 0,
        retry_in: None,
    })
    .await
    .unwrap();
}

/// Waits (bounded) for the first event `pick` accepts.
async fn until<T>(events: &mut Events, mut pick: impl FnMut(Event) -> Option<T>) -> T {
    let wait = async {
        loop {
            let event = events.recv().await.expect("the engine stopped");
            if let Some(found) = pick(event) {
                return found;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .expect("no such event within 20s")
}

async fn job_end(events: &mut Events, kind: JobKind) -> JobOutcome {
    until(events, |e| match e {
        Event::JobEnded {
            kind: k, outcome, ..
        } if k == kind => Some(outcome),
        _ => None,
    })
    .await
}

fn stats(cpu: f64, token_left: i64) -> AgentStats {
    AgentStats {
        agent_version: "0.1.0".into(),
        hostname: "node1".into(),
        host_uptime_secs: 100,
        agent_uptime_secs: 10,
        agent_rss_bytes: 1 << 20,
        cpu: CpuStats {
            total_pct: cpu,
            per_core_pct: vec![cpu, cpu],
            load1: 0.5,
            load5: 0.4,
            load15: 0.3,
        },
        memory: MemoryStats {
            total_bytes: 1000,
            available_bytes: 250,
            swap_total_bytes: 0,
            swap_free_bytes: 0,
        },
        registration: RegistrationStatus {
            state: RegistrationState::Registered,
            agent_id: Some("a1".into()),
            controller: "https://127.6.0.1:1".into(),
            registered_at: Some(1),
            last_heartbeat_at: Some(2),
            consecutive_failures: 0,
            last_error: None,
        },
        token: TokenStatus {
            state: TokenState::Valid,
            expires_at: None,
            seconds_left: Some(token_left),
            last_renewal_at: None,
            renewals: 0,
            last_error: None,
        },
        certificate: CertificateStatus {
            expires_at: None,
            seconds_left: None,
            last_renewal_at: None,
            renewals: 0,
        },
        sample: SampleInfo {
            taken_at_ms: 0,
            interval_ms: 2000,
        },
    }
}

fn seeded_inventory(dir: &std::path::Path, addrs: &[&str]) -> PathBuf {
    let path = dir.join("inventory.sqlite3");
    let mut inv = Inventory::open(&path).unwrap();
    let scan = inv.begin_scan("seed", "tcp").unwrap();
    let hosts: Vec<HostScan> = addrs
        .iter()
        .map(|a| {
            let mut h = HostScan::new(a.parse().unwrap(), Reach::Alive);
            h.via = Some(Via::Tcp(22));
            h
        })
        .collect();
    inv.record_hosts(scan, &hosts).unwrap();
    path
}

#[tokio::test]
async fn reopens_with_the_fleet_the_inventory_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = seeded_inventory(dir.path(), &["127.6.0.2", "127.6.0.1"]);
    let (engine, mut events) = spawn(config(Some(path), vec![22]));
    let loaded = until(&mut events, |e| match e {
        Event::InventoryLoaded { hosts } => Some(hosts),
        _ => None,
    })
    .await;
    assert_eq!(loaded, 2);
    assert!(matches!(
        job_end(&mut events, JobKind::Refresh).await,
        JobOutcome::Done(_)
    ));
    let snap = engine.snapshot();
    let addrs: Vec<String> = snap.hosts.iter().map(|h| h.addr.to_string()).collect();
    assert_eq!(addrs, ["127.6.0.1", "127.6.0.2"], "in address order");
    assert!(snap.host("127.6.0.2".parse().unwrap()).is_some());
}

#[tokio::test]
async fn reopens_with_stored_facts_and_deployments() {
    let dir = tempfile::tempdir().unwrap();
    let path = seeded_inventory(dir.path(), &["127.9.0.21"]);
    let mut inv = Inventory::open(&path).unwrap();
    inv.record_fingerprints(&[crate::model::Fingerprint {
        host: "web1".into(),
        address: "127.9.0.21".into(),
        port: 22,
        host_key: Some("SHA256:abc".into()),
        facts: Some(crate::model::HostFacts {
            hostname: Some("web1".into()),
            os_id: Some("debian".into()),
            os_version: Some("12".into()),
            ..crate::model::HostFacts::default()
        }),
        failure: None,
        error: None,
        gathered_at: 1,
    }])
    .unwrap();
    inv.record_deployment(&crate::store::Deployment {
        address: "127.9.0.21".into(),
        port: 22,
        host: "web1".into(),
        build: None,
        state: crate::model::AgentState::Failed,
        step: Some("upload".into()),
        error: Some("disk full".into()),
        updated_at: 1,
    })
    .unwrap();
    drop(inv);
    let (engine, mut events) = spawn(config(Some(path), vec![22]));
    job_end(&mut events, JobKind::Refresh).await;
    // The snapshot follows the events within a batch.
    let mut watch = engine.watch();
    let snap = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let snap = engine.snapshot();
            if snap
                .host("127.9.0.21".parse().unwrap())
                .is_some_and(|h| h.facts.is_some())
            {
                return snap;
            }
            let _ = watch.changed().await;
        }
    })
    .await
    .unwrap();
    let host = snap.host("127.9.0.21".parse().unwrap()).unwrap();
    assert_eq!(host.hostname(), Some("web1"));
    assert_eq!(host.os().as_deref(), Some("debian 12"));
    assert_eq!(host.ssh, SshState::Ok);
    assert_eq!(host.host_key.as_deref(), Some("SHA256:abc"));
    assert_eq!(host.agent, crate::model::AgentState::Failed);
    assert_eq!(host.deploy_step.as_deref(), Some("upload failed"));
}

#[tokio::test]
async fn a_scan_finds_hosts_fills_the_fleet_and_records_the_inventory() {
    let listener = TcpListener::bind("127.6.0.3:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.sqlite3");
    let (engine, mut events) = spawn(config(Some(path.clone()), vec![port]));
    job_end(&mut events, JobKind::Refresh).await;
    assert!(engine.send(Command::Scan(ScanRequest::targets("127.6.0.0/28"))));
    let mut found = Vec::new();
    let outcome = until(&mut events, |e| match e {
        Event::HostFound { scan, new } => {
            assert!(new);
            found.push(scan);
            None
        }
        Event::JobEnded {
            kind: JobKind::Scan,
            outcome,
            ..
        } => Some(outcome),
        _ => None,
    })
    .await;
    let JobOutcome::Done(summary) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(summary.starts_with("14 alive"), "{summary}");
    // On loopback every address answers (a refused connection proves it up);
    // only the one with a listener has the port open.
    assert_eq!(found.len(), 14);
    let open: Vec<IpAddr> = found
        .iter()
        .filter(|h| h.open_ports == [port])
        .map(|h| h.addr)
        .collect();
    assert_eq!(open, ["127.6.0.3".parse::<IpAddr>().unwrap()]);
    // Published after the job's end was handled.
    let mut watch = engine.watch();
    let snap = tokio::time::timeout(
        Duration::from_secs(5),
        watch.wait_for(|s| s.hosts.len() == 14 && s.jobs.is_empty()),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    assert!(snap.hosts.iter().all(|h| h.reach() == Reach::Alive));
    assert_eq!(Inventory::open(&path).unwrap().hosts().unwrap().len(), 14);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_front_end_that_stops_reading_holds_the_scan_back_and_loses_nothing() {
    // 4,094 hosts: more outputs and events than the channels and the
    // actor's outbox hold, so the scan must wait for the reader.
    let (engine, mut events) = spawn(config(None, vec![9]));
    assert!(engine.send(Command::Scan(ScanRequest::targets("127.6.16.0/20"))));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let job = engine.snapshot().jobs.first().map(|j| j.id);
    assert!(job.is_some(), "the scan waits for its reader: {job:?}");
    // Commands still go through at once while it waits.
    let sent = std::time::Instant::now();
    for _ in 0..10_000 {
        assert!(engine.send(Command::Refresh));
    }
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "{:?}",
        sent.elapsed()
    );
    let (mut scanned, mut found) = (0, 0);
    let outcome = until(&mut events, |e| match e {
        Event::Output {
            output: JobOutput::Scanned { .. },
            ..
        } => {
            scanned += 1;
            None
        }
        Event::HostFound { .. } => {
            found += 1;
            None
        }
        Event::JobEnded {
            kind: JobKind::Scan,
            outcome,
            ..
        } => Some(outcome),
        _ => None,
    })
    .await;
    assert!(matches!(outcome, JobOutcome::Done(_)), "{outcome:?}");
    assert_eq!((scanned, found), (4094, 4094), "every host, once each");
}

#[tokio::test]
async fn bad_scan_targets_fail_the_job_with_the_reason() {
    let (engine, mut events) = spawn(config(None, vec![22]));
    engine.send(Command::Scan(ScanRequest::targets("10.0.0.0/33")));
    let JobOutcome::Failed(reason) = job_end(&mut events, JobKind::Scan).await else {
        panic!("a bad target must fail the job")
    };
    assert!(matches!(reason, JobError::BadRequest(_)), "{reason:?}");
    assert!(reason.to_string().contains("10.0.0.0/33"), "{reason}");
}

#[tokio::test]
async fn a_cancelled_scan_ends_cancelled() {
    let mut cfg = config(None, vec![9]);
    cfg.scan.rate = 5; // a /24 at 5 probes/s would take a minute
    let (engine, mut events) = spawn(cfg);
    engine.send(Command::Scan(ScanRequest::targets("127.6.1.0/24")));
    let id = until(&mut events, |e| match e {
        Event::JobStarted { id, .. } => Some(id),
        _ => None,
    })
    .await;
    engine.send(Command::CancelJob(id));
    assert_eq!(
        job_end(&mut events, JobKind::Scan).await,
        JobOutcome::Cancelled
    );
}

#[tokio::test]
async fn without_a_control_plane_deploy_and_revoke_say_why_and_undeploy_reports_the_host() {
    let port = TcpListener::bind("127.9.0.9:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = config(None, vec![22]);
    cfg.ssh.flags.port = Some(port);
    let (engine, mut events) = spawn(cfg);
    let hosts: Vec<IpAddr> = vec!["127.9.0.9".parse().unwrap()];
    for (command, kind) in [
        (
            Command::Deploy(DeployRequest::hosts(&hosts)),
            JobKind::Deploy,
        ),
        (
            Command::Revoke(RevokeRequest::hosts(&hosts)),
            JobKind::Revoke,
        ),
    ] {
        engine.send(command);
        let JobOutcome::Failed(reason) = job_end(&mut events, kind).await else {
            panic!("{kind:?} cannot run without a control plane")
        };
        assert!(matches!(reason, JobError::NoControlPlane(_)), "{reason:?}");
        assert!(reason.to_string().contains("no control plane"), "{reason}");
    }
    // Undeploy needs only SSH: nothing listens, so the host fails at connect.
    engine.send(Command::Undeploy(UndeployRequest::hosts(&hosts)));
    let JobOutcome::Done(summary) = job_end(&mut events, JobKind::Undeploy).await else {
        panic!("one host failing does not fail the job")
    };
    assert_eq!(summary, "1 failed");
    let host = engine
        .snapshot()
        .host("127.9.0.9".parse().unwrap())
        .cloned()
        .unwrap();
    assert!(
        host.events
            .iter()
            .any(|e| e.text.contains("failed at connect")),
        "{:?}",
        host.events
    );
}

#[tokio::test]
async fn fingerprinting_an_unreachable_host_marks_its_ssh_state() {
    // A port just freed on our block: nothing listens there any more.
    let port = TcpListener::bind("127.6.0.9:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = config(None, vec![22]);
    cfg.ssh.flags.port = Some(port);
    let (engine, mut events) = spawn(cfg);
    engine.send(Command::Fingerprint(FingerprintRequest::hosts(&[
        "127.6.0.9",
    ])));
    let (addr, state) = until(&mut events, |e| match e {
        Event::SshFailed { addr, state, .. } => Some((addr, state)),
        _ => None,
    })
    .await;
    assert_eq!(addr, "127.6.0.9".parse::<IpAddr>().unwrap());
    assert_eq!(state, SshState::Unreachable);
    let JobOutcome::Done(summary) = job_end(&mut events, JobKind::Fingerprint).await else {
        panic!("one host failing does not fail the job")
    };
    assert_eq!(summary, "0 ok, 1 failed of 1");
    let mut watch = engine.watch();
    let snap = watch
        .wait_for(|s| s.host("127.6.0.9".parse().unwrap()).is_some())
        .await
        .unwrap()
        .clone();
    let host = snap.host(addr).unwrap();
    assert_eq!(host.ssh, SshState::Unreachable);
    assert!(host.ssh_error.is_some());
}

#[tokio::test]
async fn stats_update_the_host_and_its_history_and_failures_mark_it_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let path = seeded_inventory(dir.path(), &["127.6.0.1"]);
    let (engine, mut events, jobs) = start(config(Some(path), vec![22]));
    job_end(&mut events, JobKind::Refresh).await;
    // Paused only now: the inventory is read on a blocking thread, which
    // paused time would not wait for.
    tokio::time::pause();
    let addr: IpAddr = "127.6.0.1".parse().unwrap();

    // Ten minutes of reads every 2 s: history keeps the last five minutes.
    for i in 0..300 {
        apply_stats(&jobs, addr, Ok(stats(f64::from(i % 100), 3600))).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let (from, to) = until(&mut events, |e| match e {
        Event::AgentChanged { from, to, .. } => Some((from, to)),
        _ => None,
    })
    .await;
    assert_eq!((from, to), (AgentState::None, AgentState::Running));
    let snap = engine.snapshot();
    let host = snap.host(addr).unwrap();
    assert_eq!(host.agent, AgentState::Running);
    assert_eq!(host.registration, RegistrationState::Registered);
    assert_eq!(host.token, TokenState::Valid);
    assert_eq!(host.hostname(), Some("node1"));
    // Five minutes of 2 s samples (the edge sample depends on when the
    // actor ran), not the ten minutes fed in.
    assert!(
        (150..=151).contains(&host.history.len()),
        "{}",
        host.history.len()
    );
    let last = host.history.iter().last().unwrap();
    assert!((last.mem_pct - 75.0).abs() < 0.01);
    assert!(host.token_left(snap.now_unix).unwrap() > 3500);

    apply_stats(&jobs, addr, Err("connection refused")).await;
    let (to, error) = until(&mut events, |e| match e {
        Event::AgentChanged { to, error, .. } => Some((to, error)),
        _ => None,
    })
    .await;
    assert_eq!(to, AgentState::Unreachable);
    assert_eq!(error.as_deref(), Some("unreachable: connection refused"));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let snap = engine.snapshot();
    let host = snap.host(addr).unwrap();
    assert_eq!(host.agent, AgentState::Unreachable);
    assert!(
        host.stats.is_some(),
        "the last stats stay for the detail view"
    );
}

#[tokio::test]
async fn the_engine_stops_when_the_last_handle_is_dropped() {
    let (engine, mut events) = spawn(config(None, vec![22]));
    let second = engine.clone();
    drop(engine);
    second.send(Command::Refresh);
    drop(second);
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while events.recv().await.is_some() {}
    })
    .await;
    assert!(
        drained.is_ok(),
        "the event channel closes when the actor ends"
    );
}

#[tokio::test]
async fn the_timeline_marks_what_the_agent_reports_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = seeded_inventory(dir.path(), &["127.6.0.1"]);
    let (engine, mut events, jobs) = start(config(Some(path), vec![22]));
    job_end(&mut events, JobKind::Refresh).await;
    let addr: IpAddr = "127.6.0.1".parse().unwrap();
    let now = crate::model::time::now_unix();
    let report = |token: TokenState, registration: RegistrationState| {
        let mut s = stats(10.0, 30);
        s.registration.registered_at = Some(now - 30);
        s.registration.last_heartbeat_at = Some(now - 2);
        s.registration.state = registration;
        s.token.state = token;
        s.token.last_renewal_at = Some(now - 10);
        s
    };
    // The same report three times, then the renewal failing.
    for _ in 0..3 {
        apply_stats(
            &jobs,
            addr,
            Ok(report(TokenState::Valid, RegistrationState::Registered)),
        )
        .await;
    }
    apply_stats(
        &jobs,
        addr,
        Ok(report(TokenState::Expiring, RegistrationState::Lost)),
    )
    .await;
    let mut watch = engine.watch();
    let snap = watch
        .wait_for(|s| {
            s.host(addr)
                .is_some_and(|h| h.token == TokenState::Expiring)
        })
        .await
        .unwrap()
        .clone();
    let marks: Vec<Mark> = snap
        .host(addr)
        .unwrap()
        .timeline
        .marks()
        .map(|m| m.mark)
        .collect();
    assert_eq!(
        marks,
        [
            Mark::Issued,
            Mark::TokenRenewed,
            Mark::Heartbeat,
            Mark::Token(TokenState::Expiring),
            Mark::Registration(RegistrationState::Lost),
        ]
    );
}

#[tokio::test]
async fn a_rollout_cut_short_is_offered_when_the_inventory_is_read() {
    use crate::store::{HostState, RolloutHost, StoredRollout};
    let dir = tempfile::tempdir().unwrap();
    let path = seeded_inventory(dir.path(), &["127.6.0.1"]);
    let host = |h: &str, state| RolloutHost {
        host: h.into(),
        batch: 0,
        state,
    };
    Inventory::open(&path)
        .unwrap()
        .begin_rollout(&StoredRollout {
            id: 0,
            started_at: 0,
            state: String::new(),
            canary: false,
            max_failures: None,
            stop_on_failure: true,
            gate: false,
            hosts: vec![
                host("a", HostState::Pending),
                host("b", HostState::Pending),
                host("c", HostState::Pending),
            ],
        })
        .unwrap();
    let (_engine, mut events) = spawn(config(Some(path), vec![22]));
    let left = until(&mut events, |e| match e {
        Event::RolloutUnfinished { hosts } => Some(hosts),
        _ => None,
    })
    .await;
    assert_eq!(left, 3);
}
