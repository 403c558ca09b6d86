//! The receiving thread: reads answers in batches from every socket,
//! matches them to targets, reports them, and feeds their round-trip times
//! to the adaptive timeouts. When sending is over it reads what is still
//! queued, so an answer already in the kernel is never lost to the end.

use std::net::IpAddr;
use std::os::fd::BorrowedFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::schedule::{ECHO, SYN};
use super::{Shared, Sockets, packet};
use crate::model::Via;
use crate::scan::batch::{self, RECV_BATCH, Receiver};
use crate::scan::syn::{PortState, SynSocket};
use crate::scan::tcp::SSH_PORT;
use crate::scan::{Found, Port22};

/// While answers flow, the queues are read this often rather than the
/// thread being woken per packet: a wake-up costs the sending core more than
/// the packet does. The receive buffers hold far more than this much.
const DRAIN_EVERY: Duration = Duration::from_micros(500);
/// Passes that find nothing before the thread goes back to waiting in poll.
const IDLE_PASSES: u32 = 4;
/// How long one wait in poll lasts before the stop flag is looked at (and
/// how far behind "answers read up to" may lag while nothing comes).
const POLL_EVERY: Duration = Duration::from_millis(2);
/// How long the last reading, once sending is over, may go on: a host that
/// keeps answering must not keep the scan from ending.
const FINAL_DRAIN: Duration = Duration::from_millis(100);
/// Batches read from one socket before the others get a turn.
const TURN: usize = 8;

/// What a socket delivers.
#[derive(Clone, Copy)]
enum Answers {
    Echo {
        v6: bool,
        /// Raw IPv4 sockets deliver the IP header; ICMPv6 and ping sockets do not.
        ip_header: bool,
        /// Raw sockets see everyone's echo replies: ours carry our identifier.
        raw: bool,
    },
    Syn,
}

/// Reads and reports answers until `shared.stop` is set and nothing is queued.
pub(super) fn run(shared: &Shared, sockets: &Sockets, syn: Option<&SynSocket>) {
    let mut sources: Vec<(BorrowedFd<'_>, Answers, Receiver)> = Vec::new();
    for s in [&sockets.v4, &sockets.v6].into_iter().flatten() {
        let answers = Answers::Echo {
            v6: s.v6,
            ip_header: s.raw && !s.v6,
            raw: s.raw,
        };
        sources.push((s.fd(), answers, Receiver::new()));
    }
    if let Some(syn) = syn {
        sources.push((syn.fd(), Answers::Syn, Receiver::new()));
    }
    let fds: Vec<BorrowedFd<'_>> = sources.iter().map(|(fd, _, _)| *fd).collect();
    let mut pass = Pass::default();
    let mut idle = IDLE_PASSES;
    let mut drain_until = None;
    loop {
        // Whatever arrived before this is read by the end of this pass, if
        // the pass empties every queue.
        let pass_start = shared.elapsed();
        let stopping = shared.stop.load(Ordering::Acquire);
        if stopping {
            drain_until.get_or_insert(pass_start + FINAL_DRAIN);
        }
        let ready = if stopping || idle < IDLE_PASSES {
            vec![true; fds.len()]
        } else {
            batch::wait_readable(&fds, POLL_EVERY).unwrap_or_else(|e| {
                tracing::debug!(error = %e, "poll failed");
                std::thread::sleep(POLL_EVERY);
                vec![false; fds.len()]
            })
        };
        let mut got = 0;
        let mut emptied = true;
        for ((fd, answers, receiver), ready) in sources.iter_mut().zip(ready) {
            if !ready {
                continue;
            }
            let mut n = RECV_BATCH;
            for _ in 0..TURN {
                let read = receiver.recv(*fd, |data, from| {
                    handle(shared, syn, *answers, data, from, &mut pass);
                });
                n = read.unwrap_or_else(|e| {
                    tracing::debug!(error = %e, "receive error");
                    0
                });
                got += n;
                if n < RECV_BATCH {
                    break;
                }
            }
            emptied &= n < RECV_BATCH;
        }
        pass.flush(shared);
        if emptied {
            shared
                .heard_ns
                .fetch_max(pass_start.as_nanos() as u64, Ordering::AcqRel);
        }
        if stopping && (got == 0 || drain_until.is_some_and(|t| shared.elapsed() > t)) {
            return;
        }
        idle = if got > 0 { 0 } else { idle.saturating_add(1) };
        if idle < IDLE_PASSES && emptied {
            std::thread::sleep(DRAIN_EVERY);
        }
    }
}

/// What one pass learned, handed over at its end in one go.
#[derive(Default)]
struct Pass {
    samples: Vec<(IpAddr, Duration)>,
    found: Vec<Found>,
}

impl Pass {
    fn flush(&mut self, shared: &Shared) {
        if !self.samples.is_empty() {
            let mut timeouts = shared.timeouts();
            for (addr, rtt) in self.samples.drain(..) {
                timeouts.observe(addr, rtt);
            }
        }
        if !self.found.is_empty() {
            let _ = shared.found.send(std::mem::take(&mut self.found));
        }
    }
}

fn handle(
    shared: &Shared,
    syn: Option<&SynSocket>,
    answers: Answers,
    data: &[u8],
    from: Option<IpAddr>,
    pass: &mut Pass,
) {
    let now = shared.elapsed();
    match answers {
        Answers::Echo { v6, ip_header, raw } => {
            let Some(reply) = packet::parse_reply(data, v6, ip_header) else {
                return;
            };
            let index = reply.index as usize;
            let Some(&addr) = shared.targets.get(index) else {
                return;
            };
            if (raw && reply.ident != shared.ident) || from != Some(addr) {
                return; // not ours
            }
            if let Some(rtt) = shared.echo_rtt(index, reply.sent_ns, now) {
                pass.samples.push((addr, rtt));
            }
            if shared.answer(index, ECHO) {
                // The payload times the very probe answered, retry or not.
                let rtt = now.saturating_sub(Duration::from_nanos(reply.sent_ns));
                pass.found.push(Found::alive(index, Via::Icmp, rtt));
            }
        }
        Answers::Syn => {
            let Some(reply) = syn.and_then(|s| s.parse(data, SSH_PORT)) else {
                return;
            };
            let index = reply.index as usize;
            let addr = IpAddr::V4(reply.from);
            if shared.targets.get(index) != Some(&addr) {
                return;
            }
            if let Some(rtt) = shared.syn_rtt(index, now) {
                pass.samples.push((addr, rtt));
            }
            if !shared.answer(index, SYN) {
                return;
            }
            let sent = Duration::from_nanos(shared.sent_ns[index].load(Ordering::Acquire));
            let mut found = Found::alive(index, Via::Tcp(SSH_PORT), now.saturating_sub(sent));
            found.port22 = match reply.state {
                PortState::Open => {
                    found.open_ports.push(SSH_PORT);
                    Port22::Open
                }
                PortState::Closed => Port22::Closed,
            };
            pass.found.push(found);
        }
    }
}
