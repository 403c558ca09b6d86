//! The command line's Tab completion and history. Pure: what completes is
//! a function of the line and the words on offer, so it is tested without
//! a screen; the history file is read before the console starts and
//! written after it ends, never while it draws.

use std::path::{Path, PathBuf};

/// The `:` commands, as completion offers them.
pub const COMMANDS: &[&str] = &[
    "cancel",
    "deploy",
    "filter",
    "fingerprint",
    "quit",
    "refresh",
    "revoke",
    "scan",
    "sort",
    "theme",
    "undeploy",
];

/// The `/` filter's keys.
pub const FILTER_KEYS: &[&str] = &["agent:", "os:", "reach:", "reg:", "ssh:", "tag:", "token:"];

/// The words completion may offer besides commands and filter keys.
#[derive(Debug, Clone, Default)]
pub struct Words {
    /// Custom commands' names, offered with the built-in ones.
    pub commands: Vec<String>,
    pub columns: Vec<String>,
    pub themes: Vec<String>,
    /// Host names and addresses, as the table shows them.
    pub hosts: Vec<String>,
}

/// What Tab did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completed {
    /// The line, completed (one candidate, or their common prefix).
    Line(String),
    /// Several candidates and nothing more in common: the line as it was,
    /// and the candidates to show.
    Choices(Vec<String>),
    Nothing,
}

/// Completes the last word of `line`: a `:` command line when `command`,
/// else the `/` filter.
#[must_use]
pub fn complete(line: &str, command: bool, words: &Words) -> Completed {
    let (head, last) = match line.rfind(' ') {
        Some(at) => (&line[..=at], &line[at + 1..]),
        None => ("", line),
    };
    let first = line.split_whitespace().next().unwrap_or("");
    let offer: Vec<&str> = if command && head.is_empty() {
        COMMANDS
            .iter()
            .copied()
            .chain(words.commands.iter().map(String::as_str))
            .collect()
    } else if command {
        match first {
            "sort" => words.columns.iter().map(String::as_str).collect(),
            "theme" => words.themes.iter().map(String::as_str).collect(),
            "filter" => filter_words(words),
            "scan" => words.hosts.iter().map(String::as_str).collect(),
            _ => Vec::new(),
        }
    } else {
        filter_words(words)
    };
    let lower = last.to_lowercase();
    let mut hits: Vec<&str> = offer
        .into_iter()
        .filter(|w| w.to_lowercase().starts_with(&lower))
        .collect();
    hits.sort_unstable();
    hits.dedup();
    match hits.as_slice() {
        [] => Completed::Nothing,
        [one] => {
            let space = if one.ends_with(':') { "" } else { " " };
            Completed::Line(format!("{head}{one}{space}"))
        }
        many => {
            let common = common_prefix(many);
            if common.chars().count() > last.chars().count() {
                Completed::Line(format!("{head}{common}"))
            } else {
                Completed::Choices(many.iter().map(ToString::to_string).collect())
            }
        }
    }
}

fn filter_words(words: &Words) -> Vec<&str> {
    FILTER_KEYS
        .iter()
        .copied()
        .chain(words.hosts.iter().map(String::as_str))
        .collect()
}

/// The longest prefix (case-insensitive, in the first word's case) every
/// word shares.
fn common_prefix(words: &[&str]) -> String {
    let first = words[0];
    let mut end = first.len();
    for w in &words[1..] {
        end = first
            .char_indices()
            .zip(w.chars())
            .take_while(|((_, a), b)| a.eq_ignore_ascii_case(b))
            .last()
            .map_or(0, |((i, c), _)| i + c.len_utf8())
            .min(end);
    }
    first[..end].to_string()
}

/// Lines kept across runs, at most this many.
const KEEP: usize = 500;

/// Command lines entered, oldest first, and where Up/Down is in them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub lines: Vec<String>,
    /// While browsing: the line shown (an index into `lines`).
    at: Option<usize>,
    /// Where the lines are kept between runs.
    file: Option<PathBuf>,
}

impl History {
    /// The history kept in `file` (none yet, or unreadable: empty).
    #[must_use]
    pub fn load(file: &Path) -> Self {
        let lines = std::fs::read_to_string(file)
            .map(|text| {
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Self {
            lines,
            at: None,
            file: Some(file.to_owned()),
        }
    }

    /// Writes the newest lines back (0600: command lines may name hosts).
    pub fn save(&self) -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let Some(file) = &self.file else {
            return Ok(());
        };
        let start = self.lines.len().saturating_sub(KEEP);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(file)?;
        for line in &self.lines[start..] {
            writeln!(out, "{line}")?;
        }
        Ok(())
    }

    /// Remembers an entered line (not a repeat of the last one).
    pub fn push(&mut self, line: &str) {
        let line = line.trim();
        self.at = None;
        if line.is_empty() || self.lines.last().is_some_and(|l| l == line) {
            return;
        }
        self.lines.push(line.replace(['\n', '\r'], " "));
    }

    /// Up: the line before the one shown, if any.
    pub fn older(&mut self) -> Option<&str> {
        let at = match self.at {
            None => self.lines.len().checked_sub(1)?,
            Some(0) => 0,
            Some(i) => i - 1,
        };
        self.at = Some(at);
        self.lines.get(at).map(String::as_str)
    }

    /// Down: the line after the one shown; past the newest, an empty line.
    pub fn newer(&mut self) -> Option<&str> {
        let at = self.at? + 1;
        if at >= self.lines.len() {
            self.at = None;
            return Some("");
        }
        self.at = Some(at);
        self.lines.get(at).map(String::as_str)
    }

    /// Typing leaves browsing.
    pub fn reset(&mut self) {
        self.at = None;
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn words() -> Words {
        Words {
            commands: vec!["wipe".into()],
            columns: vec![
                "address".into(),
                "agent".into(),
                "cpu".into(),
                "tags".into(),
            ],
            themes: vec!["default".into(), "dracula".into(), "light".into()],
            hosts: vec!["web1".into(), "web2".into(), "db1".into()],
        }
    }

    #[test]
    fn tab_completes_commands_columns_themes_filter_keys_and_hosts() {
        let w = words();
        let line = |l: &str| Completed::Line(l.to_string());
        assert_eq!(
            complete("fi", true, &w),
            Completed::Choices(vec!["filter".into(), "fingerprint".into()])
        );
        assert_eq!(complete("fin", true, &w), line("fingerprint "));
        assert_eq!(complete("u", true, &w), line("undeploy "));
        assert_eq!(complete("sort cp", true, &w), line("sort cpu "));
        assert_eq!(
            complete("sort a", true, &w),
            Completed::Choices(vec!["address".into(), "agent".into()])
        );
        assert_eq!(complete("sort ad", true, &w), line("sort address "));
        assert_eq!(
            complete("theme d", true, &w),
            Completed::Choices(vec!["default".into(), "dracula".into()])
        );
        assert_eq!(complete("theme dr", true, &w), line("theme dracula "));
        assert_eq!(complete("filter ta", true, &w), line("filter tag:"));
        assert_eq!(complete("we", false, &w), line("web"), "the common prefix");
        assert_eq!(
            complete("agent:none db", false, &w),
            line("agent:none db1 ")
        );
        assert_eq!(complete("to", false, &w), line("token:"));
        assert_eq!(complete("scan w", true, &w), line("scan web"));
        assert_eq!(complete("zz", true, &w), Completed::Nothing);
        assert_eq!(
            complete("wi", true, &w),
            line("wipe "),
            "custom commands too"
        );
        assert_eq!(complete("deploy x", true, &w), Completed::Nothing);
    }

    #[test]
    fn history_browses_and_is_kept_across_runs() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("history");
        let mut h = History::load(&file);
        assert_eq!(h.older(), None);
        h.push("scan 10.0.0.0/24");
        h.push("sort cpu");
        h.push("sort cpu");
        h.push("  ");
        assert_eq!(h.lines, ["scan 10.0.0.0/24", "sort cpu"]);
        assert_eq!(h.older(), Some("sort cpu"));
        assert_eq!(h.older(), Some("scan 10.0.0.0/24"));
        assert_eq!(h.older(), Some("scan 10.0.0.0/24"), "stays at the oldest");
        assert_eq!(h.newer(), Some("sort cpu"));
        assert_eq!(h.newer(), Some(""), "past the newest: an empty line");
        assert_eq!(h.newer(), None);
        h.save().unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = History::load(&file);
        assert_eq!(again.lines, ["scan 10.0.0.0/24", "sort cpu"]);
    }
}
