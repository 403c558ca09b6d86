//! Where each pane goes: one pure function of the screen size, shared by
//! the view (to draw) and `update` (to page and to map mouse clicks).

use ratatui::layout::{Constraint, Layout, Rect};

/// The screen's panes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    pub header: Rect,
    /// The fleet table, the host detail or the full log.
    pub body: Rect,
    /// Jobs and events.
    pub pane: Rect,
    pub footer: Rect,
}

impl Areas {
    #[must_use]
    pub fn new(area: Rect) -> Self {
        // Small screens keep most lines for hosts.
        let pane = match area.height {
            0..24 => 0,
            24..40 => 6,
            _ => 12,
        };
        let [header, body, pane, footer] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(3),
            Constraint::Length(pane),
            Constraint::Length(1),
        ])
        .areas(area);
        Self {
            header,
            body,
            pane,
            footer,
        }
    }

    /// Host rows the table shows (the body less its header row).
    #[must_use]
    pub fn table_rows(&self) -> usize {
        usize::from(self.body.height.saturating_sub(1))
    }

    /// The table row (0 = first shown) at screen line `y`, if any.
    #[must_use]
    pub fn table_row_at(&self, y: u16) -> Option<usize> {
        let first = self.body.y + 1;
        (y >= first && y < self.body.bottom()).then(|| usize::from(y - first))
    }
}

/// A centred rectangle `width` x `height`, clipped to `area`.
#[must_use]
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}
