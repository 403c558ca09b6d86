//! `--select EXPR`: which inventory hosts a rollout takes.
//!
//! ```text
//!  expr  := term { "," term }          every term must hold
//!  term  := field ("=" | "!=") value { "|" value }
//!  field := addr | name | os | arch | agent | reach
//! ```
//! Values may use `*` as a wildcard; `addr` also takes a network
//! (`addr=10.0.0.0/24`). A host missing a field (never fingerprinted, say)
//! matches no `=` term and every `!=` term.
//! Examples: `os=debian,arch=x86_64`, `agent=none|failed`, `name=web*`.

use std::net::IpAddr;

/// What `--select` can look at, for one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Candidate {
    pub addr: String,
    pub name: Option<String>,
    /// `ID` from os-release (`debian`, `alpine`, ...).
    pub os: Option<String>,
    /// `uname -m`.
    pub arch: Option<String>,
    /// `none`, `deploying`, `running`, `failed` (from the deployments table).
    pub agent: String,
    /// `alive`, `silent`, `unknown` (from the last scan).
    pub reach: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Addr,
    Name,
    Os,
    Arch,
    Agent,
    Reach,
}

const FIELDS: &str = "addr, name, os, arch, agent, reach";

#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    field: Field,
    negated: bool,
    values: Vec<String>,
}

/// A parsed `--select` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    terms: Vec<Term>,
}

/// A `--select` expression that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--select {expr:?}: {problem}")]
pub struct SelectError {
    pub expr: String,
    pub problem: String,
}

impl Selector {
    pub fn parse(expr: &str) -> Result<Self, SelectError> {
        let err = |problem: String| SelectError {
            expr: expr.to_string(),
            problem,
        };
        let mut terms = Vec::new();
        for raw in expr.split(',') {
            let raw = raw.trim();
            if raw.is_empty() {
                return Err(err("an empty term (two commas, or a trailing one?)".into()));
            }
            let (field, negated, value) = if let Some((f, v)) = raw.split_once("!=") {
                (f, true, v)
            } else if let Some((f, v)) = raw.split_once('=') {
                (f, false, v)
            } else {
                return Err(err(format!(
                    "{raw:?} is not FIELD=VALUE or FIELD!=VALUE (fields: {FIELDS})"
                )));
            };
            let field = match field.trim() {
                "addr" | "address" => Field::Addr,
                "name" => Field::Name,
                "os" => Field::Os,
                "arch" => Field::Arch,
                "agent" => Field::Agent,
                "reach" => Field::Reach,
                other => {
                    return Err(err(format!("unknown field {other:?} (fields: {FIELDS})")));
                }
            };
            let values: Vec<String> = value.split('|').map(|v| v.trim().to_string()).collect();
            if values.iter().any(String::is_empty) {
                return Err(err(format!("{raw:?} has an empty value")));
            }
            if field == Field::Addr {
                for v in &values {
                    if v.contains('/') && v.parse::<ipnet::IpNet>().is_err() {
                        return Err(err(format!("{v:?} is not a network like 10.0.0.0/24")));
                    }
                }
            }
            terms.push(Term {
                field,
                negated,
                values,
            });
        }
        Ok(Self { terms })
    }

    /// Whether `host` satisfies every term.
    #[must_use]
    pub fn matches(&self, host: &Candidate) -> bool {
        self.terms.iter().all(|term| {
            let value = match term.field {
                Field::Addr => Some(host.addr.as_str()),
                Field::Name => host.name.as_deref(),
                Field::Os => host.os.as_deref(),
                Field::Arch => host.arch.as_deref(),
                Field::Agent => Some(host.agent.as_str()),
                Field::Reach => host.reach.as_deref(),
            };
            let hit = value.is_some_and(|value| {
                term.values
                    .iter()
                    .any(|pattern| value_matches(term.field, pattern, value))
            });
            hit != term.negated
        })
    }
}

fn value_matches(field: Field, pattern: &str, value: &str) -> bool {
    if field == Field::Addr
        && let Ok(net) = pattern.parse::<ipnet::IpNet>()
    {
        return value.parse::<IpAddr>().is_ok_and(|ip| net.contains(&ip));
    }
    glob(&pattern.to_ascii_lowercase(), &value.to_ascii_lowercase())
}

/// `*` matches any run of characters; everything else literally.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    text.len() >= first.len() + last.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(addr: &str, os: Option<&str>, arch: &str, agent: &str) -> Candidate {
        Candidate {
            addr: addr.into(),
            name: Some(format!("web-{addr}")),
            os: os.map(Into::into),
            arch: Some(arch.into()),
            agent: agent.into(),
            reach: Some("alive".into()),
        }
    }

    #[test]
    fn terms_all_hold() {
        let debian = host("10.0.0.5", Some("debian"), "x86_64", "none");
        let alpine = host("10.0.1.5", Some("alpine"), "aarch64", "running");
        let unknown = host("10.0.0.9", None, "x86_64", "failed");
        let pick = |expr: &str| {
            let s = Selector::parse(expr).unwrap();
            [&debian, &alpine, &unknown]
                .iter()
                .filter(|h| s.matches(h))
                .map(|h| h.addr.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(pick("os=debian"), ["10.0.0.5"]);
        assert_eq!(pick("os=Debian|alpine"), ["10.0.0.5", "10.0.1.5"]);
        assert_eq!(pick("os!=debian"), ["10.0.1.5", "10.0.0.9"]);
        assert_eq!(
            pick("arch=x86_64, agent=none|failed"),
            ["10.0.0.5", "10.0.0.9"]
        );
        assert_eq!(pick("addr=10.0.0.0/24"), ["10.0.0.5", "10.0.0.9"]);
        assert_eq!(pick("addr=10.0.1.5"), ["10.0.1.5"]);
        assert_eq!(pick("name=web-10.0.*.5"), ["10.0.0.5", "10.0.1.5"]);
        assert_eq!(pick("name=*9"), ["10.0.0.9"]);
        assert_eq!(pick("reach=alive,agent!=running"), ["10.0.0.5", "10.0.0.9"]);
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        for (expr, needle) in [
            ("colour=red", "unknown field \"colour\""),
            ("os", "is not FIELD=VALUE"),
            ("os=debian,", "empty term"),
            ("os=", "empty value"),
            ("addr=10.0.0.0/33", "not a network"),
        ] {
            let err = Selector::parse(expr).unwrap_err().to_string();
            assert!(err.contains(needle), "{expr}: {err}");
        }
    }

    #[test]
    fn glob_edges() {
        assert!(glob("a*a", "aa"));
        assert!(!glob("a*a", "a"));
        assert!(glob("*", ""));
        assert!(glob("*b*", "abc"));
        assert!(!glob("ab", "abc"));
    }
}
