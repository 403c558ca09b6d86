//! TCP SYN probes over a raw socket: is port 22 open, closed or silent,
//! without opening a connection (the nmap -sS / masscan way).
//!
//! A full `connect()` costs the kernel a socket, an ephemeral port and a
//! teardown per host; a SYN costs one packet, and the answer (SYN-ACK or RST)
//! is matched statelessly: our sequence number encodes the target's index.
//! The kernel answers a SYN-ACK to a port it never opened with a RST, which
//! closes the half-open connection on the target. IPv4 only; other targets
//! get a plain connect instead.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, BorrowedFd};

use socket2::{Domain, Protocol, Socket, Type};

use super::checksum::internet_checksum;
use super::ipv4;

const TCP_HEADER_LEN: usize = 24; // 20 bytes and a 4-byte MSS option
/// A SYN probe with its IPv4 header, as the raw sender sends it.
pub const PACKET_LEN: usize = ipv4::HEADER_LEN + TCP_HEADER_LEN;
const FLAG_SYN: u8 = 0x02;
const FLAG_RST: u8 = 0x04;
const FLAG_ACK: u8 = 0x10;

/// What a port said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortState {
    Open,
    Closed,
}

/// A reply recognised as an answer to one of our probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynReply {
    pub from: Ipv4Addr,
    pub index: u32,
    pub state: PortState,
}

/// A raw TCP socket that receives the answers to our SYNs, and what SYNs
/// are built from so their answers can be matched. (The SYNs themselves go
/// out on the prober's `IPPROTO_RAW` socket, batched with the echoes.)
#[derive(Debug)]
pub struct SynSocket {
    socket: Socket,
    /// Our side's port: replies go to it; nothing on this host listens there.
    pub src_port: u16,
    /// Added to the index to make the sequence number, so replies are
    /// not confused with anyone else's traffic.
    secret: u32,
}

impl SynSocket {
    /// Opens the raw socket; `None` when this process may not (not root).
    pub fn open() -> io::Result<Option<Self>> {
        let socket = match Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::TCP)) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Ok(None),
            Err(e) if matches!(e.raw_os_error(), Some(nix::libc::EPERM | nix::libc::EACCES)) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let src_port = 40_000 + rand::random::<u16>() % 20_000;
        socket.attach_filter(&super::bpf::tcp_answers(super::tcp::SSH_PORT, src_port))?;
        super::icmp::grow_receive_buffer(&socket);
        Ok(Some(Self {
            socket,
            src_port,
            secret: rand::random(),
        }))
    }

    /// The socket answers are read from.
    #[must_use]
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// A SYN from `src` to `dst:port` for target `index`, with its IPv4 header.
    #[must_use]
    pub fn packet(&self, src: Ipv4Addr, dst: Ipv4Addr, port: u16, index: u32) -> [u8; PACKET_LEN] {
        let seq = self.secret.wrapping_add(index);
        let mut pkt = [0u8; PACKET_LEN];
        pkt[..ipv4::HEADER_LEN].copy_from_slice(&ipv4::header(
            src,
            dst,
            ipv4::PROTO_TCP,
            TCP_HEADER_LEN,
            ipv4::id_for(index),
        ));
        pkt[ipv4::HEADER_LEN..].copy_from_slice(&syn_packet(src, dst, self.src_port, port, seq));
        pkt
    }

    /// Recognises an answer to one of our SYNs to `port`.
    #[must_use]
    pub fn parse(&self, packet: &[u8], port: u16) -> Option<SynReply> {
        parse_reply(packet, port, self.src_port, self.secret)
    }
}

/// The source address the kernel sends from, per destination /24, as the
/// routing table picks it: the TCP checksum covers it.
#[derive(Debug, Default)]
pub struct Sources(HashMap<u32, Option<Ipv4Addr>>);

impl Sources {
    /// Asked of the routing table with an unsent UDP connect, once per /24;
    /// `None` when no route leads to `dst`.
    pub fn for_dest(&mut self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        let key = u32::from(dst) & 0xffff_ff00;
        *self.0.entry(key).or_insert_with(|| {
            let route = || -> io::Result<Ipv4Addr> {
                let probe = std::net::UdpSocket::bind("0.0.0.0:0")?;
                probe.connect((dst, 9))?;
                match probe.local_addr()?.ip() {
                    IpAddr::V4(src) => Ok(src),
                    IpAddr::V6(_) => Err(io::Error::other("no IPv4 route")),
                }
            };
            route()
                .inspect_err(|e| tracing::debug!(%dst, error = %e, "no source address; no SYNs"))
                .ok()
        })
    }
}

/// A SYN segment with an MSS option (some stacks ignore SYNs without one).
#[must_use]
pub fn syn_packet(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    seq: u32,
) -> [u8; TCP_HEADER_LEN] {
    let mut tcp = [0u8; TCP_HEADER_LEN];
    tcp[0..2].copy_from_slice(&src_port.to_be_bytes());
    tcp[2..4].copy_from_slice(&dst_port.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[12] = ((TCP_HEADER_LEN / 4) as u8) << 4;
    tcp[13] = FLAG_SYN;
    tcp[14..16].copy_from_slice(&1024u16.to_be_bytes());
    tcp[20..24].copy_from_slice(&[2, 4, 0x05, 0xb4]); // MSS 1460
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.octets());
    pseudo[9] = 6; // TCP
    pseudo[10..12].copy_from_slice(&(TCP_HEADER_LEN as u16).to_be_bytes());
    let sum = internet_checksum(&[&pseudo, &tcp]);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    tcp
}

/// Recognises a SYN-ACK or RST from `port` answering one of our SYNs.
/// `packet` starts at the IPv4 header, as raw IPv4 sockets deliver it.
#[must_use]
pub fn parse_reply(packet: &[u8], port: u16, our_port: u16, secret: u32) -> Option<SynReply> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    if ihl < 20 || packet.get(9) != Some(&6) {
        return None;
    }
    let from = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let tcp = packet.get(ihl..ihl + 20)?;
    let src_port = u16::from_be_bytes([tcp[0], tcp[1]]);
    let dst_port = u16::from_be_bytes([tcp[2], tcp[3]]);
    if src_port != port || dst_port != our_port {
        return None;
    }
    let ack = u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]);
    let flags = tcp[13];
    let state = if flags & (FLAG_SYN | FLAG_ACK) == FLAG_SYN | FLAG_ACK {
        PortState::Open
    } else if flags & FLAG_RST != 0 {
        PortState::Closed
    } else {
        return None;
    };
    Some(SynReply {
        from,
        index: ack.wrapping_sub(1).wrapping_sub(secret),
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip_header(src: Ipv4Addr, protocol: u8) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, protocol, 0, 0];
        h.extend_from_slice(&src.octets());
        h.extend_from_slice(&[127, 0, 0, 1]);
        h
    }

    /// The answer a host gives: ports swapped, our sequence + 1 as the ack.
    fn answer(syn: &[u8; TCP_HEADER_LEN], from: Ipv4Addr, flags: u8) -> Vec<u8> {
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&syn[2..4]);
        tcp[2..4].copy_from_slice(&syn[0..2]);
        let seq = u32::from_be_bytes(syn[4..8].try_into().unwrap());
        tcp[8..12].copy_from_slice(&seq.wrapping_add(1).to_be_bytes());
        tcp[13] = flags;
        let mut pkt = ip_header(from, 6);
        pkt.extend_from_slice(&tcp);
        pkt
    }

    #[test]
    fn syn_checksum_verifies_with_the_pseudo_header() {
        let (src, dst) = (Ipv4Addr::LOCALHOST, Ipv4Addr::new(127, 0, 0, 9));
        let tcp = syn_packet(src, dst, 45_000, 22, 7);
        let mut pseudo = [0u8; 12];
        pseudo[0..4].copy_from_slice(&src.octets());
        pseudo[4..8].copy_from_slice(&dst.octets());
        pseudo[9] = 6;
        pseudo[11] = TCP_HEADER_LEN as u8;
        assert_eq!(internet_checksum(&[&pseudo, &tcp]), 0);
        assert_eq!(tcp[13], FLAG_SYN);
    }

    #[test]
    fn answers_map_back_to_the_target_index() {
        let host = Ipv4Addr::new(127, 0, 0, 9);
        let secret: u32 = 0xdead_beef;
        let syn = syn_packet(
            Ipv4Addr::LOCALHOST,
            host,
            45_000,
            22,
            secret.wrapping_add(70_000),
        );
        let open = answer(&syn, host, FLAG_SYN | FLAG_ACK);
        assert_eq!(
            parse_reply(&open, 22, 45_000, secret),
            Some(SynReply {
                from: host,
                index: 70_000,
                state: PortState::Open
            })
        );
        let closed = answer(&syn, host, FLAG_RST | FLAG_ACK);
        assert_eq!(
            parse_reply(&closed, 22, 45_000, secret).map(|r| r.state),
            Some(PortState::Closed)
        );
        // Another port of ours, another service port, or a bare ACK: not ours.
        assert_eq!(parse_reply(&open, 22, 45_001, secret), None);
        assert_eq!(parse_reply(&open, 80, 45_000, secret), None);
        assert_eq!(
            parse_reply(&answer(&syn, host, FLAG_ACK), 22, 45_000, secret),
            None
        );
        // Our own SYN, seen coming back in on loopback.
        let mut own = ip_header(Ipv4Addr::LOCALHOST, 6);
        own.extend_from_slice(&syn);
        assert_eq!(parse_reply(&own, 22, 45_000, secret), None);
    }
}
