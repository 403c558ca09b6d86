//! One host, over one SSH connection: the steps, the checks between them,
//! and the rollback when one fails.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::conn::{Failure, Host, NewFile, Transfer, fail, key_values, layout_for};
use super::control::ControlPlane;
use super::files::{self, Artifact};
use super::layout::{InstallScope, Layout, sh_quote, short};
use super::libc::{self, Verdict};
use super::reported::{self, ShaTool};
use super::rollout::Progress;
use super::{Outcome, Step, scripts};
use crate::model::time::now_unix;
use crate::ssh::{Connector, SshTarget};

/// How deployed agents are set up and how long each wait may take.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    /// The agent's `listen`; `{host}` stands for the address deployed to.
    pub listen: String,
    /// Any one command or transfer on the host.
    pub step_timeout: Duration,
    /// From start until `/healthz` answers.
    pub healthy_timeout: Duration,
    /// From healthy until the registry lists the agent as registered.
    pub registered_timeout: Duration,
    /// System-wide or under the login user's home.
    pub scope: InstallScope,
    /// Hosts (by the address deployed to) whose agents reach the control
    /// plane at another URL than the deployer's, e.g. through a relay.
    pub controller_for: BTreeMap<String, String>,
}

/// Deploys and undeploys hosts; shared by every host of a rollout.
pub struct Deployer {
    pub connector: Arc<Connector>,
    pub artifact: Arc<Artifact>,
    pub control: Arc<ControlPlane>,
    pub options: DeployOptions,
}

/// What `scripts::inspect` said.
#[derive(Debug, Default)]
struct Found {
    layout: Option<Layout>,
    systemd: bool,
    sha_tool: Option<ShaTool>,
    /// How files reached the host, once some did.
    transfer: Option<Transfer>,
    /// The build in use before this run.
    current: Option<String>,
    /// What the host calls itself (`hostname`), when it says.
    name: Option<String>,
    running: bool,
    have_build: bool,
}

impl Deployer {
    /// Deploys the build to one host; never panics, always an outcome.
    pub async fn deploy(
        &self,
        target: &SshTarget,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Outcome {
        progress.step(Step::Connect);
        let session = match self.connector.connect(target).await {
            Ok(s) => s,
            Err(e) => {
                return Outcome::Failed {
                    step: Step::Connect,
                    reason: e.to_string(),
                    rolled_back: true,
                };
            }
        };
        let host = Host::new(session, target, self.options.step_timeout);
        let mut found = Found::default();
        let result = self.run(&host, &mut found, progress, cancel).await;
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(failure) => {
                let rolled_back = match &found.layout {
                    // Nothing was written before the layout was known.
                    None => true,
                    Some(layout) => self.roll_back(&host, layout, &found, failure.step).await,
                };
                Outcome::Failed {
                    step: failure.step,
                    reason: failure.reason,
                    rolled_back,
                }
            }
        };
        host.session.close().await;
        outcome
    }

    async fn run(
        &self,
        host: &Host<'_>,
        found: &mut Found,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<Outcome, Failure> {
        let sha = self.artifact.sha256.as_str();
        let address = host.target.hostname.as_str();
        progress.step(Step::Inspect);
        let (layout, sha_tool) = self.inspect(host, found, progress).await?;

        if found.current.as_deref() == Some(sha) && found.running {
            if self.is_healthy_and_registered(address).await {
                return Ok(Outcome::UpToDate {
                    build: sha.to_string(),
                });
            }
            progress
                .note("this build runs but is not healthy and registered: restarting it".into());
        }
        let replaced = found.current.clone().filter(|c| c != sha);

        if found.have_build {
            progress.note(format!(
                "build {} is already on the host: resuming at configure",
                short(sha)
            ));
        } else {
            check_cancel(cancel, Step::Upload)?;
            progress.step(Step::Upload);
            let transfer = self.upload(host, &layout).await?;
            noted(found, transfer, progress);
        }

        check_cancel(cancel, Step::Configure)?;
        progress.step(Step::Configure);
        let transfer = self.configure(host, &layout, found).await?;
        noted(found, transfer, progress);

        // One round trip: check the upload, then switch to it.
        let mut script = String::new();
        if found.have_build {
            check_cancel(cancel, Step::Start)?;
            progress.step(Step::Start);
        } else {
            check_cancel(cancel, Step::Verify)?;
            progress.step(Step::Verify);
            script.push_str(&scripts::verify(&layout, sha, sha_tool.command()));
        }
        script.push_str(&scripts::stop(&layout, found.systemd));
        script.push_str(&scripts::install_config(&layout));
        script.push_str(&scripts::start(&layout, sha, found.systemd));
        let started_at = now_unix();
        match host.sh(Step::Start, &script).await {
            Err(failure) if !found.have_build && failure.reason.contains(scripts::CORRUPTED) => {
                return fail(Step::Verify, failure.reason);
            }
            other => other?,
        };
        if !found.have_build {
            progress.step(Step::Start);
        }
        self.confirm(host, &layout, found.systemd, started_at, progress, cancel)
            .await?;
        // The new build runs: what it replaced can go.
        let mut cleanup = scripts::discard_staged(&layout);
        if let Some(old) = &replaced {
            let _ = writeln!(cleanup, "rm -f {}", sh_quote(&layout.binary(old)));
        }
        if found.current.is_some() {
            let _ = host.sh(Step::Registered, &cleanup).await;
        }
        Ok(Outcome::Deployed {
            build: sha.to_string(),
            replaced,
            transfer,
            agent: self.artifact.build,
        })
    }

    /// Reads what the host is and what is installed; refuses a host the
    /// build cannot run on (another machine, or a C library it cannot
    /// start with).
    async fn inspect(
        &self,
        host: &Host<'_>,
        found: &mut Found,
        progress: &Progress,
    ) -> Result<(Layout, ShaTool), Failure> {
        let sha = self.artifact.sha256.as_str();
        let script = scripts::inspect(sha, self.artifact.elf.uname_patterns(), self.options.scope);
        let facts = host.sh(Step::Inspect, &script).await?;
        let facts = key_values(&facts);
        let (os, arch) = (
            facts.get("os").copied().unwrap_or("?"),
            facts.get("arch").copied().unwrap_or("?"),
        );
        if os != "Linux" || !self.artifact.elf.runs_on(arch) {
            return fail(
                Step::Inspect,
                format!(
                    "the agent binary {} is built for Linux {}, but the host is {os} {arch}; \
                     pass --agent-binary with a build for {os} {arch}",
                    self.artifact.path.display(),
                    self.artifact.elf.arch_name()
                ),
            );
        }
        let name = host.target.display();
        let inspect_failure = |reason: String| Failure {
            step: Step::Inspect,
            reason,
        };
        let host_libc = reported::libc(&name, facts.get("libc").copied().unwrap_or(""))
            .map_err(inspect_failure)?;
        let binary = self.artifact.path.display().to_string();
        match libc::verdict(&self.artifact.libc, &host_libc, &binary) {
            Verdict::Runs => {}
            Verdict::Refused(reason) => {
                // The inspect script made the install directories (a C
                // library is judged here, not there): empty ones go again.
                if let Ok((layout, _)) = layout_for(&name, &facts, self.options.scope) {
                    let _ = host
                        .sh(Step::Inspect, &scripts::remove_empty_dirs(&layout))
                        .await;
                }
                return fail(Step::Inspect, reason);
            }
            Verdict::Unknown => progress.note(format!(
                "the host did not say which C library it has (no getconf or ldd): \
                 pushing a build that needs {} anyway",
                self.artifact.libc
            )),
        }
        found.sha_tool = ShaTool::parse(&name, facts.get("sha256").copied().unwrap_or(""))
            .map_err(inspect_failure)?;
        let Some(sha_tool) = found.sha_tool else {
            return fail(
                Step::Inspect,
                "the host has neither sha256sum nor busybox: the upload cannot be verified",
            );
        };
        let (layout, systemd) = layout_for(&name, &facts, self.options.scope)?;
        found.systemd = systemd;
        found.name = facts
            .get("name")
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty());
        let state = facts;
        found.current = state
            .get("current")
            .map(|s| reported::build_id(&name, s.trim()).map(str::to_string))
            .transpose()
            .map_err(|reason| {
                inspect_failure(format!("{reason} (it is in {})", layout.current()))
            })?;
        found.running = state.contains_key("running");
        found.have_build = state.contains_key("have");
        found.layout = Some(layout.clone());
        if let Some(error) = state.get("prepare_error") {
            return fail(Step::Upload, error.trim());
        }
        Ok((layout, sha_tool))
    }

    async fn upload(&self, host: &Host<'_>, layout: &Layout) -> Result<Transfer, Failure> {
        let file = NewFile {
            path: layout.upload_temp(&self.artifact.sha256),
            contents: &self.artifact.bytes,
            mode: 0o700,
        };
        host.write_files(Step::Upload, &[file]).await
    }

    /// Stages the config, the CA, a fresh join token (and the unit) as
    /// `.NAME.new` files of mode 0600; `start` moves them into place.
    async fn configure(
        &self,
        host: &Host<'_>,
        layout: &Layout,
        found: &Found,
    ) -> Result<Transfer, Failure> {
        let address = host.target.hostname.as_str();
        let systemd = found.systemd;
        let token = self
            .control
            .join_token(address, found.name.as_deref())
            .map_err(|e| Failure {
                step: Step::Configure,
                reason: e.to_string(),
            })?;
        let controllers = self
            .options
            .controller_for
            .get(address)
            .map_or_else(|| self.control.urls(), |url| vec![url.clone()]);
        let config = files::agent_config(
            layout,
            &controllers,
            self.control.pin(),
            address,
            found.name.as_deref(),
            &self.options.listen,
        );
        let unit = if systemd {
            let binary = layout.binary(&self.artifact.sha256);
            Some(
                scripts::unit_text(layout, &binary).map_err(|reason| Failure {
                    step: Step::Configure,
                    reason,
                })?,
            )
        } else {
            None
        };
        let mut staged: Vec<(&str, &[u8])> = vec![
            ("agent.toml", config.as_bytes()),
            ("ca.pem", self.control.ca_pem().as_bytes()),
            ("join.token", token.expose().as_bytes()),
        ];
        if let Some(unit) = &unit {
            staged.push(("unit", unit.as_bytes()));
        }
        let new: Vec<NewFile<'_>> = staged
            .into_iter()
            .map(|(name, contents)| NewFile {
                path: layout.state(&format!(".{name}.new")),
                contents,
                mode: 0o600,
            })
            .collect();
        host.write_files(Step::Configure, &new).await
    }

    /// Adds the agent's last log lines to a failure (read before the
    /// rollback removes the log).
    pub(super) async fn with_log(
        &self,
        host: &Host<'_>,
        layout: &Layout,
        systemd: bool,
        step: Step,
        reason: String,
    ) -> Failure {
        let tail = host
            .sh(step, &scripts::log_tail(layout, systemd, 15))
            .await
            .unwrap_or_default();
        let tail = tail.trim();
        Failure {
            step,
            reason: if tail.is_empty() {
                format!("{reason} (the agent logged nothing)")
            } else {
                format!("{reason}; the agent's last log lines:\n{tail}")
            },
        }
    }

    /// Undoes this run. A host that had no agent goes back to nothing. On
    /// a host that had one, a failure before `start` leaves it untouched
    /// (only staged files go); a later one stops the new build and starts
    /// the old one again with its config. A verified build stays (under its
    /// own name, not running) when the failure came after verification, so
    /// a re-run resumes at configure.
    async fn roll_back(&self, host: &Host<'_>, layout: &Layout, found: &Found, step: Step) -> bool {
        if step <= Step::Inspect {
            return true;
        }
        let sha = self.artifact.sha256.as_str();
        let keep = step > Step::Verify || found.have_build || found.current.as_deref() == Some(sha);
        let script = match found.current.as_deref() {
            None => scripts::remove(layout, found.systemd, keep.then_some(sha)),
            Some(previous) => {
                let mut s = String::new();
                if step >= Step::Start {
                    s.push_str(&scripts::stop(layout, found.systemd));
                    s.push_str(&scripts::restore_config(layout));
                    if found.running {
                        s.push_str(&scripts::start(layout, previous, found.systemd));
                    }
                }
                s.push_str(&scripts::discard_staged(layout));
                let _ = writeln!(s, "rm -f {}", sh_quote(&layout.upload_temp(sha)));
                if !keep {
                    let _ = writeln!(s, "rm -f {}", sh_quote(&layout.binary(sha)));
                }
                s
            }
        };
        match host.sh(step, &script).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(host = %host.target.display(), reason = %e.reason, "rollback failed");
                false
            }
        }
    }
}

/// Remembers how files reached the host, and says so when it was not SFTP.
fn noted(found: &mut Found, transfer: Transfer, progress: &Progress) {
    if found.transfer.replace(transfer).is_none() && transfer == Transfer::Exec {
        progress.note(
            "the host runs no SFTP server: files are streamed over the exec channel \
             (same checks, same modes)"
                .into(),
        );
    }
}

fn check_cancel(cancel: &CancellationToken, step: Step) -> Result<(), Failure> {
    if cancel.is_cancelled() {
        fail(step, "interrupted (Ctrl-C) before this step")
    } else {
        Ok(())
    }
}
