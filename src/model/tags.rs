//! Host tags: `key=value` labels an operator puts on hosts (`fleetctl tag`),
//! and the Ansible group names they stand for.
//!
//! A tag's value may be empty: a bare label (`web`), as an Ansible INI
//! group brought in by `fleetctl inventory import` becomes. Keys and values
//! are kept to characters that are safe in a terminal, a shell word and an
//! Ansible group name once `.`, `-`, `:` and `/` turn into `_`.

use std::collections::BTreeMap;

/// One host's tags, in key order.
pub type Tags = BTreeMap<String, String>;

/// A tag the operator wrote that fleetctl will not keep.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tag {given:?}: {problem}")]
pub struct TagError {
    pub given: String,
    pub problem: &'static str,
}

const MAX_LEN: usize = 64;

fn key_ok(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("the key is empty");
    }
    if key.len() > MAX_LEN {
        return Err("the key is longer than 64 characters");
    }
    if !key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        return Err("a key starts with a letter or `_`");
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err("a key holds letters, digits, `_`, `-` and `.` only");
    }
    Ok(())
}

fn value_ok(value: &str) -> Result<(), &'static str> {
    if value.len() > MAX_LEN {
        return Err("the value is longer than 64 characters");
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/' | '@' | '+'))
    {
        return Err("a value holds letters, digits and `_-.:/@+` only");
    }
    Ok(())
}

/// Parses `key=value` (or a bare `key`, whose value is empty).
pub fn parse_tag(given: &str) -> Result<(String, String), TagError> {
    let (key, value) = given.split_once('=').unwrap_or((given, ""));
    let err = |problem| TagError {
        given: given.to_string(),
        problem,
    };
    key_ok(key).map_err(err)?;
    value_ok(value).map_err(err)?;
    Ok((key.to_string(), value.to_string()))
}

/// Checks a key named alone (`fleetctl untag HOST role`).
pub fn parse_key(given: &str) -> Result<String, TagError> {
    key_ok(given).map_err(|problem| TagError {
        given: given.to_string(),
        problem,
    })?;
    Ok(given.to_string())
}

/// Whether `word` could be a tag key (for telling hosts from keys on a
/// command line).
#[must_use]
pub fn is_key(word: &str) -> bool {
    key_ok(word).is_ok()
}

/// `text` as an Ansible group name: letters, digits and `_`.
#[must_use]
pub fn group_name(text: &str) -> String {
    let mut name: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

/// The group a tag stands for: `role=web` is `role_web`, a bare `web` is `web`.
#[must_use]
pub fn tag_group(key: &str, value: &str) -> String {
    if value.is_empty() {
        group_name(key)
    } else {
        group_name(&format!("{key}_{value}"))
    }
}

/// Tags as one line: `env=prod role=web web`.
#[must_use]
pub fn tags_text(tags: &Tags) -> String {
    tags.iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse_and_name_groups() {
        assert_eq!(
            parse_tag("role=web").unwrap(),
            ("role".into(), "web".into())
        );
        assert_eq!(parse_tag("web").unwrap(), ("web".into(), String::new()));
        assert_eq!(
            parse_tag("zone=eu-west/1a").unwrap().1,
            "eu-west/1a".to_string()
        );
        for bad in [
            "=web",
            "1role=web",
            "ro le=web",
            "role=we b",
            "role=\x1b[2J",
        ] {
            assert!(parse_tag(bad).is_err(), "{bad}");
        }
        assert_eq!(tag_group("role", "web"), "role_web");
        assert_eq!(tag_group("zone", "eu-west/1a"), "zone_eu_west_1a");
        assert_eq!(tag_group("web", ""), "web");
        assert_eq!(group_name("12.3"), "_12_3");
        let mut tags = Tags::new();
        tags.insert("role".into(), "web".into());
        tags.insert("canary".into(), String::new());
        assert_eq!(tags_text(&tags), "canary role=web");
    }
}
