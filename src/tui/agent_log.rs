//! `L` in the host detail: the agent's log followed live over SSH (the
//! engine's logs job), in a pane under the host, scrollable; closed (and
//! the job cancelled) by `L` again or by leaving the host.

use std::collections::VecDeque;
use std::net::IpAddr;

use crate::engine::{Command, JobId, JobOutcome, JobOutput, LogsRequest};

use super::app::App;

/// Lines kept in the pane, at most.
pub const KEPT: usize = 5000;
/// Lines asked for when the pane opens.
const FIRST: u32 = 200;

/// The log pane of one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPane {
    pub addr: IpAddr,
    /// The logs job, once started.
    pub job: Option<JobId>,
    /// As received (escaped when drawn); newest last.
    pub lines: VecDeque<String>,
    /// Lines scrolled back from the newest.
    pub scroll: usize,
    /// Why the log could not be read, or that it stopped.
    pub ended: Option<String>,
}

/// Opens the pane on `addr` and asks the engine to follow its log; on an
/// open pane, closes it.
pub fn toggle(app: &mut App, addr: IpAddr) -> Vec<Command> {
    if let Some(cancel) = close(app) {
        return cancel;
    }
    app.log_pane = Some(LogPane {
        addr,
        job: None,
        lines: VecDeque::new(),
        scroll: 0,
        ended: None,
    });
    vec![Command::Logs(LogsRequest {
        host: addr.to_string(),
        lines: FIRST,
        follow: true,
        ..LogsRequest::default()
    })]
}

/// Closes the pane, if open: `Some` with the cancel for its job.
pub fn close(app: &mut App) -> Option<Vec<Command>> {
    let pane = app.log_pane.take()?;
    Some(pane.job.map(Command::CancelJob).into_iter().collect())
}

/// A logs job started: the pane waiting for one takes it.
pub fn started(app: &mut App, id: JobId) {
    if let Some(pane) = app.log_pane.as_mut().filter(|p| p.job.is_none()) {
        pane.job = Some(id);
    }
}

pub fn output(app: &mut App, id: JobId, output: &JobOutput) {
    let Some(pane) = app.log_pane.as_mut().filter(|p| p.job == Some(id)) else {
        return;
    };
    if let JobOutput::LogLines { lines, .. } = output {
        for line in lines {
            if pane.lines.len() == KEPT {
                pane.lines.pop_front();
            }
            pane.lines.push_back(line.clone());
            if pane.scroll > 0 {
                // What is being read stays in place.
                pane.scroll = (pane.scroll + 1).min(pane.lines.len());
            }
        }
    }
}

pub fn ended(app: &mut App, id: JobId, outcome: &JobOutcome) {
    let Some(pane) = app.log_pane.as_mut().filter(|p| p.job == Some(id)) else {
        return;
    };
    pane.ended = Some(match outcome {
        JobOutcome::Failed(e) => e.to_string(),
        JobOutcome::Done(_) => "the log reader ended".into(),
        JobOutcome::Cancelled => "stopped".into(),
    });
}

/// PgUp/PgDn in the pane.
pub fn scroll(app: &mut App, back: bool) {
    if let Some(pane) = app.log_pane.as_mut() {
        pane.scroll = if back {
            (pane.scroll + 10).min(pane.lines.len().saturating_sub(1))
        } else {
            pane.scroll.saturating_sub(10)
        };
    }
}
