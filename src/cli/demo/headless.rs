//! `fleetctl demo --headless`: the console's flow through the same engine,
//! with no screen: scan → fingerprint → deploy → watch, until every healthy
//! host is registered with live stats and each failure host shows its state.
//! Progress goes to stderr; the fleet table and a one-line outcome to stdout.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::fleet::DemoFleet;
use crate::engine::{
    Command, DeployRequest, EngineHandle, Event, Events, FingerprintRequest, FleetSnapshot,
    JobKind, JobOutcome, ScanRequest,
};
use crate::model::{AgentState, Reach, RegistrationState, SshState, TokenState};

/// Stats older than this are not live.
const FRESH: i64 = 10;

/// How the run ended.
pub struct Report {
    pub ok: bool,
    pub table: String,
    pub outcome: String,
}

/// Runs the flow until all is as expected or `limit` has passed.
pub async fn run(
    fleet: &DemoFleet,
    engine: &EngineHandle,
    events: &mut Events,
    limit: Duration,
) -> Report {
    let deadline = Instant::now() + limit;
    let result = tokio::time::timeout_at(deadline, flow(fleet, engine, events)).await;
    let snapshot = engine.snapshot();
    let table = super::table(&snapshot);
    let check = check(fleet, &snapshot);
    let (ok, outcome) = match result {
        Ok(Ok(())) if check.waiting.is_empty() => (true, check.summary),
        Ok(Err(e)) => (false, format!("demo: failed: {e}")),
        Ok(Ok(())) | Err(_) => (
            false,
            format!(
                "demo: gave up after {}s (--timeout) still waiting for: {}",
                limit.as_secs(),
                check.waiting.join("; ")
            ),
        ),
    };
    Report { ok, table, outcome }
}

async fn flow(fleet: &DemoFleet, engine: &EngineHandle, events: &mut Events) -> Result<(), String> {
    eprintln!(
        "demo: scanning {} with TCP connect to port {} (no root needed; the silent host is silent on that port only)",
        fleet.range,
        super::fleet::SSH_PORT
    );
    let targets = fleet.range.clone();
    job(
        engine,
        events,
        Command::Scan(ScanRequest::targets(&targets)),
        JobKind::Scan,
    )
    .await?;

    let alive = hosts_where(engine, |h| h.reach() == Reach::Alive);
    eprintln!("demo: fingerprinting {} hosts over SSH", alive.len());
    job(
        engine,
        events,
        Command::Fingerprint(FingerprintRequest::hosts(&alive)),
        JobKind::Fingerprint,
    )
    .await?;

    let reachable = hosts_where(engine, |h| h.ssh == SshState::Ok);
    eprintln!(
        "demo: deploying the agent to {} hosts (into each host's home)",
        reachable.len()
    );
    job(
        engine,
        events,
        Command::Deploy(DeployRequest::hosts(&reachable)),
        JobKind::Deploy,
    )
    .await?;

    eprintln!("demo: watching until every agent reports and the cut-off token runs out");
    let mut snapshots = engine.watch();
    loop {
        if check(fleet, &snapshots.borrow_and_update())
            .waiting
            .is_empty()
        {
            return Ok(());
        }
        tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() {
                    return Err("the engine stopped".into());
                }
            }
            event = events.recv() => log(event.as_ref()),
        }
    }
}

/// Sends `command` and waits for its job to end, logging what happens.
async fn job(
    engine: &EngineHandle,
    events: &mut Events,
    command: Command,
    kind: JobKind,
) -> Result<(), String> {
    if !engine.send(command) {
        return Err("the engine stopped".into());
    }
    loop {
        let Some(event) = events.recv().await else {
            return Err("the engine stopped".into());
        };
        log(Some(&event));
        if let Event::JobEnded {
            kind: ended,
            outcome,
            ..
        } = event
            && ended == kind
        {
            // The snapshot catches up with the job's last results once it
            // no longer lists the job (the engine applies them in order).
            let mut snapshots = engine.watch();
            while !snapshots.borrow_and_update().jobs.is_empty() {
                if snapshots.changed().await.is_err() {
                    return Err("the engine stopped".into());
                }
            }
            return match outcome {
                JobOutcome::Done(_) => Ok(()),
                JobOutcome::Failed(e) => Err(format!("the {} job failed: {e}", kind.as_str())),
                JobOutcome::Cancelled => Err(format!("the {} job was cancelled", kind.as_str())),
            };
        }
    }
}

fn log(event: Option<&Event>) {
    match event {
        Some(Event::SshFailed { addr, state, error }) => {
            eprintln!("demo: {addr}: ssh {state}: {error}");
        }
        Some(Event::Error { addr, message }) => match addr {
            Some(addr) => eprintln!("demo: {addr}: {message}"),
            None => eprintln!("demo: {message}"),
        },
        Some(Event::JobEnded {
            kind,
            outcome: JobOutcome::Done(summary),
            ..
        }) => eprintln!("demo: {} done: {summary}", kind.as_str()),
        _ => {}
    }
}

fn hosts_where(
    engine: &EngineHandle,
    pick: impl Fn(&crate::engine::HostView) -> bool,
) -> Vec<IpAddr> {
    engine
        .snapshot()
        .hosts
        .iter()
        .filter(|h| pick(h))
        .map(|h| h.addr)
        .collect()
}

/// What is still awaited, and the outcome line once nothing is.
pub struct Check {
    pub waiting: Vec<String>,
    pub summary: String,
}

/// Whether the fleet is where the demo should end: healthy hosts
/// registered with live stats, the silent host silent, the host that
/// rejects the key failing authentication, the cut-off one's token
/// expiring or expired.
pub fn check(fleet: &DemoFleet, snapshot: &Arc<FleetSnapshot>) -> Check {
    let roles = fleet.roles;
    let mut waiting = Vec::new();
    let mut healthy = 0;
    let now = snapshot.now_unix;
    for (i, host) in fleet.sandbox.hosts().iter().enumerate() {
        let addr = host.addr.ip();
        let name = &host.name;
        let Some(view) = snapshot.host(addr) else {
            waiting.push(format!("{name} to be known"));
            continue;
        };
        if i == roles.silent {
            if view.reach() != Reach::Silent {
                waiting.push(format!("{name} to show silent (is {})", view.reach()));
            }
        } else if i == roles.rejects_key {
            if view.ssh != SshState::AuthFailed {
                waiting.push(format!("{name} to show ssh auth-failed (is {})", view.ssh));
            }
        } else if i == roles.cut_off {
            if !matches!(view.token, TokenState::Expiring | TokenState::Expired) {
                waiting.push(format!(
                    "{name} (cut off) to show its token expiring or expired (is {})",
                    view.token
                ));
            }
        } else {
            let live = view
                .stats
                .as_ref()
                .is_some_and(|s| now - s.sample.taken_at_ms / 1000 <= FRESH && s.hostname == *name);
            if view.agent == AgentState::Running
                && view.registration == RegistrationState::Registered
                && live
            {
                healthy += 1;
            } else {
                waiting.push(format!(
                    "{name} to be registered with live stats (agent {}, registration {}{})",
                    view.agent,
                    view.registration,
                    if live { "" } else { ", no live stats" }
                ));
            }
        }
    }
    let token = snapshot
        .host(fleet.addr(roles.cut_off))
        .map_or(TokenState::None, |h| h.token);
    let summary = format!(
        "demo: ok: {healthy} healthy hosts registered with live stats; {} silent, {} ssh auth-failed, {} token {token}",
        fleet.describe(roles.silent),
        fleet.describe(roles.rejects_key),
        fleet.describe(roles.cut_off),
    );
    Check { waiting, summary }
}
