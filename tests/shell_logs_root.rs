//! `fleetctl shell` through a real terminal (tmux) against a real sshd in
//! namespaces of its own, and `fleetctl logs` reading a detached agent's
//! log file on such a host, following what it writes next.
#![allow(clippy::unwrap_used)]

mod common;

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::host::{HOST_SSH_PORT, IsolatedHost};
use common::tmux::{Tmux, quote};
use common::{Env, keygen, require_root, stderr, stdout};

struct OneHost {
    env: Env,
    host: IsolatedHost,
    config: PathBuf,
    known_hosts: PathBuf,
}

impl OneHost {
    fn start(name: &str, ip: &str) -> Self {
        require_root();
        let env = Env::new();
        let dir = env.dir.path().to_owned();
        let key = keygen(&dir, "client", "");
        let host = IsolatedHost::start(name, ip, &key);
        let config = dir.join("ssh_config");
        let mut text = String::new();
        let _ = write!(
            text,
            "Host {name}\n HostName {ip}\n Port {HOST_SSH_PORT}\n User root\n IdentityFile {}\n IdentitiesOnly yes\n",
            key.display()
        );
        std::fs::write(&config, text).unwrap();
        let known_hosts = dir.join("known_hosts");
        std::fs::write(
            &known_hosts,
            format!("[{ip}]:{HOST_SSH_PORT} {}", host.sshd.host_key()),
        )
        .unwrap();
        Self {
            env,
            host,
            config,
            known_hosts,
        }
    }

    /// `fleetctl SUB ... HOST` as a shell command line.
    fn command_line(&self, sub: &str, extra: &str) -> String {
        format!(
            "FLEETCTL_CONFIG={} FLEETCTL_DATA_DIR={} {} {sub} --ssh-config {} --known-hosts {} {extra} {}",
            quote(&self.env.config_file()),
            quote(&self.env.data_dir()),
            quote(std::path::Path::new(env!("CARGO_BIN_EXE_fleetctl"))),
            quote(&self.config),
            quote(&self.known_hosts),
            self.host.name
        )
    }

    fn logs(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = self.env.cmd();
        cmd.arg("logs")
            .arg("--ssh-config")
            .arg(&self.config)
            .arg("--known-hosts")
            .arg(&self.known_hosts)
            .args(args)
            .arg(&self.host.name)
            .env_remove("SSH_AUTH_SOCK");
        cmd
    }
}

#[test]
#[ignore = "needs root, sshd, tmux and namespaces (openssh-server, tmux, util-linux), installed by .ci/run"]
fn a_shell_through_a_real_terminal_gives_the_terminal_back_as_it_was() {
    let fleet = OneHost::start("shell1", "127.15.0.1");
    let dir = fleet.env.dir.path();
    let (before, after) = (dir.join("stty.before"), dir.join("stty.after"));
    let tmux = Tmux::start("fleetctl-shell", 100, 30);
    tmux.line(&format!(
        "stty -g >{}; {}; echo \"back: $?\"; stty -g >{}",
        quote(&before),
        fleet.command_line("shell", ""),
        quote(&after)
    ));
    // The remote shell, in a PTY of this terminal's size and type.
    tmux.line("echo \"on $(hostname): $((6*7))\"");
    tmux.wait_line("on shell1: 42");
    tmux.line("stty size; echo \"term=$TERM\"");
    tmux.wait_line("30 100");
    let term = tmux.run(&["show-options", "-gv", "default-terminal"]);
    tmux.wait_line(&format!("term={}", term.trim()));
    // A resize reaches the remote side.
    tmux.run(&["resize-window", "-t", "t", "-x", "120", "-y", "40"]);
    std::thread::sleep(Duration::from_millis(300));
    tmux.line("stty size");
    tmux.wait_line("40 120");
    // Ctrl-C goes to the remote command, not to fleetctl.
    tmux.line("sleep 100");
    std::thread::sleep(Duration::from_millis(300));
    tmux.keys(&["C-c"]);
    tmux.line("echo \"still $((1+1))\"");
    tmux.wait_line("still 2");
    tmux.line("exit 7");
    tmux.wait_line("back: 7");
    tmux.wait_until("stty -g written", Duration::from_secs(5), |_| {
        after.exists()
    });
    std::thread::sleep(Duration::from_millis(200));
    let (before, after) = (
        std::fs::read_to_string(before).unwrap(),
        std::fs::read_to_string(after).unwrap(),
    );
    assert!(!before.trim().is_empty());
    assert_eq!(before, after, "stty shows the modes from before the shell");
    // The local shell reads lines again (cooked mode, echo on).
    tmux.line("echo \"local $((2*3))\"");
    tmux.wait_line("local 6");

    // The connection dropping (the session's sshd killed) ends the shell
    // the same way: the terminal back as it was, exit 255.
    let again = dir.join("stty.again");
    tmux.line(&format!(
        "{}; echo \"dropped: $?\"; stty -g >{}",
        fleet.command_line("shell", ""),
        quote(&again)
    ));
    tmux.line("echo \"second $((3*3))\"");
    tmux.wait_line("second 9");
    tmux.line("kill -9 $PPID");
    let screen = tmux.wait_line("dropped: 255");
    assert!(screen.contains("connection to shell1 closed"), "{screen}");
    tmux.wait_until("stty -g written", Duration::from_secs(5), |_| {
        again.exists()
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(std::fs::read_to_string(&again).unwrap(), before);
}

#[test]
#[ignore = "needs root, sshd and namespaces (openssh-server, util-linux), installed by .ci/run"]
fn logs_shows_a_detached_agent_s_last_lines_and_follows_what_it_writes() {
    let fleet = OneHost::start("logs1", "127.15.0.2");
    let out = fleet.logs(&["-n", "5"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no fleetctl agent here"),
        "{}",
        stderr(&out)
    );

    fleet.host.sh_ok(
        "mkdir -p /var/lib/fleetctl && for n in 1 2 3 4 5; do echo \"line $n\"; done >/var/lib/fleetctl/agent.log \
         && printf 'evil \\033]0;PWNED\\007\\n' >>/var/lib/fleetctl/agent.log",
    );
    let out = fleet.logs(&["-n", "2"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "line 5\nevil \\x1b]0;PWNED\\x07\n");

    let mut follow = fleet
        .logs(&["-f", "-n", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = BufReader::new(follow.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(15)).unwrap();
    assert_eq!(first, "evil \\x1b]0;PWNED\\x07");
    fleet
        .host
        .sh_ok("echo 'written after the pane opened' >>/var/lib/fleetctl/agent.log");
    let next = rx.recv_timeout(Duration::from_secs(15)).unwrap();
    assert_eq!(next, "written after the pane opened");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(follow.id()).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = follow.wait().unwrap();
    assert_eq!(status.code(), Some(0), "Ctrl-C is how following ends");
}
