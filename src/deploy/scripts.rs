//! The POSIX `sh` snippets deploy runs on hosts. Each is one round trip;
//! values reach them as single-quoted variables, never spliced unquoted.
//! They stick to what busybox also has (no `mv -T`, no `readlink -f`).

use super::layout::{InstallScope, Layout, UNIT, sh_quote, sh_vars};
use std::fmt::Write as _;

/// What the host is: user, name, OS, machine, service managers (the
/// system's, usable as root; the user's own), checksum tool, C library
/// (`glibc X.Y`, `musl`, or empty when nothing said). Also leaves them in
/// shell variables (`uid os arch sds sdu sha libc`) for what follows.
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
# The C library: glibc says its version to getconf; musl's ldd names it.
libc=$(getconf GNU_LIBC_VERSION 2>/dev/null) || libc=
case "$libc" in "glibc "*) ;; *) libc= ;; esac
if [ -z "$libc" ]; then
  v=$(ldd --version 2>&1 | head -n 2)
  case "$v" in
    *musl*) libc=musl ;;
    *GLIBC*|*"GNU libc"*) libc="glibc $(printf '%s\n' "$v" | sed -n '1s/.*[[:space:]]//p')" ;;
  esac
  for f in /lib/ld-musl-*.so.1; do [ -z "$libc" ] && [ -e "$f" ] && libc=musl; done
fi
case "${libc#glibc }" in *[!0-9.]*|'') [ "$libc" = musl ] || libc= ;; esac
echo "uid=$uid"
echo "home=$HOME"
echo "name=$(hostname 2>/dev/null || uname -n)"
echo "os=$os"
echo "arch=$arch"
echo "systemd_system=$sds"
echo "systemd_user=$sdu"
echo "sha256=$sha"
echo "libc=$libc"
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
/// `tool` runs as a command line: one of deploy's own
/// ([`super::reported::ShaTool::command`]), never what a host said.
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

/// Removes the install directories if they are empty (what inspect
/// prepared for a build it then refused); anything in them stays.
#[must_use]
pub fn remove_empty_dirs(layout: &Layout) -> String {
    let mut s = vars(layout, &[]);
    s.push_str("rmdir \"$S\" 2>/dev/null; rmdir \"$L\" 2>/dev/null; true\n");
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

/// Succeeds only when the process the service manager (or the pid file)
/// names is alive and runs the build `sha256`: proof that what answered
/// `/healthz` is the agent just started, not an older one still holding
/// the port.
#[must_use]
pub fn runs_build(layout: &Layout, sha256: &str, systemd: bool) -> String {
    let binary = layout.binary(sha256);
    let mut s = vars(layout, &[("BIN", &binary)]);
    s.push_str(AGENT_ALIVE);
    if systemd {
        s.push_str(
            "pid=$($SYSTEMCTL show -p MainPID \"$UNIT\" 2>/dev/null); pid=${pid#MainPID=}\n",
        );
    } else {
        s.push_str("pid=$(cat \"$S/agent.pid\" 2>/dev/null)\n");
    }
    s.push_str(
        r#"if ! agent_alive "$pid"; then
  echo "the agent this deploy started is not running: it exited after it started" >&2
  exit 1
fi
if ! tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qxF "$BIN"; then
  echo "the agent process $pid does not run $BIN" >&2
  exit 1
fi
"#,
    );
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

/// Writes the bytes on stdin to `path`, as a file created with `mode`
/// from the start (with a umask, in a fresh file: an existing one is
/// removed first and `set -C` refuses to write through anything put in
/// its place), and refuses a short write. How files reach hosts that run
/// no SFTP server.
#[must_use]
pub fn receive_file(path: &str, mode: u32, len: usize) -> String {
    // `cat >` creates files 0666 less the umask; execute bits come after.
    let created = mode & 0o666;
    let mut s = sh_vars(&[("P", path)]);
    let _ = writeln!(s, "umask {:03o}", 0o777 & !created);
    s.push_str(
        r#"rm -f "$P" || exit 1
set -C
cat >"$P" || { rm -f "$P"; exit 1; }
n=$(wc -c <"$P")
"#,
    );
    let _ = writeln!(
        s,
        r#"if [ $n -ne {len} ]; then
  rm -f "$P"
  echo "$P: $n of {len} bytes arrived" >&2
  exit 1
fi"#
    );
    if mode != created {
        let _ = writeln!(s, r#"chmod {mode:o} "$P""#);
    }
    s
}

/// `s` as one systemd word: quoted, with `\`, `"` and control
/// characters escaped, and `%` (specifiers) and `$` (variables) doubled.
fn systemd_word(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The systemd unit that runs the build at `binary`. Paths are quoted for
/// systemd; a state directory that would need more than `%` doubled
/// (WorkingDirectory takes no quotes) is refused: deploy checks a
/// host's home before it gets here.
pub fn unit_text(layout: &Layout, binary: &str) -> Result<String, String> {
    let wanted_by = if layout.root {
        "multi-user.target"
    } else {
        "default.target"
    };
    let state = &layout.state_dir;
    if state
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return Err(format!(
            "{:?} cannot be a systemd WorkingDirectory",
            crate::model::text::escape(state)
        ));
    }
    Ok(format!(
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
        binary = systemd_word(binary),
        config = systemd_word(&layout.config()),
        state = state.replace('%', "%%"),
    ))
}

#[cfg(test)]
#[path = "scripts_tests.rs"]
mod tests;
