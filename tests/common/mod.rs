//! Helpers shared by the integration tests: the binary in a private
//! environment, root checks, network namespaces and real sshd processes.
#![allow(dead_code, clippy::unwrap_used)]

pub mod deploy;
pub mod host;
pub mod tmux;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleetctl::model::HostScan;

/// The binary with its own empty config file and data dir, so a developer's
/// own settings and inventory never leak into a test.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), "").unwrap();
        Self { dir }
    }

    pub fn config_file(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleetctl"));
        cmd.env("FLEETCTL_CONFIG", self.config_file())
            .env("FLEETCTL_DATA_DIR", self.data_dir())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `fleetctl ARGS` to the end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs a scan with `-o json` and parses what it printed.
    pub fn scan_json(&self, args: &[&str]) -> Vec<HostScan> {
        let mut all = vec!["scan", "-o", "json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert!(
            out.status.success(),
            "fleetctl {all:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn inventory(&self) -> fleetctl::store::Inventory {
        fleetctl::store::Inventory::open(&self.data_dir().join("inventory.sqlite3")).unwrap()
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts that no cause in an `error: ...` message is said twice, as
/// anyhow's chain would print an error whose message already holds its
/// source ("cannot read X: No such file...: No such file...").
#[track_caller]
pub fn assert_causes_once(stderr: &str) {
    for line in stderr.lines().filter(|l| l.starts_with("error: ")) {
        let parts: Vec<&str> = line.split(": ").map(str::trim).collect();
        for (i, part) in parts.iter().enumerate() {
            assert!(
                part.len() < 6 || !parts[i + 1..].contains(part),
                "{part:?} is said twice in: {line}"
            );
        }
    }
}

/// Root-only tests (ignored by default, run by .ci/run) fail loudly without root; they never pass.
pub fn require_root() {
    let uid = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test needs root (raw sockets, network namespaces, port 22): run it as root, as .ci/run does"
    );
}

/// Fails loudly when a tool the test needs is not installed.
pub fn require_tool(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!("this test needs `{name}`: install it (.ci/run does, with apt-get)");
}

/// A network namespace of the test's own, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates the namespace with its loopback up.
    pub fn new(tag: &str) -> Self {
        require_tool("ip");
        let name = format!("fleetctl-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(ok.success(), "ip netns add {name} failed");
        let ns = Self { name };
        ns.sh("ip link set lo up");
        ns
    }

    /// Runs a shell command inside the namespace; it must succeed.
    pub fn sh(&self, script: &str) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c", script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "in {}: {script}: {}",
            self.name,
            stderr(&out)
        );
    }

    /// Loads an nftables ruleset inside the namespace.
    pub fn nft(&self, ruleset: &str) {
        require_tool("nft");
        let path = std::env::temp_dir().join(format!("{}.nft", self.name));
        std::fs::write(&path, ruleset).unwrap();
        self.sh(&format!("nft -f {}", path.display()));
        let _ = std::fs::remove_file(path);
    }

    /// `cmd` run inside the namespace (through `ip netns exec`).
    pub fn wrap(&self, cmd: &Command) -> Command {
        let mut wrapped = Command::new("ip");
        wrapped
            .args(["netns", "exec", &self.name])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (key, value) in cmd.get_envs() {
            match value {
                Some(v) => wrapped.env(key, v),
                None => wrapped.env_remove(key),
            };
        }
        wrapped.stdin(Stdio::null());
        wrapped
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A real OpenSSH server on a loopback address, with its own config and
/// host key in a temporary directory; killed on drop. Inside a namespace of
/// the test's own, port 22 is free whatever the machine runs.
pub struct Sshd {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    child: Child,
    /// What sshd logged (it runs with -e), for failure messages.
    pub log: Arc<Mutex<String>>,
}

impl Sshd {
    pub fn start(ns: Option<&Netns>, ip: &str, port: u16) -> Self {
        Self::start_with(ns, ip, port, "")
    }

    /// As [`Sshd::start`], with `extra` sshd_config lines; they come first,
    /// so they win over the defaults (sshd keeps the first value it reads).
    pub fn start_with(ns: Option<&Netns>, ip: &str, port: u16, extra: &str) -> Self {
        Self::start_wrapped(ip, port, extra, |cmd| match ns {
            Some(ns) => ns.wrap(&cmd),
            None => cmd,
        })
    }

    /// As [`Sshd::start_with`], with the sshd command wrapped by `wrap` (to
    /// run it in namespaces of the test's own, say).
    pub fn start_wrapped(
        ip: &str,
        port: u16,
        extra: &str,
        wrap: impl FnOnce(Command) -> Command,
    ) -> Self {
        Self::launch(ip, port, extra, true, wrap)
    }

    /// As [`Sshd::start_wrapped`], with no `Subsystem sftp` line: a server
    /// that runs no SFTP server, as hardened and minimal images do.
    pub fn start_wrapped_without_sftp(
        ip: &str,
        port: u16,
        wrap: impl FnOnce(Command) -> Command,
    ) -> Self {
        Self::launch(ip, port, "", false, wrap)
    }

    fn launch(
        ip: &str,
        port: u16,
        extra: &str,
        sftp: bool,
        wrap: impl FnOnce(Command) -> Command,
    ) -> Self {
        let sshd = require_tool("sshd");
        require_tool("ssh-keygen");
        std::fs::create_dir_all("/run/sshd").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("host_ed25519");
        let keygen = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(keygen.success());
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "{extra}ListenAddress {ip}:{port}\nHostKey {}\nPidFile none\nUsePAM no\n\
                 PasswordAuthentication no\nAuthorizedKeysFile {}/authorized_keys\n\
                 StrictModes no\nPermitRootLogin prohibit-password\nMaxAuthTries 10\n{}",
                key.display(),
                dir.path().display(),
                if sftp {
                    "Subsystem sftp internal-sftp\n"
                } else {
                    ""
                }
            ),
        )
        .unwrap();
        let mut cmd = Command::new(sshd);
        cmd.args(["-D", "-e", "-f"]).arg(&config);
        let mut cmd = wrap(cmd);
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // sshd -e logs "Server listening on ..." once the socket is bound.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Server listening on") {
                    let _ = ready_tx.send(());
                }
                sink.lock().unwrap().push_str(&line);
                sink.lock().unwrap().push('\n');
            }
        });
        if ready_rx.recv_timeout(Duration::from_secs(10)).is_err() {
            let _ = child.kill();
            panic!("sshd did not start on {ip}:{port}: {}", log.lock().unwrap());
        }
        let addr = SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port);
        Self {
            addr,
            dir,
            child,
            log,
        }
    }
}

impl Sshd {
    /// Lets the holder of this public key (OpenSSH one-line form) log in.
    pub fn authorize(&self, public_key: &str) {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("authorized_keys"))
            .unwrap();
        writeln!(file, "{}", public_key.trim()).unwrap();
    }

    /// The process id of sshd (the wrapper's, when it execs sshd).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's public host key, as ssh-keygen wrote it.
    pub fn host_key(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("host_ed25519.pub")).unwrap()
    }
}

/// Makes an ed25519 key pair in `dir`; returns the private key's path.
pub fn keygen(dir: &Path, name: &str, passphrase: &str) -> PathBuf {
    let path = dir.join(name);
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-C", name, "-N", passphrase, "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(ok.success(), "ssh-keygen failed");
    path
}

/// The public half written next to a key made by [`keygen`].
pub fn public_key(private: &Path) -> String {
    std::fs::read_to_string(private.with_extension("pub")).unwrap()
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway local user with a password, for password authentication;
/// removed (with its home) on drop. Needs root.
pub struct TestUser {
    pub name: String,
}

impl TestUser {
    pub fn create(tag: &str, password: &str) -> Self {
        use std::io::Write as _;
        require_tool("useradd");
        require_tool("chpasswd");
        let name = format!("fc{tag}{}", std::process::id() % 100_000);
        let _ = Command::new("userdel")
            .args(["-r", &name])
            .stderr(Stdio::null())
            .status();
        let ok = Command::new("useradd")
            .args(["-m", "-s", "/bin/sh", &name])
            .status()
            .unwrap();
        assert!(ok.success(), "useradd {name} failed");
        let user = Self { name };
        let mut chpasswd = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(chpasswd.stdin.take().unwrap(), "{}:{password}", user.name).unwrap();
        assert!(chpasswd.wait().unwrap().success(), "chpasswd failed");
        user
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel")
            .args(["-r", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// A real `ssh-agent` on its own socket, holding the keys given to
/// [`Agent::add`]; killed on drop.
pub struct Agent {
    pub socket: PathBuf,
    child: Child,
}

impl Agent {
    pub fn start(dir: &Path) -> Self {
        let agent = require_tool("ssh-agent");
        let socket = dir.join("agent.sock");
        let child = Command::new(agent)
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !socket.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "ssh-agent did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { socket, child }
    }

    pub fn add(&self, key: &Path) {
        let ok = Command::new(require_tool("ssh-add"))
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "ssh-add failed");
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
