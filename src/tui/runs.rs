//! Commands run from the console: `!` (or `:run CMD`) asks first with the
//! host list, then the results view shows one row per group of identical
//! results (outliers first); Enter opens a group's full output, `D` on two
//! groups diffs them line by line. The prompt keeps a history (↑/↓),
//! which the front end saves across runs.

use crossterm::event::{KeyCode, KeyEvent};

use crate::engine::{Command, JobId, JobOutput, RunRequest};
use crate::model::run::{Group, GroupKey, RunResult, group};

use super::app::{App, Confirm, Level, View};

/// Commands remembered by the prompt, at most.
pub const HISTORY: usize = 500;

/// What the run prompt remembers and the last run's results.
#[derive(Debug, Default)]
pub struct Runs {
    /// Oldest first.
    pub history: Vec<String>,
    /// Where ↑/↓ are in the history while typing (an index into it).
    pub browsing: Option<usize>,
    pub results: Option<RunResults>,
}

/// One run's results as they arrive.
#[derive(Debug, Default)]
pub struct RunResults {
    pub job: Option<JobId>,
    pub command: String,
    pub hosts: usize,
    pub results: Vec<RunResult>,
    pub groups: Vec<Group>,
    pub done: bool,
    pub not_started: usize,
    /// The group under the cursor.
    pub selected: usize,
    /// The group `D` was pressed on first.
    pub diff_from: Option<usize>,
    pub open: Option<Pane>,
    /// Lines scrolled in the open pane.
    pub scroll: usize,
}

/// What opens over the groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Output(usize),
    Diff(usize, usize),
}

impl RunResults {
    /// A group's output as one text: stdout, then stderr under a marker,
    /// or each host's error.
    #[must_use]
    pub fn text(&self, group: usize) -> String {
        let Some(g) = self.groups.get(group) else {
            return String::new();
        };
        match &g.key {
            GroupKey::Ran { stdout, stderr, .. } => {
                let mut text = stdout.clone();
                if !stderr.is_empty() {
                    if !text.is_empty() && !text.ends_with('\n') {
                        text.push('\n');
                    }
                    text.push_str("-- stderr\n");
                    text.push_str(stderr);
                }
                text
            }
            GroupKey::Failed(_) => g
                .members
                .iter()
                .filter_map(|&i| self.results[i].error.clone())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// Adds `command` to the history (once, newest last).
pub fn remember(app: &mut App, command: &str) {
    let history = &mut app.runs.history;
    history.retain(|c| c != command);
    history.push(command.to_string());
    if history.len() > HISTORY {
        history.remove(0);
    }
    app.runs.browsing = None;
}

/// ↑/↓ in the run prompt: the previous or next command remembered.
pub fn browse(app: &mut App, older: bool) {
    let len = app.runs.history.len();
    if len == 0 {
        return;
    }
    let at = match (app.runs.browsing, older) {
        (None, true) => Some(len - 1),
        (Some(i), true) => Some(i.saturating_sub(1)),
        (Some(i), false) if i + 1 < len => Some(i + 1),
        (_, false) => None,
    };
    app.runs.browsing = at;
    if let Some(input) = app.input.as_mut() {
        input.text = at.map(|i| app.runs.history[i].clone()).unwrap_or_default();
    }
}

/// `!CMD` or `:run CMD` entered: ask first, with the hosts.
pub fn ask(app: &mut App, command: &str) {
    let command = command.trim();
    if command.is_empty() {
        app.status = Some((Level::Error, "run what? e.g. :run uptime".into()));
        return;
    }
    remember(app, command);
    let hosts = app.targets();
    if hosts.is_empty() {
        app.status = Some((Level::Error, "no host selected".into()));
        return;
    }
    app.confirm = Some(Confirm {
        kind: crate::engine::JobKind::Run,
        hosts,
        command: Some(command.to_string()),
        resume: None,
        custom: None,
    });
}

/// The confirmed run: the request, and the results view opened for it.
pub fn start(app: &mut App, hosts: &[std::net::IpAddr], command: String) -> Vec<Command> {
    app.runs.results = Some(RunResults {
        command: command.clone(),
        hosts: hosts.len(),
        ..RunResults::default()
    });
    app.view = View::Run;
    vec![Command::Run(RunRequest {
        hosts: hosts.iter().map(ToString::to_string).collect(),
        command,
        ..RunRequest::default()
    })]
}

/// A run job started: the results view waiting for one takes it.
pub fn started(app: &mut App, id: JobId) {
    if let Some(results) = app.runs.results.as_mut()
        && results.job.is_none()
    {
        results.job = Some(id);
    }
}

/// A run job's output.
pub fn output(app: &mut App, id: JobId, output: &JobOutput) {
    let Some(r) = app.runs.results.as_mut().filter(|r| r.job == Some(id)) else {
        return;
    };
    match output {
        JobOutput::Ran(result) => {
            r.results.push((**result).clone());
            r.groups = group(&r.results);
            r.selected = r.selected.min(r.groups.len().saturating_sub(1));
        }
        JobOutput::RunDone { not_started } => {
            r.done = true;
            r.not_started = *not_started;
        }
        _ => {}
    }
}

/// Keys in the results view.
pub fn key(app: &mut App, key: KeyEvent) {
    let Some(r) = app.runs.results.as_mut() else {
        app.view = View::Fleet;
        return;
    };
    if r.open.is_some() {
        match key.code {
            KeyCode::Esc | KeyCode::Backspace | KeyCode::Enter => r.open = None,
            KeyCode::Char('j') | KeyCode::Down => r.scroll += 1,
            KeyCode::Char('k') | KeyCode::Up => r.scroll = r.scroll.saturating_sub(1),
            KeyCode::PageDown => r.scroll += 20,
            KeyCode::PageUp => r.scroll = r.scroll.saturating_sub(20),
            _ => {}
        }
        return;
    }
    let last = r.groups.len().saturating_sub(1);
    match key.code {
        KeyCode::Esc | KeyCode::Backspace if r.diff_from.is_some() => r.diff_from = None,
        KeyCode::Esc | KeyCode::Backspace => app.view = View::Fleet,
        KeyCode::Char('j') | KeyCode::Down => r.selected = (r.selected + 1).min(last),
        KeyCode::Char('k') | KeyCode::Up => r.selected = r.selected.saturating_sub(1),
        KeyCode::Enter if !r.groups.is_empty() => {
            r.open = Some(Pane::Output(r.selected));
            r.scroll = 0;
        }
        KeyCode::Char('D') if !r.groups.is_empty() => match r.diff_from.take() {
            Some(from) if from != r.selected => {
                r.open = Some(Pane::Diff(from, r.selected));
                r.scroll = 0;
            }
            Some(_) => {}
            None => {
                r.diff_from = Some(r.selected);
                app.status = Some((
                    Level::Info,
                    "diff from this group: move to another and press D".into(),
                ));
            }
        },
        _ => {}
    }
}

/// A line of a diff: kept, only in the first text, only in the second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffLine {
    Same(String),
    Removed(String),
    Added(String),
}

/// Lines compared past this many pairs are shown whole, each side in turn
/// (a longest-common-subsequence table would be too big).
const DIFF_CELLS: usize = 4_000_000;

/// `a` and `b` line by line, as `diff` shows them (longest common
/// subsequence kept, the rest removed then added).
#[must_use]
pub fn diff(old: &str, new: &str) -> Vec<DiffLine> {
    let old: Vec<&str> = old.lines().collect();
    let new: Vec<&str> = new.lines().collect();
    let (rows, cols) = (old.len(), new.len());
    if rows.saturating_mul(cols) > DIFF_CELLS {
        return old
            .iter()
            .map(|l| DiffLine::Removed((*l).to_string()))
            .chain(new.iter().map(|l| DiffLine::Added((*l).to_string())))
            .collect();
    }
    // common[r][c]: the longest common subsequence of old[r..] and new[c..].
    let mut common = vec![vec![0u32; cols + 1]; rows + 1];
    for r in (0..rows).rev() {
        for c in (0..cols).rev() {
            common[r][c] = if old[r] == new[c] {
                common[r + 1][c + 1] + 1
            } else {
                common[r + 1][c].max(common[r][c + 1])
            };
        }
    }
    let (mut r, mut c, mut out) = (0, 0, Vec::new());
    while r < rows || c < cols {
        if r < rows && c < cols && old[r] == new[c] {
            out.push(DiffLine::Same(old[r].to_string()));
            r += 1;
            c += 1;
        } else if c < cols && (r == rows || common[r][c + 1] > common[r + 1][c]) {
            out.push(DiffLine::Added(new[c].to_string()));
            c += 1;
        } else {
            out.push(DiffLine::Removed(old[r].to_string()));
            r += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_keeps_what_is_common_and_marks_the_rest() {
        use DiffLine::{Added, Removed, Same};
        let d = diff("a\nb\nc\nd\n", "a\nc\nd\ne\n");
        assert_eq!(
            d,
            [
                Same("a".into()),
                Removed("b".into()),
                Same("c".into()),
                Same("d".into()),
                Added("e".into())
            ]
        );
        assert_eq!(diff("", "x"), [Added("x".into())]);
    }
}
