//! Jobs and events: running jobs with progress gauges beside a scrolling
//! event log (newest at the bottom). The same pane fills the screen in the
//! log view.

use std::fmt::Write as _;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, LineGauge, Paragraph};

use crate::engine::FleetSnapshot;
use crate::tui::app::{App, Level};
use crate::tui::format;

pub fn render(app: &App, fleet: &FleetSnapshot, frame: &mut Frame<'_>, area: Rect) {
    let jobs_width = (area.width / 3).clamp(24, 48);
    let [jobs_area, log_area] =
        Layout::horizontal([Constraint::Length(jobs_width), Constraint::Min(10)]).areas(area);
    jobs(app, fleet, frame, jobs_area);
    events(app, fleet, frame, log_area);
}

fn jobs(app: &App, fleet: &FleetSnapshot, frame: &mut Frame<'_>, area: Rect) {
    let theme = &app.theme;
    let block = Block::bordered()
        .title(Span::styled(
            format!(" jobs ({}) ", fleet.jobs.len()),
            theme.title(),
        ))
        .border_style(theme.border());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if fleet.jobs.is_empty() {
        frame.render_widget(Paragraph::new("idle").style(theme.muted()), inner);
        return;
    }
    for (i, job) in fleet
        .jobs
        .iter()
        .enumerate()
        .take(usize::from(inner.height))
    {
        let line = Rect::new(inner.x, inner.y + i as u16, inner.width, 1);
        let ratio = if job.total == 0 {
            0.0
        } else {
            (job.done as f64 / job.total as f64).clamp(0.0, 1.0)
        };
        let mut label = format!(
            "{} {} {}/{} ",
            job.id,
            job.kind.as_str(),
            job.done,
            job.total
        );
        if job.paused {
            label.push_str("PAUSED ");
        }
        if let Some((batch, batches)) = job.batch {
            // The batch under way, then each finished one's ok/failed.
            let _ = write!(label, "batch {batch}/{batches} ");
            for (ok, failed) in &job.batch_results {
                let _ = write!(label, "[{ok}✓{failed}✗]");
            }
            label.push(' ');
        }
        frame.render_widget(
            LineGauge::default()
                .ratio(ratio)
                .label(Span::styled(label, theme.text()))
                .filled_style(theme.gauge())
                .unfilled_style(theme.muted()),
            line,
        );
    }
}

fn events(app: &App, fleet: &FleetSnapshot, frame: &mut Frame<'_>, area: Rect) {
    let theme = &app.theme;
    let title = if app.log_scroll > 0 {
        format!(" events (↑{}) ", app.log_scroll)
    } else {
        " events ".to_string()
    };
    let block = Block::bordered()
        .title(Span::styled(title, theme.title()))
        .border_style(theme.border());
    let inner = block.inner(area);
    let height = usize::from(inner.height);
    let end = app.log.len().saturating_sub(app.log_scroll);
    let start = end.saturating_sub(height);
    let lines: Vec<Line<'_>> = app
        .log
        .range(start..end)
        .map(|line| {
            let style = match line.level {
                Level::Info => theme.text(),
                Level::Ok => theme.ok(),
                Level::Warn => theme.warn(),
                Level::Error => theme.error(),
            };
            Line::from(vec![
                Span::styled(
                    format!("{:>8} ", format::span(fleet.now_unix - line.at)),
                    theme.muted(),
                ),
                Span::styled(line.text.clone(), style),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
