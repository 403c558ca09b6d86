//! Commands run on hosts, in each host's events: as they finish, and the
//! audit trail's past runs when the inventory is read.

use std::net::IpAddr;
use std::sync::Arc;

use super::Actor;
use crate::engine::JobId;
use crate::model::run::RunResult;
use crate::model::text;
use crate::model::time::now_unix;
use crate::store::{RunHost, RunRecord};

impl Actor {
    /// One host's run just finished.
    pub(super) fn ran(&mut self, id: JobId, result: &RunResult) {
        let Some(command) = self.run_commands.get(&id).cloned() else {
            return;
        };
        let outcome = RunHost {
            host: result.host.clone(),
            address: result.address.clone(),
            exit: result.exit,
            error_class: result.error_class,
        }
        .outcome();
        self.log_run(
            &result.address,
            now_unix(),
            &format!("ran `{command}`: {outcome}"),
        );
    }

    /// The inventory's runs, oldest first into each host's events.
    pub(super) fn past_runs(&mut self, runs: &[RunRecord]) {
        for run in runs.iter().rev() {
            for host in &run.results {
                let text = format!(
                    "{} ran `{}`: {}",
                    run.local_user,
                    run.command,
                    host.outcome()
                );
                self.log_run(&host.address, run.started_at, &text);
            }
        }
    }

    fn log_run(&mut self, address: &str, at: i64, what: &str) {
        let Ok(addr) = address.parse::<IpAddr>() else {
            return;
        };
        if let Some(host) = self.hosts.get_mut(&addr) {
            Arc::make_mut(host).log(at, text::escape(what));
            self.dirty = true;
        }
    }
}
