//! Keys, in the k9s/btop tradition. The topmost thing on screen takes the
//! key: a job's prompt, then a confirmation, then the line being typed,
//! then help, then the view.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::engine::{
    Answer, Command, DeployRequest, FingerprintRequest, JobKind, PromptKind, RevokeRequest,
    ScanRequest, Secret, UndeployRequest,
};

use super::agent_log;
use super::app::{App, Confirm, Input, InputKind, Level, View};
use super::runs;
use super::table::Column;
use super::{complete, custom};

/// Handles one key press.
pub fn key(app: &mut App, key: KeyEvent) -> Vec<Command> {
    if key.kind == KeyEventKind::Release {
        return Vec::new();
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        app.quit = true;
        return Vec::new();
    }
    if !app.prompts.is_empty() {
        return prompt_key(app, key);
    }
    if app.confirm.is_some() {
        return confirm_key(app, key);
    }
    if app.input.is_some() {
        return input_key(app, key);
    }
    if app.help {
        if matches!(key.code, KeyCode::Esc | KeyCode::Char('?' | 'q')) {
            app.help = false;
        }
        return Vec::new();
    }
    view_key(app, key)
}

fn prompt_key(app: &mut App, key: KeyEvent) -> Vec<Command> {
    let Some(prompt) = app.prompts.front() else {
        return Vec::new();
    };
    let id = prompt.id;
    let answer = match (&prompt.kind, key.code) {
        (PromptKind::HostKey { .. }, KeyCode::Char('y' | 'Y'))
        | (PromptKind::Gate { .. }, KeyCode::Char('c' | 'C' | 'y' | 'Y')) => Answer::Confirm(true),
        (PromptKind::HostKey { .. }, KeyCode::Char('n' | 'N') | KeyCode::Esc)
        | (PromptKind::Gate { .. }, KeyCode::Char('a' | 'A' | 'n' | 'N') | KeyCode::Esc) => {
            Answer::Confirm(false)
        }
        (PromptKind::HostKey { .. } | PromptKind::Gate { .. }, _) => return Vec::new(),
        (_, KeyCode::Enter) => Answer::Secret(std::mem::replace(
            &mut app.prompt_text,
            Secret(String::new()),
        )),
        (_, KeyCode::Esc) => Answer::Dismissed,
        (_, KeyCode::Backspace) => {
            app.prompt_text.0.pop();
            return Vec::new();
        }
        (_, KeyCode::Char(c)) => {
            app.prompt_text.0.push(c);
            return Vec::new();
        }
        _ => return Vec::new(),
    };
    app.prompt_text.0.clear();
    app.prompts.pop_front();
    vec![Command::AnswerPrompt { id, answer }]
}

fn confirm_key(app: &mut App, key: KeyEvent) -> Vec<Command> {
    match key.code {
        KeyCode::Char('y' | 'Y') | KeyCode::Enter => {
            let Some(Confirm {
                kind,
                hosts,
                command,
                custom,
                resume,
            }) = app.confirm.take()
            else {
                return Vec::new();
            };
            if resume.is_some() {
                return vec![Command::Deploy(DeployRequest {
                    resume: true,
                    ..DeployRequest::default()
                })];
            }
            if let Some(i) = custom {
                start_custom(app, i, &hosts);
                return Vec::new();
            }
            app.marked.clear();
            match kind {
                JobKind::Run => runs::start(app, &hosts, command.unwrap_or_default()),
                JobKind::Deploy => vec![Command::Deploy(DeployRequest::hosts(&hosts))],
                JobKind::Undeploy => vec![Command::Undeploy(UndeployRequest::hosts(&hosts))],
                JobKind::Revoke => vec![Command::Revoke(RevokeRequest::hosts(&hosts))],
                _ => Vec::new(),
            }
        }
        KeyCode::Char('n' | 'N' | 'q') | KeyCode::Esc => {
            app.confirm = None;
            Vec::new()
        }
        _ => Vec::new(),
    }
}

fn input_key(app: &mut App, key: KeyEvent) -> Vec<Command> {
    let Some(input) = app.input.as_mut() else {
        return Vec::new();
    };
    let kind = input.kind;
    match key.code {
        KeyCode::Esc => {
            app.input = None;
            if kind == InputKind::Filter {
                app.set_filter(String::new());
            }
            Vec::new()
        }
        KeyCode::Enter => {
            let text = app.input.take().map(|i| i.text).unwrap_or_default();
            if kind == InputKind::Command {
                app.history.push(&text);
            }
            match kind {
                // Already applied as typed.
                InputKind::Filter => Vec::new(),
                InputKind::Command => command_line(app, &text),
                InputKind::Scan => scan(app, text.trim()),
                InputKind::Run => {
                    runs::ask(app, &text);
                    Vec::new()
                }
            }
        }
        KeyCode::Up | KeyCode::Down if kind == InputKind::Run => {
            runs::browse(app, key.code == KeyCode::Up);
            Vec::new()
        }
        KeyCode::Tab if kind != InputKind::Scan => {
            tab(app, kind);
            Vec::new()
        }
        KeyCode::Up | KeyCode::Down if kind == InputKind::Command => {
            let line = if key.code == KeyCode::Up {
                app.history.older()
            } else {
                app.history.newer()
            };
            if let (Some(line), Some(input)) = (line.map(str::to_owned), app.input.as_mut()) {
                input.text = line;
            }
            Vec::new()
        }
        KeyCode::Backspace => {
            app.history.reset();
            if kind == InputKind::Command {
                app.status = None;
            }
            let Some(input) = app.input.as_mut() else {
                return Vec::new();
            };
            input.text.pop();
            let text = input.text.clone();
            if kind == InputKind::Filter {
                app.set_filter(text);
            }
            Vec::new()
        }
        KeyCode::Char(c) => {
            app.history.reset();
            if kind == InputKind::Command {
                app.status = None;
            }
            let Some(input) = app.input.as_mut() else {
                return Vec::new();
            };
            input.text.push(c);
            let text = input.text.clone();
            if kind == InputKind::Filter {
                app.set_filter(text);
            }
            Vec::new()
        }
        _ => Vec::new(),
    }
}

/// Tab: completes the line's last word from what the console knows.
fn tab(app: &mut App, kind: InputKind) {
    let words = complete::Words {
        commands: app.custom.iter().map(|c| c.name.clone()).collect(),
        columns: Column::ALL
            .iter()
            .map(|c| c.title().to_lowercase())
            .collect(),
        themes: app.themes.names().iter().map(ToString::to_string).collect(),
        hosts: app
            .fleet
            .hosts
            .iter()
            .map(|h| {
                h.hostname()
                    .map_or_else(|| h.addr.to_string(), str::to_owned)
            })
            .collect(),
    };
    let Some(input) = app.input.as_mut() else {
        return;
    };
    match complete::complete(&input.text, kind == InputKind::Command, &words) {
        complete::Completed::Line(line) => {
            input.text = line;
            if kind == InputKind::Filter {
                let text = input.text.clone();
                app.set_filter(text);
            }
        }
        complete::Completed::Choices(choices) => {
            let shown: Vec<String> = choices
                .iter()
                .take(12)
                .map(|c| crate::model::text::escape(c).into_owned())
                .collect();
            app.status = Some((Level::Info, shown.join("  ")));
        }
        complete::Completed::Nothing => {}
    }
}

fn scan(app: &mut App, line: &str) -> Vec<Command> {
    match scan_request(line) {
        Ok(request) => vec![Command::Scan(request)],
        Err(message) => {
            app.status = Some((Level::Error, message));
            Vec::new()
        }
    }
}

/// `:scan`'s words: targets, and `--exclude TARGET[,TARGET...]` (or
/// `--exclude=...`) as `fleetctl scan` takes it; the rest as `[scan]` says.
fn scan_request(line: &str) -> Result<ScanRequest, String> {
    let mut request = ScanRequest::default();
    let mut words = line.split_whitespace();
    while let Some(word) = words.next() {
        let excluded = match word.strip_prefix("--exclude") {
            Some("") => words
                .next()
                .ok_or("--exclude what? e.g. :scan 10.0.0.0/24 --exclude 10.0.0.1")?,
            Some(rest) if rest.starts_with('=') => &rest[1..],
            Some(_) | None if word.starts_with('-') => {
                return Err(format!("{word}: :scan takes targets and --exclude only"));
            }
            Some(_) | None => {
                request.targets.push(word.to_owned());
                continue;
            }
        };
        request.exclude.extend(
            excluded
                .split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
        );
    }
    if request.targets.is_empty() {
        return Err("scan what? e.g. :scan 10.0.0.0/24".into());
    }
    Ok(request)
}

/// Asks for a yes before `kind` runs on the targets.
fn ask_confirm(app: &mut App, kind: JobKind) {
    if app.read_only {
        app.status = Some((
            Level::Error,
            format!("read-only console: {} is refused", kind.as_str()),
        ));
        return;
    }
    let hosts = app.targets();
    if hosts.is_empty() {
        app.status = Some((Level::Error, "no host selected".into()));
    } else {
        app.confirm = Some(Confirm {
            kind,
            hosts,
            command: None,
            resume: None,
            custom: None,
        });
    }
}

fn fingerprint(app: &mut App) -> Vec<Command> {
    let hosts = app.targets();
    if hosts.is_empty() {
        app.status = Some((Level::Error, "no host selected".into()));
        return Vec::new();
    }
    app.marked.clear();
    vec![Command::Fingerprint(FingerprintRequest::hosts(&hosts))]
}

/// The `:` commands.
pub const COMMANDS: &[(&str, &str)] = &[
    (
        ":scan TARGETS",
        "discover hosts (CIDRs, ranges, names; --exclude T,...)",
    ),
    (":fingerprint", "learn what the selected hosts are"),
    (":deploy / :undeploy", "agent on/off the selected hosts"),
    (":revoke", "revoke the selected agents"),
    (
        ":run CMD",
        "run a command on the selected hosts (as !), asked first",
    ),
    (":filter TEXT", "same as /"),
    (
        ":sort COLUMN",
        "sort by a column (e.g. cpu); again to reverse",
    ),
    (":theme NAME", "switch colours"),
    (":cancel [ID]", "cancel a job (default: the newest)"),
    (":refresh", "reread the inventory"),
    (":q", "quit"),
];

fn command_line(app: &mut App, line: &str) -> Vec<Command> {
    let line = line.trim().trim_start_matches(':');
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    let rest = rest.trim();
    match word {
        "" => Vec::new(),
        "q" | "quit" | "q!" => {
            app.quit = true;
            Vec::new()
        }
        "scan" => scan(app, rest),
        "fingerprint" | "fp" => fingerprint(app),
        "deploy" => {
            ask_confirm(app, JobKind::Deploy);
            Vec::new()
        }
        "undeploy" => {
            ask_confirm(app, JobKind::Undeploy);
            Vec::new()
        }
        "revoke" => {
            ask_confirm(app, JobKind::Revoke);
            Vec::new()
        }
        "filter" => {
            app.set_filter(rest.to_owned());
            Vec::new()
        }
        "sort" => {
            sort_by_name(app, rest);
            Vec::new()
        }
        "theme" if rest.is_empty() => {
            let names = app.themes.names().join(", ");
            app.status = Some((Level::Info, format!("themes: {names}")));
            Vec::new()
        }
        "theme" => {
            app.set_theme(rest);
            Vec::new()
        }
        "cancel" => cancel(app, rest),
        name if app.custom.iter().any(|c| c.name == name) => {
            if let Some(i) = app.custom.iter().position(|c| c.name == name) {
                run_custom(app, i);
            }
            Vec::new()
        }
        "refresh" => vec![Command::Refresh],
        "run" => {
            runs::ask(app, rest);
            Vec::new()
        }
        other => {
            app.status = Some((
                Level::Error,
                format!("unknown command :{other} (press ? for the list)"),
            ));
            Vec::new()
        }
    }
}

fn sort_by_name(app: &mut App, name: &str) {
    let Some(column) = Column::ALL
        .into_iter()
        .find(|c| c.title().eq_ignore_ascii_case(name))
    else {
        let names: Vec<String> = Column::ALL
            .iter()
            .map(|c| c.title().to_lowercase())
            .collect();
        app.status = Some((
            Level::Error,
            format!("no column {name:?}; columns: {}", names.join(" ")),
        ));
        return;
    };
    if app.sort.column == column {
        app.sort.descending = !app.sort.descending;
    } else {
        app.sort.column = column;
        app.sort.descending = false;
    }
    app.recompute_rows();
}

/// A custom command on its scope's hosts: refused when dangerous in a
/// read-only console, asked first when it says so.
fn run_custom(app: &mut App, i: usize) {
    let cmd = &app.custom[i];
    if cmd.dangerous && app.read_only {
        app.status = Some((
            Level::Error,
            format!("read-only console: {} is dangerous, refused", cmd.name),
        ));
        return;
    }
    let hosts = match cmd.scope {
        custom::Scope::Marked => app.targets(),
        custom::Scope::Selected => match app.view {
            View::Detail(addr) => vec![addr],
            _ => app.selected_addr().into_iter().collect(),
        },
    };
    if hosts.is_empty() {
        app.status = Some((Level::Error, "no host selected".into()));
    } else if cmd.confirm {
        app.confirm = Some(Confirm {
            kind: JobKind::Fingerprint,
            hosts,
            resume: None,
            custom: Some(i),
            command: None,
        });
    } else {
        start_custom(app, i, &hosts);
    }
}

/// Hands the command, with what it learns of `hosts`, to the event loop.
fn start_custom(app: &mut App, i: usize, hosts: &[std::net::IpAddr]) {
    let targets: Vec<custom::Target> = hosts
        .iter()
        .map(|addr| {
            let host = app.fleet.host(*addr);
            custom::Target {
                host: host
                    .and_then(|h| h.hostname().map(str::to_owned))
                    .unwrap_or_else(|| addr.to_string()),
                addr: addr.to_string(),
                port: host.and_then(|h| h.ssh_port).unwrap_or(22),
                user: host
                    .and_then(|h| h.facts.as_ref())
                    .and_then(|f| f.user.clone())
                    .unwrap_or_default(),
                tags: host
                    .map(|h| crate::model::tags::tags_text(&h.tags))
                    .unwrap_or_default(),
            }
        })
        .collect();
    app.marked.clear();
    app.pending_exec = Some(app.custom[i].exec(&targets));
}

/// Holds the newest running deploy or undeploy, or lets it go on.
fn pause(app: &mut App) -> Vec<Command> {
    let Some(job) = app
        .fleet
        .jobs
        .iter()
        .rev()
        .find(|j| matches!(j.kind, JobKind::Deploy | JobKind::Undeploy))
    else {
        app.status = Some((Level::Error, "no rollout running to pause".into()));
        return Vec::new();
    };
    let paused = !job.paused;
    let text = if paused {
        format!(
            "{} paused: no new host starts; hosts under way finish (p resumes)",
            job.id
        )
    } else {
        format!("{} resumed", job.id)
    };
    app.status = Some((Level::Info, text));
    vec![Command::PauseJob { id: job.id, paused }]
}

fn cancel(app: &mut App, id: &str) -> Vec<Command> {
    let id = id.trim_start_matches('#');
    let job = if id.is_empty() {
        app.fleet.jobs.last().map(|j| j.id)
    } else {
        app.fleet
            .jobs
            .iter()
            .find(|j| j.id.0.to_string() == id)
            .map(|j| j.id)
    };
    if let Some(job) = job {
        vec![Command::CancelJob(job)]
    } else {
        app.status = Some((Level::Error, "no such running job".into()));
        Vec::new()
    }
}

/// The keys that act on hosts directly: `!` and the results view, `S`,
/// `L`; `None` for the rest.
fn act_key(app: &mut App, key: KeyEvent) -> Option<Vec<Command>> {
    match (app.view, key.code) {
        (
            View::Run,
            KeyCode::Char('j' | 'k' | 'D')
            | KeyCode::Down
            | KeyCode::Up
            | KeyCode::Enter
            | KeyCode::Esc
            | KeyCode::Backspace
            | KeyCode::PageDown
            | KeyCode::PageUp,
        ) => runs::key(app, key),
        (_, KeyCode::Char('!')) => {
            app.input = Some(Input {
                kind: InputKind::Run,
                text: String::new(),
            });
            app.runs.browsing = None;
        }
        (_, KeyCode::Char('R')) if app.runs.results.is_some() => app.view = View::Run,
        (View::Fleet | View::Detail(_), KeyCode::Char('S')) => {
            app.shell = match app.view {
                View::Detail(addr) => Some(addr),
                _ => app.selected_addr(),
            };
        }
        (View::Detail(addr), KeyCode::Char('L')) => return Some(agent_log::toggle(app, addr)),
        (View::Detail(_), KeyCode::PageUp | KeyCode::PageDown) => {
            agent_log::scroll(app, key.code == KeyCode::PageUp);
        }
        _ => return None,
    }
    Some(Vec::new())
}

fn view_key(app: &mut App, key: KeyEvent) -> Vec<Command> {
    app.status = None;
    if let Some(commands) = act_key(app, key) {
        return commands;
    }
    let page = app.areas().table_rows().max(1).cast_signed();
    match (app.view, key.code) {
        (_, KeyCode::Char('q')) => app.quit = true,
        (_, KeyCode::Char('?')) => app.help = true,
        (_, KeyCode::Char(':')) => {
            app.input = Some(Input {
                kind: InputKind::Command,
                text: String::new(),
            });
        }
        (_, KeyCode::Char('s')) => {
            app.input = Some(Input {
                kind: InputKind::Scan,
                text: app.scan_suggestion.clone().unwrap_or_default(),
            });
        }
        (_, KeyCode::Char('f')) => return fingerprint(app),
        (_, KeyCode::Char('d')) => ask_confirm(app, JobKind::Deploy),
        (_, KeyCode::Char('u')) => ask_confirm(app, JobKind::Undeploy),
        (_, KeyCode::Char('r')) => ask_confirm(app, JobKind::Revoke),
        (_, KeyCode::Char(c)) if app.custom.iter().any(|cmd| cmd.key == Some(c)) => {
            if let Some(i) = app.custom.iter().position(|cmd| cmd.key == Some(c)) {
                run_custom(app, i);
            }
        }
        (_, KeyCode::Char('x')) => return cancel(app, ""),
        (_, KeyCode::Char('p')) => return pause(app),
        (View::Log, KeyCode::Char('j') | KeyCode::Down) => {
            app.log_scroll = app.log_scroll.saturating_sub(1);
        }
        (View::Log, KeyCode::Char('k') | KeyCode::Up) => {
            app.log_scroll = (app.log_scroll + 1).min(app.log.len().saturating_sub(1));
        }
        (View::Detail(_), KeyCode::Esc | KeyCode::Backspace) => {
            app.view = View::Fleet;
            return agent_log::close(app).unwrap_or_default();
        }
        (View::Log, KeyCode::Esc | KeyCode::Backspace | KeyCode::Char('l')) => {
            app.view = View::Fleet;
        }
        (View::Detail(_), KeyCode::Char('j') | KeyCode::Down) => return detail_step(app, 1),
        (View::Detail(_), KeyCode::Char('k') | KeyCode::Up) => return detail_step(app, -1),
        (View::Fleet, KeyCode::Char('j') | KeyCode::Down) => app.move_by(1),
        (View::Fleet, KeyCode::Char('k') | KeyCode::Up) => app.move_by(-1),
        (View::Fleet, KeyCode::PageDown) => app.move_by(page),
        (View::Fleet, KeyCode::PageUp) => app.move_by(-page),
        (View::Fleet, KeyCode::Char('g') | KeyCode::Home) => app.move_by(isize::MIN / 2),
        (View::Fleet, KeyCode::Char('G') | KeyCode::End) => app.move_by(isize::MAX / 2),
        (View::Fleet, KeyCode::Char('/')) => {
            app.input = Some(Input {
                kind: InputKind::Filter,
                text: app.filter_text.clone(),
            });
        }
        (View::Fleet, KeyCode::Char(c @ ('<' | '>'))) => {
            app.sort.column = app.sort.column.step(c == '>');
            app.recompute_rows();
        }
        (View::Fleet, KeyCode::Char('=')) => {
            app.sort.descending = !app.sort.descending;
            app.recompute_rows();
        }
        (View::Fleet, KeyCode::Char(' ')) => toggle_mark(app),
        (View::Fleet, KeyCode::Char('*')) => mark_all_shown(app),
        (View::Fleet, KeyCode::Enter) => {
            if let Some(addr) = app.selected_addr() {
                app.view = View::Detail(addr);
            }
        }
        (View::Fleet, KeyCode::Char('l')) => app.view = View::Log,
        (View::Fleet, KeyCode::Esc) => {
            if app.marked.is_empty() {
                app.set_filter(String::new());
            } else {
                app.marked.clear();
            }
        }
        _ => {}
    }
    Vec::new()
}

/// Space: marks the selected host (or unmarks it) and moves down.
fn toggle_mark(app: &mut App) {
    if let Some(addr) = app.selected_addr()
        && !app.marked.remove(&addr)
    {
        app.marked.insert(addr);
    }
    app.move_by(1);
}

/// `*`: marks every host the filter shows; again, none.
fn mark_all_shown(app: &mut App) {
    let shown: Vec<std::net::IpAddr> = app
        .rows
        .iter()
        .map(|&i| app.fleet.hosts[i as usize].addr)
        .collect();
    if shown.iter().all(|a| app.marked.contains(a)) {
        app.marked.clear();
    } else {
        app.marked.extend(shown);
    }
}

/// In the detail view, `j`/`k` walk the table's hosts; the log pane of
/// the host left closes.
fn detail_step(app: &mut App, delta: isize) -> Vec<Command> {
    app.move_by(delta);
    if let Some(addr) = app.selected_addr() {
        app.view = View::Detail(addr);
    }
    if app
        .log_pane
        .as_ref()
        .is_some_and(|p| Some(p.addr) != app.selected_addr())
    {
        return agent_log::close(app).unwrap_or_default();
    }
    Vec::new()
}
