//! Modals: the deploy/undeploy/revoke confirmation, the scan targets
//! prompt, and the questions jobs ask (secrets drawn masked).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use crate::engine::{JobKind, Prompt, PromptKind};
use crate::model::text;
use crate::tui::app::{App, Confirm};
use crate::tui::layout::centered;

fn draw(app: &App, frame: &mut Frame<'_>, screen: Rect, title: &str, lines: Vec<Line<'_>>) {
    let theme = &app.theme;
    let height = lines.len() as u16 + 2;
    let area = centered(screen, 64, height);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::bordered()
                .title(Span::styled(format!(" {title} "), theme.title()))
                .border_style(theme.accent()),
        ),
        area,
    );
}

/// Hosts listed in a confirmation before the rest are counted.
const LISTED: usize = 8;

pub fn confirm(app: &App, confirm: &Confirm, frame: &mut Frame<'_>, screen: Rect) {
    let theme = &app.theme;
    let custom = confirm.custom.and_then(|i| app.custom.get(i));
    let run = custom.map(|c| format!("Run {} on", c.name));
    let verb = match (&run, confirm.kind) {
        (Some(run), _) => run.as_str(),
        (None, JobKind::Deploy) => "Deploy the agent to",
        (None, JobKind::Undeploy) => "Remove the agent from",
        (None, JobKind::Revoke) => "Revoke the agent identity of",
        (None, _) => "Run on",
    };
    let n = confirm.resume.unwrap_or(confirm.hosts.len());
    let mut lines = vec![Line::from(Span::styled(
        if confirm.resume.is_some() {
            format!("A rollout was cut short with {n} host(s) left. Resume it?")
        } else {
            format!("{verb} {n} host{}?", if n == 1 { "" } else { "s" })
        },
        theme.text(),
    ))];
    if let Some(command) = &confirm.command {
        lines.insert(
            0,
            Line::from(vec![
                Span::styled("$ ", theme.muted()),
                Span::styled(text::escape(command).into_owned(), theme.warn()),
            ]),
        );
    }
    for addr in confirm.hosts.iter().take(LISTED) {
        let name = app
            .fleet
            .host(*addr)
            .and_then(|h| h.hostname().map(str::to_owned))
            .unwrap_or_default();
        lines.push(Line::from(Span::styled(
            format!("  {addr:<18} {name}"),
            theme.accent(),
        )));
    }
    if n > LISTED {
        lines.push(Line::from(Span::styled(
            format!("  … and {} more", n - LISTED),
            theme.muted(),
        )));
    }
    lines.push(Line::from(Span::styled(
        "y / Enter: go    n / Esc: cancel",
        theme.muted(),
    )));
    let title = match (custom, confirm.resume) {
        (Some(c), _) => c.name.as_str(),
        (None, Some(_)) => "resume rollout",
        (None, None) => confirm.kind.as_str(),
    };
    draw(app, frame, screen, title, lines);
}

pub fn scan(app: &App, text: &str, frame: &mut Frame<'_>, screen: Rect) {
    let theme = &app.theme;
    let lines = vec![
        Line::from(Span::styled(
            "Targets: networks, ranges, addresses or names",
            theme.text(),
        )),
        Line::from(Span::styled(
            "e.g. 10.0.0.0/24 10.0.1.5-40 db1.example.com",
            theme.muted(),
        )),
        Line::from(vec![
            Span::styled("> ", theme.accent()),
            Span::styled(text.to_owned(), theme.text()),
            Span::styled("█", theme.accent()),
        ]),
        Line::from(Span::styled("Enter: scan    Esc: cancel", theme.muted())),
    ];
    draw(app, frame, screen, "scan", lines);
}

pub fn prompt(app: &App, prompt: &Prompt, frame: &mut Frame<'_>, screen: Rect) {
    let theme = &app.theme;
    let masked = || {
        Line::from(vec![
            Span::styled("> ", theme.accent()),
            Span::styled("•".repeat(app.prompt_text.0.chars().count()), theme.text()),
            Span::styled("█", theme.accent()),
        ])
    };
    let secret_keys = || Line::from(Span::styled("Enter: send    Esc: skip", theme.muted()));
    let (title, lines) = match &prompt.kind {
        PromptKind::Passphrase { key } => (
            "passphrase",
            vec![
                Line::from(Span::styled(
                    format!("Passphrase for key {}", key.display()),
                    theme.text(),
                )),
                masked(),
                secret_keys(),
            ],
        ),
        PromptKind::Password { user, host } => (
            "password",
            vec![
                Line::from(Span::styled(
                    format!("Password for {user}@{host}"),
                    theme.text(),
                )),
                masked(),
                secret_keys(),
            ],
        ),
        PromptKind::HostKey { host, fingerprint } => (
            "unknown host key",
            vec![
                Line::from(Span::styled(
                    format!("{host} offers a key known_hosts does not list:"),
                    theme.text(),
                )),
                Line::from(Span::styled(format!("  {fingerprint}"), theme.warn())),
                Line::from(Span::styled(
                    "Trust it only if it matches the key verified out of band.",
                    theme.muted(),
                )),
                Line::from(Span::styled(
                    "y: trust and remember    n / Esc: refuse",
                    theme.muted(),
                )),
            ],
        ),
        PromptKind::Gate {
            batch,
            batches,
            ok,
            failed,
        } => (
            "rollout gate",
            vec![
                Line::from(Span::styled(
                    format!("batch {batch}/{batches} done: {ok} ok, {failed} failed"),
                    if *failed > 0 {
                        theme.warn()
                    } else {
                        theme.text()
                    },
                )),
                Line::from(Span::styled(
                    "Hosts not started yet stay untouched if you abort.",
                    theme.muted(),
                )),
                Line::from(Span::styled(
                    "c / y: continue    a / n / Esc: abort",
                    theme.muted(),
                )),
            ],
        ),
    };
    let more = app.prompts.len() - 1;
    let title = if more > 0 {
        format!("{title} (+{more} waiting)")
    } else {
        title.to_owned()
    };
    draw(app, frame, screen, &title, lines);
}
