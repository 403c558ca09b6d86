//! Host patterns, as Ansible writes them, for `--select` and the console's
//! filter. Pure: a pattern is parsed once and matched against hosts.
//!
//! ```text
//!  pattern := term { ":" term }        (or "," between terms)
//!  term    := [ "&" | "!" ] atom       & intersects, ! excludes
//!  atom    := "all" | "*"
//!           | "~" REGEX                group or host name, from its start
//!           | FIELD ("=" | "!=") VALUE { "|" VALUE }
//!           | GLOB                     a group or a host (name or address)
//!  FIELD   := addr | name | os | arch | agent | reach | tag.KEY
//! ```
//! As in Ansible, plain terms are joined (union), then `&` terms
//! intersect and `!` terms take away; a pattern of only `&` and `!` terms
//! starts from every host. A host's groups are those `fleetctl inventory`
//! prints: one per tag (`role=web` is `role_web`, a bare `web` is `web`),
//! `os_debian`, `arch_x86_64`, `agent_running`. Values and globs use `*`
//! and ignore case; `addr=` also takes a network (`addr=10.0.0.0/24`).
//! A host missing a field matches no `=` term and every `!=` term.
//!
//! Examples: `web:&staging:!db*`, `~web[0-9]+`, `tag.role=web`,
//! `os=debian:&agent=none|failed`, `all:!10.0.0.5`.

use std::net::IpAddr;

use super::tags::{Tags, group_name, tag_group};

/// What a pattern can look at, for one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Candidate {
    pub addr: String,
    pub name: Option<String>,
    /// `ID` from os-release (`debian`, `alpine`, ...).
    pub os: Option<String>,
    /// `uname -m`.
    pub arch: Option<String>,
    /// `none`, `deploying`, `running`, `failed`, ...
    pub agent: String,
    /// `alive`, `silent`, `unknown` (from the last scan).
    pub reach: Option<String>,
    pub tags: Tags,
}

impl Candidate {
    /// The Ansible groups this host is in (besides `all`), sorted.
    #[must_use]
    pub fn groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self.tags.iter().map(|(k, v)| tag_group(k, v)).collect();
        if let Some(os) = &self.os {
            groups.push(group_name(&format!("os_{os}")));
        }
        if let Some(arch) = &self.arch {
            groups.push(group_name(&format!("arch_{arch}")));
        }
        if !self.agent.is_empty() {
            groups.push(group_name(&format!("agent_{}", self.agent)));
        }
        groups.sort();
        groups.dedup();
        groups
    }

    /// The name the host goes by: its name, else its address.
    #[must_use]
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.addr)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Union,
    And,
    Not,
}

#[derive(Debug, Clone)]
enum Field {
    Addr,
    Name,
    Os,
    Arch,
    Agent,
    Reach,
    Tag(String),
}

const FIELDS: &str = "addr, name, os, arch, agent, reach, tag.KEY";

#[derive(Debug, Clone)]
enum Atom {
    All,
    Regex(regex::Regex),
    Field {
        field: Field,
        negated: bool,
        values: Vec<String>,
    },
    Glob(String),
}

#[derive(Debug, Clone)]
struct Term {
    op: Op,
    atom: Atom,
}

/// A parsed host pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    terms: Vec<Term>,
}

/// A pattern that does not parse: what is wrong, said whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("host pattern {pattern:?}: {problem}")]
pub struct PatternError {
    pub pattern: String,
    pub problem: String,
}

impl Pattern {
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        let err = |problem: String| PatternError {
            pattern: pattern.to_string(),
            problem,
        };
        let text = pattern.trim();
        if text.is_empty() {
            return Err(err("it is empty (every host is `all`)".into()));
        }
        if text.contains(char::is_whitespace) {
            return Err(err(
                "it holds a space (join terms with `:` or `,`, e.g. `web:&staging`)".into(),
            ));
        }
        let mut terms = Vec::new();
        for raw in split_terms(text) {
            let (op, body) = match raw.as_bytes().first() {
                Some(b'&') => (Op::And, &raw[1..]),
                Some(b'!') => (Op::Not, &raw[1..]),
                _ => (Op::Union, raw),
            };
            if body.is_empty() {
                return Err(err(match op {
                    Op::Union => "an empty term (two `:` in a row, or one at an end?)".into(),
                    _ => format!("{raw:?} has nothing after its operator"),
                }));
            }
            if body.starts_with(['&', '!']) {
                return Err(err(format!("{raw:?}: one operator per term (`&` or `!`)")));
            }
            terms.push(Term {
                op,
                atom: parse_atom(body).map_err(err)?,
            });
        }
        Ok(Self {
            text: text.to_string(),
            terms,
        })
    }

    /// The pattern as given.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `host` is picked: in some plain term (or there is none), in
    /// every `&` term, in no `!` term.
    #[must_use]
    pub fn matches(&self, host: &Candidate) -> bool {
        let groups = host.groups();
        let mut plain = self.terms.iter().filter(|t| t.op == Op::Union).peekable();
        let base = plain.peek().is_none() || plain.any(|t| atom_matches(&t.atom, host, &groups));
        base && self.terms.iter().all(|t| match t.op {
            Op::Union => true,
            Op::And => atom_matches(&t.atom, host, &groups),
            Op::Not => !atom_matches(&t.atom, host, &groups),
        })
    }

    /// The hosts of `all` that match, in their order.
    pub fn select<'a>(&self, all: &'a [Candidate]) -> impl Iterator<Item = &'a Candidate> {
        all.iter().filter(|c| self.matches(c))
    }
}

/// Terms split on `,` when there is one (Ansible's rule), else on `:`; an
/// IPv6 address alone is one term.
fn split_terms(text: &str) -> Vec<&str> {
    if text.contains(',') {
        text.split(',').collect()
    } else if text
        .trim_start_matches(['&', '!'])
        .parse::<IpAddr>()
        .is_ok()
    {
        vec![text]
    } else {
        text.split(':').collect()
    }
}

fn parse_atom(body: &str) -> Result<Atom, String> {
    if body == "all" || body == "*" {
        return Ok(Atom::All);
    }
    if let Some(re) = body.strip_prefix('~') {
        if re.is_empty() {
            return Err("`~` needs a regular expression after it".into());
        }
        return regex::Regex::new(&format!("^(?:{re})"))
            .map(Atom::Regex)
            .map_err(|e| format!("~{re}: not a regular expression: {}", first_line(&e)));
    }
    let Some((field, negated, value)) = split_field(body) else {
        if body.contains(['|', '(', ')', '[', ']', '{', '}', '$', '^', '"', '\'']) {
            return Err(format!(
                "{body:?} is not a group or host name (a regular expression starts with `~`)"
            ));
        }
        return Ok(Atom::Glob(body.to_ascii_lowercase()));
    };
    let field = match field {
        "addr" | "address" => Field::Addr,
        "name" => Field::Name,
        "os" => Field::Os,
        "arch" => Field::Arch,
        "agent" => Field::Agent,
        "reach" => Field::Reach,
        other => match other.strip_prefix("tag.") {
            Some(key) if super::tags::is_key(key) => Field::Tag(key.to_string()),
            Some(key) => return Err(format!("tag.{key}: {key:?} is not a tag key")),
            None => return Err(format!("unknown field {other:?} (fields: {FIELDS})")),
        },
    };
    let values: Vec<String> = value.split('|').map(str::to_ascii_lowercase).collect();
    if values.iter().any(String::is_empty) {
        return Err(format!("{body:?} has an empty value"));
    }
    if matches!(field, Field::Addr) {
        for v in &values {
            if v.contains('/') && v.parse::<ipnet::IpNet>().is_err() {
                return Err(format!("{v:?} is not a network like 10.0.0.0/24"));
            }
        }
    }
    Ok(Atom::Field {
        field,
        negated,
        values,
    })
}

fn split_field(body: &str) -> Option<(&str, bool, &str)> {
    if let Some((f, v)) = body.split_once("!=") {
        Some((f, true, v))
    } else {
        body.split_once('=').map(|(f, v)| (f, false, v))
    }
}

fn first_line(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines().last().unwrap_or_default().trim().to_string()
}

fn atom_matches(atom: &Atom, host: &Candidate, groups: &[String]) -> bool {
    match atom {
        Atom::All => true,
        Atom::Regex(re) => {
            groups.iter().any(|g| re.is_match(g))
                || re.is_match(&host.addr)
                || host.name.as_deref().is_some_and(|n| re.is_match(n))
        }
        Atom::Glob(glob_text) => {
            groups.iter().any(|g| glob(glob_text, g))
                || glob(glob_text, &host.addr)
                || host
                    .name
                    .as_deref()
                    .is_some_and(|n| glob(glob_text, &n.to_ascii_lowercase()))
        }
        Atom::Field {
            field,
            negated,
            values,
        } => {
            let value = match field {
                Field::Addr => Some(host.addr.as_str()),
                Field::Name => host.name.as_deref(),
                Field::Os => host.os.as_deref(),
                Field::Arch => host.arch.as_deref(),
                Field::Agent => Some(host.agent.as_str()),
                Field::Reach => host.reach.as_deref(),
                Field::Tag(key) => host.tags.get(key).map(String::as_str),
            };
            let hit = value.is_some_and(|value| {
                values
                    .iter()
                    .any(|pattern| value_matches(field, pattern, value))
            });
            hit != *negated
        }
    }
}

fn value_matches(field: &Field, pattern: &str, value: &str) -> bool {
    if matches!(field, Field::Addr)
        && let Ok(net) = pattern.parse::<ipnet::IpNet>()
    {
        return value.parse::<IpAddr>().is_ok_and(|ip| net.contains(&ip));
    }
    glob(pattern, &value.to_ascii_lowercase())
}

/// `*` matches any run of characters; everything else literally.
#[must_use]
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if text.len() < first.len() + last.len() || !text.starts_with(first) || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
#[path = "pattern_tests.rs"]
mod tests;
