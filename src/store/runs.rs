//! The audit trail: every command run on hosts, who ran it from here,
//! when, and how each host ended (never the output).

use rusqlite::params;
use serde::Serialize;

use super::{Inventory, StoreError};
use crate::model::run::{RunFailure, RunResult};
use crate::model::time::now_unix;

/// One run, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    pub id: i64,
    /// Unix seconds.
    pub started_at: i64,
    /// None while it runs, or when it never ended (the process died).
    pub finished_at: Option<i64>,
    /// Who ran it, on this machine.
    pub local_user: String,
    pub command: String,
    pub sudo: bool,
    /// The hosts it was asked to run on, folded (`web[01-05]`).
    pub hosts: String,
    /// The summary line (`5 hosts: 4 ok, 1 exit 3`).
    pub summary: Option<String>,
    /// Each host that ran, in the order they finished.
    pub results: Vec<RunHost>,
}

/// How one host's run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunHost {
    pub host: String,
    pub address: String,
    pub exit: Option<u32>,
    pub error_class: Option<RunFailure>,
}

impl RunHost {
    /// `exit 0`, `exit 3`, `timeout`.
    #[must_use]
    pub fn outcome(&self) -> String {
        match (self.error_class, self.exit) {
            (Some(class), _) => class.as_str().to_string(),
            (None, Some(code)) => format!("exit {code}"),
            (None, None) => "no exit status".to_string(),
        }
    }
}

fn class_text(class: RunFailure) -> Result<String, StoreError> {
    serde_json::to_value(class)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .ok_or_else(|| StoreError::Encode(format!("{class:?}")))
}

fn class_parse(text: &str) -> Option<RunFailure> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).ok()
}

impl Inventory {
    /// Records that `local_user` starts `command` on `hosts` (folded);
    /// returns the run's id. Called before the first host starts.
    pub fn begin_run(
        &mut self,
        local_user: &str,
        command: &str,
        sudo: bool,
        hosts: &str,
    ) -> Result<i64, StoreError> {
        self.conn.execute(
            "INSERT INTO runs (started_at, local_user, command, sudo, hosts)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![now_unix(), local_user, command, sudo, hosts],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Records how run `id` ended: its summary, and each host's exit.
    pub fn finish_run(
        &mut self,
        id: i64,
        summary: &str,
        results: &[RunResult],
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE runs SET finished_at = ?2, summary = ?3 WHERE id = ?1",
            params![id, now_unix(), summary],
        )?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO run_hosts (run, host, address, exit, error_class)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for r in results {
                let class = r.error_class.map(class_text).transpose()?;
                insert.execute(params![id, r.host, r.address, r.exit, class])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The newest `limit` runs, newest first; with `address`, only those
    /// that ran on it (and only its result).
    pub fn runs(&self, address: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, started_at, finished_at, local_user, command, sudo, hosts, summary
             FROM runs
             WHERE ?1 IS NULL OR id IN (SELECT run FROM run_hosts WHERE address = ?1 OR host = ?1)
             ORDER BY id DESC LIMIT ?2",
        )?;
        let mut runs = stmt
            .query_map(params![address, limit], |row| {
                Ok(RunRecord {
                    id: row.get(0)?,
                    started_at: row.get(1)?,
                    finished_at: row.get(2)?,
                    local_user: row.get(3)?,
                    command: row.get(4)?,
                    sudo: row.get(5)?,
                    hosts: row.get(6)?,
                    summary: row.get(7)?,
                    results: Vec::new(),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut hosts = self.conn.prepare_cached(
            "SELECT host, address, exit, error_class FROM run_hosts
             WHERE run = ?1 AND (?2 IS NULL OR address = ?2 OR host = ?2) ORDER BY rowid",
        )?;
        for run in &mut runs {
            run.results = hosts
                .query_map(params![run.id, address], |row| {
                    let class: Option<String> = row.get(3)?;
                    Ok(RunHost {
                        host: row.get(0)?,
                        address: row.get(1)?,
                        exit: row.get(2)?,
                        error_class: class.as_deref().and_then(class_parse),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
        }
        Ok(runs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(
        host: &str,
        address: &str,
        exit: Option<u32>,
        class: Option<RunFailure>,
    ) -> RunResult {
        RunResult {
            host: host.into(),
            address: address.into(),
            exit,
            stdout: "secret output".into(),
            stderr: String::new(),
            dropped: 0,
            duration: 0.5,
            error_class: class,
            error: None,
        }
    }

    #[test]
    fn runs_are_recorded_before_they_start_and_read_back_per_host() {
        let mut inv = Inventory::open_in_memory().unwrap();
        let first = inv.begin_run("alice", "uptime", false, "web[1-2]").unwrap();
        let cut_short = inv.begin_run("bob", "reboot", true, "web1").unwrap();
        inv.finish_run(
            first,
            "2 hosts: 1 ok, 1 timeout",
            &[
                result("web1", "10.0.0.1", Some(0), None),
                result("web2", "10.0.0.2", None, Some(RunFailure::Timeout)),
            ],
        )
        .unwrap();

        let all = inv.runs(None, 10).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].id, cut_short, "newest first");
        assert_eq!(
            all[0].finished_at, None,
            "a run that never ended still shows"
        );
        assert!(all[0].sudo);
        let done = &all[1];
        assert_eq!(
            (
                done.local_user.as_str(),
                done.command.as_str(),
                done.hosts.as_str()
            ),
            ("alice", "uptime", "web[1-2]")
        );
        assert_eq!(done.summary.as_deref(), Some("2 hosts: 1 ok, 1 timeout"));
        assert!(done.finished_at.unwrap() >= done.started_at);
        let outcomes: Vec<String> = done.results.iter().map(RunHost::outcome).collect();
        assert_eq!(outcomes, ["exit 0", "timeout"]);

        let on_web2 = inv.runs(Some("10.0.0.2"), 10).unwrap();
        assert_eq!(on_web2.len(), 1);
        assert_eq!(on_web2[0].results.len(), 1);
        assert_eq!(on_web2[0].results[0].error_class, Some(RunFailure::Timeout));
        assert_eq!(inv.runs(Some("web1"), 10).unwrap().len(), 1);
        assert_eq!(inv.runs(None, 1).unwrap().len(), 1);
    }
}
