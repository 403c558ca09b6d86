//! The console through a real terminal (tmux) over a real sshd host in
//! namespaces of its own: `S` opens a shell on the selected host and the
//! fleet view comes back as it was; `!` runs a command there, asked
//! first, its results grouped, recorded in the audit trail.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::path::Path;

use common::host::{HOST_SSH_PORT, IsolatedHost};
use common::tmux::{Tmux, quote};
use common::{Env, keygen, require_root, stderr, stdout};

#[test]
#[ignore = "needs root, sshd, tmux and namespaces (openssh-server, tmux, util-linux), installed by .ci/run"]
fn shell_and_run_from_the_console_come_back_to_the_same_fleet_view() {
    require_root();
    let env = Env::new();
    let dir = env.dir.path();
    let key = keygen(dir, "client", "");
    // 127.16.0.1 answers on the port but runs no SSH; .2 is the host.
    let decoy = TcpListener::bind(("127.16.0.1", HOST_SSH_PORT)).unwrap();
    let host = IsolatedHost::start("console2", "127.16.0.2", &key);
    let ssh_config = dir.join("ssh_config");
    std::fs::write(
        &ssh_config,
        format!(
            "Host 127.16.0.*\n Port {HOST_SSH_PORT}\n User root\n IdentityFile {}\n IdentitiesOnly yes\n",
            key.display()
        ),
    )
    .unwrap();
    let known_hosts = dir.join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("[127.16.0.2]:{HOST_SSH_PORT} {}", host.sshd.host_key()),
    )
    .unwrap();
    std::fs::write(
        env.config_file(),
        format!(
            "[control]\nlisten = \"127.16.0.9:0\"\n[ssh]\nssh_config = {:?}\nknown_hosts = {:?}\n",
            ssh_config.display().to_string(),
            known_hosts.display().to_string()
        ),
    )
    .unwrap();
    let port = HOST_SSH_PORT.to_string();
    let out = env.run(&[
        "scan",
        "127.16.0.1-2",
        "-m",
        "tcp",
        "--ports",
        &port,
        "--no-banner",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    let tmux = Tmux::start("fleetctl-console-run", 110, 30);
    tmux.line(&format!(
        "FLEETCTL_CONFIG={} FLEETCTL_DATA_DIR={} {} tui; echo \"console: $?\"",
        quote(&env.config_file()),
        quote(&env.data_dir()),
        quote(Path::new(env!("CARGO_BIN_EXE_fleetctl"))),
    ));
    tmux.wait_for_fleet(2);
    tmux.keys(&["j", "S"]);
    // The console's screen is put away; the host's shell is on the terminal.
    tmux.line("echo \"on $(hostname): $((6*7))\"");
    let screen = tmux.wait_line("on console2: 42");
    assert!(
        !screen.contains("ADDRESS"),
        "the console is suspended: {screen}"
    );
    tmux.line("exit");
    let back = tmux.wait_for("shell on 127.16.0.2: exited 0");
    assert!(back.contains("ADDRESS"), "{back}");
    assert!(back.contains("127.16.0.1 "), "{back}");
    // The same host is selected: its detail opens.
    tmux.keys(&["Enter"]);
    tmux.wait_until(
        "the detail of 127.16.0.2",
        std::time::Duration::from_secs(5),
        |s| s.contains("host events") && s.contains("127.16.0.2"),
    );
    tmux.keys(&["Escape"]);

    // `!`: asked first with the host, then the results view.
    tmux.keys(&["!"]);
    tmux.run(&["send-keys", "-t", "t", "-l", "hostname; exit 3"]);
    tmux.keys(&["Enter"]);
    let asking = tmux.wait_for("Run on 1 host?");
    assert!(asking.contains("$ hostname; exit 3"), "{asking}");
    assert!(asking.contains("127.16.0.2"), "{asking}");
    tmux.keys(&["y"]);
    let results = tmux.wait_for("1 host: 0 ok, 1 exit 3");
    assert!(results.contains("127.16.0.2"), "{results}");
    assert!(results.contains("console2"), "{results}");
    tmux.keys(&["Enter"]);
    tmux.wait_for("127.16.0.2 (1) exit 3");
    tmux.keys(&["Escape", "Escape"]);

    // `L` in the detail follows the agent's log: a line written after the
    // pane opened shows up.
    host.sh_ok("mkdir -p /var/lib/fleetctl && echo 'agent: started' >/var/lib/fleetctl/agent.log");
    tmux.keys(&["Enter", "L"]);
    tmux.wait_for("agent: started");
    tmux.wait_for("agent log · following");
    host.sh_ok("echo 'agent: written after the pane opened' >>/var/lib/fleetctl/agent.log");
    tmux.wait_for("agent: written after the pane opened");
    // The run shows in the host's events once the pane is closed.
    tmux.keys(&["L"]);
    tmux.wait_for("ran `hostname; exit 3`: exit 3");
    tmux.keys(&["Escape", "q"]);
    tmux.wait_line("console: 0");
    drop(decoy);

    // The run is in the audit trail, and the prompt's history was kept.
    let out = env.run(&["history", "-o", "json"]);
    let runs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs.len(), 1, "{}", stdout(&out));
    assert_eq!(runs[0]["command"], "hostname; exit 3");
    assert_eq!(runs[0]["results"][0]["exit"], 3);
    let history = std::fs::read_to_string(env.data_dir().join("run_history")).unwrap();
    assert_eq!(history, "hostname; exit 3\n");
}
