//! What the actor merges in besides scans and fingerprints: stored facts
//! and deployments (at start), the control plane's registry, deploy
//! events and revocations.

use std::net::IpAddr;
use std::sync::Arc;

use super::Actor;
use crate::deploy::{Event as DeployEvent, Outcome};
use crate::engine::state::HostView;
use crate::engine::{Event, JobError};
use crate::model::control::AgentRecord;
use crate::model::tags::Tags;
use crate::model::time::now_unix;
use crate::model::{AgentState, HostScan, Reach, SshState};
use crate::store::{Deployment, StoredFacts};

impl Actor {
    /// The host at `addr`, added (known only by address) if new.
    pub(super) fn host_mut(&mut self, addr: IpAddr) -> &mut HostView {
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
            host.ssh_port = host.ssh_port.or(Some(f.port));
            if host.facts.is_none() {
                host.facts = f.facts;
                host.host_key = f.host_key;
            }
            if host.ssh == SshState::Unknown {
                host.ssh = match f.failure {
                    None => SshState::Ok,
                    Some(kind) => super::scans::ssh_state(kind),
                };
                host.ssh_error = f.error;
            }
        }
        self.dirty = true;
    }

    /// The operator's tags, as the inventory holds them.
    pub(super) fn tags(&mut self, stored: std::collections::BTreeMap<IpAddr, Tags>) {
        for (addr, tags) in stored {
            self.host_mut(addr).tags = tags;
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

    /// One event of a deploy or undeploy job.
    pub(super) fn deploy_event(&mut self, addr: IpAddr, event: DeployEvent) {
        let now = now_unix();
        let host = self.host_mut(addr);
        let mut emitted = None;
        match event {
            DeployEvent::Start { .. }
            | DeployEvent::Batch { .. }
            | DeployEvent::BatchDone { .. } => {}
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
                    Outcome::Deployed {
                        build, replaced, ..
                    } => {
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
    pub(super) fn revoked(&mut self, addr: IpAddr, result: Result<AgentRecord, JobError>) {
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
