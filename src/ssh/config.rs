//! `~/.ssh/config`, read the way OpenSSH reads it: `Host` blocks matched by
//! glob patterns (with `!` negation), the first value obtained for each
//! option wins, `IdentityFile` accumulates, and `%h`, `%p`, `%r`, `%u`, `%d`,
//! `~` are expanded.
//!
//! Supported options: HostName, User, Port, IdentityFile, IdentitiesOnly,
//! ConnectTimeout, ProxyJump. Others are ignored, as are `Match` blocks
//! (reported so the operator knows), exactly as if absent.

use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SshConfigError {
    #[error("cannot read {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("{}:{line}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// One `[user@]host[:port]` hop of a ProxyJump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jump {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

/// The options one host gets, before defaults fill the gaps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostOptions {
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Vec<String>,
    pub identities_only: Option<bool>,
    pub connect_timeout: Option<Duration>,
    /// `Some(vec![])` for an explicit `ProxyJump none`.
    pub proxy_jump: Option<Vec<Jump>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Setting {
    HostName(String),
    User(String),
    Port(u16),
    IdentityFile(String),
    IdentitiesOnly(bool),
    ConnectTimeout(Duration),
    ProxyJump(Vec<Jump>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Block {
    /// `None` for the options before the first `Host` (they apply to all).
    patterns: Option<Vec<String>>,
    settings: Vec<Setting>,
}

/// A parsed ssh_config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshConfig {
    blocks: Vec<Block>,
    /// Things the file says that fleetctl does not follow (e.g. `Match`).
    pub warnings: Vec<String>,
}

impl SshConfig {
    /// Reads `path`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Self, SshConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(SshConfigError::Read {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    /// Parses a config's text; `path` only names it in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, SshConfigError> {
        let mut config = Self::default();
        let mut current = Block {
            patterns: None,
            settings: Vec::new(),
        };
        let mut skipping_match = false;
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            let invalid = |message: String| SshConfigError::Invalid {
                path: path.to_owned(),
                line,
                message,
            };
            let Some((keyword, args)) = split_line(raw) else {
                continue;
            };
            match keyword.as_str() {
                "host" => {
                    config.blocks.push(std::mem::replace(
                        &mut current,
                        Block {
                            patterns: Some(args.clone()),
                            settings: Vec::new(),
                        },
                    ));
                    if args.is_empty() {
                        return Err(invalid("Host needs at least one pattern".into()));
                    }
                    skipping_match = false;
                }
                "match" => {
                    config.warnings.push(format!(
                        "{}:{line}: Match blocks are not supported; their options are ignored",
                        path.display()
                    ));
                    skipping_match = true;
                }
                _ if skipping_match => {}
                _ => {
                    if let Some(setting) = parse_setting(&keyword, &args).map_err(invalid)? {
                        current.settings.push(setting);
                    }
                }
            }
        }
        config.blocks.push(current);
        Ok(config)
    }

    /// The options for `host` (the name as typed): first value wins, in file order.
    #[must_use]
    pub fn options_for(&self, host: &str) -> HostOptions {
        let mut out = HostOptions::default();
        let blocks = self.blocks.iter().filter(|b| match &b.patterns {
            None => true,
            Some(patterns) => host_matches(host, patterns),
        });
        for setting in blocks.flat_map(|b| &b.settings) {
            match setting {
                Setting::HostName(v) => {
                    out.hostname
                        .get_or_insert_with(|| v.replace("%h", host).replace("%%", "%"));
                }
                Setting::User(v) => {
                    out.user.get_or_insert_with(|| v.clone());
                }
                Setting::Port(v) => {
                    out.port.get_or_insert(*v);
                }
                Setting::IdentityFile(v) => out.identity_files.push(v.clone()),
                Setting::IdentitiesOnly(v) => {
                    out.identities_only.get_or_insert(*v);
                }
                Setting::ConnectTimeout(v) => {
                    out.connect_timeout.get_or_insert(*v);
                }
                Setting::ProxyJump(v) => {
                    out.proxy_jump.get_or_insert_with(|| v.clone());
                }
            }
        }
        out
    }
}

/// Expands `~` and the `%` tokens OpenSSH allows in IdentityFile.
#[must_use]
pub fn expand_path(
    raw: &str,
    home: &Path,
    local_user: &str,
    host: &str,
    remote_user: &str,
    port: u16,
) -> PathBuf {
    let mut out = String::new();
    let mut chars = raw.chars().peekable();
    if raw.starts_with("~/") || raw == "~" {
        out.push_str(&home.display().to_string());
        chars.next();
    }
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&home.display().to_string()),
            Some('u') => out.push_str(local_user),
            Some('h') => out.push_str(host),
            Some('r') => out.push_str(remote_user),
            Some('p') => out.push_str(&port.to_string()),
            // `%%` and a trailing lone `%` both stand for a literal `%`.
            Some('%') | None => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
        }
    }
    PathBuf::from(out)
}

/// Splits `Keyword args`, `Keyword=args` and quoted arguments; `None` for
/// blank and comment lines.
fn split_line(raw: &str) -> Option<(String, Vec<String>)> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let split = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let (keyword, rest) = line.split_at(split);
    let rest = rest.trim_start().strip_prefix('=').unwrap_or(rest).trim();
    let mut args = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut in_word = false;
    for c in rest.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    args.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        args.push(word);
    }
    Some((keyword.to_ascii_lowercase(), args))
}

fn parse_setting(keyword: &str, args: &[String]) -> Result<Option<Setting>, String> {
    let one = || -> Result<&str, String> {
        match args {
            [one] => Ok(one.as_str()),
            [] => Err(format!("{keyword} needs a value")),
            _ => Err(format!("{keyword} takes one value")),
        }
    };
    let setting = match keyword {
        "hostname" => Setting::HostName(one()?.to_string()),
        "user" => Setting::User(one()?.to_string()),
        "port" => Setting::Port(
            one()?
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("Port {:?} is not a port number", args[0]))?,
        ),
        "identityfile" => Setting::IdentityFile(one()?.to_string()),
        "identitiesonly" => Setting::IdentitiesOnly(yes_no(keyword, one()?)?),
        "connecttimeout" => {
            Setting::ConnectTimeout(Duration::from_secs(one()?.parse().map_err(|_| {
                format!("ConnectTimeout {:?} is not a number of seconds", args[0])
            })?))
        }
        "proxyjump" => Setting::ProxyJump(parse_jumps(one()?)?),
        _ => return Ok(None),
    };
    Ok(Some(setting))
}

fn yes_no(keyword: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(format!("{keyword} takes yes or no, not {value:?}")),
    }
}

/// `ProxyJump [user@]host[:port][,...]` or `none`.
pub fn parse_jumps(value: &str) -> Result<Vec<Jump>, String> {
    if value.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    value.split(',').map(parse_jump).collect()
}

fn parse_jump(spec: &str) -> Result<Jump, String> {
    let spec = spec.strip_prefix("ssh://").unwrap_or(spec);
    let (user, rest) = match spec.rsplit_once('@') {
        Some((user, rest)) => (Some(user.to_string()), rest),
        None => (None, spec),
    };
    // [v6::addr]:port, host:port, or a bare host.
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (host, after) = inner
            .split_once(']')
            .ok_or_else(|| format!("ProxyJump {spec:?}: unclosed ["))?;
        (host, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, Some(port)),
            _ => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(format!("ProxyJump {spec:?} names no host"));
    }
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .map_err(|_| format!("ProxyJump {spec:?}: bad port {p:?}"))
        })
        .transpose()?;
    Ok(Jump {
        user,
        host: host.to_string(),
        port,
    })
}

/// A Host line matches when some pattern matches and no negated one does.
fn host_matches(host: &str, patterns: &[String]) -> bool {
    list_matches(patterns, |pattern| glob(pattern, host))
}

/// OpenSSH's pattern-list rule (ssh_config Host lines, known_hosts host
/// fields): some pattern matches and no `!`-negated one does.
pub(crate) fn list_matches(patterns: &[String], is_match: impl Fn(&str) -> bool) -> bool {
    let mut matched = false;
    for pattern in patterns {
        if let Some(negated) = pattern.strip_prefix('!') {
            if is_match(negated) {
                return false;
            }
        } else if is_match(pattern) {
            matched = true;
        }
    }
    matched
}

/// `*` and `?` globbing, case-insensitive as host names are.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let t: Vec<char> = text.to_ascii_lowercase().chars().collect();
    // Iterative matcher with backtracking to the last star.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
# defaults for the lab
User ops
Host web-* !web-legacy
    HostName %h.lab.internal
    Port 2222
    IdentityFile ~/.ssh/lab_ed25519
Host web-legacy
    User root
Host db1 db2
    HostName=127.0.0.20
    IdentitiesOnly yes
    ConnectTimeout 7
    ProxyJump jump@bastion:2200,[::1]:22
Host *
    IdentityFile "~/.ssh/id with space"
    Port 22
    User nobody
Match host foo
    User ignored
"#;

    fn sample() -> SshConfig {
        SshConfig::parse(SAMPLE, Path::new("config")).unwrap()
    }

    #[test]
    fn first_value_wins_and_identity_files_accumulate() {
        let web = sample().options_for("web-3");
        assert_eq!(web.hostname.as_deref(), Some("web-3.lab.internal"));
        assert_eq!(
            web.user.as_deref(),
            Some("ops"),
            "the global User comes first"
        );
        assert_eq!(web.port, Some(2222));
        assert_eq!(
            web.identity_files,
            ["~/.ssh/lab_ed25519", "~/.ssh/id with space"]
        );
    }

    #[test]
    fn negation_excludes_a_host() {
        let legacy = sample().options_for("web-legacy");
        assert_eq!(legacy.hostname, None);
        assert_eq!(legacy.port, Some(22));
    }

    #[test]
    fn reads_every_supported_option() {
        let db = sample().options_for("DB2");
        assert_eq!(db.hostname.as_deref(), Some("127.0.0.20"));
        assert_eq!(db.identities_only, Some(true));
        assert_eq!(db.connect_timeout, Some(Duration::from_secs(7)));
        assert_eq!(
            db.proxy_jump,
            Some(vec![
                Jump {
                    user: Some("jump".into()),
                    host: "bastion".into(),
                    port: Some(2200)
                },
                Jump {
                    user: None,
                    host: "::1".into(),
                    port: Some(22)
                },
            ])
        );
    }

    #[test]
    fn match_blocks_are_reported_and_ignored() {
        let config = sample();
        assert_eq!(config.warnings.len(), 1);
        assert!(
            config.warnings[0].contains("config:19: Match"),
            "{:?}",
            config.warnings
        );
        assert_eq!(config.options_for("foo").user.as_deref(), Some("ops"));
    }

    #[test]
    fn bad_values_name_the_line() {
        let err = SshConfig::parse("Host a\n  Port http\n", Path::new("/home/o/.ssh/config"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/home/o/.ssh/config:2: Port \"http\" is not a port number"
        );
        let err = SshConfig::parse("IdentitiesOnly maybe\n", Path::new("c")).unwrap_err();
        assert!(err.to_string().contains("yes or no"), "{err}");
    }

    #[test]
    fn globs() {
        assert!(glob("*.example.com", "a.b.example.com"));
        assert!(glob("web-??", "web-01"));
        assert!(!glob("web-??", "web-1"));
        assert!(glob("*", ""));
        assert!(!glob("a*b", "acbd"));
    }

    #[test]
    fn expands_tokens() {
        let path = expand_path(
            "~/.ssh/%r@%h:%p-%u%%",
            Path::new("/home/o"),
            "o",
            "db1",
            "root",
            22,
        );
        assert_eq!(path, PathBuf::from("/home/o/.ssh/root@db1:22-o%"));
    }
}
