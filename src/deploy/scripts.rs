//! The POSIX `sh` snippets deploy runs on hosts. Each is one round trip;
//! values reach them as single-quoted variables, never spliced unquoted.
//! They stick to what busybox also has (no `mv -T`, no `readlink -f`).

use super::layout::{InstallScope, Layout, UNIT, sh_quote, sh_vars};
use std::fmt::Write as _;

/// What the host is: user, name, OS, machine, service managers (the
/// system's, usable as root; the user's own), checksum tool. Also leaves
/// them in shell variables (`uid os arch sds sdu sha`) for what follows.
pub const FACTS: &str = r#"uid=$(id -u)
set -- $(uname -sm)
os=$1 arch=$2
sds=0 sdu=0
if command -v systemctl >/dev/null 2>&1; then
  [ "$uid" = 0 ] && [ -d /run/systemd/system ] && sds=1
  [ -n "$XDG_RUNTIME_DIR" ] && [ -S "$XDG_RUNTIME_DIR/systemd/private" ] && sdu=1
fi
sha=
if command -v sha256sum >/dev/null 2>&1; then sha=sha256sum
elif command -v busybox >/dev/null 2>&1 && busybox sha256sum </dev/null >/dev/null 2>&1; then sha="busybox sha256sum"
fi
echo "uid=$uid"
echo "home=$HOME"
echo "name=$(hostname 2>/dev/null || uname -n)"
echo "os=$os"
echo "arch=$arch"
echo "systemd_system=$sds"
echo "systemd_user=$sdu"
echo "sha256=$sha"
"#;

/// One round trip before anything is written: [`FACTS`], what is
/// installed (as [`state`]), and, when the host can run the build
/// (`os` Linux, `arch` one of `fits`, a checksum tool present), the
/// directories made and proven writable; a failure there is reported as
/// `prepare_error=...`, with the file system's own words.
///
/// `scope` picks the layout as [`InstallScope::layout`] does, and with it
/// the service manager (`sd`): the system's for a system-wide install, the
/// user's own otherwise.
#[must_use]
pub fn inspect(sha256: &str, fits: &[&str], scope: InstallScope) -> String {
    let root = Layout::new(true, "");
    let user = Layout::new(false, "$HOME");
    let mut s = String::from(FACTS);
    let system_wide = match scope {
        InstallScope::Auto => "[ \"$uid\" = 0 ]",
        InstallScope::User => "false",
        InstallScope::System => "true",
    };
    let _ = writeln!(
        s,
        "if {system_wide}; then\nsd=$sds\n{}else\nsd=$sdu\n{}fi",
        vars(&root, &[("BIN", &root.binary(sha256))]),
        vars(&user, &[("BIN", &user.binary(sha256))]),
    );
    s.push_str(AGENT_ALIVE);
    s.push_str(STATE_BODY);
    s.push_str(
        r#"if [ "$sd" = 1 ]; then
  $SYSTEMCTL is-active --quiet "$UNIT" 2>/dev/null && echo running=1
else
  pid=$(cat "$S/agent.pid" 2>/dev/null) && agent_alive "$pid" && echo "running=$pid"
fi
fit=0
"#,
    );
    let _ = writeln!(
        s,
        "[ \"$os\" = Linux ] && [ -n \"$sha\" ] && case \"$arch\" in {}) fit=1;; esac",
        if fits.is_empty() {
            "''".to_string()
        } else {
            fits.join("|")
        }
    );
    s.push_str(
        r#"if [ "$fit" = 1 ]; then
  err=$( { umask 077; mkdir -p "$S" && chmod 700 "$S" && umask 022 && mkdir -p "$L" &&
          t="$L/.fleetctl-write-test.$$" && touch "$t" && rm -f "$t"; } 2>&1 ) ||
    echo "prepare_error=$(printf '%s' "$err" | tr '\n' ' ')"
fi
true
"#,
    );
    s
}

const STATE_BODY: &str = r#"[ -r "$S/current" ] && echo "current=$(cat "$S/current")"
[ -f "$BIN" ] && echo have=1
[ -e "$S/agent.toml" ] && echo configured=1
"#;

/// Is a process alive (not a zombie) and one of our agents?
const AGENT_ALIVE: &str = r#"agent_alive() {
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 1
  grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null && return 1
  grep -q fleetctl-agent- "/proc/$1/cmdline" 2>/dev/null
}
"#;

fn vars(layout: &Layout, extra: &[(&str, &str)]) -> String {
    let unit_file = layout.unit_file();
    let mut all = vec![
        ("L", layout.lib_dir.as_str()),
        ("S", layout.state_dir.as_str()),
        ("UNIT", UNIT),
        ("UNIT_FILE", unit_file.as_str()),
    ];
    all.extend_from_slice(extra);
    let mut out = sh_vars(&all);
    let _ = writeln!(out, "SYSTEMCTL={}", sh_quote(layout.systemctl()));
    out
}

/// What [`verify`] says when the sums differ.
pub const CORRUPTED: &str = "the upload was corrupted";

/// Checks the upload's sha256 on the host, then renames it into place.
#[must_use]
pub fn verify(layout: &Layout, sha256: &str, tool: &str) -> String {
    let temp = layout.upload_temp(sha256);
    let binary = layout.binary(sha256);
    let mut s = vars(
        layout,
        &[("TMP", &temp), ("BIN", &binary), ("WANT", sha256)],
    );
    let _ = writeln!(s, "got=$({tool} <\"$TMP\") || exit 1");
    s.push_str(
        r#"set -- $got
if [ "$1" = "$WANT" ]; then
  chmod 755 "$TMP" && mv -f "$TMP" "$BIN"
else
  rm -f "$TMP"
  echo "the copy on the host has sha256 $1, expected $WANT: the upload was corrupted" >&2
  exit 3
fi
"#,
    );
    s
}

/// The files `configure` stages as `$S/.NAME.new`; `unit` goes to the unit
/// directory, the rest stay in the state directory.
pub const STAGED: [&str; 4] = ["agent.toml", "ca.pem", "join.token", "unit"];

/// Where a staged file goes.
fn destination(name: &str) -> String {
    if name == "unit" {
        "\"$UNIT_FILE\"".to_string()
    } else {
        format!("\"$S\"/{}", sh_quote(name))
    }
}

/// Moves the staged files into place, keeping what they replace as
/// `.NAME.prev` so a rollback can put it back.
#[must_use]
pub fn install_config(layout: &Layout) -> String {
    let mut s = vars(layout, &[]);
    for name in STAGED {
        let (staged, prev, dest) = (
            sh_quote(&format!(".{name}.new")),
            sh_quote(&format!(".{name}.prev")),
            destination(name),
        );
        // Only the unit lives outside the state directory, which exists.
        let mkdir = if name == "unit" {
            "mkdir -p \"$(dirname \"$UNIT_FILE\")\" && "
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "if [ -e \"$S\"/{staged} ]; then\n  [ -e {dest} ] && cp -p {dest} \"$S\"/{prev}\n  \
             {mkdir}mv -f \"$S\"/{staged} {dest} || exit 1\nfi"
        );
    }
    s
}

/// Puts back what [`install_config`] replaced (a file that was not there
/// before is removed), and drops what is still staged.
#[must_use]
pub fn restore_config(layout: &Layout) -> String {
    let mut s = vars(layout, &[]);
    for name in STAGED {
        let (prev, dest) = (sh_quote(&format!(".{name}.prev")), destination(name));
        let _ = writeln!(
            s,
            "if [ -e \"$S\"/{prev} ]; then mv -f \"$S\"/{prev} {dest}; else rm -f {dest}; fi"
        );
    }
    s.push_str(&discard_staged(layout));
    s
}

/// Removes staged and kept-back files (after success, or with a rollback).
#[must_use]
pub fn discard_staged(layout: &Layout) -> String {
    let mut s = vars(layout, &[]);
    s.push_str("rm -f \"$S\"/.*.new \"$S\"/.*.prev\n");
    s
}

/// Prints a line for each thing of ours on the host (nothing if clean).
#[must_use]
pub fn present(layout: &Layout) -> String {
    let mut s = vars(layout, &[]);
    s.push_str(
        r#"[ -e "$S" ] && echo "$S"
[ -e "$UNIT_FILE" ] && echo "$UNIT_FILE"
for f in "$L"/fleetctl-agent-* "$L"/.fleetctl-agent-*; do [ -e "$f" ] && echo "$f"; done
true
"#,
    );
    s
}

/// Stops the agent that runs now, if any, and waits for it to go.
#[must_use]
pub fn stop(layout: &Layout, systemd: bool) -> String {
    let mut s = vars(layout, &[]);
    if systemd {
        s.push_str("$SYSTEMCTL stop \"$UNIT\" 2>/dev/null\n");
    } else {
        s.push_str(AGENT_ALIVE);
        s.push_str(
            r#"pid=$(cat "$S/agent.pid" 2>/dev/null)
if agent_alive "$pid"; then
  kill -TERM "$pid"
  i=0
  while agent_alive "$pid" && [ $i -lt 100 ]; do sleep 0.1 2>/dev/null || sleep 1; i=$((i+1)); done
  agent_alive "$pid" && kill -KILL "$pid"
fi
rm -f "$S/agent.pid"
"#,
        );
    }
    s.push_str("true\n");
    s
}

/// Starts the build `sha256` and records it as the one in use. Without
/// systemd it is a detached process in a session of its own (it outlives
/// the SSH session), with a clean environment and its output in the log.
#[must_use]
pub fn start(layout: &Layout, sha256: &str, systemd: bool) -> String {
    let binary = layout.binary(sha256);
    let mut s = vars(layout, &[("BIN", &binary), ("SHA", sha256)]);
    s.push_str(
        r#"umask 077
cd "$S" || exit 1
printf '%s\n' "$SHA" >"$S/.current.new" && mv -f "$S/.current.new" "$S/current" || exit 1
"#,
    );
    if systemd {
        s.push_str(
            r#"$SYSTEMCTL daemon-reload || exit 1
$SYSTEMCTL enable "$UNIT" 2>/dev/null || exit 1
$SYSTEMCTL restart "$UNIT" || exit 1
"#,
        );
        if !layout.root {
            // A user's manager (and its units) stop at logout without lingering.
            s.push_str("loginctl enable-linger \"$(id -un)\" 2>/dev/null\ntrue\n");
        }
    } else {
        s.push_str(
            r#"s=
command -v setsid >/dev/null 2>&1 && s=setsid
env -i PATH="$PATH" HOME="$HOME" $s "$BIN" agent --config "$S/agent.toml" </dev/null >>"$S/agent.log" 2>&1 &
echo $! >"$S/.agent.pid.new" && mv -f "$S/.agent.pid.new" "$S/agent.pid"
"#,
        );
    }
    s
}

/// The agent's last log lines, for error messages.
#[must_use]
pub fn log_tail(layout: &Layout, systemd: bool, lines: u32) -> String {
    let mut s = vars(layout, &[]);
    if systemd {
        let user = if layout.root { "" } else { "--user " };
        let _ = writeln!(
            s,
            "journalctl {user}-u \"$UNIT\" -n {lines} --no-pager -o cat 2>&1"
        );
    } else {
        let _ = writeln!(s, "tail -n {lines} \"$S/agent.log\" 2>&1");
    }
    s.push_str("true\n");
    s
}

/// Removes what deploy wrote: the unit, the state directory, and every
/// binary but `keep` (a verified build kept so a re-run can resume).
#[must_use]
pub fn remove(layout: &Layout, systemd: bool, keep: Option<&str>) -> String {
    let keep = keep.map(|sha| layout.binary(sha)).unwrap_or_default();
    let mut s = stop(layout, systemd);
    s.push_str(&sh_vars(&[("KEEP", &keep)]));
    if systemd {
        s.push_str(
            r#"$SYSTEMCTL disable "$UNIT" 2>/dev/null
rm -f "$UNIT_FILE"
$SYSTEMCTL daemon-reload 2>/dev/null
"#,
        );
    }
    s.push_str(
        r#"if [ -d "$S" ]; then find "$S" -mindepth 1 -delete || exit 1; rmdir "$S" 2>/dev/null; fi
for f in "$L"/fleetctl-agent-* "$L"/.fleetctl-agent-*; do
  [ -e "$f" ] && [ "$f" != "$KEEP" ] && { rm -f "$f" || exit 1; }
done
[ -d "$L" ] && rmdir "$L" 2>/dev/null
true
"#,
    );
    s
}

/// The systemd unit that runs the build at `binary`.
#[must_use]
pub fn unit_text(layout: &Layout, binary: &str) -> String {
    let wanted_by = if layout.root {
        "multi-user.target"
    } else {
        "default.target"
    };
    format!(
        "# Written by fleetctl deploy; `fleetctl undeploy` removes it.\n\
         [Unit]\n\
         Description=fleetctl agent\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         ExecStart={binary} agent --config {config}\n\
         WorkingDirectory={state}\n\
         UMask=0077\n\
         Restart=on-failure\n\
         RestartSec=2s\n\
         \n\
         [Install]\n\
         WantedBy={wanted_by}\n",
        config = layout.config(),
        state = layout.state_dir,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make_dirs(layout: &Layout) {
        std::fs::create_dir_all(&layout.state_dir).unwrap();
        std::fs::create_dir_all(&layout.lib_dir).unwrap();
    }

    #[test]
    fn system_unit_restarts_on_failure_and_runs_the_versioned_binary() {
        let root = Layout::new(true, "/root");
        let unit = unit_text(&root, &root.binary("ab".repeat(32).as_str()));
        insta::assert_snapshot!(unit, @r"
        # Written by fleetctl deploy; `fleetctl undeploy` removes it.
        [Unit]
        Description=fleetctl agent
        Wants=network-online.target
        After=network-online.target

        [Service]
        ExecStart=/usr/local/lib/fleetctl/fleetctl-agent-abababababababab agent --config /var/lib/fleetctl/agent.toml
        WorkingDirectory=/var/lib/fleetctl
        UMask=0077
        Restart=on-failure
        RestartSec=2s

        [Install]
        WantedBy=multi-user.target
        ");
    }

    #[test]
    fn user_unit_is_wanted_by_the_user_manager() {
        let user = Layout::new(false, "/home/ann");
        let unit = unit_text(&user, &user.binary("cd".repeat(32).as_str()));
        assert!(unit.contains("WantedBy=default.target\n"), "{unit}");
        assert!(unit.contains(
            "ExecStart=/home/ann/.local/lib/fleetctl/fleetctl-agent-cdcdcdcdcdcdcdcd agent --config /home/ann/.local/state/fleetctl/agent.toml\n"
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
                remove(&layout, systemd, Some(&sha)),
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
        assert!(sh(&stop(&layout, false)).status.success());
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
}
