//! One SSH connection to a host as deploy uses it: shell snippets with a
//! time limit, each failure tied to the step it happened in.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use super::Step;
use super::layout::{InstallScope, Layout};
use crate::ssh::{Session, SshTarget};

/// A step's failure: the reason an operator reads.
pub(super) struct Failure {
    pub step: Step,
    pub reason: String,
}

pub(super) fn fail<T>(step: Step, reason: impl Into<String>) -> Result<T, Failure> {
    Err(Failure {
        step,
        reason: reason.into(),
    })
}

/// An open connection to the host being worked on.
pub(super) struct Host<'a> {
    pub session: Session,
    pub target: &'a SshTarget,
    pub timeout: Duration,
}

impl Host<'_> {
    pub async fn sh(&self, step: Step, script: &str) -> Result<String, Failure> {
        let run = self.session.exec(script);
        match tokio::time::timeout(self.timeout, run).await {
            Err(_) => fail(
                step,
                format!("no answer from the host within {}s", self.timeout.as_secs()),
            ),
            Ok(Err(e)) => fail(step, e.to_string()),
            Ok(Ok(out)) if out.status != 0 => {
                let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
                fail(
                    step,
                    if stderr.is_empty() {
                        format!("a command exited with status {}", out.status)
                    } else {
                        stderr
                    },
                )
            }
            Ok(Ok(out)) => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        }
    }

    pub async fn timed<T>(
        &self,
        step: Step,
        work: impl Future<Output = Result<T, String>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.timeout, work).await {
            Err(_) => fail(step, format!("timed out after {}s", self.timeout.as_secs())),
            Ok(Err(reason)) => fail(step, reason),
            Ok(Ok(v)) => Ok(v),
        }
    }
}

/// `key=value` lines as a map.
pub(super) fn key_values(text: &str) -> HashMap<&str, &str> {
    text.lines().filter_map(|l| l.split_once('=')).collect()
}

/// The layout, and whether systemd manages the agent, that `scope` gives
/// a host whose `scripts::FACTS` are `facts`.
pub(super) fn layout_for(
    facts: &HashMap<&str, &str>,
    scope: InstallScope,
) -> Result<(Layout, bool), Failure> {
    scope
        .layout(
            facts.get("uid").copied(),
            facts.get("home").copied(),
            facts.get("systemd_system") == Some(&"1"),
            facts.get("systemd_user") == Some(&"1"),
        )
        .map_err(|reason| Failure {
            step: Step::Inspect,
            reason,
        })
}
