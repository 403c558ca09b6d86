//! What deploy writes on a host besides the binary: the build itself over
//! SFTP, and the agent's config file. Secrets are created with mode 0600
//! by the SFTP open itself, never chmod-ed after the fact.

use std::path::{Path, PathBuf};

use russh_sftp::client::SftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags};
use serde::Serialize;
use tokio::io::AsyncWriteExt as _;

use super::elf::{ElfError, ElfTarget};
use super::layout::Layout;
use super::libc::LibcNeed;

/// The file name of the agent-only build beside the console's binary, where
/// the release workflow puts it and deploy looks for it.
pub const AGENT_BINARY_NAME: &str = "fleetctl-agent";

/// The build deploy pushes when none is named: the agent-only build beside
/// this binary when there is one, else this binary (console and agent in one).
pub fn default_agent_binary() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let beside = exe.with_file_name(AGENT_BINARY_NAME);
    Ok(if beside.is_file() { beside } else { exe })
}

/// Which build of fleetctl a file is, told by what it contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentBuild {
    /// `--no-default-features --features agent`: the agent alone.
    AgentOnly,
    /// The console's build, which runs the agent too.
    Console,
    /// Neither: not a fleetctl build deploy knows.
    Unknown,
}

/// Bytes every console build holds: this very constant, which it reads
/// builds with. An agent-only build has no deploy code, so never holds it.
const CONSOLE_MARK: &[u8] = b"fleetctl console build: deploy, scan, serve, tui";
/// What an agent-only build's `--version` says after the version.
const AGENT_ONLY_MARK: &[u8] = b" (agent-only build)";

impl AgentBuild {
    /// Tells the build from its bytes. The console's mark is looked for
    /// first: a console build holds the agent's mark too (here, to look for it).
    #[must_use]
    pub fn of(bytes: &[u8]) -> Self {
        if memchr::memmem::find(bytes, CONSOLE_MARK).is_some() {
            Self::Console
        } else if memchr::memmem::find(bytes, AGENT_ONLY_MARK).is_some() {
            Self::AgentOnly
        } else {
            Self::Unknown
        }
    }

    /// `agent-only build`, `console build`, `unknown build`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AgentOnly => "agent-only build",
            Self::Console => "console build",
            Self::Unknown => "unknown build",
        }
    }
}

/// The build to deploy, read once and shared by every host.
#[derive(Debug)]
pub struct Artifact {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    /// Lowercase hex.
    pub sha256: String,
    pub elf: ElfTarget,
    /// The C library it needs on the host.
    pub libc: LibcNeed,
    /// Agent-only or the whole console.
    pub build: AgentBuild,
}

/// Why a build cannot be deployed.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("cannot read the agent binary {}: {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{} cannot be deployed: {cause}", path.display())]
    NotElf { path: PathBuf, cause: ElfError },
}

impl Artifact {
    pub fn load(path: &Path) -> Result<Self, ArtifactError> {
        let bytes = std::fs::read(path).map_err(|cause| ArtifactError::Read {
            path: path.to_owned(),
            cause,
        })?;
        let elf = ElfTarget::parse(&bytes).map_err(|cause| ArtifactError::NotElf {
            path: path.to_owned(),
            cause,
        })?;
        let libc = LibcNeed::read(&bytes).map_err(|cause| ArtifactError::NotElf {
            path: path.to_owned(),
            cause,
        })?;
        Ok(Self {
            path: path.to_owned(),
            sha256: sha256_hex(&bytes),
            build: AgentBuild::of(&bytes),
            bytes,
            elf,
            libc,
        })
    }

    /// What deploy pushes, for the operator: `the agent-only build
    /// ./fleetctl-agent (4.1 MiB, Linux x86_64, needs glibc 2.17 or later)`.
    #[must_use]
    pub fn describe(&self) -> String {
        let build = match self.build {
            AgentBuild::AgentOnly => "the agent-only build",
            AgentBuild::Console => "the console build (console and agent in one)",
            AgentBuild::Unknown => "a build deploy does not know",
        };
        format!(
            "{build} {} ({:.1} MiB, Linux {}, needs {})",
            self.path.display(),
            self.bytes.len() as f64 / f64::from(1u32 << 20),
            self.elf.arch_name(),
            self.libc
        )
    }
}

/// The sha256 of `bytes`, lowercase hex, as sha256sum prints it.
#[must_use]
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Writes `contents` to `path` over SFTP, created with `mode` (truncating
/// what was there).
pub async fn write_file(
    sftp: &SftpSession,
    path: &str,
    contents: &[u8],
    mode: u32,
) -> Result<(), String> {
    let attrs = FileAttributes {
        permissions: Some(mode),
        ..FileAttributes::empty()
    };
    let flags = OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE;
    let mut file = sftp
        .open_with_flags_and_attributes(path, flags, attrs)
        .await
        .map_err(|e| format!("cannot create {path}: {e}"))?;
    file.write_all(contents)
        .await
        .map_err(|e| format!("writing {path}: {e}"))?;
    file.shutdown()
        .await
        .map_err(|e| format!("finishing {path}: {e}"))?;
    Ok(())
}

/// The agent's config file (the format `fleetctl agent --config` reads).
#[derive(Debug, Serialize)]
struct AgentFile<'a> {
    controller: Controller<'a>,
    ca_file: String,
    join_token_file: String,
    data_dir: String,
    listen: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    advertise: Vec<&'a str>,
    control_pin: String,
}

/// One control plane's URL, or every replica's.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Controller<'a> {
    One(&'a str),
    Replicas(&'a [String]),
}

/// The config for an agent reached at `address`. It registers under the
/// name the host reports (`name`, from `hostname`) when that is a valid
/// host name, else under `address`, and always with `address` among its
/// addresses: that is what its join token is bound to. It listens where
/// `listen` says (`{host}` stands for `address`), and talks to no control
/// plane but the one `pin` names.
#[must_use]
pub fn agent_config(
    layout: &Layout,
    controllers: &[String],
    pin: crate::pki::ControlPin,
    address: &str,
    name: Option<&str>,
    listen: &str,
) -> String {
    let name = name.filter(|n| super::control::usable_name(n));
    let is_ip = address.parse::<std::net::IpAddr>().is_ok();
    let hostname = name.or((!is_ip).then_some(address));
    let file = AgentFile {
        controller: match controllers {
            [one] => Controller::One(one),
            all => Controller::Replicas(all),
        },
        ca_file: layout.ca(),
        join_token_file: layout.join_token(),
        data_dir: layout.data_dir(),
        listen: listen.replace("{host}", &super::control::url_host(address)),
        hostname,
        advertise: if hostname == Some(address) {
            Vec::new()
        } else {
            vec![address]
        },
        control_pin: pin.to_string(),
    };
    format!(
        "# Written by fleetctl deploy; `fleetctl undeploy` removes it.\n{}",
        toml::to_string(&file).unwrap_or_default()
    )
}

/// The port an agent config's `listen` names (the one parser, in model).
pub use crate::model::stats::listen_port;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_are_told_apart_by_their_marks() {
        // This test binary holds the console's deploy code, hence its mark.
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(AgentBuild::of(&exe), AgentBuild::Console);
        assert_eq!(
            AgentBuild::of(b"\x7fELF...fleetctl 0.1.0 (agent-only build)\0..."),
            AgentBuild::AgentOnly
        );
        assert_eq!(AgentBuild::of(b"\x7fELF...busybox"), AgentBuild::Unknown);
        let artifact = Artifact::load(&std::env::current_exe().unwrap()).unwrap();
        let said = artifact.describe();
        assert!(
            said.starts_with("the console build (console and agent in one) /"),
            "{said}"
        );
        let arch = artifact.elf.arch_name();
        assert!(
            said.contains(&format!("MiB, Linux {arch}, needs glibc 2.")),
            "{said}"
        );
    }

    #[test]
    fn sha256_matches_sha256sum() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn config_binds_the_agent_to_the_address_deployed_to() {
        let layout = Layout::new(true, "/root");
        let pin = crate::pki::ControlPin::of_spki_der(b"control plane CA key");
        let agent_config = |layout: &Layout, c: &str, a: &str, n: Option<&str>, l: &str| {
            agent_config(layout, &[c.to_owned()], pin, a, n, l)
        };
        let text = agent_config(
            &layout,
            "https://10.0.0.1:9700",
            "10.0.0.5",
            None,
            "{host}:9701",
        );
        insta::assert_snapshot!(text, @r#"
        # Written by fleetctl deploy; `fleetctl undeploy` removes it.
        controller = "https://10.0.0.1:9700"
        ca_file = "/var/lib/fleetctl/ca.pem"
        join_token_file = "/var/lib/fleetctl/join.token"
        data_dir = "/var/lib/fleetctl/data"
        listen = "10.0.0.5:9701"
        advertise = ["10.0.0.5"]
        control_pin = "sha256/PomAN7RYJfAXZh++Cdsw4/2ZG9x4NG9fPkE2ecr/fJs="
        "#);
        let named = agent_config(&layout, "https://c", "web1.example", None, "0.0.0.0:9701");
        assert!(named.contains("hostname = \"web1.example\"\n"), "{named}");
        assert!(!named.contains("advertise"), "{named}");
        // The name the host reports; the address deployed to stays listed.
        let reported = agent_config(&layout, "https://c", "10.0.0.7", Some("demo-07"), "{host}");
        assert!(reported.contains("hostname = \"demo-07\"\n"), "{reported}");
        assert!(
            reported.contains("advertise = [\"10.0.0.7\"]"),
            "{reported}"
        );
        let by_name = agent_config(&layout, "https://c", "web1.example", Some("web1"), "{host}");
        assert!(
            by_name.contains("advertise = [\"web1.example\"]"),
            "{by_name}"
        );
        for odd in ["localhost", "not a name", "10.0.0.9"] {
            let text = agent_config(&layout, "https://c", "10.0.0.7", Some(odd), "{host}");
            assert!(!text.contains("hostname"), "{odd}: {text}");
        }
        let v6 = agent_config(&layout, "https://c", "fd00::5", None, "{host}:9701");
        assert!(v6.contains("listen = \"[fd00::5]:9701\""), "{v6}");
    }

    #[test]
    fn every_replica_is_written_and_the_agent_reads_them_back() {
        let layout = Layout::new(true, "/root");
        let pin = crate::pki::ControlPin::of_spki_der(b"control plane CA key");
        let replicas = [
            "https://10.0.0.1:8443".to_owned(),
            "https://10.0.0.2:8443".to_owned(),
        ];
        let text = agent_config(&layout, &replicas, pin, "10.0.0.5", None, "{host}:9701");
        assert!(
            text.contains("controller = [\"https://10.0.0.1:8443\", \"https://10.0.0.2:8443\"]"),
            "{text}"
        );
        let read =
            crate::agent::AgentConfig::parse(&text, std::path::Path::new("agent.toml")).unwrap();
        assert_eq!(read.controllers, replicas);
    }

    #[test]
    fn listen_ports() {
        assert_eq!(listen_port("0.0.0.0:9801"), 9801);
        assert_eq!(listen_port("{host}:9701"), 9701);
        assert_eq!(listen_port("[::1]:9702"), 9702);
        assert_eq!(listen_port("10.0.0.1"), 9701);
        assert_eq!(listen_port("::1"), 9701);
    }
}
