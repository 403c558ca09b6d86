//! Running a command from the console, without a terminal: `!` asks with
//! the host list, the request goes to the engine, results arrive as
//! events and are drawn grouped; Enter, `D` and the prompt's history.

use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::app::{App, InputKind, Msg, View, update};
use super::sample;
use super::theme::ThemeSet;
use super::view::view;
use crate::engine::{Command, Event, JobId, JobKind, JobOutput};
use crate::model::run::{RunFailure, RunResult};

const NOW: i64 = 1_700_000_000;

fn app() -> App {
    let themes = ThemeSet::built_in();
    let theme = themes.get("default").unwrap();
    let mut app = App::new(themes, theme);
    update(&mut app, Msg::Resize(100, 24));
    update(&mut app, Msg::Snapshot(Arc::new(sample::fleet(6, NOW))));
    app
}

fn press(app: &mut App, code: KeyCode) -> Vec<Command> {
    update(app, Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        press(app, KeyCode::Char(c));
    }
}

fn screen(app: &App) -> String {
    let (w, h) = app.size;
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    let fleet = Arc::clone(&app.fleet);
    terminal.draw(|f| view(app, &fleet, f)).unwrap();
    let buffer = terminal.backend().buffer();
    (0..h)
        .map(|y| {
            (0..w)
                .map(|x| buffer[(x, y)].symbol().to_string())
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ran(host: &str, exit: u32, stdout: &str) -> RunResult {
    RunResult {
        host: host.into(),
        address: host.into(),
        exit: Some(exit),
        stdout: stdout.into(),
        stderr: String::new(),
        dropped: 0,
        duration: 0.1,
        error_class: None,
        error: None,
    }
}

fn output(app: &mut App, id: JobId, output: JobOutput) {
    update(app, Msg::Engine(Event::Output { id, output }));
}

/// `!`, the command, Enter, then y: the run the engine is asked for.
fn run_on_marked(app: &mut App, command: &str) -> Vec<Command> {
    press(app, KeyCode::Char('!'));
    assert_eq!(app.input.as_ref().unwrap().kind, InputKind::Run);
    typed(app, command);
    assert!(
        press(app, KeyCode::Enter).is_empty(),
        "nothing runs before the yes"
    );
    press(app, KeyCode::Char('y'))
}

#[test]
fn bang_asks_with_the_hosts_then_shows_the_results_grouped() {
    let mut app = app();
    // Mark three hosts: 10.0.0.1-3.
    for _ in 0..3 {
        press(&mut app, KeyCode::Char(' '));
    }
    press(&mut app, KeyCode::Char('!'));
    typed(&mut app, "uname -sm");
    press(&mut app, KeyCode::Enter);
    let asking = screen(&app);
    assert!(asking.contains("$ uname -sm"), "{asking}");
    assert!(asking.contains("Run on 3 hosts?"), "{asking}");
    assert!(asking.contains("10.0.0.2"), "{asking}");
    let sent = press(&mut app, KeyCode::Char('y'));
    let [Command::Run(request)] = sent.as_slice() else {
        panic!("{sent:?}");
    };
    assert_eq!(request.command, "uname -sm");
    assert_eq!(request.hosts, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    assert_eq!(app.view, View::Run);

    let id = JobId(7);
    update(
        &mut app,
        Msg::Engine(Event::JobStarted {
            id,
            kind: JobKind::Run,
            label: "uname -sm".into(),
        }),
    );
    output(
        &mut app,
        id,
        JobOutput::Ran(Box::new(ran("10.0.0.1", 0, "Linux x86_64\n"))),
    );
    assert!(
        screen(&app).contains("running: 1/3 hosts"),
        "{}",
        screen(&app)
    );
    output(
        &mut app,
        id,
        JobOutput::Ran(Box::new(ran("10.0.0.3", 0, "Linux x86_64\n"))),
    );
    let mut late = ran("10.0.0.2", 0, "");
    late.exit = None;
    late.error_class = Some(RunFailure::Timeout);
    late.error = Some("10.0.0.2 (10.0.0.2:22): timed out after 30s".into());
    output(&mut app, id, JobOutput::Ran(Box::new(late)));
    output(&mut app, id, JobOutput::RunDone { not_started: 0 });

    let shown = screen(&app);
    assert!(shown.contains("3 hosts: 2 ok, 1 timeout"), "{shown}");
    let outlier = shown.lines().position(|l| l.contains("10.0.0.2 ")).unwrap();
    let group = shown
        .lines()
        .position(|l| l.contains("10.0.0.[1,3]"))
        .unwrap();
    assert!(outlier < group, "the outlier first:\n{shown}");
    assert!(
        shown.lines().nth(group).unwrap().contains("Linux x86_64"),
        "{shown}"
    );

    // Enter: the selected group's full output; Esc back.
    press(&mut app, KeyCode::Char('j'));
    press(&mut app, KeyCode::Enter);
    let full = screen(&app);
    assert!(full.contains("10.0.0.[1,3] (2) ok"), "{full}");
    press(&mut app, KeyCode::Esc);
    assert!(screen(&app).contains("FIRST LINE"));

    // D on two groups: their outputs line by line.
    press(&mut app, KeyCode::Char('D'));
    press(&mut app, KeyCode::Char('k'));
    press(&mut app, KeyCode::Char('D'));
    let diffed = screen(&app);
    assert!(diffed.contains("- Linux x86_64"), "{diffed}");
    assert!(
        diffed.contains("+ 10.0.0.2 (10.0.0.2:22): timed out"),
        "{diffed}"
    );
    press(&mut app, KeyCode::Esc);
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.view, View::Fleet);
}

#[test]
fn the_prompt_keeps_a_history_and_walks_it_with_the_arrows() {
    let mut app = app();
    app.runs.history = vec!["uptime".into()];
    let sent = run_on_marked(&mut app, "df -h");
    assert!(matches!(sent.as_slice(), [Command::Run(_)]));
    assert_eq!(app.runs.history, ["uptime", "df -h"]);
    press(&mut app, KeyCode::Esc);
    press(&mut app, KeyCode::Char('!'));
    press(&mut app, KeyCode::Up);
    assert_eq!(app.input.as_ref().unwrap().text, "df -h");
    press(&mut app, KeyCode::Up);
    assert_eq!(app.input.as_ref().unwrap().text, "uptime");
    press(&mut app, KeyCode::Down);
    assert_eq!(app.input.as_ref().unwrap().text, "df -h");
    press(&mut app, KeyCode::Down);
    assert_eq!(app.input.as_ref().unwrap().text, "");
    press(&mut app, KeyCode::Esc);
    // `:run` is the same, asked first too; a rerun moves to the newest.
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "run uptime");
    press(&mut app, KeyCode::Enter);
    assert!(app.confirm.is_some());
    assert_eq!(app.runs.history, ["df -h", "uptime"]);
    press(&mut app, KeyCode::Char('n'));
    assert!(app.confirm.is_none());
}

#[test]
fn capital_s_asks_the_front_end_for_a_shell_on_the_selected_host() {
    let mut app = app();
    press(&mut app, KeyCode::Char('j'));
    press(&mut app, KeyCode::Char('S'));
    assert_eq!(app.shell, Some("10.0.0.2".parse().unwrap()));
    app.shell = None;
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Char('S'));
    assert_eq!(app.shell, Some("10.0.0.2".parse().unwrap()));
}

#[test]
fn capital_l_follows_the_agent_log_in_the_detail_and_leaving_stops_it() {
    let mut app = app();
    press(&mut app, KeyCode::Enter);
    let sent = press(&mut app, KeyCode::Char('L'));
    let [Command::Logs(request)] = sent.as_slice() else {
        panic!("{sent:?}");
    };
    assert_eq!((request.host.as_str(), request.follow), ("10.0.0.1", true));
    assert!(
        screen(&app).contains("agent log · connecting"),
        "{}",
        screen(&app)
    );
    let id = JobId(3);
    update(
        &mut app,
        Msg::Engine(Event::JobStarted {
            id,
            kind: JobKind::Logs,
            label: "agent log of 10.0.0.1".into(),
        }),
    );
    output(
        &mut app,
        id,
        JobOutput::LogLines {
            host: "10.0.0.1".into(),
            lines: vec!["agent started".into(), "renewed \x1b]0;x\x07".into()],
        },
    );
    let shown = screen(&app);
    assert!(shown.contains("agent log · following"), "{shown}");
    assert!(shown.contains("agent started"), "{shown}");
    assert!(!shown.contains('\x1b'), "{shown}");
    // Leaving the host stops following (and tells the poller no detail is open).
    let sent = press(&mut app, KeyCode::Esc);
    assert!(
        matches!(sent.as_slice(), [Command::CancelJob(j), Command::Focus { addr: None }] if *j == id),
        "{sent:?}"
    );
    assert!(app.log_pane.is_none());
}
