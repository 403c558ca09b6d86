//! The fleet as the engine knows it, and the read-only snapshot front ends
//! draw from.
//!
//! Each host lives behind an `Arc`: publishing a snapshot clones pointers,
//! not hosts, and the engine copies a host (`Arc::make_mut`) only when it
//! changes one that a snapshot still holds.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::model::control::AgentRecord;
use crate::model::tags::Tags;
use crate::model::{
    AgentState, AgentStats, HostFacts, HostScan, Reach, RegistrationState, SshState, TokenState,
};

use super::timeline::{Observed, Timeline};
use super::{JobId, JobKind};

/// How much CPU and memory history each host keeps.
pub const HISTORY_WINDOW: Duration = Duration::from_mins(5);
/// Events kept per host for the detail view.
pub const HOST_EVENTS: usize = 20;

/// One CPU and memory reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at: Instant,
    /// All CPUs, 0..=100.
    pub cpu_pct: f32,
    /// Memory in use, 0..=100.
    pub mem_pct: f32,
}

/// The last [`HISTORY_WINDOW`] of samples, oldest first (a ring buffer:
/// samples past the window fall off the front).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    samples: VecDeque<Sample>,
}

impl History {
    /// Adds a sample and drops those older than the window before it.
    pub fn push(&mut self, sample: Sample) {
        while self
            .samples
            .front()
            .is_some_and(|s| sample.at.saturating_duration_since(s.at) > HISTORY_WINDOW)
        {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// Puts `older` (oldest first) before the samples already held: what
    /// a history read from elsewhere (Prometheus) knew before this console
    /// started. Those not older than the first sample held, or past the
    /// window, are left out.
    pub fn backfill(&mut self, older: impl IntoIterator<Item = Sample>) {
        let first = self.samples.front().map(|s| s.at);
        let newest = self.samples.back().map(|s| s.at);
        let mut before: Vec<Sample> = older
            .into_iter()
            .filter(|s| first.is_none_or(|f| s.at < f))
            .collect();
        before.sort_by_key(|s| s.at);
        let end = newest.or_else(|| before.last().map(|s| s.at));
        before.retain(|s| end.is_none_or(|e| e.saturating_duration_since(s.at) <= HISTORY_WINDOW));
        for sample in before.into_iter().rev() {
            self.samples.push_front(sample);
        }
    }

    /// Samples, oldest first.
    #[must_use]
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Sample> + ExactSizeIterator {
        self.samples.iter()
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// Something that happened to one host, for its detail view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEvent {
    /// Unix seconds.
    pub at: i64,
    pub text: String,
}

/// Everything the console shows about one host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostView {
    pub addr: IpAddr,
    /// The latest discovery result (from a scan, or the inventory).
    pub scan: HostScan,
    pub facts: Option<HostFacts>,
    /// `SHA256:...` of the verified host key.
    pub host_key: Option<String>,
    pub ssh: SshState,
    /// Why SSH last failed.
    pub ssh_error: Option<String>,
    pub agent: AgentState,
    /// While deploying: the step under way.
    pub deploy_step: Option<String>,
    pub registration: RegistrationState,
    pub token: TokenState,
    /// Unix seconds when the identity token expires.
    pub token_expires_at: Option<i64>,
    /// The latest stats the agent served.
    pub stats: Option<Arc<AgentStats>>,
    /// Why the latest stats read failed, if it did.
    pub stats_error: Option<String>,
    /// Failed stats reads in a row, and the wait before the next one.
    pub poll_failures: u32,
    pub poll_retry_in: Option<Duration>,
    /// The control plane's record of this host's agent (its registration
    /// view wins over the agent's own).
    pub registry: Option<AgentRecord>,
    pub history: History,
    /// Token, certificate, registration and heartbeat marks over the same
    /// window as `history`.
    pub timeline: Timeline,
    /// Unix seconds when the host last answered anything.
    pub last_seen: Option<i64>,
    /// Newest last.
    pub events: VecDeque<HostEvent>,
    /// The operator's tags (`fleetctl tag`), from the inventory.
    pub tags: Tags,
    /// The SSH port fingerprinting last reached the host on.
    pub ssh_port: Option<u16>,
}

impl HostView {
    /// A host known only from discovery.
    #[must_use]
    pub fn from_scan(scan: HostScan, last_seen: Option<i64>) -> Self {
        Self {
            addr: scan.addr,
            scan,
            facts: None,
            host_key: None,
            ssh: SshState::Unknown,
            ssh_error: None,
            agent: AgentState::None,
            deploy_step: None,
            registration: RegistrationState::Pending,
            token: TokenState::None,
            token_expires_at: None,
            stats: None,
            stats_error: None,
            poll_failures: 0,
            poll_retry_in: None,
            registry: None,
            history: History::default(),
            timeline: Timeline::default(),
            last_seen,
            events: VecDeque::new(),
            tags: Tags::new(),
            ssh_port: None,
        }
    }

    /// The best name known: the host's own, else reverse DNS.
    #[must_use]
    pub fn hostname(&self) -> Option<&str> {
        self.facts
            .as_ref()
            .and_then(|f| f.hostname.as_deref())
            .or_else(|| self.stats.as_ref().map(|s| s.hostname.as_str()))
            .or(self.scan.name.as_deref())
    }

    /// A short OS name: `debian 12`, else the pretty name.
    #[must_use]
    pub fn os(&self) -> Option<String> {
        let facts = self.facts.as_ref()?;
        match (&facts.os_id, &facts.os_version) {
            (Some(id), Some(version)) => Some(format!("{id} {version}")),
            (Some(id), None) => Some(id.clone()),
            _ => facts.os_pretty.clone(),
        }
    }

    #[must_use]
    pub fn reach(&self) -> Reach {
        self.scan.reach
    }

    /// Seconds until the token expires, at `now` (Unix seconds).
    #[must_use]
    pub fn token_left(&self, now: i64) -> Option<i64> {
        self.token_expires_at.map(|at| at - now)
    }

    /// Brings the timeline up to date with what was just merged in.
    pub fn note_timeline(&mut self, now: i64) {
        self.timeline.observe(
            Observed {
                token: self.token,
                registration: self.registration,
                token_expires_at: self.token_expires_at,
                stats: self.stats.as_deref(),
                registry: self.registry.as_ref(),
            },
            now,
        );
    }

    /// Records an event for the detail view, keeping the newest few.
    pub fn log(&mut self, at: i64, text: impl Into<String>) {
        if self.events.len() == HOST_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(HostEvent {
            at,
            text: text.into(),
        });
    }
}

/// A running job, for progress gauges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobView {
    pub id: JobId,
    pub kind: JobKind,
    /// What it works on, e.g. the targets of a scan.
    pub label: String,
    pub done: u64,
    pub total: u64,
    /// Unix seconds.
    pub started_at: i64,
    /// A rollout in batches: the batch under way and how many there are.
    pub batch: Option<(usize, usize)>,
    /// A rollout's finished batches: hosts ok and failed in each.
    pub batch_results: Vec<(usize, usize)>,
    /// A rollout held by the operator: no new host starts.
    pub paused: bool,
}

/// The fleet at one moment, read-only. Cheap to clone (it is shared).
#[derive(Debug, Clone)]
pub struct FleetSnapshot {
    /// In address order.
    pub hosts: Vec<Arc<HostView>>,
    pub jobs: Vec<JobView>,
    /// Counts up with each snapshot the engine publishes.
    pub generation: u64,
    /// When it was taken: Unix seconds (for "ago" and time left) and the
    /// monotonic instant (for history, which is kept in instants).
    pub now_unix: i64,
    pub taken_at: Instant,
}

impl FleetSnapshot {
    /// The snapshot before the engine has published anything.
    #[must_use]
    pub fn empty() -> Self {
        Self {
            hosts: Vec::new(),
            jobs: Vec::new(),
            generation: 0,
            now_unix: crate::model::time::now_unix(),
            taken_at: Instant::now(),
        }
    }

    /// The host with this address.
    #[must_use]
    pub fn host(&self, addr: IpAddr) -> Option<&Arc<HostView>> {
        self.hosts
            .binary_search_by_key(&addr, |h| h.addr)
            .ok()
            .map(|i| &self.hosts[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn history_keeps_five_minutes() {
        let mut h = History::default();
        let start = Instant::now();
        for i in 0..200u32 {
            h.push(Sample {
                at: start + Duration::from_secs(u64::from(i) * 2),
                cpu_pct: i as f32,
                mem_pct: 0.0,
            });
        }
        // 300 s / 2 s apart = 150 intervals: 151 samples inside the window.
        assert_eq!(h.len(), 151);
        assert!((h.iter().next().unwrap().cpu_pct - 49.0).abs() < f32::EPSILON);
        assert!((h.iter().last().unwrap().cpu_pct - 199.0).abs() < f32::EPSILON);
    }

    #[test]
    fn host_events_keep_the_newest() {
        let mut host = HostView::from_scan(
            HostScan::new("127.6.0.1".parse().unwrap(), Reach::Alive),
            None,
        );
        for i in 0..30 {
            host.log(i, format!("e{i}"));
        }
        assert_eq!(host.events.len(), HOST_EVENTS);
        assert_eq!(host.events.front().unwrap().text, "e10");
    }

    #[tokio::test(start_paused = true)]
    async fn history_from_elsewhere_goes_before_what_was_read() {
        let sample = |at: Instant, cpu: f32| Sample {
            at,
            cpu_pct: cpu,
            mem_pct: 50.0,
        };
        let start = Instant::now();
        tokio::time::advance(Duration::from_mins(10)).await;
        let now = Instant::now();
        let mut history = History::default();
        history.push(sample(now, 9.0));
        history.backfill([
            sample(now - Duration::from_secs(2), 2.0),
            sample(start, 0.0),
            sample(now - Duration::from_secs(4), 1.0),
            sample(now + Duration::from_secs(1), 99.0),
        ]);
        let cpu: Vec<f32> = history.iter().map(|s| s.cpu_pct).collect();
        assert_eq!(
            cpu,
            [1.0, 2.0, 9.0],
            "oldest first; past the window and newer than what was read left out"
        );
        let mut empty = History::default();
        empty.backfill([sample(now - Duration::from_secs(2), 2.0), sample(now, 3.0)]);
        assert_eq!(empty.len(), 2);
    }
}
