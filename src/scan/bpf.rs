//! Classic BPF filters for the raw sockets, so the kernel drops what is not
//! an answer (on loopback a raw socket also sees every probe we send, and a
//! raw TCP socket every TCP segment the host receives) instead of copying it
//! up for us to throw away.

use socket2::SockFilter;

// Instruction codes from linux/filter.h.
const LDX_B_MSH: u16 = 0xb1; // X = 4 * (packet[k] & 0x0f): the IPv4 header length
const LD_B_IND: u16 = 0x50; // A = packet[X + k] (byte)
const LD_H_IND: u16 = 0x48; // A = packet[X + k .. +2] (big-endian half word)
const JEQ_K: u16 = 0x15; // if A == k goto +jt else goto +jf
const RET_K: u16 = 0x06; // accept k bytes (0: drop)

const ACCEPT: u32 = 0xffff;

/// Keeps ICMP echo replies (type 0) on a raw IPv4 socket.
#[must_use]
pub fn icmp_echo_replies() -> [SockFilter; 5] {
    [
        SockFilter::new(LDX_B_MSH, 0, 0, 0),
        SockFilter::new(LD_B_IND, 0, 0, 0),
        SockFilter::new(JEQ_K, 0, 1, 0),
        SockFilter::new(RET_K, 0, 0, ACCEPT),
        SockFilter::new(RET_K, 0, 0, 0),
    ]
}

/// Keeps TCP segments from `from_port` to `to_port` on a raw IPv4 socket.
#[must_use]
pub fn tcp_answers(from_port: u16, to_port: u16) -> [SockFilter; 7] {
    [
        SockFilter::new(LDX_B_MSH, 0, 0, 0),
        SockFilter::new(LD_H_IND, 0, 0, 0),
        SockFilter::new(JEQ_K, 0, 3, u32::from(from_port)),
        SockFilter::new(LD_H_IND, 0, 0, 2),
        SockFilter::new(JEQ_K, 0, 1, u32::from(to_port)),
        SockFilter::new(RET_K, 0, 0, ACCEPT),
        SockFilter::new(RET_K, 0, 0, 0),
    ]
}
