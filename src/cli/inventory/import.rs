//! Reading Ansible inventories (INI or YAML) into hosts, groups and
//! connection variables: what `fleetctl inventory import` keeps.
//!
//! Children groups are followed (a host of `web` is in `prod` when `web` is
//! one of `prod`'s children); group variables and host ranges
//! (`web[01:03]`) are not read; they are said, not silently dropped.

use std::collections::{BTreeMap, BTreeSet};

/// One host a file names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileHost {
    pub name: String,
    /// Its variables as text (`ansible_host`, `ansible_port`, ...).
    pub vars: BTreeMap<String, String>,
    /// Every group it is in, children followed; never `all` or `ungrouped`.
    pub groups: BTreeSet<String>,
}

/// An inventory file read whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileInventory {
    /// In the order the file first names them.
    pub hosts: Vec<FileHost>,
    /// What was in the file and not taken (group variables, ...).
    pub notes: Vec<String>,
}

/// A file that is not an inventory this reader takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub struct ParseError {
    pub problem: String,
}

fn fail<T>(problem: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        problem: problem.into(),
    })
}

/// Hosts, their own groups, and each group's children, as read.
#[derive(Default)]
struct Builder {
    order: Vec<String>,
    vars: BTreeMap<String, BTreeMap<String, String>>,
    direct: BTreeMap<String, BTreeSet<String>>,
    children: BTreeMap<String, BTreeSet<String>>,
    notes: Vec<String>,
}

impl Builder {
    fn host(&mut self, name: &str, group: Option<&str>, vars: BTreeMap<String, String>) {
        if !self.vars.contains_key(name) {
            self.order.push(name.to_string());
        }
        self.vars.entry(name.to_string()).or_default().extend(vars);
        let groups = self.direct.entry(name.to_string()).or_default();
        if let Some(g) = group.filter(|g| !matches!(*g, "all" | "ungrouped")) {
            groups.insert(g.to_string());
        }
    }

    /// Every host with its groups and their parents, to any depth.
    fn finish(self) -> Result<FileInventory, ParseError> {
        let mut parents = BTreeMap::<&str, BTreeSet<&str>>::new();
        for (parent, kids) in &self.children {
            for kid in kids {
                parents.entry(kid).or_default().insert(parent);
            }
        }
        let mut hosts = Vec::new();
        for name in &self.order {
            let mut groups: BTreeSet<String> = BTreeSet::new();
            let mut todo: Vec<&str> = self.direct[name].iter().map(String::as_str).collect();
            while let Some(g) = todo.pop() {
                if groups.len() > 10_000 {
                    return fail("the group tree is too deep (a loop?)");
                }
                if matches!(g, "all" | "ungrouped") || !groups.insert(g.to_string()) {
                    continue;
                }
                todo.extend(parents.get(g).into_iter().flatten().copied());
            }
            hosts.push(FileHost {
                name: name.clone(),
                vars: self.vars[name].clone(),
                groups,
            });
        }
        Ok(FileInventory {
            hosts,
            notes: self.notes,
        })
    }
}

/// Reads an INI inventory.
pub fn parse_ini(text: &str) -> Result<FileInventory, ParseError> {
    enum Section {
        Hosts(String),
        Children(String),
        Vars(String),
    }
    let mut b = Builder::default();
    let mut section = Section::Hosts("ungrouped".into());
    for (i, raw) in text.lines().enumerate() {
        let at = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(head) = line.strip_prefix('[') {
            let Some(head) = head.strip_suffix(']') else {
                return fail(format!("line {at}: a section header ends with `]`"));
            };
            let (group, kind) = head.split_once(':').unwrap_or((head, ""));
            check_group(group, at)?;
            section = match kind {
                "" => Section::Hosts(group.into()),
                "children" => Section::Children(group.into()),
                "vars" => Section::Vars(group.into()),
                other => return fail(format!("line {at}: unknown section kind `:{other}`")),
            };
            b.children.entry(group.to_string()).or_default();
            continue;
        }
        match &section {
            Section::Hosts(group) => {
                let words = split_words(line).map_err(|p| ParseError {
                    problem: format!("line {at}: {p}"),
                })?;
                let Some((name, vars)) = words.split_first() else {
                    continue;
                };
                check_host(name, at)?;
                let mut map = BTreeMap::new();
                for var in vars {
                    let Some((k, v)) = var.split_once('=') else {
                        return fail(format!(
                            "line {at}: {var:?} after the host name is not key=value"
                        ));
                    };
                    map.insert(k.to_string(), v.to_string());
                }
                b.host(name, Some(group), map);
            }
            Section::Children(group) => {
                check_group(line, at)?;
                b.children
                    .entry(group.clone())
                    .or_default()
                    .insert(line.to_string());
            }
            Section::Vars(group) => {
                b.notes.push(format!(
                    "group variables of {group} are not imported ({line})"
                ));
            }
        }
    }
    b.finish()
}

/// Words of a host line: split on blanks, quotes keep blanks in a value
/// and are taken off.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '"' | '\'') => quote = Some(c),
            (None, c) if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            (None, '#') if word.is_empty() => break,
            (_, c) => word.push(c),
        }
    }
    if quote.is_some() {
        return Err("a quote is not closed".into());
    }
    if !word.is_empty() {
        words.push(word);
    }
    Ok(words)
}

fn check_group(group: &str, at: usize) -> Result<(), ParseError> {
    if crate::model::tags::is_key(group) {
        Ok(())
    } else {
        fail(format!(
            "line {at}: {group:?} is not a group name fleetctl keeps (letters, digits, `_`, `-`, `.`)"
        ))
    }
}

fn check_host(name: &str, at: usize) -> Result<(), ParseError> {
    if name.contains('[') {
        return fail(format!(
            "line {at}: host ranges like {name} are not read: list the hosts one per line"
        ));
    }
    if name.parse::<std::net::IpAddr>().is_ok() || super::export::plain_word(name) {
        Ok(())
    } else {
        fail(format!("line {at}: {name:?} is not a host name"))
    }
}

/// Reads a YAML inventory: groups with `hosts`, `children` and `vars`,
/// from `all` or from the top.
pub fn parse_yaml(text: &str) -> Result<FileInventory, ParseError> {
    use serde_yaml_ng::Value;
    let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| ParseError {
        problem: format!("not YAML: {e}"),
    })?;
    let Value::Mapping(top) = doc else {
        return fail("the top of a YAML inventory is a mapping of groups (all: ...)");
    };
    let mut b = Builder::default();
    for (name, group) in &top {
        walk_group(&mut b, name, group, 0)?;
    }
    b.finish()
}

fn text_of(value: &serde_yaml_ng::Value) -> Option<String> {
    use serde_yaml_ng::Value;
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn walk_group(
    b: &mut Builder,
    name: &serde_yaml_ng::Value,
    group: &serde_yaml_ng::Value,
    depth: usize,
) -> Result<(), ParseError> {
    use serde_yaml_ng::Value;
    if depth > 64 {
        return fail("groups are nested too deep");
    }
    let Some(name) = name.as_str() else {
        return fail("a group's name is not text");
    };
    check_group(name, 0).map_err(|_| ParseError {
        problem: format!("{name:?} is not a group name fleetctl keeps"),
    })?;
    b.children.entry(name.to_string()).or_default();
    let group = match group {
        Value::Null => return Ok(()),
        Value::Mapping(m) => m,
        _ => return fail(format!("group {name}: expected hosts, children or vars")),
    };
    for (key, value) in group {
        match key.as_str() {
            Some("hosts") => match value {
                Value::Null => {}
                Value::Mapping(hosts) => {
                    for (host, vars) in hosts {
                        let Some(host) = host.as_str() else {
                            return fail(format!("group {name}: a host name is not text"));
                        };
                        check_host(host, 0).map_err(|_| ParseError {
                            problem: format!("group {name}: {host:?} is not a host name"),
                        })?;
                        let mut map = BTreeMap::new();
                        if let Value::Mapping(vars) = vars {
                            for (k, v) in vars {
                                if let (Some(k), Some(v)) = (k.as_str(), text_of(v)) {
                                    map.insert(k.to_string(), v);
                                }
                            }
                        }
                        b.host(host, Some(name), map);
                    }
                }
                _ => return fail(format!("group {name}: `hosts` is a mapping of host names")),
            },
            Some("children") => match value {
                Value::Null => {}
                Value::Mapping(children) => {
                    for (child, body) in children {
                        if let Some(c) = child.as_str() {
                            b.children
                                .entry(name.to_string())
                                .or_default()
                                .insert(c.to_string());
                        }
                        walk_group(b, child, body, depth + 1)?;
                    }
                }
                _ => return fail(format!("group {name}: `children` is a mapping of groups")),
            },
            Some("vars") => b
                .notes
                .push(format!("group variables of {name} are not imported")),
            _ => return fail(format!("group {name}: expected hosts, children or vars")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INI: &str = "\
# a comment
bastion ansible_host=127.40.0.9

[web]
web1 ansible_host=127.40.0.1 ansible_port=2222 ansible_user=ops
web2 ansible_host=127.40.0.2 note=\"two words\"  # trailing comment

[db]
db1 ansible_host=127.40.0.3

[prod:children]
web
db

[prod:vars]
ntp=10.0.0.1
";

    #[test]
    fn ini_hosts_groups_children_and_vars() {
        let inv = parse_ini(INI).unwrap();
        let names: Vec<&str> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["bastion", "web1", "web2", "db1"]);
        let web1 = &inv.hosts[1];
        assert_eq!(web1.vars["ansible_port"], "2222");
        assert_eq!(web1.vars["ansible_user"], "ops");
        assert_eq!(
            web1.groups.iter().collect::<Vec<_>>(),
            ["prod", "web"],
            "children are followed"
        );
        assert_eq!(inv.hosts[2].vars["note"], "two words");
        assert!(inv.hosts[0].groups.is_empty());
        assert_eq!(inv.notes.len(), 1, "{:?}", inv.notes);
    }

    #[test]
    fn yaml_reads_the_same_inventory() {
        let yaml = "
all:
  hosts:
    bastion:
      ansible_host: 127.40.0.9
  children:
    prod:
      children:
        web:
          hosts:
            web1: {ansible_host: 127.40.0.1, ansible_port: 2222, ansible_user: ops}
            web2:
              ansible_host: 127.40.0.2
        db:
          hosts:
            db1:
              ansible_host: 127.40.0.3
";
        let inv = parse_yaml(yaml).unwrap();
        let ini = parse_ini(INI).unwrap();
        let groups = |inv: &FileInventory| -> Vec<(String, Vec<String>)> {
            let mut v: Vec<_> = inv
                .hosts
                .iter()
                .map(|h| (h.name.clone(), h.groups.iter().cloned().collect()))
                .collect();
            v.sort();
            v
        };
        assert_eq!(groups(&inv), groups(&ini));
        let web1 = inv.hosts.iter().find(|h| h.name == "web1").unwrap();
        assert_eq!(web1.vars["ansible_port"], "2222");
    }

    #[test]
    fn what_is_not_read_is_said() {
        for (text, needle) in [
            ("[web\nweb1", "ends with `]`"),
            ("[web:bogus]\n", "unknown section kind"),
            ("[web]\nweb[01:03]\n", "host ranges"),
            ("[web]\nweb1 port\n", "is not key=value"),
            ("[web]\nweb1 a=\"open\n", "quote is not closed"),
            ("[w b]\n", "is not a group name"),
            ("[web]\n$(reboot)\n", "is not a host name"),
        ] {
            let err = parse_ini(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
        for (text, needle) in [
            ("- a\n- b\n", "a mapping of groups"),
            ("all: [1, 2]\n", "expected hosts"),
            ("all:\n  hosts: [web1]\n", "mapping of host names"),
            ("all: {hosts: {", "not YAML"),
        ] {
            let err = parse_yaml(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
