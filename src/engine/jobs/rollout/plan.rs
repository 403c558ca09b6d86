//! A deploy's plan: which hosts go in which batch, under which failure
//! rules; made fresh from the request, or taken from the inventory to
//! resume a rollout that was cut short. The plan and each host's progress
//! are written to the inventory as the rollout goes.

use std::path::PathBuf;

use super::DeployRequest;
use crate::deploy::batches::Amount;
use crate::deploy::{Event, Outcome, RolloutOptions};
use crate::engine::jobs::{JobError, blocking};
use crate::store::{HostState, Inventory, RolloutHost, StoredRollout};

/// What this run deploys, and how.
#[derive(Debug)]
pub(in crate::engine) struct Planned {
    /// In order.
    pub hosts: Vec<String>,
    /// Concurrency is the caller's to set.
    pub options: RolloutOptions,
    /// Each host's batch in the whole plan (0 is the canaries when there are some).
    batch_of: Vec<usize>,
    /// A resumed rollout: its id, and each host's place in it.
    resumed: Option<(i64, Vec<usize>)>,
}

/// The rollout as the inventory holds it: host `i` of this run is host
/// `idx[i]` of rollout `id`.
#[derive(Debug, Clone)]
pub(in crate::engine) struct Recorded {
    pub id: i64,
    idx: Vec<usize>,
}

impl Recorded {
    /// Keeps the host's state in step with a Done event.
    pub fn note(&self, inventory: &mut Inventory, event: &Event) {
        let Event::Done { index, outcome, .. } = event else {
            return;
        };
        let state = match outcome {
            Outcome::Deployed { .. } | Outcome::UpToDate { .. } => HostState::Done,
            Outcome::Failed { .. } => HostState::Failed,
            // Never started: still to do if the rollout is resumed.
            _ => return,
        };
        let Some(&idx) = self.idx.get(*index) else {
            return;
        };
        if let Err(e) = inventory.rollout_host(self.id, idx, state) {
            tracing::warn!("cannot update the inventory: {e}");
        }
    }
}

fn inventory_error(e: impl std::fmt::Display) -> JobError {
    JobError::Inventory(format!("the inventory: {e}"))
}

/// How many of `total` may fail: a share rounds down (`10%` of 6 is 0).
fn failures_of(amount: Amount, total: usize) -> usize {
    match amount {
        Amount::Count(n) => n,
        Amount::Percent(p) => total * usize::from(p) / 100,
    }
}

/// The plan for `request`: fresh, or (with `resume`) the inventory's
/// newest unfinished rollout, less the hosts it finished.
pub(in crate::engine) async fn plan(
    request: &DeployRequest,
    inventory: Option<PathBuf>,
) -> Result<Planned, JobError> {
    if request.resume {
        let path = inventory.ok_or_else(|| {
            JobError::BadRequest("--resume: there is no inventory to resume from".into())
        })?;
        let stored = blocking("inventory reader", move || {
            Inventory::open(&path)
                .and_then(|i| i.unfinished_rollout())
                .map_err(inventory_error)
        })
        .await?
        .ok_or_else(|| {
            JobError::BadRequest(
                "--resume: no unfinished rollout in the inventory (the last one finished)".into(),
            )
        })?;
        return Ok(resumed(&stored));
    }
    let total = request.hosts.len();
    let canary = request.canary.min(total);
    let batches = request
        .batch
        .as_ref()
        .map(|spec| spec.sizes(total - canary))
        .unwrap_or_default();
    let mut batch_of = vec![0; canary];
    let first = usize::from(canary > 0);
    for (k, size) in batches.iter().enumerate() {
        batch_of.extend(std::iter::repeat_n(first + k, *size));
    }
    batch_of.resize(total, first + batches.len());
    Ok(Planned {
        hosts: request.hosts.clone(),
        options: RolloutOptions {
            canary,
            concurrency: 1,
            max_failures: request.max_failures.map(|m| failures_of(m, total)),
            batches,
            stop_on_failure: (request.batch.is_some() || request.gate)
                && !request.continue_on_failure,
            gate: request.gate,
            failed_before: 0,
        },
        batch_of,
        resumed: None,
    })
}

/// What is left of `stored`: its pending hosts in their batches, its rules,
/// and the failures it had.
fn resumed(stored: &StoredRollout) -> Planned {
    let left: Vec<(usize, &RolloutHost)> = stored
        .hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| h.state == HostState::Pending)
        .collect();
    let canary = if stored.canary {
        left.iter().filter(|(_, h)| h.batch == 0).count()
    } else {
        0
    };
    let mut batches: Vec<usize> = Vec::new();
    let mut last = None;
    for (_, h) in left.iter().skip(canary) {
        if last == Some(h.batch) {
            if let Some(n) = batches.last_mut() {
                *n += 1;
            }
        } else {
            batches.push(1);
            last = Some(h.batch);
        }
    }
    Planned {
        hosts: left.iter().map(|(_, h)| h.host.clone()).collect(),
        options: RolloutOptions {
            canary,
            concurrency: 1,
            max_failures: stored.max_failures,
            batches,
            stop_on_failure: stored.stop_on_failure,
            gate: stored.gate,
            failed_before: stored
                .hosts
                .iter()
                .filter(|h| h.state == HostState::Failed)
                .count(),
        },
        batch_of: left.iter().map(|(_, h)| h.batch).collect(),
        resumed: Some((stored.id, left.iter().map(|(i, _)| *i).collect())),
    }
}

impl Planned {
    /// Writes the plan to the inventory (a resumed one is marked running
    /// again) and returns where it is kept.
    pub async fn record(&self, path: PathBuf) -> Result<Recorded, JobError> {
        if let Some((id, idx)) = &self.resumed {
            let id = *id;
            blocking("inventory writer", move || {
                Inventory::open(&path)
                    .and_then(|mut i| i.end_rollout(id, "running"))
                    .map_err(inventory_error)
            })
            .await?;
            return Ok(Recorded {
                id,
                idx: idx.clone(),
            });
        }
        let plan = StoredRollout {
            id: 0,
            started_at: 0,
            state: String::new(),
            canary: self.options.canary > 0,
            max_failures: self.options.max_failures,
            stop_on_failure: self.options.stop_on_failure,
            gate: self.options.gate,
            hosts: self
                .hosts
                .iter()
                .zip(&self.batch_of)
                .map(|(host, batch)| RolloutHost {
                    host: host.clone(),
                    batch: *batch,
                    state: HostState::Pending,
                })
                .collect(),
        };
        let count = self.hosts.len();
        let id = blocking("inventory writer", move || {
            Inventory::open(&path)
                .and_then(|mut i| i.begin_rollout(&plan))
                .map_err(inventory_error)
        })
        .await?;
        Ok(Recorded {
            id,
            idx: (0..count).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::batches::BatchSpec;

    fn request(hosts: usize, canary: usize, batch: &str) -> DeployRequest {
        let names: Vec<String> = (0..hosts).map(|i| format!("h{i}")).collect();
        DeployRequest {
            canary,
            batch: Some(BatchSpec::parse(batch).unwrap()),
            ..DeployRequest::hosts(&names)
        }
    }

    #[tokio::test]
    async fn a_fresh_plan_numbers_batches_after_the_canaries() {
        let p = plan(&request(6, 0, "1,2,50%"), None).await.unwrap();
        assert_eq!(p.options.batches, [1, 2, 3]);
        assert_eq!(p.batch_of, [0, 1, 1, 2, 2, 2]);
        assert!(p.options.stop_on_failure);
        let p = plan(&request(7, 2, "2"), None).await.unwrap();
        assert_eq!(p.options.canary, 2);
        assert_eq!(p.batch_of, [0, 0, 1, 1, 2, 2, 3]);
        let mut r = request(6, 0, "3");
        r.continue_on_failure = true;
        r.max_failures = Some(Amount::Percent(50));
        let p = plan(&r, None).await.unwrap();
        assert!(!p.options.stop_on_failure);
        assert_eq!(p.options.max_failures, Some(3));
    }

    #[test]
    fn a_resumed_plan_keeps_what_is_left_in_its_batches() {
        let h = |name: &str, batch, state| RolloutHost {
            host: name.into(),
            batch,
            state,
        };
        let stored = StoredRollout {
            id: 7,
            started_at: 0,
            state: "running".into(),
            canary: true,
            max_failures: Some(1),
            stop_on_failure: false,
            gate: true,
            hosts: vec![
                h("a", 0, HostState::Done),
                h("b", 0, HostState::Pending),
                h("c", 1, HostState::Failed),
                h("d", 1, HostState::Pending),
                h("e", 2, HostState::Pending),
                h("f", 2, HostState::Pending),
            ],
        };
        let p = resumed(&stored);
        assert_eq!(p.hosts, ["b", "d", "e", "f"]);
        assert_eq!(p.options.canary, 1);
        assert_eq!(p.options.batches, [1, 2]);
        assert_eq!(p.options.failed_before, 1);
        assert!(p.options.gate);
        assert_eq!(p.resumed, Some((7, vec![1, 3, 4, 5])));
    }
}
