//! The timeline at fixed times: snapshots of the buffer (its text and,
//! through `Debug`, every style run) in the default and `NO_COLOR` themes,
//! and colours checked cell by cell where they carry meaning.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::widgets::Widget as _;

use super::*;
use crate::tui::theme::ThemeSet;

const NOW: i64 = 1_700_000_000;
const WINDOW: i64 = 300;

fn default_theme() -> Theme {
    ThemeSet::built_in().get("default").unwrap()
}

fn no_color() -> Theme {
    ThemeSet::load(None, true).get("default").unwrap()
}

fn draw(timeline: &Timeline, theme: &Theme, width: u16) -> Buffer {
    let mut buf = Buffer::empty(Rect::new(0, 0, width, 5));
    TimelineStrip::new(timeline, theme, NOW, WINDOW).render(buf.area, &mut buf);
    buf
}

/// A heartbeat every 5 s from `first` to `last` seconds ago.
fn heartbeats(t: &mut Timeline, first: i64, last: i64) {
    for back in (last..=first).step_by(5) {
        t.record(NOW - back, Mark::Heartbeat);
    }
}

/// Registered 280 s ago, renewing every 40 s, heartbeats every 5 s.
fn renewals() -> Timeline {
    let mut t = Timeline::default();
    t.record(NOW - 280, Mark::Issued);
    for back in [240, 200, 160, 120, 80, 40] {
        t.record(NOW - back, Mark::TokenRenewed);
    }
    t.record(NOW - 160, Mark::CertRenewed);
    t.record(NOW - 40, Mark::CertRenewed);
    heartbeats(&mut t, 275, 5);
    t.token_expires_at = Some(NOW + 20);
    t.cert_expires_at = Some(NOW + 200);
    t
}

/// Registered before the window; the control plane gone 150 s ago:
/// lost, then renewal failing (expiring) with 30 s left.
fn expiring() -> Timeline {
    let mut t = Timeline::default();
    t.record(NOW - 900, Mark::Issued);
    t.prune(NOW - WINDOW);
    t.record(NOW - 250, Mark::TokenRenewed);
    heartbeats(&mut t, 295, 155);
    t.record(NOW - 135, Mark::Registration(RegistrationState::Lost));
    t.record(NOW - 90, Mark::Token(TokenState::Expiring));
    t.token_expires_at = Some(NOW + 30);
    t.cert_expires_at = Some(NOW + 600);
    t
}

/// As `expiring`, 90 s on: the token and the registration expired.
fn expired() -> Timeline {
    let mut t = Timeline::default();
    t.record(NOW - 990, Mark::Issued);
    t.prune(NOW - WINDOW);
    heartbeats(&mut t, 295, 245);
    t.record(NOW - 225, Mark::Registration(RegistrationState::Lost));
    t.record(NOW - 180, Mark::Token(TokenState::Expiring));
    t.record(NOW - 60, Mark::Token(TokenState::Expired));
    t.record(NOW - 60, Mark::Registration(RegistrationState::Expired));
    t.token_expires_at = Some(NOW - 60);
    t.cert_expires_at = Some(NOW - 20);
    t
}

/// Revoked by an operator 100 s ago; its next heartbeat learnt it.
fn revoked() -> Timeline {
    let mut t = Timeline::default();
    t.record(NOW - 200, Mark::Issued);
    t.record(NOW - 160, Mark::TokenRenewed);
    t.record(NOW - 120, Mark::TokenRenewed);
    heartbeats(&mut t, 195, 100);
    t.record(NOW - 100, Mark::Revoked);
    t.token_expires_at = Some(NOW - 60);
    t.cert_expires_at = Some(NOW + 40);
    t
}

fn text(buf: &Buffer) -> String {
    let area = buf.area;
    (0..area.height)
        .map(|y| {
            (0..area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

macro_rules! snapshots {
    ($($name:ident: $scenario:ident, $theme:ident;)+) => {$(
        #[test]
        fn $name() {
            insta::assert_snapshot!(format!("{:?}", draw(&$scenario(), &$theme(), 66)));
        }
    )+};
}

snapshots! {
    renewals_default: renewals, default_theme;
    renewals_no_color: renewals, no_color;
    expiring_default: expiring, default_theme;
    expiring_no_color: expiring, no_color;
    expired_default: expired, default_theme;
    expired_no_color: expired, no_color;
    revoked_default: revoked, default_theme;
    revoked_no_color: revoked, no_color;
}

#[test]
fn renewals_are_ticks_on_the_token_and_certificate_lanes() {
    let screen = text(&draw(&renewals(), &default_theme(), 66));
    let lanes: Vec<&str> = screen.lines().collect();
    assert!(lanes[0].starts_with("token│"), "{screen}");
    assert_eq!(lanes[0].matches('┃').count(), 6, "{screen}");
    assert_eq!(lanes[1].matches('┃').count(), 2, "{screen}");
    assert_eq!(lanes[0].matches('●').count(), 1, "{screen}");
    assert!(lanes[2].contains("registered━"), "{screen}");
    // One heartbeat every 5 s over 4.6 columns' worth of seconds each.
    assert!(lanes[3].matches('•').count() > 50, "{screen}");
    assert!(lanes[4].trim_start().starts_with("-5m") && lanes[4].ends_with("now"));
    assert!(lanes[4].contains("-1m"), "{screen}");
}

#[test]
fn each_state_has_a_glyph_and_a_name_without_colour() {
    let theme = no_color();
    for (scenario, shown) in [
        (expiring(), &["lost┄", "expiring┅"][..]),
        (expired(), &["expired╳", "lost┄", "expiring┅"][..]),
        (revoked(), &["revoked▓"][..]),
    ] {
        let buf = draw(&scenario, &theme, 66);
        let screen = text(&buf);
        for s in shown {
            assert!(screen.contains(s), "{s:?} not in\n{screen}");
        }
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                assert_eq!(buf[(x, y)].fg, ratatui::style::Color::Reset, "{x},{y}");
            }
        }
    }
    // Warnings bold, failures bold and underlined, as the rest of the console.
    let buf = draw(&expired(), &theme, 66);
    let (x, y) = find(&buf, "expired╳");
    assert_eq!(buf[(x, y)].modifier, Modifier::BOLD | Modifier::UNDERLINED);
    let (x, y) = find(&buf, "lost");
    assert_eq!(buf[(x, y)].modifier, Modifier::BOLD);
}

fn find(buf: &Buffer, needle: &str) -> (u16, u16) {
    for y in 0..buf.area.height {
        let line: String = (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect();
        if let Some(byte) = line.find(needle) {
            return (line[..byte].chars().count() as u16, y);
        }
    }
    panic!("{needle:?} not drawn");
}

#[test]
fn colours_come_from_the_theme_where_they_carry_meaning() {
    // A 12-column strip over 120 s: 10 s a column.
    let theme = default_theme();
    let mut t = Timeline::default();
    t.record(NOW - 120, Mark::Issued);
    t.record(NOW - 60, Mark::Token(TokenState::Expiring));
    t.record(NOW - 20, Mark::Token(TokenState::Expired));
    t.token_expires_at = Some(NOW - 20);
    let mut buf = Buffer::empty(Rect::new(0, 0, 18, 1));
    TimelineStrip::new(&t, &theme, NOW, 120).render(buf.area, &mut buf);

    let mut expected = Buffer::with_lines(["token│●━━━━┅┅┅┅╳╳╳"]);
    expected.set_style(Rect::new(0, 0, 5, 1), theme.muted());
    expected.set_style(Rect::new(5, 0, 1, 1), theme.border());
    expected.set_style(Rect::new(6, 0, 1, 1), theme.accent());
    expected.set_style(Rect::new(7, 0, 4, 1), Style::new().fg(theme.ok));
    expected.set_style(Rect::new(11, 0, 4, 1), Style::new().fg(theme.warn));
    expected.set_style(Rect::new(15, 0, 3, 1), Style::new().fg(theme.error));
    assert_eq!(buf, expected);
}

#[test]
fn a_host_without_an_agent_says_so() {
    let screen = text(&draw(&Timeline::default(), &default_theme(), 66));
    assert_eq!(
        screen.lines().next(),
        Some("no token, certificate or registration yet")
    );
}

#[test]
fn marks_fall_in_the_columns_the_charts_put_the_same_instants_in() {
    let (t, theme) = (renewals(), default_theme());
    let strip = TimelineStrip::new(&t, &theme, NOW, WINDOW);
    assert_eq!(strip.column(NOW - WINDOW, 60), Some(0));
    assert_eq!(strip.column(NOW, 60), Some(59));
    assert_eq!(strip.column(NOW - 150, 60), Some(29));
    assert_eq!(strip.column(NOW - WINDOW - 1, 60), None);
    for c in 0..60 {
        let end = strip.column_end(c, 60);
        assert_eq!(strip.column(end, 60), Some(c), "column {c} ends at {end}");
        if c < 59 {
            assert_eq!(strip.column(end + 1, 60), Some(c + 1));
        }
    }
}
