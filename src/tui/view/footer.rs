//! The bottom line: the line being typed, else a message, else the keys
//! that work here.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::tui::app::{App, InputKind, Level, View};

const FLEET_KEYS: &[(&str, &str)] = &[
    ("j/k", "move"),
    ("/", "filter"),
    ("<>", "sort"),
    ("s", "scan"),
    ("f", "fprint"),
    ("d", "deploy"),
    ("⏎", "detail"),
    ("?", "help"),
    ("q", "quit"),
];
const DETAIL_KEYS: &[(&str, &str)] = &[
    ("j/k", "next"),
    ("f", "fprint"),
    ("d", "deploy"),
    ("u", "undeploy"),
    ("r", "revoke"),
    ("L", "log"),
    ("S", "shell"),
    ("esc", "back"),
    ("?", "help"),
];
const RUN_KEYS: &[(&str, &str)] = &[
    ("j/k", "move"),
    ("⏎", "output"),
    ("D", "diff two groups"),
    ("!", "run again"),
    ("esc", "back"),
    ("q", "quit"),
];
const LOG_KEYS: &[(&str, &str)] = &[
    ("j/k", "scroll"),
    ("x", "cancel newest job"),
    ("esc", "back"),
    ("?", "help"),
    ("q", "quit"),
];

fn level_style(theme: &crate::tui::theme::Theme, level: Level) -> ratatui::style::Style {
    match level {
        Level::Info => theme.text(),
        Level::Ok => theme.ok(),
        Level::Warn => theme.warn(),
        Level::Error => theme.error(),
    }
}

pub fn render(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let theme = &app.theme;
    let line = if let Some(input) = app.input.as_ref().filter(|i| i.kind != InputKind::Scan) {
        let prefix = match input.kind {
            InputKind::Filter => "/",
            InputKind::Run => "! ",
            InputKind::Command | InputKind::Scan => ":",
        };
        let mut spans = vec![
            Span::styled(prefix, theme.accent()),
            Span::styled(input.text.clone(), theme.text()),
            Span::styled("█", theme.accent()),
        ];
        // What Tab offers, or why the filter is not taken, beside the line.
        if let Some((level, text)) = &app.status {
            spans.push(Span::styled(
                format!("   {text}"),
                level_style(theme, *level),
            ));
        }
        Line::from(spans)
    } else if let Some((level, text)) = &app.status {
        Line::from(Span::styled(text.clone(), level_style(theme, *level)))
    } else {
        let keys = match app.view {
            View::Fleet => FLEET_KEYS,
            View::Detail(_) => DETAIL_KEYS,
            View::Log => LOG_KEYS,
            View::Run => RUN_KEYS,
        };
        let mut spans = Vec::new();
        for (key, what) in keys {
            spans.push(Span::styled(format!(" {key}"), theme.accent()));
            spans.push(Span::styled(format!(" {what}"), theme.muted()));
        }
        Line::from(spans)
    };
    frame.render_widget(Paragraph::new(line), area);
}
