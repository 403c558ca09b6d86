//! The fleet table. Only the rows on screen are built, so a frame costs
//! the same with ten hosts or ten thousand.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use crate::engine::{FleetSnapshot, HostView};
use crate::model::tags::tags_text;
use crate::model::{AgentState, Reach, RegistrationState, SshState};
use crate::tui::app::App;
use crate::tui::format::{self, Urgency};
use crate::tui::table::Column;
use crate::tui::theme::Theme;

/// Sparkline cells in the CPU column when there is room.
const SPARK: usize = 10;
/// Bar cells in the memory column when there is room.
const MEM_BAR: usize = 6;

/// Width of a column: full, and compact for narrow terminals.
fn widths(column: Column) -> (u16, u16) {
    match column {
        Column::Address => (16, 15),
        Column::Host => (14, 10),
        Column::Os => (12, 12),
        Column::Tags => (16, 10),
        Column::Reach => (6, 6),
        Column::Ssh => (11, 11),
        Column::Agent => (11, 9),
        Column::Registration => (10, 10),
        Column::Token => (7, 7),
        Column::Cpu => (4 + 1 + SPARK as u16, 4),
        Column::Memory => (MEM_BAR as u16 + 5, 4),
        Column::Load => (5, 5),
        Column::LastSeen => (10, 9),
    }
}

/// The columns that fit in `width`, most important first, then in order;
/// the tags column only when some host has tags.
fn layout(width: u16, tags: bool) -> Vec<(Column, u16)> {
    let mut by_priority: Vec<Column> = Column::ALL
        .into_iter()
        .filter(|c| tags || *c != Column::Tags)
        .collect();
    by_priority.sort_by_key(|c| c.priority());
    let mut chosen: Vec<(Column, u16)> = Vec::new();
    let mut used = 0u16;
    for column in by_priority {
        let (full, compact) = widths(column);
        let gap = u16::from(!chosen.is_empty());
        if used + gap + full <= width {
            used += gap + full;
            chosen.push((column, full));
        } else if used + gap + compact <= width {
            used += gap + compact;
            chosen.push((column, compact));
        }
    }
    chosen.sort_by_key(|(c, _)| Column::ALL.iter().position(|x| x == c));
    chosen
}

fn urgency_style(theme: &Theme, urgency: Urgency) -> Style {
    match urgency {
        Urgency::Ok => theme.ok(),
        Urgency::Warn => theme.warn(),
        Urgency::Error => theme.error(),
        Urgency::Muted => theme.muted(),
    }
}

fn pct_style(theme: &Theme, pct: f64) -> Style {
    match pct {
        p if p >= 90.0 => theme.error(),
        p if p >= 75.0 => theme.warn(),
        _ => theme.text(),
    }
}

/// Short labels, so states fit narrow columns.
pub(super) fn ssh_label(state: SshState) -> (&'static str, Urgency) {
    match state {
        SshState::Unknown => ("-", Urgency::Muted),
        SshState::Ok => ("ok", Urgency::Ok),
        SshState::AuthFailed => ("auth-fail", Urgency::Warn),
        SshState::HostKeyUnknown => ("key-unknown", Urgency::Warn),
        SshState::HostKeyChanged => ("KEY-CHANGED", Urgency::Error),
        SshState::Unreachable => ("unreach", Urgency::Error),
    }
}

pub(super) fn agent_label(state: AgentState) -> (&'static str, Urgency) {
    match state {
        AgentState::None => ("none", Urgency::Muted),
        AgentState::Deploying => ("deploying", Urgency::Warn),
        AgentState::Running => ("running", Urgency::Ok),
        AgentState::Unreachable => ("unreach", Urgency::Error),
        AgentState::Failed => ("failed", Urgency::Error),
    }
}

pub(super) fn registration_urgency(state: RegistrationState) -> Urgency {
    match state {
        RegistrationState::Pending => Urgency::Muted,
        RegistrationState::Registered => Urgency::Ok,
        RegistrationState::Lost => Urgency::Warn,
        RegistrationState::Expired | RegistrationState::Revoked => Urgency::Error,
    }
}

pub(super) fn reach_urgency(reach: Reach) -> Urgency {
    match reach {
        Reach::Alive => Urgency::Ok,
        Reach::Silent => Urgency::Error,
        Reach::Unknown => Urgency::Muted,
    }
}

fn cell(host: &HostView, column: Column, width: u16, now: i64, theme: &Theme) -> Cell<'static> {
    let muted = theme.muted();
    let dash = || Cell::from("-").style(muted);
    match column {
        Column::Address => Cell::from(host.addr.to_string()),
        Column::Host => host
            .hostname()
            .map_or_else(dash, |h| Cell::from(h.to_owned())),
        Column::Os => host.os().map_or_else(dash, Cell::from),
        Column::Tags if host.tags.is_empty() => dash(),
        Column::Tags => Cell::from(tags_text(&host.tags)).style(theme.accent()),
        Column::Reach => {
            let reach = host.reach();
            Cell::from(reach.as_str()).style(urgency_style(theme, reach_urgency(reach)))
        }
        Column::Ssh => {
            let (text, urgency) = ssh_label(host.ssh);
            Cell::from(text).style(urgency_style(theme, urgency))
        }
        Column::Agent => {
            let (text, urgency) = agent_label(host.agent);
            Cell::from(text).style(urgency_style(theme, urgency))
        }
        Column::Registration => Cell::from(host.registration.as_str()).style(urgency_style(
            theme,
            registration_urgency(host.registration),
        )),
        Column::Token => {
            let left = host.token_left(now);
            Cell::from(format::time_left(left, host.token)).style(urgency_style(
                theme,
                format::token_urgency(host.token, left),
            ))
        }
        Column::Cpu => match &host.stats {
            None => dash(),
            Some(stats) => {
                let pct = stats.cpu.total_pct;
                let mut spans = vec![Span::styled(format!("{pct:>3.0}%"), pct_style(theme, pct))];
                let room = usize::from(width).saturating_sub(5);
                if room > 0 {
                    let spark = format::sparkline(host.history.iter().map(|s| s.cpu_pct), room);
                    spans.push(Span::raw(" "));
                    spans.push(Span::styled(spark, theme.chart_cpu()));
                }
                Cell::from(Line::from(spans))
            }
        },
        Column::Memory => match &host.stats {
            None => dash(),
            Some(stats) => {
                let pct = stats.memory.used_pct();
                let room = usize::from(width).saturating_sub(5);
                let mut spans = Vec::new();
                if room > 0 {
                    spans.push(Span::styled(format::bar(pct, room), theme.chart_mem()));
                    spans.push(Span::raw(" "));
                }
                spans.push(Span::styled(format!("{pct:>3.0}%"), pct_style(theme, pct)));
                Cell::from(Line::from(spans))
            }
        },
        Column::Load => host
            .stats
            .as_ref()
            .map_or_else(dash, |s| Cell::from(format!("{:.2}", s.cpu.load1))),
        Column::LastSeen => Cell::from(format::ago(host.last_seen, now)).style(muted),
    }
}

/// Draws the visible slice of the table into `area`.
pub fn render(app: &App, fleet: &FleetSnapshot, frame: &mut Frame<'_>, area: Rect) {
    let theme = &app.theme;
    if app.rows.is_empty() {
        let text = if fleet.hosts.is_empty() {
            "No hosts yet. Press s to scan a network (e.g. 10.0.0.0/24), or : for commands."
        } else {
            "No host matches the filter. Esc clears it."
        };
        frame.render_widget(Paragraph::new(text).style(theme.muted()), area);
        return;
    }
    let columns = layout(area.width, fleet.hosts.iter().any(|h| !h.tags.is_empty()));
    let header = Row::new(columns.iter().map(|(c, _)| {
        let mut title = c.title().to_string();
        if *c == app.sort.column {
            title.push(if app.sort.descending { '▼' } else { '▲' });
        }
        Cell::from(title)
    }))
    .style(theme.header());
    let page = usize::from(area.height.saturating_sub(1));
    let end = (app.offset + page).min(app.rows.len());
    let now = fleet.now_unix;
    let rows = app.rows[app.offset..end]
        .iter()
        .enumerate()
        .map(|(i, &index)| {
            let host = &fleet.hosts[index as usize];
            let selected = app.offset + i == app.selected;
            let marked = app.marked.contains(&host.addr);
            let cells = columns.iter().map(|&(column, width)| {
                let cell = if marked && column == Column::Address {
                    // Marked reads without colour too.
                    Cell::from(format!("*{}", host.addr))
                } else {
                    cell(host, column, width, now, theme)
                };
                if selected {
                    // The cursor row reads as one bar.
                    cell.style(theme.selected())
                } else if marked && column == Column::Address {
                    cell.style(theme.marked())
                } else {
                    cell
                }
            });
            let mut row = Row::new(cells);
            if selected {
                row = row.style(theme.selected());
            }
            if host.reach() == Reach::Silent && !selected {
                row = row.style(theme.muted());
            }
            if marked {
                row = row.style(Style::new().add_modifier(Modifier::BOLD));
            }
            row
        });
    let widths = columns.iter().map(|(_, w)| Constraint::Length(*w));
    frame.render_widget(
        Table::new(rows, widths).header(header).column_spacing(1),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_screens_keep_the_important_columns() {
        let narrow: Vec<Column> = layout(80, true).into_iter().map(|(c, _)| c).collect();
        assert_eq!(
            narrow,
            [
                Column::Address,
                Column::Host,
                Column::Reach,
                Column::Ssh,
                Column::Agent,
                Column::Token,
                Column::Cpu,
                Column::Memory
            ]
        );
        let wide = layout(160, true);
        assert_eq!(wide.len(), Column::ALL.len());
        let used: u16 = wide.iter().map(|(_, w)| w + 1).sum();
        assert!(used <= 161);
        let untagged = layout(160, false);
        assert_eq!(untagged.len(), Column::ALL.len() - 1);
        assert!(untagged.iter().all(|(c, _)| *c != Column::Tags));
    }
}
