//! ICMP echo discovery: one sending loop and one receiving loop per address
//! family, however many targets (the fping/masscan shape).
//!
//! Sockets: a raw socket when the process may open one (root or
//! `CAP_NET_RAW`), else the kernel's unprivileged "ping" datagram socket where
//! `net.ipv4.ping_group_range` admits our group. Each is driven through
//! tokio's `UdpSocket`: both are datagram sockets, `sendto`/`recvfrom` are the
//! same calls, and this keeps the crate free of `unsafe`.
//!
//! With raw sockets the same send loop also sends a TCP SYN to port 22 of each
//! IPv4 target (see [`super::syn`]), so one pass learns who is up and who runs
//! SSH, and finds hosts that drop ICMP but answer on 22.

pub mod packet;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::pacer::Pacer;
use super::syn::{PortState, SynSocket};
use super::tcp::SSH_PORT;
use super::{Found, Job, Port22, ProbePlan, ScanProgress};
use crate::model::Via;

/// Receive buffer asked for: a /16 answering at once must not overflow it.
const RECV_BUFFER: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum IcmpError {
    #[error(
        "ICMP probing is not permitted for this user: run as root, give the binary \
         CAP_NET_RAW (setcap cap_net_raw+ep $(which fleetctl)), allow unprivileged ping \
         (sysctl net.ipv4.ping_group_range), or use --method tcp"
    )]
    NotPermitted,
    #[error("cannot open an ICMP socket: {0}")]
    Io(#[from] io::Error),
}

/// An open ICMP socket of one address family.
#[derive(Debug)]
pub struct IcmpSocket {
    socket: UdpSocket,
    v6: bool,
    /// Raw sockets see every ICMP packet and we choose the identifier; ping
    /// sockets see only their own and the kernel sets the identifier.
    raw: bool,
}

impl IcmpSocket {
    /// Opens a raw socket, or a ping socket when raw ones are not permitted.
    pub fn open(v6: bool) -> Result<Self, IcmpError> {
        let (domain, protocol) = if v6 {
            (Domain::IPV6, Protocol::ICMPV6)
        } else {
            (Domain::IPV4, Protocol::ICMPV4)
        };
        let (socket, raw) = match Socket::new(domain, Type::RAW, Some(protocol)) {
            Ok(s) => (s, true),
            Err(e) if is_permission(&e) => match Socket::new(domain, Type::DGRAM, Some(protocol)) {
                Ok(s) => (s, false),
                Err(e) if is_permission(&e) => return Err(IcmpError::NotPermitted),
                Err(e) => return Err(e.into()),
            },
            Err(e) => return Err(e.into()),
        };
        socket.set_nonblocking(true)?;
        if raw && !v6 {
            socket.attach_filter(&super::bpf::icmp_echo_replies())?;
        }
        // Past net.core.rmem_max only with CAP_NET_ADMIN; the plain request is the fallback.
        if nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::RcvBufForce,
            &RECV_BUFFER,
        )
        .is_err()
        {
            let _ = socket.set_recv_buffer_size(RECV_BUFFER);
        }
        let socket = UdpSocket::from_std(std::net::UdpSocket::from(socket))?;
        Ok(Self { socket, v6, raw })
    }

    /// Whether this is a raw socket (as opposed to an unprivileged ping socket).
    #[must_use]
    pub fn is_raw(&self) -> bool {
        self.raw
    }
}

fn is_permission(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EPERM | nix::libc::EACCES | nix::libc::EPROTONOSUPPORT)
    ) || e.kind() == io::ErrorKind::PermissionDenied
}

/// Sockets for the address families a scan needs.
#[derive(Debug)]
pub struct IcmpProber {
    v4: Option<Arc<IcmpSocket>>,
    v6: Option<Arc<IcmpSocket>>,
    /// SYN probes to port 22, when asked for and raw sockets are permitted.
    syn: Option<Arc<SynSocket>>,
}

impl IcmpProber {
    /// Opens the sockets the targets need, or says why it cannot. With
    /// `probe_ssh`, also a raw TCP socket for SYNs to port 22 when permitted.
    pub fn open(targets: &[IpAddr], probe_ssh: bool) -> Result<Self, IcmpError> {
        let need_v4 = targets.iter().any(IpAddr::is_ipv4);
        let need_v6 = targets.iter().any(IpAddr::is_ipv6);
        let v4 = need_v4
            .then(|| IcmpSocket::open(false))
            .transpose()?
            .map(Arc::new);
        let syn = if probe_ssh && v4.as_ref().is_some_and(|s| s.raw) {
            SynSocket::open()?.map(Arc::new)
        } else {
            None
        };
        Ok(Self {
            v4,
            v6: need_v6
                .then(|| IcmpSocket::open(true))
                .transpose()?
                .map(Arc::new),
            syn,
        })
    }

    /// Whether port 22 is probed with SYNs (else the caller connects to it).
    #[must_use]
    pub fn probes_ssh(&self) -> bool {
        self.syn.is_some()
    }

    /// Whether every socket is raw (root or `CAP_NET_RAW`).
    #[must_use]
    pub fn is_raw(&self) -> bool {
        self.v4.iter().chain(&self.v6).all(|s| s.raw)
    }

    /// Probes every target, retrying the silent ones, and reports each
    /// answer on `found` (an echo reply, and a SYN answer from port 22 when
    /// SYNs are sent). Returns once every target answered everything, or the
    /// last probe's timeout has passed, or `cancel` fires.
    pub async fn run(self, job: Job) {
        let Job {
            targets,
            plan,
            cancel,
            found,
            progress,
        } = job;
        let complete = |addr: &IpAddr| {
            if addr.is_ipv4() && self.syn.is_some() {
                ECHO | SYN
            } else {
                ECHO
            }
        };
        let shared = Arc::new(Shared {
            complete: targets.iter().map(complete).collect(),
            answered: (0..targets.len()).map(|_| AtomicU8::new(0)).collect(),
            sent_ns: (0..targets.len()).map(|_| AtomicU64::new(0)).collect(),
            unanswered: AtomicUsize::new(targets.len()),
            all_answered: Notify::new(),
            epoch: Instant::now(),
            ident: rand::random(),
            found,
            targets,
        });
        let stop = cancel.child_token();
        let mut receivers: Vec<_> = [&self.v4, &self.v6]
            .into_iter()
            .flatten()
            .map(|socket| {
                tokio::spawn(receive(
                    Arc::clone(socket),
                    Arc::clone(&shared),
                    stop.clone(),
                ))
            })
            .collect();
        if let Some(syn) = &self.syn {
            receivers.push(tokio::spawn(receive_syn(
                Arc::clone(syn),
                Arc::clone(&shared),
                stop.clone(),
            )));
        }
        send_all(&self, &shared, plan, &cancel, &progress).await;
        stop.cancel();
        for receiver in receivers {
            let _ = receiver.await;
        }
    }
}

/// Bits of `Shared::answered`: which probes a target has answered.
const ECHO: u8 = 1;
const SYN: u8 = 2;

/// State the sending and receiving loops share.
struct Shared {
    targets: Arc<[IpAddr]>,
    /// Per target, the answer bits after which there is nothing to wait for.
    complete: Vec<u8>,
    answered: Vec<AtomicU8>,
    /// When each target was last probed, for the RTT of SYN answers.
    sent_ns: Vec<AtomicU64>,
    /// Targets not yet complete; at zero the scan ends without waiting.
    unanswered: AtomicUsize,
    all_answered: Notify,
    epoch: Instant,
    ident: u16,
    found: mpsc::UnboundedSender<Found>,
}

impl Shared {
    fn elapsed_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Records an answer; returns false if this kind was already answered.
    fn answer(&self, index: usize, bit: u8) -> bool {
        let before = self.answered[index].fetch_or(bit, Ordering::AcqRel);
        if before & bit != 0 {
            return false;
        }
        if before | bit == self.complete[index]
            && self.unanswered.fetch_sub(1, Ordering::AcqRel) == 1
        {
            self.all_answered.notify_one();
        }
        true
    }

    /// Nothing at all came back from this target yet.
    fn silent(&self, index: usize) -> bool {
        self.answered[index].load(Ordering::Acquire) == 0
    }
}

async fn send_all(
    prober: &IcmpProber,
    shared: &Shared,
    plan: ProbePlan,
    cancel: &CancellationToken,
    progress: &ScanProgress,
) {
    let n = shared.targets.len();
    let mut pacer = Pacer::new(plan.rate);
    // When each target was last probed, to give every retry its full timeout.
    let mut sent_at = vec![Instant::now(); n];
    let mut last_send = Instant::now();
    for attempt in 0..=plan.retries {
        for (index, &addr) in shared.targets.iter().enumerate() {
            if !shared.silent(index) {
                continue;
            }
            if attempt > 0 {
                let due = sent_at[index] + plan.timeout;
                // Due times rise with the index, so waiting on this one holds
                // back no later target; only "everyone answered" cuts it short.
                tokio::select! {
                    () = tokio::time::sleep_until(due) => {}
                    () = shared.all_answered.notified() => {}
                    () = cancel.cancelled() => return,
                }
                if !shared.silent(index) {
                    continue;
                }
            }
            tokio::select! {
                () = pacer.tick() => {}
                () = cancel.cancelled() => return,
            }
            let socket = if addr.is_ipv4() {
                &prober.v4
            } else {
                &prober.v6
            };
            let Some(socket) = socket else { continue };
            let now_ns = shared.elapsed_ns();
            shared.sent_ns[index].store(now_ns, Ordering::Relaxed);
            let pkt = packet::echo_request(socket.v6, shared.ident, index as u32, now_ns);
            if let Err(e) = socket.socket.send_to(&pkt, SocketAddr::new(addr, 0)).await {
                // Unroutable, filtered or broadcast: this target just gets no answer.
                tracing::debug!(%addr, error = %e, "echo request not sent");
            }
            if let (Some(syn), IpAddr::V4(v4)) = (&prober.syn, addr) {
                // The rate counts packets, and this is a second one.
                tokio::select! {
                    () = pacer.tick() => {}
                    () = cancel.cancelled() => return,
                }
                if let Err(e) = syn.send(v4, SSH_PORT, index as u32).await {
                    tracing::debug!(%addr, error = %e, "SYN not sent");
                }
            }
            sent_at[index] = Instant::now();
            last_send = sent_at[index];
            if attempt == 0 {
                progress.probed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    // Late replies still count until the last probe's timeout has passed.
    if shared.unanswered.load(Ordering::Acquire) > 0 {
        tokio::select! {
            () = tokio::time::sleep_until(last_send + plan.timeout) => {}
            () = shared.all_answered.notified() => {}
            () = cancel.cancelled() => {}
        }
    }
}

async fn receive(socket: Arc<IcmpSocket>, shared: Arc<Shared>, stop: CancellationToken) {
    let mut buf = [0u8; 2048];
    loop {
        let (len, from) = tokio::select! {
            received = socket.socket.recv_from(&mut buf) => match received {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "icmp receive error");
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        // Raw IPv4 sockets deliver the IP header; ICMPv6 and ping sockets do not.
        let has_ip_header = socket.raw && !socket.v6;
        let Some(reply) = packet::parse_reply(&buf[..len], socket.v6, has_ip_header) else {
            continue;
        };
        let index = reply.index as usize;
        let ours = !socket.raw || reply.ident == shared.ident;
        if !ours || shared.targets.get(index) != Some(&from.ip()) || !shared.answer(index, ECHO) {
            continue; // not ours, or a reply to a retry
        }
        let rtt = Duration::from_nanos(shared.elapsed_ns().saturating_sub(reply.sent_ns));
        let _ = shared.found.send(Found::alive(index, Via::Icmp, rtt));
    }
}

async fn receive_syn(syn: Arc<SynSocket>, shared: Arc<Shared>, stop: CancellationToken) {
    let mut buf = [0u8; 2048];
    loop {
        let reply = tokio::select! {
            received = syn.recv(SSH_PORT, &mut buf) => match received {
                Ok(reply) => reply,
                Err(e) => {
                    tracing::debug!(error = %e, "raw TCP receive error");
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        let index = reply.index as usize;
        if shared.targets.get(index) != Some(&IpAddr::V4(reply.from)) || !shared.answer(index, SYN)
        {
            continue;
        }
        let sent = shared.sent_ns[index].load(Ordering::Relaxed);
        let rtt = Duration::from_nanos(shared.elapsed_ns().saturating_sub(sent));
        let mut found = Found::alive(index, Via::Tcp(SSH_PORT), rtt);
        found.port22 = match reply.state {
            PortState::Open => {
                found.open_ports.push(SSH_PORT);
                Port22::Open
            }
            PortState::Closed => Port22::Closed,
        };
        let _ = shared.found.send(found);
    }
}
