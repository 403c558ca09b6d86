//! Host discovery: which addresses answer, how, and what runs on port 22.
//!
//! ```text
//!  targets ──▶ prober (icmp+syn:22 | tcp) ──Found──▶ run() ──▶ enrich ──HostScan──▶ caller
//!              icmp: a sending and a receiving      merge,    ssh banner,
//!              thread, batched, adaptive timeouts   silent    reverse DNS
//!              tcp: one loop of connects
//! ```
//!
//! The ICMP prober's pace: [`pacer::TokenBucket`] keeps `--rate`,
//! [`timing::Timeouts`] learns how long to wait, [`batch`] moves many
//! packets per system call (see [`icmp`]).
//!
//! Usable alone: inputs are arguments, results stream out on a channel,
//! progress is a set of counters the caller reads when it wants.

pub mod banner;
pub mod batch;
mod bpf;
pub mod checksum;
pub mod icmp;
pub mod ipv4;
pub mod pacer;
pub mod reverse_dns;
pub mod syn;
pub mod targets;
pub mod tcp;
pub mod timing;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::model::{HostScan, Reach, Via};
use icmp::{IcmpError, IcmpProber};

/// How to probe, as the operator asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MethodChoice {
    /// ICMP echo when permitted, else TCP connect.
    #[default]
    Auto,
    /// ICMP echo only.
    Icmp,
    /// TCP connect to the port list.
    Tcp,
}

/// The probe method a scan actually uses.
#[derive(Debug)]
pub enum Method {
    Icmp(IcmpProber),
    Tcp,
}

impl Method {
    /// Short name, for summaries and the inventory.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Method::Icmp(_) => "icmp",
            Method::Tcp => "tcp",
        }
    }

    /// Opens what `choice` needs; `probe_ssh` asks ICMP scans to learn
    /// port 22 too. With `Auto`, falls back to TCP when ICMP is not permitted
    /// and returns a note saying so, for the operator.
    pub fn choose(
        choice: MethodChoice,
        targets: &[IpAddr],
        probe_ssh: bool,
    ) -> Result<(Self, Option<String>), IcmpError> {
        match choice {
            MethodChoice::Tcp => Ok((Method::Tcp, None)),
            MethodChoice::Icmp => Ok((Method::Icmp(IcmpProber::open(targets, probe_ssh)?), None)),
            MethodChoice::Auto => match IcmpProber::open(targets, probe_ssh) {
                Ok(prober) => Ok((Method::Icmp(prober), None)),
                Err(IcmpError::NotPermitted) => Ok((
                    Method::Tcp,
                    Some(
                        "ICMP is not permitted for this user (needs root or CAP_NET_RAW); \
                         probing with TCP connect instead"
                            .to_string(),
                    ),
                )),
                Err(e) => Err(e),
            },
        }
    }
}

/// Timing shared by both probers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbePlan {
    /// Probe packets per second; 0 for no limit.
    pub rate: u32,
    /// How long to wait for an answer before retrying or giving up.
    pub timeout: Duration,
    /// Extra attempts for targets that have not answered.
    pub retries: u32,
}

/// Everything a scan needs besides its targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOptions {
    pub plan: ProbePlan,
    /// Ports for TCP discovery.
    pub ports: Vec<u16>,
    /// Read the SSH banner of hosts with port 22 open, waiting this long.
    pub banner_timeout: Option<Duration>,
    /// Look up reverse DNS names of live hosts.
    pub resolve: bool,
    /// Most sockets open at once for TCP probes and banner reads.
    pub max_in_flight: usize,
}

/// Live counters, read by front ends whenever they draw.
#[derive(Debug, Default)]
pub struct ScanProgress {
    /// Addresses in the scan.
    pub total: usize,
    /// Addresses sent their first probe.
    pub probed: AtomicU64,
    /// Addresses found alive so far.
    pub alive: AtomicU64,
}

impl ScanProgress {
    #[must_use]
    pub fn new(total: usize) -> Self {
        Self {
            total,
            ..Self::default()
        }
    }
}

/// What is known of port 22 when a host is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port22 {
    /// Not probed by the prober: connect to learn it.
    Unprobed,
    Open,
    Closed,
    /// Probed, never answered: filtered.
    Silent,
}

/// A prober's report that a target answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub index: usize,
    pub via: Via,
    pub rtt: Duration,
    pub open_ports: Vec<u16>,
    pub ssh_banner: Option<String>,
    pub port22: Port22,
}

impl Found {
    #[must_use]
    pub fn alive(index: usize, via: Via, rtt: Duration) -> Self {
        Self {
            index,
            via,
            rtt,
            open_ports: Vec::new(),
            ssh_banner: None,
            port22: Port22::Unprobed,
        }
    }
}

/// What a prober gets to do its work.
pub struct Job {
    pub targets: Arc<[IpAddr]>,
    pub plan: ProbePlan,
    pub cancel: CancellationToken,
    /// Answers, in batches: one message per batch read keeps the wake-ups
    /// of the task merging them far below one per packet.
    pub found: mpsc::UnboundedSender<Vec<Found>>,
    pub progress: Arc<ScanProgress>,
}

/// How a scan ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanSummary {
    pub method: &'static str,
    pub total: usize,
    pub alive: usize,
    pub silent: usize,
    /// Not probed to the end because the scan was cancelled.
    pub unknown: usize,
    pub elapsed: Duration,
    pub interrupted: bool,
}

/// Scans `targets` and sends each host's outcome on `out` as soon as it is
/// known: live hosts as they answer, silent ones when the last timeout ends.
/// On cancel, stops probing and returns; unfinished targets are not sent.
pub async fn run(
    targets: Arc<[IpAddr]>,
    method: Method,
    opts: ScanOptions,
    cancel: CancellationToken,
    out: mpsc::UnboundedSender<HostScan>,
    progress: Arc<ScanProgress>,
) -> ScanSummary {
    let started = Instant::now();
    let method_name = method.name();
    let (found_tx, mut found_rx) = mpsc::unbounded_channel();
    let job = Job {
        targets: Arc::clone(&targets),
        plan: opts.plan,
        cancel: cancel.clone(),
        found: found_tx,
        progress: Arc::clone(&progress),
    };
    let Started {
        prober,
        banner_after,
        merge_ssh,
    } = start(method, job, &opts);
    let mut hosts = Collector {
        merge_ssh,
        answered: vec![false; targets.len()],
        awaiting_ssh: HashMap::new(),
        ready: VecDeque::new(),
    };
    let mut alive = 0;
    // Copies of what is being enriched, to report if the scan is cancelled.
    let mut enriching_found: HashMap<usize, Found> = HashMap::new();
    let mut enriching = FuturesUnordered::new();
    let enrich_limit = opts.max_in_flight.clamp(1, 512);
    let mut probing = true;
    loop {
        while enriching.len() < enrich_limit
            && let Some(found) = hosts.ready.pop_front()
        {
            let addr = targets[found.index];
            if !opts.resolve && !wants_banner(&found, banner_after) {
                // Nothing to add: reported at once, without a task.
                alive += 1;
                progress.alive.fetch_add(1, Ordering::Relaxed);
                let _ = out.send(host_from(addr, found));
                continue;
            }
            enriching_found.insert(found.index, found.clone());
            enriching.push(enrich(
                addr,
                found,
                banner_after,
                opts.resolve,
                opts.plan.timeout,
            ));
        }
        if !probing && enriching.is_empty() && hosts.ready.is_empty() {
            break;
        }
        tokio::select! {
            found = found_rx.recv(), if probing => {
                if let Some(batch) = found {
                    hosts.take_all(&targets, batch);
                } else {
                    probing = false; // the prober finished and dropped its sender
                    hosts.prober_done();
                }
            }
            Some((index, host)) = enriching.next(), if !enriching.is_empty() => {
                enriching_found.remove(&index);
                alive += 1;
                progress.alive.fetch_add(1, Ordering::Relaxed);
                let _ = out.send(host);
            }
            () = cancel.cancelled() => {
                // Report every host already seen alive rather than wait for
                // its banner or name.
                while let Ok(batch) = found_rx.try_recv() {
                    hosts.take_all(&targets, batch);
                }
                hosts.prober_done();
                for found in hosts.ready.drain(..).chain(enriching_found.into_values()) {
                    alive += 1;
                    let _ = out.send(host_from(targets[found.index], found));
                }
                break;
            }
        }
    }
    let _ = prober.await;
    let interrupted = cancel.is_cancelled();
    let mut silent = 0;
    if !interrupted {
        for (index, _) in hosts.answered.iter().enumerate().filter(|(_, a)| !**a) {
            silent += 1;
            let _ = out.send(HostScan::new(targets[index], Reach::Silent));
        }
    }
    ScanSummary {
        method: method_name,
        total: targets.len(),
        alive,
        silent,
        unknown: targets.len() - alive - silent,
        elapsed: started.elapsed(),
        interrupted,
    }
}

/// A prober at work, and what its answers need afterwards.
struct Started {
    prober: tokio::task::JoinHandle<()>,
    /// Read SSH banners after the prober, waiting this long.
    banner_after: Option<Duration>,
    /// Merge each host's echo and port 22 answers before reporting it.
    merge_ssh: bool,
}

fn start(method: Method, job: Job, opts: &ScanOptions) -> Started {
    // TCP probes read banners as they go; after ICMP, connect where port 22
    // is open (or was not probed).
    let banner_after = match method {
        Method::Icmp(_) => opts.banner_timeout,
        Method::Tcp => None,
    };
    // With SYNs to port 22, a host's echo and SYN answers are merged before
    // it is reported, so its port 22 is known.
    let merge_ssh = matches!(&method, Method::Icmp(prober) if prober.probes_ssh());
    let prober = match method {
        Method::Icmp(prober) => tokio::spawn(prober.run(job)),
        Method::Tcp => tokio::spawn(tcp::run(
            job,
            opts.ports.clone().into(),
            opts.banner_timeout,
            opts.max_in_flight,
        )),
    };
    Started {
        prober,
        banner_after,
        merge_ssh,
    }
}

/// Turns prober answers into hosts ready to report. With SYNs to port 22,
/// a host's echo and port 22 answers are merged first, so its port 22 is known.
struct Collector {
    merge_ssh: bool,
    /// Reported, or on its way to be.
    answered: Vec<bool>,
    /// Alive by one answer, waiting for the other.
    awaiting_ssh: HashMap<usize, Found>,
    ready: VecDeque<Found>,
}

impl Collector {
    fn take_all(&mut self, targets: &[IpAddr], batch: Vec<Found>) {
        for found in batch {
            self.take(targets[found.index], found);
        }
    }

    fn take(&mut self, addr: IpAddr, found: Found) {
        let index = found.index;
        if self.answered[index] {
            return; // reported already; a late second answer adds nothing
        }
        if !(self.merge_ssh && addr.is_ipv4()) {
            self.answered[index] = true;
            self.ready.push_back(found);
            return;
        }
        match self.awaiting_ssh.remove(&index) {
            Some(first) => {
                // One is the echo, the other port 22's answer. The echo names
                // how the host answered (the method asked for); the SYN
                // answer says what port 22 is.
                let (mut echo, syn) = if first.port22 == Port22::Unprobed {
                    (first, found)
                } else {
                    (found, first)
                };
                echo.port22 = syn.port22;
                echo.open_ports.extend(syn.open_ports);
                self.answered[index] = true;
                self.ready.push_back(echo);
            }
            None => {
                self.awaiting_ssh.insert(index, found);
            }
        }
    }

    /// The prober is done: a host that answered the echo but not on port 22
    /// is filtered there; one that answered only on port 22 drops ICMP.
    fn prober_done(&mut self) {
        for (index, mut found) in self.awaiting_ssh.drain() {
            self.answered[index] = true;
            if found.port22 == Port22::Unprobed {
                found.port22 = Port22::Silent;
            }
            self.ready.push_back(found);
        }
    }
}

fn host_from(addr: IpAddr, found: Found) -> HostScan {
    HostScan {
        addr,
        name: None,
        reach: Reach::Alive,
        via: Some(found.via),
        rtt_ms: Some(found.rtt.as_secs_f64() * 1000.0),
        open_ports: found.open_ports,
        ssh_banner: found.ssh_banner,
    }
}

/// Whether a banner is to be read from this host: asked for, and port 22
/// open or not probed yet.
fn wants_banner(found: &Found, banner_timeout: Option<Duration>) -> bool {
    banner_timeout.is_some() && matches!(found.port22, Port22::Unprobed | Port22::Open)
}

/// Adds what a second look finds: the SSH banner when the prober could not
/// see port 22, and the reverse DNS name when asked for.
async fn enrich(
    addr: IpAddr,
    found: Found,
    banner_timeout: Option<Duration>,
    resolve: bool,
    connect_timeout: Duration,
) -> (usize, HostScan) {
    let index = found.index;
    let connect_22 = wants_banner(&found, banner_timeout);
    let banner = async {
        match banner_timeout {
            Some(t) if connect_22 => {
                Some(tcp::probe_port(addr, tcp::SSH_PORT, connect_timeout, Some(t)).await)
            }
            _ => None,
        }
    };
    let name = async {
        if resolve {
            reverse_dns::lookup(addr).await
        } else {
            None
        }
    };
    let (port22, name) = tokio::join!(banner, name);
    let mut host = host_from(addr, found);
    host.name = name;
    if let Some(tcp::PortAnswer::Open { banner, .. }) = port22 {
        if !host.open_ports.contains(&tcp::SSH_PORT) {
            host.open_ports.push(tcp::SSH_PORT);
        }
        host.ssh_banner = banner;
    }
    (index, host)
}
