//! IPv4 headers for probes sent on an `IPPROTO_RAW` socket, which carries
//! ICMP echoes and TCP SYNs alike, so both go out in the same batches.

use std::net::Ipv4Addr;

pub const HEADER_LEN: usize = 20;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
const TTL: u8 = 64;

/// A header for `payload_len` bytes of `protocol` from `src` to `dst`, with
/// identification `id`. The kernel fills in the checksum, and the source when
/// `src` is unspecified (0.0.0.0); it would pick an identification for a zero
/// one, which costs it a hash per packet, so callers pass one that is not.
#[must_use]
pub fn header(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    payload_len: usize,
    id: u16,
) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = 0x45; // version 4, 5 words
    let total = (HEADER_LEN + payload_len) as u16;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6] = 0x40; // don't fragment: probes are tiny
    h[8] = TTL;
    h[9] = protocol;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    h
}

/// A nonzero identification for target `index`'s probes.
#[must_use]
pub fn id_for(index: u32) -> u16 {
    (index as u16).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields() {
        let h = header(
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::new(10, 0, 0, 9),
            PROTO_TCP,
            24,
            7,
        );
        assert_eq!(h[0], 0x45);
        assert_eq!(u16::from_be_bytes([h[2], h[3]]), 44);
        assert_eq!(h[9], 6);
        assert_eq!(&h[4..6], &[0, 7]);
        assert_eq!(&h[12..16], &[0, 0, 0, 0]);
        assert_eq!(&h[16..20], &[10, 0, 0, 9]);
    }
}
