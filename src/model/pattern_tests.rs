use super::*;

fn host(addr: &str, name: &str, os: Option<&str>, agent: &str, tags: &[&str]) -> Candidate {
    Candidate {
        addr: addr.into(),
        name: Some(name.into()),
        os: os.map(Into::into),
        arch: Some("x86_64".into()),
        agent: agent.into(),
        reach: Some("alive".into()),
        tags: tags
            .iter()
            .map(|t| crate::model::tags::parse_tag(t).unwrap())
            .collect(),
    }
}

fn fleet() -> Vec<Candidate> {
    vec![
        host(
            "10.0.0.1",
            "web1",
            Some("debian"),
            "running",
            &["web", "staging", "role=web"],
        ),
        host(
            "10.0.0.2",
            "web2",
            Some("debian"),
            "none",
            &["web", "prod", "role=web"],
        ),
        host(
            "10.0.0.3",
            "db1",
            Some("alpine"),
            "failed",
            &["db", "staging", "role=db"],
        ),
        host("10.0.1.4", "dbweb", None, "none", &["web", "staging"]),
        host("10.0.1.5", "cache1", Some("alpine"), "running", &[]),
    ]
}

#[test]
fn patterns_pick_as_ansible_does() {
    let all = fleet();
    let cases: &[(&str, &[&str])] = &[
        ("all", &["web1", "web2", "db1", "dbweb", "cache1"]),
        ("*", &["web1", "web2", "db1", "dbweb", "cache1"]),
        ("web", &["web1", "web2", "dbweb"]),
        ("web:db", &["web1", "web2", "db1", "dbweb"]),
        ("web,db", &["web1", "web2", "db1", "dbweb"]),
        ("web:&staging", &["web1", "dbweb"]),
        ("web:&staging:!db*", &["web1"]),
        ("!web", &["db1", "cache1"]),
        ("&staging", &["web1", "db1", "dbweb"]),
        ("all:!10.0.0.1", &["web2", "db1", "dbweb", "cache1"]),
        ("web1:cache1", &["web1", "cache1"]),
        ("10.0.1.*", &["dbweb", "cache1"]),
        ("role_web", &["web1", "web2"]),
        ("role_*:!role_db", &["web1", "web2"]),
        ("~web[0-9]", &["web1", "web2"]),
        ("~db", &["db1", "dbweb"]),
        ("~(db|cache)1$", &["db1", "cache1"]),
        ("tag.role=web", &["web1", "web2"]),
        ("tag.role=web|db", &["web1", "web2", "db1"]),
        ("tag.role!=web", &["db1", "dbweb", "cache1"]),
        ("tag.web=*", &["web1", "web2", "dbweb"]),
        ("os=debian", &["web1", "web2"]),
        ("os=Alpine:&agent=running", &["cache1"]),
        ("os!=debian", &["db1", "dbweb", "cache1"]),
        ("os_alpine", &["db1", "cache1"]),
        ("agent_running", &["web1", "cache1"]),
        ("agent=none|failed", &["web2", "db1", "dbweb"]),
        ("addr=10.0.1.0/24", &["dbweb", "cache1"]),
        ("name=web*", &["web1", "web2"]),
        ("nosuchgroup", &[]),
        ("Web1", &["web1"]),
    ];
    for (pattern, want) in cases {
        let p = Pattern::parse(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
        let got: Vec<&str> = p.select(&all).map(Candidate::label).collect();
        assert_eq!(&got, want, "pattern {pattern}");
    }
}

#[test]
fn malformed_patterns_say_what_is_wrong() {
    let cases = [
        ("", "it is empty"),
        ("   ", "it is empty"),
        ("web staging", "holds a space"),
        ("web::db", "an empty term"),
        ("web:", "an empty term"),
        (",web", "an empty term"),
        ("web:&", "nothing after its operator"),
        ("!", "nothing after its operator"),
        ("web:&!db", "one operator per term"),
        ("~", "needs a regular expression"),
        ("~web[", "not a regular expression"),
        ("~(a", "not a regular expression"),
        ("colour=red", "unknown field \"colour\""),
        ("tag.=web", "is not a tag key"),
        ("tag.1x=web", "is not a tag key"),
        ("os=", "has an empty value"),
        ("os=debian|", "has an empty value"),
        ("addr=10.0.0.0/33", "not a network"),
        ("web|db", "is not a group or host name"),
        ("(web)", "is not a group or host name"),
    ];
    for (pattern, needle) in cases {
        let err = Pattern::parse(pattern).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(needle), "{pattern:?}: {text}");
        assert!(text.starts_with("host pattern "), "{text}");
    }
}

#[test]
fn an_ipv6_address_is_one_term() {
    let mut v6 = host("fd00::5", "v6", None, "none", &[]);
    v6.name = None;
    let p = Pattern::parse("fd00::5").unwrap();
    assert!(p.matches(&v6));
    assert!(!Pattern::parse("!fd00::5").unwrap().matches(&v6));
}

#[test]
fn groups_are_what_the_inventory_prints() {
    let h = host(
        "10.0.0.1",
        "web1",
        Some("debian"),
        "running",
        &["web", "role=web"],
    );
    assert_eq!(
        h.groups(),
        [
            "agent_running",
            "arch_x86_64",
            "os_debian",
            "role_web",
            "web"
        ]
    );
}

#[test]
fn glob_edges() {
    assert!(glob("a*a", "aa"));
    assert!(!glob("a*a", "a"));
    assert!(glob("*", ""));
    assert!(glob("*b*", "abc"));
    assert!(!glob("ab", "abc"));
    assert!(glob("a*b*c", "aXbYc"));
    assert!(!glob("a*b*c", "aXcYb"));
}
