//! Deploy and undeploy as engine jobs (what the console's `d` and `u` run)
//! against real OpenSSH "hosts" on loopback, with a control plane started
//! in-process as the console embeds it. Each sshd runs in a mount and UTS
//! namespace of its own (tmpfs over /usr/local/lib and /var/lib), as in
//! tests/deploy_root.rs, so root installs never touch the real machine.
//! The host keys are unknown: the engine asks (the console's yes/no modal)
//! and the test answers yes.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::host::{HOST_SSH_PORT, IsolatedHost};
use common::{keygen, require_root, require_tool};
use fleetctl::control::{self, ControlPlane, Settings};
use fleetctl::engine::{
    self, Answer, Command as EngineCommand, ControlLink, DeployRequest, DeploySettings,
    EngineConfig, Event, Events, JobKind, JobOutcome, PollSettings, PromptKind, Questions,
    SshSettings, UndeployRequest,
};
use fleetctl::model::{AgentState, RegistrationState};
use fleetctl::ssh::{ConnectFlags, HostKeyPolicy};
use tokio_util::sync::CancellationToken;

const SSH_PORT: u16 = HOST_SSH_PORT;
const LIMIT: Duration = Duration::from_mins(3);

type FakeHost = IsolatedHost;

fn stripped_binary(dir: &Path) -> PathBuf {
    // A debug build carries ~80 MB of debug info; hosts get it stripped.
    let out = dir.join("fleetctl-stripped");
    let strip = Command::new(require_tool("strip"))
        .arg("-o")
        .arg(&out)
        .arg(env!("CARGO_BIN_EXE_fleetctl"))
        .status()
        .unwrap();
    assert!(strip.success());
    out
}

/// Answers host-key questions yes until the job of `kind` ends; returns
/// its outcome, the prompts seen and the deploy steps reported.
async fn run_job(
    engine: &engine::EngineHandle,
    events: &mut Events,
    kind: JobKind,
) -> (JobOutcome, Vec<String>, Vec<(IpAddr, String)>) {
    let mut prompts = Vec::new();
    let mut steps = Vec::new();
    let outcome = tokio::time::timeout(LIMIT, async {
        loop {
            match events.recv().await.unwrap() {
                Event::PromptNeeded(prompt) => {
                    if let PromptKind::HostKey { fingerprint, .. } = &prompt.kind {
                        prompts.push(fingerprint.clone());
                    }
                    engine.send(EngineCommand::AnswerPrompt {
                        id: prompt.id,
                        answer: Answer::Confirm(true),
                    });
                }
                Event::DeployStep { addr, step } => steps.push((addr, step)),
                Event::JobEnded {
                    kind: k, outcome, ..
                } if k == kind => return outcome,
                _ => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{kind:?} did not end within {LIMIT:?}"));
    (outcome, prompts, steps)
}

/// The engine as the console runs it, over these hosts: host keys asked
/// about (policy ask), root with the test's key, agents on `{host}:9701`.
fn engine_config(dir: &Path, key: &Path, url: &str) -> EngineConfig {
    EngineConfig {
        inventory: Some(dir.join("inventory.sqlite3")),
        keep_fleet: true,
        scan: fleetctl::engine::ScanConfig::default(),
        max_in_flight: 16,
        ssh: SshSettings {
            known_hosts: Some(dir.join("known_hosts")),
            ssh_config: Some(dir.join("no_ssh_config")),
            policy: HostKeyPolicy::Ask,
            flags: ConnectFlags {
                user: Some("root".into()),
                port: Some(SSH_PORT),
                identities: vec![key.to_owned()],
                ..ConnectFlags::default()
            },
            concurrency: 4,
            timeout: Duration::from_secs(30),
        },
        control: Some(ControlLink {
            url: url.to_owned(),
            replicas: Vec::new(),
            control_dir: dir.join("control"),
            operator_ttl: Duration::from_hours(1),
        }),
        poll: Some(PollSettings {
            interval: Duration::from_millis(500),
            registry_interval: Duration::from_secs(1),
            ..PollSettings::default()
        }),
        deploy: DeploySettings {
            agent_binary: Some(stripped_binary(dir)),
            listen: "{host}:9701".into(),
            step_timeout: Duration::from_mins(1),
            wait_timeout: Duration::from_mins(1),
            ..DeploySettings::default()
        },
        questions: Questions::Events,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and sshd (the interop suite in .ci/run runs it)"]
async fn the_engine_deploys_watches_and_undeploys_real_hosts() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "operator", "");
    let plane = ControlPlane::open(
        &dir.path().join("control"),
        &dir.path().join("inventory.sqlite3"),
        Settings {
            heartbeat_interval: Duration::from_secs(2),
            ..Settings::default()
        },
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.9.0.3:0").await.unwrap();
    let stop = CancellationToken::new();
    let started =
        control::start(listener, Arc::clone(&plane), stop.clone().cancelled_owned()).unwrap();
    let ips: Vec<IpAddr> = vec!["127.9.3.1".parse().unwrap(), "127.9.3.2".parse().unwrap()];
    let hosts: Vec<FakeHost> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| FakeHost::start(&format!("ew{i}"), &ip.to_string(), &key))
        .collect();
    let config = engine_config(dir.path(), &key, &started.url);
    let (engine, mut events) = engine::spawn(config);

    engine.send(EngineCommand::Deploy(DeployRequest::hosts(&ips)));
    let (outcome, prompts, steps) = run_job(&engine, &mut events, JobKind::Deploy).await;
    assert_eq!(
        outcome,
        JobOutcome::Done("2 deployed (console build)".into())
    );
    assert_eq!(prompts.len(), 2, "one host key question per host");
    assert!(
        prompts.iter().all(|p| p.starts_with("ssh-ed25519 SHA256:")),
        "{prompts:?}"
    );
    for ip in &ips {
        let seen: Vec<&str> = steps
            .iter()
            .filter(|(a, _)| a == ip)
            .map(|(_, s)| s.as_str())
            .collect();
        assert_eq!(seen.first(), Some(&"connect"), "{ip}: {seen:?}");
        assert_eq!(seen.last(), Some(&"registered"), "{ip}: {seen:?}");
    }
    // The learned keys are in known_hosts: the next connection asks nothing.
    let known = std::fs::read_to_string(dir.path().join("known_hosts")).unwrap();
    assert!(known.contains("[127.9.3.1]:2222"), "{known}");

    // The poller finds the new agents through the registry.
    let deadline = Instant::now() + LIMIT;
    loop {
        let fleet = engine.snapshot();
        let live = ips.iter().all(|ip| {
            fleet.host(*ip).is_some_and(|h| {
                h.agent == AgentState::Running
                    && h.registration == RegistrationState::Registered
                    && h.stats.is_some()
            })
        });
        if live {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "agents never live: {:#?}",
            fleet.hosts
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    engine.send(EngineCommand::Undeploy(UndeployRequest::hosts(&ips[..1])));
    let (outcome, prompts, _) = run_job(&engine, &mut events, JobKind::Undeploy).await;
    assert_eq!(outcome, JobOutcome::Done("1 removed".into()));
    assert!(prompts.is_empty(), "known hosts are not asked about again");
    assert_eq!(hosts[0].leftovers(), "", "undeploy removes everything");
    assert_eq!(
        engine.snapshot().host(ips[0]).unwrap().agent,
        AgentState::None
    );
    // The inventory keeps what deploy did for the host still deployed.
    let inventory =
        fleetctl::store::Inventory::open(&dir.path().join("inventory.sqlite3")).unwrap();
    let deployments = inventory.deployments().unwrap();
    assert_eq!(deployments.len(), 1, "{deployments:?}");
    assert_eq!(deployments[0].address, "127.9.3.2");
    assert_eq!(deployments[0].state, AgentState::Running);
    drop(engine);
    stop.cancel();
}
