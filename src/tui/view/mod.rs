//! Drawing: `view` reads the app and the fleet snapshot and draws; it never
//! changes state and never waits. One render function per pane, each in
//! its own file.
//!
//! ```text
//!  ┌─ header: fleetctl · counts · filter · sort · marks ───────────────┐
//!  │ body: fleet table (only visible rows built)                        │
//!  │       | host detail (facts · CPU/mem charts · cores · timeline)    │
//!  │       | log (jobs + events, full screen)                           │
//!  ├─ pane: jobs with gauges ─────────┬─ events (scrolls) ──────────────┤
//!  └─ footer: keys | / filter | : command line | status ───────────────┘
//!     overlays: ? help · confirm deploy/undeploy/revoke · scan targets ·
//!               prompts from jobs (passphrase/password masked, host key y/n)
//! ```

mod detail;
mod fleet;
mod footer;
mod header;
mod help;
mod jobs;
mod modal;
mod runs;
mod timeline;

use ratatui::Frame;

use super::app::{App, InputKind, View};
use super::layout::Areas;
use crate::engine::FleetSnapshot;

/// Draws the whole screen.
pub fn view(app: &App, fleet: &FleetSnapshot, frame: &mut Frame<'_>) {
    let areas = Areas::new(frame.area());
    header::render(app, fleet, frame, areas.header);
    match app.view {
        View::Fleet => fleet::render(app, fleet, frame, areas.body),
        View::Detail(addr) => detail::render(app, fleet, addr, frame, areas.body),
        // Full screen: the pane's lines too.
        View::Log => jobs::render(app, fleet, frame, areas.body.union(areas.pane)),
        View::Run => runs::render(app, frame, areas.body),
    }
    if app.view != View::Log && areas.pane.height > 0 {
        jobs::render(app, fleet, frame, areas.pane);
    }
    footer::render(app, frame, areas.footer);

    let screen = frame.area();
    if app.help {
        help::render(app, frame, screen);
    }
    if let Some(confirm) = &app.confirm {
        modal::confirm(app, confirm, frame, screen);
    }
    if let Some(input) = &app.input
        && input.kind == InputKind::Scan
    {
        modal::scan(app, &input.text, frame, screen);
    }
    if let Some(prompt) = app.prompts.front() {
        modal::prompt(app, prompt, frame, screen);
    }
}
