//! The fleet table's model: its columns, the `/` filter and the sort.
//! Pure functions of the snapshot, so they are tested without a screen.

use std::cmp::Ordering;

use crate::engine::{FleetSnapshot, HostView};
use crate::model::pattern::{Candidate, Pattern, glob};
use crate::model::tags::{is_key, tags_text};
use crate::model::{AgentState, Reach, RegistrationState, SshState, TokenState};

use super::format::{Urgency, token_urgency};

/// The table's columns, in display order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    Address,
    Host,
    Os,
    Tags,
    Reach,
    Ssh,
    Agent,
    Registration,
    Token,
    Cpu,
    Memory,
    Load,
    LastSeen,
}

impl Column {
    pub const ALL: [Column; 13] = [
        Column::Address,
        Column::Host,
        Column::Os,
        Column::Tags,
        Column::Reach,
        Column::Ssh,
        Column::Agent,
        Column::Registration,
        Column::Token,
        Column::Cpu,
        Column::Memory,
        Column::Load,
        Column::LastSeen,
    ];

    #[must_use]
    pub fn title(self) -> &'static str {
        match self {
            Column::Address => "ADDRESS",
            Column::Host => "HOST",
            Column::Os => "OS",
            Column::Tags => "TAGS",
            Column::Reach => "REACH",
            Column::Ssh => "SSH",
            Column::Agent => "AGENT",
            Column::Registration => "REG",
            Column::Token => "TOKEN",
            Column::Cpu => "CPU",
            Column::Memory => "MEM",
            Column::Load => "LOAD",
            Column::LastSeen => "SEEN",
        }
    }

    /// Columns dropped first when the terminal is narrow have the highest number.
    #[must_use]
    pub fn priority(self) -> u8 {
        match self {
            Column::Address | Column::Agent => 0,
            Column::Host | Column::Reach | Column::Ssh | Column::Token => 1,
            Column::Cpu | Column::Memory => 2,
            Column::Registration => 3,
            Column::Os | Column::Tags => 4,
            Column::LastSeen => 5,
            Column::Load => 6,
        }
    }

    /// The next column to sort by, to the right (`>`) or left (`<`).
    #[must_use]
    pub fn step(self, right: bool) -> Column {
        let i = Column::ALL.iter().position(|c| *c == self).unwrap_or(0);
        let n = Column::ALL.len();
        Column::ALL[if right { (i + 1) % n } else { (i + n - 1) % n }]
    }
}

/// Sort order of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub column: Column,
    pub descending: bool,
}

impl Default for Sort {
    fn default() -> Self {
        Self {
            column: Column::Address,
            descending: false,
        }
    }
}

fn cpu(h: &HostView) -> Option<f64> {
    h.stats.as_ref().map(|s| s.cpu.total_pct)
}

fn mem(h: &HostView) -> Option<f64> {
    h.stats.as_ref().map(|s| s.memory.used_pct())
}

fn load(h: &HostView) -> Option<f64> {
    h.stats.as_ref().map(|s| s.cpu.load1)
}

fn rank<T: PartialEq>(all: &[T], value: &T) -> usize {
    all.iter().position(|v| v == value).unwrap_or(usize::MAX)
}

fn reach_rank(r: Reach) -> u8 {
    match r {
        Reach::Alive => 0,
        Reach::Silent => 1,
        Reach::Unknown => 2,
    }
}

/// Compares two hosts by a column; hosts without a value sort last.
fn compare(a: &HostView, b: &HostView, column: Column, now: i64) -> Ordering {
    fn num(a: Option<f64>, b: Option<f64>) -> Ordering {
        match (a, b) {
            (Some(a), Some(b)) => a.total_cmp(&b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
    }
    match column {
        Column::Address => a.addr.cmp(&b.addr),
        Column::Host => match (a.hostname(), b.hostname()) {
            (Some(x), Some(y)) => x.cmp(y),
            // Hosts with a name first.
            (x, y) => x.is_none().cmp(&y.is_none()),
        },
        Column::Os => a.os().cmp(&b.os()),
        Column::Tags => match (a.tags.is_empty(), b.tags.is_empty()) {
            (false, false) => a.tags.cmp(&b.tags),
            // Tagged hosts first.
            (x, y) => x.cmp(&y),
        },
        Column::Reach => reach_rank(a.reach()).cmp(&reach_rank(b.reach())),
        Column::Ssh => rank(SshState::ALL, &a.ssh).cmp(&rank(SshState::ALL, &b.ssh)),
        Column::Agent => rank(AgentState::ALL, &a.agent).cmp(&rank(AgentState::ALL, &b.agent)),
        Column::Registration => rank(RegistrationState::ALL, &a.registration)
            .cmp(&rank(RegistrationState::ALL, &b.registration)),
        Column::Token => num(
            a.token_left(now).map(|l| l as f64),
            b.token_left(now).map(|l| l as f64),
        ),
        Column::Cpu => num(cpu(a), cpu(b)),
        Column::Memory => num(mem(a), mem(b)),
        Column::Load => num(load(a), load(b)),
        Column::LastSeen => num(b.last_seen.map(|t| t as f64), a.last_seen.map(|t| t as f64)),
    }
}

/// A host state a filter can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Reach,
    Ssh,
    Agent,
    Registration,
    Token,
}

impl Field {
    fn states(self) -> Vec<&'static str> {
        match self {
            Field::Reach => vec!["alive", "silent", "unknown"],
            Field::Ssh => SshState::ALL.iter().map(|s| s.as_str()).collect(),
            Field::Agent => AgentState::ALL.iter().map(|s| s.as_str()).collect(),
            Field::Registration => RegistrationState::ALL.iter().map(|s| s.as_str()).collect(),
            Field::Token => TokenState::ALL.iter().map(|s| s.as_str()).collect(),
        }
    }

    fn of(self, host: &HostView) -> &'static str {
        match self {
            Field::Reach => host.reach().as_str(),
            Field::Ssh => host.ssh.as_str(),
            Field::Agent => host.agent.as_str(),
            Field::Registration => host.registration.as_str(),
            Field::Token => host.token.as_str(),
        }
    }
}

/// One term of a filter; all terms must match.
#[derive(Debug, Clone)]
enum Term {
    /// Case-insensitive substring of any column's text.
    Text(String),
    /// The field is one of these states (those the typed value begins,
    /// so `agent:run` is `agent:running`).
    State(Field, Vec<&'static str>),
    Os(String),
    /// `tag:role=web` (the value may use `*`), or `tag:role` (has the key).
    Tag(String, Option<String>),
    /// A host pattern as Ansible writes it: `web:&staging:!db*`, `~regex`.
    Pattern(Pattern),
}

/// What `/` typed, parsed: `web agent:none token:expiring`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    terms: Vec<Term>,
}

/// The state filters `/` understands, for help and error messages.
pub const FILTER_KEYS: &str = "reach: ssh: agent: reg: token: os: tag:";

impl Filter {
    /// Parses filter text; an unknown `key:` or state names what is allowed.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for word in text.split_whitespace() {
            if is_pattern(word) {
                let pattern = Pattern::parse(word).map_err(|e| e.to_string())?;
                terms.push(Term::Pattern(pattern));
                continue;
            }
            let Some((key, value)) = word.split_once(':') else {
                terms.push(Term::Text(word.to_lowercase()));
                continue;
            };
            let value = value.to_lowercase();
            let field = match key.to_lowercase().as_str() {
                "reach" => Field::Reach,
                "ssh" => Field::Ssh,
                "agent" => Field::Agent,
                "reg" | "registration" => Field::Registration,
                "token" => Field::Token,
                "os" => {
                    terms.push(Term::Os(value));
                    continue;
                }
                "tag" => {
                    terms.push(tag_term(&value)?);
                    continue;
                }
                _ => {
                    return Err(format!(
                        "unknown filter `{key}:`; known: {FILTER_KEYS}, or a host pattern \
                         (web:&staging:!db*, ~regex)"
                    ));
                }
            };
            let all = field.states();
            let allowed: Vec<&'static str> = all
                .iter()
                .copied()
                .filter(|s| s.starts_with(value.as_str()))
                .collect();
            if allowed.is_empty() {
                return Err(format!("{key}:{value}? expected one of {}", all.join(" ")));
            }
            terms.push(Term::State(field, allowed));
        }
        Ok(Self { terms })
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether `host` passes every term.
    #[must_use]
    pub fn matches(&self, host: &HostView, now: i64) -> bool {
        self.terms.iter().all(|term| match term {
            Term::Text(needle) => haystack(host).contains(needle.as_str()),
            Term::State(field, allowed) => {
                allowed.contains(&field.of(host))
                    // `token:expiring` also means valid tokens close to expiry.
                    || (*field == Field::Token
                        && allowed.contains(&"expiring")
                        && host.token != TokenState::Expired
                        && matches!(
                            token_urgency(host.token, host.token_left(now)),
                            Urgency::Warn | Urgency::Error
                        ))
            }
            Term::Os(os) => host.os().is_some_and(|o| o.to_lowercase().contains(os)),
            Term::Tag(key, value) => host.tags.iter().any(|(k, v)| {
                k.eq_ignore_ascii_case(key)
                    && value
                        .as_deref()
                        .is_none_or(|want| glob(want, &v.to_ascii_lowercase()))
            }),
            Term::Pattern(pattern) => pattern.matches(&candidate(host)),
        })
    }
}

/// Whether a filter word is a host pattern rather than `key:value` or
/// text: it starts with `~`, `&` or `!`, or joins terms with `:&`, `:!` or `,`.
fn is_pattern(word: &str) -> bool {
    word.starts_with(['~', '&', '!'])
        || word.contains(":&")
        || word.contains(":!")
        || word.contains(',')
}

fn tag_term(value: &str) -> Result<Term, String> {
    let (key, want) = match value.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (value, None),
    };
    if !is_key(key) {
        return Err(format!("tag:{value}? expected tag:KEY or tag:KEY=VALUE"));
    }
    Ok(Term::Tag(key.to_string(), want))
}

/// A host as host patterns see it.
#[must_use]
pub fn candidate(host: &HostView) -> Candidate {
    Candidate {
        addr: host.addr.to_string(),
        name: host.hostname().map(str::to_owned),
        os: host.facts.as_ref().and_then(|f| f.os_id.clone()),
        arch: host.facts.as_ref().and_then(|f| f.arch.clone()),
        agent: host.agent.as_str().to_string(),
        reach: Some(host.reach().as_str().to_string()),
        tags: host.tags.clone(),
    }
}

/// The text a plain filter word is looked for in.
fn haystack(host: &HostView) -> String {
    let mut s = host.addr.to_string();
    for part in [
        host.hostname().map(str::to_owned),
        host.os(),
        Some(host.reach().as_str().to_owned()),
        Some(host.ssh.as_str().to_owned()),
        Some(host.agent.as_str().to_owned()),
        Some(host.registration.as_str().to_owned()),
        Some(host.token.as_str().to_owned()),
        (!host.tags.is_empty()).then(|| tags_text(&host.tags)),
    ]
    .into_iter()
    .flatten()
    {
        s.push(' ');
        s.push_str(&part);
    }
    s.to_lowercase()
}

/// Indices into `fleet.hosts` of the hosts that pass `filter`, in `sort` order.
#[must_use]
pub fn rows(fleet: &FleetSnapshot, filter: &Filter, sort: Sort) -> Vec<u32> {
    let now = fleet.now_unix;
    let mut rows: Vec<u32> = fleet
        .hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| filter.is_empty() || filter.matches(h, now))
        .map(|(i, _)| i as u32)
        .collect();
    // The snapshot is in address order already.
    if sort != Sort::default() {
        rows.sort_by(|&a, &b| {
            let (ha, hb) = (&fleet.hosts[a as usize], &fleet.hosts[b as usize]);
            let by = compare(ha, hb, sort.column, now);
            let by = if sort.descending { by.reverse() } else { by };
            by.then(ha.addr.cmp(&hb.addr))
        });
    }
    rows
}
