//! After start: proof that the agent answering is the build just started,
//! and that the control plane lists it as registered.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::conn::{Failure, Host};
use super::files;
use super::host::Deployer;
use super::layout::Layout;
use super::rollout::Progress;
use super::{Step, scripts};
use crate::model::RegistrationState;
use crate::model::control::AgentRecord;

impl Deployer {
    /// Waits for `/healthz`, then for the registry to list the agent as
    /// registered since `started_at`.
    pub(super) async fn confirm(
        &self,
        host: &Host<'_>,
        layout: &Layout,
        systemd: bool,
        started_at: i64,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<(), Failure> {
        progress.step(Step::Healthy);
        let address = host.target.hostname.as_str();
        let port = files::listen_port(&self.options.listen);
        let healthy = self
            .wait(cancel, self.options.healthy_timeout, || async {
                self.control
                    .healthz(address, port)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await;
        if let Err(last) = healthy {
            return Err(self
                .with_log(
                    host,
                    layout,
                    systemd,
                    Step::Healthy,
                    format!("the agent did not answer /healthz: {last}"),
                )
                .await);
        }

        progress.step(Step::Registered);
        let registered = self
            .wait(cancel, self.options.registered_timeout, || async {
                let agents = self.control.agents().await.map_err(|e| e.to_string())?;
                match newest_for(&agents, address) {
                    Some(a)
                        if a.state == RegistrationState::Registered
                            && (a.registered_at >= started_at - 1
                                || a.last_heartbeat_at.is_some_and(|t| t >= started_at - 1)) =>
                    {
                        Ok(())
                    }
                    Some(a) => Err(format!("the registry lists it as {}", a.state)),
                    None => Err(format!("the registry has no agent for {address}")),
                }
            })
            .await;
        if let Err(last) = registered {
            return Err(self
                .with_log(
                    host,
                    layout,
                    systemd,
                    Step::Registered,
                    format!(
                        "the agent did not show as registered at {}: {last}",
                        self.control.url()
                    ),
                )
                .await);
        }
        // An agent that could not bind its port exits, while an older one
        // that kept it goes on answering and heartbeating.
        let sha = self.artifact.sha256.as_str();
        if let Err(failure) = host
            .sh(Step::Registered, &scripts::runs_build(layout, sha, systemd))
            .await
        {
            return Err(self
                .with_log(host, layout, systemd, Step::Registered, failure.reason)
                .await);
        }
        Ok(())
    }

    /// Polls `check` until it passes, the time is up, or the run is cancelled;
    /// the error is the last reason it gave.
    async fn wait<F, Fut>(
        &self,
        cancel: &CancellationToken,
        limit: Duration,
        check: F,
    ) -> Result<(), String>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let deadline = tokio::time::Instant::now() + limit;
        // Short at first: a healthy agent registers within a second.
        let mut pause = Duration::from_millis(50);
        loop {
            let last = match check().await {
                Ok(()) => return Ok(()),
                Err(reason) => reason,
            };
            if tokio::time::Instant::now() + pause > deadline {
                return Err(format!("after {}s: {last}", limit.as_secs()));
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = cancel.cancelled() => return Err(format!("interrupted: {last}")),
            }
            pause = (pause * 3 / 2).min(Duration::from_millis(500));
        }
    }

    pub(super) async fn is_healthy_and_registered(&self, address: &str) -> bool {
        let port = files::listen_port(&self.options.listen);
        if self.control.healthz(address, port).await.is_err() {
            return false;
        }
        self.control.agents().await.is_ok_and(|agents| {
            newest_for(&agents, address).is_some_and(|a| a.state == RegistrationState::Registered)
        })
    }
}

/// The newest registry entry for the agent reached at `address`.
fn newest_for<'a>(agents: &'a [AgentRecord], address: &str) -> Option<&'a AgentRecord> {
    agents
        .iter()
        .filter(|a| a.hostname == address || a.addresses.iter().any(|x| x == address))
        .max_by_key(|a| a.registered_at)
}
