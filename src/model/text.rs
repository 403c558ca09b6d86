//! Text that came from outside (banners, host output, agent-reported
//! fields, error texts from hosts) on its way to an operator.
//!
//! Such text is stored as received and escaped where it is shown: a
//! terminal, a table or a CSV file gets [`escape`]d text, where every
//! control character is written out visibly (`ESC` as `\x1b`), so no host
//! can retitle, clear or reprogram the operator's terminal. JSON needs
//! nothing from here: serde_json escapes control characters itself.
//!
//! Also here: [`check_agent_version`], the one rule for the version an
//! agent reports, which the control plane applies before storing it.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal as itself: C0 and C1 controls,
/// DEL, and the Unicode format characters that reorder or hide text
/// (bidirectional overrides and isolates, line and paragraph separators).
#[must_use]
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// `s` with every unsafe character written out visibly: `\n`, `\r`, `\t`,
/// `\x1b` (other ASCII controls and DEL), `\u{9b}` (the rest). Borrowed
/// when there was nothing to escape. For one table cell, CSV field or line.
#[must_use]
pub fn escape(s: &str) -> Cow<'_, str> {
    escape_keeping(s, false)
}

/// As [`escape`], but line breaks stay: for multi-line text such as a
/// host's stderr or an agent's last log lines.
#[must_use]
pub fn escape_lines(s: &str) -> Cow<'_, str> {
    escape_keeping(s, true)
}

fn escape_keeping(s: &str, newlines: bool) -> Cow<'_, str> {
    let keep = |c: char| !is_unsafe(c) || (newlines && c == '\n');
    if s.chars().all(keep) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if keep(c) {
            out.push(c);
            continue;
        }
        let _ = match c {
            '\n' => write!(out, "\\n"),
            '\r' => write!(out, "\\r"),
            '\t' => write!(out, "\\t"),
            c if c.is_ascii() => write!(out, "\\x{:02x}", u32::from(c)),
            c => write!(out, "\\u{{{:x}}}", u32::from(c)),
        };
    }
    Cow::Owned(out)
}

/// `json` (serialised JSON) with what serde_json leaves raw and a
/// terminal may still act on (DEL, C1 controls, bidirectional overrides)
/// written as `\uXXXX`. serde_json already escapes the ASCII controls;
/// these others can only sit inside JSON strings, where `\uXXXX` is the
/// same text, so the result parses to the same value.
#[must_use]
pub fn escape_json(json: &str) -> Cow<'_, str> {
    let raw = |c: char| is_unsafe(c) && c >= ' ';
    if !json.chars().any(raw) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if raw(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The longest agent version accepted.
pub const MAX_AGENT_VERSION: usize = 64;

/// An agent's version as the control plane stores and shows it: 1 to 64
/// characters of letters, digits and `.+-_~` (semantic versions with
/// pre-release and build parts). `Err` says what is wrong, in words fit
/// for the API's answer.
pub fn check_agent_version(version: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_' | '~');
    if version.is_empty() || version.len() > MAX_AGENT_VERSION {
        return Err(format!(
            "agent_version must be 1 to {MAX_AGENT_VERSION} characters"
        ));
    }
    if !version.chars().all(allowed) {
        return Err(format!(
            "agent_version {:?} may hold only letters, digits and . + - _ ~",
            escape(version)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "SSH-2.0-x\x1b]0;PWNED\x07\x1b[2J\r\n\u{9b}31m\u{202e}\x7f";

    #[test]
    fn controls_are_written_out_and_clean_text_is_left_alone() {
        let shown = escape(HOSTILE);
        assert_eq!(
            shown,
            "SSH-2.0-x\\x1b]0;PWNED\\x07\\x1b[2J\\r\\n\\u{9b}31m\\u{202e}\\x7f"
        );
        assert!(!shown.chars().any(is_unsafe), "{shown}");
        let clean = "OpenSSH_9.2p1 Debian-2+deb12u3, \"quoted\" é 日本";
        assert!(matches!(escape(clean), Cow::Borrowed(_)));
        assert_eq!(escape(clean), clean);
    }

    #[test]
    fn lines_keep_their_breaks_only() {
        assert_eq!(
            escape_lines("one\x1b[2m\ntwo\r\n\tthree"),
            "one\\x1b[2m\ntwo\\r\n\\tthree"
        );
    }

    #[test]
    fn json_keeps_its_value_and_loses_the_raw_controls() {
        let json = format!("{{\"v\": {:?}, \"n\": 1}}\n", "x");
        assert!(matches!(escape_json(&json), Cow::Borrowed(_)));
        let value = "a\u{9b}31m\u{7f}\u{202e}b\x1b";
        let json = format!(
            "[\n  {{\"v\": \"{}\"}}\n]",
            value.replace('\x1b', "\\u001b")
        );
        let safe = escape_json(&json);
        assert!(
            !safe.contains(['\u{9b}', '\u{7f}', '\u{202e}', '\x1b']),
            "{safe}"
        );
        assert!(safe.contains("\n  {"), "layout stays: {safe}");
        let parsed: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(parsed[0]["v"], value);
        let direct = serde_json::to_string_pretty(&[("v", value)]).unwrap();
        let reparsed: serde_json::Value = serde_json::from_str(&escape_json(&direct)).unwrap();
        assert_eq!(reparsed[0][1], value);
    }

    #[test]
    fn agent_versions_are_plain() {
        for good in ["0.1.0", "1.2.3-rc.1+build.5", "0.1.0-test", "2~beta_1"] {
            assert_eq!(check_agent_version(good), Ok(()), "{good}");
        }
        for bad in ["", "0.1.0 ", "0.1\x1b[2J", "0.1\u{202e}", "a/b", "x;y"] {
            let err = check_agent_version(bad).unwrap_err();
            assert!(!err.contains('\x1b'), "the refusal is clean too: {err}");
        }
        assert!(check_agent_version(&"1".repeat(65)).is_err());
        assert!(check_agent_version(&"1".repeat(64)).is_ok());
    }
}
