//! `fleetctl inventory` without Ansible: the dynamic-inventory JSON's
//! shape, `--host`, YAML and INI output, `--select`, import from INI and
//! YAML, hostile names kept out of files Ansible parses, and bad input
//! (exit 2, nothing imported).
#![allow(clippy::unwrap_used)]

mod common;

use common::{Env, assert_causes_once, stderr, stdout};
use serde_json::Value;

fn ok(env: &Env, args: &[&str]) -> String {
    let out = env.run(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn list_host_and_static_files() {
    let env = Env::new();
    let hostile = "evil\x1b]0;x\x07 $(reboot)";
    env.inventory()
        .add_listed(
            "test",
            &[
                ("127.45.0.1".parse().unwrap(), Some("web1".into())),
                ("127.45.0.2".parse().unwrap(), Some(hostile.into())),
                ("127.45.0.3".parse().unwrap(), Some("web1".into())),
            ],
        )
        .unwrap();
    ok(&env, &["tag", "127.45.0.1", "127.45.0.2", "role=web"]);

    let list: Value = serde_json::from_str(&ok(&env, &["inventory", "--list"])).unwrap();
    // A name that is not a plain word, or is taken, becomes the address.
    let web: Vec<&str> = list["role_web"]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert_eq!(web, ["web1", "127.45.0.2"]);
    let hostvars = list["_meta"]["hostvars"].as_object().unwrap();
    assert_eq!(
        hostvars.keys().collect::<Vec<_>>(),
        ["127.45.0.2", "127.45.0.3", "web1"]
    );
    assert_eq!(hostvars["127.45.0.3"]["ansible_host"], "127.45.0.3");
    assert!(
        list["all"]["children"]
            .as_array()
            .unwrap()
            .contains(&Value::from("role_web"))
    );
    assert_eq!(list["agent_none"]["hosts"].as_array().unwrap().len(), 3);
    assert_eq!(
        ok(&env, &["inventory"]),
        ok(&env, &["inventory", "--list"]),
        "--list is the default"
    );

    let one: Value = serde_json::from_str(&ok(&env, &["inventory", "--host", "web1"])).unwrap();
    assert_eq!(one["fleetctl_tags"]["role"], "web");
    let by_addr: Value =
        serde_json::from_str(&ok(&env, &["inventory", "--host", "127.45.0.3"])).unwrap();
    assert_eq!(by_addr["ansible_host"], "127.45.0.3");

    let yaml = ok(&env, &["inventory", "-o", "yaml"]);
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(
        doc["all"]["hosts"]["web1"]["ansible_host"].as_str(),
        Some("127.45.0.1")
    );
    assert!(doc["all"]["children"]["role_web"]["hosts"]["web1"].is_mapping());
    let ini = ok(&env, &["inventory", "-o", "ini"]);
    assert!(ini.contains("[role_web]\nweb1\n127.45.0.2\n"), "{ini}");
    for text in [&yaml, &ini] {
        assert!(!text.contains(['\x1b', '\x07', '$']), "{text}");
    }

    let only: Value =
        serde_json::from_str(&ok(&env, &["inventory", "--select", "role_web:!web1"])).unwrap();
    assert_eq!(
        only["_meta"]["hostvars"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["127.45.0.2"]
    );
}

#[test]
fn import_ini_and_yaml() {
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("a.ini");
    std::fs::write(
        &ini,
        "[web]\nweb1 ansible_host=127.46.0.1 ansible_port=2222 ansible_user=ops\n\
         [agent_running]\nweb1\n[prod:children]\nweb\n[prod:vars]\nntp=x\n",
    )
    .unwrap();
    let out = env.run(&["inventory", "import", ini.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("imported 1 host(s) (1 new) and 2 group(s) as tags"));
    assert!(
        stderr(&out).contains("group variables of prod"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("agent_running"), "{}", stderr(&out));
    let yaml = dir.path().join("b.yaml");
    std::fs::write(
        &yaml,
        "all:\n  children:\n    db:\n      hosts:\n        db1:\n          ansible_host: 127.46.0.2\n",
    )
    .unwrap();
    ok(&env, &["inventory", "import", yaml.to_str().unwrap()]);
    let tags = env.inventory().all_tags().unwrap();
    let web1 = &tags[&"127.46.0.1".parse().unwrap()];
    assert_eq!(web1.keys().collect::<Vec<_>>(), ["prod", "web"]);
    assert_eq!(tags[&"127.46.0.2".parse().unwrap()]["db"], "");
    let one: Value = serde_json::from_str(&ok(&env, &["inventory", "--host", "web1"])).unwrap();
    assert_eq!(one["ansible_port"], 2222);
    assert_eq!(one["ansible_user"], "ops");
    // What the import brought is what --select sees.
    let out = env.run(&[
        "deploy",
        "--select",
        "prod:db",
        "--controller",
        "https://127.46.0.100:8443",
        "--dry-run",
    ]);
    let plan = stdout(&out);
    assert!(plan.contains("web1") && plan.contains("db1"), "{plan}");
}

#[test]
fn bad_input_exits_2_and_imports_nothing() {
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    for (args, needle) in [
        (
            vec!["inventory", "import", &file("r.ini", "[web]\nweb[1:3]\n")],
            "host ranges",
        ),
        (
            vec![
                "inventory",
                "import",
                &file(
                    "p.ini",
                    "[web]\nweb1 ansible_host=127.47.0.1 ansible_port=99999\n",
                ),
            ],
            "ansible_port is not a port",
        ),
        (
            vec![
                "inventory",
                "import",
                &file(
                    "u.ini",
                    "a ansible_host=127.47.0.2\nb ansible_host=127.47.0.3 ansible_user=\"x y\"\n",
                ),
            ],
            "ansible_user is not a user name",
        ),
        (
            vec!["inventory", "import", &file("y.yml", "all: [1]\n")],
            "expected hosts",
        ),
        (
            vec!["inventory", "import", "/nonexistent.ini"],
            "cannot read",
        ),
        (vec!["inventory", "--host", "nope"], "no host \"nope\""),
        (
            vec!["inventory", "--select", "~("],
            "not a regular expression",
        ),
    ] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
        assert_causes_once(&stderr(&out));
    }
    assert!(
        env.inventory().hosts().unwrap().is_empty(),
        "nothing imported"
    );
}
