//! The jobs the engine runs as tasks of their own, each driving a
//! capability module (scan, fingerprint, store) and reporting to the actor.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::prompt::EnginePrompter;
use super::{Answer, JobId, JobOutcome, PromptKind, SshSettings};
use crate::config::ScanConfig;
use crate::fingerprint::job::{self as fingerprint_job, Fingerprint};
use crate::model::AgentStats;
use crate::model::HostScan;
use crate::model::control::AgentRecord;
use crate::scan::targets;
use crate::scan::{self, Method, ProbePlan, ScanOptions, ScanProgress};
use crate::ssh::config::SshConfig;
use crate::ssh::{Connector, LocalUser, SshTarget};
use crate::store::{Deployment, Inventory, StoredFacts, StoredHost};

/// How often running jobs report progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// How long a scan waits for a host name to resolve.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// What jobs tell the actor.
#[derive(Debug)]
pub(super) enum JobMsg {
    Progress {
        id: JobId,
        done: u64,
        total: u64,
    },
    Scanned {
        host: HostScan,
    },
    Fingerprinted {
        result: Box<Fingerprint>,
    },
    Inventory {
        hosts: Vec<StoredHost>,
        facts: Vec<StoredFacts>,
        deployments: Vec<Deployment>,
    },
    /// One stats read (from the poller): `failures` in a row, and when the
    /// next read comes after a failure.
    Stats {
        addr: IpAddr,
        result: Result<Box<AgentStats>, String>,
        failures: u32,
        retry_in: Option<Duration>,
    },
    /// A read of the control plane's registry.
    Registry(Result<Vec<AgentRecord>, String>),
    /// CPU and memory history of one host from Prometheus (the range
    /// query), oldest first.
    History {
        addr: IpAddr,
        points: Vec<super::prometheus::PromPoint>,
    },
    PollRound {
        polled: u64,
        answering: u64,
        agents: u64,
    },
    /// A deploy or undeploy event of one host.
    Deploy {
        addr: IpAddr,
        event: crate::deploy::Event,
    },
    /// A revocation's answer.
    Revoked {
        addr: IpAddr,
        result: Result<AgentRecord, String>,
    },
    Ended {
        id: JobId,
        outcome: JobOutcome,
    },
    Prompt {
        job: Option<JobId>,
        kind: PromptKind,
        reply: oneshot::Sender<Answer>,
    },
}

/// Reports a job's end: cancelled if its token fired, else what it returned.
pub(super) fn end(
    tx: &mpsc::UnboundedSender<JobMsg>,
    id: JobId,
    cancel: &CancellationToken,
    result: Result<String, String>,
) {
    let outcome = match result {
        _ if cancel.is_cancelled() => JobOutcome::Cancelled,
        Ok(summary) => JobOutcome::Done(summary),
        Err(error) => JobOutcome::Failed(error),
    };
    let _ = tx.send(JobMsg::Ended { id, outcome });
}

/// Reads the inventory: the fleet as it was when the console last closed.
pub(super) async fn load_inventory(id: JobId, path: PathBuf, tx: mpsc::UnboundedSender<JobMsg>) {
    let read = tokio::task::spawn_blocking(move || {
        let inventory = Inventory::open(&path)?;
        Ok::<_, crate::store::StoreError>((
            inventory.hosts()?,
            inventory.all_facts()?,
            inventory.deployments()?,
        ))
    })
    .await;
    let result = match read {
        Ok(Ok((hosts, facts, deployments))) => {
            let summary = format!("{} hosts from the inventory", hosts.len());
            let _ = tx.send(JobMsg::Inventory {
                hosts,
                facts,
                deployments,
            });
            Ok(summary)
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("the inventory reader stopped: {e}")),
    };
    end(&tx, id, &CancellationToken::new(), result);
}

/// What a scan job needs besides its targets.
#[derive(Debug, Clone)]
pub(super) struct ScanJob {
    pub config: ScanConfig,
    pub max_in_flight: usize,
    pub inventory: Option<PathBuf>,
}

/// Discovers `targets` (as `fleetctl scan` takes them, space separated),
/// streams each host to the actor and records the scan in the inventory.
pub(super) async fn scan(
    id: JobId,
    targets: String,
    job: ScanJob,
    cancel: CancellationToken,
    tx: mpsc::UnboundedSender<JobMsg>,
) {
    let result = run_scan(id, &targets, job, &cancel, &tx).await;
    end(&tx, id, &cancel, result);
}

fn scan_options(config: &ScanConfig, max_in_flight: usize) -> ScanOptions {
    ScanOptions {
        plan: ProbePlan {
            rate: config.rate,
            timeout: config.timeout,
            retries: config.retries,
        },
        ports: config.ports.clone(),
        banner_timeout: config.ssh_banner.then_some(config.banner_timeout),
        resolve: config.resolve,
        max_in_flight: config.max_in_flight.min(max_in_flight).max(1),
    }
}

async fn run_scan(
    id: JobId,
    text: &str,
    job: ScanJob,
    cancel: &CancellationToken,
    tx: &mpsc::UnboundedSender<JobMsg>,
) -> Result<String, String> {
    let mut specs = Vec::new();
    for target in text.split_whitespace() {
        specs.extend(targets::parse_target(target).map_err(|e| e.to_string())?);
    }
    let specs = targets::resolve_names(specs, LOOKUP_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let addrs: Arc<[IpAddr]> = targets::expand(&specs, &[], job.config.max_hosts)
        .map_err(|e| e.to_string())?
        .into();
    let options = scan_options(&job.config, job.max_in_flight);
    let (method, note) =
        Method::choose(job.config.method, &addrs, options.banner_timeout.is_some())
            .map_err(|e| e.to_string())?;
    let method_name = method.name();
    let total = addrs.len() as u64;
    let progress = Arc::new(ScanProgress::new(addrs.len()));
    let (host_tx, mut host_rx) = mpsc::unbounded_channel();
    let running = tokio::spawn(scan::run(
        Arc::clone(&addrs),
        method,
        options,
        cancel.clone(),
        host_tx,
        Arc::clone(&progress),
    ));
    let mut results = Vec::new();
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    loop {
        tokio::select! {
            host = host_rx.recv() => {
                let Some(host) = host else { break };
                results.push(host.clone());
                let _ = tx.send(JobMsg::Scanned { host });
            }
            _ = tick.tick() => {
                let done = progress.probed.load(Ordering::Relaxed);
                let _ = tx.send(JobMsg::Progress { id, done, total });
            }
        }
    }
    let summary = running
        .await
        .map_err(|e| format!("the scan task failed: {e}"))?;
    let _ = tx.send(JobMsg::Progress {
        id,
        done: total,
        total,
    });
    if let Some(path) = job.inventory {
        let targets = text.to_owned();
        let record = tokio::task::spawn_blocking(move || {
            let mut inventory = Inventory::open(&path)?;
            let scan_id = inventory.begin_scan(&targets, method_name)?;
            inventory.record_hosts(scan_id, &results)?;
            inventory.finish_scan(scan_id, summary.alive, summary.silent, summary.interrupted)
        })
        .await;
        match record {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("the scan ran but was not recorded: {e}")),
            Err(e) => return Err(format!("the inventory writer stopped: {e}")),
        }
    }
    let mut line = format!(
        "{} alive, {} silent of {} ({method_name}, {:.1}s)",
        summary.alive,
        summary.silent,
        summary.total,
        summary.elapsed.as_secs_f64()
    );
    if let Some(note) = note {
        line.push_str("; ");
        line.push_str(&note);
    }
    Ok(line)
}

/// What a fingerprint job needs besides its hosts.
#[derive(Debug, Clone)]
pub(super) struct FingerprintJob {
    pub ssh: SshSettings,
    pub concurrency: usize,
    pub timeout: Duration,
    /// Where outcomes are recorded (as `fleetctl fingerprint` records them).
    pub inventory: Option<PathBuf>,
}

/// Fingerprints `hosts` over SSH; each host's outcome goes to the actor.
pub(super) async fn fingerprint(
    id: JobId,
    hosts: Vec<IpAddr>,
    job: FingerprintJob,
    cancel: CancellationToken,
    tx: mpsc::UnboundedSender<JobMsg>,
) {
    let result = run_fingerprint(id, hosts, job, &cancel, &tx).await;
    end(&tx, id, &cancel, result);
}

async fn run_fingerprint(
    id: JobId,
    hosts: Vec<IpAddr>,
    job: FingerprintJob,
    cancel: &CancellationToken,
    tx: &mpsc::UnboundedSender<JobMsg>,
) -> Result<String, String> {
    let (connector, targets) = ssh_setup(id, &job.ssh, &hosts, tx).await?;
    let total = targets.len() as u64;
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    let running = tokio::spawn(fingerprint_job::run(
        connector,
        targets,
        job.concurrency,
        job.timeout,
        cancel.clone(),
        out_tx,
    ));
    let _ = tx.send(JobMsg::Progress { id, done: 0, total });
    let (mut done, mut failed) = (0, 0);
    let mut results = Vec::new();
    while let Some(result) = out_rx.recv().await {
        done += 1;
        failed += u64::from(result.failure.is_some());
        results.push(result.clone());
        let _ = tx.send(JobMsg::Fingerprinted {
            result: Box::new(result),
        });
        let _ = tx.send(JobMsg::Progress { id, done, total });
    }
    running
        .await
        .map_err(|e| format!("the fingerprint task failed: {e}"))?;
    if let Some(path) = job.inventory {
        let record = tokio::task::spawn_blocking(move || {
            Inventory::open(&path)?.record_fingerprints(&results)
        })
        .await;
        match record {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("fingerprinted but not recorded: {e}")),
            Err(e) => return Err(format!("the inventory writer stopped: {e}")),
        }
    }
    Ok(format!("{} ok, {failed} failed of {total}", done - failed))
}

/// Reads ssh_config and known_hosts, and resolves each host to a target;
/// questions (passphrases, unknown host keys) go to the front end on
/// behalf of job `id`.
pub(super) async fn ssh_setup(
    id: JobId,
    ssh: &SshSettings,
    hosts: &[IpAddr],
    tx: &mpsc::UnboundedSender<JobMsg>,
) -> Result<(Arc<Connector>, Vec<SshTarget>), String> {
    let (config, connector) = tokio::task::spawn_blocking({
        let ssh = ssh.clone();
        let prompter = Arc::new(EnginePrompter::new(Some(id), tx.clone()));
        move || {
            let config = SshConfig::load(&ssh.ssh_config).map_err(|e| e.to_string())?;
            let connector = Connector::new(&ssh.known_hosts, ssh.policy, prompter)
                .map_err(|e| format!("cannot read known_hosts: {e}"))?;
            Ok::<_, String>((config, connector))
        }
    })
    .await
    .map_err(|e| format!("the SSH setup stopped: {e}"))??;
    let local = LocalUser::current();
    let targets = hosts
        .iter()
        .map(|addr| SshTarget::resolve(&addr.to_string(), &ssh.flags, &config, &local))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((Arc::new(connector), targets))
}
