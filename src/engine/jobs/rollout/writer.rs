//! The inventory kept in step with a rollout, on a blocking thread of its
//! own: each host's deployment, and the rollout's progress for `--resume`.

use std::path::PathBuf;

use tokio::sync::{mpsc, oneshot};

use super::RECORD_QUEUE;
use super::plan::Recorded;
use crate::deploy::{Event, Outcome};
use crate::engine::jobs::{JobError, blocking};
use crate::model::AgentState;
use crate::ssh::SshTarget;
use crate::store::{Deployment, Inventory};

/// Keeps the inventory's deployments table in step with a rollout, on a
/// blocking thread of its own.
pub(super) struct Writer {
    /// Each event, and for a host's last one who waits until it is written.
    events: mpsc::Sender<(Event, Option<oneshot::Sender<()>>)>,
    /// How the rollout ended (interrupted or not), said before the last event.
    ended: oneshot::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    pub async fn start(
        path: PathBuf,
        targets: Vec<SshTarget>,
        build: Option<String>,
        rollout: Option<Recorded>,
    ) -> Result<Self, JobError> {
        let mut inventory = blocking("inventory writer", move || {
            Inventory::open(&path).map_err(|e| {
                JobError::Inventory(format!(
                    "cannot record deployments in the inventory (is --data-dir writable?): {e}"
                ))
            })
        })
        .await?;
        let (events, mut rx) = mpsc::channel::<(Event, Option<oneshot::Sender<()>>)>(RECORD_QUEUE);
        let (ended, mut how) = oneshot::channel::<bool>();
        let task = tokio::task::spawn_blocking(move || {
            while let Some((event, recorded)) = rx.blocking_recv() {
                record(&mut inventory, &targets, build.as_deref(), &event);
                if let Some(rollout) = &rollout {
                    rollout.note(&mut inventory, &event);
                }
                if let Some(recorded) = recorded {
                    let _ = recorded.send(());
                }
            }
            if let (Some(rollout), Ok(interrupted)) = (&rollout, how.try_recv()) {
                let state = if interrupted {
                    "interrupted"
                } else {
                    "finished"
                };
                if let Err(e) = inventory.end_rollout(rollout.id, state) {
                    tracing::warn!("cannot update the inventory: {e}");
                }
            }
        });
        Ok(Self {
            events,
            ended,
            task,
        })
    }

    /// Records `event`; a host's Done is written before this returns.
    pub async fn record(&self, event: Event) {
        if matches!(event, Event::Done { .. }) {
            let (recorded, written) = oneshot::channel();
            if self.events.send((event, Some(recorded))).await.is_ok() {
                let _ = written.await;
            }
        } else {
            let _ = self.events.send((event, None)).await;
        }
    }

    pub async fn finish(self, interrupted: bool) -> Result<(), JobError> {
        let _ = self.ended.send(interrupted);
        drop(self.events);
        self.task
            .await
            .map_err(|e| JobError::stopped("inventory writer", &e))
    }
}

/// Keeps the inventory's deployments table in step with one rollout event
/// (`targets` in the rollout's order, `build` the sha256 pushed). Undeploy
/// passes `None` for the build: a host it cleared is forgotten.
fn record(inventory: &mut Inventory, targets: &[SshTarget], build: Option<&str>, event: &Event) {
    let Some(build) = build else {
        if let Event::Done {
            index,
            outcome: Outcome::Removed | Outcome::NotInstalled,
            ..
        } = event
        {
            let t = &targets[*index];
            if let Err(e) = inventory.forget_deployment(&t.hostname, t.port) {
                tracing::warn!("cannot update the inventory: {e}");
            }
        }
        return;
    };
    let (index, state, step, error) = match event {
        Event::Step { index, step, .. } => {
            (*index, AgentState::Deploying, Some(step.as_str()), None)
        }
        Event::Done { index, outcome, .. } => match outcome {
            Outcome::Deployed { .. } | Outcome::UpToDate { .. } => {
                (*index, AgentState::Running, Some("registered"), None)
            }
            Outcome::Failed { step, reason, .. } => (
                *index,
                AgentState::Failed,
                Some(step.as_str()),
                Some(reason.clone()),
            ),
            _ => return,
        },
        _ => return,
    };
    let t = &targets[index];
    let d = Deployment {
        address: t.hostname.clone(),
        port: t.port,
        host: t.alias.clone(),
        build: Some(build.to_string()),
        state,
        step: step.map(str::to_string),
        error,
        updated_at: 0,
    };
    if let Err(e) = inventory.record_deployment(&d) {
        tracing::warn!("cannot update the inventory: {e}");
    }
}
