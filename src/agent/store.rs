//! What the agent keeps under its data dir, so a restart resumes without
//! enrolling again:
//!
//! ```text
//!  agent.key     its private key (0600; never leaves the host)
//!  agent.pem     its certificate from the fleet CA
//!  ca.pem        the fleet CA as the control plane sent it
//!  identity.jwt  its identity token (0600)
//!  state.json    agent id, registration time, the control plane's pin,
//!                the token keys and revoked tokens it last sent, heartbeat
//!                interval, and when the identity and certificate were
//!                obtained and expire
//! ```
//! Every file is written whole (temp file + rename), secrets 0600 from
//! creation.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::lifecycle::{Held, Resumed};
use crate::pki;

/// The agent's data dir and its files.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedState {
    pub agent_id: String,
    /// Unix seconds.
    pub registered_at: i64,
    /// The control plane it registered with.
    pub controller: String,
    /// The control plane's pin (`sha256/...`) it registered with.
    #[serde(default)]
    pub control_pin: Option<String>,
    /// What checks stats tokens: keys, revocations, the lifetime cap.
    #[serde(default)]
    pub trust: crate::model::control::TrustUpdate,
    pub heartbeat_interval_secs: u64,
    /// Unix milliseconds.
    pub identity_obtained_at_ms: i64,
    pub identity_expires_at_ms: i64,
    pub cert_obtained_at_ms: i64,
    pub cert_expires_at_ms: i64,
}

impl SavedState {
    #[must_use]
    pub fn resumed(&self) -> Resumed {
        Resumed {
            agent_id: self.agent_id.clone(),
            registered_at: self.registered_at.saturating_mul(1000),
            identity: Held {
                obtained_at: self.identity_obtained_at_ms,
                expires_at: self.identity_expires_at_ms,
            },
            cert: Held {
                obtained_at: self.cert_obtained_at_ms,
                expires_at: self.cert_expires_at_ms,
            },
            heartbeat_interval_ms: i64::try_from(self.heartbeat_interval_secs)
                .unwrap_or(i64::MAX / 2000)
                .saturating_mul(1000),
        }
    }
}

/// Everything a resumed agent needs from disk.
#[derive(Clone)]
pub struct Saved {
    pub state: SavedState,
    pub key_pem: String,
    pub cert_pem: String,
    pub identity_token: String,
}

impl std::fmt::Debug for Saved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saved")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the agent's data dir {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}; check the data dir's permissions and free space", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is damaged ({reason}); move the data dir away and give the agent a new join token", path.display())]
    Damaged { path: PathBuf, reason: String },
}

const KEY: &str = "agent.key";
const CERT: &str = "agent.pem";
const CA: &str = "ca.pem";
const IDENTITY: &str = "identity.jwt";
const STATE: &str = "state.json";

impl Store {
    /// Opens (creating, mode 0700) the data dir.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StoreError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write(&self, name: &str, contents: &[u8]) -> Result<(), StoreError> {
        let path = self.path(name);
        pki::write_private(&path, contents).map_err(|source| StoreError::Write { path, source })
    }

    fn read(&self, name: &str) -> Result<String, StoreError> {
        let path = self.path(name);
        std::fs::read_to_string(&path).map_err(|source| StoreError::Read { path, source })
    }

    /// The saved registration, if there is one. A state file without its
    /// key, certificate or token is damage, not a fresh start.
    pub fn load(&self) -> Result<Option<Saved>, StoreError> {
        let state_path = self.path(STATE);
        let text = match std::fs::read_to_string(&state_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::Read {
                    path: state_path,
                    source,
                });
            }
        };
        let state = serde_json::from_str(&text).map_err(|e| StoreError::Damaged {
            path: state_path,
            reason: e.to_string(),
        })?;
        Ok(Some(Saved {
            state,
            key_pem: self.read(KEY)?,
            cert_pem: self.read(CERT)?,
            identity_token: self.read(IDENTITY)?,
        }))
    }

    /// Saves a whole registration. The state file goes last: it is what
    /// `load` looks for, so a crash half way leaves no half registration.
    pub fn save(&self, saved: &Saved, ca_pem: &str) -> Result<(), StoreError> {
        self.write(KEY, saved.key_pem.as_bytes())?;
        self.write(CERT, saved.cert_pem.as_bytes())?;
        self.write(CA, ca_pem.as_bytes())?;
        self.write(IDENTITY, saved.identity_token.as_bytes())?;
        self.save_state(&saved.state)
    }

    /// Saves a renewed identity (and certificate, with its key).
    pub fn save_renewal(
        &self,
        state: &SavedState,
        identity_token: &str,
        key_and_cert: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        if let Some((key, cert)) = key_and_cert {
            self.write(KEY, key.as_bytes())?;
            self.write(CERT, cert.as_bytes())?;
        }
        self.write(IDENTITY, identity_token.as_bytes())?;
        self.save_state(state)
    }

    /// Saves the state file alone (new token keys, say).
    pub fn save_state(&self, state: &SavedState) -> Result<(), StoreError> {
        let json = serde_json::to_vec_pretty(state).map_err(|e| StoreError::Damaged {
            path: self.path(STATE),
            reason: e.to_string(),
        })?;
        self.write(STATE, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn saved() -> Saved {
        Saved {
            state: SavedState {
                agent_id: "a1".into(),
                registered_at: 100,
                controller: "https://ctl".into(),
                control_pin: Some("sha256/PIN".into()),
                trust: crate::model::control::TrustUpdate::default(),
                heartbeat_interval_secs: 10,
                identity_obtained_at_ms: 100_000,
                identity_expires_at_ms: 160_000,
                cert_obtained_at_ms: 100_000,
                cert_expires_at_ms: 400_000,
            },
            key_pem: "KEY".into(),
            cert_pem: "CERT".into(),
            identity_token: "JWT".into(),
        }
    }

    #[test]
    fn saves_secrets_private_and_loads_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("data")).unwrap();
        assert!(store.load().unwrap().is_none());
        store.save(&saved(), "CA").unwrap();
        for name in [KEY, IDENTITY] {
            let mode = std::fs::metadata(store.path(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        let back = store.load().unwrap().unwrap();
        assert_eq!(back.state, saved().state);
        assert_eq!(back.identity_token, "JWT");
        let r = back.state.resumed();
        assert_eq!(r.registered_at, 100_000);
        assert_eq!(r.heartbeat_interval_ms, 10_000);
        assert_eq!(r.identity.expires_at, 160_000);
        // Debug never shows a secret.
        assert!(!format!("{back:?}").contains("KEY"));
    }

    #[test]
    fn a_state_file_without_its_key_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.save(&saved(), "CA").unwrap();
        std::fs::remove_file(store.path(KEY)).unwrap();
        assert!(matches!(store.load(), Err(StoreError::Read { .. })));
        std::fs::write(store.path(STATE), "{").unwrap();
        assert!(matches!(store.load(), Err(StoreError::Damaged { .. })));
    }
}
