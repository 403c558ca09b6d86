//! The revoke job: agents' identities revoked at the control plane, with
//! an operator token minted for the one job.

use std::net::IpAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{JobError, JobOutput, Reporter};
use crate::control::client::{ClientError, ControlClient};
use crate::engine::ControlLink;
use crate::engine::poller::OPERATOR;

/// Operator tokens minted for one revocation live this long.
const TOKEN_TTL: Duration = Duration::from_mins(1);
const TIMEOUT: Duration = Duration::from_secs(10);

/// Agents to revoke: those of these hosts (as the registry names them), and these agent ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevokeRequest {
    pub hosts: Vec<IpAddr>,
    /// Agent ids (`fleetctl agents` lists them).
    pub agents: Vec<String>,
}

impl RevokeRequest {
    #[must_use]
    pub fn hosts(hosts: &[IpAddr]) -> Self {
        Self {
            hosts: hosts.to_vec(),
            agents: Vec::new(),
        }
    }
}

/// Revokes `agents` (the host each belongs to when known, and its id).
pub(in crate::engine) async fn run(
    agents: Vec<(Option<IpAddr>, String)>,
    link: ControlLink,
    cancel: CancellationToken,
    report: Reporter,
) {
    let result = revoke(agents, link, &cancel, &report).await;
    report.end(&cancel, result).await;
}

async fn revoke(
    agents: Vec<(Option<IpAddr>, String)>,
    link: ControlLink,
    cancel: &CancellationToken,
    report: &Reporter,
) -> Result<String, JobError> {
    let keys = link.keys().await?;
    let token = keys.operator_token(OPERATOR, TOKEN_TTL)?;
    let client =
        ControlClient::with_replicas(&link.urls(), keys.ca_pem(), keys.pin(), token, TIMEOUT)
            .map_err(|e| JobError::Control(e.to_string()))?;
    let total = agents.len() as u64;
    let (mut done, mut failed) = (0, 0);
    for (addr, agent_id) in agents {
        if cancel.is_cancelled() {
            break;
        }
        let result = client
            .revoke(&agent_id)
            .await
            .map(Box::new)
            .map_err(|e| match e {
                // No such agent: the asker named one the registry never had.
                ClientError::Refused { status: 404, .. } => JobError::BadRequest(e.to_string()),
                other => JobError::Control(other.to_string()),
            });
        failed += u64::from(result.is_err());
        done += 1;
        report
            .output(JobOutput::Revoked {
                addr,
                agent_id,
                result,
            })
            .await;
        report.progress(done, total).await;
    }
    Ok(format!("{} revoked, {failed} failed", done - failed))
}
