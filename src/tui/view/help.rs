//! The `?` overlay: every key and command.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use crate::model::text;
use crate::tui::app::App;
use crate::tui::keys::COMMANDS;
use crate::tui::layout::centered;
use crate::tui::table::FILTER_KEYS;

const KEYS: &[(&str, &str)] = &[
    ("j k ↓ ↑", "move (in detail: next/prev host)"),
    ("PgDn PgUp g G", "page, first, last"),
    ("/", "filter: any text, or agent:none token:expiring ..."),
    ("< > =", "sort column left/right, reverse"),
    ("space", "mark host (jobs act on marked, else selected)"),
    ("*", "mark every shown host (again: none)"),
    ("s", "scan: prompt for targets"),
    ("f", "fingerprint over SSH"),
    ("d u r", "deploy, undeploy, revoke (asks first)"),
    ("Enter", "host detail"),
    ("l x p", "event log · cancel newest job · pause rollout"),
    ("! S L", "run a command (asks) · shell · agent log (detail)"),
    (":", "command line (Tab completes, ↑ ↓ history)"),
    ("Esc", "back, clear filter or marks"),
    ("q", "quit"),
];

pub fn render(app: &App, frame: &mut Frame<'_>, screen: Rect) {
    let theme = &app.theme;
    let entry = |key: &str, what: &str| {
        Line::from(vec![
            Span::styled(format!("{key:>14} "), theme.accent()),
            Span::styled(what.to_owned(), theme.text()),
        ])
    };
    let mut lines: Vec<Line<'_>> = KEYS.iter().map(|(k, w)| entry(k, w)).collect();
    lines.push(entry("filters:", FILTER_KEYS));
    // commands.toml's, with their keys.
    for c in &app.custom {
        let key = c
            .key
            .map_or_else(|| format!(":{}", c.name), |k| k.to_string());
        let mut what = format!("{} ({})", c.name, text::escape(&c.command));
        if c.dangerous {
            what.push_str(" [dangerous]");
        }
        lines.push(entry(&key, &what));
    }
    // Commands one per line when there is room, else named in a row.
    let full = lines.len() + COMMANDS.len() + 2;
    if usize::from(screen.height) >= full {
        lines.extend(COMMANDS.iter().map(|(k, w)| entry(k, w)));
    } else {
        let names: Vec<&str> = COMMANDS.iter().map(|(k, _)| *k).collect();
        for chunk in names.chunks(3) {
            lines.push(Line::from(Span::styled(
                format!("{:>14} {}", "", chunk.join("  ")),
                theme.accent(),
            )));
        }
    }
    let area = centered(screen, 76, lines.len() as u16 + 2);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .title(Span::styled(" help · Esc closes ", theme.title()))
                .border_style(theme.border()),
        ),
        area,
    );
}
