//! Custom commands, as k9s plugins: `commands.toml` beside the config file
//! binds a key (and a `:` name) to a shell command run on the selected or
//! the marked hosts, with the console suspended and the terminal its own.
//!
//! ```toml
//! [[command]]
//! name = "ssh"               # also `:ssh`
//! key = "S"
//! scope = "selected"         # or "marked" (the marked hosts, else the selected)
//! command = 'ssh -p "$PORT" "$USER@$ADDR"'
//! confirm = false            # ask first
//! dangerous = false          # refused under `fleetctl tui --read-only`
//! output = "terminal"        # the console steps aside until Enter
//! ```
//! What the hosts are goes to the command in its environment (`HOST`,
//! `ADDR`, `PORT`, `USER`, `TAGS`, `MARKED`), never into its text: a name
//! a host chose is data for the shell, not code.

use serde::Deserialize;

/// Which hosts a command is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// The host under the cursor (or in the detail view).
    #[default]
    Selected,
    /// The marked hosts, else the one under the cursor.
    Marked,
}

/// Where a command's output goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Output {
    /// The terminal, the console suspended until Enter.
    #[default]
    Terminal,
}

/// One entry of `commands.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomCommand {
    pub name: String,
    #[serde(default)]
    pub key: Option<char>,
    #[serde(default)]
    pub scope: Scope,
    pub command: String,
    #[serde(default)]
    pub confirm: bool,
    #[serde(default)]
    pub dangerous: bool,
    #[serde(default)]
    pub output: Output,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    command: Vec<CustomCommand>,
}

/// Keys the console itself uses: a custom command may not take them.
const TAKEN_KEYS: &str = "jkgG/<>=*sfdurlxpq?: ";

/// Reads `commands.toml`'s text; what is wrong is said by entry.
pub fn parse(text: &str, builtin: &[&str]) -> Result<Vec<CustomCommand>, String> {
    let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut seen_keys = Vec::new();
    for (i, c) in file.command.iter().enumerate() {
        let at = format!("command {} ({:?})", i + 1, c.name);
        if c.name.is_empty()
            || !c
                .name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        {
            return Err(format!("{at}: a name is letters, digits, `-` and `_`"));
        }
        if builtin.contains(&c.name.as_str()) || file.command[..i].iter().any(|o| o.name == c.name)
        {
            return Err(format!("{at}: the name is taken"));
        }
        if let Some(key) = c.key {
            if TAKEN_KEYS.contains(key) || !key.is_ascii_graphic() {
                return Err(format!("{at}: key {key:?} is the console's own"));
            }
            if seen_keys.contains(&key) {
                return Err(format!("{at}: key {key:?} is bound twice"));
            }
            seen_keys.push(key);
        }
        if c.command.trim().is_empty() {
            return Err(format!("{at}: the command is empty"));
        }
    }
    Ok(file.command)
}

/// A command ready to run: its text and the environment it sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    pub name: String,
    pub command: String,
    pub env: Vec<(String, String)>,
}

/// What a command learns about one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub addr: String,
    pub port: u16,
    pub user: String,
    pub tags: String,
}

impl CustomCommand {
    /// The run of this command for `targets` (the first is `$HOST`;
    /// `$MARKED` lists every address).
    #[must_use]
    pub fn exec(&self, targets: &[Target]) -> Exec {
        let first = targets.first().cloned().unwrap_or_default();
        let marked: Vec<&str> = targets.iter().map(|t| t.addr.as_str()).collect();
        Exec {
            name: self.name.clone(),
            command: self.command.clone(),
            env: vec![
                ("HOST".into(), first.host),
                ("ADDR".into(), first.addr),
                ("PORT".into(), first.port.to_string()),
                ("USER".into(), first.user),
                ("TAGS".into(), first.tags),
                ("MARKED".into(), marked.join(" ")),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_bad_ones_say_why() {
        let text = r#"
[[command]]
name = "ssh"
key = "S"
command = 'ssh "$USER@$ADDR"'

[[command]]
name = "reboot"
key = "R"
scope = "marked"
command = "echo $MARKED"
confirm = true
dangerous = true
"#;
        let all = parse(text, &["scan"]).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].scope, Scope::Selected);
        assert_eq!(all[0].output, Output::Terminal);
        assert!(all[1].dangerous && all[1].confirm);
        for (bad, needle) in [
            (
                "[[command]]\nname = \"scan\"\ncommand = \"x\"",
                "the name is taken",
            ),
            (
                "[[command]]\nname = \"a b\"\ncommand = \"x\"",
                "letters, digits",
            ),
            (
                "[[command]]\nname = \"a\"\nkey = \"d\"\ncommand = \"x\"",
                "the console's own",
            ),
            (
                "[[command]]\nname = \"a\"\ncommand = \" \"",
                "the command is empty",
            ),
            (
                "[[command]]\nname = \"a\"\nkey = \"A\"\ncommand = \"x\"\n[[command]]\nname = \"b\"\nkey = \"A\"\ncommand = \"y\"",
                "bound twice",
            ),
            (
                "[[command]]\nname = \"a\"\ncommand = \"x\"\noutput = \"run\"",
                "unknown variant",
            ),
            (
                "[[command]]\nname = \"a\"\ncommand = \"x\"\ncolour = 1",
                "unknown field",
            ),
        ] {
            let err = parse(bad, &["scan"]).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn hosts_reach_the_command_as_its_environment() {
        let cmd = &parse("[[command]]\nname = \"n\"\ncommand = 'echo \"$HOST\"'", &[]).unwrap()[0];
        let t = |addr: &str| Target {
            host: "web1; rm -rf /".into(),
            addr: addr.into(),
            port: 22,
            user: "ops".into(),
            tags: "role=web".into(),
        };
        let exec = cmd.exec(&[t("10.0.0.1"), t("10.0.0.2")]);
        assert_eq!(exec.command, "echo \"$HOST\"", "the text is not touched");
        let env: std::collections::HashMap<_, _> = exec.env.into_iter().collect();
        assert_eq!(env["HOST"], "web1; rm -rf /");
        assert_eq!(env["MARKED"], "10.0.0.1 10.0.0.2");
        assert_eq!(env["PORT"], "22");
        assert_eq!(env["TAGS"], "role=web");
    }
}
