//! fleetctl as Ansible's inventory, checked with real ansible-core (from
//! PyPI; .ci/run installs it into /opt/fleetctl-ansible, or set
//! FLEETCTL_ANSIBLE_BIN to the directory holding `ansible`): the README's
//! one-line wrapper is an inventory script `ansible-inventory` parses, its
//! groups are the tags; `ansible all -m ping` reaches real sshd hosts on
//! loopback through it (python3 on the "hosts" is this machine's); an INI
//! inventory imported and written back with `-o ini` reads the same to
//! Ansible.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Env, Sshd, keygen, public_key, require_root, stderr, stdout};
use serde_json::Value;

/// Where ansible-core is; fails loudly when it is not installed.
fn ansible_bin(tool: &str) -> PathBuf {
    let dir = std::env::var_os("FLEETCTL_ANSIBLE_BIN")
        .map_or_else(|| PathBuf::from("/opt/fleetctl-ansible/bin"), PathBuf::from);
    let path = dir.join(tool);
    assert!(
        path.exists(),
        "this test needs ansible-core's {tool} in {}: `python3 -m venv /opt/fleetctl-ansible && \
         /opt/fleetctl-ansible/bin/pip install ansible-core` (.ci/run does), or set FLEETCTL_ANSIBLE_BIN",
        dir.display()
    );
    path
}

/// An Ansible command with the test's own fleetctl environment (the
/// wrapper inherits it) and Ansible's state kept in `scratch`.
fn ansible(env: &Env, scratch: &Path, tool: &str) -> Command {
    let mut cmd = Command::new(ansible_bin(tool));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("FLEETCTL_CONFIG", env.config_file())
        .env("FLEETCTL_DATA_DIR", env.data_dir())
        .env("HOME", scratch)
        .env("ANSIBLE_HOME", scratch.join("ansible"))
        .env("ANSIBLE_LOCAL_TEMP", scratch.join("tmp"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_PYTHON_INTERPRETER", "/usr/bin/python3")
        .env("LC_ALL", "C.UTF-8");
    cmd
}

/// The README's wrapper: `exec fleetctl inventory "$@"`, executable.
fn wrapper(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join("fleetctl-inventory");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nexec {} inventory \"$@\"\n",
            env!("CARGO_BIN_EXE_fleetctl")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        stderr(out),
        stdout(out)
    );
    stdout(out)
}

/// Group → sorted hosts, from `ansible-inventory --list` (children followed
/// one level, as `all` lists them), leaving out `all`, `ungrouped` and the
/// groups fleetctl makes from facts and deploys.
fn tag_groups(list: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut groups = BTreeMap::new();
    for (name, body) in list.as_object().unwrap() {
        if matches!(name.as_str(), "_meta" | "all" | "ungrouped")
            || ["os_", "arch_", "agent_"]
                .iter()
                .any(|p| name.starts_with(p))
        {
            continue;
        }
        let hosts: BTreeSet<String> = body["hosts"]
            .as_array()
            .map(|a| a.iter().map(|h| h.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        groups.insert(name.clone(), hosts);
    }
    groups
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

#[test]
#[ignore = "needs ansible-core from PyPI (.ci/run installs it into /opt/fleetctl-ansible)"]
fn ansible_inventory_reads_the_wrapper_and_its_groups_are_the_tags() {
    let env = Env::new();
    let scratch = tempfile::tempdir().unwrap();
    let hosts: Vec<_> = ["web1", "web2", "db1"]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                format!("127.42.0.{}", i + 1).parse().unwrap(),
                Some((*n).to_string()),
            )
        })
        .collect();
    env.inventory().add_listed("test", &hosts).unwrap();
    ok(&env.run(&["tag", "web1", "web2", "role=web", "web"]), "tag");
    ok(&env.run(&["tag", "db1", "role=db", "env=prod"]), "tag");
    let inv = wrapper(scratch.path());
    let out = ansible(&env, scratch.path(), "ansible-inventory")
        .arg("-i")
        .arg(&inv)
        .arg("--list")
        .output()
        .unwrap();
    let list: Value = serde_json::from_str(&ok(&out, "ansible-inventory --list")).unwrap();
    let groups = tag_groups(&list);
    assert_eq!(groups["role_web"], set(&["web1", "web2"]), "{list:#}");
    assert_eq!(groups["web"], set(&["web1", "web2"]));
    assert_eq!(groups["role_db"], set(&["db1"]));
    assert_eq!(groups["env_prod"], set(&["db1"]));
    assert_eq!(groups.len(), 4, "{groups:?}");
    assert_eq!(list["agent_none"]["hosts"].as_array().unwrap().len(), 3);
    let web1 = &list["_meta"]["hostvars"]["web1"];
    assert_eq!(web1["ansible_host"], "127.42.0.1");
    assert_eq!(web1["fleetctl_tags"]["role"], "web");

    // --host through the same wrapper, as Ansible asks without _meta.
    let out = ansible(&env, scratch.path(), "ansible-inventory")
        .arg("-i")
        .arg(&inv)
        .args(["--host", "db1"])
        .output()
        .unwrap();
    let db1: Value = serde_json::from_str(&ok(&out, "ansible-inventory --host")).unwrap();
    assert_eq!(db1["ansible_host"], "127.42.0.3");
    assert_eq!(db1["fleetctl_tags"]["env"], "prod");
}

#[test]
#[ignore = "needs root for sshd and ansible-core from PyPI (.ci/run)"]
fn ansible_pings_real_sshd_hosts_through_the_wrapper() {
    require_root();
    let env = Env::new();
    let scratch = tempfile::tempdir().unwrap();
    let key = keygen(scratch.path(), "id_ed25519", "");
    let servers: Vec<Sshd> = (1..=3)
        .map(|i| Sshd::start(None, &format!("127.43.0.{i}"), 2222))
        .collect();
    let mut known = String::new();
    let mut ini = String::from("[web]\n");
    for (i, sshd) in servers.iter().enumerate() {
        sshd.authorize(&public_key(&key));
        let _ = write!(known, "[{}]:2222 {}", sshd.addr.ip(), sshd.host_key());
        let _ = writeln!(
            ini,
            "node{} ansible_host={} ansible_port=2222 ansible_user=root",
            i + 1,
            sshd.addr.ip()
        );
        if i == 1 {
            ini.push_str("[db]\n");
        }
    }
    let known_hosts = scratch.path().join("known_hosts");
    std::fs::write(&known_hosts, known).unwrap();
    let file = scratch.path().join("fleet.ini");
    std::fs::write(&file, ini).unwrap();
    let out = env.run(&["inventory", "import", file.to_str().unwrap()]);
    assert!(ok(&out, "import").contains("imported 3 host(s) (3 new)"));

    let inv = wrapper(scratch.path());
    let out = ansible(&env, scratch.path(), "ansible")
        .arg("all")
        .arg("-i")
        .arg(&inv)
        .args(["-m", "ping", "--private-key"])
        .arg(&key)
        // `=`: argparse takes a separate value that starts with `-` for a flag.
        .arg(format!(
            "--ssh-common-args=-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes",
            known_hosts.display()
        ))
        .output()
        .unwrap();
    let text = ok(&out, "ansible all -m ping");
    for node in ["node1", "node2", "node3"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(node) && l.contains("SUCCESS")),
            "{node} not reached: {text}"
        );
    }
    assert!(text.contains("\"ping\": \"pong\""), "{text}");
    // A pattern over the tags picks as --select does.
    let out = ansible(&env, scratch.path(), "ansible")
        .arg("web:db:!node1")
        .arg("-i")
        .arg(&inv)
        .arg("--list-hosts")
        .output()
        .unwrap();
    let text = ok(&out, "ansible --list-hosts");
    assert!(text.contains("hosts (2)"), "{text}");
    assert!(text.contains("node2") && text.contains("node3") && !text.contains("node1"));
}

#[test]
#[ignore = "needs ansible-core from PyPI (.ci/run installs it into /opt/fleetctl-ansible)"]
fn an_imported_ini_file_written_back_reads_the_same_to_ansible() {
    let scratch = tempfile::tempdir().unwrap();
    let original = scratch.path().join("site.ini");
    std::fs::write(
        &original,
        "bastion ansible_host=127.44.0.9 ansible_port=2200\n\
         \n[web]\nweb1 ansible_host=127.44.0.1 ansible_port=2222 ansible_user=ops\n\
         web2 ansible_host=127.44.0.2\n\
         [db]\ndb1 ansible_host=127.44.0.3 ansible_user=postgres\n\
         [prod:children]\nweb\ndb\n",
    )
    .unwrap();
    let first = Env::new();
    ok(
        &first.run(&["inventory", "import", original.to_str().unwrap()]),
        "import",
    );
    let exported = ok(&first.run(&["inventory", "-o", "ini"]), "-o ini");
    let copy = scratch.path().join("exported.ini");
    std::fs::write(&copy, &exported).unwrap();

    // Into a fresh inventory and out again: the same file.
    let second = Env::new();
    ok(
        &second.run(&["inventory", "import", copy.to_str().unwrap()]),
        "import the export",
    );
    let again = ok(&second.run(&["inventory", "-o", "ini"]), "-o ini again");
    assert_eq!(again, exported);

    // Ansible reads the original and the export alike: groups (children
    // flattened), addresses, ports and users.
    let read = |file: &Path| -> Value {
        let out = ansible(&first, scratch.path(), "ansible-inventory")
            .arg("-i")
            .arg(file)
            .arg("--list")
            .output()
            .unwrap();
        serde_json::from_str(&ok(&out, "ansible-inventory")).unwrap()
    };
    let (a, b) = (read(&original), read(&copy));
    let members = |list: &Value, group: &str| -> BTreeSet<String> {
        // ansible-inventory nests children; gather hosts at any depth.
        let mut found = BTreeSet::new();
        let mut todo = vec![group.to_string()];
        while let Some(g) = todo.pop() {
            for h in list[&g]["hosts"].as_array().into_iter().flatten() {
                found.insert(h.as_str().unwrap().to_string());
            }
            for c in list[&g]["children"].as_array().into_iter().flatten() {
                todo.push(c.as_str().unwrap().to_string());
            }
        }
        found
    };
    for group in ["web", "db", "prod"] {
        assert_eq!(members(&a, group), members(&b, group), "group {group}");
    }
    assert_eq!(members(&b, "prod"), set(&["web1", "web2", "db1"]));
    for host in ["bastion", "web1", "web2", "db1"] {
        for var in ["ansible_host", "ansible_port", "ansible_user"] {
            let (x, y) = (
                &a["_meta"]["hostvars"][host][var],
                &b["_meta"]["hostvars"][host][var],
            );
            // INI values read back as text or numbers alike.
            let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
            assert_eq!(text(x), text(y), "{host} {var}");
        }
    }
    assert_eq!(b["_meta"]["hostvars"]["web1"]["ansible_port"], 2222);
}
