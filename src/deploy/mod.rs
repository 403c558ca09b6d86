//! Putting the agent on hosts: `fleetctl deploy` and `undeploy` as a library.
//!
//! ```text
//!  rollout::run ── canaries, then N at once, max failures, Ctrl-C
//!     └─ host::Deployer::deploy (one host, over one SSH connection)
//!          connect → inspect → upload → verify → configure → start → healthy → registered
//!                    (facts,    (SFTP*,  (sha256   (0600 files:  (systemd   (/healthz   (control
//!                     state)    temp)    on host,  config, CA,   unit, or   over the    plane's
//!                                        rename)   join token)   setsid)    fleet CA)   registry)
//! ```
//! *Hosts without an SFTP server get their files streamed over the exec
//! channel instead, with the same checks and modes (the outcome says which).
//! What a host reports about itself is parsed strictly (`reported`) before
//! it reaches a script, a path or a unit file.
//!
//! A failure rolls back what that run wrote and reports the step it failed
//! in; the inventory records it, and a re-run resumes after the last step
//! whose result is still on the host (a verified build is kept for that).

pub mod batches;
mod confirm;
mod conn;
pub mod control;
pub mod elf;
pub mod files;
pub mod host;
pub mod layout;
pub mod libc;
pub mod logs;
mod reported;
pub mod rollout;
mod scripts;
mod undeploy;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use conn::Transfer;
pub use control::{ControlPlane, Enroller};
pub use files::{AgentBuild, Artifact};
pub use host::{DeployOptions, Deployer};
pub use rollout::{HostResult, Progress, RolloutOptions};
pub use undeploy::undeploy;

/// A step of deploying (or undeploying) one host, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Connect,
    Inspect,
    Upload,
    Verify,
    Configure,
    Start,
    Healthy,
    Registered,
    /// Undeploy: stopping the agent and removing its files.
    Remove,
}

impl Step {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Connect => "connect",
            Step::Inspect => "inspect",
            Step::Upload => "upload",
            Step::Verify => "verify",
            Step::Configure => "configure",
            Step::Start => "start",
            Step::Healthy => "healthy",
            Step::Registered => "registered",
            Step::Remove => "remove",
        }
    }

    /// Parses what [`Step::as_str`] wrote.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [
            Step::Connect,
            Step::Inspect,
            Step::Upload,
            Step::Verify,
            Step::Configure,
            Step::Start,
            Step::Healthy,
            Step::Registered,
            Step::Remove,
        ]
        .into_iter()
        .find(|step| step.as_str() == s)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one host ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Outcome {
    /// The build now runs and is registered.
    Deployed {
        /// sha256 of the build.
        build: String,
        /// The build it replaced, if another ran before.
        #[serde(skip_serializing_if = "Option::is_none")]
        replaced: Option<String>,
        /// How its files reached the host.
        transfer: Transfer,
        /// Which build it is: agent-only or the console's.
        agent: AgentBuild,
    },
    /// That build already ran and was registered: left alone.
    UpToDate { build: String },
    /// Undeploy: the agent was stopped and its files removed.
    Removed,
    /// Undeploy: nothing of ours was there.
    NotInstalled,
    Failed {
        step: Step,
        reason: String,
        /// Whether what this run wrote was undone.
        rolled_back: bool,
    },
    /// Never started (canary failed, too many failures, interrupted).
    Skipped { reason: String },
}

/// What a rollout reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    Start {
        index: usize,
        host: String,
        canary: bool,
    },
    Step {
        index: usize,
        host: String,
        step: Step,
        elapsed_ms: u64,
    },
    Note {
        index: usize,
        host: String,
        message: String,
    },
    Done {
        index: usize,
        host: String,
        #[serde(flatten)]
        outcome: Outcome,
        elapsed_ms: u64,
    },
    /// A batch starts (1-based, of `batches`) with this many hosts.
    Batch {
        batch: usize,
        batches: usize,
        hosts: usize,
    },
    /// A batch ended: how many hosts ended well and how many failed.
    BatchDone {
        batch: usize,
        batches: usize,
        ok: usize,
        failed: usize,
    },
}

/// A secret (a join token) that never shows in `Debug` or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    #[must_use]
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value, for writing it to its 0600 file.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_trip_and_secrets_stay_hidden() {
        for step in [Step::Connect, Step::Verify, Step::Registered, Step::Remove] {
            assert_eq!(Step::parse(step.as_str()), Some(step));
        }
        assert_eq!(Step::parse("nope"), None);
        let s = Secret::new("eyJhbGciOi.secret".into());
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn events_are_one_json_object_each() {
        let done = Event::Done {
            index: 2,
            host: "web1".into(),
            outcome: Outcome::Failed {
                step: Step::Upload,
                reason: "read-only".into(),
                rolled_back: true,
            },
            elapsed_ms: 12,
        };
        assert_eq!(
            serde_json::to_string(&done).unwrap(),
            r#"{"event":"done","index":2,"host":"web1","result":"failed","step":"upload","reason":"read-only","rolled_back":true,"elapsed_ms":12}"#
        );
    }
}
