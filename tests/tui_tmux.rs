//! The console in a real terminal: tmux runs `fleetctl tui` over an
//! inventory made by a real scan, keys go in, `capture-pane` shows what an
//! operator would see, and after `q` the shell is usable again.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Env, require_tool, stderr};

/// A tmux server of the test's own, killed on drop.
struct Tmux {
    bin: PathBuf,
    socket: String,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["-L", &self.socket, "-f", "/dev/null"]);
        cmd
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(out.status.success(), "tmux {args:?}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        for key in keys {
            self.run(&["send-keys", "-t", "t", key]);
            // A lone Escape followed at once by a key reads as Alt+key.
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "t"])
    }

    /// Waits (bounded) until the screen shows `text`.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {text:?}; it shows:\n{screen}"
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

fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

#[test]
#[ignore = "needs tmux (the interop suite in .ci/run runs it)"]
fn the_console_shows_the_fleet_takes_keys_and_gives_the_terminal_back() {
    let bin = require_tool("tmux");
    let listener = TcpListener::bind("127.6.0.2:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let env = Env::new();
    let out = env.run(&[
        "scan",
        "127.6.0.0/29",
        "-m",
        "tcp",
        "--ports",
        &port,
        "--no-banner",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    let tmux = Tmux {
        bin,
        socket: format!("fleetctl-test-{}", std::process::id()),
    };
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "100",
        "-y",
        "30",
        "sh",
    ]);
    let command = format!(
        "FLEETCTL_CONFIG={} FLEETCTL_DATA_DIR={} {}",
        shell_quote(&env.config_file()),
        shell_quote(&env.data_dir()),
        shell_quote(Path::new(env!("CARGO_BIN_EXE_fleetctl"))),
    );
    tmux.run(&["send-keys", "-t", "t", &command, "Enter"]);

    // The fleet as the scan left it, read from the inventory.
    let screen = tmux.wait_for("inventory: 6 hosts");
    assert!(screen.contains("ADDRESS"), "{screen}");
    for host in 1..=6 {
        assert!(screen.contains(&format!("127.6.0.{host} ")), "{screen}");
    }
    assert!(screen.contains("6 hosts · 6 alive"), "{screen}");

    tmux.keys(&["j", "/"]);
    for c in "127.6.0.5".chars() {
        tmux.run(&["send-keys", "-t", "t", "-l", &c.to_string()]);
    }
    let screen = tmux.wait_for("(1 shown)");
    assert!(!screen.contains("127.6.0.1 "), "{screen}");
    tmux.keys(&["Enter", "Escape"]);
    tmux.wait_for("127.6.0.1 ");

    tmux.keys(&["?"]);
    let screen = tmux.wait_for("help · Esc closes");
    assert!(screen.contains("fingerprint over SSH"), "{screen}");
    tmux.keys(&["Escape", "q"]);

    // Back at a working shell: it runs what is typed.
    std::thread::sleep(Duration::from_millis(300));
    tmux.run(&["send-keys", "-t", "t", "echo shell-ok-$((6*7))", "Enter"]);
    let screen = tmux.wait_for("shell-ok-42");
    assert!(
        !screen.contains("ADDRESS"),
        "the console's screen is gone: {screen}"
    );
    assert!(
        env.data_dir().join("log/tui.log").exists(),
        "the console logs to a file"
    );
}
