//! The host scripts run for real in a scratch home.

use super::*;

fn make_dirs(layout: &Layout) {
    std::fs::create_dir_all(&layout.state_dir).unwrap();
    std::fs::create_dir_all(&layout.lib_dir).unwrap();
}

#[test]
fn system_unit_restarts_on_failure_and_runs_the_versioned_binary() {
    let root = Layout::new(true, "/root");
    let unit = unit_text(&root, &root.binary("ab".repeat(32).as_str())).unwrap();
    insta::assert_snapshot!(unit, @r#"
    # Written by fleetctl deploy; `fleetctl undeploy` removes it.
    [Unit]
    Description=fleetctl agent
    Wants=network-online.target
    After=network-online.target

    [Service]
    ExecStart="/usr/local/lib/fleetctl/fleetctl-agent-abababababababab" agent --config "/var/lib/fleetctl/agent.toml"
    WorkingDirectory=/var/lib/fleetctl
    UMask=0077
    Restart=on-failure
    RestartSec=2s

    [Install]
    WantedBy=multi-user.target
    "#);
}

#[test]
fn user_unit_is_wanted_by_the_user_manager() {
    let user = Layout::new(false, "/home/ann");
    let unit = unit_text(&user, &user.binary("cd".repeat(32).as_str())).unwrap();
    assert!(unit.contains("WantedBy=default.target\n"), "{unit}");
    assert!(unit.contains(
        "ExecStart=\"/home/ann/.local/lib/fleetctl/fleetctl-agent-cdcdcdcdcdcdcdcd\" agent --config \"/home/ann/.local/state/fleetctl/agent.toml\"\n"
    ));
    assert!(start(&user, &"cd".repeat(32), true).contains("enable-linger"));
}

#[test]
fn scripts_are_valid_sh() {
    let layout = Layout::new(false, "/home/o'brien");
    let sha = "ef".repeat(32);
    for systemd in [false, true] {
        for script in [
            inspect(&sha, &["x86_64", "armv*"], InstallScope::Auto),
            inspect(&sha, &["x86_64"], InstallScope::User),
            verify(&layout, &sha, "sha256sum"),
            install_config(&layout),
            restore_config(&layout),
            stop(&layout, systemd),
            start(&layout, &sha, systemd),
            log_tail(&layout, systemd, 20),
            runs_build(&layout, &sha, systemd),
            remove(&layout, systemd, Some(&sha)),
            remove_empty_dirs(&layout),
            present(&layout),
        ] {
            let out = std::process::Command::new("sh")
                .args(["-n", "-c", &script])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{script}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A user-scope inspect prepares the home's directories for any login
/// user, root included, and never picks the system's service manager.
#[test]
fn user_scope_inspect_prepares_the_home_only() {
    let home = tempfile::tempdir().unwrap();
    let bin = home.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    // A systemctl that would be found: the user scope must still not use it.
    std::fs::write(bin.join("systemctl"), "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(
        bin.join("systemctl"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let arch = std::env::consts::ARCH;
    let sha = "56".repeat(32);
    let out = std::process::Command::new("sh")
        .args(["-c", &inspect(&sha, &[arch], InstallScope::User)])
        .env_clear()
        .env("HOME", home.path())
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("prepare_error"), "{text}");
    assert!(text.contains("systemd_user=0"), "{text}");
    let layout = Layout::new(false, home.path().to_str().unwrap());
    assert!(std::path::Path::new(&layout.state_dir).is_dir());
    assert!(std::path::Path::new(&layout.lib_dir).is_dir());
}

/// The scripts run for real against a scratch home: the non-systemd
/// path end to end with a stand-in binary (this machine has no systemd).
#[test]
fn detached_start_stop_and_remove_work_in_a_scratch_home() {
    let home = tempfile::tempdir().unwrap();
    let layout = Layout::new(false, home.path().to_str().unwrap());
    let sha = "12".repeat(32);
    let sh = |script: &str| {
        std::process::Command::new("sh")
            .args(["-c", script])
            .env("HOME", home.path())
            .output()
            .unwrap()
    };
    make_dirs(&layout);
    // A stand-in agent: a script named like a build, sleeping until killed.
    std::fs::write(
        layout.upload_temp(&sha),
        "#!/bin/sh\necho started \"$@\"\ntrap 'kill $!; exit 0' TERM\nsleep 60 &\nwait\n",
    )
    .unwrap();
    let checksum = "sh -c 'sha256sum >/dev/null; echo 1212121212121212121212121212121212121212121212121212121212121212 -'";
    let out = sh(&verify(&layout, &sha, checksum));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::path::Path::new(&layout.binary(&sha)).exists());
    std::fs::write(layout.config(), "").unwrap();
    assert!(sh(&start(&layout, &sha, false)).status.success());
    let current = std::fs::read_to_string(layout.current()).unwrap();
    assert_eq!(current.trim(), sha);
    let pid: i32 = std::fs::read_to_string(layout.pidfile())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Let the stand-in get going before stopping it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !std::fs::read_to_string(layout.log()).is_ok_and(|l| l.contains("started")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the stand-in never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(sh(&runs_build(&layout, &sha, false)).status.success());
    let other = sh(&runs_build(&layout, &"99".repeat(32), false));
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("does not run"));
    assert!(sh(&stop(&layout, false)).status.success());
    let stopped = sh(&runs_build(&layout, &sha, false));
    assert!(String::from_utf8_lossy(&stopped.stderr).contains("not running"));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    assert!(status.is_empty() || status.contains("zombie"), "{status}");
    let log = sh(&log_tail(&layout, false, 5));
    assert!(String::from_utf8_lossy(&log.stdout).contains("started agent --config"));
    assert!(!sh(&present(&layout)).stdout.is_empty());
    assert!(sh(&remove(&layout, false, None)).status.success());
    assert!(sh(&present(&layout)).stdout.is_empty());
    assert!(!std::path::Path::new(&layout.state_dir).exists());
    assert!(!std::path::Path::new(&layout.lib_dir).exists());
}

#[test]
fn a_wrong_checksum_removes_the_upload() {
    let home = tempfile::tempdir().unwrap();
    let layout = Layout::new(false, home.path().to_str().unwrap());
    let sha = "34".repeat(32);
    let run = |script: &str| {
        std::process::Command::new("sh")
            .args(["-c", script])
            .output()
            .unwrap()
    };
    make_dirs(&layout);
    std::fs::write(layout.upload_temp(&sha), "not the build").unwrap();
    let out = run(&verify(&layout, &sha, "sha256sum"));
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupted"));
    assert!(!std::path::Path::new(&layout.upload_temp(&sha)).exists());
    assert!(!std::path::Path::new(&layout.binary(&sha)).exists());
}

#[test]
fn staged_config_goes_in_and_a_rollback_puts_the_old_one_back() {
    let home = tempfile::tempdir().unwrap();
    let layout = Layout::new(false, home.path().to_str().unwrap());
    let sh = |script: &str| {
        let out = std::process::Command::new("sh")
            .args(["-c", script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let read = |path: &str| std::fs::read_to_string(path).ok();
    make_dirs(&layout);
    std::fs::write(layout.config(), "old config").unwrap();
    std::fs::write(layout.ca(), "old ca").unwrap();
    for (name, text) in [
        ("agent.toml", "new config"),
        ("ca.pem", "new ca"),
        ("join.token", "t"),
    ] {
        std::fs::write(layout.state(&format!(".{name}.new")), text).unwrap();
    }
    sh(&install_config(&layout));
    assert_eq!(read(&layout.config()).as_deref(), Some("new config"));
    assert_eq!(read(&layout.join_token()).as_deref(), Some("t"));
    sh(&restore_config(&layout));
    assert_eq!(read(&layout.config()).as_deref(), Some("old config"));
    assert_eq!(read(&layout.ca()).as_deref(), Some("old ca"));
    assert_eq!(read(&layout.join_token()), None, "the unused token goes");
    let mut left: Vec<_> = std::fs::read_dir(&layout.state_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["agent.toml", "ca.pem"]);
}

#[test]
fn unit_paths_are_quoted_and_unquotable_ones_refused() {
    // What a systemd unit would read as more words, specifiers or variables.
    let odd = Layout::new(false, "/home/a%h$USER\"b");
    let unit = unit_text(&odd, &odd.binary(&"ab".repeat(32))).unwrap();
    assert!(
        unit.contains(r#"ExecStart="/home/a%%h$$USER\"b/.local/lib/fleetctl/"#),
        "{unit}"
    );
    assert!(
        unit.contains("WorkingDirectory=/home/a%%h$USER\"b/.local/state/fleetctl\n"),
        "{unit}"
    );
    assert_eq!(unit.lines().filter(|l| l.starts_with("Exec")).count(), 1);
    for home in ["/home/a b", "/home/a\nExecStartPre=/bin/id", "/home/a\\b"] {
        let layout = Layout::new(false, home);
        assert!(
            unit_text(&layout, &layout.binary(&"ab".repeat(32))).is_err(),
            "{home:?}"
        );
    }
}

/// How a host without SFTP receives files, run for real.
#[test]
fn received_files_have_their_mode_from_the_start_and_their_full_length() {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let send = |path: &std::path::Path, mode: u32, bytes: &[u8], claimed: usize| {
        let mut child = std::process::Command::new("sh")
            .args(["-c", &receive_file(path.to_str().unwrap(), mode, claimed)])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        child.wait_with_output().unwrap()
    };
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;

    let secret = dir.path().join(".join.token.new");
    let out = send(&secret, 0o600, b"eyJ.secret", 10);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&secret).unwrap(), b"eyJ.secret");
    assert_eq!(mode(&secret), 0o600);

    // A link planted where the file goes is replaced, never written through.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::fs::remove_file(&secret).unwrap();
    std::os::unix::fs::symlink(&victim, &secret).unwrap();
    assert!(send(&secret, 0o600, b"new", 3).status.success());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert_eq!(std::fs::read(&secret).unwrap(), b"new");

    let binary = dir.path().join(".fleetctl-agent-x.part");
    assert!(send(&binary, 0o700, b"\x7fELF...", 7).status.success());
    assert_eq!(mode(&binary), 0o700);

    // Cut short (the connection dropped): refused, and nothing half-written stays.
    let short = dir.path().join(".agent.toml.new");
    let out = send(&short, 0o600, b"contr", 11);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("5 of 11 bytes"),
        "{out:?}"
    );
    assert!(!short.exists());
}

/// The C library line of [`FACTS`], with `getconf` and `ldd` as glibc,
/// an old glibc without getconf, musl and a host with neither would answer.
#[test]
fn facts_name_the_c_library() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for tool in ["id", "uname", "hostname", "head", "sed"] {
        let real = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| std::path::Path::new(d).join(tool))
            .find(|p| p.exists())
            .unwrap();
        std::os::unix::fs::symlink(real, bin.join(tool)).unwrap();
    }
    let tool = |name: &str, body: Option<&str>| {
        let path = bin.join(name);
        let _ = std::fs::remove_file(&path);
        if let Some(body) = body {
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    };
    let libc = |path: &str| {
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", FACTS])
            .env_clear()
            .env("HOME", dir.path())
            .env("PATH", path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix("libc="))
            .unwrap_or_else(|| panic!("no libc= line: {text}"))
            .to_owned()
    };
    let only = bin.to_str().unwrap();

    // This machine, as it is.
    let getconf = std::process::Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .unwrap();
    let here = String::from_utf8_lossy(&getconf.stdout).trim().to_owned();
    assert_eq!(libc(&format!("{only}:/usr/bin:/bin")), here);

    tool(
        "getconf",
        Some("[ \"$1\" = GNU_LIBC_VERSION ] && echo 'glibc 2.17'"),
    );
    assert_eq!(libc(only), "glibc 2.17");
    // No getconf: glibc's ldd says its version last on the first line.
    tool("getconf", None);
    tool(
        "ldd",
        Some("echo 'ldd (Debian GLIBC 2.31-13+deb11u5) 2.31'; echo 'Copyright (C) 2020'"),
    );
    assert_eq!(libc(only), "glibc 2.31");
    // musl's ldd names itself on stderr and fails.
    tool(
        "ldd",
        Some("echo 'musl libc (x86_64)' >&2; echo 'Version 1.2.4' >&2; exit 1"),
    );
    assert_eq!(libc(only), "musl");
    // Neither tool: nothing said, deploy decides.
    tool("ldd", None);
    assert_eq!(libc(only), "");
    // A getconf answer that is not a version is not passed on.
    tool("getconf", Some("echo 'glibc 2.31; touch /tmp/pwned'"));
    assert_eq!(libc(only), "");
}
