//! The results of a command run from the console: one row per group of
//! identical results, outliers first; a group's full output, or two
//! groups diffed, over them.
//!
//! ```text
//!  ┌ $ uname -sm · 10 hosts: 9 ok, 1 exit 3 ──────────────────────────┐
//!  │ HOSTS                     N  STATUS   FIRST LINE                  │
//!  │ 10.0.0.7                  1  exit 3   Linux aarch64               │
//!  │ 10.0.0.[1-6,8-10]         9  ok       Linux x86_64                │
//!  └───────────────────────────────────────────────────────────────────┘
//! ```

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table};

use crate::model::run::{GroupKey, summary};
use crate::model::text;
use crate::tui::app::App;
use crate::tui::runs::{DiffLine, Pane, RunResults, diff};

pub fn render(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let theme = &app.theme;
    let Some(r) = &app.runs.results else {
        return;
    };
    let state = if r.done {
        summary(&r.results, r.not_started)
    } else {
        format!("running: {}/{} hosts", r.results.len(), r.hosts)
    };
    let title = format!(" $ {} · {state} ", text::escape(&r.command));
    let block = Block::bordered()
        .title(Span::styled(title, theme.title()))
        .border_style(theme.border());
    match r.open {
        Some(Pane::Output(g)) => output(app, r, g, block, frame, area),
        Some(Pane::Diff(a, b)) => diff_pane(app, r, (a, b), block, frame, area),
        None => groups(app, r, block, frame, area),
    }
}

fn groups(app: &App, r: &RunResults, block: Block<'_>, frame: &mut Frame<'_>, area: Rect) {
    let theme = &app.theme;
    let rows = r.groups.iter().enumerate().map(|(i, g)| {
        let first = match &g.key {
            GroupKey::Ran { stdout, stderr, .. } => stdout
                .lines()
                .next()
                .or_else(|| stderr.lines().next())
                .unwrap_or("")
                .to_string(),
            GroupKey::Failed(_) => r.results[g.members[0]].error.clone().unwrap_or_default(),
        };
        let status_style = match &g.key {
            GroupKey::Ran { exit: Some(0), .. } => theme.ok(),
            GroupKey::Ran { .. } => theme.warn(),
            GroupKey::Failed(_) => theme.error(),
        };
        let mark = if r.diff_from == Some(i) { "D" } else { " " };
        let row = Row::new(vec![
            Line::from(Span::styled(mark, theme.accent())),
            Line::from(Span::styled(
                text::escape(&g.hosts).into_owned(),
                theme.text(),
            )),
            Line::from(Span::styled(g.members.len().to_string(), theme.text())),
            Line::from(Span::styled(g.status(), status_style)),
            Line::from(Span::styled(
                text::escape(&first).into_owned(),
                theme.muted(),
            )),
        ]);
        if i == r.selected {
            row.style(theme.selected())
        } else {
            row
        }
    });
    let widths = [
        Constraint::Length(1),
        Constraint::Percentage(30),
        Constraint::Length(5),
        Constraint::Length(22),
        Constraint::Fill(1),
    ];
    let header = Row::new(["", "HOSTS", "N", "STATUS", "FIRST LINE"]).style(theme.header());
    frame.render_widget(Table::new(rows, widths).header(header).block(block), area);
}

fn output(
    app: &App,
    r: &RunResults,
    g: usize,
    block: Block<'_>,
    frame: &mut Frame<'_>,
    area: Rect,
) {
    let theme = &app.theme;
    let Some(group) = r.groups.get(g) else {
        return;
    };
    let block = block.title_bottom(Span::styled(
        format!(
            " {} ({}) {} ",
            text::escape(&group.hosts),
            group.members.len(),
            group.status()
        ),
        theme.accent(),
    ));
    let text = r.text(g);
    let lines: Vec<Line<'_>> = text
        .lines()
        .skip(r.scroll)
        .map(|l| Line::from(Span::styled(text::escape(l).into_owned(), theme.text())))
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn diff_pane(
    app: &App,
    r: &RunResults,
    (a, b): (usize, usize),
    block: Block<'_>,
    frame: &mut Frame<'_>,
    area: Rect,
) {
    let theme = &app.theme;
    let name = |g: usize| r.groups.get(g).map(|g| text::escape(&g.hosts).into_owned());
    let block = block.title_bottom(Span::styled(
        format!(
            " - {}   + {} ",
            name(a).unwrap_or_default(),
            name(b).unwrap_or_default()
        ),
        theme.accent(),
    ));
    let lines: Vec<Line<'_>> = diff(&r.text(a), &r.text(b))
        .into_iter()
        .skip(r.scroll)
        .map(|d| {
            let (sign, line, style) = match d {
                DiffLine::Same(l) => (' ', l, theme.muted()),
                DiffLine::Removed(l) => ('-', l, theme.error()),
                DiffLine::Added(l) => ('+', l, theme.ok()),
            };
            Line::from(Span::styled(
                format!("{sign} {}", text::escape(&line)),
                style,
            ))
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
