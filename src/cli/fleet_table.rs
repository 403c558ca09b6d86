//! The fleet as a plain text table, one row per host: what `fleetctl demo
//! --headless` prints at the end, with the console's columns and words.

use std::fmt::Write as _;

use crate::engine::{FleetSnapshot, HostView};
use crate::model::{AgentState, TokenState};
use crate::tui::format;

const HEADER: [&str; 11] = [
    "ADDRESS", "HOSTNAME", "REACH", "SSH", "AGENT", "REG", "TOKEN", "CPU", "MEM", "LOAD", "SEEN",
];

/// The table for `fleet`, header first, columns padded to fit.
#[must_use]
pub fn render(fleet: &FleetSnapshot) -> String {
    let rows: Vec<[String; 11]> = fleet.hosts.iter().map(|h| row(h, fleet.now_unix)).collect();
    let mut widths = HEADER.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = HEADER.map(str::to_string);
    for r in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in r.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let _ = write!(line, "{cell:<w$}");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn row(h: &HostView, now: i64) -> [String; 11] {
    let agent = match (h.agent, &h.deploy_step) {
        (AgentState::Deploying, Some(step)) => format!("deploying: {step}"),
        (state, _) => state.to_string(),
    };
    let token = match h.token {
        TokenState::None => "-".to_string(),
        TokenState::Valid => format::time_left(h.token_left(now), h.token),
        state => state.to_string(),
    };
    let (cpu, mem, load) = h.stats.as_ref().map_or_else(
        || ("-".into(), "-".into(), "-".into()),
        |s| {
            (
                format!("{:.0}%", s.cpu.total_pct),
                format!("{:.0}%", s.memory.used_pct()),
                format!("{:.2}", s.cpu.load1),
            )
        },
    );
    [
        h.addr.to_string(),
        h.hostname().unwrap_or("-").to_string(),
        h.reach().to_string(),
        h.ssh.to_string(),
        agent,
        if h.agent == AgentState::None {
            "-".to_string()
        } else {
            h.registration.to_string()
        },
        token,
        cpu,
        mem,
        load,
        format::ago(h.last_seen, now),
    ]
}
