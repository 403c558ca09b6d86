//! Reading the inventory: the fleet as it was when the console last closed,
//! with the operator's tags.

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use super::{JobError, JobMsg, Reporter, blocking};
use crate::store::Inventory;

/// Runs of the audit trail read back into host events, at most.
const PAST_RUNS: usize = 200;

/// Reads hosts, facts and deployments, and hands them to the actor.
pub(in crate::engine) async fn load(path: PathBuf, report: Reporter) {
    let read = blocking("inventory reader", move || {
        let read = || {
            let inventory = Inventory::open(&path)?;
            Ok::<_, crate::store::StoreError>((
                inventory.hosts()?,
                inventory.all_facts()?,
                inventory.deployments()?,
                inventory.runs(None, PAST_RUNS)?,
                inventory.all_tags()?,
                inventory.unfinished_rollout()?.map(|r| {
                    r.hosts
                        .iter()
                        .filter(|h| h.state == crate::store::HostState::Pending)
                        .count()
                }),
            ))
        };
        read().map_err(|e| JobError::Inventory(e.to_string()))
    })
    .await;
    let result = match read {
        Ok((hosts, facts, deployments, runs, tags, unfinished)) => {
            let summary = format!("{} hosts from the inventory", hosts.len());
            report
                .send(JobMsg::Inventory {
                    hosts,
                    facts,
                    deployments,
                    runs,
                    tags,
                    unfinished,
                })
                .await;
            Ok(summary)
        }
        Err(e) => Err(e),
    };
    report.end(&CancellationToken::new(), result).await;
}
