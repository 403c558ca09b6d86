//! TCP connect discovery, for when ICMP is not permitted or is filtered.
//!
//! A host is alive when any port in the list accepts a connection or
//! actively refuses it (a RST proves something answered). One loop drives
//! every connection attempt as a future in a bounded set: no task per
//! address, and never more sockets open than the file-descriptor budget.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::join_all;
use futures_util::stream::FuturesUnordered;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::banner::read_ssh_banner;
use super::pacer::Pacer;
use super::{Found, Job, ProbePlan};
use crate::model::Via;

pub const SSH_PORT: u16 = 22;

/// What one connection attempt learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortAnswer {
    /// Connected; for port 22, the SSH banner if one came.
    Open {
        rtt: Duration,
        banner: Option<String>,
    },
    /// Actively refused: the host is up, the port is closed.
    Closed { rtt: Duration },
    /// Timed out or unreachable.
    Nothing,
}

/// Connects once to `addr:port`. On port 22 a connection that opens is kept
/// for up to `banner_timeout` to read the SSH identification line.
pub async fn probe_port(
    addr: IpAddr,
    port: u16,
    timeout: Duration,
    banner_timeout: Option<Duration>,
) -> PortAnswer {
    let start = Instant::now();
    match tokio::time::timeout(timeout, TcpStream::connect(SocketAddr::new(addr, port))).await {
        Ok(Ok(mut stream)) => {
            let rtt = start.elapsed();
            let banner = match banner_timeout {
                Some(t) if port == SSH_PORT => read_ssh_banner(&mut stream, t).await,
                _ => None,
            };
            PortAnswer::Open { rtt, banner }
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => PortAnswer::Closed {
            rtt: start.elapsed(),
        },
        Ok(Err(e)) => {
            tracing::trace!(%addr, port, error = %e, "connect failed");
            PortAnswer::Nothing
        }
        Err(_) => PortAnswer::Nothing,
    }
}

/// Probes every port of one host at once, retrying while none answers.
async fn probe_host(
    index: usize,
    addr: IpAddr,
    ports: Arc<[u16]>,
    plan: ProbePlan,
    banner_timeout: Option<Duration>,
) -> Option<Found> {
    for _attempt in 0..=plan.retries {
        let answers = join_all(
            ports
                .iter()
                .map(|&port| probe_port(addr, port, plan.timeout, banner_timeout)),
        )
        .await;
        let mut found: Option<Found> = None;
        for (&port, answer) in ports.iter().zip(answers) {
            let (rtt, open, banner) = match answer {
                PortAnswer::Open { rtt, banner } => (rtt, true, banner),
                PortAnswer::Closed { rtt } => (rtt, false, None),
                PortAnswer::Nothing => continue,
            };
            let entry = found.get_or_insert_with(|| Found::alive(index, Via::Tcp(port), rtt));
            // The fastest answer is the one that proved the host alive.
            if rtt < entry.rtt {
                entry.via = Via::Tcp(port);
                entry.rtt = rtt;
            }
            if open {
                entry.open_ports.push(port);
            }
            entry.ssh_banner = entry.ssh_banner.take().or(banner);
        }
        if found.is_some() {
            return found;
        }
    }
    None
}

/// Probes every target; reports each live one on `found`.
pub async fn run(
    job: Job,
    ports: Arc<[u16]>,
    banner_timeout: Option<Duration>,
    max_in_flight: usize,
) {
    let Job {
        targets,
        plan,
        cancel,
        found,
        progress,
    } = job;
    let per_host = ports.len().max(1);
    let max_hosts = (max_in_flight / per_host).max(1);
    // The rate counts connection attempts (SYN packets), as for ICMP.
    let mut pacer = Pacer::new(plan.rate.div_ceil(per_host as u32));
    let mut in_flight = FuturesUnordered::new();
    let mut next = 0;
    loop {
        let can_start = next < targets.len() && in_flight.len() < max_hosts;
        if !can_start && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            Some(outcome) = in_flight.next(), if !in_flight.is_empty() => {
                if let Some(host) = outcome {
                    let _ = found.send(vec![host]);
                }
            }
            () = pacer.tick(), if can_start => {
                let addr = targets[next];
                in_flight.push(probe_host(next, addr, Arc::clone(&ports), plan, banner_timeout));
                progress.probed.fetch_add(1, Ordering::Relaxed);
                next += 1;
            }
        }
    }
}
