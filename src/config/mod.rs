//! Configuration: the TOML file, its defaults, and where things live.
//!
//! Resolution is a pure function of (flags, file, platform dirs), so it is
//! tested without touching the real home directory.

mod console;
mod control;

use std::path::{Path, PathBuf};

use directories::ProjectDirs;
use serde::{Deserialize, Serialize};

pub use crate::engine::ScanConfig;
use crate::model::duration;
pub use console::{
    ControlChoice, EngineSettings, PrometheusConfig, SshConsoleConfig, StatsSourceChoice, TuiConfig,
};
pub use control::ControlConfig;
pub use duration::parse_duration;

/// The default configuration file, commented; `fleetctl config default` prints it.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default.toml");
const INVENTORY_FILE: &str = "inventory.sqlite3";
const CONTROL_DIR: &str = "control";

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub paths: PathsConfig,
    pub scan: ScanConfig,
    pub control: ControlConfig,
    pub tui: TuiConfig,
    pub ssh: SshConsoleConfig,
    pub engine: EngineSettings,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PathsConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // `cause`, not `source`: the message already says it, and an error
    // that also returned it as its source would be printed twice.
    #[error("cannot read the config file {}: {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("the config file {} is not valid: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("cannot tell where the home directory is; set --config and --data-dir (or HOME)")]
    NoHome,
}

impl Config {
    /// Parses a config file's text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_string(),
        })?;
        if config.scan.ports.contains(&0) {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                message: "scan.ports: port 0 cannot be probed".into(),
            });
        }
        if config.ssh.concurrency == 0 {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                message: "ssh.concurrency: must be at least 1".into(),
            });
        }
        config
            .control
            .check()
            .and_then(|()| config.engine.check())
            .map_err(|message| ConfigError::Invalid {
                path: path.to_owned(),
                message,
            })?;
        Ok(config)
    }

    /// Reads the config file. A missing file at the default location means
    /// the defaults; a missing file the operator named is an error.
    pub fn load(path: &Path, named_explicitly: bool) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named_explicitly => {
                Ok(Self::default())
            }
            Err(cause) => Err(ConfigError::Read {
                path: path.to_owned(),
                cause,
            }),
        }
    }

    /// The settings in effect, as a config file.
    #[must_use]
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render the settings: {e}\n"))
    }
}

/// Where fleetctl reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub config_file: PathBuf,
    pub data_dir: PathBuf,
    pub log_dir: PathBuf,
}

impl Paths {
    /// The platform's directories for fleetctl, if there is a home directory.
    #[must_use]
    pub fn platform() -> Option<ProjectDirs> {
        ProjectDirs::from("", "", "fleetctl")
    }

    /// The config file to read: the flag, else the platform default.
    pub fn config_file(
        flag: Option<&Path>,
        dirs: Option<&ProjectDirs>,
    ) -> Result<PathBuf, ConfigError> {
        match (flag, dirs) {
            (Some(path), _) => Ok(path.to_owned()),
            (None, Some(dirs)) => Ok(dirs.config_dir().join("config.toml")),
            (None, None) => Err(ConfigError::NoHome),
        }
    }

    /// Flags win over the config file, which wins over the platform default.
    pub fn resolve(
        config_file: PathBuf,
        data_dir_flag: Option<&Path>,
        file: &PathsConfig,
        dirs: Option<&ProjectDirs>,
    ) -> Result<Self, ConfigError> {
        let data_dir = match (data_dir_flag, &file.data_dir, dirs) {
            (Some(dir), _, _) => dir.to_owned(),
            (None, Some(dir), _) => expand_home(dir),
            (None, None, Some(dirs)) => dirs.data_dir().to_owned(),
            (None, None, None) => return Err(ConfigError::NoHome),
        };
        let log_dir = match (&file.log_dir, dirs) {
            (Some(dir), _) => expand_home(dir),
            // With the data dir set by flag, keep everything together under it.
            (None, Some(dirs)) if data_dir_flag.is_none() => dirs
                .state_dir()
                .map_or_else(|| data_dir.join("log"), Path::to_owned),
            (None, _) => data_dir.join("log"),
        };
        Ok(Self {
            config_file,
            data_dir,
            log_dir,
        })
    }

    /// The SQLite inventory.
    #[must_use]
    pub fn inventory(&self) -> PathBuf {
        self.data_dir.join(INVENTORY_FILE)
    }

    /// The control plane's keys and certificates: CA, token signing key,
    /// its own server certificate.
    #[must_use]
    pub fn control_dir(&self) -> PathBuf {
        self.data_dir.join(CONTROL_DIR)
    }
}

/// Expands a leading `~/` the way a shell would, so config files can say `~/fleet`.
fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), directories::BaseDirs::new()) {
        (Ok(rest), Some(base)) => base.home_dir().join(rest),
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::HostKeyPolicy;
    use std::time::Duration;

    #[test]
    fn the_sample_file_equals_the_defaults() {
        let parsed = Config::parse(DEFAULT_CONFIG_TOML, Path::new("default.toml")).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn shown_settings_parse_back() {
        let mut config = Config::default();
        config.scan.timeout = Duration::from_millis(1500);
        config.paths.data_dir = Some("/srv/fleet".into());
        assert_eq!(
            Config::parse(&config.to_toml(), Path::new("x")).unwrap(),
            config
        );
    }

    #[test]
    fn bad_files_are_reported_by_name_and_place() {
        let path = Path::new("/etc/fleetctl.toml");
        for (text, needle) in [
            ("[scan]\nrate = \"fast\"", "invalid type"),
            ("[scan]\nmethdo = \"icmp\"", "unknown field `methdo`"),
            ("[scan]\ntimeout = \"5 parsecs\"", "parsecs"),
            ("[scan]\nmethod = \"udp\"", "unknown variant `udp`"),
            ("[scan]\nports = [0]", "port 0"),
            ("[scan\n", "unclosed table"),
            ("[control]\nurl = \"http://x\"", "https://"),
            ("[control]\nlost_after = \"1s\"", "heartbeat_interval"),
            ("[control]\njoin_ttl = \"0s\"", "join_ttl"),
            ("[control]\nlisten = \"nowhere\"", "invalid socket address"),
            (
                "[control]\nregistry = \"mysql://db/fleet\"",
                "control.registry",
            ),
            (
                "[control]\nreplicas = [\"http://b:8443\"]",
                "control.replicas",
            ),
        ] {
            let err = Config::parse(text, path).unwrap_err().to_string();
            assert!(err.contains("/etc/fleetctl.toml"), "{err}");
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn console_settings_parse_and_bad_ones_name_their_key() {
        let path = Path::new("c.toml");
        let c = Config::parse(
            "[ssh]\nhost_key_policy = \"strict\"\nuser = \"ops\"\n\
             [engine]\ncontrol = \"embed\"\npoll_interval = \"500ms\"\n",
            path,
        )
        .unwrap();
        assert_eq!(c.ssh.host_key_policy, Some(HostKeyPolicy::Strict));
        assert_eq!(c.ssh.user.as_deref(), Some("ops"));
        assert_eq!(c.engine.control, ControlChoice::Embed);
        assert_eq!(c.engine.poll_interval, Duration::from_millis(500));
        assert_eq!(Config::default().ssh.host_key_policy, None);
        for (text, key) in [
            (
                "[engine]\npoll_concurrency = 0\n",
                "engine.poll_concurrency",
            ),
            (
                "[engine]\npoll_interval = \"10s\"\npoll_max_backoff = \"5s\"\n",
                "engine.poll_max_backoff",
            ),
            ("[ssh]\nconcurrency = 0\n", "ssh.concurrency"),
            ("[engine]\ncontrol = \"maybe\"\n", "control"),
            (
                "[engine]\nstats_source = \"prometheus\"\n",
                "engine.prometheus.url",
            ),
            (
                "[engine.prometheus]\nurl = \"http://p:9090\"\nbearer_token_file = \"t\"\nbasic_user = \"u\"\nbasic_password_file = \"p\"\n",
                "engine.prometheus",
            ),
            (
                "[engine.prometheus]\nselector = \"{job=\\\"fleet\\\"}\"\n",
                "engine.prometheus.selector",
            ),
        ] {
            let err = Config::parse(text, path).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains("c.toml"), "{text}: {err}");
        }
    }

    #[test]
    fn a_missing_file_is_fine_unless_named() {
        let missing = Path::new("/nonexistent/fleetctl/config.toml");
        assert_eq!(Config::load(missing, false).unwrap(), Config::default());
        assert!(matches!(
            Config::load(missing, true),
            Err(ConfigError::Read { .. })
        ));
    }

    #[test]
    fn flags_beat_the_file_which_beats_the_platform() {
        let dirs = Paths::platform();
        let file = PathsConfig {
            data_dir: Some("/from/file".into()),
            log_dir: None,
        };
        let cfg = PathBuf::from("/c.toml");
        let by_flag = Paths::resolve(
            cfg.clone(),
            Some(Path::new("/from/flag")),
            &file,
            dirs.as_ref(),
        )
        .unwrap();
        assert_eq!(by_flag.data_dir, Path::new("/from/flag"));
        assert_eq!(by_flag.log_dir, Path::new("/from/flag/log"));
        assert_eq!(
            by_flag.inventory(),
            Path::new("/from/flag/inventory.sqlite3")
        );
        let by_file = Paths::resolve(cfg.clone(), None, &file, dirs.as_ref()).unwrap();
        assert_eq!(by_file.data_dir, Path::new("/from/file"));
        let no_home = Paths::resolve(cfg, None, &PathsConfig::default(), None);
        assert!(matches!(no_home, Err(ConfigError::NoHome)));
    }
}
