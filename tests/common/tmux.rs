//! A tmux server of a test's own, to drive a program through a real
//! terminal and read the screen as an operator would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{require_tool, stderr};

/// Killed on drop.
pub struct Tmux {
    bin: PathBuf,
    socket: String,
}

impl Tmux {
    /// A server named after `tag` with one detached session `t` of
    /// `cols` x `rows` running `sh`.
    pub fn start(tag: &str, cols: u16, rows: u16) -> Self {
        let tmux = Tmux {
            bin: require_tool("tmux"),
            socket: format!("{tag}-{}", std::process::id()),
        };
        let (cols, rows) = (cols.to_string(), rows.to_string());
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            &cols,
            "-y",
            &rows,
            "sh",
        ]);
        tmux
    }

    /// Types `fleetctl ARGS` into the session's shell, with `env`'s config
    /// and data dir.
    pub fn launch(&self, env: &super::Env, args: &str) {
        let command = format!(
            "FLEETCTL_CONFIG={} FLEETCTL_DATA_DIR={} {} {args}",
            quote(&env.config_file()),
            quote(&env.data_dir()),
            quote(Path::new(env!("CARGO_BIN_EXE_fleetctl"))),
        );
        self.run(&["send-keys", "-t", "t", &command, "Enter"]);
    }

    /// Types `text` one key at a time, as a person would.
    pub fn type_text(&self, text: &str) {
        for c in text.chars() {
            self.run(&["send-keys", "-t", "t", "-l", &c.to_string()]);
        }
    }

    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["-L", &self.socket, "-f", "/dev/null"]);
        cmd
    }

    pub fn run(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(out.status.success(), "tmux {args:?}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `line` and Enter.
    pub fn line(&self, line: &str) {
        self.run(&["send-keys", "-t", "t", "-l", line]);
        self.run(&["send-keys", "-t", "t", "Enter"]);
    }

    /// Sends tmux key names (`C-c`, `Escape`, `Up`), one at a time.
    pub fn keys(&self, keys: &[&str]) {
        for key in keys {
            self.run(&["send-keys", "-t", "t", key]);
            // A lone Escape followed at once by a key reads as Alt+key.
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "t"])
    }

    /// Waits (bounded) until a line of the screen, trimmed, is `line`.
    pub fn wait_line(&self, line: &str) -> String {
        self.wait_until(line, Duration::from_secs(15), |s| {
            s.lines().any(|l| l.trim_end() == line)
        })
    }

    /// Waits (bounded) until the console has read `hosts` hosts from the
    /// inventory and shows them (the header counts them): the event line
    /// can be drawn a frame before the table has them.
    pub fn wait_for_fleet(&self, hosts: usize) -> String {
        let (event, header) = (
            format!("inventory: {hosts} hosts"),
            format!("│ {hosts} hosts ·"),
        );
        self.wait_until(&event, Duration::from_secs(15), |s| {
            s.contains(&event) && s.contains(&header)
        })
    }

    /// Waits (bounded) until the screen shows `text`.
    pub fn wait_for(&self, text: &str) -> String {
        self.wait_until(text, Duration::from_secs(15), |s| s.contains(text))
    }

    pub fn wait_until(&self, what: &str, limit: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {what:?}; it shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

/// `path` quoted for `sh`.
pub fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}
