//! Real processes for the agent tests: `fleetctl serve` and `fleetctl
//! agent`, each with its own files in a temp dir and its stderr captured
//! (for failure messages and the secret-in-logs checks). Agents listen on
//! 127.5.0.x, port 0; they say where in their log.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleetctl::model::stats::AgentStats;
use fleetctl::poll::StatsClient;

/// Polls `f` until it returns `Some`, or panics with `what` after `limit`.
pub async fn wait_for<T>(limit: Duration, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A child process whose stderr is collected.
pub struct Proc {
    child: Child,
    pub log: Arc<Mutex<String>>,
}

impl Proc {
    pub fn spawn_command(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Self { child, log }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (bounded) for a log line containing `needle`; returns it.
    pub fn wait_log(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.log().lines().find(|l| l.contains(needle)) {
                return line.to_owned();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "exited ({status}) before logging {needle:?}:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log after {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits (bounded) for a clean exit; returns its status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("did not stop within 10s of SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fleetctl() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleetctl"));
    cmd.env_remove("FLEETCTL_CONFIG")
        .env_remove("FLEETCTL_DATA_DIR")
        .env("RUST_LOG", "debug");
    cmd
}

/// What replicas share of `<data_dir>/control/` (README, "More than one
/// control plane"): never `server.key`/`server.pem`, each has its own.
pub const SHARED_CONTROL_FILES: [&str; 7] = [
    "ca.key",
    "ca.pem",
    "control-ca.key",
    "control-ca.pem",
    "token.key",
    "token.next.key",
    "token-keys.json",
];

/// `fleetctl serve` on 127.5.0.1 (or another address), port 0, with its
/// data in a temp dir.
pub struct Control {
    pub dir: tempfile::TempDir,
    pub proc: Option<Proc>,
    pub url: String,
    /// The address it listens on.
    pub ip: String,
    /// Logs of earlier runs (before a restart).
    pub old_logs: String,
}

impl Control {
    /// `settings`: more lines for the `[control]` table (lifetimes...).
    pub fn start(settings: &str) -> Self {
        Self::start_on("127.5.0.1", settings)
    }

    /// As [`Self::start`], listening on `ip`.
    pub fn start_on(ip: &str, settings: &str) -> Self {
        Self::start_sharing(ip, settings, None)
    }

    /// A replica of `first`: its own data dir and server certificate, with
    /// the files replicas share copied from `first`'s control dir before it
    /// starts (the fleet CA, the control plane's intermediate, the token
    /// keys), as the README tells operators to.
    pub fn start_replica(ip: &str, settings: &str, first: &Control) -> Self {
        Self::start_sharing(ip, settings, Some(first))
    }

    fn start_sharing(ip: &str, settings: &str, keys_from: Option<&Control>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        if let Some(first) = keys_from {
            let from = first.data_dir().join("control");
            let to = dir.path().join("data/control");
            std::fs::create_dir_all(&to).unwrap();
            for name in SHARED_CONTROL_FILES {
                if from.join(name).exists() {
                    std::fs::copy(from.join(name), to.join(name)).unwrap();
                }
            }
        }
        std::fs::write(
            dir.path().join("config.toml"),
            format!("[control]\nlisten = \"{ip}:0\"\n{settings}\n"),
        )
        .unwrap();
        let mut control = Self {
            dir,
            proc: None,
            url: String::new(),
            ip: ip.to_owned(),
            old_logs: String::new(),
        };
        control.run();
        control
    }

    fn cmd(&self) -> Command {
        let mut cmd = fleetctl();
        cmd.arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .arg("--data-dir")
            .arg(self.dir.path().join("data"));
        cmd
    }

    fn run(&mut self) {
        let mut cmd = self.cmd();
        cmd.arg("serve");
        let mut proc = Proc::spawn_command(cmd);
        let line = proc.wait_log(&format!("https://{}:", self.ip), Duration::from_secs(20));
        let start = line.find("https://").unwrap();
        let url: String = line[start..]
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '"')
            .collect();
        if self.url.is_empty() {
            // Later runs keep the first URL: the config pins the port then.
            url.trim_end_matches('/').clone_into(&mut self.url);
            let port = self.url.rsplit(':').next().unwrap().to_owned();
            let config = self.dir.path().join("config.toml");
            let text = std::fs::read_to_string(&config)
                .unwrap()
                .replace(&format!("{}:0", self.ip), &format!("{}:{port}", self.ip));
            std::fs::write(config, text).unwrap();
        }
        self.proc = Some(proc);
    }

    /// Stops it (SIGTERM) and keeps its log.
    pub fn stop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            let status = proc.stop();
            assert!(status.success(), "serve exited {status}:\n{}", proc.log());
            self.old_logs.push_str(&proc.log());
        }
    }

    /// Starts it again on the same data dir and port.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Every log line it wrote, this run and earlier ones.
    pub fn all_logs(&self) -> String {
        let mut logs = self.old_logs.clone();
        if let Some(p) = &self.proc {
            logs.push_str(&p.log());
        }
        logs
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("data/control/ca.pem")
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.ca_file()).unwrap()
    }

    /// The data dir (`--data-dir`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs a `fleetctl` command against this control plane's data; its output.
    pub fn run_cli(&self, args: &[&str]) -> std::process::Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs a `fleetctl` command against this control plane; returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "fleetctl {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A join token vouching for `host` alone.
    pub fn join_token(&self, host: &str) -> String {
        self.cli(&["token", "join", host]).trim().to_owned()
    }

    /// A join token bound to `ip`, vouching for `ip` (where the console
    /// reads the agent) and `host`, as deploy mints them.
    pub fn join_for(&self, ip: &str, host: &str) -> String {
        self.cli(&["token", "join", ip, "--name", host])
            .trim()
            .to_owned()
    }

    pub fn operator_token(&self) -> String {
        self.cli(&["token", "operator"]).trim().to_owned()
    }

    /// A fleet-wide stats token (what Prometheus scrapes with).
    pub fn stats_token(&self) -> String {
        self.cli(&["token", "stats"]).trim().to_owned()
    }

    /// A client reading every agent's stats with a fleet-wide stats token.
    pub fn stats_client(&self) -> StatsClient {
        StatsClient::new(&self.ca_pem(), &self.stats_token(), Duration::from_secs(5)).unwrap()
    }
}

/// `fleetctl agent` with its config and data in a temp dir.
pub struct Agent {
    pub dir: tempfile::TempDir,
    pub proc: Proc,
    pub addr: SocketAddr,
    pub hostname: String,
}

impl Agent {
    /// Enrolled agents `node{i}.test` on `127.5.0.{i}`, one per `i`, each
    /// with a join token for its address and name.
    pub fn enrolled(control: &Control, ids: std::ops::Range<u8>) -> Vec<Self> {
        ids.map(|i| {
            let host = format!("node{i}.test");
            let ip = format!("127.5.0.{i}");
            Self::start(control, &ip, &host, Some(&control.join_for(&ip, &host)))
        })
        .collect()
    }

    /// Starts an agent on `ip` (port 0) named `hostname`, with `join_token`
    /// in its token file when given.
    pub fn start(control: &Control, ip: &str, hostname: &str, join_token: Option<&str>) -> Self {
        Self::start_with(
            std::slice::from_ref(&control.url),
            &control.ca_file(),
            ip,
            hostname,
            join_token,
        )
    }

    /// As [`Self::start`], told of every control plane in `controllers`
    /// (replicas, in the order it tries them first), trusting `ca_file`.
    pub fn start_with(
        controllers: &[String],
        ca_file: &Path,
        ip: &str,
        hostname: &str,
        join_token: Option<&str>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("agent.toml");
        let controllers: Vec<String> = controllers.iter().map(|c| format!("\"{c}\"")).collect();
        std::fs::write(
            &config,
            format!(
                "controller = [{}]\nca_file = \"{}\"\njoin_token_file = \"{}\"\n\
                 data_dir = \"{}\"\nlisten = \"{ip}:0\"\nhostname = \"{hostname}\"\n\
                 sample_interval = \"500ms\"\n",
                controllers.join(", "),
                ca_file.display(),
                dir.path().join("join.token").display(),
                dir.path().join("data").display(),
            ),
        )
        .unwrap();
        let agent_dir = dir.path().to_owned();
        if let Some(token) = join_token {
            write_token(&agent_dir.join("join.token"), token);
        }
        let (proc, addr) = Self::launch(&config);
        // Later runs keep this port, as a deployed agent's fixed port would.
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace(&format!("{ip}:0"), &addr.to_string());
        std::fs::write(&config, text).unwrap();
        Self {
            dir,
            proc,
            addr,
            hostname: hostname.to_owned(),
        }
    }

    fn launch(config: &Path) -> (Proc, SocketAddr) {
        let mut cmd = fleetctl();
        cmd.arg("agent").arg("--config").arg(config);
        let mut proc = Proc::spawn_command(cmd);
        let line = proc.wait_log("stats API listening on", Duration::from_secs(10));
        let addr = line.rsplit(' ').next().unwrap().parse().unwrap();
        (proc, addr)
    }

    /// Stops the agent (SIGTERM, which must end it cleanly) and starts it
    /// again on the same files and port; returns the old run's log.
    pub fn restart(&mut self) -> String {
        let status = self.proc.stop();
        assert!(
            status.success(),
            "agent exit {status}:\n{}",
            self.proc.log()
        );
        let old = self.proc.log();
        let (proc, addr) = Self::launch(&self.dir.path().join("agent.toml"));
        assert_eq!(addr, self.addr);
        self.proc = proc;
        old
    }

    pub fn token_file(&self) -> PathBuf {
        self.dir.path().join("join.token")
    }

    pub fn give_join_token(&self, token: &str) {
        write_token(&self.token_file(), token);
    }

    /// Waits until the agent serves stats (it has enrolled) and they
    /// satisfy `ok`.
    pub async fn wait_stats(
        &self,
        client: &StatsClient,
        limit: Duration,
        what: &str,
        ok: impl Fn(&AgentStats) -> bool,
    ) -> AgentStats {
        let mut last = None;
        let result = tokio::time::timeout(limit, async {
            loop {
                match client.fetch(self.addr).await {
                    Ok(s) if ok(&s) => return s,
                    other => last = Some(format!("{other:?}")),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        result.unwrap_or_else(|_| {
            panic!(
                "agent {}: no stats showing {what} within {limit:?}; last: {}\nagent log:\n{}",
                self.hostname,
                last.unwrap_or_default(),
                self.proc.log()
            )
        })
    }
}

fn write_token(path: &Path, token: &str) {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    std::io::Write::write_all(&mut f, token.as_bytes()).unwrap();
}

/// Waits (bounded) until `path` no longer exists.
pub fn wait_file_gone(path: &Path, limit: Duration) {
    let deadline = Instant::now() + limit;
    while path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} still exists after {limit:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
