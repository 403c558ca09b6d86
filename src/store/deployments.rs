//! What deploy last did per host: the build, the agent state it left, and
//! the step reached (or failed in), so a re-run and the console know where
//! each host stands.

use rusqlite::{OptionalExtension, params};

use super::{Inventory, StoreError};
use crate::model::AgentState;
use crate::model::time::now_unix;

/// One host's last deployment, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// The address (or name) deploy connected to, and the SSH port.
    pub address: String,
    pub port: u16,
    /// The host as the operator named it.
    pub host: String,
    /// sha256 of the build deployed (or being deployed).
    pub build: Option<String>,
    pub state: AgentState,
    /// The step reached, or the one that failed.
    pub step: Option<String>,
    /// Why the last run failed.
    pub error: Option<String>,
    /// Unix seconds of the last change.
    pub updated_at: i64,
}

impl Inventory {
    /// Records a host's deployment state, replacing what was there.
    pub fn record_deployment(&mut self, d: &Deployment) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO deployments (address, port, host, build, state, step, error, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (address, port) DO UPDATE SET
                host = excluded.host, build = coalesce(excluded.build, deployments.build),
                state = excluded.state, step = excluded.step, error = excluded.error,
                updated_at = excluded.updated_at",
            params![
                d.address,
                d.port,
                d.host,
                d.build,
                d.state.as_str(),
                d.step,
                d.error,
                if d.updated_at == 0 {
                    now_unix()
                } else {
                    d.updated_at
                },
            ],
        )?;
        Ok(())
    }

    /// Forgets a host's deployment (after undeploy).
    pub fn forget_deployment(&mut self, address: &str, port: u16) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM deployments WHERE address = ?1 AND port = ?2",
            params![address, port],
        )?;
        Ok(())
    }

    /// One host's last deployment, if any.
    pub fn deployment(&self, address: &str, port: u16) -> Result<Option<Deployment>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("{SELECT} WHERE address = ?1 AND port = ?2"))?;
        Ok(stmt
            .query_row(params![address, port], row_to_deployment)
            .optional()?)
    }

    /// Every recorded deployment.
    pub fn deployments(&self) -> Result<Vec<Deployment>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("{SELECT} ORDER BY address, port"))?;
        let rows = stmt.query_map([], row_to_deployment)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

const SELECT: &str =
    "SELECT address, port, host, build, state, step, error, updated_at FROM deployments";

fn row_to_deployment(row: &rusqlite::Row<'_>) -> rusqlite::Result<Deployment> {
    let state: String = row.get(4)?;
    Ok(Deployment {
        address: row.get(0)?,
        port: row.get(1)?,
        host: row.get(2)?,
        build: row.get(3)?,
        state: AgentState::parse(&state).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                4,
                rusqlite::types::Type::Text,
                format!("unknown agent state {state:?}").into(),
            )
        })?,
        step: row.get(5)?,
        error: row.get(6)?,
        updated_at: row.get(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_the_build_and_names_the_step() {
        let mut inv = Inventory::open_in_memory().unwrap();
        let mut d = Deployment {
            address: "127.7.0.10".into(),
            port: 22,
            host: "web1".into(),
            build: Some("ab".repeat(32)),
            state: AgentState::Deploying,
            step: Some("upload".into()),
            error: None,
            updated_at: 100,
        };
        inv.record_deployment(&d).unwrap();
        d.build = None;
        d.state = AgentState::Failed;
        d.step = Some("healthy".into());
        d.error = Some("timed out".into());
        d.updated_at = 200;
        inv.record_deployment(&d).unwrap();
        let got = inv.deployment("127.7.0.10", 22).unwrap().unwrap();
        assert_eq!(got.build.as_deref(), Some("ab".repeat(32).as_str()));
        assert_eq!(got.state, AgentState::Failed);
        assert_eq!(got.step.as_deref(), Some("healthy"));
        assert_eq!(inv.deployments().unwrap().len(), 1);
        inv.forget_deployment("127.7.0.10", 22).unwrap();
        assert!(inv.deployment("127.7.0.10", 22).unwrap().is_none());
    }
}
