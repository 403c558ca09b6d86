//! What the actor merges from the agents and the control plane: each
//! stats read (history, token, liveness) and each registry read
//! (registration as the control plane sees it).

use std::net::IpAddr;
use std::sync::Arc;

use tokio::time::Instant;

use super::Actor;
use crate::engine::Event;
use crate::engine::poller::{WatchError, primary_addr};
use crate::engine::state::Sample;
use crate::model::control::AgentRecord;
use crate::model::time::now_unix;
use crate::model::{AgentState, AgentStats, Reach, RegistrationState, TokenState};
use crate::poll::PollError;

impl Actor {
    pub(super) fn stats(&mut self, addr: IpAddr, result: Result<Box<AgentStats>, PollError>) {
        let Some(host) = self.hosts.get_mut(&addr) else {
            tracing::debug!(%addr, "stats for a host not in the fleet: ignored");
            return;
        };
        let host = Arc::make_mut(host);
        let now = now_unix();
        let from = host.agent;
        self.dirty = true;
        match result {
            Ok(stats) => {
                host.history.push(Sample {
                    at: Instant::now(),
                    cpu_pct: stats.cpu.total_pct as f32,
                    mem_pct: stats.memory.used_pct() as f32,
                });
                // The control plane's view wins when there is one.
                if host.registry.is_none() && host.registration != stats.registration.state {
                    host.log(now, format!("registration: {}", stats.registration.state));
                    host.registration = stats.registration.state;
                }
                if host.token != stats.token.state {
                    host.log(now, format!("token: {}", stats.token.state));
                    host.token = stats.token.state;
                }
                host.token_expires_at = stats
                    .token
                    .expires_at
                    .or_else(|| stats.token.seconds_left.map(|left| now + left));
                host.last_seen = Some(now);
                // It answered over the network: alive, whatever a scan said.
                host.scan.reach = Reach::Alive;
                host.stats_error = None;
                host.stats = Some(Arc::new(*stats));
                host.agent = AgentState::Running;
                host.deploy_step = None;
                host.note_timeline(now);
                if from != AgentState::Running {
                    host.log(now, "agent answering");
                    self.emit(Event::AgentChanged {
                        addr,
                        from,
                        to: AgentState::Running,
                        error: None,
                    });
                }
            }
            Err(error) => {
                let error = error.to_string();
                host.stats_error = Some(error.clone());
                if from != AgentState::Unreachable {
                    host.agent = AgentState::Unreachable;
                    host.log(now, format!("agent not answering: {error}"));
                    self.emit(Event::AgentChanged {
                        addr,
                        from,
                        to: AgentState::Unreachable,
                        error: Some(error),
                    });
                }
            }
        }
    }

    /// CPU and memory history from Prometheus, before what this console read.
    pub(super) fn history(
        &mut self,
        addr: IpAddr,
        points: &[crate::engine::prometheus::PromPoint],
    ) {
        let Some(host) = self.hosts.get_mut(&addr) else {
            return;
        };
        let now = Instant::now();
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let samples = points.iter().filter_map(|p| {
            let ago = std::time::Duration::try_from_secs_f64(now_unix - p.at).ok()?;
            Some(Sample {
                at: now.checked_sub(ago)?,
                cpu_pct: p.cpu_pct? as f32,
                mem_pct: p.mem_pct? as f32,
            })
        });
        Arc::make_mut(host).history.backfill(samples);
        self.dirty = true;
    }

    /// A registry read: each agent's registration, as the control plane sees it.
    pub(super) fn registry(&mut self, result: Result<Vec<AgentRecord>, WatchError>) {
        let records = match result {
            Ok(records) => records,
            Err(error) => {
                let error = error.to_string();
                if self.registry_error.as_ref() != Some(&error) {
                    tracing::warn!("cannot read the registry: {error}");
                    self.emit(Event::Error {
                        addr: None,
                        message: format!("cannot read the control plane's registry: {error}"),
                    });
                    self.registry_error = Some(error);
                }
                return;
            }
        };
        self.registry_error = None;
        let now = now_unix();
        let mut listed = std::collections::HashSet::new();
        for record in records {
            let Some(addr) = primary_addr(&record) else {
                continue;
            };
            listed.insert(addr);
            self.merge_record(addr, record, now);
        }
        for (addr, host) in &mut self.hosts {
            if !listed.contains(addr) && host.registry.is_some() {
                let host = Arc::make_mut(host);
                host.registry = None;
                host.log(now, "no longer in the registry");
            }
        }
        self.dirty = true;
    }

    pub(super) fn merge_record(&mut self, addr: IpAddr, record: AgentRecord, now: i64) {
        let host = self.host_mut(addr);
        if host.scan.name.is_none() {
            host.scan.name = Some(record.hostname.clone());
        }
        if host.registration != record.state {
            host.log(now, format!("registration: {}", record.state));
            host.registration = record.state;
        }
        // The agent's own token report is finer (renewing, expiring); until
        // it answers, the registry's times say what is known.
        if host.stats.is_none() || host.agent != AgentState::Running {
            host.token_expires_at = Some(record.identity_expires_at);
            host.token = match record.state {
                RegistrationState::Expired => TokenState::Expired,
                RegistrationState::Revoked => host.token,
                _ if record.identity_expires_at <= now => TokenState::Expired,
                _ => TokenState::Valid,
            };
        }
        host.registry = Some(record);
        host.note_timeline(now);
        self.dirty = true;
    }
}
