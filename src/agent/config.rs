//! The agent's config file (TOML), written by `fleetctl deploy` on each host:
//!
//! ```toml
//! controller = "https://10.0.0.1:9700"           # the control plane, or a list of replicas
//! ca_file = "/etc/fleetctl/ca.pem"                # the fleet CA: the only root trusted
//! join_token_file = "/etc/fleetctl/join.token"    # 0600; deleted once used
//! data_dir = "/var/lib/fleetctl"                  # key, certificate, identity, state
//! listen = "0.0.0.0:9701"                         # stats API (port 9701 if left out)
//! hostname = "web1"                               # optional; default: the kernel's
//! advertise = ["10.0.0.5"]                        # optional extra addresses
//! sample_interval = "2s"                          # optional; ms, s or m
//! control_pin = "sha256/..."                      # the control plane's pin
//! ```
//! `control_pin` is what the agent checks the control plane by (see
//! [`crate::pki::ControlPin`]); deploy writes it. Left out, the join
//! token's pin is used (`fleetctl token join` puts it there).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The stats API's port when the config names only an address.
pub use crate::model::stats::AGENT_PORT as DEFAULT_PORT;
const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);

/// The file as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    pub controller: Controllers,
    pub ca_file: PathBuf,
    pub join_token_file: PathBuf,
    pub data_dir: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub advertise: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_pin: Option<String>,
}

/// `controller`: one control plane's URL, or a list of replicas sharing
/// one registry (the agent fails over among them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Controllers {
    One(String),
    Many(Vec<String>),
}

/// The settings the agent runs with, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// The control planes' base URLs, `https://...`, without a trailing
    /// slash: one, or every replica's.
    pub controllers: Vec<String>,
    pub ca_file: PathBuf,
    pub join_token_file: PathBuf,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub hostname: Option<String>,
    pub advertise: Vec<String>,
    pub sample_interval: Duration,
    /// The control plane's pin, when the file names it.
    pub control_pin: Option<crate::pki::ControlPin>,
}

/// A config file that cannot be used: names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the agent config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the agent config {} is not valid: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks a config file's text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        let file: AgentFile =
            toml::from_str(text).map_err(|e| invalid(e.to_string().trim_end().to_owned()))?;
        let given = match &file.controller {
            Controllers::One(url) => vec![url.clone()],
            Controllers::Many(urls) => urls.clone(),
        };
        if given.is_empty() {
            return Err(invalid(
                "controller: the list is empty; name at least one control plane".into(),
            ));
        }
        let mut controllers: Vec<String> = Vec::new();
        for url in given {
            let trimmed = url.trim_end_matches('/').to_owned();
            if !trimmed.starts_with("https://") || trimmed.len() <= "https://".len() {
                return Err(invalid(format!(
                    "controller: {url:?} is not an https:// URL (the control plane only speaks TLS)"
                )));
            }
            if !controllers.contains(&trimmed) {
                controllers.push(trimmed);
            }
        }
        let listen = match &file.listen {
            None => SocketAddr::new(IpAddr::from([0, 0, 0, 0]), DEFAULT_PORT),
            Some(text) => parse_listen(text).map_err(|e| invalid(format!("listen: {e}")))?,
        };
        let sample_interval = match &file.sample_interval {
            None => DEFAULT_INTERVAL,
            Some(text) => {
                parse_interval(text).map_err(|e| invalid(format!("sample_interval: {e}")))?
            }
        };
        if let Some(name) = &file.hostname
            && (name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '/'))
        {
            return Err(invalid(format!("hostname: {name:?} is not a host name")));
        }
        for (key, p) in [
            ("ca_file", &file.ca_file),
            ("join_token_file", &file.join_token_file),
            ("data_dir", &file.data_dir),
        ] {
            if p.as_os_str().is_empty() {
                return Err(invalid(format!("{key}: must not be empty")));
            }
        }
        let control_pin = match &file.control_pin {
            None => None,
            Some(text) => Some(
                text.parse()
                    .map_err(|e| invalid(format!("control_pin: {e}")))?,
            ),
        };
        Ok(Self {
            control_pin,
            controllers,
            ca_file: file.ca_file,
            join_token_file: file.join_token_file,
            data_dir: file.data_dir,
            listen,
            hostname: file.hostname,
            advertise: file.advertise,
            sample_interval,
        })
    }
}

/// `ADDR:PORT`, `[V6]:PORT`, or an address alone (port 9701).
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.trim_matches(['[', ']'])
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, DEFAULT_PORT))
        .map_err(|_| format!("{text:?} is not an address, or address:port"))
}

/// `500ms`, `2s`, `1m`: at least 100ms, at most an hour.
fn parse_interval(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (try 500ms, 2s or 1m)"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => return Err(format!("{text:?}: give a unit: ms, s or m")),
    };
    if d < Duration::from_millis(100) || d > Duration::from_hours(1) {
        return Err(format!("{text:?} is outside 100ms..1h"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "controller = \"https://ctl.example:9700/\"\nca_file = \"/etc/f/ca.pem\"\n\
                           join_token_file = \"/etc/f/join\"\ndata_dir = \"/var/lib/f\"\n";

    #[test]
    fn defaults_fill_what_is_left_out() {
        let c = AgentConfig::parse(MINIMAL, Path::new("a.toml")).unwrap();
        assert_eq!(c.controllers, ["https://ctl.example:9700"]);
        assert_eq!(c.listen, "0.0.0.0:9701".parse().unwrap());
        assert_eq!(c.sample_interval, Duration::from_secs(2));
        assert_eq!(c.hostname, None);
    }

    #[test]
    fn controller_takes_one_url_or_every_replicas() {
        let text = MINIMAL.replace(
            "controller = \"https://ctl.example:9700/\"",
            "controller = [\"https://a.example:8443\", \"https://b.example:8443/\", \"https://a.example:8443\"]",
        );
        let c = AgentConfig::parse(&text, Path::new("a.toml")).unwrap();
        assert_eq!(
            c.controllers,
            ["https://a.example:8443", "https://b.example:8443"],
            "in order, each once"
        );
        for (list, needle) in [
            ("[]", "list is empty"),
            ("[\"https://a\", \"http://b\"]", "\"http://b\""),
        ] {
            let text = MINIMAL.replace(
                "controller = \"https://ctl.example:9700/\"",
                &format!("controller = {list}"),
            );
            let err = AgentConfig::parse(&text, Path::new("a.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("controller:") && err.contains(needle), "{err}");
        }
    }

    #[test]
    fn every_key_parses() {
        let pin = crate::pki::ControlPin::of_spki_der(b"key");
        let text = format!(
            "{MINIMAL}listen = \"127.5.0.10\"\nhostname = \"web1\"\nadvertise = [\"10.0.0.5\"]\nsample_interval = \"500ms\"\ncontrol_pin = \"{pin}\"\n"
        );
        let c = AgentConfig::parse(&text, Path::new("a.toml")).unwrap();
        assert_eq!(c.control_pin, Some(pin));
        assert_eq!(c.listen, "127.5.0.10:9701".parse().unwrap());
        assert_eq!(c.hostname.as_deref(), Some("web1"));
        assert_eq!(c.advertise, ["10.0.0.5"]);
        assert_eq!(c.sample_interval, Duration::from_millis(500));
        let v6 = format!("{MINIMAL}listen = \"[::1]:0\"\n");
        assert_eq!(
            AgentConfig::parse(&v6, Path::new("a")).unwrap().listen,
            "[::1]:0".parse().unwrap()
        );
    }

    #[test]
    fn bad_files_name_the_file_and_the_key() {
        for (extra, needle) in [
            ("listen = \"nowhere\"", "listen:"),
            ("sample_interval = \"2\"", "sample_interval:"),
            ("sample_interval = \"1ms\"", "sample_interval:"),
            ("hostname = \"a b\"", "hostname:"),
            ("colour = \"red\"", "unknown field `colour`"),
            ("advertise = \"10.0.0.5\"", "advertise"),
            ("control_pin = \"sha1/abc\"", "control_pin:"),
        ] {
            let text = format!("{MINIMAL}{extra}\n");
            let err = AgentConfig::parse(&text, Path::new("/etc/f/agent.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("/etc/f/agent.toml"), "{err}");
            assert!(err.contains(needle), "{extra}: {err}");
        }
        let http = MINIMAL.replace("https://", "http://");
        let err = AgentConfig::parse(&http, Path::new("x")).unwrap_err();
        assert!(err.to_string().contains("controller:"), "{err}");
        let missing = "controller = \"https://c\"\n";
        let err = AgentConfig::parse(missing, Path::new("x")).unwrap_err();
        assert!(err.to_string().contains("missing field"), "{err}");
    }
}
