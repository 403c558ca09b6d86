//! The console's state and `update`: messages in, state changed and engine
//! commands out, with no I/O, so every key is tested without a terminal.

use std::collections::{BTreeSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use crossterm::event::{KeyEvent, MouseEvent, MouseEventKind};

use crate::engine::{
    Command, Event, FleetSnapshot, JobKind, JobOutcome, JobOutput, Prompt, PromptKind, Secret,
};
use crate::model::{AgentState, Reach};

use super::agent_log;
use super::keys;
use super::layout::Areas;
use super::runs::{self, Runs};
use super::table::{self, Filter, Sort};
use super::theme::{Theme, ThemeSet};

/// Event log lines kept.
pub const LOG_LINES: usize = 1000;

/// What the console is showing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Fleet,
    Detail(IpAddr),
    /// Jobs and the event log, full screen.
    Log,
    /// The last command run: its results grouped.
    Run,
}

/// A line being typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub kind: InputKind,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// `/`: filters as you type.
    Filter,
    /// `:`: a command line.
    Command,
    /// `s`: targets to scan.
    Scan,
    /// `!`: a command to run on the targets.
    Run,
}

/// A job waiting for a yes before it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    pub kind: JobKind,
    pub hosts: Vec<IpAddr>,
    /// What a run runs.
    pub command: Option<String>,
    /// Resume the inventory's unfinished rollout (this many hosts left).
    pub resume: Option<usize>,
    /// A custom command (its index in `App::custom`) rather than a job.
    pub custom: Option<usize>,
}

/// How an event log line reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Ok,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Unix seconds.
    pub at: i64,
    pub level: Level,
    pub text: String,
}

/// What `update` takes.
#[derive(Debug, Clone)]
pub enum Msg {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Resize(u16, u16),
    Engine(Event),
    Snapshot(Arc<FleetSnapshot>),
}

/// Everything the console remembers between frames.
#[derive(Debug)]
#[allow(clippy::struct_excessive_bools)] // independent switches of the screen's state
pub struct App {
    pub fleet: Arc<FleetSnapshot>,
    /// Indices into `fleet.hosts`, filtered and sorted.
    pub rows: Vec<u32>,
    /// Index into `rows`.
    pub selected: usize,
    /// Hosts alive and agents running, counted once per snapshot.
    pub alive: usize,
    pub agents: usize,
    /// First row shown.
    pub offset: usize,
    pub marked: BTreeSet<IpAddr>,
    pub filter_text: String,
    pub filter: Filter,
    pub sort: Sort,
    pub view: View,
    pub input: Option<Input>,
    pub confirm: Option<Confirm>,
    /// Questions from jobs, oldest first; the first is shown.
    pub prompts: VecDeque<Prompt>,
    /// What is typed into the shown prompt (drawn masked).
    pub prompt_text: Secret,
    pub help: bool,
    pub log: VecDeque<LogLine>,
    /// Lines scrolled back from the newest.
    pub log_scroll: usize,
    /// A one-line message in the footer (errors of `:` commands, notes).
    pub status: Option<(Level, String)>,
    pub themes: ThemeSet,
    pub theme: Theme,
    pub size: (u16, u16),
    pub quit: bool,
    /// What the scan prompt (`s`) starts with, e.g. the demo's range.
    pub scan_suggestion: Option<String>,
    /// The run prompt's history and the last run's results.
    pub runs: Runs,
    /// `S` was pressed: the front end suspends the screen and opens a
    /// shell on this host, then puts the screen back.
    pub shell: Option<IpAddr>,
    /// The agent's log followed in the host detail (`L`).
    pub log_pane: Option<agent_log::LogPane>,
    /// `:` lines entered, kept across runs when loaded from a file.
    pub history: super::complete::History,
    /// `fleetctl tui --read-only`: nothing that changes hosts (deploy,
    /// undeploy, revoke, a dangerous custom command) is sent or run.
    pub read_only: bool,
    /// Whether the unfinished rollout was offered already.
    pub resume_asked: bool,
    /// `commands.toml`'s entries.
    pub custom: Vec<super::custom::CustomCommand>,
    /// A custom command to run with the console suspended (the event loop
    /// takes it).
    pub pending_exec: Option<super::custom::Exec>,
}

impl App {
    /// The host whose detail is open.
    #[must_use]
    pub fn detail_host(&self) -> Option<IpAddr> {
        match self.view {
            View::Detail(addr) => Some(addr),
            _ => None,
        }
    }

    #[must_use]
    pub fn new(themes: ThemeSet, theme: Theme) -> Self {
        Self {
            fleet: Arc::new(FleetSnapshot::empty()),
            rows: Vec::new(),
            selected: 0,
            alive: 0,
            agents: 0,
            offset: 0,
            marked: BTreeSet::new(),
            filter_text: String::new(),
            filter: Filter::default(),
            sort: Sort::default(),
            view: View::Fleet,
            input: None,
            confirm: None,
            prompts: VecDeque::new(),
            prompt_text: Secret(String::new()),
            history: super::complete::History::default(),
            read_only: false,
            resume_asked: false,
            custom: Vec::new(),
            pending_exec: None,
            help: false,
            log: VecDeque::new(),
            log_scroll: 0,
            status: None,
            themes,
            theme,
            size: (80, 24),
            quit: false,
            scan_suggestion: None,
            runs: Runs::default(),
            shell: None,
            log_pane: None,
        }
    }

    /// The screen's panes at the current size.
    #[must_use]
    pub fn areas(&self) -> Areas {
        Areas::new(ratatui::layout::Rect::new(0, 0, self.size.0, self.size.1))
    }

    /// The host under the cursor.
    #[must_use]
    pub fn selected_addr(&self) -> Option<IpAddr> {
        self.rows
            .get(self.selected)
            .map(|&i| self.fleet.hosts[i as usize].addr)
    }

    /// What a job acts on: the marked hosts, else the one under the cursor
    /// (or shown in detail).
    #[must_use]
    pub fn targets(&self) -> Vec<IpAddr> {
        if let View::Detail(addr) = self.view {
            return vec![addr];
        }
        if self.marked.is_empty() {
            self.selected_addr().into_iter().collect()
        } else {
            self.marked.iter().copied().collect()
        }
    }

    /// Recomputes the rows, keeping the cursor on the same host.
    pub fn recompute_rows(&mut self) {
        let keep = self.selected_addr();
        self.rows = table::rows(&self.fleet, &self.filter, self.sort);
        self.selected = keep
            .and_then(|addr| {
                self.rows
                    .iter()
                    .position(|&i| self.fleet.hosts[i as usize].addr == addr)
            })
            .unwrap_or(self.selected)
            .min(self.rows.len().saturating_sub(1));
        self.scroll_into_view();
    }

    /// Moves the cursor by `delta` rows, clamped to the table.
    pub fn move_by(&mut self, delta: isize) {
        let last = self.rows.len().saturating_sub(1);
        self.selected = self.selected.saturating_add_signed(delta).min(last);
        self.scroll_into_view();
    }

    pub fn scroll_into_view(&mut self) {
        let page = self.areas().table_rows().max(1);
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + page {
            self.offset = self.selected + 1 - page;
        }
        self.offset = self.offset.min(self.rows.len().saturating_sub(page));
    }

    /// Adds a line to the event log.
    pub fn log(&mut self, level: Level, text: impl Into<String>) {
        if self.log.len() == LOG_LINES {
            self.log.pop_front();
        }
        self.log.push_back(LogLine {
            at: self.fleet.now_unix,
            level,
            text: text.into(),
        });
        if self.log_scroll > 0 {
            // Keep the lines being read in place while new ones arrive.
            self.log_scroll = (self.log_scroll + 1).min(self.log.len());
        }
    }

    /// Sets the filter from `text`; a bad filter is reported, the old one kept.
    pub fn set_filter(&mut self, text: String) {
        match Filter::parse(&text) {
            Ok(filter) => {
                self.filter = filter;
                self.status = None;
                self.recompute_rows();
            }
            Err(e) => self.status = Some((Level::Error, e)),
        }
        self.filter_text = text;
    }

    /// Switches theme; an unknown or malformed one is reported by name.
    pub fn set_theme(&mut self, name: &str) {
        match self.themes.get(name) {
            Ok(theme) if self.themes.no_color() => {
                self.theme = theme;
                self.status = Some((Level::Info, "NO_COLOR is set: colours stay off".into()));
            }
            Ok(theme) => {
                self.theme = theme;
                self.status = Some((Level::Ok, format!("theme {name}")));
            }
            Err(e) => self.status = Some((Level::Error, e.to_string())),
        }
    }
}

/// Applies one message; returns what the engine should do. Whenever the
/// host whose detail is open changes, the engine is told (with Prometheus
/// as the stats source it still reads that one agent directly).
pub fn update(app: &mut App, msg: Msg) -> Vec<Command> {
    let focused = app.detail_host();
    let mut commands = apply(app, msg);
    if app.detail_host() != focused {
        commands.push(Command::Focus {
            addr: app.detail_host(),
        });
    }
    commands
}

fn apply(app: &mut App, msg: Msg) -> Vec<Command> {
    match msg {
        Msg::Key(key) => keys::key(app, key),
        Msg::Mouse(mouse) => {
            mouse_event(app, mouse);
            Vec::new()
        }
        Msg::Resize(w, h) => {
            app.size = (w, h);
            app.scroll_into_view();
            Vec::new()
        }
        Msg::Snapshot(fleet) => {
            app.alive = fleet
                .hosts
                .iter()
                .filter(|h| h.reach() == Reach::Alive)
                .count();
            app.agents = fleet
                .hosts
                .iter()
                .filter(|h| h.agent == AgentState::Running)
                .count();
            app.fleet = fleet;
            app.recompute_rows();
            Vec::new()
        }
        Msg::Engine(event) => {
            engine_event(app, event);
            Vec::new()
        }
    }
}

fn mouse_event(app: &mut App, mouse: MouseEvent) {
    let areas = app.areas();
    let in_pane = mouse.row >= areas.pane.y && mouse.row < areas.pane.bottom();
    let over_log = app.view == View::Log || in_pane;
    match mouse.kind {
        MouseEventKind::ScrollDown if over_log => app.log_scroll = app.log_scroll.saturating_sub(3),
        MouseEventKind::ScrollUp if over_log => {
            app.log_scroll = (app.log_scroll + 3).min(app.log.len().saturating_sub(1));
        }
        MouseEventKind::ScrollDown => app.move_by(3),
        MouseEventKind::ScrollUp => app.move_by(-3),
        MouseEventKind::Down(_) if app.view == View::Fleet => {
            if let Some(row) = areas.table_row_at(mouse.row)
                && app.offset + row < app.rows.len()
            {
                app.selected = app.offset + row;
            }
        }
        _ => {}
    }
}

fn engine_event(app: &mut App, event: Event) {
    use Level::{Error, Info, Ok, Warn};
    match event {
        Event::InventoryLoaded { hosts } => app.log(Info, format!("inventory: {hosts} hosts")),
        Event::RolloutUnfinished { hosts } => {
            app.log(
                Warn,
                format!("a rollout was cut short with {hosts} host(s) left"),
            );
            // Asked once a run, and never in a console that may not deploy.
            if !app.read_only && !app.resume_asked && app.confirm.is_none() {
                app.resume_asked = true;
                app.confirm = Some(Confirm {
                    kind: JobKind::Deploy,
                    hosts: Vec::new(),
                    resume: Some(hosts),
                    custom: None,
                    command: None,
                });
            }
        }
        Event::HostFound { scan, new: true } => {
            let via = scan.via.map_or_else(String::new, |v| format!(" via {v}"));
            app.log(Ok, format!("{} found{via}", scan.addr));
        }
        Event::HostSilent { addr } => app.log(Warn, format!("{addr} went silent")),
        Event::Facts { addr, summary } => app.log(Ok, format!("{addr}: {summary}")),
        Event::SshFailed { error, .. } => app.log(Error, error),
        Event::DeployStep { addr, step } => app.log(Info, format!("{addr}: deploy: {step}")),
        Event::AgentChanged {
            addr, to, error, ..
        } => {
            let level = if error.is_some() { Warn } else { Ok };
            let why = error.map_or_else(String::new, |e| format!(": {e}"));
            app.log(level, format!("{addr}: agent {to}{why}"));
        }
        Event::Error { addr, message } => {
            let prefix = addr.map_or_else(String::new, |a| format!("{a}: "));
            app.log(Error, format!("{prefix}{message}"));
        }
        Event::JobStarted { id, kind, label } => {
            match kind {
                JobKind::Run => runs::started(app, id),
                JobKind::Logs => agent_log::started(app, id),
                _ => {}
            }
            app.log(Info, format!("{id} {} started: {label}", kind.as_str()));
        }
        Event::JobEnded { id, kind, outcome } => {
            agent_log::ended(app, id, &outcome);
            let (level, text) = match outcome {
                JobOutcome::Done(summary) => (Ok, format!("done: {summary}")),
                JobOutcome::Failed(error) => (Error, format!("failed: {error}")),
                JobOutcome::Cancelled => (Warn, "cancelled".into()),
            };
            app.log(level, format!("{id} {} {text}", kind.as_str()));
        }
        Event::PromptNeeded(prompt) => {
            let text = match &prompt.kind {
                PromptKind::Passphrase { key } => {
                    format!("passphrase wanted for {}", key.display())
                }
                PromptKind::Password { user, host } => format!("password wanted for {user}@{host}"),
                PromptKind::HostKey { host, .. } => format!("{host}: unknown host key"),
                PromptKind::Gate { batch, batches, .. } => {
                    format!("rollout: batch {batch}/{batches} done, waiting at the gate")
                }
            };
            app.log(Warn, text);
            app.prompts.push_back(prompt);
        }
        Event::PromptWithdrawn { id } => {
            if app.prompts.front().is_some_and(|p| p.id == id) {
                app.prompt_text.0.clear();
            }
            app.prompts.retain(|p| p.id != id);
        }
        // What ssh_config holds that is not followed, a fallback taken.
        Event::Output {
            id,
            output: JobOutput::Note(note),
        } => app.log(Info, format!("{id} note: {note}")),
        Event::Output {
            id,
            output: output @ (JobOutput::Ran(_) | JobOutput::RunDone { .. }),
        } => runs::output(app, id, &output),
        Event::Output {
            id,
            output: output @ JobOutput::LogLines { .. },
        } => agent_log::output(app, id, &output),
        // The fleet snapshot shows the rest of what jobs produce.
        Event::HostFound { .. }
        | Event::JobProgress { .. }
        | Event::PollRound { .. }
        | Event::Output { .. } => {}
    }
}
