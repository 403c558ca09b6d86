//! `update` without a terminal: keys, mouse and engine events in; state
//! and engine commands out.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};

use super::app::{App, InputKind, Level, Msg, View, update};
use super::sample;
use super::theme::ThemeSet;
use crate::engine::{Answer, Command, Event, Prompt, PromptId, PromptKind, Secret};
use crate::model::AgentState;

const NOW: i64 = 1_700_000_000;

fn app(hosts: usize) -> App {
    let themes = ThemeSet::built_in();
    let theme = themes.get("default").unwrap();
    let mut app = App::new(themes, theme);
    update(&mut app, Msg::Resize(80, 24));
    update(&mut app, Msg::Snapshot(Arc::new(sample::fleet(hosts, NOW))));
    app
}

fn press(app: &mut App, code: KeyCode) -> Vec<Command> {
    update(app, Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

fn typed(app: &mut App, text: &str) -> Vec<Command> {
    let mut out = Vec::new();
    for c in text.chars() {
        out.extend(press(app, KeyCode::Char(c)));
    }
    out
}

fn addr(i: u32) -> IpAddr {
    IpAddr::V4((0x0a00_0001 + i).into())
}

#[test]
fn moving_paging_and_jumping() {
    let mut app = app(100);
    // 80x24: 24 - header - footer - 6 (pane) - table header = 15 rows.
    assert_eq!(app.areas().table_rows(), 15);
    press(&mut app, KeyCode::Char('j'));
    press(&mut app, KeyCode::Down);
    assert_eq!(app.selected, 2);
    press(&mut app, KeyCode::Char('k'));
    assert_eq!(app.selected, 1);
    press(&mut app, KeyCode::PageDown);
    assert_eq!(app.selected, 16);
    assert_eq!(app.offset, 2, "the cursor stays on screen");
    press(&mut app, KeyCode::Char('G'));
    assert_eq!(app.selected, 99);
    assert_eq!(app.offset, 85);
    press(&mut app, KeyCode::Char('g'));
    assert_eq!((app.selected, app.offset), (0, 0));
    press(&mut app, KeyCode::Up);
    assert_eq!(app.selected, 0, "clamped at the top");
}

#[test]
fn filter_as_you_type_with_state_terms_and_esc_clears() {
    let mut app = app(100);
    press(&mut app, KeyCode::Char('/'));
    assert_eq!(app.input.as_ref().unwrap().kind, InputKind::Filter);
    typed(&mut app, "agent:none");
    let fleet = Arc::clone(&app.fleet);
    assert!(!app.rows.is_empty());
    assert!(
        app.rows
            .iter()
            .all(|&i| fleet.hosts[i as usize].agent == AgentState::None)
    );
    press(&mut app, KeyCode::Enter);
    assert!(app.input.is_none());
    assert_eq!(app.filter_text, "agent:none");
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.rows.len(), 100, "Esc in the table clears the filter");

    press(&mut app, KeyCode::Char('/'));
    typed(&mut app, "token:expiring");
    // Hosts 4, 14, ... have 10 minutes left.
    assert_eq!(app.rows.len(), 10);
    assert_eq!(app.selected_addr(), Some(addr(4)));
    press(&mut app, KeyCode::Esc);

    press(&mut app, KeyCode::Char('/'));
    typed(&mut app, "node-0042");
    assert_eq!(app.rows.len(), 1);
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.rows.len(), 100, "Esc while typing drops the filter");
}

#[test]
fn a_bad_filter_says_what_is_allowed() {
    let mut app = app(10);
    press(&mut app, KeyCode::Char('/'));
    typed(&mut app, "agent:sleepy");
    let (level, text) = app.status.clone().unwrap();
    assert_eq!(level, Level::Error);
    assert!(text.contains("running"), "{text}");
    assert_eq!(app.rows.len(), 10, "the last good filter stays");
}

#[test]
fn sorting_by_column_and_reversing() {
    let mut app = app(50);
    // Address → Host → OS → Tags → Reach → SSH → Agent → REG → Token → CPU.
    for _ in 0..9 {
        press(&mut app, KeyCode::Char('>'));
    }
    assert_eq!(app.sort.column.title(), "CPU");
    let cpu = |app: &App, row: usize| {
        app.fleet.hosts[app.rows[row] as usize]
            .stats
            .as_ref()
            .map(|s| s.cpu.total_pct)
    };
    assert!(cpu(&app, 0) <= cpu(&app, 1));
    assert_eq!(cpu(&app, 49), None, "hosts without stats sort last");
    press(&mut app, KeyCode::Char('='));
    assert!(app.sort.descending);
    assert!(cpu(&app, 0) >= cpu(&app, 1));
    press(&mut app, KeyCode::Char('<'));
    assert_eq!(app.sort.column.title(), "TOKEN");
}

#[test]
fn marks_then_deploy_asks_and_sends_the_marked_hosts() {
    let mut app = app(10);
    press(&mut app, KeyCode::Char(' '));
    press(&mut app, KeyCode::Char(' '));
    assert_eq!(app.marked.len(), 2);
    assert!(press(&mut app, KeyCode::Char('d')).is_empty(), "asks first");
    let confirm = app.confirm.clone().unwrap();
    assert_eq!(confirm.hosts, [addr(0), addr(1)]);
    let sent = press(&mut app, KeyCode::Char('y'));
    assert!(
        matches!(&sent[..], [Command::Deploy(r)] if r.hosts == [addr(0).to_string(), addr(1).to_string()]),
        "{sent:?}"
    );
    assert!(app.marked.is_empty() && app.confirm.is_none());

    // Without marks, the host under the cursor; n cancels.
    press(&mut app, KeyCode::Char('r'));
    assert_eq!(app.confirm.as_ref().unwrap().hosts, [addr(2)]);
    assert!(press(&mut app, KeyCode::Char('n')).is_empty());
    assert!(app.confirm.is_none());
}

#[test]
fn fingerprint_and_scan_keys_send_commands() {
    let mut app = app(10);
    let sent = press(&mut app, KeyCode::Char('f'));
    assert!(matches!(&sent[..], [Command::Fingerprint(r)] if r.hosts == [addr(0).to_string()]));

    press(&mut app, KeyCode::Char('s'));
    assert_eq!(app.input.as_ref().unwrap().kind, InputKind::Scan);
    typed(&mut app, "127.6.0.0/28");
    let sent = press(&mut app, KeyCode::Enter);
    assert!(matches!(&sent[..], [Command::Scan(r)] if r.targets == ["127.6.0.0/28"]));
}

#[test]
fn the_command_line() {
    let mut app = app(10);
    let run = |app: &mut App, line: &str| {
        press(app, KeyCode::Char(':'));
        typed(app, line);
        press(app, KeyCode::Enter)
    };
    let sent = run(&mut app, "scan 10.0.0.0/24 10.0.1.5");
    assert!(
        matches!(&sent[..], [Command::Scan(r)] if r.targets == ["10.0.0.0/24", "10.0.1.5"] && r.exclude.is_empty())
    );
    // --exclude as `fleetctl scan` takes it: repeated, comma-separated, or with `=`.
    let sent = run(
        &mut app,
        "scan 10.0.0.0/24 --exclude 10.0.0.1,10.0.0.2 --exclude=10.0.0.9 10.0.1.5",
    );
    assert!(
        matches!(&sent[..], [Command::Scan(r)]
            if r.targets == ["10.0.0.0/24", "10.0.1.5"]
            && r.exclude == ["10.0.0.1", "10.0.0.2", "10.0.0.9"]),
        "{sent:?}"
    );
    for bad in [
        "scan --exclude 10.0.0.1",
        "scan 10.0.0.0/24 --exclude",
        "scan 10.0.0.0/24 --rate 5",
    ] {
        assert!(run(&mut app, bad).is_empty(), "{bad}");
        assert_eq!(app.status.as_ref().unwrap().0, Level::Error, "{bad}");
    }
    run(&mut app, "theme light");
    assert_eq!(app.theme.name, "light");
    run(&mut app, "theme nope");
    let (level, text) = app.status.clone().unwrap();
    assert_eq!(level, Level::Error);
    assert!(text.contains("catppuccin-mocha"), "{text}");
    run(&mut app, "deploy");
    assert!(app.confirm.is_some());
    press(&mut app, KeyCode::Esc);
    run(&mut app, "sort cpu");
    assert_eq!(app.sort.column.title(), "CPU");
    let sent = run(&mut app, "cancel");
    assert!(matches!(&sent[..], [Command::CancelJob(id)] if id.0 == 1));
    run(&mut app, "frobnicate");
    assert!(app.status.as_ref().unwrap().1.contains(":frobnicate"));
    assert!(!app.quit);
    run(&mut app, "q");
    assert!(app.quit);
}

#[test]
fn detail_help_log_and_quit() {
    let mut app = app(10);
    press(&mut app, KeyCode::Char('j'));
    let sent = press(&mut app, KeyCode::Enter);
    assert_eq!(app.view, View::Detail(addr(1)));
    assert!(
        matches!(&sent[..], [Command::Focus { addr: Some(a) }] if *a == addr(1)),
        "the engine is told which agent to read directly: {sent:?}"
    );
    let sent = press(&mut app, KeyCode::Char('j'));
    assert_eq!(app.view, View::Detail(addr(2)), "j walks the hosts");
    assert!(matches!(&sent[..], [Command::Focus { addr: Some(a) }] if *a == addr(2)));
    let sent = press(&mut app, KeyCode::Char('f'));
    assert!(matches!(&sent[..], [Command::Fingerprint(r)] if r.hosts == [addr(2).to_string()]));
    let sent = press(&mut app, KeyCode::Esc);
    assert_eq!(app.view, View::Fleet);
    assert!(matches!(&sent[..], [Command::Focus { addr: None }]));
    press(&mut app, KeyCode::Char('?'));
    assert!(app.help);
    press(&mut app, KeyCode::Char('q'));
    assert!(!app.help && !app.quit, "q closes help first");
    press(&mut app, KeyCode::Char('l'));
    assert_eq!(app.view, View::Log);
    press(&mut app, KeyCode::Esc);
    press(&mut app, KeyCode::Char('q'));
    assert!(app.quit);
}

#[test]
fn prompts_become_modals_and_answers_go_back() {
    let mut app = app(3);
    let password = Prompt {
        id: PromptId(7),
        job: None,
        kind: PromptKind::Password {
            user: "root".into(),
            host: "10.0.0.1".into(),
        },
    };
    let host_key = Prompt {
        id: PromptId(8),
        job: None,
        kind: PromptKind::HostKey {
            host: "10.0.0.2".into(),
            fingerprint: "SHA256:abc".into(),
        },
    };
    update(&mut app, Msg::Engine(Event::PromptNeeded(password)));
    update(&mut app, Msg::Engine(Event::PromptNeeded(host_key)));
    // Keys go to the prompt, not the table.
    assert!(typed(&mut app, "hunter2q").is_empty());
    assert!(!app.quit);
    press(&mut app, KeyCode::Backspace);
    let sent = press(&mut app, KeyCode::Enter);
    assert!(matches!(
        &sent[..],
        [Command::AnswerPrompt { id: PromptId(7), answer: Answer::Secret(Secret(s)) }] if s == "hunter2"
    ));
    assert!(
        press(&mut app, KeyCode::Char('x')).is_empty(),
        "only y or n"
    );
    let sent = press(&mut app, KeyCode::Char('y'));
    assert!(matches!(
        &sent[..],
        [Command::AnswerPrompt {
            id: PromptId(8),
            answer: Answer::Confirm(true)
        }]
    ));
    assert!(app.prompts.is_empty());

    let passphrase = Prompt {
        id: PromptId(9),
        job: None,
        kind: PromptKind::Passphrase {
            key: PathBuf::from("/home/op/.ssh/id_ed25519"),
        },
    };
    update(&mut app, Msg::Engine(Event::PromptNeeded(passphrase)));
    typed(&mut app, "abc");
    update(
        &mut app,
        Msg::Engine(Event::PromptWithdrawn { id: PromptId(9) }),
    );
    assert!(app.prompts.is_empty() && app.prompt_text.0.is_empty());
}

#[test]
fn mouse_wheel_scrolls_and_click_selects() {
    let mut app = app(100);
    let mouse = |kind, row| {
        Msg::Mouse(MouseEvent {
            kind,
            column: 5,
            row,
            modifiers: KeyModifiers::NONE,
        })
    };
    update(&mut app, mouse(MouseEventKind::ScrollDown, 5));
    assert_eq!(app.selected, 3);
    // Screen line 1 is the table header; line 2 the first row shown.
    update(&mut app, mouse(MouseEventKind::Down(MouseButton::Left), 6));
    assert_eq!(app.selected, app.offset + 4);
    update(&mut app, mouse(MouseEventKind::Down(MouseButton::Left), 0));
    assert_eq!(
        app.selected,
        app.offset + 4,
        "a click on the header selects nothing"
    );
}

#[test]
fn engine_events_fill_the_log_and_snapshots_keep_the_cursor_on_its_host() {
    let mut app = app(20);
    for _ in 0..5 {
        press(&mut app, KeyCode::Char('j'));
    }
    update(
        &mut app,
        Msg::Engine(Event::Error {
            addr: Some(addr(5)),
            message: "boom".into(),
        }),
    );
    assert_eq!(app.log.back().unwrap().text, "10.0.0.6: boom");
    assert_eq!(app.log.back().unwrap().level, Level::Error);
    // The same fleet sorted differently: the cursor follows host 5.
    press(&mut app, KeyCode::Char('='));
    assert_eq!(app.selected_addr(), Some(addr(5)));
    update(
        &mut app,
        Msg::Snapshot(Arc::new(sample::fleet(20, NOW + 2))),
    );
    assert_eq!(app.selected_addr(), Some(addr(5)));
}

/// A sample fleet whose hosts 0..6 carry tags: even ones `web`, odd ones
/// `db`, the first three `staging`, and `role=` their kind.
fn tagged_app() -> App {
    let themes = ThemeSet::built_in();
    let theme = themes.get("default").unwrap();
    let mut app = App::new(themes, theme);
    update(&mut app, Msg::Resize(80, 24));
    let mut fleet = sample::fleet(20, NOW);
    for (i, host) in fleet.hosts.iter_mut().enumerate().take(6) {
        let host = Arc::make_mut(host);
        let kind = if i % 2 == 0 { "web" } else { "db" };
        host.tags.insert(kind.into(), String::new());
        host.tags.insert("role".into(), kind.into());
        if i < 3 {
            host.tags.insert("staging".into(), String::new());
        }
    }
    update(&mut app, Msg::Snapshot(Arc::new(fleet)));
    app
}

#[test]
fn the_filter_takes_tags_and_host_patterns() {
    let mut app = tagged_app();
    let shown = |app: &App| -> Vec<IpAddr> {
        app.rows
            .iter()
            .map(|&i| app.fleet.hosts[i as usize].addr)
            .collect()
    };
    for (filter, want) in [
        ("tag:role=web", vec![0, 2, 4]),
        ("tag:role=d*", vec![1, 3, 5]),
        ("tag:staging", vec![0, 1, 2]),
        ("web:&staging", vec![0, 2]),
        ("web:&staging:!10.0.0.1", vec![2]),
        ("~role_d", vec![1, 3, 5]),
        ("tag:role=web agent:none", vec![]),
        ("role=web", vec![0, 2, 4]),
    ] {
        app.set_filter(filter.to_string());
        assert_eq!(app.status, None, "{filter}");
        let want: Vec<IpAddr> = want.into_iter().map(addr).collect();
        if filter.contains("agent:none") {
            assert!(
                shown(&app)
                    .iter()
                    .all(|a| [addr(0), addr(2), addr(4)].contains(a)),
                "{filter}"
            );
        } else {
            assert_eq!(shown(&app), want, "{filter}");
        }
        app.set_filter(String::new());
    }
    for bad in ["web:&", "~web[", "tag:1x"] {
        app.set_filter(bad.to_string());
        let (level, text) = app.status.clone().unwrap();
        assert_eq!(level, Level::Error, "{bad}");
        assert!(!text.is_empty());
        app.status = None;
    }
}

#[test]
fn p_pauses_and_resumes_the_newest_rollout() {
    let mut app = app(10);
    let out = press(&mut app, KeyCode::Char('p'));
    assert!(out.is_empty(), "the sample's job is a scan");
    assert_eq!(app.status.as_ref().unwrap().0, Level::Error);
    let mut fleet = sample::fleet(10, NOW);
    fleet.jobs[0].kind = crate::engine::JobKind::Deploy;
    let id = fleet.jobs[0].id;
    update(&mut app, Msg::Snapshot(Arc::new(fleet.clone())));
    let out = press(&mut app, KeyCode::Char('p'));
    assert!(
        matches!(out[..], [Command::PauseJob { id: j, paused: true }] if j == id),
        "{out:?}"
    );
    assert!(
        app.status
            .as_ref()
            .unwrap()
            .1
            .contains("no new host starts")
    );
    fleet.jobs[0].paused = true;
    update(&mut app, Msg::Snapshot(Arc::new(fleet)));
    let out = press(&mut app, KeyCode::Char('p'));
    assert!(
        matches!(out[..], [Command::PauseJob { paused: false, .. }]),
        "{out:?}"
    );
}

#[test]
fn tab_completes_and_up_down_walk_the_history() {
    let mut app = app(10);
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "so");
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.input.as_ref().unwrap().text, "sort ");
    typed(&mut app, "cp");
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.input.as_ref().unwrap().text, "sort cpu ");
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.sort.column.title(), "CPU");
    // Several candidates: shown, the line kept.
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "fi");
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.input.as_ref().unwrap().text, "fi");
    assert!(
        app.status
            .as_ref()
            .unwrap()
            .1
            .contains("filter  fingerprint")
    );
    press(&mut app, KeyCode::Esc);
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "theme light");
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Char(':'));
    press(&mut app, KeyCode::Up);
    assert_eq!(app.input.as_ref().unwrap().text, "theme light");
    press(&mut app, KeyCode::Up);
    assert_eq!(app.input.as_ref().unwrap().text, "sort cpu");
    press(&mut app, KeyCode::Down);
    assert_eq!(app.input.as_ref().unwrap().text, "theme light");
    press(&mut app, KeyCode::Down);
    assert_eq!(app.input.as_ref().unwrap().text, "");
    press(&mut app, KeyCode::Esc);
    // The filter completes keys and host names.
    press(&mut app, KeyCode::Char('/'));
    typed(&mut app, "node-0004");
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.input.as_ref().unwrap().text, "node-0004 ");
    assert_eq!(app.rows.len(), 1);
}

#[test]
fn a_read_only_console_refuses_what_changes_hosts() {
    let mut app = app(10);
    app.read_only = true;
    for keys in [
        &["d"][..],
        &["u"],
        &["r"],
        &[":", "deploy"],
        &[":", "revoke"],
    ] {
        for k in keys {
            if k.len() == 1 {
                press(&mut app, KeyCode::Char(k.chars().next().unwrap()));
            } else {
                typed(&mut app, k);
                press(&mut app, KeyCode::Enter);
            }
        }
        assert!(app.confirm.is_none(), "{keys:?}: no confirmation is asked");
        let (level, text) = app.status.clone().unwrap();
        assert_eq!(level, Level::Error);
        assert!(text.starts_with("read-only console:"), "{text}");
    }
    // Looking still works.
    assert_eq!(press(&mut app, KeyCode::Char('f')).len(), 1);
    assert!(super::changes_hosts(&Command::Revoke(
        crate::engine::RevokeRequest::default()
    )));
    assert!(!super::changes_hosts(&Command::Refresh));
}

#[test]
fn custom_commands_run_on_their_hosts_ask_first_and_keep_to_read_only() {
    let mut app = app(10);
    app.custom = super::custom::parse(
        r#"
[[command]]
name = "note"
key = "N"
scope = "marked"
command = 'echo "$MARKED"'

[[command]]
name = "wipe"
key = "W"
command = "true"
confirm = true
dangerous = true
"#,
        super::complete::COMMANDS,
    )
    .unwrap();
    press(&mut app, KeyCode::Char(' '));
    press(&mut app, KeyCode::Char(' '));
    press(&mut app, KeyCode::Char('N'));
    let exec = app.pending_exec.take().expect("N runs note");
    let env: std::collections::HashMap<_, _> = exec.env.into_iter().collect();
    assert_eq!(env["MARKED"], "10.0.0.1 10.0.0.2");
    assert_eq!(env["ADDR"], "10.0.0.1");
    assert_eq!(env["HOST"], "node-0000");
    assert!(app.marked.is_empty());
    // `:note` is the same command.
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "no");
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.input.as_ref().unwrap().text, "note ");
    press(&mut app, KeyCode::Enter);
    assert!(app.pending_exec.take().is_some());
    // confirm: asked first, then run on y.
    press(&mut app, KeyCode::Char('W'));
    assert!(app.pending_exec.is_none());
    assert_eq!(app.confirm.as_ref().unwrap().custom, Some(1));
    press(&mut app, KeyCode::Char('y'));
    assert_eq!(app.pending_exec.take().unwrap().name, "wipe");
    // dangerous: refused in a read-only console.
    app.read_only = true;
    press(&mut app, KeyCode::Char('W'));
    assert!(app.confirm.is_none() && app.pending_exec.is_none());
    assert!(
        app.status
            .as_ref()
            .unwrap()
            .1
            .contains("wipe is dangerous, refused")
    );
    press(&mut app, KeyCode::Char('N'));
    assert!(app.pending_exec.is_some(), "a harmless one still runs");
}

#[test]
fn a_rollout_cut_short_is_offered_once_and_resumed_on_yes() {
    let mut app = app(10);
    update(&mut app, Msg::Engine(Event::RolloutUnfinished { hosts: 2 }));
    assert_eq!(app.confirm.as_ref().unwrap().resume, Some(2));
    let out = press(&mut app, KeyCode::Char('y'));
    assert!(
        matches!(&out[..], [Command::Deploy(r)] if r.resume && r.hosts.is_empty()),
        "{out:?}"
    );
    update(&mut app, Msg::Engine(Event::RolloutUnfinished { hosts: 2 }));
    assert!(app.confirm.is_none(), "asked once a run");
    let mut ro = self::app(10);
    ro.read_only = true;
    update(&mut ro, Msg::Engine(Event::RolloutUnfinished { hosts: 2 }));
    assert!(
        ro.confirm.is_none(),
        "a read-only console does not offer it"
    );
}

#[test]
fn a_custom_commands_port_is_the_one_fingerprinting_used() {
    let mut app = app(3);
    app.custom = super::custom::parse(
        "[[command]]\nname = \"p\"\nkey = \"P\"\ncommand = 'echo $PORT'\n",
        &[],
    )
    .unwrap();
    let mut fleet = sample::fleet(3, NOW);
    Arc::make_mut(&mut fleet.hosts[0]).ssh_port = Some(2222);
    update(&mut app, Msg::Snapshot(Arc::new(fleet)));
    press(&mut app, KeyCode::Char('P'));
    let exec = app.pending_exec.take().unwrap();
    assert!(exec.env.contains(&("PORT".to_string(), "2222".to_string())));
    press(&mut app, KeyCode::Char('j'));
    press(&mut app, KeyCode::Char('P'));
    let exec = app.pending_exec.take().unwrap();
    assert!(exec.env.contains(&("PORT".to_string(), "22".to_string())));
}
