//! Tests of `ssh/config.rs`.

use super::*;

const SAMPLE: &str = r#"
# defaults for the lab
User ops
Host web-* !web-legacy
    HostName %h.lab.internal
    Port 2222
    IdentityFile ~/.ssh/lab_ed25519
Host web-legacy
    User root
Host db1 db2
    HostName=127.0.0.20
    IdentitiesOnly yes
    ConnectTimeout 7
    ProxyJump jump@bastion:2200,[::1]:22
Host *
    IdentityFile "~/.ssh/id with space"
    Port 22
    User nobody
Match host foo
    User ignored
"#;

fn sample() -> SshConfig {
    SshConfig::parse(SAMPLE, Path::new("config")).unwrap()
}

#[test]
fn first_value_wins_and_identity_files_accumulate() {
    let web = sample().options_for("web-3");
    assert_eq!(web.hostname.as_deref(), Some("web-3.lab.internal"));
    assert_eq!(
        web.user.as_deref(),
        Some("ops"),
        "the global User comes first"
    );
    assert_eq!(web.port, Some(2222));
    assert_eq!(
        web.identity_files,
        ["~/.ssh/lab_ed25519", "~/.ssh/id with space"]
    );
}

#[test]
fn negation_excludes_a_host() {
    let legacy = sample().options_for("web-legacy");
    assert_eq!(legacy.hostname, None);
    assert_eq!(legacy.port, Some(22));
}

#[test]
fn reads_every_supported_option() {
    let db = sample().options_for("DB2");
    assert_eq!(db.hostname.as_deref(), Some("127.0.0.20"));
    assert_eq!(db.identities_only, Some(true));
    assert_eq!(db.connect_timeout, Some(Duration::from_secs(7)));
    assert_eq!(
        db.proxy_jump,
        Some(vec![
            Jump {
                user: Some("jump".into()),
                host: "bastion".into(),
                port: Some(2200)
            },
            Jump {
                user: None,
                host: "::1".into(),
                port: Some(22)
            },
        ])
    );
}

#[test]
fn match_blocks_are_reported_and_ignored() {
    let config = sample();
    assert_eq!(config.warnings.len(), 1);
    assert!(
        config.warnings[0].contains("config:19: Match"),
        "{:?}",
        config.warnings
    );
    assert_eq!(config.options_for("foo").user.as_deref(), Some("ops"));
}

#[test]
fn bad_values_name_the_line() {
    let err =
        SshConfig::parse("Host a\n  Port http\n", Path::new("/home/o/.ssh/config")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/home/o/.ssh/config:2: Port \"http\" is not a port number"
    );
    let err = SshConfig::parse("IdentitiesOnly maybe\n", Path::new("c")).unwrap_err();
    assert!(err.to_string().contains("yes or no"), "{err}");
}

#[test]
fn globs() {
    assert!(glob("*.example.com", "a.b.example.com"));
    assert!(glob("web-??", "web-01"));
    assert!(!glob("web-??", "web-1"));
    assert!(glob("*", ""));
    assert!(!glob("a*b", "acbd"));
}

#[test]
fn expands_tokens() {
    let path = expand_path(
        "~/.ssh/%r@%h:%p-%u%%",
        Path::new("/home/o"),
        "o",
        "db1",
        "root",
        22,
    );
    assert_eq!(path, PathBuf::from("/home/o/.ssh/root@db1:22-o%"));
}

#[test]
fn host_key_options_are_read() {
    let config = SshConfig::parse(
        "Host db1\n  HostKeyAlias db-cluster\n  UserKnownHostsFile ~/.ssh/a \"/k/b c\"\n\
         Host db2\n  UserKnownHostsFile none\n  GlobalKnownHostsFile none\n\
         Host *\n  GlobalKnownHostsFile /etc/fleet_known_hosts\n  HashKnownHosts yes\n",
        Path::new("config"),
    )
    .unwrap();
    let db1 = config.options_for("db1");
    assert_eq!(db1.host_key_alias.as_deref(), Some("db-cluster"));
    assert_eq!(
        db1.user_known_hosts,
        Some(vec!["~/.ssh/a".into(), "/k/b c".into()])
    );
    assert_eq!(
        db1.global_known_hosts,
        Some(vec!["/etc/fleet_known_hosts".into()])
    );
    assert_eq!(db1.hash_known_hosts, Some(true));
    let db2 = config.options_for("db2");
    assert_eq!(db2.user_known_hosts, Some(vec![]));
    assert_eq!(db2.global_known_hosts, Some(vec![]), "first value wins");
    assert_eq!(config.options_for("other").host_key_alias, None);
    let err = SshConfig::parse("HashKnownHosts maybe\n", Path::new("c")).unwrap_err();
    assert!(err.to_string().contains("yes or no"), "{err}");
}
