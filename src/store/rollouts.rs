//! Rollouts in progress: the plan a deploy made (its hosts, their batches,
//! its failure rules) and how far it got, written as it goes, so a rollout
//! that a crash, a kill or a quit cut short is resumed rather than redone.

use rusqlite::{OptionalExtension, params};

use super::{Inventory, StoreError};
use crate::model::time::now_unix;

/// Where one host of a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostState {
    /// Not finished: never started, or under way when the rollout stopped.
    Pending,
    /// Deployed, or found up to date.
    Done,
    Failed,
}

impl HostState {
    fn as_str(self) -> &'static str {
        match self {
            HostState::Pending => "pending",
            HostState::Done => "done",
            HostState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "done" => HostState::Done,
            "failed" => HostState::Failed,
            _ => HostState::Pending,
        }
    }
}

/// One host of a rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutHost {
    /// As the operator named it (what SSH resolves).
    pub host: String,
    /// 0-based batch in the plan; with `canary` set, batch 0 is the canaries.
    pub batch: usize,
    pub state: HostState,
}

/// A rollout as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRollout {
    pub id: i64,
    /// Unix seconds.
    pub started_at: i64,
    /// `running`, `interrupted` (both resumable) or `finished`.
    pub state: String,
    pub canary: bool,
    pub max_failures: Option<usize>,
    pub stop_on_failure: bool,
    pub gate: bool,
    /// In the plan's order.
    pub hosts: Vec<RolloutHost>,
}

impl Inventory {
    /// Records a new rollout's plan (hosts pending) and returns its id.
    pub fn begin_rollout(&mut self, plan: &StoredRollout) -> Result<i64, StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO rollouts (started_at, state, canary, max_failures, stop_on_failure, gate)
             VALUES (?1, 'running', ?2, ?3, ?4, ?5)",
            params![
                now_unix(),
                plan.canary,
                plan.max_failures
                    .map(|m| i64::try_from(m).unwrap_or(i64::MAX)),
                plan.stop_on_failure,
                plan.gate
            ],
        )?;
        let id = tx.last_insert_rowid();
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO rollout_hosts (rollout, idx, host, batch, state)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (i, h) in plan.hosts.iter().enumerate() {
                insert.execute(params![
                    id,
                    i64::try_from(i).unwrap_or(i64::MAX),
                    h.host,
                    i64::try_from(h.batch).unwrap_or(i64::MAX),
                    h.state.as_str()
                ])?;
            }
        }
        tx.commit()?;
        Ok(id)
    }

    /// Records where host `idx` of rollout `id` stands.
    pub fn rollout_host(
        &mut self,
        id: i64,
        idx: usize,
        state: HostState,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE rollout_hosts SET state = ?3 WHERE rollout = ?1 AND idx = ?2",
            params![id, i64::try_from(idx).unwrap_or(i64::MAX), state.as_str()],
        )?;
        Ok(())
    }

    /// Records how rollout `id` ended: `finished` (nothing to resume), or
    /// `interrupted`, or `running` again when it is resumed.
    pub fn end_rollout(&mut self, id: i64, state: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE rollouts SET state = ?2 WHERE id = ?1",
            params![id, state],
        )?;
        Ok(())
    }

    /// The newest rollout that did not finish (interrupted, or still marked
    /// running because its process was killed), if any.
    pub fn unfinished_rollout(&self) -> Result<Option<StoredRollout>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT id, started_at, state, canary, max_failures, stop_on_failure, gate
                 FROM rollouts WHERE state != 'finished' ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok(StoredRollout {
                        id: r.get(0)?,
                        started_at: r.get(1)?,
                        state: r.get(2)?,
                        canary: r.get(3)?,
                        max_failures: r
                            .get::<_, Option<i64>>(4)?
                            .map(|m| usize::try_from(m).unwrap_or(0)),
                        stop_on_failure: r.get(5)?,
                        gate: r.get(6)?,
                        hosts: Vec::new(),
                    })
                },
            )
            .optional()?;
        let Some(mut rollout) = row else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT host, batch, state FROM rollout_hosts WHERE rollout = ?1 ORDER BY idx",
        )?;
        let hosts = stmt.query_map([rollout.id], |r| {
            Ok(RolloutHost {
                host: r.get(0)?,
                batch: usize::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                state: HostState::parse(&r.get::<_, String>(2)?),
            })
        })?;
        rollout.hosts = hosts.collect::<Result<_, _>>()?;
        Ok(Some(rollout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollout_is_kept_until_it_finishes() {
        let mut inv = Inventory::open_in_memory().unwrap();
        assert_eq!(inv.unfinished_rollout().unwrap(), None);
        let host = |h: &str, batch| RolloutHost {
            host: h.into(),
            batch,
            state: HostState::Pending,
        };
        let plan = StoredRollout {
            id: 0,
            started_at: 0,
            state: String::new(),
            canary: true,
            max_failures: Some(2),
            stop_on_failure: false,
            gate: true,
            hosts: vec![host("a", 0), host("b", 1), host("c", 1)],
        };
        let id = inv.begin_rollout(&plan).unwrap();
        inv.rollout_host(id, 0, HostState::Done).unwrap();
        inv.rollout_host(id, 1, HostState::Failed).unwrap();
        let got = inv.unfinished_rollout().unwrap().unwrap();
        assert_eq!(got.id, id);
        assert_eq!(got.state, "running");
        assert_eq!(
            (got.canary, got.max_failures, got.gate),
            (true, Some(2), true)
        );
        let states: Vec<HostState> = got.hosts.iter().map(|h| h.state).collect();
        assert_eq!(
            states,
            [HostState::Done, HostState::Failed, HostState::Pending]
        );
        assert_eq!(got.hosts[2].batch, 1);
        inv.end_rollout(id, "interrupted").unwrap();
        assert_eq!(
            inv.unfinished_rollout().unwrap().unwrap().state,
            "interrupted"
        );
        inv.end_rollout(id, "finished").unwrap();
        assert_eq!(inv.unfinished_rollout().unwrap(), None);
    }
}
