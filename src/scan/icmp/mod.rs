//! ICMP echo discovery (and, as root, SYNs to port 22) at the machine's pace:
//! one sending thread and one receiving thread, however many targets (the
//! fping/masscan shape), so sending and receiving use two cores.
//!
//! ```text
//!            Schedule ─ first probes, retries when their timeout passed
//!               │
//!  send thread: TokenBucket (--rate) ─▶ batch of echoes + SYNs ─▶ sendmmsg
//!                   ▲ adaptive timeouts                         ─▶ targets
//!  recv thread: Timeouts ◀─ RTTs ◀─ match ◀─ recvmmsg ◀─ replies
//!                                     └──── Found ────▶ scan::run
//! ```
//!
//! Sockets: as root (or with `CAP_NET_RAW`) an `IPPROTO_RAW` socket sends
//! IPv4 echoes and SYNs with headers of our own, so both kinds share each
//! batch; a raw ICMP socket and a raw TCP socket, each with a BPF filter,
//! receive the answers. Without that privilege, the kernel's unprivileged
//! "ping" datagram socket sends and receives echoes where
//! `net.ipv4.ping_group_range` admits our group. ICMPv6 uses one socket of
//! either kind for both directions.

pub mod packet;
mod receive;
pub mod schedule;
mod send;

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::socket::setsockopt;
use nix::sys::socket::sockopt::{RcvBufForce, SndBufForce};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::mpsc;

use super::syn::SynSocket;
use super::timing::Timeouts;
use super::{Found, Job};
use schedule::{ECHO, SYN};

/// Receive buffer asked for: a /16 answering at once must not overflow it.
const RECV_BUFFER: usize = 8 << 20;
/// Send buffer of the raw sender, so a batch never waits for room.
const SEND_BUFFER: usize = 4 << 20;

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
    socket: Socket,
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
        if raw && !v6 {
            socket.attach_filter(&super::bpf::icmp_echo_replies())?;
        }
        grow_receive_buffer(&socket);
        Ok(Self { socket, v6, raw })
    }

    /// Whether this is a raw socket (as opposed to an unprivileged ping socket).
    #[must_use]
    pub fn is_raw(&self) -> bool {
        self.raw
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// Asks for a receive buffer a burst of answers fits in: past
/// `net.core.rmem_max` only with `CAP_NET_ADMIN`, else as much as allowed.
pub(super) fn grow_receive_buffer(socket: &Socket) {
    if setsockopt(socket, RcvBufForce, &RECV_BUFFER).is_err() {
        let _ = socket.set_recv_buffer_size(RECV_BUFFER);
    }
}

fn is_permission(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EPERM | nix::libc::EACCES | nix::libc::EPROTONOSUPPORT)
    ) || e.kind() == io::ErrorKind::PermissionDenied
}

/// An `IPPROTO_RAW` socket: IPv4 packets with headers of our own, any protocol.
#[derive(Debug)]
struct RawSender(Socket);

impl RawSender {
    fn open() -> io::Result<Self> {
        let socket = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(nix::libc::IPPROTO_RAW)),
        )?;
        if setsockopt(&socket, SndBufForce, &SEND_BUFFER).is_err() {
            let _ = socket.set_send_buffer_size(SEND_BUFFER);
        }
        Ok(Self(socket))
    }
}

/// Sockets for the address families a scan needs.
#[derive(Debug)]
pub struct IcmpProber {
    v4: Option<IcmpSocket>,
    v6: Option<IcmpSocket>,
    /// Sends IPv4 echoes and SYNs when `v4` is raw.
    raw_v4: Option<RawSender>,
    /// SYN probes to port 22, when asked for and raw sockets are permitted.
    syn: Option<SynSocket>,
}

impl IcmpProber {
    /// Opens the sockets the targets need, or says why it cannot. With
    /// `probe_ssh`, also a raw TCP socket for SYNs to port 22 when permitted.
    pub fn open(targets: &[IpAddr], probe_ssh: bool) -> Result<Self, IcmpError> {
        let need_v4 = targets.iter().any(IpAddr::is_ipv4);
        let need_v6 = targets.iter().any(IpAddr::is_ipv6);
        let v4 = need_v4.then(|| IcmpSocket::open(false)).transpose()?;
        let raw = v4.as_ref().is_some_and(|s| s.raw);
        let raw_v4 = raw.then(RawSender::open).transpose()?;
        let syn = if probe_ssh && raw {
            SynSocket::open()?
        } else {
            None
        };
        Ok(Self {
            v4,
            v6: need_v6.then(|| IcmpSocket::open(true)).transpose()?,
            raw_v4,
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

    /// Probes every target, retrying what has not answered once its adaptive
    /// timeout passes, and reports each answer on `found` (an echo reply,
    /// and a SYN answer from port 22 when SYNs are sent). Returns once every
    /// target answered everything or timed out on its last try, or `cancel`
    /// fires.
    pub async fn run(self, job: Job) {
        let Job {
            targets,
            plan,
            cancel,
            found,
            progress,
        } = job;
        let wanted = |addr: &IpAddr| {
            if addr.is_ipv4() && self.syn.is_some() {
                ECHO | SYN
            } else {
                ECHO
            }
        };
        let shared = Arc::new(Shared {
            wanted: targets.iter().map(wanted).collect(),
            answered: (0..targets.len()).map(|_| AtomicU8::new(0)).collect(),
            first_sent_ns: (0..targets.len()).map(|_| AtomicU64::new(0)).collect(),
            sent_ns: (0..targets.len()).map(|_| AtomicU64::new(0)).collect(),
            rounds: (0..targets.len()).map(|_| AtomicU8::new(0)).collect(),
            unanswered: AtomicUsize::new(targets.len()),
            timeouts: Mutex::new(Timeouts::new(plan.timeout)),
            sender: OnceLock::new(),
            stop: AtomicBool::new(false),
            heard_ns: AtomicU64::new(0),
            epoch: Instant::now(),
            ident: rand::random(),
            found,
            targets,
        });
        let (sockets, syn) = {
            let Self {
                v4,
                v6,
                raw_v4,
                syn,
            } = self;
            (Arc::new(Sockets { v4, v6, raw_v4 }), syn.map(Arc::new))
        };
        let receiver = {
            let (shared, sockets, syn) = (Arc::clone(&shared), Arc::clone(&sockets), syn.clone());
            thread("scan-receive", move || {
                receive::run(&shared, &sockets, syn.as_deref());
            })
        };
        let sender = {
            let shared = Arc::clone(&shared);
            thread("scan-send", move || {
                let _ = shared.sender.set(std::thread::current());
                send::run(&shared, &sockets, syn.as_deref(), plan, &cancel, &progress);
            })
        };
        let _ = sender.await;
        shared.stop.store(true, Ordering::Release);
        let _ = receiver.await;
    }
}

/// Runs `work` on a thread of its own (named, so profiles and `top -H` say
/// which is which); the future resolves when it returns.
fn thread(name: &str, work: impl FnOnce() + Send + 'static) -> tokio::sync::oneshot::Receiver<()> {
    let (done, finished) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            work();
            let _ = done.send(());
        });
    if let Err(e) = spawned {
        // `done` was dropped with the closure: the receiver resolves at once.
        tracing::error!(error = %e, "cannot start the {name} thread");
    }
    finished
}

/// The prober's sockets, shared by the two threads.
#[derive(Debug)]
struct Sockets {
    v4: Option<IcmpSocket>,
    v6: Option<IcmpSocket>,
    raw_v4: Option<RawSender>,
}

/// State the sending and receiving threads share.
struct Shared {
    targets: Arc<[IpAddr]>,
    /// Per target, the probe kinds it is sent.
    wanted: Vec<u8>,
    /// Per target, the kinds it answered.
    answered: Vec<AtomicU8>,
    /// When each target's first and last rounds of probes went, in
    /// nanoseconds since `epoch`.
    first_sent_ns: Vec<AtomicU64>,
    sent_ns: Vec<AtomicU64>,
    /// Rounds sent to each target.
    rounds: Vec<AtomicU8>,
    /// Targets not yet complete; at zero the sender is woken to finish.
    unanswered: AtomicUsize,
    timeouts: Mutex<Timeouts>,
    /// The sending thread, woken when the last target answers.
    sender: OnceLock<std::thread::Thread>,
    /// Set when sending is over: the receiver reads what is queued and ends.
    stop: AtomicBool,
    /// Every answer that arrived before this time (nanoseconds since
    /// `epoch`) has been read and recorded.
    heard_ns: AtomicU64,
    epoch: Instant,
    ident: u16,
    found: mpsc::UnboundedSender<Vec<Found>>,
}

impl Shared {
    fn elapsed(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Records an answer; returns false if this kind was already answered,
    /// or the target was never probed (then it is forged, or a stray from
    /// another scan).
    fn answer(&self, index: usize, bit: u8) -> bool {
        if self.rounds[index].load(Ordering::Acquire) == 0 {
            return false;
        }
        let before = self.answered[index].fetch_or(bit, Ordering::AcqRel);
        if before & bit != 0 {
            return false;
        }
        if before | bit == self.wanted[index]
            && self.unanswered.fetch_sub(1, Ordering::AcqRel) == 1
            && let Some(sender) = self.sender.get()
        {
            sender.unpark();
        }
        true
    }

    /// The round-trip time of an echo reply from target `index` that says it
    /// answers the probe sent at `sent_ns`: believed only when that is when
    /// its first or its last round went, so a reply can time only a probe
    /// the target was really sent.
    fn echo_rtt(&self, index: usize, sent_ns: u64, now: Duration) -> Option<Duration> {
        let probed = self.rounds[index].load(Ordering::Acquire) > 0;
        let genuine = sent_ns == self.first_sent_ns[index].load(Ordering::Acquire)
            || sent_ns == self.sent_ns[index].load(Ordering::Acquire);
        let genuine = probed && genuine;
        genuine
            .then(|| now.checked_sub(Duration::from_nanos(sent_ns)))
            .flatten()
    }

    /// The round-trip time of a SYN answer from target `index`, when it can
    /// be known: a SYN answer does not say which try it answers, so only
    /// while one round was sent (Karn's rule).
    fn syn_rtt(&self, index: usize, now: Duration) -> Option<Duration> {
        if self.rounds[index].load(Ordering::Acquire) != 1 {
            return None;
        }
        let sent = Duration::from_nanos(self.sent_ns[index].load(Ordering::Acquire));
        now.checked_sub(sent)
    }

    /// How far answers have been read: see [`schedule::Schedule::fill`].
    fn heard(&self) -> Duration {
        Duration::from_nanos(self.heard_ns.load(Ordering::Acquire))
    }

    fn timeouts(&self) -> std::sync::MutexGuard<'_, Timeouts> {
        self.timeouts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
