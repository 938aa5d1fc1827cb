//! The UDP header view and the UDP/IPv4 checksum.
//!
//! Linux: `struct udphdr` in include/uapi/linux/udp.h, `udp_v4_check()` /
//! `csum_tcpudp_magic()` in include/net/udp.h, `CSUM_MANGLED_0`.
//!
//! As with the IPv4 and TCP views, [`UdpHdr::new_checked`] validates the buffer once (the
//! 8-byte header is present); after that the accessors cannot panic. The `len` field is
//! only read, never trusted: `udp_rcv` compares it against the datagram itself.

use core::fmt;

use blink_netcore::checksum::{csum_add, pseudo_header_ipv4, Csum};
use blink_netcore::if_ether::WireError;

/// `IPPROTO_UDP`; kept local so this file needs only netcore.
const IPPROTO_UDP: u8 = 17;

/// Octets of the header (`sizeof(struct udphdr)`).
pub const UDP_HLEN: usize = 8;

/// What a computed checksum of zero is sent as: zero on the wire means "no checksum"
/// (RFC 768). Linux: `CSUM_MANGLED_0`.
pub const CSUM_MANGLED_0: u16 = 0xffff;

mod field {
    pub type Field = core::ops::Range<usize>;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LEN: Field = 4..6;
    pub const CHECK: Field = 6..8;
}

#[inline]
fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// A view of a UDP header and whatever payload follows it in the same buffer.
#[derive(Clone, Copy)]
pub struct UdpHdr<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpHdr<T> {
    /// A view without checks: the accessors panic if the buffer is shorter than 8 bytes.
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpHdr { buffer }
    }

    /// A view over a buffer holding at least the 8-byte header.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < UDP_HLEN {
            return Err(WireError::Truncated);
        }
        Ok(UdpHdr { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn src_port(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::SRC_PORT])
    }

    pub fn dst_port(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::DST_PORT])
    }

    /// `len`: header plus payload, as declared by the sender.
    pub fn len(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::LEN])
    }

    /// True when `len` declares less than a header (always malformed).
    pub fn is_empty(&self) -> bool {
        (self.len() as usize) < UDP_HLEN
    }

    /// `check` as stored; 0 means the sender computed none.
    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECK])
    }

    /// Payload bytes in this buffer, clamped to `len`.
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let end = (self.len() as usize).clamp(UDP_HLEN, b.len().max(UDP_HLEN));
        &b[UDP_HLEN..end.min(b.len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpHdr<T> {
    pub fn set_src_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_dst_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::LEN].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECK].copy_from_slice(&v.to_be_bytes());
    }
}

impl<T: AsRef<[u8]>> fmt::Debug for UdpHdr<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "UDP {} > {} len {} check {:#06x}",
            self.src_port(),
            self.dst_port(),
            self.len(),
            self.checksum()
        )
    }
}

/// The parsed header (smoltcp's `Repr`): what a sender fills in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    /// Payload bytes (the header's `len` is this plus 8).
    pub payload_len: usize,
}

impl UdpRepr {
    /// Parse a header whose `len` field is sane (8..=buffer). The checksum is not looked at:
    /// verifying it needs the pseudo-header, see [`udp_v4_verify`].
    pub fn parse<T: AsRef<[u8]>>(h: &UdpHdr<T>) -> Result<UdpRepr, WireError> {
        let len = h.len() as usize;
        if len < UDP_HLEN {
            return Err(WireError::Malformed);
        }
        if len > h.buffer.as_ref().len() {
            return Err(WireError::Truncated);
        }
        Ok(UdpRepr {
            src_port: h.src_port(),
            dst_port: h.dst_port(),
            payload_len: len - UDP_HLEN,
        })
    }

    /// Write ports and length; the checksum field is zeroed (fill it afterwards).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, h: &mut UdpHdr<T>) {
        h.set_src_port(self.src_port);
        h.set_dst_port(self.dst_port);
        h.set_len((self.payload_len + UDP_HLEN) as u16);
        h.set_checksum(0);
    }
}

/// Checksum of a UDP datagram held in several pieces (header first, checksum field zero,
/// then payload pieces), ready to store: a result of 0 is sent as [`CSUM_MANGLED_0`].
/// Linux: `udp4_hwcsum()`'s software sibling, `udp_v4_check()` over `skb_checksum()`.
pub fn udp_v4_check(src: [u8; 4], dst: [u8; 4], segments: &[&[u8]]) -> u16 {
    let len: usize = segments.iter().map(|s| s.len()).sum();
    let mut c = Csum::with_sum(pseudo_header_ipv4(src, dst, IPPROTO_UDP, len as u16));
    for s in segments {
        c.add(s);
    }
    match c.finish() {
        0 => CSUM_MANGLED_0,
        v => v,
    }
}

/// [`udp_v4_check`] of a datagram whose header holds `sport`, `dport` and the length of
/// `payload` plus the header (checksum field zero): the header's words are summed from those
/// values rather than read back. The header has just been written field by field, and an
/// 8-byte load over 2-byte stores still in the store buffer cannot be forwarded from them: a
/// stall of a dozen cycles, on every datagram sent.
pub fn udp_v4_check_fields(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> u16 {
    let len = (payload.len() + UDP_HLEN) as u16;
    let hdr = sport as u32 + dport as u32 + len as u32;
    let mut c = Csum::with_sum(csum_add(pseudo_header_ipv4(src, dst, IPPROTO_UDP, len), hdr));
    c.add(payload);
    match c.finish() {
        0 => CSUM_MANGLED_0,
        v => v,
    }
}

/// True when the stored (non-zero) checksum is right for the whole datagram of `len` bytes
/// held in `segments`. Linux: `udp4_csum_init()` + `__skb_checksum_complete()`.
pub fn udp_v4_verify<'a>(src: [u8; 4], dst: [u8; 4], len: usize, segments: impl Iterator<Item = &'a [u8]>) -> bool {
    let mut c = Csum::with_sum(pseudo_header_ipv4(src, dst, IPPROTO_UDP, len as u16));
    for s in segments {
        c.add(s);
    }
    c.finish() == 0
}

/// The pseudo-header sum a device with UDP checksum offload expects in `check`
/// (Linux: `udp4_hwcsum()` stores `~csum_tcpudp_magic(.., 0)`).
pub fn udp_v4_pseudo(src: [u8; 4], dst: [u8; 4], len: u16) -> u16 {
    let mut c = Csum::with_sum(pseudo_header_ipv4(src, dst, IPPROTO_UDP, len));
    c.add(&[]);
    !c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_from_fields_equals_check_over_the_header() {
        for (len, sp, dp) in [(0usize, 1u16, 2u16), (1, 53, 4660), (64, 0xffff, 0xfffe), (1471, 9, 0)] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut h = [0u8; UDP_HLEN];
            UdpRepr {
                src_port: sp,
                dst_port: dp,
                payload_len: len,
            }
            .emit(&mut UdpHdr::new_unchecked(&mut h[..]));
            let want = udp_v4_check(SRC, DST, &[&h, &payload]);
            assert_eq!(udp_v4_check_fields(SRC, DST, sp, dp, &payload), want, "len {len}");
        }
    }

    // 10.0.0.1:4660 -> 10.0.0.2:53, payload "abc", checksum computed by hand below and
    // cross-checked with etherparse in the integration tests.
    const SRC: [u8; 4] = [10, 0, 0, 1];
    const DST: [u8; 4] = [10, 0, 0, 2];
    const PKT: [u8; 11] = [0x12, 0x34, 0x00, 0x35, 0x00, 0x0b, 0x00, 0x00, b'a', b'b', b'c'];

    #[test]
    fn deconstruct() {
        let h = UdpHdr::new_checked(&PKT[..]).unwrap();
        assert_eq!(h.src_port(), 0x1234);
        assert_eq!(h.dst_port(), 53);
        assert_eq!(h.len(), 11);
        assert_eq!(h.checksum(), 0);
        assert_eq!(h.payload(), b"abc");
        let r = UdpRepr::parse(&h).unwrap();
        assert_eq!(
            r,
            UdpRepr {
                src_port: 0x1234,
                dst_port: 53,
                payload_len: 3
            }
        );
    }

    #[test]
    fn short_and_lying_headers() {
        assert_eq!(UdpHdr::new_checked(&PKT[..7]).err(), Some(WireError::Truncated));
        let mut b = PKT;
        b[5] = 4; // len 4 < 8
        assert_eq!(
            UdpRepr::parse(&UdpHdr::new_unchecked(&b[..])).err(),
            Some(WireError::Malformed)
        );
        assert!(UdpHdr::new_unchecked(&b[..]).is_empty());
        assert_eq!(UdpHdr::new_unchecked(&b[..]).payload(), b"");
        b[5] = 200; // len past the buffer
        assert_eq!(
            UdpRepr::parse(&UdpHdr::new_unchecked(&b[..])).err(),
            Some(WireError::Truncated)
        );
        assert_eq!(UdpHdr::new_unchecked(&b[..]).payload(), b"abc");
    }

    #[test]
    fn construct_and_checksum_round_trip() {
        let mut b = [0u8; 11];
        let repr = UdpRepr {
            src_port: 0x1234,
            dst_port: 53,
            payload_len: 3,
        };
        repr.emit(&mut UdpHdr::new_unchecked(&mut b[..]));
        b[8..].copy_from_slice(b"abc");
        assert_eq!(b, PKT);
        // Split across pieces at an odd boundary: same result as one piece.
        let one = udp_v4_check(SRC, DST, &[&b[..]]);
        let split = udp_v4_check(SRC, DST, &[&b[..8], &b[8..9], &b[9..]]);
        assert_eq!(one, split);
        UdpHdr::new_unchecked(&mut b[..]).set_checksum(one);
        assert!(udp_v4_verify(SRC, DST, 11, [&b[..8], &b[8..]].into_iter()));
        b[10] ^= 1;
        assert!(!udp_v4_verify(SRC, DST, 11, [&b[..]].into_iter()));
    }

    #[test]
    fn checksum_known_value() {
        // Pseudo: 0a00+0001+0a00+0002+0011+000b = 0x141f; header: 1234+0035+000b = 0x1274;
        // data: 6162+6300 = 0xc462. Sum 0x141f+0x1274+0xc462 = 0xeaf5 -> !0xeaf5 = 0x150a.
        assert_eq!(udp_v4_check(SRC, DST, &[&PKT[..]]), 0x150a);
    }

    #[test]
    fn pseudo_for_offload() {
        // The device adds the datagram's sum to the stored pseudo sum and complements: the
        // result must equal the software checksum.
        let p = udp_v4_pseudo(SRC, DST, 11);
        let mut b = PKT;
        UdpHdr::new_unchecked(&mut b[..]).set_checksum(p);
        let mut c = Csum::new();
        c.add(&b);
        assert_eq!(c.finish(), udp_v4_check(SRC, DST, &[&PKT[..]]));
    }
}
