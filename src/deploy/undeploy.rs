//! `fleetctl undeploy`: stop the agent and remove everything deploy wrote.

use std::time::Duration;

use super::conn::{Failure, Host, key_values, layout_for};
use super::layout::InstallScope;
use super::rollout::Progress;
use super::{Outcome, Step, scripts};
use crate::ssh::{Connector, SshTarget};

/// Stops the agent and removes everything deploy wrote, in the layout
/// `scope` gives the host (the scope it was deployed with).
pub async fn undeploy(
    connector: &Connector,
    target: &SshTarget,
    progress: &Progress,
    step_timeout: Duration,
    scope: InstallScope,
) -> Outcome {
    progress.step(Step::Connect);
    let session = match connector.connect(target).await {
        Ok(s) => s,
        Err(e) => {
            return Outcome::Failed {
                step: Step::Connect,
                reason: e.to_string(),
                rolled_back: false,
            };
        }
    };
    let host = Host::new(session, target, step_timeout);
    let result = async {
        progress.step(Step::Inspect);
        let facts = host.sh(Step::Inspect, scripts::FACTS).await?;
        let facts = key_values(&facts);
        let (layout, systemd) = layout_for(&target.display(), &facts, scope)?;
        let present = host.sh(Step::Inspect, &scripts::present(&layout)).await?;
        if present.trim().is_empty() {
            return Ok(Outcome::NotInstalled);
        }
        progress.step(Step::Remove);
        host.sh(Step::Remove, &scripts::remove(&layout, systemd, None))
            .await?;
        Ok(Outcome::Removed)
    }
    .await;
    host.session.close().await;
    result.unwrap_or_else(|f: Failure| Outcome::Failed {
        step: f.step,
        reason: f.reason,
        rolled_back: false,
    })
}
