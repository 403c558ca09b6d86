//! The sending thread: takes probes from the schedule as the rate allows,
//! builds them, and sends each batch with as few system calls as the kernel
//! takes (one per address family).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::packet::{self, REQUEST_LEN};
use super::schedule::{ECHO, Probe, Schedule, Targets};
use super::{Shared, Sockets};
use crate::scan::pacer::{MAX_BATCH, TokenBucket};
use crate::scan::syn::{self, Sources, SynSocket};
use crate::scan::tcp::SSH_PORT;
use crate::scan::{ProbePlan, ScanProgress, batch, ipv4};

/// The longest the thread sleeps at once, so a cancel is seen promptly.
const MAX_IDLE: Duration = Duration::from_millis(10);
/// Packets per second one sending thread is given; past it (or unlimited)
/// a second one shares the batches.
const ONE_CORE_RATE: u32 = 50_000;
/// How long to wait when a timeout passed but the receiver has yet to
/// read the answers that came before it.
const WAIT_FOR_RECEIVER: Duration = Duration::from_millis(1);
/// Room for the longest probe: a SYN or an echo with its IPv4 header.
const PACKET_MAX: usize = 48;

impl Targets for Shared {
    fn wanted(&self, index: usize) -> u8 {
        self.wanted[index]
    }

    fn answered(&self, index: usize) -> u8 {
        self.answered[index].load(Ordering::Acquire)
    }

    fn timeout(&self, index: usize) -> Duration {
        self.timeouts().timeout_for(self.targets[index])
    }

    fn last_timeout(&self, index: usize) -> Duration {
        self.timeouts().last_timeout_for(self.targets[index])
    }
}

/// Sends until the schedule is finished or `cancel` fires.
pub(super) fn run(
    shared: &Shared,
    sockets: &Arc<Sockets>,
    syn: Option<&SynSocket>,
    plan: ProbePlan,
    cancel: &CancellationToken,
    progress: &ScanProgress,
) {
    let mut schedule = Schedule::new(shared.targets.len(), plan.retries);
    let mut bucket = TokenBucket::new(plan.rate, shared.elapsed());
    let mut probes = Vec::with_capacity(MAX_BATCH);
    let mut sources = Sources::default();
    let mut helper = Helper::start(plan.rate, sockets);
    let (mut sent, mut last_sent) = (0, Duration::ZERO);
    while !cancel.is_cancelled() {
        let now = shared.elapsed();
        let budget = bucket.available(now);
        if budget < bucket.batch() {
            // Wait for a full batch's credit: at high rates many probes
            // share one system call, at low ones it is one packet anyway.
            sleep(bucket.wait_for(bucket.batch()));
            continue;
        }
        probes.clear();
        // Answers read up to `heard`; should the receiver stall, a deadline
        // is still kept within one more ceiling.
        let heard = shared.heard().max(now.saturating_sub(plan.timeout));
        schedule.fill(now, heard, budget, shared, &mut probes);
        if !probes.is_empty() {
            let out = Outbox::build(shared, sockets, syn, &mut sources, &probes, now);
            match &mut helper {
                Some(helper) => helper.send(out, sockets),
                None => out.send(sockets),
            }
            bucket.spend(probes.len());
            sent += probes.len();
            last_sent = now;
            progress
                .probed
                .store(schedule.started() as u64, Ordering::Relaxed);
            continue;
        }
        if schedule.finished() {
            tracing::debug!(
                probes = sent,
                last_sent = ?last_sent,
                finished = ?now,
                "sending done"
            );
            return;
        }
        // Nothing due: sleep until the oldest waiting target's timeout, or
        // until the receiver wakes us because the last target answered.
        let wait = match schedule.next_due(shared) {
            Some(due) if due > now => due.saturating_sub(now),
            // Due, but the receiver has not read that far yet.
            Some(_) => WAIT_FOR_RECEIVER,
            None => MAX_IDLE,
        };
        std::thread::park_timeout(wait.clamp(Duration::from_micros(100), MAX_IDLE));
    }
}

/// A second sending thread for when one core cannot keep up: on loopback
/// and virtual links the kernel does a packet's whole journey, answer
/// included, on the core that sent it, so at full speed every other batch
/// goes out from this thread and the kernel's work is spread over two cores.
struct Helper {
    batches: Option<std::sync::mpsc::SyncSender<Outbox>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Whose turn the next batch is.
    theirs: bool,
}

impl Helper {
    /// A helper when the rate asks for more than one core sends (unlimited,
    /// or over [`ONE_CORE_RATE`]) and there is a second core.
    fn start(rate: u32, sockets: &Arc<Sockets>) -> Option<Self> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        if cores < 2 || (rate != 0 && rate <= ONE_CORE_RATE) {
            return None;
        }
        // One batch in hand at most: the rate is kept when batches are made.
        let (batches, queue) = std::sync::mpsc::sync_channel::<Outbox>(1);
        let sockets = Arc::clone(sockets);
        let thread = std::thread::Builder::new()
            .name("scan-send-2".into())
            .spawn(move || {
                for out in queue {
                    out.send(&sockets);
                }
            })
            .inspect_err(|e| tracing::debug!(error = %e, "one sending thread only"))
            .ok()?;
        Some(Self {
            batches: Some(batches),
            thread: Some(thread),
            theirs: false,
        })
    }

    fn send(&mut self, out: Outbox, sockets: &Sockets) {
        self.theirs = !self.theirs;
        match &self.batches {
            Some(batches) if self.theirs => {
                if let Err(std::sync::mpsc::SendError(out)) = batches.send(out) {
                    out.send(sockets); // the helper is gone: send it here
                }
            }
            _ => out.send(sockets),
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.batches = None; // ends the helper's loop
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn sleep(d: Duration) {
    std::thread::sleep(d.min(MAX_IDLE));
}

/// One batch's packets, per address family, and where each goes.
#[derive(Default)]
struct Outbox {
    v4: Vec<([u8; PACKET_MAX], usize)>,
    v4_dests: Vec<SocketAddr>,
    v6: Vec<([u8; PACKET_MAX], usize)>,
    v6_dests: Vec<SocketAddr>,
}

impl Outbox {
    /// Builds `probes`' packets, recording when each target's round went.
    fn build(
        shared: &Shared,
        sockets: &Sockets,
        syn: Option<&SynSocket>,
        sources: &mut Sources,
        probes: &[Probe],
        now: Duration,
    ) -> Self {
        let mut out = Self::default();
        let now_ns = now.as_nanos() as u64;
        let header_v4 = sockets.raw_v4.is_some();
        for probe in probes {
            let index = probe.index as usize;
            if probe.first {
                shared.sent_ns[index].store(now_ns, Ordering::Release);
                let rounds = &shared.rounds[index];
                let before =
                    rounds.fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| r.checked_add(1));
                if before == Ok(0) {
                    shared.first_sent_ns[index].store(now_ns, Ordering::Release);
                }
            }
            let addr = shared.targets[index];
            let mut buf = [0u8; PACKET_MAX];
            let len = match (addr, probe.kind) {
                (IpAddr::V4(dst), ECHO) => {
                    let echo = packet::echo_request(false, shared.ident, probe.index, now_ns);
                    if header_v4 {
                        let ip = ipv4::header(
                            Ipv4Addr::UNSPECIFIED,
                            dst,
                            ipv4::PROTO_ICMP,
                            REQUEST_LEN,
                            ipv4::id_for(probe.index),
                        );
                        buf[..ipv4::HEADER_LEN].copy_from_slice(&ip);
                        buf[ipv4::HEADER_LEN..ipv4::HEADER_LEN + REQUEST_LEN]
                            .copy_from_slice(&echo);
                        ipv4::HEADER_LEN + REQUEST_LEN
                    } else {
                        buf[..REQUEST_LEN].copy_from_slice(&echo);
                        REQUEST_LEN
                    }
                }
                (IpAddr::V4(dst), _) => {
                    let (Some(syn), Some(src)) = (syn, sources.for_dest(dst)) else {
                        continue;
                    };
                    buf[..syn::PACKET_LEN].copy_from_slice(&syn.packet(
                        src,
                        dst,
                        SSH_PORT,
                        probe.index,
                    ));
                    syn::PACKET_LEN
                }
                (IpAddr::V6(_), _) => {
                    let echo = packet::echo_request(true, shared.ident, probe.index, now_ns);
                    buf[..REQUEST_LEN].copy_from_slice(&echo);
                    REQUEST_LEN
                }
            };
            let dest = SocketAddr::new(addr, 0);
            if addr.is_ipv4() {
                out.v4.push((buf, len));
                out.v4_dests.push(dest);
            } else {
                out.v6.push((buf, len));
                out.v6_dests.push(dest);
            }
        }
        out
    }

    fn send(&self, sockets: &Sockets) {
        let v4_socket = sockets
            .raw_v4
            .as_ref()
            .map(|r| r.0.as_fd())
            .or_else(|| sockets.v4.as_ref().map(|s| s.fd()));
        for (socket, packets, dests) in [
            (v4_socket, &self.v4, &self.v4_dests),
            (
                sockets.v6.as_ref().map(|s| s.fd()),
                &self.v6,
                &self.v6_dests,
            ),
        ] {
            let Some(socket) = socket else { continue };
            if packets.is_empty() {
                continue;
            }
            let slices: Vec<&[u8]> = packets.iter().map(|(b, len)| &b[..*len]).collect();
            batch::send(socket, &slices, dests);
        }
    }
}
