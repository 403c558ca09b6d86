//! The agent's log, where deploy left it: the systemd journal for an agent
//! run by a unit, else the log file a detached agent appends to. Which one
//! is found on the host, as root (system-wide, then under the home) or as
//! the login user (under the home).

use std::fmt::Write as _;

use super::layout::{Layout, UNIT, sh_quote, sh_vars};

/// Exit status of [`script`] when the host has no agent deploy put there.
pub const NO_AGENT: u32 = 3;

/// A script that prints the agent's last `lines` log lines and, with
/// `follow`, keeps printing what it writes until stopped. Run by `sh`
/// whatever the login shell.
#[must_use]
pub fn script(lines: u32, follow: bool) -> String {
    let system = Layout::new(true, "/");
    let user = Layout::new(false, "$HOME");
    let (journal_follow, tail_follow) = if follow { (" -f", " -F") } else { ("", "") };
    let mut s = String::new();
    // One function per layout; each execs the reader when its agent is there.
    for (name, layout) in [("system", &system), ("user", &user)] {
        let _ = writeln!(s, "{name}() {{");
        s.push_str(&sh_vars(&[
            ("S", &layout.state_dir),
            ("UNIT_FILE", &layout.unit_file()),
        ]));
        let _ = writeln!(
            s,
            "if [ -f \"$UNIT_FILE\" ] && [ -d /run/systemd/system ] && command -v journalctl >/dev/null 2>&1; then\n\
             exec journalctl {}-u {UNIT} -n {lines} --no-pager -o cat{journal_follow}\n\
             fi\n\
             if [ -f \"$S/agent.log\" ]; then exec tail -n {lines}{tail_follow} \"$S/agent.log\"; fi\n\
             }}",
            if layout.root { "" } else { "--user " }
        );
    }
    let _ = writeln!(
        s,
        "if [ \"$(id -u)\" = 0 ]; then system; fi\nuser\n\
         echo \"no fleetctl agent here: no unit and no log under {} or $HOME/.local/state/fleetctl\" >&2\n\
         exit {NO_AGENT}",
        system.state_dir
    );
    format!("sh -c {}", sh_quote(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, home: &std::path::Path) -> std::process::Output {
        std::process::Command::new("sh")
            .args(["-c", script])
            .env("HOME", home)
            .output()
            .unwrap()
    }

    #[test]
    fn a_detached_agent_s_log_file_is_read_and_no_agent_is_said() {
        let home = tempfile::tempdir().unwrap();
        if nix::unistd::getuid().is_root()
            && std::path::Path::new("/var/lib/fleetctl/agent.log").exists()
        {
            // This machine runs a system-wide agent: its log would win.
            return;
        }
        let out = sh(&script(5, false), home.path());
        assert_eq!(out.status.code(), Some(NO_AGENT.cast_signed()));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no fleetctl agent here"));

        let state = home.path().join(".local/state/fleetctl");
        std::fs::create_dir_all(&state).unwrap();
        let log = (1..=10).fold(String::new(), |mut log, n| {
            let _ = writeln!(log, "line {n}");
            log
        });
        std::fs::write(state.join("agent.log"), log).unwrap();
        let out = sh(&script(3, false), home.path());
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "line 8\nline 9\nline 10\n"
        );
    }
}
