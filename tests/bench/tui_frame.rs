//! Frame time of the console: build and render the fleet view into a
//! 160x48 buffer for 1,000 and 10,000 hosts, as the cursor moves and pages.
//! Also the cost of re-filtering and re-sorting the table, which happens
//! when a new snapshot arrives (about once a second), not every frame.
//!
//! `cargo bench --bench tui_frame` prints a table. Target: p99 frame under
//! 5 ms at 10,000 hosts.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use fleetctl::tui::app::{App, Msg, update};
use fleetctl::tui::sample;
use fleetctl::tui::theme::ThemeSet;
use fleetctl::tui::view::view;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const FRAMES: usize = 1000;
const NOW: i64 = 1_700_000_000;

/// The `percent`th percentile (nearest rank) of sorted samples.
fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    sorted[(sorted.len() - 1) * percent / 100]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

fn main() {
    println!("| hosts | what | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    for hosts in [1_000, 10_000] {
        let themes = ThemeSet::built_in();
        let theme = themes.get("default").unwrap();
        let mut app = App::new(themes, theme);
        let fleet = Arc::new(sample::fleet(hosts, NOW));
        update(&mut app, Msg::Resize(160, 48));
        update(&mut app, Msg::Snapshot(Arc::clone(&fleet)));
        let mut terminal = Terminal::new(TestBackend::new(160, 48)).unwrap();

        let mut frames = Vec::with_capacity(FRAMES);
        for i in 0..FRAMES {
            // Mostly single steps, a page now and then: every frame differs.
            let key = if i % 10 == 9 {
                KeyCode::PageDown
            } else {
                KeyCode::Char('j')
            };
            update(&mut app, Msg::Key(KeyEvent::new(key, KeyModifiers::NONE)));
            let started = Instant::now();
            terminal.draw(|f| view(&app, &fleet, f)).unwrap();
            frames.push(started.elapsed());
        }
        frames.sort();
        println!(
            "| {hosts} | frame (build + render 160x48) | {} | {} | {} |",
            ms(percentile(&frames, 50)),
            ms(percentile(&frames, 99)),
            ms(*frames.last().unwrap())
        );

        let mut recompute = Vec::new();
        for filter in ["", "node", "agent:running token:expiring"] {
            app.set_filter(filter.to_owned());
            for _ in 0..20 {
                let started = Instant::now();
                update(&mut app, Msg::Snapshot(Arc::clone(&fleet)));
                recompute.push(started.elapsed());
            }
        }
        recompute.sort();
        println!(
            "| {hosts} | new snapshot: filter + sort rows | {} | {} | {} |",
            ms(percentile(&recompute, 50)),
            ms(percentile(&recompute, 99)),
            ms(*recompute.last().unwrap())
        );
    }
}
