//! A fleet for deploy tests: a real `fleetctl serve`, real OpenSSH hosts
//! on loopback (each in namespaces of its own, see `host`), and the
//! operator's SSH setup; `run` drives `fleetctl deploy|undeploy --jsonl`.
#![allow(dead_code, clippy::unwrap_used)]

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::host::{HOST_SSH_PORT, IsolatedHost};
use super::{Env, keygen, require_root, require_tool, stdout};

pub const SSH_PORT: u16 = HOST_SSH_PORT;
pub const AGENT_PORT: u16 = 9701;

pub type FakeHost = IsolatedHost;

pub fn stats_addr(host: &FakeHost) -> SocketAddr {
    format!("{}:{AGENT_PORT}", host.ip).parse().unwrap()
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        !s.lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
    })
}

/// A control plane, hosts, and the operator's SSH setup.
pub struct Fleet {
    pub env: Env,
    pub ssh_config: PathBuf,
    pub known_hosts: PathBuf,
    pub serve: Child,
    pub url: String,
    pub agent_binary: PathBuf,
    pub hosts: Vec<FakeHost>,
}

impl Fleet {
    pub fn new(tag: &str, ips: &[&str]) -> Self {
        Self::with_hosts(tag, ips, FakeHost::start)
    }

    /// As [`Fleet::new`], with hosts whose sshd runs no SFTP server.
    pub fn without_sftp(tag: &str, ips: &[&str]) -> Self {
        Self::with_hosts(tag, ips, FakeHost::start_without_sftp)
    }

    pub fn with_hosts(tag: &str, ips: &[&str], start: fn(&str, &str, &Path) -> FakeHost) -> Self {
        require_root();
        let env = Env::new();
        let dir = env.dir.path().to_owned();
        let key = keygen(&dir, "operator", "");
        let mut serve = env
            .cmd()
            .args(["serve", "--listen", "127.7.0.1:0", "--heartbeat", "2s"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(serve.stderr.take().unwrap()).lines();
        let url = loop {
            let line = lines.next().expect("fleetctl serve exited").unwrap();
            if let Some(rest) = line.split("agents use ").nth(1) {
                break rest.split(';').next().unwrap().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let mut ssh_config = String::new();
        let hosts: Vec<FakeHost> = ips
            .iter()
            .map(|ip| {
                let name = format!("{tag}{}", ip.rsplit('.').next().unwrap());
                let _ = write!(
                    ssh_config,
                    "Host {name}\n HostName {ip}\n Port {SSH_PORT}\n"
                );
                start(&name, ip, &key)
            })
            .collect();
        let _ = write!(
            ssh_config,
            "Host *\n User root\n IdentityFile {}\n",
            key.display()
        );
        std::fs::write(dir.join("ssh_config"), ssh_config).unwrap();
        // A debug build carries ~80 MB of debug info; hosts get it stripped.
        let agent_binary = dir.join("fleetctl-stripped");
        let strip = Command::new(require_tool("strip"))
            .args(["-o"])
            .arg(&agent_binary)
            .arg(env!("CARGO_BIN_EXE_fleetctl"))
            .status()
            .unwrap();
        assert!(strip.success());
        Self {
            ssh_config: dir.join("ssh_config"),
            known_hosts: dir.join("known_hosts"),
            env,
            serve,
            url,
            agent_binary,
            hosts,
        }
    }

    pub fn host(&self, name: &str) -> &FakeHost {
        self.hosts.iter().find(|h| h.name == name).unwrap()
    }

    pub fn names(&self) -> Vec<&str> {
        self.hosts.iter().map(|h| h.name.as_str()).collect()
    }

    /// `fleetctl deploy|undeploy ARGS --jsonl`: the exit status and the events.
    pub fn run(&self, command: &str, args: &[&str]) -> (Output, Vec<Value>) {
        let out = self.command(command, args).output().unwrap();
        let events = stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        (out, events)
    }

    /// `fleetctl deploy|undeploy ARGS --jsonl` with this fleet's settings, to spawn.
    pub fn command(&self, command: &str, args: &[&str]) -> Command {
        let mut cmd = self.env.cmd();
        cmd.arg(command)
            .arg("--ssh-config")
            .arg(&self.ssh_config)
            .arg("--known-hosts")
            .arg(&self.known_hosts)
            .args(["--host-key-policy", "accept-new", "--jsonl"]);
        if command == "deploy" {
            cmd.args(["--agent-listen", "{host}:9701"]);
            if !args.contains(&"--controller") {
                cmd.args(["--controller", &self.url]);
            }
            if !args.contains(&"--wait-timeout") {
                cmd.args(["--wait-timeout", "30s"]);
            }
            if !args.contains(&"--agent-binary") {
                cmd.arg("--agent-binary").arg(&self.agent_binary);
            }
        }
        cmd.args(args);
        cmd
    }

    pub fn stats(&self, host: &FakeHost) -> fleetctl::model::AgentStats {
        self.try_stats(host).unwrap()
    }

    pub fn try_stats(&self, host: &FakeHost) -> Result<fleetctl::model::AgentStats, String> {
        let control = self.env.data_dir().join("control");
        let ca = std::fs::read_to_string(control.join("ca.pem")).unwrap();
        let issuer = fleetctl::auth::TokenIssuer::load(&control).unwrap();
        let (token, _) = issuer
            .issue(
                fleetctl::auth::Audience::Stats,
                "test",
                Duration::from_mins(5),
            )
            .unwrap();
        let client = fleetctl::poll::StatsClient::new(&ca, &token, Duration::from_secs(5)).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(client.fetch(stats_addr(host)))
            .map_err(|e| e.to_string())
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.serve.kill();
        let _ = self.serve.wait();
    }
}

/// The final result of each host, by name.
pub fn results(events: &[Value]) -> std::collections::BTreeMap<String, Value> {
    events
        .iter()
        .filter(|e| e["event"] == "done")
        .map(|e| (e["host"].as_str().unwrap().to_string(), e.clone()))
        .collect()
}
