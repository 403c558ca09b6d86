//! One host in full: its states, registration and facts on the left; CPU
//! and memory over the kept history, the token timeline on the same time
//! axis, and per-core bars on the right; its recent events below.
//!
//! ```text
//!  ┌ addr name ───────────┐┌ CPU ─────────────────────────────┐
//!  │ reach ssh agent      ││  100│⣀⡠⠤⠒⠉                       │
//!  │ registration token   │├ memory ──────────────────────────┤
//!  │ registered heartbeat ││   50│⠤⠤⠤⠤⠤⠤⠤⠤                   │
//!  │ facts                │├ timeline ────────────────────────┤
//!  │                      ││token│●━━━┃━━━┃━━┅┅┅╳╳           │
//!  │                      ││ beat│ • • • •                   │
//!  │                      ││      -5m  ...             now   │
//!  │                      │├ cores ───────────────────────────┤
//!  └──────────────────────┘└──────────────────────────────────┘
//!  ┌ host events ───────────────────────────────────────────────┐
//! ```
//! The charts pad their value labels to the timeline's lane names, so a
//! column is the same instant in all three.

use std::net::IpAddr;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, Paragraph, Wrap};

use super::fleet::{agent_label, reach_urgency, registration_urgency, ssh_label};
use super::timeline::{LABEL_WIDTH, TimelineStrip};
use crate::engine::{FleetSnapshot, HISTORY_WINDOW, HostView};
use crate::tui::agent_log::LogPane;
use crate::tui::app::App;
use crate::tui::format::{self, Urgency};
use crate::tui::theme::Theme;

fn styled(theme: &Theme, urgency: Urgency) -> Style {
    match urgency {
        Urgency::Ok => theme.ok(),
        Urgency::Warn => theme.warn(),
        Urgency::Error => theme.error(),
        Urgency::Muted => theme.muted(),
    }
}

pub fn render(app: &App, fleet: &FleetSnapshot, addr: IpAddr, frame: &mut Frame<'_>, area: Rect) {
    let theme = &app.theme;
    let Some(host) = fleet.host(addr) else {
        frame.render_widget(
            Paragraph::new(format!("{addr} is no longer in the fleet. Esc goes back."))
                .style(theme.muted()),
            area,
        );
        return;
    };
    let pane = app.log_pane.as_ref().filter(|p| p.addr == addr);
    let events_height = if pane.is_some() {
        area.height / 2
    } else {
        (area.height / 4).clamp(3, 8)
    };
    let [top, events_area] =
        Layout::vertical([Constraint::Min(6), Constraint::Length(events_height)]).areas(area);
    let info_width = (top.width * 2 / 5).clamp(36, 60);
    let [info_area, charts_area] =
        Layout::horizontal([Constraint::Length(info_width), Constraint::Min(20)]).areas(top);
    info(theme, host, fleet.now_unix, frame, info_area);
    charts(theme, host, fleet, frame, charts_area);
    match pane {
        Some(pane) => agent_log(theme, pane, frame, events_area),
        None => events(theme, host, fleet.now_unix, frame, events_area),
    }
}

/// The agent's log, newest at the bottom, as far back as scrolled.
fn agent_log(theme: &Theme, pane: &LogPane, frame: &mut Frame<'_>, area: Rect) {
    let state = match (&pane.ended, pane.job) {
        (Some(why), _) => format!(" · {why}"),
        (None, None) => " · connecting".into(),
        (None, Some(_)) if pane.scroll > 0 => format!(" · {} lines back", pane.scroll),
        (None, Some(_)) => " · following".into(),
    };
    let block = Block::bordered()
        .title(Span::styled(
            format!(
                " agent log{} · L closes · PgUp/PgDn ",
                crate::model::text::escape(&state)
            ),
            theme.title(),
        ))
        .border_style(theme.border());
    let height = usize::from(block.inner(area).height);
    let end = pane.lines.len().saturating_sub(pane.scroll);
    let start = end.saturating_sub(height);
    let lines: Vec<Line<'_>> = pane
        .lines
        .range(start..end)
        .map(|l| {
            Line::from(Span::styled(
                crate::model::text::escape(l).into_owned(),
                theme.text(),
            ))
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn field<'a>(theme: &Theme, name: &'a str, value: String, style: Style) -> Line<'a> {
    Line::from(vec![
        Span::styled(format!("{name:>11} "), theme.muted()),
        Span::styled(value, style),
    ])
}

fn info(theme: &Theme, host: &HostView, now: i64, frame: &mut Frame<'_>, area: Rect) {
    let text = theme.text();
    let mut lines = Vec::new();
    let reach = host.reach();
    lines.push(field(
        theme,
        "reach",
        reach.as_str().into(),
        styled(theme, reach_urgency(reach)),
    ));
    let (ssh, urgency) = ssh_label(host.ssh);
    lines.push(field(theme, "ssh", ssh.into(), styled(theme, urgency)));
    let (agent, urgency) = agent_label(host.agent);
    let agent = match &host.deploy_step {
        Some(step) => format!("{agent}: {step}"),
        None => agent.into(),
    };
    lines.push(field(theme, "agent", agent, styled(theme, urgency)));
    lines.push(field(
        theme,
        "registration",
        host.registration.as_str().into(),
        styled(theme, registration_urgency(host.registration)),
    ));
    let left = host.token_left(now);
    lines.push(field(
        theme,
        "token",
        format!("{} ({})", host.token, format::time_left(left, host.token)),
        styled(theme, format::token_urgency(host.token, left)),
    ));
    if let Some(stats) = &host.stats {
        let reg = &stats.registration;
        let ago = |t: Option<i64>| format::ago(t, now);
        lines.push(field(theme, "registered", ago(reg.registered_at), text));
        lines.push(field(theme, "heartbeat", ago(reg.last_heartbeat_at), text));
        lines.push(field(
            theme,
            "renewals",
            format!(
                "{} (last {})",
                stats.token.renewals,
                ago(stats.token.last_renewal_at)
            ),
            text,
        ));
        if let Some(error) = reg.last_error.as_ref().or(stats.token.last_error.as_ref()) {
            lines.push(field(theme, "last error", error.clone(), theme.error()));
        }
        lines.push(field(theme, "agent", stats.agent_version.clone(), text));
    }
    if let Some(record) = &host.registry {
        // The control plane's own record: what it will act on.
        let ago = |t: Option<i64>| format::ago(t, now);
        let revoked = record
            .revoked_at
            .map_or_else(String::new, |at| format!(", revoked {}", ago(Some(at))));
        let seen = format!(
            "{}, registered {}, heartbeat {}{revoked}",
            record.agent_id,
            ago(Some(record.registered_at)),
            ago(record.last_heartbeat_at)
        );
        lines.push(field(theme, "registry", seen, text));
    }
    if let Some(error) = host.stats_error.as_ref().or(host.ssh_error.as_ref()) {
        lines.push(field(theme, "error", error.clone(), theme.error()));
    }
    if let Some(wait) = host.poll_retry_in {
        lines.push(field(
            theme,
            "next read",
            format!(
                "in {} ({} failed in a row)",
                format::span(i64::try_from(wait.as_secs()).unwrap_or(i64::MAX)),
                host.poll_failures
            ),
            theme.warn(),
        ));
    }
    lines.push(field(
        theme,
        "last seen",
        format::ago(host.last_seen, now),
        text,
    ));
    facts(theme, host, &mut lines);
    let name = host.hostname().unwrap_or("");
    let block = Block::bordered()
        .title(Span::styled(
            format!(" {} {name} ", host.addr),
            theme.title(),
        ))
        .border_style(theme.border());
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block),
        area,
    );
}

/// The operator's tags, then what fingerprinting and the scan learned.
fn facts(theme: &Theme, host: &HostView, lines: &mut Vec<Line<'_>>) {
    let text = theme.text();
    if !host.tags.is_empty() {
        let tags = crate::model::tags::tags_text(&host.tags);
        lines.push(field(theme, "tags", tags, theme.accent()));
    }
    if let Some(f) = &host.facts {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        lines.push(field(theme, "os", opt(&f.os_pretty), text));
        lines.push(field(theme, "kernel", opt(&f.kernel), text));
        let cpus = f.cpu_count.map_or_else(String::new, |c| format!("{c} × "));
        lines.push(field(
            theme,
            "cpu",
            format!("{cpus}{}", opt(&f.cpu_model)),
            text,
        ));
        lines.push(field(
            theme,
            "memory",
            f.mem_total_bytes.map_or_else(|| "-".into(), format::bytes),
            text,
        ));
        if let (Some(size), Some(used)) = (f.root_fs_size_bytes, f.root_fs_used_bytes) {
            lines.push(field(
                theme,
                "root fs",
                format!("{} of {}", format::bytes(used), format::bytes(size)),
                text,
            ));
        }
        lines.push(field(theme, "arch", opt(&f.arch), text));
        lines.push(field(theme, "virt", opt(&f.virtualization), text));
        lines.push(field(theme, "user", opt(&f.user), text));
    }
    if let Some(key) = &host.host_key {
        lines.push(field(theme, "host key", key.clone(), text));
    }
    if let Some(banner) = &host.scan.ssh_banner {
        lines.push(field(theme, "banner", banner.clone(), theme.muted()));
    }
}

fn charts(
    theme: &Theme,
    host: &HostView,
    fleet: &FleetSnapshot,
    frame: &mut Frame<'_>,
    area: Rect,
) {
    let cores = host
        .stats
        .as_ref()
        .map_or(0, |s| s.cpu.per_core_pct.len() as u16);
    // The charts keep five lines each; then the timeline (its axis goes
    // first when short of room); then the cores.
    let timeline_height = match area.height {
        17.. => TIMELINE_HEIGHT,
        12.. => TIMELINE_HEIGHT - 1,
        _ => 0,
    };
    let room = area.height.saturating_sub(timeline_height + 10);
    let cores_height = if cores == 0 || room < 3 {
        0
    } else {
        (cores + 2).min(room).min(area.height / 3)
    };
    let [cpu, mem, timeline_area, cores_area] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Length(timeline_height),
        Constraint::Length(cores_height),
    ])
    .areas(area);
    let window = HISTORY_WINDOW.as_secs_f64();
    let points = |pick: fn(&crate::engine::Sample) -> f32| -> Vec<(f64, f64)> {
        host.history
            .iter()
            .map(|s| {
                let ago = fleet.taken_at.saturating_duration_since(s.at).as_secs_f64();
                (-ago, f64::from(pick(s)))
            })
            .collect()
    };
    let cpu_now = host.stats.as_ref().map(|s| s.cpu.total_pct);
    let mem_now = host.stats.as_ref().map(|s| s.memory.used_pct());
    chart(
        theme,
        "CPU",
        cpu_now,
        &points(|s| s.cpu_pct),
        theme.chart_cpu(),
        window,
        frame,
        cpu,
    );
    chart(
        theme,
        "memory",
        mem_now,
        &points(|s| s.mem_pct),
        theme.chart_mem(),
        window,
        frame,
        mem,
    );
    if timeline_height > 0 {
        let block = Block::bordered()
            .title(Span::styled(TIMELINE_TITLE, theme.title()))
            .border_style(theme.border());
        let window = i64::try_from(HISTORY_WINDOW.as_secs()).unwrap_or(i64::MAX);
        frame.render_widget(
            TimelineStrip::new(&host.timeline, theme, fleet.now_unix, window).block(block),
            timeline_area,
        );
    }
    if let Some(stats) = host.stats.as_ref().filter(|_| cores_height > 0) {
        let block = Block::bordered()
            .title(Span::styled(" cores ", theme.title()))
            .border_style(theme.border());
        let inner = block.inner(cores_area);
        let bar_width = usize::from(inner.width.saturating_sub(12));
        let lines: Vec<Line<'_>> = stats
            .cpu
            .per_core_pct
            .iter()
            .enumerate()
            .map(|(i, pct)| {
                Line::from(vec![
                    Span::styled(format!("cpu{i:<3}"), theme.muted()),
                    Span::styled(format::bar(*pct, bar_width), theme.chart_cpu()),
                    Span::styled(format!(" {pct:>3.0}%"), theme.text()),
                ])
            })
            .collect();
        frame.render_widget(Paragraph::new(lines).block(block), cores_area);
    }
}

/// Four lanes and the minutes under them, in a border.
const TIMELINE_HEIGHT: u16 = 7;
/// The title doubles as the legend of the glyphs a lane shows (it fits
/// the charts' width on a 120-column screen).
const TIMELINE_TITLE: &str =
    " timeline · ● issued ┃ renewed ┅ expiring ┄ lost ╳ expired ▓ revoked ";

#[allow(clippy::too_many_arguments)] // one chart's worth of settings, all used once
fn chart(
    theme: &Theme,
    name: &str,
    now: Option<f64>,
    points: &[(f64, f64)],
    style: Style,
    window: f64,
    frame: &mut Frame<'_>,
    area: Rect,
) {
    let title = match now {
        Some(pct) => format!(
            " {name} {pct:.0}% · last {}m ",
            HISTORY_WINDOW.as_secs() / 60
        ),
        None => format!(" {name} · no stats yet "),
    };
    let block = Block::bordered()
        .title(Span::styled(title, theme.title()))
        .border_style(theme.border());
    let dataset = Dataset::default()
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(style)
        .data(points);
    let chart = Chart::new(vec![dataset])
        .block(block)
        .x_axis(Axis::default().bounds([-window, 0.0]))
        .y_axis(
            Axis::default()
                .bounds([0.0, 100.0])
                .labels(
                    ["0", "50", "100"].map(|l| format!("{l:>w$}", w = usize::from(LABEL_WIDTH))),
                )
                .style(theme.muted()),
        );
    frame.render_widget(chart, area);
}

fn events(theme: &Theme, host: &HostView, now: i64, frame: &mut Frame<'_>, area: Rect) {
    let block = Block::bordered()
        .title(Span::styled(" host events ", theme.title()))
        .border_style(theme.border());
    let height = usize::from(block.inner(area).height);
    let skip = host.events.len().saturating_sub(height);
    let lines: Vec<Line<'_>> = host
        .events
        .iter()
        .skip(skip)
        .map(|e| {
            Line::from(vec![
                Span::styled(format!("{:>8} ", format::span(now - e.at)), theme.muted()),
                Span::styled(e.text.clone(), theme.text()),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
