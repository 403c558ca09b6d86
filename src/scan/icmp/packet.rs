//! ICMP and ICMPv6 echo packets: building requests and recognising our replies.
//!
//! The payload carries everything needed to match a reply without any lookup
//! table: a magic tag, the target's index in the scan and the send time. That
//! is what lets one receiving loop serve any number of targets, and counts a
//! reply to any attempt, however late, as long as the scan is still listening.

use crate::scan::checksum::internet_checksum;

/// Tags our payloads so stray echo replies are ignored.
const MAGIC: [u8; 4] = *b"fltc";
const HEADER_LEN: usize = 8;
const PAYLOAD_LEN: usize = 4 + 4 + 8;
/// Length of every echo request this module builds.
pub const REQUEST_LEN: usize = HEADER_LEN + PAYLOAD_LEN;

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

/// What a reply tells us about the request it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoReply {
    pub ident: u16,
    pub index: u32,
    /// Nanoseconds since the scan's epoch when the request was sent.
    pub sent_ns: u64,
}

/// Builds an echo request. For IPv6 the checksum is left zero: the kernel
/// fills it in for ICMPv6 sockets (it needs the pseudo-header we don't see).
#[must_use]
pub fn echo_request(v6: bool, ident: u16, index: u32, sent_ns: u64) -> [u8; REQUEST_LEN] {
    let mut pkt = [0u8; REQUEST_LEN];
    pkt[0] = if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 };
    pkt[4..6].copy_from_slice(&ident.to_be_bytes());
    // Sequence numbers only have 16 bits; the full index travels in the payload.
    pkt[6..8].copy_from_slice(&(index as u16).to_be_bytes());
    pkt[8..12].copy_from_slice(&MAGIC);
    pkt[12..16].copy_from_slice(&index.to_be_bytes());
    pkt[16..24].copy_from_slice(&sent_ns.to_be_bytes());
    if !v6 {
        let sum = internet_checksum(&[&pkt]);
        pkt[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    pkt
}

/// Recognises one of our echo replies. `packet` starts at the IPv4 header
/// when `has_ip_header` (raw IPv4 sockets), at the ICMP header otherwise.
#[must_use]
pub fn parse_reply(packet: &[u8], v6: bool, has_ip_header: bool) -> Option<EchoReply> {
    let icmp = if has_ip_header {
        let ihl = usize::from(packet.first()? & 0x0f) * 4;
        if ihl < 20 || packet.get(9) != Some(&1) {
            return None;
        }
        packet.get(ihl..)?
    } else {
        packet
    };
    if icmp.len() < REQUEST_LEN || icmp[1] != 0 || icmp[8..12] != MAGIC {
        return None;
    }
    let expected = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
    if icmp[0] != expected {
        return None;
    }
    Some(EchoReply {
        ident: u16::from_be_bytes([icmp[4], icmp[5]]),
        index: u32::from_be_bytes([icmp[12], icmp[13], icmp[14], icmp[15]]),
        sent_ns: u64::from_be_bytes(icmp[16..24].try_into().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Turns a request into the reply a host would send back.
    fn as_reply(mut pkt: [u8; REQUEST_LEN], v6: bool) -> [u8; REQUEST_LEN] {
        pkt[0] = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
        pkt
    }

    #[test]
    fn request_checksum_verifies() {
        let pkt = echo_request(false, 0xbeef, 70_000, 123_456_789);
        // A correct checksum makes the whole packet sum to zero.
        assert_eq!(internet_checksum(&[&pkt]), 0);
        assert_eq!(pkt[0], 8);
        assert_eq!(&pkt[4..6], &0xbeef_u16.to_be_bytes());
    }

    #[test]
    fn replies_round_trip_with_and_without_ip_header() {
        let reply = as_reply(echo_request(false, 7, 70_000, 42), false);
        let expected = EchoReply {
            ident: 7,
            index: 70_000,
            sent_ns: 42,
        };
        assert_eq!(parse_reply(&reply, false, false), Some(expected));

        let mut with_ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1];
        with_ip.resize(20, 0);
        with_ip.extend_from_slice(&reply);
        assert_eq!(parse_reply(&with_ip, false, true), Some(expected));

        let v6 = as_reply(echo_request(true, 9, 3, 5), true);
        assert_eq!(parse_reply(&v6, true, false).map(|r| r.index), Some(3));
    }

    #[test]
    fn ignores_requests_foreign_payloads_and_short_packets() {
        let request = echo_request(false, 7, 1, 1);
        assert_eq!(parse_reply(&request, false, false), None);
        let mut foreign = as_reply(request, false);
        foreign[8] = b'X';
        assert_eq!(parse_reply(&foreign, false, false), None);
        assert_eq!(
            parse_reply(&as_reply(request, false)[..12], false, false),
            None
        );
        // An IPv4 header that says it carries TCP, not ICMP.
        let mut tcp = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 6];
        tcp.resize(20, 0);
        tcp.extend_from_slice(&as_reply(request, false));
        assert_eq!(parse_reply(&tcp, false, true), None);
    }
}
