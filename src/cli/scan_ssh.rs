//! `fleetctl scan --ssh`: live hosts showing SSH on port 22 are
//! fingerprinted while the scan goes on, by the same job and with the same
//! options as `fleetctl fingerprint`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::BadInput;
use super::output::FingerprintCounts;
use super::ssh_opts::{SshArgs, SshSetup};
use crate::config::parse_duration;
use crate::fingerprint::job;
use crate::model::{Fingerprint, HostScan, Reach};
use crate::ssh::SshTarget;

/// Where `--ssh` connects: the port the scan found SSH on.
pub const SSH_PORT: u16 = 22;

#[derive(Debug, Args)]
pub struct ScanSshArgs {
    /// Also fingerprint live hosts with SSH on port 22, as `fleetctl fingerprint` does.
    #[arg(long)]
    pub ssh: bool,
    #[command(flatten, next_help_heading = "SSH (with --ssh)")]
    opts: SshArgs,
    /// Time allowed per host for --ssh, connection included.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    ssh_timeout: Duration,
}

/// The fingerprint job of one scan, and the hosts waiting for it.
pub struct ScanFingerprints {
    setup: SshSetup,
    /// Closed when discovery ends, so the job ends after its last host.
    targets: Option<mpsc::UnboundedSender<SshTarget>>,
    results: mpsc::UnboundedReceiver<Fingerprint>,
    /// Found hosts waiting for their fingerprint, by the name the job reports.
    awaiting: HashMap<String, HostScan>,
    /// Every fingerprint so far, to record and count.
    pub done: Vec<Fingerprint>,
}

impl ScanSshArgs {
    /// Checks the flags; with `--ssh`, reads the SSH files and starts the job.
    pub fn start(&self, cancel: &CancellationToken) -> anyhow::Result<Option<ScanFingerprints>> {
        if !self.ssh {
            if self.opts.any_given() {
                return Err(BadInput::wrap(anyhow::anyhow!(
                    "SSH options (-l, -i, -J, --known-hosts, --host-key-policy, ...) apply only with --ssh"
                )));
            }
            return Ok(None);
        }
        let setup = self.opts.setup(Some(SSH_PORT))?;
        let (target_tx, target_rx) = mpsc::unbounded_channel();
        let (result_tx, result_rx) = mpsc::unbounded_channel();
        tokio::spawn(job::run_stream(
            Arc::clone(&setup.connector),
            target_rx,
            setup.concurrency,
            self.ssh_timeout,
            cancel.clone(),
            result_tx,
        ));
        Ok(Some(ScanFingerprints {
            setup,
            targets: Some(target_tx),
            results: result_rx,
            awaiting: HashMap::new(),
            done: Vec::new(),
        }))
    }
}

/// Whether a scanned host showed SSH on port 22.
fn has_ssh(host: &HostScan) -> bool {
    host.reach == Reach::Alive && (host.open_ports.contains(&SSH_PORT) || host.ssh_banner.is_some())
}

impl ScanFingerprints {
    /// Queues `host` for fingerprinting if it shows SSH; `true` when it
    /// did (it is then written once its fingerprint is in).
    pub fn take(&mut self, host: &HostScan) -> anyhow::Result<bool> {
        let Some(targets) = &self.targets else {
            return Ok(false);
        };
        if !has_ssh(host) {
            return Ok(false);
        }
        let target = self.setup.target(&host.addr.to_string())?;
        self.awaiting.insert(target.alias.clone(), host.clone());
        let _ = targets.send(target);
        Ok(true)
    }

    /// Discovery has ended: no more hosts will come.
    pub fn discovery_done(&mut self) {
        self.targets = None;
    }

    /// The next host fingerprinted, with its fingerprint; `None` once the
    /// job has ended.
    pub async fn next(&mut self) -> Option<(Option<HostScan>, Fingerprint)> {
        let fingerprint = self.results.recv().await?;
        let host = self.awaiting.remove(&fingerprint.host);
        self.done.push(fingerprint.clone());
        Some((host, fingerprint))
    }

    /// Hosts still waiting (the scan was interrupted before their turn).
    pub fn unfinished(&mut self) -> impl Iterator<Item = HostScan> + '_ {
        self.awaiting.drain().map(|(_, host)| host)
    }

    /// How many succeeded and failed.
    #[must_use]
    pub fn counts(&self) -> FingerprintCounts {
        let failed = self.done.iter().filter(|f| f.failure.is_some()).count();
        FingerprintCounts {
            ok: self.done.len() - failed,
            failed,
        }
    }
}

/// The next fingerprint of `job`, or never when there is no job.
pub async fn next(job: Option<&mut ScanFingerprints>) -> Option<(Option<HostScan>, Fingerprint)> {
    match job {
        Some(job) => job.next().await,
        None => std::future::pending().await,
    }
}
