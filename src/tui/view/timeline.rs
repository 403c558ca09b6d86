//! The host detail's token timeline: one lane each for the identity
//! token, the certificate, the registration and heartbeats, over the same
//! minutes and columns as the CPU and memory charts above it.
//!
//! ```text
//!  token│●━━━━━━━┃━━━━━━━┃━━━━━━━━┃━━━━expiring┅┅┅┅┅┅expired╳╳╳╳╳
//!   cert│●━━━━━━━━━━━━━━━┃━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━
//!    reg│registered━━━━━━━━━━━━━━━━━━━━━━lost┄┄┄┄┄┄┄┄┄┄┄┄┄expired╳╳
//!   beat│ •  •  •  •  •  •  •  •  •  •  •
//!        -5m         -4m         -3m         -2m         -1m       now
//! ```
//! Meaning never rests on colour alone: each state has its own glyph and,
//! where it starts and there is room, its name; the theme colours them
//! (ok, warn, error) and `NO_COLOR` leaves bold and dim.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::widgets::{Block, Widget};

use crate::engine::{Mark, Timeline};
use crate::model::{RegistrationState, TokenState};
use crate::tui::theme::Theme;

/// Width of the lane names; the charts above pad their value labels to it,
/// so the timeline's columns and theirs are the same instants.
pub const LABEL_WIDTH: u16 = 5;

/// What a lane shows over one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    Nothing,
    Valid,
    Renewing,
    Expiring,
    Lost,
    Expired,
    Revoked,
}

impl Fill {
    fn glyph(self) -> &'static str {
        match self {
            Fill::Nothing => " ",
            Fill::Valid => "━",
            Fill::Renewing => "╍",
            Fill::Expiring => "┅",
            Fill::Lost => "┄",
            Fill::Expired => "╳",
            Fill::Revoked => "▓",
        }
    }

    fn style(self, theme: &Theme) -> Style {
        match self {
            Fill::Nothing => theme.muted(),
            Fill::Valid => theme.ok(),
            Fill::Renewing | Fill::Expiring | Fill::Lost => theme.warn(),
            Fill::Expired | Fill::Revoked => theme.error(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Token,
    Cert,
    Registration,
    Heartbeat,
}

impl Lane {
    const ALL: [Lane; 4] = [Lane::Token, Lane::Cert, Lane::Registration, Lane::Heartbeat];

    fn name(self) -> &'static str {
        match self {
            Lane::Token => "token",
            Lane::Cert => "cert",
            Lane::Registration => "reg",
            Lane::Heartbeat => "beat",
        }
    }

    /// The name written where a state starts, if it gets one.
    fn label(self, fill: Fill) -> Option<&'static str> {
        match (self, fill) {
            (Lane::Registration, Fill::Valid) => Some("registered"),
            (_, Fill::Renewing) => Some("renewing"),
            (_, Fill::Expiring) => Some("expiring"),
            (_, Fill::Lost) => Some("lost"),
            (_, Fill::Expired) => Some("expired"),
            (_, Fill::Revoked) => Some("revoked"),
            _ => None,
        }
    }
}

/// The timeline of one host over `window` seconds up to `now`.
pub struct TimelineStrip<'a> {
    timeline: &'a Timeline,
    theme: &'a Theme,
    now: i64,
    window: i64,
    block: Option<Block<'a>>,
}

impl<'a> TimelineStrip<'a> {
    #[must_use]
    pub fn new(timeline: &'a Timeline, theme: &'a Theme, now: i64, window: i64) -> Self {
        Self {
            timeline,
            theme,
            now,
            window: window.max(1),
            block: None,
        }
    }

    #[must_use]
    pub fn block(mut self, block: Block<'a>) -> Self {
        self.block = Some(block);
        self
    }

    fn start(&self) -> i64 {
        self.now - self.window
    }

    /// The column (of `width`) time `t` falls in: the mapping ratatui's
    /// chart uses for braille points, so marks sit under the chart's.
    fn column(&self, t: i64, width: u16) -> Option<u16> {
        if t < self.start() || t > self.now {
            return None;
        }
        let cells = i64::from(width) * 2 - 1;
        let col = (t - self.start()) * cells / self.window / 2;
        u16::try_from(col).ok().map(|c| c.min(width - 1))
    }

    /// The last instant of column `col`: what a lane shows there.
    fn column_end(&self, col: u16, width: u16) -> i64 {
        let cells = i64::from(width) * 2 - 1;
        let end = (i64::from(col) * 2 + 2) * self.window;
        (self.start() + (end + cells - 1) / cells - 1).min(self.now)
    }

    fn fill(&self, lane: Lane, t: i64) -> Fill {
        let timeline = self.timeline;
        let expired = |at: Option<i64>| at.is_some_and(|e| e <= t);
        match lane {
            Lane::Token => {
                let state = timeline.token_at(t);
                if state == TokenState::None {
                    Fill::Nothing
                } else if timeline.registration_at(t) == RegistrationState::Revoked {
                    Fill::Revoked
                } else if expired(timeline.token_expires_at) {
                    Fill::Expired
                } else {
                    match state {
                        TokenState::None => Fill::Nothing,
                        TokenState::Valid => Fill::Valid,
                        TokenState::Renewing => Fill::Renewing,
                        TokenState::Expiring => Fill::Expiring,
                        TokenState::Expired => Fill::Expired,
                    }
                }
            }
            Lane::Cert => {
                if !timeline.cert_at(t) {
                    Fill::Nothing
                } else if expired(timeline.cert_expires_at) {
                    Fill::Expired
                } else {
                    Fill::Valid
                }
            }
            // Pending is never recorded: blank is "not registered (yet)".
            Lane::Registration => match timeline.registration_at(t) {
                RegistrationState::Pending => Fill::Nothing,
                RegistrationState::Registered => Fill::Valid,
                RegistrationState::Lost => Fill::Lost,
                RegistrationState::Expired => Fill::Expired,
                RegistrationState::Revoked => Fill::Revoked,
            },
            Lane::Heartbeat => Fill::Nothing,
        }
    }

    fn render_lane(&self, lane: Lane, x: u16, y: u16, width: u16, buf: &mut Buffer) {
        let theme = self.theme;
        let fills: Vec<Fill> = (0..width)
            .map(|c| self.fill(lane, self.column_end(c, width)))
            .collect();
        for (c, fill) in (0..width).zip(&fills) {
            buf[(x + c, y)]
                .set_symbol(fill.glyph())
                .set_style(fill.style(theme));
        }
        // Points: issue, renewals, heartbeats.
        for m in self.timeline.marks() {
            let glyph = match (lane, m.mark) {
                (Lane::Token | Lane::Cert, Mark::Issued) => "●",
                (Lane::Token, Mark::TokenRenewed) | (Lane::Cert, Mark::CertRenewed) => "┃",
                (Lane::Heartbeat, Mark::Heartbeat) => "•",
                _ => continue,
            };
            if let Some(c) = self.column(m.at, width) {
                let style = if lane == Lane::Heartbeat {
                    theme.ok()
                } else {
                    theme.accent()
                };
                buf[(x + c, y)].set_symbol(glyph).set_style(style);
            }
        }
        // Names where states start, when they fit before the next change.
        let mut c = 0;
        while c < fills.len() {
            let fill = fills[c];
            let run = fills[c..].iter().take_while(|f| **f == fill).count();
            if let Some(label) = lane.label(fill)
                && label.len() < run
            {
                buf.set_string(x + c as u16, y, label, fill.style(theme));
            }
            c += run;
        }
    }

    /// Minutes back from now, where they fit.
    fn render_axis(&self, x: u16, y: u16, width: u16, buf: &mut Buffer) {
        let style = self.theme.muted();
        let now_label = "now";
        let now_x = x + width.saturating_sub(now_label.len() as u16);
        buf.set_string(now_x, y, now_label, style);
        let mut free_until = now_x.saturating_sub(1);
        let minutes = self.window / 60;
        for m in 1..=minutes {
            let label = format!("-{m}m");
            let Some(col) = self.column(self.now - m * 60, width) else {
                continue;
            };
            let w = label.len() as u16;
            // Centred on its column, but never off the strip's left edge.
            let left = (x + col).saturating_sub(w / 2).max(x);
            if left + w <= free_until {
                buf.set_string(left, y, &label, style);
                free_until = left.saturating_sub(1);
            }
        }
    }
}

impl Widget for TimelineStrip<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let inner = match &self.block {
            Some(block) => {
                block.render(area, buf);
                block.inner(area)
            }
            None => area,
        };
        let theme = self.theme;
        if inner.height == 0 || inner.width <= LABEL_WIDTH + 2 {
            return;
        }
        if self.timeline.is_empty() {
            buf.set_stringn(
                inner.x,
                inner.y,
                "no token, certificate or registration yet",
                usize::from(inner.width),
                theme.muted(),
            );
            return;
        }
        let plot_x = inner.x + LABEL_WIDTH + 1;
        let width = inner.right() - plot_x;
        let mut rows = inner.rows();
        for lane in Lane::ALL {
            let Some(row) = rows.next() else { return };
            let name = format!("{:>w$}", lane.name(), w = usize::from(LABEL_WIDTH));
            buf.set_string(inner.x, row.y, name, theme.muted());
            buf.set_string(inner.x + LABEL_WIDTH, row.y, "│", theme.border());
            self.render_lane(lane, plot_x, row.y, width, buf);
        }
        if let Some(row) = rows.next() {
            self.render_axis(plot_x, row.y, width, buf);
        }
    }
}

#[cfg(test)]
#[path = "timeline_tests.rs"]
mod tests;
