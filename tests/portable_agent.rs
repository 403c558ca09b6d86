//! The agent on the fleets people have: a Debian 11 host (glibc 2.31).
//!
//! The host is a root file system made by `debootstrap --variant=minbase
//! bullseye` (cached under /var/cache/fleetctl-tests between runs), served
//! by a real OpenSSH sshd whose sessions are chrooted into an overlay of it,
//! in a mount and UTS namespace of its own: everything deploy runs there
//! (`sh`, `getconf`, `ldd`, `sha256sum`, the agent itself) is Debian 11's,
//! with its glibc. Deploy's inspect refuses the ordinary build there
//! (naming both glibc versions), and the portable agent from
//! `.ci/build-agent` deploys, enrolls with `fleetctl serve` on loopback and
//! serves its stats. Addresses: 127.20.0.x.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Env, Sshd, keygen, public_key, require_root, require_tool, stderr, stdout};
use serde_json::Value;

/// Where the Debian 11 root file system is kept between runs.
const CACHE: &str = "/var/cache/fleetctl-tests";
const ROOTFS: &str = "debian11-minbase";
const MIRROR: &str = "http://deb.debian.org/debian";
/// debootstrap's time limit: it downloads about 40 MB of packages.
const DEBOOTSTRAP_LIMIT: Duration = Duration::from_mins(20);

const HOST_IP: &str = "127.20.0.10";
const HOST_NAME: &str = "deb11";
const SSH_PORT: u16 = 2222;
const AGENT_PORT: u16 = 9701;

/// The Debian 11 root file system, made once with debootstrap (under a
/// lock, into a temporary directory renamed into place when complete).
fn debian11() -> PathBuf {
    require_root();
    let debootstrap = require_tool("debootstrap");
    let cache = Path::new(CACHE);
    std::fs::create_dir_all(cache).unwrap();
    let rootfs = cache.join(ROOTFS);
    let done = rootfs.join(".fleetctl-complete");
    let lock = std::fs::File::create(cache.join(".lock")).unwrap();
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    if done.exists() {
        return rootfs;
    }
    let partial = cache.join(format!("{ROOTFS}.partial"));
    let _ = std::fs::remove_dir_all(&partial);
    let _ = std::fs::remove_dir_all(&rootfs);
    let started = Instant::now();
    let mut child = Command::new(debootstrap)
        .args(["--variant=minbase", "bullseye"])
        .arg(&partial)
        .arg(MIRROR)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEBOOTSTRAP_LIMIT {
            let _ = child.kill();
            panic!("debootstrap took over {DEBOOTSTRAP_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let out = child.wait_with_output().unwrap();
    assert!(
        status.success(),
        "debootstrap --variant=minbase bullseye failed ({MIRROR} must be reachable): {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    std::fs::write(partial.join(".fleetctl-complete"), "").unwrap();
    std::fs::rename(&partial, &rootfs).unwrap();
    eprintln!(
        "debootstrap bullseye (minbase): {:.0} s",
        started.elapsed().as_secs_f64()
    );
    rootfs
}

/// The portable agent, built (or found up to date) by `.ci/build-agent`,
/// the script the README and CI use.
fn portable_agent() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/build-agent");
    let out = Command::new(&script)
        .arg("--no-install")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        ".ci/build-agent failed; the portable agent is missing: {}",
        stderr(&out)
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(stdout(&out).trim());
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

/// The `GLIBC_x.y` versions binutils' `objdump -T` lists for `binary`.
fn objdump_glibc_versions(binary: &Path) -> Vec<String> {
    let out = Command::new(require_tool("objdump"))
        .arg("-T")
        .arg(binary)
        .output()
        .unwrap();
    assert!(out.status.success(), "objdump -T: {}", stderr(&out));
    let mut versions: Vec<String> = stdout(&out)
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|w| w.starts_with("GLIBC_") && w[6..].starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_owned)
        .collect();
    versions.sort();
    versions.dedup();
    versions
}

fn glibc(s: &str) -> fleetctl::deploy::libc::GlibcVersion {
    fleetctl::deploy::libc::GlibcVersion::parse(s).unwrap()
}

#[test]
#[ignore = "builds the portable agent with cargo-zigbuild and needs binutils (the interop suite in .ci/run runs it)"]
fn the_portable_agent_needs_nothing_above_glibc_2_17() {
    use fleetctl::deploy::libc::LibcNeed;
    let agent = portable_agent();
    let listed = objdump_glibc_versions(&agent);
    assert!(!listed.is_empty(), "objdump -T listed no GLIBC version");
    let too_new: Vec<&String> = listed
        .iter()
        .filter(|v| glibc(&v["GLIBC_".len()..]) > glibc("2.17"))
        .collect();
    assert!(
        too_new.is_empty(),
        "{} needs {too_new:?}: it would not start on glibc 2.17",
        agent.display()
    );
    // Deploy reads the same versions binutils does.
    let bytes = std::fs::read(&agent).unwrap();
    let elf = fleetctl::deploy::elf::ElfFile::parse(&bytes).unwrap();
    let mut ours: Vec<String> = elf
        .needed_versions()
        .unwrap()
        .into_iter()
        .filter(|v| v.starts_with("GLIBC_2"))
        .collect();
    ours.sort();
    assert_eq!(ours, listed);
    let newest = listed.iter().map(|v| glibc(&v[6..])).max().unwrap();
    assert_eq!(LibcNeed::read(&bytes).unwrap(), LibcNeed::Glibc(newest));
    assert_eq!(
        fleetctl::deploy::AgentBuild::of(&bytes),
        fleetctl::deploy::AgentBuild::AgentOnly
    );
    // What this machine builds by default needs more: the check can fail.
    let ordinary = std::fs::read(env!("CARGO_BIN_EXE_fleetctl")).unwrap();
    let LibcNeed::Glibc(ordinary_needs) = LibcNeed::read(&ordinary).unwrap() else {
        panic!("the ordinary build is linked against glibc");
    };
    assert!(ordinary_needs > glibc("2.17"), "{ordinary_needs}");
}

/// An sshd whose sessions run in Debian 11: chrooted into an overlay of
/// the root file system (changes go to a scratch upper layer, never into
/// the cache), with /proc and /dev mounted, in mount and UTS namespaces of
/// its own, named `deb11`.
struct Debian11Host {
    sshd: Sshd,
    /// The overlay's upper layer: what deploy wrote, seen from outside.
    scratch: tempfile::TempDir,
    /// Where the overlay is mounted inside sshd's namespace (an empty
    /// directory outside it); sshd wants every part root-owned, not
    /// writable by others, so it lives under /run.
    mountpoint: PathBuf,
}

impl Debian11Host {
    fn start(rootfs: &Path, client_key: &Path) -> Self {
        require_tool("unshare");
        require_tool("nsenter");
        let scratch = tempfile::tempdir().unwrap();
        std::fs::create_dir(scratch.path().join("upper")).unwrap();
        std::fs::create_dir(scratch.path().join("work")).unwrap();
        let mountpoint = PathBuf::from(format!("/run/fleetctl-tests/deb11-{}", std::process::id()));
        std::fs::create_dir_all(&mountpoint).unwrap();
        let setup = r#"set -e
m=$1 lower=$2 scratch=$3; shift 3
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$scratch/upper,workdir=$scratch/work" "$m"
mount -t proc proc "$m/proc"
mount --rbind /dev "$m/dev"
hostname deb11
exec "$@""#;
        let (m, lower, s) = (
            mountpoint.display().to_string(),
            rootfs.display().to_string(),
            scratch.path().display().to_string(),
        );
        let wrap = |cmd: Command| {
            let mut wrapped = Command::new("unshare");
            wrapped
                .args(["--mount", "--uts", "--propagation", "private", "--"])
                .args(["sh", "-c", setup, "sh", &m, &lower, &s])
                .arg(cmd.get_program())
                .args(cmd.get_args());
            wrapped
        };
        let sshd = Sshd::start_wrapped(HOST_IP, SSH_PORT, &format!("ChrootDirectory {m}\n"), wrap);
        sshd.authorize(&public_key(client_key));
        Self {
            sshd,
            scratch,
            mountpoint,
        }
    }

    /// Runs `script` in the host: its namespaces, chrooted into Debian 11.
    fn sh(&self, script: &str) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.sshd.pid().to_string(), "-m", "-u", "--"])
            .arg("chroot")
            .arg(&self.mountpoint)
            .args(["/bin/sh", "-c", script])
            .output()
            .unwrap()
    }

    /// Copies a file of this machine's into the host (at `to`).
    fn copy_in(&self, from: &Path, to: &str) {
        let out = Command::new("nsenter")
            .args(["-t", &self.sshd.pid().to_string(), "-m", "--"])
            .arg("cp")
            .arg(from)
            .arg(format!("{}{to}", self.mountpoint.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }

    /// The pid the deployed agent wrote, if there is one.
    fn agent_pid(&self) -> Option<u32> {
        let file = self.scratch.path().join("upper/var/lib/fleetctl/agent.pid");
        std::fs::read_to_string(file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
    }
}

impl Drop for Debian11Host {
    fn drop(&mut self) {
        // The agent deploy started outlives sshd: it must not outlive the test.
        if let Some(pid) = self.agent_pid() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        let _ = std::fs::remove_dir(&self.mountpoint);
    }
}

/// `fleetctl serve` on 127.20.0.1 and the operator's SSH setup for the host.
struct Console {
    env: Env,
    serve: Child,
    url: String,
    ssh_config: PathBuf,
}

impl Console {
    fn start(key: &Path) -> Self {
        let env = Env::new();
        let mut serve = env
            .cmd()
            .args(["serve", "--listen", "127.20.0.1:0", "--heartbeat", "2s"])
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
        let ssh_config = env.dir.path().join("ssh_config");
        std::fs::write(
            &ssh_config,
            format!(
                "Host {HOST_NAME}\n HostName {HOST_IP}\n Port {SSH_PORT}\n User root\n IdentityFile {}\n",
                key.display()
            ),
        )
        .unwrap();
        Self {
            env,
            serve,
            url,
            ssh_config,
        }
    }

    /// `fleetctl deploy|undeploy deb11 --jsonl ...`: status, stderr, events.
    fn run(&self, command: &str, args: &[&str]) -> (Output, Vec<Value>) {
        let mut cmd = self.env.cmd();
        cmd.args([command, HOST_NAME, "--jsonl", "--ssh-config"])
            .arg(&self.ssh_config)
            .arg("--known-hosts")
            .arg(self.env.dir.path().join("known_hosts"))
            .args(["--host-key-policy", "accept-new"]);
        if command == "deploy" {
            cmd.args(["--controller", &self.url, "--wait-timeout", "30s"])
                .args(["--agent-listen", &format!("{{host}}:{AGENT_PORT}")]);
        }
        let out = cmd.args(args).output().unwrap();
        let events = stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        (out, events)
    }

    fn stats(&self) -> fleetctl::model::AgentStats {
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
        let addr = format!("{HOST_IP}:{AGENT_PORT}").parse().unwrap();
        rt.block_on(client.fetch(addr)).unwrap()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.serve.kill();
        let _ = self.serve.wait();
    }
}

fn done(events: &[Value]) -> &Value {
    events
        .iter()
        .find(|e| e["event"] == "done")
        .unwrap_or_else(|| panic!("no done event: {events:?}"))
}

#[test]
#[ignore = "needs root, debootstrap (and Debian's mirror, once), sshd, unshare, nsenter and cargo-zigbuild (the interop suite in .ci/run runs it)"]
fn on_debian_11_the_ordinary_build_is_refused_and_the_portable_agent_deploys() {
    let rootfs = debian11();
    let portable = portable_agent();
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "operator", "");
    let console = Console::start(&key);
    let host = Debian11Host::start(&rootfs, &key);

    // The host is what it says: Debian 11's glibc, which the ordinary
    // build does not start on (the loader's own words).
    let facts = host.sh("getconf GNU_LIBC_VERSION; . /etc/os-release; echo $VERSION_ID");
    assert_eq!(stdout(&facts), "glibc 2.31\n11\n", "{}", stderr(&facts));
    // A debug build carries ~80 MB of debug info; the host gets it stripped.
    let ordinary = dir.path().join("fleetctl");
    let strip = Command::new(require_tool("strip"))
        .arg("-o")
        .arg(&ordinary)
        .arg(env!("CARGO_BIN_EXE_fleetctl"))
        .status()
        .unwrap();
    assert!(strip.success());
    host.copy_in(&ordinary, "/tmp/fleetctl");
    let tried = host.sh("/tmp/fleetctl --version");
    assert!(!tried.status.success());
    assert!(
        stderr(&tried).contains("version `GLIBC_2.3"),
        "{}",
        stderr(&tried)
    );

    // Deploy's inspect refuses it, naming both sides and the build to use,
    // before anything is written.
    let (out, events) = console.run("deploy", &["--agent-binary", ordinary.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let refused = done(&events);
    assert_eq!(refused["result"], "failed", "{refused}");
    assert_eq!(refused["step"], "inspect", "{refused}");
    let reason = refused["reason"].as_str().unwrap();
    assert!(reason.contains("needs glibc 2.3"), "{reason}");
    assert!(reason.contains("but the host has glibc 2.31"), "{reason}");
    assert!(
        reason.contains("a build for glibc 2.31 or older"),
        "{reason}"
    );
    assert!(reason.contains(".ci/build-agent"), "{reason}");
    assert!(
        stderr(&out).contains("deploy: pushing the console build"),
        "{}",
        stderr(&out)
    );
    let left = host.sh("ls /usr/local/lib/fleetctl /var/lib/fleetctl 2>&1; true");
    assert!(stdout(&left).contains("No such file"), "{}", stdout(&left));

    // The portable agent deploys, enrolls and serves its stats from there.
    let (out, events) = console.run("deploy", &["--agent-binary", portable.to_str().unwrap()]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let deployed = done(&events);
    assert_eq!(deployed["result"], "deployed", "{deployed}");
    assert_eq!(deployed["agent"], "agent-only", "{deployed}");
    assert!(
        stderr(&out).contains("deploy: pushing the agent-only build"),
        "{}",
        stderr(&out)
    );
    let stats = console.stats();
    assert_eq!(stats.hostname, HOST_NAME);
    assert_eq!(
        stats.registration.state,
        fleetctl::model::state::RegistrationState::Registered
    );
    assert!(stats.memory.total_bytes > 0);
    // It runs on Debian 11's C library, started as `... agent --config ...`.
    let pid = host.agent_pid().expect("the agent's pidfile");
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert!(
        maps.contains("/libc-2.31.so"),
        "not bullseye's glibc:\n{maps}"
    );
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(String::from_utf8_lossy(&cmdline).contains("agent\0--config\0"));

    let (out, events) = console.run("undeploy", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(done(&events)["result"], "removed");
}
