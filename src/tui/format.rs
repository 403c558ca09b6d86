//! How values read on screen: ages, time left, sizes, tiny bars and
//! sparklines drawn as text (cheaper than a widget per table row).

use crate::model::TokenState;

/// How close to trouble a value is; views map it to theme colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    Ok,
    Warn,
    Error,
    /// Nothing to judge (no token, not tried yet).
    Muted,
}

/// Time left under which a token is shown as a warning, then an error.
pub const TOKEN_WARN_SECS: i64 = 15 * 60;
pub const TOKEN_ERROR_SECS: i64 = 5 * 60;

/// How worrying a token is, from its state and time left.
#[must_use]
pub fn token_urgency(state: TokenState, left: Option<i64>) -> Urgency {
    match (state, left) {
        (TokenState::None, _) => Urgency::Muted,
        (TokenState::Expired, _) => Urgency::Error,
        (_, Some(left)) if left < TOKEN_ERROR_SECS => Urgency::Error,
        (TokenState::Expiring, _) => Urgency::Warn,
        (_, Some(left)) if left < TOKEN_WARN_SECS => Urgency::Warn,
        _ => Urgency::Ok,
    }
}

/// A duration in the two largest units: `45s`, `12m`, `3h05m`, `2d04h`.
#[must_use]
pub fn span(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `5s ago`, or `-` when never.
#[must_use]
pub fn ago(then: Option<i64>, now: i64) -> String {
    then.map_or_else(|| "-".into(), |t| format!("{} ago", span(now - t)))
}

/// Time left on a token: `42m`, `expired`, or `-`.
#[must_use]
pub fn time_left(left: Option<i64>, state: TokenState) -> String {
    match (state, left) {
        (TokenState::None, _) => "-".into(),
        (TokenState::Expired, _) => "expired".into(),
        (_, Some(l)) if l <= 0 => "expired".into(),
        (_, Some(l)) => span(l),
        (_, None) => state.as_str().into(),
    }
}

/// Bytes in binary units: `512 B`, `3.4 GiB`.
#[must_use]
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

const TICKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The last `width` percentages (0..=100) as a one-line sparkline.
#[must_use]
#[allow(clippy::cast_sign_loss)] // clamped to 0..=100 first
pub fn sparkline(values: impl DoubleEndedIterator<Item = f32>, width: usize) -> String {
    let mut recent: Vec<f32> = values.rev().take(width).collect();
    recent.reverse();
    recent
        .into_iter()
        .map(|v| {
            let i = ((v.clamp(0.0, 100.0) / 100.0) * 7.0).round() as usize;
            TICKS[i.min(7)]
        })
        .collect()
}

/// A percentage as a bar `width` cells wide: `████░░░░`.
#[must_use]
#[allow(clippy::cast_sign_loss)] // clamped to 0..=100 first
pub fn bar(pct: f64, width: usize) -> String {
    let filled = ((pct.clamp(0.0, 100.0) / 100.0) * width as f64).round() as usize;
    let mut s = "█".repeat(filled.min(width));
    s.push_str(&"░".repeat(width - filled.min(width)));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_urgency_rises_as_expiry_nears() {
        assert_eq!(token_urgency(TokenState::Valid, Some(3600)), Urgency::Ok);
        assert_eq!(token_urgency(TokenState::Valid, Some(600)), Urgency::Warn);
        assert_eq!(token_urgency(TokenState::Valid, Some(60)), Urgency::Error);
        assert_eq!(
            token_urgency(TokenState::Expiring, Some(3600)),
            Urgency::Warn
        );
        assert_eq!(token_urgency(TokenState::Expired, None), Urgency::Error);
        assert_eq!(token_urgency(TokenState::None, None), Urgency::Muted);
    }

    #[test]
    fn spans_read_in_two_units() {
        assert_eq!(span(5), "5s");
        assert_eq!(span(125), "2m");
        assert_eq!(span(3900), "1h05m");
        assert_eq!(span(90_000), "1d01h");
        assert_eq!(ago(Some(90), 100), "10s ago");
        assert_eq!(ago(None, 100), "-");
        assert_eq!(time_left(Some(-5), TokenState::Valid), "expired");
    }

    #[test]
    fn bars_and_sparklines_scale_to_percent() {
        assert_eq!(bar(50.0, 4), "██░░");
        assert_eq!(bar(150.0, 2), "██");
        assert_eq!(sparkline([0.0, 100.0, 50.0].into_iter(), 2), "█▅");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(bytes(10), "10 B");
    }
}
