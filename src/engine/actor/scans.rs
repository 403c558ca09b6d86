//! Scan results and fingerprints merged into the fleet.

use std::net::IpAddr;
use std::sync::Arc;

use super::Actor;
use crate::engine::Event;
use crate::engine::state::HostView;
use crate::fingerprint::job::Fingerprint;
use crate::model::time::now_unix;
use crate::model::{HostScan, Reach, SshState};
use crate::ssh::FailureKind;

impl Actor {
    pub(super) fn scanned(&mut self, scan: HostScan) {
        let now = now_unix();
        let addr = scan.addr;
        match scan.reach {
            Reach::Alive => {
                let new = !self.hosts.contains_key(&addr);
                let host = self
                    .hosts
                    .entry(addr)
                    .or_insert_with(|| Arc::new(HostView::from_scan(scan.clone(), Some(now))));
                let host = Arc::make_mut(host);
                let name = scan.name.clone().or(host.scan.name.take());
                host.scan = HostScan {
                    name,
                    ..scan.clone()
                };
                host.last_seen = Some(now);
                let via = scan.via.map_or_else(String::new, |v| format!(" via {v}"));
                host.log(now, format!("answered a scan{via}"));
                self.dirty = true;
                self.emit(Event::HostFound { scan, new });
            }
            Reach::Silent => {
                if let Some(host) = self.hosts.get_mut(&addr) {
                    let host = Arc::make_mut(host);
                    let was_alive = host.scan.reach == Reach::Alive;
                    host.scan.reach = Reach::Silent;
                    host.scan.via = None;
                    host.scan.rtt_ms = None;
                    if was_alive {
                        host.log(now, "went silent");
                        self.emit(Event::HostSilent { addr });
                    }
                    self.dirty = true;
                }
            }
            Reach::Unknown => {}
        }
    }

    pub(super) fn fingerprinted(&mut self, result: Fingerprint) {
        let Ok(addr) = result.host.parse::<IpAddr>() else {
            return;
        };
        let now = now_unix();
        self.dirty = true;
        let host = self.host_mut(addr);
        host.ssh_port = Some(result.port);
        match (result.facts, result.failure) {
            (Some(facts), _) => {
                let summary = [
                    facts.hostname.as_deref(),
                    facts.os_pretty.as_deref(),
                    facts.arch.as_deref(),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" · ");
                host.facts = Some(facts);
                host.host_key = result.host_key;
                host.ssh = SshState::Ok;
                host.ssh_error = None;
                host.last_seen = Some(now);
                host.log(now, format!("fingerprinted: {summary}"));
                self.emit(Event::Facts { addr, summary });
            }
            (None, failure) => {
                let state = failure.map_or(SshState::Unreachable, ssh_state);
                let error = result.error.unwrap_or_else(|| state.as_str().to_owned());
                host.ssh = state;
                host.ssh_error = Some(error.clone());
                host.log(now, format!("fingerprint failed: {error}"));
                self.emit(Event::SshFailed { addr, state, error });
            }
        }
    }
}

/// The console's SSH state for a fingerprint failure.
pub(super) fn ssh_state(kind: FailureKind) -> SshState {
    match kind {
        FailureKind::AuthFailed => SshState::AuthFailed,
        FailureKind::HostKeyUnknown => SshState::HostKeyUnknown,
        FailureKind::HostKeyChanged | FailureKind::HostKeyRevoked => SshState::HostKeyChanged,
        // Logged in; only the command failed.
        FailureKind::CommandFailed => SshState::Ok,
        FailureKind::Unreachable | FailureKind::Timeout | FailureKind::Protocol => {
            SshState::Unreachable
        }
    }
}
