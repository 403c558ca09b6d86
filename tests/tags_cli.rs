//! `fleetctl tag` / `untag` as a user runs them: tags land in the
//! inventory, show in `status`, and `--select` picks hosts by tag and by
//! Ansible-style pattern on every command that takes hosts; bad input
//! exits 2 with the problem named.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Env, assert_causes_once, stderr, stdout};

/// Six listed hosts, web1..web3 on 127.31.0.1-3 and db1..db3 on .4-.6.
fn fleet() -> Env {
    let env = Env::new();
    let hosts: Vec<_> = ["web1", "web2", "web3", "db1", "db2", "db3"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            (
                format!("127.31.0.{}", i + 1).parse().unwrap(),
                Some((*name).to_string()),
            )
        })
        .collect();
    env.inventory().add_listed("test", &hosts).unwrap();
    env
}

fn ok(env: &Env, args: &[&str]) -> String {
    let out = env.run(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// The hosts `deploy --select PATTERN --dry-run` would deploy to.
fn planned(env: &Env, pattern: &str) -> Vec<String> {
    let text = ok(
        env,
        &[
            "deploy",
            "--select",
            pattern,
            "--controller",
            "https://127.31.0.100:8443",
            "--dry-run",
        ],
    );
    text.lines()
        .filter(|l| l.contains(". rollout") || l.contains(". canary"))
        .map(|l| {
            let target = l.split_whitespace().last().unwrap();
            let host = target.split_once('@').unwrap().1;
            host.rsplit_once(':').unwrap().0.to_string()
        })
        .collect()
}

#[test]
fn tags_are_kept_shown_and_selected_by() {
    let env = fleet();
    ok(
        &env,
        &["tag", "web1", "web2", "127.31.0.3", "role=web", "web"],
    );
    ok(&env, &["tag", "db1", "db2", "db3", "role=db", "db"]);
    ok(&env, &["tag", "web1", "db1", "staging", "env=staging"]);
    ok(&env, &["tag", "--select", "role_web:!web1", "env=prod"]);

    let tags = env.inventory().all_tags().unwrap();
    let web1 = &tags[&"127.31.0.1".parse().unwrap()];
    assert_eq!(web1["role"], "web");
    assert_eq!(web1["env"], "staging");
    assert_eq!(web1["web"], "");
    assert_eq!(tags[&"127.31.0.2".parse().unwrap()]["env"], "prod");

    // status: a TAGS column, and tags in JSON.
    let table = ok(&env, &["status", "--wait", "1s"]);
    assert!(table.lines().next().unwrap().contains("TAGS"), "{table}");
    let web2 = table.lines().find(|l| l.contains("127.31.0.2")).unwrap();
    assert!(web2.contains("env=prod role=web web"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&env, &["status", "-o", "json", "--wait", "1s"])).unwrap();
    assert_eq!(json[0]["tags"]["role"], "web", "{json}");
    assert_eq!(json[3]["tags"]["db"], "", "{json}");

    // --select, by tag field and by Ansible pattern.
    assert_eq!(planned(&env, "tag.role=web"), ["web1", "web2", "web3"]);
    assert_eq!(planned(&env, "web:&staging"), ["web1"]);
    assert_eq!(planned(&env, "staging:!db*"), ["web1"]);
    assert_eq!(planned(&env, "role_db:web3"), ["web3", "db1", "db2", "db3"]);
    assert_eq!(planned(&env, "~(web|db)[12]:&tag.env=prod"), ["web2"]);

    // untag, then the tag is gone everywhere.
    ok(&env, &["untag", "web1", "db1", "staging", "env"]);
    let tags = env.inventory().all_tags().unwrap();
    assert!(!tags[&"127.31.0.1".parse().unwrap()].contains_key("env"));
    assert!(!tags[&"127.31.0.4".parse().unwrap()].contains_key("staging"));
    let out = env.run(&[
        "deploy",
        "--select",
        "staging",
        "--controller",
        "https://127.31.0.100:8443",
        "--dry-run",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no host in the inventory matches"));

    // With no tags left, status has no TAGS column.
    ok(
        &env,
        &["untag", "--select", "all", "role", "web", "db", "env"],
    );
    let table = ok(&env, &["status", "--wait", "1s"]);
    assert!(!table.contains("TAGS"), "{table}");
}

#[test]
fn an_address_the_inventory_lacks_joins_it_when_tagged() {
    let env = fleet();
    ok(&env, &["tag", "127.31.0.50", "role=new"]);
    let host = env
        .inventory()
        .host("127.31.0.50".parse().unwrap())
        .unwrap();
    assert!(host.is_some());
    assert_eq!(planned(&env, "role_new"), ["127.31.0.50"]);
}

#[test]
fn bad_tags_and_patterns_exit_2_saying_what_is_wrong() {
    let env = fleet();
    for (args, needle) in [
        (vec!["tag", "nosuch", "role=web"], "names no host"),
        (vec!["tag", "web1"], "no tags after the hosts"),
        (vec!["tag", "web1", "role=we b"], "a value holds"),
        (vec!["tag", "web1", "9lives=yes"], "a key starts with"),
        (vec!["untag", "web1", "1x"], "a key starts with"),
        (
            vec!["tag", "--select", "web:&", "role=web"],
            "nothing after its operator",
        ),
        (
            vec!["tag", "--select", "nosuch", "role=web"],
            "no host in the inventory matches",
        ),
        (vec!["deploy", "--select", "web db"], "holds a space"),
        (vec!["deploy", "--select", "tag.=x"], "is not a tag key"),
        (vec!["undeploy", "--select", "web::db"], "an empty term"),
        (
            vec!["fingerprint", "--select", "~("],
            "not a regular expression",
        ),
    ] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
        assert_causes_once(&stderr(&out));
    }
}
