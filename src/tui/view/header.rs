//! The top line: what the fleet looks like at a glance, and how the table
//! is filtered and sorted.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::engine::FleetSnapshot;
use crate::tui::app::App;

pub fn render(app: &App, fleet: &FleetSnapshot, frame: &mut Frame<'_>, area: Rect) {
    let theme = &app.theme;
    let (alive, agents) = (app.alive, app.agents);
    let mut spans = vec![Span::styled(" fleetctl ", theme.title())];
    if app.read_only {
        spans.push(Span::styled("READ-ONLY ", theme.warn()));
    }
    spans.extend([
        Span::styled("│ ", theme.border()),
        Span::styled(format!("{} hosts", fleet.hosts.len()), theme.text()),
        Span::styled(" · ", theme.muted()),
        Span::styled(format!("{alive} alive"), theme.ok()),
        Span::styled(" · ", theme.muted()),
        Span::styled(format!("{agents} agents"), theme.ok()),
    ]);
    if !fleet.jobs.is_empty() {
        spans.push(Span::styled(" · ", theme.muted()));
        spans.push(Span::styled(
            format!("{} jobs", fleet.jobs.len()),
            theme.accent(),
        ));
    }
    if !app.filter_text.is_empty() {
        spans.push(Span::styled(" │ ", theme.border()));
        spans.push(Span::styled(
            format!("/{} ({} shown)", app.filter_text, app.rows.len()),
            theme.accent(),
        ));
    }
    if !app.marked.is_empty() {
        spans.push(Span::styled(" │ ", theme.border()));
        spans.push(Span::styled(
            format!("{} marked", app.marked.len()),
            theme.marked(),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
