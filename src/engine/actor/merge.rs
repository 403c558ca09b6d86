//! What the actor merges in besides scans and fingerprints: stored facts
//! and deployments (at start), the control plane's registry, deploy
//! events and revocations.

use std::net::IpAddr;
use std::sync::Arc;

use super::Actor;
use crate::deploy::{Event as DeployEvent, Outcome};
use crate::engine::Event;
use crate::engine::poller::primary_addr;
use crate::engine::state::HostView;
use crate::model::control::AgentRecord;
use crate::model::{AgentState, HostScan, Reach, RegistrationState, SshState, TokenState};
use crate::store::{Deployment, StoredFacts, now_unix};

impl Actor {
    /// The host at `addr`, added (known only by address) if new.
    fn host_mut(&mut self, addr: IpAddr) -> &mut HostView {
        let host = self.hosts.entry(addr).or_insert_with(|| {
            Arc::new(HostView::from_scan(
                HostScan::new(addr, Reach::Unknown),
                None,
            ))
        });
        Arc::make_mut(host)
    }

    /// Facts fingerprinting stored, so a reopened console shows them.
    pub(super) fn stored_facts(&mut self, stored: Vec<StoredFacts>) {
        for f in stored {
            let Ok(addr) = f.address.parse::<IpAddr>() else {
                continue;
            };
            let host = self.host_mut(addr);
            if host.facts.is_none() {
                host.facts = f.facts;
                host.host_key = f.host_key;
            }
            if host.ssh == SshState::Unknown {
                host.ssh = match f.failure {
                    None => SshState::Ok,
                    Some(kind) => super::ssh_state(kind),
                };
                host.ssh_error = f.error;
            }
        }
        self.dirty = true;
    }

    /// What deploy last did per host.
    pub(super) fn deployments(&mut self, stored: Vec<Deployment>) {
        for d in stored {
            let Ok(addr) = d.address.parse::<IpAddr>() else {
                continue;
            };
            let host = self.host_mut(addr);
            if host.agent == AgentState::None {
                host.agent = d.state;
                host.deploy_step = match d.state {
                    AgentState::Failed => d.step.map(|s| format!("{s} failed")),
                    _ => None,
                };
            }
        }
        self.dirty = true;
    }

    /// A registry read: each agent's registration, as the control plane sees it.
    pub(super) fn registry(&mut self, result: Result<Vec<AgentRecord>, String>) {
        let records = match result {
            Ok(records) => records,
            Err(error) => {
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

    fn merge_record(&mut self, addr: IpAddr, record: AgentRecord, now: i64) {
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
        self.dirty = true;
    }

    /// One event of a deploy or undeploy job.
    pub(super) fn deploy_event(&mut self, addr: IpAddr, event: DeployEvent) {
        let now = now_unix();
        let host = self.host_mut(addr);
        let mut emitted = None;
        match event {
            DeployEvent::Start { .. } => {}
            DeployEvent::Step { step, .. } => {
                host.agent = AgentState::Deploying;
                host.deploy_step = Some(step.to_string());
                emitted = Some(Event::DeployStep {
                    addr,
                    step: step.to_string(),
                });
            }
            DeployEvent::Note { message, .. } => host.log(now, message),
            DeployEvent::Done { outcome, .. } => {
                host.deploy_step = None;
                match outcome {
                    Outcome::Deployed { build, replaced } => {
                        host.agent = AgentState::Running;
                        let what = if replaced.is_some() {
                            "replaced"
                        } else {
                            "deployed"
                        };
                        host.log(now, format!("agent {what}: build {}", short(&build)));
                    }
                    Outcome::UpToDate { build } => {
                        host.agent = AgentState::Running;
                        host.log(now, format!("agent up to date: build {}", short(&build)));
                    }
                    Outcome::Removed | Outcome::NotInstalled => {
                        host.agent = AgentState::None;
                        host.stats = None;
                        host.log(now, "agent removed");
                    }
                    Outcome::Failed { step, reason, .. } => {
                        host.agent = AgentState::Failed;
                        host.deploy_step = Some(format!("{step} failed"));
                        host.log(now, format!("failed at {step}: {reason}"));
                        emitted = Some(Event::Error {
                            addr: Some(addr),
                            message: format!("failed at {step}: {reason}"),
                        });
                    }
                    Outcome::Skipped { reason } => host.log(now, format!("skipped: {reason}")),
                }
            }
        }
        self.dirty = true;
        if let Some(event) = emitted {
            self.emit(event);
        }
    }

    /// A revocation's answer: the record it returns is the new registry view.
    pub(super) fn revoked(&mut self, addr: IpAddr, result: Result<AgentRecord, String>) {
        let now = now_unix();
        match result {
            Ok(record) => {
                self.merge_record(addr, record, now);
                self.host_mut(addr).log(now, "agent revoked");
            }
            Err(error) => {
                self.host_mut(addr)
                    .log(now, format!("revoke failed: {error}"));
                self.emit(Event::Error {
                    addr: Some(addr),
                    message: format!("revoke failed: {error}"),
                });
            }
        }
        self.dirty = true;
    }
}

fn short(build: &str) -> &str {
    build.get(..12).unwrap_or(build)
}
