//! Colour themes: semantic names (ok, warn, error, muted...) mapped to
//! colours by `themes/*.toml`, embedded at build time; a user's
//! `<config dir>/themes/NAME.toml` overrides a built-in of the same name.
//! A key a theme leaves out takes the default theme's colour; with
//! `NO_COLOR` set there are no colours at all, only bold, dim and reverse.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use ratatui::style::{Color, Modifier, Style};

/// The built-in themes, by name.
const BUILT_IN: &[(&str, &str)] = &[
    ("default", include_str!("../../themes/default.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
    (
        "catppuccin-mocha",
        include_str!("../../themes/catppuccin-mocha.toml"),
    ),
];

/// The theme used when none is chosen.
pub const DEFAULT_THEME: &str = "default";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThemeError {
    #[error("no theme named {name:?}; available: {available}")]
    Unknown { name: String, available: String },
    #[error("theme {name:?} is malformed: {message}")]
    Malformed { name: String, message: String },
}

/// Colours by meaning. `None` of them is used when colour is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Theme {
    pub name: String,
    /// No colours (`NO_COLOR`): meaning is carried by modifiers.
    pub monochrome: bool,
    pub text: Color,
    pub muted: Color,
    pub ok: Color,
    pub warn: Color,
    pub error: Color,
    pub accent: Color,
    pub header: Color,
    pub border: Color,
    pub title: Color,
    pub selected_fg: Color,
    pub selected_bg: Color,
    pub marked: Color,
    pub chart_cpu: Color,
    pub chart_mem: Color,
    pub gauge: Color,
}

macro_rules! theme_keys {
    ($($key:ident),+ $(,)?) => {
        const KEYS: &[&str] = &[$(stringify!($key)),+];

        impl Theme {
            /// Lays the colours `table` names over `base`.
            fn from_table(name: &str, table: &toml::Table, base: &Theme) -> Result<Theme, ThemeError> {
                let malformed = |message: String| ThemeError::Malformed { name: name.into(), message };
                if let Some(unknown) = table.keys().find(|k| !KEYS.contains(&k.as_str())) {
                    return Err(malformed(format!(
                        "unknown key `{unknown}` (known: {})",
                        KEYS.join(", ")
                    )));
                }
                let color = |key: &str, fallback: Color| -> Result<Color, ThemeError> {
                    match table.get(key) {
                        None => Ok(fallback),
                        Some(toml::Value::String(s)) => Color::from_str(s).map_err(|_| {
                            malformed(format!("`{key}` = {s:?} is not a colour (a name, \"#rrggbb\" or 0-255)"))
                        }),
                        Some(other) => Err(malformed(format!(
                            "`{key}` must be a colour in quotes, not {other}"
                        ))),
                    }
                };
                Ok(Theme {
                    name: name.into(),
                    monochrome: false,
                    $($key: color(stringify!($key), base.$key)?,)+
                })
            }
        }
    };
}

theme_keys!(
    text,
    muted,
    ok,
    warn,
    error,
    accent,
    header,
    border,
    title,
    selected_fg,
    selected_bg,
    marked,
    chart_cpu,
    chart_mem,
    gauge,
);

impl Theme {
    /// The built-in default, parsed from the embedded `default.toml`.
    #[must_use]
    pub fn builtin_default() -> Self {
        let all_reset = Theme::monochrome();
        let text = BUILT_IN[0].1;
        toml::from_str::<toml::Table>(text)
            .ok()
            .and_then(|t| Theme::from_table(DEFAULT_THEME, &t, &all_reset).ok())
            .unwrap_or(all_reset)
    }

    /// No colours at all, for `NO_COLOR`.
    #[must_use]
    pub fn monochrome() -> Self {
        let c = Color::Reset;
        Self {
            name: "no-color".into(),
            monochrome: true,
            text: c,
            muted: c,
            ok: c,
            warn: c,
            error: c,
            accent: c,
            header: c,
            border: c,
            title: c,
            selected_fg: c,
            selected_bg: c,
            marked: c,
            chart_cpu: c,
            chart_mem: c,
            gauge: c,
        }
    }

    fn colored(&self, color: Color, fallback: Modifier) -> Style {
        if self.monochrome {
            Style::new().add_modifier(fallback)
        } else {
            Style::new().fg(color)
        }
    }

    #[must_use]
    pub fn text(&self) -> Style {
        self.colored(self.text, Modifier::empty())
    }
    #[must_use]
    pub fn muted(&self) -> Style {
        self.colored(self.muted, Modifier::DIM)
    }
    #[must_use]
    pub fn ok(&self) -> Style {
        self.colored(self.ok, Modifier::empty())
    }
    #[must_use]
    pub fn warn(&self) -> Style {
        self.colored(self.warn, Modifier::BOLD)
    }
    #[must_use]
    pub fn error(&self) -> Style {
        self.colored(self.error, Modifier::BOLD | Modifier::UNDERLINED)
    }
    #[must_use]
    pub fn accent(&self) -> Style {
        self.colored(self.accent, Modifier::empty())
    }
    #[must_use]
    pub fn header(&self) -> Style {
        self.colored(self.header, Modifier::empty())
            .add_modifier(Modifier::BOLD)
    }
    #[must_use]
    pub fn border(&self) -> Style {
        self.colored(self.border, Modifier::empty())
    }
    #[must_use]
    pub fn title(&self) -> Style {
        self.colored(self.title, Modifier::empty())
            .add_modifier(Modifier::BOLD)
    }
    #[must_use]
    pub fn marked(&self) -> Style {
        self.colored(self.marked, Modifier::BOLD)
    }
    #[must_use]
    pub fn selected(&self) -> Style {
        if self.monochrome {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new().fg(self.selected_fg).bg(self.selected_bg)
        }
    }
    #[must_use]
    pub fn chart_cpu(&self) -> Style {
        self.colored(self.chart_cpu, Modifier::empty())
    }
    #[must_use]
    pub fn chart_mem(&self) -> Style {
        self.colored(self.chart_mem, Modifier::empty())
    }
    #[must_use]
    pub fn gauge(&self) -> Style {
        self.colored(self.gauge, Modifier::empty())
    }
}

/// Every theme that can be chosen, read once at start (the console never
/// touches the disk while it runs).
#[derive(Debug, Clone)]
pub struct ThemeSet {
    themes: BTreeMap<String, Result<Theme, ThemeError>>,
    /// `NO_COLOR` is set: every theme is [`Theme::monochrome`].
    no_color: bool,
}

impl ThemeSet {
    /// The built-ins, overridden by `user_dir/*.toml` when given.
    #[must_use]
    pub fn load(user_dir: Option<&Path>, no_color: bool) -> Self {
        let base = Theme::builtin_default();
        let mut themes = BTreeMap::new();
        for (name, text) in BUILT_IN {
            themes.insert((*name).to_string(), parse(name, text, &base));
        }
        if let Some(entries) = user_dir.and_then(|dir| std::fs::read_dir(dir).ok()) {
            for entry in entries.flatten() {
                let path = entry.path();
                let Some(name) = path
                    .extension()
                    .filter(|e| *e == "toml")
                    .and(path.file_stem())
                    .and_then(|s| s.to_str())
                else {
                    continue;
                };
                let theme = match std::fs::read_to_string(&path) {
                    Ok(text) => parse(name, &text, &base),
                    Err(e) => Err(ThemeError::Malformed {
                        name: name.into(),
                        message: format!("cannot read {}: {e}", path.display()),
                    }),
                };
                themes.insert(name.to_string(), theme);
            }
        }
        Self { themes, no_color }
    }

    /// Only the built-ins (for tests and benchmarks).
    #[must_use]
    pub fn built_in() -> Self {
        Self::load(None, false)
    }

    /// The theme called `name`.
    pub fn get(&self, name: &str) -> Result<Theme, ThemeError> {
        match self.themes.get(name) {
            Some(Ok(_)) if self.no_color => Ok(Theme::monochrome()),
            Some(theme) => theme.clone(),
            None => Err(ThemeError::Unknown {
                name: name.into(),
                available: self.names().join(", "),
            }),
        }
    }

    /// Names of every theme, built-in or the user's.
    #[must_use]
    pub fn names(&self) -> Vec<&str> {
        self.themes.keys().map(String::as_str).collect()
    }

    #[must_use]
    pub fn no_color(&self) -> bool {
        self.no_color
    }
}

fn parse(name: &str, text: &str, base: &Theme) -> Result<Theme, ThemeError> {
    let table = toml::from_str::<toml::Table>(text).map_err(|e| ThemeError::Malformed {
        name: name.into(),
        message: e.to_string().trim_end().to_string(),
    })?;
    Theme::from_table(name, &table, base)
}

/// Whether `NO_COLOR` asks for no colours (set and not empty, per no-color.org).
#[must_use]
pub fn no_color_requested(value: Option<&std::ffi::OsStr>) -> bool {
    value.is_some_and(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_theme_parses_and_sets_every_key() {
        let set = ThemeSet::built_in();
        for name in ["default", "light", "high-contrast", "catppuccin-mocha"] {
            let theme = set.get(name).unwrap();
            assert_eq!(theme.name, name);
        }
        for (name, text) in BUILT_IN {
            let table: toml::Table = toml::from_str(text).unwrap();
            for key in KEYS {
                assert!(table.contains_key(*key), "{name} lacks {key}");
            }
        }
        assert_eq!(Theme::builtin_default().ok, Color::Green);
    }

    #[test]
    fn a_user_theme_overrides_and_missing_keys_fall_back_to_the_default() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("light.toml"), "ok = \"#010203\"\n").unwrap();
        std::fs::write(dir.path().join("mine.toml"), "error = \"magenta\"\n").unwrap();
        let set = ThemeSet::load(Some(dir.path()), false);
        let light = set.get("light").unwrap();
        assert_eq!(light.ok, Color::Rgb(1, 2, 3));
        let default = Theme::builtin_default();
        assert_eq!(
            light.warn, default.warn,
            "missing keys come from the default"
        );
        let mine = set.get("mine").unwrap();
        assert_eq!(mine.error, Color::Magenta);
        assert_eq!(mine.text, default.text);
    }

    #[test]
    fn malformed_themes_are_reported_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for (file, text) in [
            ("broken", "ok = \"green"),
            ("badcolour", "ok = \"greenish\""),
            ("typo", "okk = \"green\""),
            ("number", "ok = 3.5"),
        ] {
            std::fs::write(dir.path().join(format!("{file}.toml")), text).unwrap();
        }
        let set = ThemeSet::load(Some(dir.path()), false);
        for (name, needle) in [
            ("broken", "malformed"),
            ("badcolour", "greenish"),
            ("typo", "unknown key `okk`"),
            ("number", "in quotes"),
        ] {
            let err = set.get(name).unwrap_err();
            assert!(matches!(err, ThemeError::Malformed { .. }), "{err}");
            let text = err.to_string();
            assert!(text.contains(&format!("{name:?}")), "{text}");
            assert!(text.contains(needle), "{text}");
        }
        let unknown = set.get("nope").unwrap_err().to_string();
        assert!(unknown.contains("catppuccin-mocha"), "{unknown}");
    }

    #[test]
    fn no_color_turns_every_theme_monochrome() {
        assert!(no_color_requested(Some("1".as_ref())));
        assert!(!no_color_requested(Some("".as_ref())));
        assert!(!no_color_requested(None));
        let set = ThemeSet::load(None, true);
        let theme = set.get("catppuccin-mocha").unwrap();
        assert!(theme.monochrome);
        assert_eq!(theme.error().fg, None);
        assert!(theme.error().add_modifier.contains(Modifier::BOLD));
        assert!(theme.selected().add_modifier.contains(Modifier::REVERSED));
    }
}
