//! The console in a real terminal: tmux runs `fleetctl tui` over an
//! inventory made by a real scan, keys go in, `capture-pane` shows what an
//! operator would see, and after `q` the shell is usable again.
#![allow(clippy::unwrap_used)]

mod common;
mod fleet;

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::tmux::{Tmux, quote};
use common::{Env, stderr};

#[test]
#[ignore = "needs tmux (the interop suite in .ci/run runs it)"]
fn the_console_shows_the_fleet_takes_keys_and_gives_the_terminal_back() {
    let listener = TcpListener::bind("127.6.0.2:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let env = Env::new();
    // The embedded control plane stays on this test's block too.
    std::fs::write(env.config_file(), "[control]\nlisten = \"127.6.0.2:0\"\n").unwrap();
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

    let tmux = Tmux::start("fleetctl-test", 100, 30);
    tmux.launch(&env, "");

    // The fleet as the scan left it, read from the inventory.
    let screen = tmux.wait_for_fleet(6);
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

/// A `fleetctl agent` on `ip` (port 0) enrolling with the control plane at
/// `url`, trusting `ca_file`, with `token` as its join token.
fn start_agent(
    url: &str,
    ca_file: &Path,
    ip: &str,
    token: &str,
) -> (fleet::Proc, tempfile::TempDir) {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("join.token");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&token_file)
        .unwrap();
    std::io::Write::write_all(&mut f, token.as_bytes()).unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "controller = \"{url}\"\nca_file = \"{}\"\njoin_token_file = \"{}\"\n\
             data_dir = \"{}\"\nlisten = \"{ip}:0\"\nhostname = \"a{}.test\"\n\
             sample_interval = \"500ms\"\n",
            ca_file.display(),
            token_file.display(),
            dir.path().join("data").display(),
            ip.rsplit('.').next().unwrap(),
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleetctl"));
    cmd.env_remove("FLEETCTL_CONFIG")
        .env_remove("FLEETCTL_DATA_DIR")
        .args(["agent", "--config"])
        .arg(&config);
    let mut proc = fleet::Proc::spawn_command(cmd);
    proc.wait_log("stats API listening on", Duration::from_secs(10));
    (proc, dir)
}

/// Waits (bounded) for `ip`'s row to show a running, registered agent
/// with a CPU figure; returns the row.
fn wait_live_row(tmux: &Tmux, ip: &str, agent: &fleet::Proc) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let screen = tmux.screen();
        let row = screen.lines().find(|l| {
            l.contains(&format!("{ip} "))
                && l.contains("running")
                && l.contains("registered")
                && l.contains('%')
        });
        if let Some(row) = row {
            return row.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no live row for {ip}; the screen shows:\n{screen}\nagent log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore = "needs tmux (the interop suite in .ci/run runs it)"]
fn the_console_embeds_the_control_plane_and_shows_live_agents() {
    let port = TcpListener::bind("127.9.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = Env::new();
    std::fs::write(
        env.config_file(),
        format!(
            "[control]\nlisten = \"127.9.0.2:{port}\"\n\
             [engine]\npoll_interval = \"500ms\"\nregistry_interval = \"1s\"\n"
        ),
    )
    .unwrap();
    let tmux = Tmux::start("fleetctl-wire-test", 160, 40);
    tmux.launch(&env, "tui");
    tmux.wait_for("0 hosts");

    // The console's own control plane answers on control.listen.
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.9.0.2", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the console did not embed a control plane on 127.9.0.2:{port}:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = format!("https://127.9.0.2:{port}");
    let ca_file = env.data_dir().join("control/ca.pem");
    let agents: Vec<_> = ["127.9.2.1", "127.9.2.2"]
        .iter()
        .map(|ip| {
            let out = env.run(&["token", "join", ip]);
            assert!(out.status.success(), "{}", stderr(&out));
            let token = String::from_utf8(out.stdout).unwrap();
            start_agent(&url, &ca_file, ip, token.trim())
        })
        .collect();

    // Each agent's row: running, registered, a token with time left, live CPU.
    for ip in ["127.9.2.1", "127.9.2.2"] {
        let row = wait_live_row(&tmux, ip, &agents[0].0);
        let name = format!("a{}.test", ip.rsplit('.').next().unwrap());
        assert!(row.contains(&name), "{row}");
        assert!(row.contains("alive"), "an agent answering is alive: {row}");
        // Token time left (1 h identity): minutes, not "expired" or "-".
        assert!(
            row.contains("59m") || row.contains("58m") || row.contains("1h"),
            "{row}"
        );
    }
    // The host detail: its registration as the control plane has it.
    tmux.keys(&["g", "Enter"]);
    let screen = tmux.wait_for("registry");
    assert!(screen.contains("127.9.2.1"), "{screen}");
    assert!(
        screen.contains("ag-"),
        "the control plane's agent id: {screen}"
    );
    tmux.keys(&["Escape", "q"]);

    std::thread::sleep(Duration::from_millis(300));
    tmux.run(&["send-keys", "-t", "t", "echo shell-ok-$((6*7))", "Enter"]);
    let screen = tmux.wait_for("shell-ok-42");
    assert!(
        !screen.contains("ADDRESS"),
        "the console's screen is gone: {screen}"
    );
    // Quitting stopped the embedded control plane.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.9.0.2", port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the control plane still listens after quit"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(agents);
}

/// The lane of the timeline named `name` (`token│...`), if on screen.
fn lane<'a>(screen: &'a str, name: &str) -> Option<&'a str> {
    let head = format!("{name:>5}│");
    screen
        .lines()
        .find_map(|l| l.find(&head).map(|at| &l[at + head.len()..]))
}

/// Processes running from `dir` (the sandbox's agents), or marked with a
/// sandbox root inside it.
fn running_from(dir: &Path) -> Vec<String> {
    use std::os::unix::ffi::OsStrExt as _;
    let prefix = dir.as_os_str().as_bytes();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let marked = environ.split(|&b| b == 0).any(|var| {
            var.strip_prefix(b"FLEETCTL_SANDBOX=")
                .is_some_and(|root| root.starts_with(prefix))
        });
        if exe.starts_with(dir) || marked {
            found.push(format!("{pid} {}", exe.display()));
        }
    }
    found
}

/// A `fleetctl demo` in tmux, quit with `q` however the test ends (a
/// failed assertion too), so its agents stop before the temp dir goes.
struct DemoInTmux {
    tmux: Tmux,
    dir: tempfile::TempDir,
}

impl Drop for DemoInTmux {
    fn drop(&mut self) {
        for key in ["Escape", "Escape", "q"] {
            let _ = self.tmux.cmd().args(["send-keys", "-t", "t", key]).output();
            std::thread::sleep(Duration::from_millis(150));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !running_from(self.dir.path()).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
#[ignore = "needs tmux (the interop suite in .ci/run runs it)"]
fn the_demo_shows_the_cut_off_hosts_token_timeline_in_its_detail() {
    let env = Env::new();
    let demo = DemoInTmux {
        tmux: Tmux::start("fleetctl-demo-timeline", 120, 36),
        dir: tempfile::tempdir().unwrap(),
    };
    let (tmux, dir) = (&demo.tmux, &demo.dir);
    // Default roles with 8 hosts: demo-03 silent, demo-05 rejects the key,
    // demo-07 cut off from the control plane once registered.
    let command = format!(
        "TMPDIR={dir} XDG_RUNTIME_DIR={dir} FLEETCTL_CONFIG={} FLEETCTL_DATA_DIR={} {} \
         demo --hosts 8 --base 127.42.8.10",
        quote(&env.config_file()),
        quote(&env.data_dir()),
        quote(Path::new(env!("CARGO_BIN_EXE_fleetctl"))),
        dir = quote(dir.path()),
    );
    tmux.run(&["send-keys", "-t", "t", &command, "Enter"]);
    let minutes = |n: u64| Duration::from_secs(n * 60);
    tmux.wait_until("the scan prompt", minutes(1), |s| {
        s.contains("s Enter scans")
    });
    tmux.keys(&["s", "Enter"]);
    tmux.wait_until("scan done", minutes(1), |s| s.contains("scan done"));
    tmux.keys(&["*", "f"]);
    tmux.wait_until("fingerprint done", minutes(2), |s| {
        s.contains("fingerprint done")
    });
    tmux.keys(&["/"]);
    tmux.type_text("ssh:ok");
    tmux.keys(&["Enter", "*", "d"]);
    tmux.wait_for("Deploy the agent to 6 hosts?");
    tmux.keys(&["y"]);
    tmux.wait_until("deploy done", minutes(4), |s| s.contains("deploy done"));
    tmux.keys(&["Escape", "/"]);
    tmux.type_text("demo-07");
    tmux.keys(&["Enter", "Enter"]);

    // Its detail: the timeline under the charts, fed by the engine.
    let screen = tmux.wait_for("timeline");
    assert!(screen.contains("127.42.8.16 demo-07"), "{screen}");
    let screen = tmux.wait_until("the token issued on the timeline", minutes(1), |s| {
        lane(s, "token").is_some_and(|l| l.contains('●'))
    });
    for name in ["cert", "reg", "beat"] {
        assert!(lane(&screen, name).is_some(), "no {name} lane:\n{screen}");
    }
    assert!(screen.contains("-5m") && screen.contains("now"), "{screen}");
    // Cut off once registered: the registration goes lost, and the token's
    // renewal fails (expiring).
    let screen = tmux.wait_until("lost, then expiring", minutes(2), |s| {
        lane(s, "reg").is_some_and(|l| l.contains('┄'))
            && lane(s, "token").is_some_and(|l| l.contains('┅'))
    });
    let (token, reg) = (
        lane(&screen, "token").unwrap(),
        lane(&screen, "reg").unwrap(),
    );
    assert!(
        token.find('●').unwrap() < token.find('┅').unwrap(),
        "issued, then expiring: {token}"
    );
    assert!(
        reg.find('━').unwrap() < reg.find('┄').unwrap(),
        "registered, then lost: {reg}"
    );

    // A healthy host beside it: heartbeats arriving.
    tmux.keys(&["Escape", "Escape", "/"]);
    tmux.type_text("demo-02");
    tmux.keys(&["Enter", "Enter"]);
    let screen = tmux.wait_until("demo-02's heartbeats", minutes(1), |s| {
        s.contains("127.42.8.11 demo-02") && lane(s, "beat").is_some_and(|l| l.contains('•'))
    });
    assert!(
        lane(&screen, "token").is_some_and(|l| l.contains('●') && !l.contains('┅')),
        "{screen}"
    );

    tmux.keys(&["Escape", "Escape", "q"]);
    // The demo ends (it prints the fleet), and the shell runs what is typed.
    tmux.wait_until("the demo's last table", minutes(1), |s| {
        s.contains("ADDRESS") && s.contains("8 host(s)")
    });
    std::thread::sleep(Duration::from_millis(300));
    tmux.run(&["send-keys", "-t", "t", "echo shell-ok-$((6*7))", "Enter"]);
    tmux.wait_until("the shell", minutes(1), |s| s.contains("shell-ok-42"));
    assert_eq!(
        running_from(dir.path()),
        Vec::<String>::new(),
        "left running"
    );
}

#[test]
#[ignore = "needs tmux (the interop suite in .ci/run runs it)"]
fn read_only_tags_completion_and_history_in_a_real_terminal() {
    let env = Env::new();
    std::fs::write(env.config_file(), "[control]\nlisten = \"127.6.1.100:0\"\n").unwrap();
    let hosts: Vec<_> = (1..=3)
        .map(|i| {
            (
                format!("127.6.1.{i}").parse().unwrap(),
                Some(format!("web{i}")),
            )
        })
        .collect();
    env.inventory().add_listed("test", &hosts).unwrap();
    let out = env.run(&["tag", "web1", "web2", "role=web"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let tmux = Tmux::start("fleetctl-ro", 140, 30);
    tmux.launch(&env, "tui --read-only");
    // Generous: with the other consoles of this file running beside it on
    // a loaded machine, the first frame with the inventory once took >15 s.
    // The table, not the event line: the event can be drawn a frame before
    // the snapshot with the hosts.
    let screen = tmux.wait_until("the tagged hosts", Duration::from_secs(45), |s| {
        s.contains("inventory: 3 hosts") && s.contains("role=web")
    });
    assert!(screen.contains("fleetctl READ-ONLY"), "{screen}");
    assert!(screen.contains("TAGS"), "{screen}");
    assert!(screen.contains("role=web"), "{screen}");

    // Deploy is refused by key and by command; nothing reaches a host.
    tmux.keys(&["d"]);
    tmux.wait_for("read-only console: deploy is refused");
    tmux.keys(&[":"]);
    tmux.type_text("undeploy");
    tmux.keys(&["Enter"]);
    tmux.wait_for("read-only console: undeploy is refused");

    // The filter takes tags; Tab completes; the line is remembered.
    tmux.keys(&["/"]);
    tmux.type_text("tag:role=web");
    tmux.wait_for("(2 shown)");
    tmux.keys(&["Enter", "Escape", ":"]);
    tmux.type_text("so");
    tmux.keys(&["Tab"]);
    tmux.wait_for(":sort ");
    tmux.type_text("cp");
    tmux.keys(&["Tab"]);
    tmux.wait_for(":sort cpu ");
    tmux.keys(&["Enter"]);
    tmux.wait_for("CPU▲");
    tmux.keys(&["q"]);
    std::thread::sleep(Duration::from_millis(300));

    // The next run's Up finds it.
    tmux.launch(&env, "tui");
    tmux.wait_for_fleet(3);
    tmux.keys(&[":", "Up"]);
    tmux.wait_for(":sort cpu");
    tmux.keys(&["Escape", "q"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        env.inventory().deployments().unwrap().is_empty(),
        "a read-only console deployed nothing"
    );
}

#[test]
#[ignore = "needs tmux (the interop suite in .ci/run runs it)"]
fn custom_commands_run_with_the_console_suspended_and_read_only_refuses_the_dangerous() {
    let env = Env::new();
    std::fs::write(env.config_file(), "[control]\nlisten = \"127.6.2.100:0\"\n").unwrap();
    let out_file = env.dir.path().join("note.out");
    let wiped = env.dir.path().join("wiped");
    std::fs::write(
        env.dir.path().join("commands.toml"),
        format!(
            "[[command]]\nname = \"note\"\nkey = \"N\"\nscope = \"marked\"\n\
             command = 'printf \"%s|%s|%s|%s\\n\" \"$HOST\" \"$ADDR\" \"$TAGS\" \"$MARKED\" > {}; echo noted'\n\
             [[command]]\nname = \"wipe\"\nkey = \"W\"\nconfirm = true\ndangerous = true\n\
             command = 'touch {}'\n",
            out_file.display(),
            wiped.display()
        ),
    )
    .unwrap();
    let hosts: Vec<_> = (1..=2)
        .map(|i| {
            (
                format!("127.6.2.{i}").parse().unwrap(),
                Some(format!("app{i}")),
            )
        })
        .collect();
    env.inventory().add_listed("test", &hosts).unwrap();
    let out = env.run(&["tag", "app1", "role=app"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let tmux = Tmux::start("fleetctl-cc", 120, 30);
    tmux.launch(&env, "tui --read-only");
    tmux.wait_until("the 2 hosts", Duration::from_secs(45), |s| {
        s.contains("inventory: 2 hosts") && s.contains("│ 2 hosts ·")
    });
    tmux.keys(&["?"]);
    tmux.wait_for("N note (printf");
    tmux.keys(&["Escape", "W"]);
    tmux.wait_for("read-only console: wipe is dangerous, refused");
    // Marked hosts, the console suspended, Enter brings it back.
    tmux.keys(&["Space", "Space", "N"]);
    tmux.wait_for("press Enter to return to the console");
    let screen = tmux.screen();
    assert!(screen.contains("noted"), "{screen}");
    tmux.keys(&["Enter"]);
    tmux.wait_for("note ended: exit status: 0");
    assert_eq!(
        std::fs::read_to_string(&out_file).unwrap(),
        "app1|127.6.2.1|role=app|127.6.2.1 127.6.2.2\n"
    );
    tmux.keys(&["q"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!wiped.exists());

    // Not read-only: asked first, then run.
    tmux.launch(&env, "tui");
    tmux.wait_for_fleet(2);
    tmux.keys(&["W"]);
    tmux.wait_for("Run wipe on 1 host?");
    tmux.keys(&["y"]);
    tmux.wait_for("press Enter to return to the console");
    tmux.keys(&["Enter"]);
    tmux.wait_for("wipe ended");
    assert!(wiped.exists());
    tmux.keys(&["q"]);
    std::thread::sleep(Duration::from_millis(300));

    // A bad commands.toml is said by name, exit 2.
    std::fs::write(
        env.dir.path().join("commands.toml"),
        "[[command]]\nname = \"scan\"\ncommand = \"x\"\n",
    )
    .unwrap();
    let mut cmd = env.cmd();
    let out = cmd.arg("tui").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("commands.toml"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the name is taken"),
        "{}",
        stderr(&out)
    );
}
