//! One SSH connection to a host as deploy uses it: shell snippets with a
//! time limit, each failure tied to the step it happened in, and files
//! written over SFTP, or streamed over the exec channel where the host
//! runs no SFTP server.

use std::collections::HashMap;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use serde::Serialize;

use super::layout::{InstallScope, Layout};
use super::{Step, files, reported, scripts};
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

/// How files reach a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transfer {
    /// The sftp subsystem.
    Sftp,
    /// Streamed to `cat` over the exec channel: for hosts without SFTP.
    Exec,
}

impl Transfer {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Transfer::Sftp => "sftp",
            Transfer::Exec => "exec",
        }
    }
}

/// One file to write: where, what, and its mode from its creation on.
pub(super) struct NewFile<'a> {
    pub path: String,
    pub contents: &'a [u8],
    pub mode: u32,
}

/// An open connection to the host being worked on.
pub(super) struct Host<'a> {
    pub session: Session,
    pub target: &'a SshTarget,
    pub timeout: Duration,
    /// Settled by the first transfer: whether the host has SFTP.
    pub transfer: OnceLock<Transfer>,
}

impl<'a> Host<'a> {
    pub fn new(session: Session, target: &'a SshTarget, timeout: Duration) -> Self {
        Self {
            session,
            target,
            timeout,
            transfer: OnceLock::new(),
        }
    }

    pub async fn sh(&self, step: Step, script: &str) -> Result<String, Failure> {
        self.sh_with_input(step, script, None).await
    }

    async fn sh_with_input(
        &self,
        step: Step,
        script: &str,
        input: Option<&[u8]>,
    ) -> Result<String, Failure> {
        let run = self.session.exec_with_input(script, input);
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

    /// Writes `new` over SFTP, or, on a host without SFTP, streamed over
    /// exec channels with the same guarantees: each file created with its
    /// mode (0600 secrets are never readable by others, not even for a
    /// moment) and its length checked. Says which way it went.
    pub async fn write_files(&self, step: Step, new: &[NewFile<'_>]) -> Result<Transfer, Failure> {
        if self.transfer.get() != Some(&Transfer::Exec) {
            let sftp = self
                .timed(step, async {
                    self.session.try_sftp().await.map_err(|e| e.to_string())
                })
                .await?;
            if let Some(sftp) = sftp {
                let _ = self.transfer.set(Transfer::Sftp);
                let written = self
                    .timed(step, async {
                        for file in new {
                            files::write_file(&sftp, &file.path, file.contents, file.mode).await?;
                        }
                        Ok(())
                    })
                    .await;
                let _ = sftp.close().await;
                return written.map(|()| Transfer::Sftp);
            }
            let _ = self.transfer.set(Transfer::Exec);
        }
        let sends = new.iter().map(|file| async move {
            let script = scripts::receive_file(&file.path, file.mode, file.contents.len());
            self.sh_with_input(step, &script, Some(file.contents)).await
        });
        futures_util::future::try_join_all(sends).await?;
        Ok(Transfer::Exec)
    }
}

/// `key=value` lines as a map.
pub(super) fn key_values(text: &str) -> HashMap<&str, &str> {
    text.lines().filter_map(|l| l.split_once('=')).collect()
}

/// The layout, and whether systemd manages the agent, that `scope` gives
/// `host`, whose `scripts::FACTS` are `facts`. The user id and home it
/// reports are checked first: they become paths in scripts and units.
pub(super) fn layout_for(
    host: &str,
    facts: &HashMap<&str, &str>,
    scope: InstallScope,
) -> Result<(Layout, bool), Failure> {
    let inspect = |reason: String| Failure {
        step: Step::Inspect,
        reason,
    };
    let uid = facts
        .get("uid")
        .map(|u| reported::uid(host, u))
        .transpose()
        .map_err(inspect)?;
    let home = facts.get("home").copied().filter(|h| !h.is_empty());
    let (layout, systemd) = scope
        .layout(
            uid,
            home,
            facts.get("systemd_system") == Some(&"1"),
            facts.get("systemd_user") == Some(&"1"),
        )
        .map_err(inspect)?;
    // Only a per-user install puts the home into paths.
    if let (false, Some(home)) = (layout.root, home) {
        reported::home(host, home).map_err(inspect)?;
    }
    Ok((layout, systemd))
}
