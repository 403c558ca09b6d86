//! The poller: reads every agent's `/v1/stats` on an interval and the
//! control plane's registry every few seconds, and hands both to the actor.
//!
//! ```text
//!  registry tick ── ControlClient::agents ──▶ targets (address → stats port)
//!  poll tick ──── due targets, `concurrency` at once ── StatsClient::fetch ──▶ actor
//!                 (an agent that fails waits interval·2ⁿ, up to max_backoff)
//! ```
//! Agents come from the registry and from what deploy recorded in the
//! inventory. Tokens are minted from the control plane's signing key and
//! replaced at 2/3 of their life: an operator token for the registry (it
//! never leaves for an agent), and for each agent a stats token only that
//! agent accepts, so a host that keeps what it was sent holds nothing that
//! works on the control plane or on any other host. An agent read before
//! the registry names its id waits for it. With each registry read comes
//! the fleet CA's revocation list: a revoked agent's certificate is
//! refused from the next read on.
//!
//! With Prometheus as the stats source ([`super::prometheus`]), each poll
//! tick sends a few PromQL queries instead of one read per agent (and a
//! range query for the history after the first answer, or after a failed
//! round); only the host whose detail is open is still read directly.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::jobs::{JobError, JobMsg};
use super::{ControlLink, PollSettings};
use crate::control::LocalKeys;
use crate::control::client::{ClientError, ControlClient};
use crate::model::AgentState;
use crate::model::control::AgentRecord;
use crate::model::stats::listen_port;
use crate::pki::RevocationList;
use crate::poll::{PollError, StatsClient};
use crate::store::Inventory;

/// The operator name on the tokens the console mints.
pub const OPERATOR: &str = "fleetctl-console";

/// When to read an agent next: at once while it answers; after a failure,
/// the interval doubled per failure in a row, up to a ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
    next_due: Instant,
}

impl Backoff {
    #[must_use]
    pub fn new(now: Instant) -> Self {
        Self {
            failures: 0,
            next_due: now,
        }
    }

    #[must_use]
    pub fn is_due(&self, now: Instant) -> bool {
        now >= self.next_due
    }

    /// Failed reads in a row.
    #[must_use]
    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn succeeded(&mut self, now: Instant) {
        self.failures = 0;
        self.next_due = now;
    }

    /// Records a failure; returns how long until the next read.
    pub fn failed(&mut self, now: Instant, interval: Duration, max: Duration) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let factor = 1u32 << (self.failures - 1).min(16);
        let wait = interval.saturating_mul(factor).min(max);
        self.next_due = now + wait;
        wait
    }
}

/// The address the console shows an agent under: its first registered one.
#[must_use]
pub fn primary_addr(record: &AgentRecord) -> Option<IpAddr> {
    record
        .addresses
        .iter()
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .find(|ip| !ip.is_unspecified())
}

struct Target {
    addr: SocketAddr,
    /// Its id in the registry: what its stats token names.
    agent_id: Option<String>,
    /// The stats token for it, and when to replace it.
    token: Option<(Arc<str>, Instant)>,
    backoff: Backoff,
    in_flight: bool,
    /// Listed by the registry's latest read.
    registered: bool,
    /// Deploy recorded it running: read even when the registry does not list it.
    deployed: bool,
}

impl Target {
    /// The stats token for this agent alone: minted when there is none, or
    /// the one held is 2/3 through its life; none while the registry has
    /// not named the agent.
    fn stats_token(&mut self, keys: &LocalKeys, ttl: Duration, now: Instant) -> Option<Arc<str>> {
        let agent_id = self.agent_id.as_deref()?;
        if let Some((token, renew_at)) = &self.token
            && now < *renew_at
        {
            return Some(Arc::clone(token));
        }
        match keys.stats_token_for(agent_id, OPERATOR, ttl) {
            Ok(token) => {
                let token: Arc<str> = Arc::from(token);
                self.token = Some((Arc::clone(&token), now + ttl * 2 / 3));
                Some(token)
            }
            Err(e) => {
                tracing::warn!("cannot mint a stats token: {e}");
                None
            }
        }
    }
}

/// Why the registry (and so the agents) cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot mint tokens, so agents cannot be read: {0}")]
    Keys(#[from] JobError),
    #[error("cannot make the operator's clients: {0}")]
    Clients(String),
    #[error(transparent)]
    Control(#[from] ClientError),
}

/// The clients: the control plane's with the operator token it sends, and
/// the agents' (each read carries that agent's token).
struct Clients {
    stats: StatsClient,
    control: Arc<ControlClient>,
    renew_at: Instant,
}

struct Poller {
    settings: PollSettings,
    link: ControlLink,
    keys: Arc<LocalKeys>,
    /// The key files as last loaded: reloaded when they change (a rotation).
    keys_stamp: Vec<Option<(u64, std::time::SystemTime)>>,
    revocations: Arc<RevocationList>,
    clients: Option<Clients>,
    targets: HashMap<IpAddr, Target>,
    to_actor: mpsc::Sender<JobMsg>,
    /// The host whose detail is open: read directly whatever the source.
    focus: watch::Receiver<Option<IpAddr>>,
}

#[path = "poller_prom.rs"]
mod prom;
use prom::{PromRound, prometheus_client, spawn_prom_round};

/// Runs until `cancel` fires.
pub(super) async fn run(
    settings: PollSettings,
    link: ControlLink,
    inventory: Option<PathBuf>,
    to_actor: mpsc::Sender<JobMsg>,
    focus: watch::Receiver<Option<IpAddr>>,
    cancel: CancellationToken,
) {
    let Some(mut poller) = Poller::start(settings, link, to_actor, focus).await else {
        return;
    };
    let Ok(prometheus) = prometheus_client(&poller.settings, &poller.to_actor).await else {
        return;
    };
    if let Some(path) = inventory {
        poller.add_deployed(path).await;
    }
    let concurrency = poller.settings.concurrency.max(1);
    // Bounded: a read that finished waits for the loop to take it in.
    let (results_tx, mut results) = mpsc::channel(concurrency);
    let limit = Arc::new(Semaphore::new(concurrency));
    // The first round waits for the registry, so it covers every agent.
    let first = poller.read_registry().await;
    poller.registry(first).await;
    // One Prometheus round at a time: room for its answer is all it needs.
    let (prom_tx, mut prom_rx) = mpsc::channel::<PromRound>(1);
    let mut prom_in_flight = false;
    let mut want_history = true;
    // Reads under way, and reads finished since the last round ended.
    let mut outstanding = poller
        .dispatch(&limit, &results_tx, prometheus.is_some())
        .await;
    let mut reads_done = 0u64;
    if let Some(client) = &prometheus {
        // A round ends when Prometheus answers: ask at once.
        prom_in_flight = true;
        spawn_prom_round(client, &prom_tx, want_history, poller.settings.interval);
    } else if outstanding == 0 {
        poller.round_done(0).await;
    }
    let mut poll_tick = tokio::time::interval(poller.settings.interval);
    poll_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    poll_tick.reset();
    let mut registry_tick = tokio::time::interval(poller.settings.registry_interval);
    registry_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    registry_tick.reset();
    // One registry read at a time: room for its one answer.
    let (registry_tx, mut registry_rx) = mpsc::channel(1);
    let mut registry_in_flight = false;
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = poll_tick.tick() => {
                outstanding += poller
                    .dispatch(&limit, &results_tx, prometheus.is_some())
                    .await;
                if let Some(client) = &prometheus && !prom_in_flight {
                    prom_in_flight = true;
                    spawn_prom_round(client, &prom_tx, want_history, poller.settings.interval);
                }
            }
            Some((fleet, history)) = prom_rx.recv() => {
                prom_in_flight = false;
                if let Some(history) = history {
                    want_history = !poller.prom_history(history).await;
                }
                if fleet.is_err() {
                    want_history = true;
                }
                let updated = poller.prom_fleet(&fleet).await;
                poller.round_done(updated).await;
            }
            _ = registry_tick.tick(), if !registry_in_flight => {
                poller.reload_keys().await;
                if let Some(client) = poller.control_client().await {
                    registry_in_flight = true;
                    let tx = registry_tx.clone();
                    let revocations = Arc::clone(&poller.revocations);
                    tokio::spawn(async move {
                        refresh_revocations(&client, &revocations).await;
                        let _ = tx.send(client.agents().await.map_err(WatchError::from)).await;
                    });
                }
            }
            Some(result) = registry_rx.recv() => {
                registry_in_flight = false;
                poller.registry(result).await;
            }
            Some((ip, result)) = results.recv() => {
                poller.result(ip, result).await;
                outstanding = outstanding.saturating_sub(1);
                reads_done += 1;
                if outstanding == 0 && prometheus.is_none() {
                    // Every read dispatched so far has come back.
                    poller.round_done(reads_done).await;
                    reads_done = 0;
                }
            }
        }
    }
}

type FetchResult = (IpAddr, Result<crate::model::AgentStats, PollError>);

/// Reads the fleet CA's revocation list; a failed read keeps the last one
/// (the agents' certificates still expire on their own).
async fn refresh_revocations(client: &ControlClient, revocations: &RevocationList) {
    match client.crl().await {
        Ok(der) => {
            if let Err(e) = revocations.replace(der) {
                tracing::warn!(error = %e, "the control plane's revocation list is unusable; keeping the last one");
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the revocation list; keeping the last one");
        }
    }
}

impl Poller {
    /// The poller with its keys loaded; `None` (said to the actor) when
    /// the control plane's keys cannot be read.
    async fn start(
        settings: PollSettings,
        link: ControlLink,
        to_actor: mpsc::Sender<JobMsg>,
        focus: watch::Receiver<Option<IpAddr>>,
    ) -> Option<Self> {
        let setup = async {
            let keys = link.keys().await?;
            let revocations =
                RevocationList::new(keys.ca_pem()).map_err(|e| JobError::Control(e.to_string()))?;
            Ok::<_, JobError>((keys, revocations))
        };
        let (keys, revocations) = match setup.await {
            Ok(setup) => setup,
            Err(e) => {
                let _ = to_actor.send(JobMsg::Registry(Err(e.into()))).await;
                return None;
            }
        };
        Some(Self {
            settings,
            keys_stamp: LocalKeys::stamp(&link.control_dir),
            link,
            keys: Arc::new(keys),
            revocations,
            clients: None,
            targets: HashMap::new(),
            to_actor,
            focus,
        })
    }

    /// Loads the keys again when their files changed (a rotation).
    async fn reload_keys(&mut self) {
        let stamp = LocalKeys::stamp(&self.link.control_dir);
        if stamp == self.keys_stamp {
            return;
        }
        match self.link.keys().await {
            Ok(keys) => {
                tracing::debug!(kid = keys.signing_kid(), "token keys reloaded");
                self.keys = Arc::new(keys);
                self.keys_stamp = stamp;
            }
            Err(e) => tracing::warn!("cannot reload the token keys: {e}"),
        }
    }

    /// Fresh clients when there are none or the token is 2/3 through its life.
    fn ensure_clients(&mut self) -> Result<&Clients, WatchError> {
        let now = Instant::now();
        if self.clients.as_ref().is_none_or(|c| now >= c.renew_at) {
            let ttl = self.link.operator_ttl;
            let made = self
                .keys
                .operator_token(OPERATOR, ttl)
                .map_err(|e| e.to_string())
                .and_then(|token| {
                    let stats = StatsClient::with_revocations(
                        Arc::clone(&self.revocations),
                        self.settings.timeout,
                    )
                    .map_err(|e| e.to_string())?;
                    let control = ControlClient::with_replicas(
                        &self.link.urls(),
                        self.keys.ca_pem(),
                        self.keys.pin(),
                        token,
                        self.settings.timeout,
                    )
                    .map_err(|e| e.to_string())?;
                    Ok(Clients {
                        stats,
                        control: Arc::new(control),
                        renew_at: now + ttl * 2 / 3,
                    })
                });
            self.clients = Some(made.map_err(WatchError::Clients)?);
        }
        self.clients
            .as_ref()
            .ok_or_else(|| WatchError::Clients("none made".into()))
    }

    /// The control plane's client, or (said to the actor) why there is none.
    async fn control_client(&mut self) -> Option<Arc<ControlClient>> {
        match self.ensure_clients() {
            Ok(clients) => Some(Arc::clone(&clients.control)),
            Err(e) => {
                let _ = self.to_actor.send(JobMsg::Registry(Err(e))).await;
                None
            }
        }
    }

    async fn read_registry(&mut self) -> Result<Vec<AgentRecord>, WatchError> {
        let client = Arc::clone(&self.ensure_clients()?.control);
        refresh_revocations(&client, &self.revocations).await;
        Ok(client.agents().await?)
    }

    /// Hosts deploy left running are read even before the registry lists them.
    async fn add_deployed(&mut self, path: PathBuf) {
        let read = tokio::task::spawn_blocking(move || Inventory::open(&path)?.deployments()).await;
        let Ok(Ok(deployments)) = read else {
            return;
        };
        let port = listen_port(&self.settings.agent_listen);
        let now = Instant::now();
        for d in deployments {
            if d.state != AgentState::Running {
                continue;
            }
            if let Ok(ip) = d.address.parse::<IpAddr>() {
                self.targets.entry(ip).or_insert(Target {
                    addr: SocketAddr::new(ip, port),
                    agent_id: None,
                    token: None,
                    backoff: Backoff::new(now),
                    in_flight: false,
                    registered: false,
                    deployed: true,
                });
            }
        }
    }

    /// Takes in a registry read: the targets follow it, the actor merges it.
    async fn registry(&mut self, result: Result<Vec<AgentRecord>, WatchError>) {
        if let Ok(records) = &result {
            let now = Instant::now();
            for target in self.targets.values_mut() {
                target.registered = false;
            }
            for record in records {
                let Some(ip) = primary_addr(record) else {
                    continue;
                };
                let addr = SocketAddr::new(ip, record.stats_port);
                let target = self.targets.entry(ip).or_insert(Target {
                    addr,
                    agent_id: None,
                    token: None,
                    backoff: Backoff::new(now),
                    in_flight: false,
                    registered: true,
                    deployed: false,
                });
                target.registered = true;
                if target.agent_id.as_deref() != Some(record.agent_id.as_str()) {
                    // A new registration: a new id, and a token naming it.
                    target.agent_id = Some(record.agent_id.clone());
                    target.token = None;
                }
                if target.addr != addr {
                    // It registered again on another port: read it there now.
                    target.addr = addr;
                    target.backoff = Backoff::new(now);
                }
            }
            // An agent gone from the registry (it registered again under
            // another address, say) is no longer read there.
            self.targets.retain(|_, t| t.registered || t.deployed);
        }
        let _ = self.to_actor.send(JobMsg::Registry(result)).await;
    }

    /// Starts a read of every due agent not already being read (with
    /// `focused_only`, of the host whose detail is open); returns how many.
    async fn dispatch(
        &mut self,
        limit: &Arc<Semaphore>,
        results: &mpsc::Sender<FetchResult>,
        focused_only: bool,
    ) -> u64 {
        let focused = *self.focus.borrow();
        let client = match self.ensure_clients() {
            Ok(clients) => clients.stats.clone(),
            Err(e) => {
                let _ = self.to_actor.send(JobMsg::Registry(Err(e))).await;
                return 0;
            }
        };
        let now = Instant::now();
        let ttl = self.link.operator_ttl;
        let mut started = 0;
        for (ip, target) in &mut self.targets {
            if target.in_flight
                || !target.backoff.is_due(now)
                || (focused_only && focused != Some(*ip))
            {
                continue;
            }
            // Not in the registry yet: no id to mint its token for.
            let Some(token) = target.stats_token(&self.keys, ttl, now) else {
                continue;
            };
            target.in_flight = true;
            started += 1;
            let (ip, addr, client) = (*ip, target.addr, client.clone());
            let (limit, results) = (Arc::clone(limit), results.clone());
            tokio::spawn(async move {
                let _permit = limit.acquire_owned().await;
                let result = client.fetch_with(addr, &token).await;
                let _ = results.send((ip, result)).await;
            });
        }
        started
    }

    /// Takes in one read.
    async fn result(&mut self, ip: IpAddr, result: Result<crate::model::AgentStats, PollError>) {
        let now = Instant::now();
        let Some(target) = self.targets.get_mut(&ip) else {
            return;
        };
        target.in_flight = false;
        let (result, retry_in) = match result {
            Ok(stats) => {
                target.backoff.succeeded(now);
                (Ok(Box::new(stats)), None)
            }
            Err(e) => {
                let wait =
                    target
                        .backoff
                        .failed(now, self.settings.interval, self.settings.max_backoff);
                (Err(e), Some(wait))
            }
        };
        let failures = target.backoff.failures();
        let _ = self
            .to_actor
            .send(JobMsg::Stats {
                addr: ip,
                result,
                failures,
                retry_in,
            })
            .await;
    }

    async fn round_done(&self, polled: u64) {
        let answering = self
            .targets
            .values()
            .filter(|t| t.backoff.failures() == 0)
            .count() as u64;
        let _ = self
            .to_actor
            .send(JobMsg::PollRound {
                polled,
                answering,
                agents: self.targets.len() as u64,
            })
            .await;
    }
}

#[cfg(test)]
#[path = "poller_tests.rs"]
mod tests;
