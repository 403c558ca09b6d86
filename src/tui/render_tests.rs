//! The views drawn into ratatui's `TestBackend`: insta snapshots of the
//! main screens at 80x24 and 160x48, and colours checked cell by cell where
//! they carry meaning (snapshots drop colour).

use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;

use super::app::{App, Msg, update};
use super::sample;
use super::theme::ThemeSet;
use super::view::view;
use crate::engine::{Event, Prompt, PromptId, PromptKind};

const NOW: i64 = 1_700_000_000;

fn app(hosts: usize, width: u16, height: u16, theme: &str) -> App {
    let themes = ThemeSet::built_in();
    let theme = themes.get(theme).unwrap();
    let mut app = App::new(themes, theme);
    update(&mut app, Msg::Resize(width, height));
    update(&mut app, Msg::Snapshot(Arc::new(sample::fleet(hosts, NOW))));
    update(&mut app, Msg::Engine(Event::InventoryLoaded { hosts }));
    app
}

fn keys(app: &mut App, keys: &[KeyCode]) {
    for key in keys {
        update(app, Msg::Key(KeyEvent::new(*key, KeyModifiers::NONE)));
    }
}

fn draw(app: &App) -> Terminal<TestBackend> {
    let (w, h) = app.size;
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    let fleet = Arc::clone(&app.fleet);
    terminal.draw(|f| view(app, &fleet, f)).unwrap();
    terminal
}

/// Where `text` starts on screen.
fn find(buffer: &Buffer, text: &str) -> (u16, u16) {
    let area = buffer.area;
    for y in 0..area.height {
        let line: String = (0..area.width)
            .map(|x| buffer[(x, y)].symbol().to_string())
            .collect();
        if let Some(byte) = line.find(text) {
            let x = line[..byte].chars().count() as u16;
            return (x, y);
        }
    }
    panic!("{text:?} is not on screen");
}

#[test]
fn fleet_table_80x24() {
    let app = app(40, 80, 24, "default");
    insta::assert_snapshot!(draw(&app).backend());
}

#[test]
fn fleet_table_160x48() {
    let mut app = app(40, 160, 48, "default");
    keys(&mut app, &[KeyCode::Char(' '), KeyCode::Char('j')]);
    insta::assert_snapshot!(draw(&app).backend());
}

#[test]
fn host_detail_80x24() {
    let mut app = app(40, 80, 24, "default");
    keys(&mut app, &[KeyCode::Enter]);
    insta::assert_snapshot!(draw(&app).backend());
}

#[test]
fn host_detail_160x48() {
    let mut app = app(40, 160, 48, "default");
    keys(&mut app, &[KeyCode::Enter]);
    insta::assert_snapshot!(draw(&app).backend());
}

#[test]
fn help_overlay_80x24() {
    let mut app = app(40, 80, 24, "default");
    keys(&mut app, &[KeyCode::Char('?')]);
    insta::assert_snapshot!(draw(&app).backend());
}

#[test]
fn deploy_confirmation_80x24() {
    let mut app = app(40, 80, 24, "default");
    keys(
        &mut app,
        &[KeyCode::Char(' '), KeyCode::Char(' '), KeyCode::Char('d')],
    );
    insta::assert_snapshot!(draw(&app).backend());
}

#[test]
fn password_prompt_is_masked_80x24() {
    let mut app = app(40, 80, 24, "default");
    let prompt = Prompt {
        id: PromptId(1),
        job: None,
        kind: PromptKind::Password {
            user: "root".into(),
            host: "10.0.0.1".into(),
        },
    };
    update(&mut app, Msg::Engine(Event::PromptNeeded(prompt)));
    keys(
        &mut app,
        &[KeyCode::Char('s'), KeyCode::Char('3'), KeyCode::Char('k')],
    );
    let terminal = draw(&app);
    let screen = terminal.backend().to_string();
    assert!(!screen.contains("s3k"), "a secret is never drawn");
    assert!(screen.contains("•••"));
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn host_key_prompt_shows_the_fingerprint() {
    let mut app = app(4, 80, 24, "default");
    let prompt = Prompt {
        id: PromptId(1),
        job: None,
        kind: PromptKind::HostKey {
            host: "10.0.0.2".into(),
            fingerprint: "SHA256:q0cNMGp7Cq8T9sRvGk2p7gX6S2aQ8bW1YHn3Yb5fKxA".into(),
        },
    };
    update(&mut app, Msg::Engine(Event::PromptNeeded(prompt)));
    let screen = draw(&app).backend().to_string();
    assert!(screen.contains("SHA256:q0cNMGp7Cq8T9sRvGk2p7gX6S2aQ8bW1YHn3Yb5fKxA"));
    assert!(screen.contains("y: trust"));
}

#[test]
fn an_empty_fleet_says_how_to_start() {
    let app = app(0, 80, 24, "default");
    let screen = draw(&app).backend().to_string();
    assert!(screen.contains("Press s to scan"), "{screen}");
}

#[test]
fn token_near_expiry_and_hosts_down_are_coloured() {
    let app = app(20, 160, 48, "default");
    let theme = app.theme.clone();
    let terminal = draw(&app);
    let buffer = terminal.backend().buffer();
    let (token_x, _) = find(buffer, "TOKEN");
    let (reach_x, _) = find(buffer, "REACH");
    // Host 4 (10.0.0.5) has ten minutes left: a warning.
    let (_, y) = find(buffer, "10.0.0.5 ");
    assert_eq!(buffer[(token_x, y)].symbol(), "1");
    assert_eq!(buffer[(token_x, y)].fg, theme.warn);
    // Host 1 has hours left: fine.
    let (_, y) = find(buffer, "10.0.0.2 ");
    assert_eq!(buffer[(token_x, y)].fg, theme.ok);
    // Host 5 (10.0.0.6) expired: an error.
    let (_, y) = find(buffer, "10.0.0.6 ");
    assert_eq!(buffer[(token_x, y)].fg, theme.error);
    // Host 9 (10.0.0.10) is silent: its reach is an error, the rest muted.
    let (x, y) = find(buffer, "10.0.0.10 ");
    assert_eq!(buffer[(reach_x, y)].fg, theme.error);
    assert_eq!(buffer[(x, y)].fg, theme.muted);
    // The cursor row is drawn in the selection colours.
    let (x, y) = find(buffer, "10.0.0.1 ");
    assert_eq!(buffer[(x, y)].bg, theme.selected_bg);
}

#[test]
fn no_color_carries_meaning_without_colours() {
    let themes = ThemeSet::load(None, true);
    let theme = themes.get("default").unwrap();
    let mut app = App::new(themes, theme);
    update(&mut app, Msg::Resize(160, 48));
    update(&mut app, Msg::Snapshot(Arc::new(sample::fleet(20, NOW))));
    let terminal = draw(&app);
    let buffer = terminal.backend().buffer();
    for y in 0..48 {
        for x in 0..160 {
            let cell = &buffer[(x, y)];
            assert_eq!(cell.fg, ratatui::style::Color::Reset, "({x},{y})");
            assert_eq!(cell.bg, ratatui::style::Color::Reset, "({x},{y})");
        }
    }
    let (reach_x, _) = find(buffer, "REACH");
    let (_, y) = find(buffer, "10.0.0.10 ");
    assert!(
        buffer[(reach_x, y)]
            .modifier
            .contains(ratatui::style::Modifier::BOLD)
    );
}

#[test]
fn every_view_fits_a_tiny_terminal_without_panicking() {
    for (w, h) in [(20, 5), (80, 24), (40, 10), (1, 1)] {
        for keys_pressed in [
            vec![],
            vec![KeyCode::Enter],
            vec![KeyCode::Char('?')],
            vec![KeyCode::Char('l')],
            vec![KeyCode::Char('s')],
        ] {
            let mut app = app(5, w, h, "catppuccin-mocha");
            keys(&mut app, &keys_pressed);
            draw(&app);
        }
    }
}

#[test]
fn jobs_and_events_full_screen_80x24() {
    let mut app = app(40, 80, 24, "default");
    for i in 0..30 {
        update(
            &mut app,
            Msg::Engine(Event::HostSilent {
                addr: format!("10.0.1.{i}").parse().unwrap(),
            }),
        );
    }
    keys(
        &mut app,
        &[KeyCode::Char('l'), KeyCode::Char('k'), KeyCode::Char('k')],
    );
    insta::assert_snapshot!(draw(&app).backend());
}

#[test]
fn scan_prompt_80x24() {
    let mut app = app(40, 80, 24, "light");
    keys(&mut app, &[KeyCode::Char('s')]);
    for c in "10.0.0.0/24".chars() {
        keys(&mut app, &[KeyCode::Char(c)]);
    }
    insta::assert_snapshot!(draw(&app).backend());
}

#[test]
fn the_timeline_shares_the_charts_time_axis_120x36() {
    let mut app = app(40, 120, 36, "default");
    keys(&mut app, &[KeyCode::Enter]);
    let terminal = draw(&app);
    let buffer = terminal.backend().buffer();
    let screen = terminal.backend().to_string();
    for lane in ["token│", " cert│", "  reg│", " beat│"] {
        assert!(screen.contains(lane), "no {lane:?} lane:\n{screen}");
    }
    // The lanes' axis is the charts' value axis: the same column, so a
    // column is the same instant in each.
    let (token_x, _) = find(buffer, "token│");
    let (cpu_x, _) = find(buffer, "  100│");
    assert_eq!(token_x, cpu_x, "{screen}");
    let (now_x, _) = find(buffer, "now│");
    let (right_border, _) = find(buffer, "┐┌ CPU");
    assert!(now_x > right_border, "the axis runs to the right edge");
}

#[test]
fn tags_show_in_a_column_only_when_some_host_has_them_and_in_the_detail() {
    let mut app = app(10, 160, 48, "default");
    let screen = draw(&app).backend().to_string();
    assert!(!screen.contains("TAGS"), "{screen}");
    let mut fleet = sample::fleet(10, NOW);
    let host = Arc::make_mut(&mut fleet.hosts[0]);
    host.tags.insert("role".into(), "web".into());
    host.tags.insert("canary".into(), String::new());
    update(&mut app, Msg::Snapshot(Arc::new(fleet)));
    let terminal = draw(&app);
    let screen = terminal.backend().to_string();
    assert!(screen.contains("TAGS"), "{screen}");
    assert!(screen.contains("canary role=web"), "{screen}");
    // The column sits after OS.
    let (tags_x, y) = find(terminal.backend().buffer(), "TAGS");
    let (os_x, _) = find(terminal.backend().buffer(), "OS ");
    assert!(os_x < tags_x, "OS at {os_x}, TAGS at {tags_x} (row {y})");
    keys(&mut app, &[KeyCode::Enter]);
    let screen = draw(&app).backend().to_string();
    assert!(screen.contains("tags canary role=web"), "{screen}");
}

#[test]
fn the_jobs_pane_shows_a_rollouts_batch_and_each_batchs_results() {
    let mut app = app(10, 160, 48, "default");
    let mut fleet = sample::fleet(10, NOW);
    let job = &mut fleet.jobs[0];
    job.kind = crate::engine::JobKind::Deploy;
    (job.done, job.total) = (3, 6);
    job.batch = Some((3, 3));
    job.batch_results = vec![(1, 0), (1, 1)];
    update(&mut app, Msg::Snapshot(Arc::new(fleet)));
    let screen = draw(&app).backend().to_string();
    assert!(
        screen.contains("deploy 3/6 batch 3/3 [1✓0✗][1✓1✗]"),
        "{screen}"
    );
}

#[test]
fn a_completed_command_line_is_drawn_with_its_choices() {
    let mut app = app(10, 80, 24, "default");
    keys(
        &mut app,
        &[KeyCode::Char(':'), KeyCode::Char('t'), KeyCode::Tab],
    );
    let screen = draw(&app).backend().to_string();
    assert!(screen.contains(":theme "), "{screen}");
    keys(
        &mut app,
        &[
            KeyCode::Esc,
            KeyCode::Char(':'),
            KeyCode::Char('r'),
            KeyCode::Tab,
        ],
    );
    let screen = draw(&app).backend().to_string();
    assert!(screen.contains(":re█"), "the common prefix: {screen}");
    keys(&mut app, &[KeyCode::Tab]);
    let screen = draw(&app).backend().to_string();
    assert!(screen.contains(":re█   refresh  revoke"), "{screen}");
}

#[test]
fn a_read_only_console_says_so_in_its_header() {
    let mut app = app(10, 80, 24, "default");
    assert!(!draw(&app).backend().to_string().contains("READ-ONLY"));
    app.read_only = true;
    let screen = draw(&app).backend().to_string();
    assert!(
        screen
            .lines()
            .next()
            .unwrap()
            .contains("fleetctl READ-ONLY"),
        "{screen}"
    );
}

#[test]
fn custom_commands_are_listed_under_help_and_named_in_their_confirmation() {
    let mut app = app(10, 100, 40, "default");
    app.custom = crate::tui::custom::parse(
        "[[command]]\nname = \"wipe\"\nkey = \"W\"\ncommand = \"rm -rf /tmp/x\"\nconfirm = true\ndangerous = true\n",
        &[],
    )
    .unwrap();
    keys(&mut app, &[KeyCode::Char('?')]);
    let screen = draw(&app).backend().to_string();
    assert!(
        screen.contains("W wipe (rm -rf /tmp/x) [dangerous]"),
        "{screen}"
    );
    keys(&mut app, &[KeyCode::Esc, KeyCode::Char('W')]);
    let screen = draw(&app).backend().to_string();
    assert!(screen.contains("Run wipe on 1 host?"), "{screen}");
}

#[test]
fn the_resume_question_says_how_many_hosts_are_left() {
    let mut app = app(10, 100, 30, "default");
    update(&mut app, Msg::Engine(Event::RolloutUnfinished { hosts: 3 }));
    let screen = draw(&app).backend().to_string();
    assert!(
        screen.contains("A rollout was cut short with 3 host(s) left. Resume it?"),
        "{screen}"
    );
    assert!(screen.contains("y / Enter: go"), "{screen}");
}
