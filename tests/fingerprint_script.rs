//! The fingerprint script run for real on this machine, under every shell a
//! minimal host may have, and its answers checked against what the machine
//! reports through other means.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{require_root, require_tool, stderr, stdout};
use fleetctl::fingerprint::{SCRIPT, parse};
use fleetctl::model::HostFacts;

/// Runs the script as `SHELL... -c SCRIPT`, as the fingerprint job does over SSH.
fn run_script(shell: &[&str]) -> Output {
    Command::new(shell[0])
        .args(&shell[1..])
        .arg("-c")
        .arg(SCRIPT)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The script's contract: exit 0, nothing on stderr, and only `key=value`
/// lines whose keys are `HostFacts` fields (`address` for `addresses`) with
/// values the parser accepts. Returns the parsed facts.
fn check_contract(out: &Output) -> HostFacts {
    assert!(
        out.status.success(),
        "script failed: {}\n{}",
        out.status,
        stderr(out)
    );
    assert_eq!(stderr(out), "", "the script must keep stderr clean");
    let text = stdout(out);
    let facts = parse(&text);
    let json = serde_json::to_value(&facts).unwrap();
    for line in text.lines() {
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a key=value line: {line:?}"));
        assert!(
            !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "bad key in {line:?}"
        );
        assert!(!value.trim().is_empty(), "empty value in {line:?}");
        let field = if key == "address" { "addresses" } else { key };
        assert!(
            json.get(field).is_some(),
            "{line:?}: not a HostFacts field, or a value the parser rejects"
        );
    }
    facts
}

fn local(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(out.status.success(), "{cmd} {args:?}: {}", stderr(&out));
    stdout(&out).trim().to_owned()
}

fn os_release_id() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("ID="))
        .map(|v| v.trim_matches(['"', '\'']).to_owned())
}

fn mem_total_bytes() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

/// Compares the script's facts with what this machine says directly.
fn check_against_machine(facts: &HostFacts) {
    assert_eq!(
        facts.arch.as_deref(),
        Some(local("uname", &["-m"]).as_str())
    );
    assert_eq!(
        facts.kernel.as_deref(),
        Some(local("uname", &["-srv"]).as_str())
    );
    assert_eq!(facts.cpu_count, Some(local("nproc", &[]).parse().unwrap()));
    assert_eq!(facts.mem_total_bytes, Some(mem_total_bytes()));
    assert!(
        facts.swap_total_bytes.is_some(),
        "/proc/meminfo has SwapTotal"
    );
    assert_eq!(facts.os_id, os_release_id());
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(facts.boot_id.as_deref(), Some(boot_id.trim()));
    if let Ok(machine_id) = std::fs::read_to_string("/etc/machine-id") {
        assert_eq!(facts.machine_id.as_deref(), Some(machine_id.trim()));
    }
    let root = local("id", &["-u"]) == "0";
    assert_eq!(facts.is_root, Some(root));
    if root {
        assert_eq!(facts.sudo_nopasswd, Some(true), "root needs no sudo");
    }
    assert_eq!(facts.user.as_deref(), Some(local("id", &["-un"]).as_str()));
    assert!(facts.hostname.is_some(), "every host has a name");
    assert!(facts.uptime_secs.is_some_and(|s| s > 0));
    let (size, used) = (
        facts.root_fs_size_bytes.unwrap(),
        facts.root_fs_used_bytes.unwrap(),
    );
    assert!(size > 0 && used <= size, "root fs {used} used of {size}");
    assert!(
        facts.init_system.is_some(),
        "/proc/1/comm is world-readable"
    );
    assert!(
        facts.virtualization.is_some(),
        "systemd-detect-virt or a hint answers"
    );
    let unique: BTreeSet<_> = facts.addresses.iter().collect();
    assert_eq!(unique.len(), facts.addresses.len(), "no address twice");
    for addr in &facts.addresses {
        let ip: std::net::IpAddr = addr.parse().unwrap();
        assert!(!ip.is_loopback(), "{addr} is loopback");
    }
}

#[test]
fn script_under_sh_reports_this_machine() {
    let sh = require_tool("sh");
    let out = run_script(&[sh.to_str().unwrap()]);
    let facts = check_contract(&out);
    check_against_machine(&facts);
}

#[test]
#[ignore = "needs dash / busybox, installed by .ci/run"]
fn script_under_dash_reports_this_machine() {
    let Some(dash) = find_tool("dash") else {
        panic!("this test needs `dash`: apt-get install -y dash");
    };
    let facts = check_contract(&run_script(&[dash.as_str()]));
    check_against_machine(&facts);
}

#[test]
#[ignore = "needs dash / busybox, installed by .ci/run"]
fn script_under_busybox_reports_this_machine() {
    let Some(busybox) = find_tool("busybox") else {
        panic!("this test needs `busybox`: apt-get install -y busybox");
    };
    // Busybox's own applets first on PATH, so it is their options that are
    // exercised (df -P, ip -o, nproc, ...), as on an Alpine or embedded host;
    // what busybox lacks (systemd-detect-virt) still comes from the system.
    let applets = tempfile::tempdir().unwrap();
    let list = local(&busybox, &["--list"]);
    for applet in list.lines() {
        std::os::unix::fs::symlink(&busybox, applets.path().join(applet)).unwrap();
    }
    let out = Command::new(&busybox)
        .args(["sh", "-c", SCRIPT])
        .env("PATH", applets.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let facts = check_contract(&out);
    check_against_machine(&facts);
}

/// Like `require_tool`, for the tests that must say which package to install.
fn find_tool(name: &str) -> Option<String> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.exists())
        .map(|p| p.to_str().unwrap().to_owned())
}

#[test]
#[ignore = "needs root: drops to nobody with setpriv"]
fn script_as_nobody_is_not_root_and_still_exits_zero() {
    require_root();
    let setpriv = require_tool("setpriv");
    let sh = require_tool("sh");
    let out = Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(sh)
        .arg("-c")
        .arg(SCRIPT)
        // A directory nobody may enter would be the test's fault, not the script's.
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let facts = check_contract(&out);
    assert_eq!(facts.is_root, Some(false));
    assert_ne!(facts.user.as_deref(), Some("root"));
    // Without sudo the fact is unknown; with it, nobody has no rule.
    assert_ne!(facts.sudo_nopasswd, Some(true));
    // Facts any user can read are still there.
    assert_eq!(
        facts.arch.as_deref(),
        Some(local("uname", &["-m"]).as_str())
    );
    assert_eq!(facts.mem_total_bytes, Some(mem_total_bytes()));
    assert!(facts.boot_id.is_some());
}

#[test]
fn script_survives_every_tool_failing_and_flattens_multiline_values() {
    let sh = require_tool("sh");
    // Fake tools first on PATH: each fails loudly, except `uname`, whose
    // answer spans lines with a carriage return thrown in.
    let fakes = tempfile::tempdir().unwrap();
    let fail = fakes.path().join("fail");
    std::fs::write(&fail, "#!/bin/sh\necho 'broken tool' >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(&fail, std::fs::Permissions::from_mode(0o755)).unwrap();
    let uname = fakes.path().join("uname");
    std::fs::write(&uname, "#!/bin/sh\nprintf 'a\\r\\nb\\nc\\n'\n").unwrap();
    std::fs::set_permissions(&uname, std::fs::Permissions::from_mode(0o755)).unwrap();
    for tool in [
        "hostname",
        "nproc",
        "getconf",
        "grep",
        "sed",
        "head",
        "tail",
        "cat",
        "df",
        "id",
        "whoami",
        "ip",
        "sudo",
        "tr",
        "timeout",
        "systemd-detect-virt",
        "printf",
    ] {
        std::os::unix::fs::symlink(&fail, fakes.path().join(tool)).unwrap();
    }
    let path = format!(
        "{}:{}",
        fakes.path().display(),
        std::env::var("PATH").unwrap()
    );
    let out = Command::new(sh)
        .arg("-c")
        .arg(SCRIPT)
        .env("PATH", path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let facts = check_contract(&out);
    assert_eq!(facts.arch.as_deref(), Some("a b c"), "lines flattened");
    // Read by the shell from /proc, so still there and true.
    let proc = |name: &str| {
        let text = std::fs::read_to_string(format!("/proc/sys/kernel/{name}")).unwrap();
        text.trim_end().to_string()
    };
    assert_eq!(facts.hostname, Some(proc("hostname")));
    assert_eq!(
        facts.kernel,
        Some(format!(
            "{} {} {}",
            proc("ostype"),
            proc("osrelease"),
            proc("version")
        ))
    );
    assert_eq!(facts.fqdn, None);
    assert_eq!(facts.cpu_count, None, "every way to count CPUs is broken");
    assert_eq!(facts.is_root, None, "id is broken: unknown, not guessed");
    assert!(facts.addresses.is_empty());
    // Read by the shell itself, so still there.
    assert_eq!(facts.mem_total_bytes, Some(mem_total_bytes()));
}
