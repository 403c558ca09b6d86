//! Many datagrams per system call: `sendmmsg(2)` through rustix and
//! `recvmmsg(2)` through nix, both safe wrappers, so the crate needs no
//! `unsafe` for batching. (nix's `sendmmsg` reports how many went only by
//! iterating results that read addresses it never initialised for sends;
//! rustix returns the count.)

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use rustix::io::Errno;
use rustix::net::addr::SocketAddrArg;
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny, sendmmsg};

/// Longest datagram read: headers of every reply we match fit, the rest of
/// anything longer is not needed.
pub const RECV_LEN: usize = 256;
/// Datagrams read per call.
pub const RECV_BATCH: usize = 128;
/// How long a full queue (ENOBUFS) is retried before the packet counts as lost.
const FULL_QUEUE_PATIENCE: Duration = Duration::from_millis(50);

/// What one [`send`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    pub sent: usize,
    /// Refused by the kernel (no route, a broadcast address, a firewall's
    /// reject); those targets just get no answer.
    pub failed: usize,
}

/// Sends `packets[i]` to `dests[i]` on `socket`, as few system calls as the
/// kernel allows. A packet the kernel refuses is logged and skipped; the
/// rest still go.
pub fn send(socket: BorrowedFd<'_>, packets: &[&[u8]], dests: &[SocketAddr]) -> Sent {
    let addrs: Vec<SocketAddrAny> = dests.iter().map(SocketAddrArg::as_any).collect();
    let iovs: Vec<[IoSlice<'_>; 1]> = packets.iter().map(|p| [IoSlice::new(p)]).collect();
    let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> = packets
        .iter()
        .map(|_| SendAncillaryBuffer::default())
        .collect();
    let mut msgs: Vec<MMsgHdr<'_>> = addrs
        .iter()
        .zip(&iovs)
        .zip(controls.iter_mut())
        .map(|((addr, iov), control)| MMsgHdr::new_with_addr(addr, iov, control))
        .collect();
    let mut result = Sent::default();
    let mut next = 0;
    let mut full_since: Option<std::time::Instant> = None;
    while next < msgs.len() {
        match sendmmsg(socket, &mut msgs[next..], SendFlags::empty()) {
            Ok(n) if n > 0 => {
                next += n;
                result.sent += n;
                full_since = None;
            }
            Err(Errno::INTR) => {}
            Ok(_) | Err(Errno::AGAIN | Errno::NOBUFS) => {
                // The device queue is full: give it a moment to drain.
                let since = *full_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > FULL_QUEUE_PATIENCE {
                    tracing::debug!(dest = %dests[next], "queue stayed full; probe dropped");
                    result.failed += 1;
                    next += 1;
                    full_since = None;
                } else {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
            Err(e) => {
                // The call stopped at this message: skip it, send the rest.
                tracing::debug!(dest = %dests[next], error = %io::Error::from(e), "probe not sent");
                result.failed += 1;
                next += 1;
            }
        }
    }
    result
}

/// Reusable buffers for reading a batch of datagrams from one socket.
pub struct Receiver {
    bufs: Vec<[u8; RECV_LEN]>,
    headers: MultiHeaders<SockaddrStorage>,
    /// Per datagram read by the last call: its length and sender.
    got: Vec<(usize, Option<IpAddr>)>,
}

impl Receiver {
    #[must_use]
    pub fn new() -> Self {
        Self {
            bufs: vec![[0; RECV_LEN]; RECV_BATCH],
            headers: MultiHeaders::preallocate(RECV_BATCH, None),
            got: Vec::with_capacity(RECV_BATCH),
        }
    }

    /// Reads what is queued on `socket` without waiting, up to one batch, and
    /// calls `each(datagram, sender)` for every datagram. Returns how many
    /// were read (0 when none was waiting).
    pub fn recv(
        &mut self,
        socket: BorrowedFd<'_>,
        mut each: impl FnMut(&[u8], Option<IpAddr>),
    ) -> io::Result<usize> {
        self.got.clear();
        {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> =
                self.bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
            let results = match recvmmsg(
                socket.as_raw_fd(),
                &mut self.headers,
                slices.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            ) {
                Ok(results) => results,
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => return Ok(0),
                Err(e) => return Err(e.into()),
            };
            for msg in results {
                let from = msg.address.as_ref().and_then(ip_of);
                self.got.push((msg.bytes, from));
            }
        }
        for (buf, &(len, from)) in self.bufs.iter().zip(&self.got) {
            each(&buf[..len.min(RECV_LEN)], from);
        }
        Ok(self.got.len())
    }
}

impl Default for Receiver {
    fn default() -> Self {
        Self::new()
    }
}

fn ip_of(addr: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        Some(IpAddr::V4(v4.ip()))
    } else {
        addr.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
    }
}

/// Waits until one of `sockets` has something to read, or `timeout` passes.
/// Returns which are readable.
pub fn wait_readable(sockets: &[BorrowedFd<'_>], timeout: Duration) -> io::Result<Vec<bool>> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds: Vec<PollFd<'_>> = sockets
        .iter()
        .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
        .collect();
    let ms =
        PollTimeout::try_from(timeout.as_millis().min(10_000) as i32).unwrap_or(PollTimeout::NONE);
    match poll(&mut fds, ms) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(fds
        .iter()
        .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn a_batch_goes_out_in_one_call_and_is_read_back_in_one() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dest = rx.local_addr().unwrap();
        let payloads: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 1 + usize::from(i)]).collect();
        let packets: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let sent = send(tx.as_fd(), &packets, &vec![dest; packets.len()]);
        assert_eq!(
            sent,
            Sent {
                sent: 100,
                failed: 0
            }
        );

        let mut receiver = Receiver::new();
        let mut seen = Vec::new();
        let ready = wait_readable(&[rx.as_fd()], Duration::from_secs(2)).unwrap();
        assert_eq!(ready, [true]);
        while seen.len() < 100 {
            let n = receiver
                .recv(rx.as_fd(), |data, from| {
                    assert_eq!(from, Some(tx.local_addr().unwrap().ip()));
                    seen.push(data.to_vec());
                })
                .unwrap();
            assert!(n > 0, "everything sent is queued already");
        }
        assert_eq!(seen, payloads);
        assert_eq!(
            receiver.recv(rx.as_fd(), |_, _| {}).unwrap(),
            0,
            "nothing left"
        );
    }

    #[test]
    fn a_refused_packet_is_skipped_and_the_rest_still_go() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("0.0.0.0:0").unwrap();
        let good = rx.local_addr().unwrap();
        // Broadcast without SO_BROADCAST: the kernel refuses it (EACCES).
        let bad: SocketAddr = "255.255.255.255:9".parse().unwrap();
        let packets: Vec<&[u8]> = vec![b"a", b"b", b"c"];
        let sent = send(tx.as_fd(), &packets, &[good, bad, good]);
        assert_eq!(sent, Sent { sent: 2, failed: 1 });
        let mut receiver = Receiver::new();
        let _ = wait_readable(&[rx.as_fd()], Duration::from_secs(2)).unwrap();
        let mut got = Vec::new();
        while got.len() < 2 {
            receiver
                .recv(rx.as_fd(), |d, _| got.push(d.to_vec()))
                .unwrap();
        }
        assert_eq!(got, [b"a".to_vec(), b"c".to_vec()]);
    }
}
