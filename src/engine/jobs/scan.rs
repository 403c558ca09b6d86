//! The scan job: discovery over [`crate::scan`], each host reported as it
//! is found; with SSH, hosts showing port 22 fingerprinted while the scan
//! goes on; the scan (and the facts) recorded in the inventory.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{JobError, JobOutput, Reporter, SshReach, SshRequest, blocking};
use crate::engine::{Questions, ScanConfig, SshSettings};
use crate::fingerprint::job as fingerprint_job;
use crate::model::{Fingerprint, HostScan, Reach};
use crate::scan::targets::{self, TargetSpec};
use crate::scan::{self, Method, MethodChoice, ProbePlan, ScanOptions, ScanProgress};
use crate::ssh::SshTarget;
use crate::store::{Inventory, ScanId};

/// Where a scan with SSH connects: the port it found SSH on.
pub const SSH_PORT: u16 = 22;
/// How often a running scan reports progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// How long a scan waits for a host name to resolve.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// A scan as asked for (`fleetctl scan`'s flags, the console's `:scan`
/// line); what it leaves unset comes from `[scan]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanRequest {
    /// 10.0.0.0/24, fd00::/120, 10.0.0.5-40, 10.0.0.7, host.example.com, @file.
    pub targets: Vec<String>,
    /// Left out of the targets (the same forms).
    pub exclude: Vec<String>,
    pub method: Option<MethodChoice>,
    pub ports: Option<Vec<u16>>,
    /// Probe packets per second, 0 for no limit.
    pub rate: Option<u32>,
    pub timeout: Option<Duration>,
    pub retries: Option<u32>,
    pub max_hosts: Option<u64>,
    /// Look up reverse DNS names of live hosts (whatever `[scan]` says).
    pub resolve: bool,
    /// Read no SSH banners (whatever `[scan]` says).
    pub no_banner: bool,
    /// Fingerprint live hosts with SSH on port 22 as they are found.
    pub ssh: Option<SshRequest>,
}

impl ScanRequest {
    /// A scan of `text`'s targets, space separated, with the settings' defaults.
    #[must_use]
    pub fn targets(text: &str) -> Self {
        Self {
            targets: text.split_whitespace().map(str::to_owned).collect(),
            ..Self::default()
        }
    }
}

/// A scan's settings in effect.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanSettings {
    pub method: MethodChoice,
    pub max_hosts: u64,
    pub options: ScanOptions,
}

impl ScanSettings {
    /// The config's `[scan]`, then what `request` sets; never more than
    /// `max_in_flight` sockets at once. Pure, so it is tested directly.
    #[must_use]
    pub fn resolve(request: &ScanRequest, config: &ScanConfig, max_in_flight: usize) -> Self {
        // Fingerprinting needs to know where port 22 answers.
        let ssh = request.ssh.is_some();
        let ssh_banner = (config.ssh_banner && !request.no_banner) || ssh;
        let mut ports = request
            .ports
            .clone()
            .unwrap_or_else(|| config.ports.clone());
        if ssh && !ports.contains(&SSH_PORT) {
            ports.push(SSH_PORT);
        }
        Self {
            method: request.method.unwrap_or(config.method),
            max_hosts: request.max_hosts.unwrap_or(config.max_hosts),
            options: ScanOptions {
                plan: ProbePlan {
                    rate: request.rate.unwrap_or(config.rate),
                    timeout: request.timeout.unwrap_or(config.timeout),
                    retries: request.retries.unwrap_or(config.retries),
                },
                ports,
                banner_timeout: ssh_banner.then_some(config.banner_timeout),
                resolve: request.resolve || config.resolve,
                max_in_flight: config.max_in_flight.min(max_in_flight).max(1),
            },
        }
    }
}

/// What a scan job gets from the engine besides its request.
pub(in crate::engine) struct ScanJob {
    pub config: ScanConfig,
    pub max_in_flight: usize,
    pub inventory: Option<PathBuf>,
    pub ssh: SshSettings,
    pub questions: Questions,
}

/// Runs the scan `request` asks for and reports how it ended.
pub(in crate::engine) async fn run(
    request: ScanRequest,
    job: ScanJob,
    cancel: CancellationToken,
    report: Reporter,
) {
    let result = scan(request, job, &cancel, &report).await;
    report.end(&cancel, result).await;
}

async fn scan(
    request: ScanRequest,
    job: ScanJob,
    cancel: &CancellationToken,
    report: &Reporter,
) -> Result<String, JobError> {
    let settings = ScanSettings::resolve(&request, &job.config, job.max_in_flight);
    // SSH first: a bad ssh_config or jump host is said before anything is probed.
    let mut fingerprints = match &request.ssh {
        Some(ssh) => {
            let mut ssh = ssh.over(&job.ssh);
            ssh.flags.port = Some(SSH_PORT);
            let reach = SshReach::open(ssh, report.prompter(&job.questions), report).await?;
            Some(Fingerprinting::start(reach, cancel))
        }
        None => None,
    };
    let addrs = addresses(&request, settings.max_hosts).await?;
    let probe_ssh = settings.options.banner_timeout.is_some();
    let (method, note) = Method::choose(settings.method, &addrs, probe_ssh)
        .map_err(|e| JobError::BadRequest(e.to_string()))?;
    if let Some(note) = &note {
        report.output(JobOutput::Note(note.clone())).await;
    }
    let method_name = method.name();
    // A scan that could not be recorded does not start.
    let record = match job.inventory {
        Some(path) => Some(Record::begin(path, request.targets.join(" "), method_name).await?),
        None => None,
    };
    report
        .output(JobOutput::ScanStarted {
            targets: Arc::clone(&addrs),
            method: method_name,
            names: settings.options.resolve,
        })
        .await;

    let total = addrs.len() as u64;
    let progress = Arc::new(ScanProgress::new(addrs.len()));
    let (host_tx, mut hosts) = mpsc::unbounded_channel();
    let running = tokio::spawn(scan::run(
        Arc::clone(&addrs),
        method,
        settings.options,
        cancel.clone(),
        host_tx,
        Arc::clone(&progress),
    ));
    let mut found = Vec::new();
    let mut facts = Vec::new();
    let mut discovering = true;
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    while discovering || fingerprints.as_ref().is_some_and(|f| f.running) {
        tokio::select! {
            host = hosts.recv(), if discovering => {
                if let Some(host) = host {
                    let fingerprinting = fingerprints.as_mut().is_some_and(|f| f.take(&host));
                    found.push(host.clone());
                    report.output(JobOutput::Scanned { host, fingerprinting }).await;
                } else {
                    discovering = false;
                    if let Some(f) = &mut fingerprints {
                        f.discovery_done();
                    }
                }
            }
            done = next_fingerprint(fingerprints.as_mut()) => {
                if let Some(fingerprint) = done {
                    facts.push(fingerprint.clone());
                    report.output(JobOutput::Fingerprinted(Box::new(fingerprint))).await;
                }
            }
            _ = tick.tick() => {
                report.progress(progress.probed.load(Ordering::Relaxed), total).await;
            }
        }
    }
    let summary = running
        .await
        .map_err(|e| JobError::stopped("scan task", &e))?;
    report.progress(total, total).await;
    if let Some(record) = record {
        record.finish(found, facts.clone(), summary.clone()).await?;
    }
    let mut line = format!(
        "{} alive, {} silent of {} ({method_name}, {:.1}s)",
        summary.alive,
        summary.silent,
        summary.total,
        summary.elapsed.as_secs_f64()
    );
    if !facts.is_empty() {
        let failed = facts.iter().filter(|f| f.failure.is_some()).count();
        let _ = write!(
            line,
            "; {} fingerprinted, {failed} failed",
            facts.len() - failed
        );
    }
    if let Some(note) = note {
        line.push_str("; ");
        line.push_str(&note);
    }
    report.output(JobOutput::ScanDone(summary)).await;
    Ok(line)
}

/// The addresses the targets name, less the excluded ones.
async fn addresses(request: &ScanRequest, max_hosts: u64) -> Result<Arc<[IpAddr]>, JobError> {
    // `@file` targets are read from disk: off the runtime's threads.
    let (targets, exclude) = {
        let (t, x) = (request.targets.clone(), request.exclude.clone());
        blocking("target reader", move || {
            Ok((parse_all(&t)?, parse_all(&x)?))
        })
        .await?
    };
    let bad = |e: targets::TargetError| JobError::BadRequest(e.to_string());
    let targets = targets::resolve_names(targets, LOOKUP_TIMEOUT)
        .await
        .map_err(bad)?;
    let exclude = targets::resolve_names(exclude, LOOKUP_TIMEOUT)
        .await
        .map_err(bad)?;
    Ok(targets::expand(&targets, &exclude, max_hosts)
        .map_err(bad)?
        .into())
}

fn parse_all(inputs: &[String]) -> Result<Vec<TargetSpec>, JobError> {
    let mut specs = Vec::new();
    for input in inputs {
        specs
            .extend(targets::parse_target(input).map_err(|e| JobError::BadRequest(e.to_string()))?);
    }
    Ok(specs)
}

/// The scan's row in the inventory, begun before the first probe.
struct Record {
    inventory: Inventory,
    id: ScanId,
}

impl Record {
    async fn begin(path: PathBuf, targets: String, method: &'static str) -> Result<Self, JobError> {
        blocking("inventory writer", move || {
            let begin = || {
                let mut inventory = Inventory::open(&path)?;
                let id = inventory.begin_scan(&targets, method)?;
                Ok::<_, crate::store::StoreError>(Self { inventory, id })
            };
            begin().map_err(|e| {
                JobError::Inventory(format!(
                    "cannot record the scan in the inventory (is --data-dir writable?): {e}"
                ))
            })
        })
        .await
    }

    /// Records every host, the totals, and the facts fingerprinting found.
    async fn finish(
        mut self,
        hosts: Vec<HostScan>,
        facts: Vec<Fingerprint>,
        summary: scan::ScanSummary,
    ) -> Result<(), JobError> {
        blocking("inventory writer", move || {
            let mut write = || {
                self.inventory.record_hosts(self.id, &hosts)?;
                self.inventory.finish_scan(
                    self.id,
                    summary.alive,
                    summary.silent,
                    summary.interrupted,
                )?;
                self.inventory.record_fingerprints(&facts)
            };
            write()
                .map_err(|e| JobError::Inventory(format!("the scan ran but was not recorded: {e}")))
        })
        .await
    }
}

/// Fingerprinting during a scan: hosts go in as they are found.
struct Fingerprinting {
    reach: SshReach,
    /// Closed when discovery ends, so the job ends after its last host.
    targets: Option<mpsc::UnboundedSender<SshTarget>>,
    results: mpsc::UnboundedReceiver<Fingerprint>,
    running: bool,
}

impl Fingerprinting {
    fn start(reach: SshReach, cancel: &CancellationToken) -> Self {
        let (target_tx, target_rx) = mpsc::unbounded_channel();
        let (result_tx, results) = mpsc::unbounded_channel();
        tokio::spawn(fingerprint_job::run_stream(
            Arc::clone(&reach.connector),
            target_rx,
            reach.concurrency,
            reach.timeout,
            cancel.clone(),
            result_tx,
        ));
        Self {
            reach,
            targets: Some(target_tx),
            results,
            running: true,
        }
    }

    /// Queues `host` when it showed SSH; `true` when it did.
    fn take(&mut self, host: &HostScan) -> bool {
        let Some(targets) = &self.targets else {
            return false;
        };
        let has_ssh = host.reach == Reach::Alive
            && (host.open_ports.contains(&SSH_PORT) || host.ssh_banner.is_some());
        if !has_ssh {
            return false;
        }
        match self.reach.target(&host.addr.to_string()) {
            Ok(target) => targets.send(target).is_ok(),
            Err(e) => {
                tracing::warn!(addr = %host.addr, "not fingerprinted: {e}");
                false
            }
        }
    }

    fn discovery_done(&mut self) {
        self.targets = None;
    }
}

/// The next fingerprint; never while there is no fingerprinting.
async fn next_fingerprint(job: Option<&mut Fingerprinting>) -> Option<Fingerprint> {
    match job {
        Some(job) if job.running => {
            let next = job.results.recv().await;
            job.running = next.is_some();
            next
        }
        _ => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(request: &ScanRequest, config: &ScanConfig) -> ScanSettings {
        ScanSettings::resolve(request, config, usize::MAX)
    }

    #[test]
    fn defaults_come_from_the_config() {
        let config = ScanConfig {
            rate: 5,
            ports: vec![2222],
            resolve: true,
            ..ScanConfig::default()
        };
        let s = resolve(&ScanRequest::targets("127.0.0.1"), &config);
        assert_eq!(s.options.plan.rate, 5);
        assert_eq!(s.options.ports, [2222]);
        assert!(s.options.resolve);
        assert_eq!(s.options.banner_timeout, Some(Duration::from_secs(2)));
        assert_eq!(s.method, MethodChoice::Auto);
        assert_eq!(s.options.max_in_flight, 4096);
    }

    #[test]
    fn the_request_overrides_the_config() {
        let request = ScanRequest {
            rate: Some(10),
            ports: Some(vec![22, 8022]),
            timeout: Some(Duration::from_secs(2)),
            retries: Some(3),
            method: Some(MethodChoice::Tcp),
            no_banner: true,
            max_hosts: Some(9),
            ..ScanRequest::targets("127.0.0.1")
        };
        let s = resolve(&request, &ScanConfig::default());
        assert_eq!(s.options.plan.rate, 10);
        assert_eq!(s.options.ports, [22, 8022]);
        assert_eq!(s.options.plan.timeout, Duration::from_secs(2));
        assert_eq!(s.options.plan.retries, 3);
        assert_eq!(s.method, MethodChoice::Tcp);
        assert_eq!(s.options.banner_timeout, None);
        assert_eq!(s.max_hosts, 9);
    }

    #[test]
    fn ssh_probes_port_22_whatever_else_is_asked() {
        let config = ScanConfig {
            ssh_banner: false,
            ..ScanConfig::default()
        };
        let request = ScanRequest {
            ports: Some(vec![80]),
            ssh: Some(SshRequest::default()),
            ..ScanRequest::targets("127.0.0.1")
        };
        let s = resolve(&request, &config);
        assert_eq!(s.options.ports, [80, 22]);
        assert!(s.options.banner_timeout.is_some());
    }

    #[test]
    fn sockets_stay_below_the_open_files_limit_however_the_config_reads() {
        let config = ScanConfig {
            max_in_flight: 100_000,
            ..ScanConfig::default()
        };
        let request = ScanRequest::targets("127.0.0.1");
        assert_eq!(
            ScanSettings::resolve(&request, &config, 1000)
                .options
                .max_in_flight,
            1000
        );
        let none = ScanConfig {
            max_in_flight: 0,
            ..ScanConfig::default()
        };
        assert_eq!(
            ScanSettings::resolve(&request, &none, 1000)
                .options
                .max_in_flight,
            1,
            "at least one socket"
        );
    }
}
