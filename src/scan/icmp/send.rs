//! The sending thread: takes probes from the schedule as the rate allows,
//! builds them, and sends each batch with as few system calls as the kernel
//! takes (one per address family).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
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
}

/// Sends until the schedule is finished or `cancel` fires.
pub(super) fn run(
    shared: &Shared,
    sockets: &Sockets,
    syn: Option<&SynSocket>,
    plan: ProbePlan,
    cancel: &CancellationToken,
    progress: &ScanProgress,
) {
    let mut schedule = Schedule::new(shared.targets.len(), plan.retries);
    let mut bucket = TokenBucket::new(plan.rate, shared.elapsed());
    let mut probes = Vec::with_capacity(MAX_BATCH);
    let mut out = Outbox::default();
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
            out.build(shared, sockets, syn, &probes, now);
            out.send(sockets);
            bucket.spend(probes.len());
            progress
                .probed
                .store(schedule.started() as u64, Ordering::Relaxed);
            continue;
        }
        if schedule.finished() {
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
    sources: Sources,
}

impl Outbox {
    fn build(
        &mut self,
        shared: &Shared,
        sockets: &Sockets,
        syn: Option<&SynSocket>,
        probes: &[Probe],
        now: Duration,
    ) {
        self.v4.clear();
        self.v4_dests.clear();
        self.v6.clear();
        self.v6_dests.clear();
        let now_ns = now.as_nanos() as u64;
        let header_v4 = sockets.raw_v4.is_some();
        for probe in probes {
            let index = probe.index as usize;
            if probe.first {
                shared.sent_ns[index].store(now_ns, Ordering::Release);
                let rounds = &shared.rounds[index];
                let _ =
                    rounds.fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| r.checked_add(1));
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
                    let (Some(syn), Some(src)) = (syn, self.sources.for_dest(dst)) else {
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
                self.v4.push((buf, len));
                self.v4_dests.push(dest);
            } else {
                self.v6.push((buf, len));
                self.v6_dests.push(dest);
            }
        }
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
