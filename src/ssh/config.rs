//! `~/.ssh/config`, read the way OpenSSH reads it: `Host` blocks matched by
//! glob patterns (with `!` negation), the first value obtained for each
//! option wins, `IdentityFile` accumulates, and `%h`, `%p`, `%r`, `%u`, `%d`,
//! `~` are expanded.
//!
//! Supported options: HostName, User, Port, IdentityFile, IdentitiesOnly,
//! ConnectTimeout, ProxyJump, and the host-key ones: UserKnownHostsFile,
//! GlobalKnownHostsFile, HostKeyAlias, HashKnownHosts. Others are ignored,
//! as are `Match` blocks (reported so the operator knows), exactly as if
//! absent.

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
    /// `Some(vec![])` for `UserKnownHostsFile none`; paths unexpanded.
    pub user_known_hosts: Option<Vec<String>>,
    /// `Some(vec![])` for `GlobalKnownHostsFile none`; paths unexpanded.
    pub global_known_hosts: Option<Vec<String>>,
    /// The name host keys are looked up and learned under.
    pub host_key_alias: Option<String>,
    pub hash_known_hosts: Option<bool>,
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
    UserKnownHostsFile(Vec<String>),
    GlobalKnownHostsFile(Vec<String>),
    HostKeyAlias(String),
    HashKnownHosts(bool),
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
                Setting::UserKnownHostsFile(v) => {
                    out.user_known_hosts.get_or_insert_with(|| v.clone());
                }
                Setting::GlobalKnownHostsFile(v) => {
                    out.global_known_hosts.get_or_insert_with(|| v.clone());
                }
                Setting::HostKeyAlias(v) => {
                    out.host_key_alias.get_or_insert_with(|| v.clone());
                }
                Setting::HashKnownHosts(v) => {
                    out.hash_known_hosts.get_or_insert(*v);
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
        "userknownhostsfile" => Setting::UserKnownHostsFile(files(keyword, args)?),
        "globalknownhostsfile" => Setting::GlobalKnownHostsFile(files(keyword, args)?),
        "hostkeyalias" => Setting::HostKeyAlias(one()?.to_string()),
        "hashknownhosts" => Setting::HashKnownHosts(yes_no(keyword, one()?)?),
        _ => return Ok(None),
    };
    Ok(Some(setting))
}

/// A list of files, or `none` for no file at all.
fn files(keyword: &str, args: &[String]) -> Result<Vec<String>, String> {
    match args {
        [] => Err(format!("{keyword} needs at least one file (or none)")),
        [none] if none.eq_ignore_ascii_case("none") => Ok(Vec::new()),
        files => Ok(files.to_vec()),
    }
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
#[path = "config_tests.rs"]
mod tests;
