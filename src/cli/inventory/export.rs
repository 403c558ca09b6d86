//! The inventory as Ansible reads it: groups and host variables, written
//! as dynamic-inventory JSON (`--list`, `--host`), INI or YAML.
//!
//! A host's Ansible name is its inventory name when that is a plain word
//! (letters, digits, `.`, `_`, `-`) and no other host has it, else its
//! address: names come from hosts (DNS, their own hostname), and what
//! reaches a file Ansible parses is validated, not trusted.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use crate::cli::hosts::InventoryHost;

/// One host as Ansible sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct AnsibleHost {
    pub name: String,
    /// `ansible_host`, `ansible_port`, `ansible_user`, then `fleetctl_*`.
    pub vars: Map<String, Value>,
    /// Besides `all`, sorted.
    pub groups: Vec<String>,
}

/// Whether `word` may stand in an INI line or a YAML key unquoted.
pub fn plain_word(word: &str) -> bool {
    !word.is_empty()
        && word.len() <= 253
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !word.starts_with(['-', '.'])
}

/// Every host, named and with its variables and groups.
#[must_use]
pub fn ansible_hosts(hosts: &[InventoryHost]) -> Vec<AnsibleHost> {
    let mut seen = std::collections::HashSet::new();
    hosts
        .iter()
        .map(|h| {
            let name = h
                .candidate
                .name
                .as_deref()
                .filter(|n| plain_word(n) && !seen.contains(*n))
                .map_or_else(|| h.addr.to_string(), str::to_owned);
            seen.insert(name.clone());
            AnsibleHost {
                name,
                vars: vars(h),
                groups: h.candidate.groups(),
            }
        })
        .collect()
}

fn vars(h: &InventoryHost) -> Map<String, Value> {
    let mut vars = Map::new();
    vars.insert("ansible_host".into(), json!(h.addr.to_string()));
    if let Some(port) = h.access.port.or(h.port) {
        vars.insert("ansible_port".into(), json!(port));
    }
    let login = h.facts.as_ref().and_then(|f| f.user.clone());
    if let Some(user) = h.access.user.clone().or(login).filter(|u| plain_word(u)) {
        vars.insert("ansible_user".into(), json!(user));
    }
    if let Some(facts) = &h.facts
        && let Ok(Value::Object(facts)) = serde_json::to_value(facts)
    {
        for (key, value) in facts {
            vars.insert(format!("fleetctl_{key}"), value);
        }
    }
    vars.insert("fleetctl_agent".into(), json!(h.candidate.agent));
    if let Some(reach) = &h.candidate.reach {
        vars.insert("fleetctl_reach".into(), json!(reach));
    }
    vars.insert("fleetctl_tags".into(), json!(h.candidate.tags));
    vars
}

/// Group name → its hosts, in host order.
fn groups(hosts: &[AnsibleHost]) -> BTreeMap<&str, Vec<&str>> {
    let mut groups = BTreeMap::<&str, Vec<&str>>::new();
    for h in hosts {
        for g in &h.groups {
            groups.entry(g).or_default().push(&h.name);
        }
    }
    groups
}

/// `--list`: every group with its hosts, `all` with every group as a
/// child, and `_meta.hostvars` so Ansible need not ask per host.
#[must_use]
pub fn list(hosts: &[AnsibleHost]) -> Value {
    let mut out = Map::new();
    let groups = groups(hosts);
    let ungrouped: Vec<&str> = hosts
        .iter()
        .filter(|h| h.groups.is_empty())
        .map(|h| h.name.as_str())
        .collect();
    let mut children: Vec<&str> = groups.keys().copied().collect();
    children.push("ungrouped");
    out.insert("all".into(), json!({ "children": children }));
    for (group, members) in &groups {
        out.insert((*group).to_string(), json!({ "hosts": members }));
    }
    out.insert("ungrouped".into(), json!({ "hosts": ungrouped }));
    let hostvars: Map<String, Value> = hosts
        .iter()
        .map(|h| (h.name.clone(), Value::Object(h.vars.clone())))
        .collect();
    out.insert("_meta".into(), json!({ "hostvars": hostvars }));
    Value::Object(out)
}

/// The variables a static file carries: those that are plain words or
/// numbers (Ansible's INI reader takes the rest as Python literals).
fn static_vars(vars: &Map<String, Value>) -> Vec<(&str, String)> {
    vars.iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) if plain_word(s) => Some((k.as_str(), s.clone())),
            Value::Number(n) => Some((k.as_str(), n.to_string())),
            Value::Bool(b) => Some((k.as_str(), if *b { "true" } else { "false" }.into())),
            _ => None,
        })
        .collect()
}

/// An INI inventory: every host with its variables under `[all]`, then
/// one section per group.
#[must_use]
pub fn ini(hosts: &[AnsibleHost]) -> String {
    let mut out = String::from("# fleetctl inventory -o ini\n[all]\n");
    for h in hosts {
        out.push_str(&h.name);
        for (k, v) in static_vars(&h.vars) {
            let _ = write!(out, " {k}={v}");
        }
        out.push('\n');
    }
    for (group, members) in groups(hosts) {
        let _ = write!(out, "\n[{group}]\n");
        for m in members {
            out.push_str(m);
            out.push('\n');
        }
    }
    out
}

/// A YAML inventory: `all.hosts` with every host's variables, and
/// `all.children` with each group's hosts. Strings are written as JSON
/// strings, which YAML reads as double-quoted scalars.
#[must_use]
pub fn yaml(hosts: &[AnsibleHost]) -> String {
    let mut out = String::from("# fleetctl inventory -o yaml\nall:\n  hosts:\n");
    for h in hosts {
        let _ = writeln!(out, "    {}:", h.name);
        for (k, v) in &h.vars {
            let text = crate::model::text::escape_json(&v.to_string()).into_owned();
            let _ = writeln!(out, "      {k}: {text}");
        }
    }
    let groups = groups(hosts);
    if !groups.is_empty() {
        out.push_str("  children:\n");
    }
    for (group, members) in groups {
        let _ = writeln!(out, "    {group}:\n      hosts:");
        for m in members {
            let _ = writeln!(out, "        {m}: {{}}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a hostile host reports (its OS name, say) never becomes a host,
    /// group or variable line of its own in a static inventory.
    #[test]
    fn a_hostile_fact_cannot_add_lines_to_a_static_inventory() {
        let evil = "debian\n[all]\nevil ansible_host=127.0.0.66\n";
        let mut vars = Map::new();
        vars.insert("ansible_host".into(), json!("127.0.0.5"));
        vars.insert("fleetctl_os_name".into(), json!(evil));
        let host = AnsibleHost {
            name: "web1".into(),
            vars,
            groups: vec![crate::model::tags::group_name(&format!("os_{evil}"))],
        };
        let ini = ini(std::slice::from_ref(&host));
        assert!(!ini.lines().any(|l| l.starts_with("evil")), "{ini}");
        assert!(
            !ini.contains("fleetctl_os_name"),
            "not a plain word: left out\n{ini}"
        );
        assert_eq!(ini.matches("[all]").count(), 1, "{ini}");
        let yaml = yaml(std::slice::from_ref(&host));
        assert!(
            !yaml.lines().any(|l| l.trim_start().starts_with("evil")),
            "{yaml}"
        );
        assert!(
            yaml.contains(r#"fleetctl_os_name: "debian\n[all]"#),
            "{yaml}"
        );
        let group = &host.groups[0];
        assert!(
            group.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{group}"
        );
    }
}
