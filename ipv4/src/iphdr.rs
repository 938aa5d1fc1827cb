//! The IPv4 header view, its `Repr`, and IPv4 prefix helpers.
//!
//! Linux: `struct iphdr` in include/uapi/linux/ip.h, `IP_DF`/`IP_MF`/`IP_OFFSET`
//! in include/net/ip.h, `IPPROTO_*` in include/uapi/linux/in.h.
//!
//! The view checks only that the 20-byte fixed header is present. Whether the
//! version, IHL, total length and checksum are sane is `ip_rcv()`'s call, and
//! it counts each failure separately (`InHdrErrors`, `InTruncatedPkts`,
//! `InCsumErrors`), so the accessors below return raw values and clamp the
//! variable-length parts to the buffer instead of refusing them.

use core::fmt;
use core::ops::Range;
use core::str::FromStr;
use std::net::Ipv4Addr;

use blink_netcore::checksum::{csum_fold, csum_replace2, ip_fast_csum};
use blink_netcore::if_ether::WireError;

/// Linux: `IPVERSION`.
pub const IPVERSION: u8 = 4;
/// Octets in a header without options (`sizeof(struct iphdr)`).
pub const IPV4_MIN_HLEN: usize = 20;
/// Octets in a header with the most options (IHL 15).
pub const IPV4_MAX_HLEN: usize = 60;
/// Linux: `IPDEFTTL`.
pub const IPDEFTTL: u8 = 64;
/// Linux: `MAXTTL`.
pub const MAXTTL: u8 = 255;

/// `frag_off` bit: congestion (reserved, "evil") flag. Linux: `IP_CE`.
pub const IP_CE: u16 = 0x8000;
/// `frag_off` bit: don't fragment. Linux: `IP_DF`.
pub const IP_DF: u16 = 0x4000;
/// `frag_off` bit: more fragments. Linux: `IP_MF`.
pub const IP_MF: u16 = 0x2000;
/// `frag_off` mask: fragment offset in 8-byte units. Linux: `IP_OFFSET`.
pub const IP_OFFSET: u16 = 0x1FFF;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_IPIP: u8 = 4;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_GRE: u8 = 47;
pub const IPPROTO_OSPF: u8 = 89;
pub const IPPROTO_RAW: u8 = 255;

mod field {
    pub type Field = core::ops::Range<usize>;

    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const TOT_LEN: Field = 2..4;
    pub const ID: Field = 4..6;
    pub const FRAG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECK: Field = 10..12;
    pub const SADDR: Field = 12..16;
    pub const DADDR: Field = 16..20;
    pub const OPTIONS: usize = 20;
}

#[inline]
fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// A view of an IPv4 header and what follows it.
///
/// Linux: `struct iphdr` and `ip_hdr(skb)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Hdr<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Hdr<T> {
    /// Wraps a buffer without checking its length; accessors may panic if it
    /// is shorter than [`IPV4_MIN_HLEN`].
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Hdr { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let hdr = Self::new_unchecked(buffer);
        hdr.check_len()?;
        Ok(hdr)
    }

    /// `Err(Truncated)` if the buffer cannot hold the 20-byte fixed header.
    /// Nothing else is checked (see the module docs).
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < IPV4_MIN_HLEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// `version`, should be [`IPVERSION`].
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// `ihl`: header length in 32-bit words (valid: 5..=15).
    pub fn ihl(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] & 0x0f
    }

    /// Header length in bytes (`ihl * 4`), as declared; may be below 20.
    pub fn header_len(&self) -> usize {
        self.ihl() as usize * 4
    }

    /// `tos` (DSCP << 2 | ECN).
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    /// `tot_len`: header plus payload, as declared.
    pub fn total_len(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::TOT_LEN])
    }

    /// `id`.
    pub fn id(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::ID])
    }

    /// `frag_off` raw: flags ([`IP_CE`], [`IP_DF`], [`IP_MF`]) and offset.
    pub fn frag_off(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::FRAG_OFF])
    }

    /// [`IP_DF`] set.
    pub fn dont_frag(&self) -> bool {
        self.frag_off() & IP_DF != 0
    }

    /// [`IP_MF`] set.
    pub fn more_frags(&self) -> bool {
        self.frag_off() & IP_MF != 0
    }

    /// Fragment offset in bytes (`(frag_off & IP_OFFSET) << 3`).
    pub fn frag_offset(&self) -> usize {
        ((self.frag_off() & IP_OFFSET) as usize) << 3
    }

    /// A fragment: MF set or a non-zero offset. Linux: `ip_is_fragment()`.
    pub fn is_fragment(&self) -> bool {
        self.frag_off() & (IP_MF | IP_OFFSET) != 0
    }

    /// `ttl`.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// `protocol`, e.g. [`IPPROTO_TCP`].
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// `check` as stored.
    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECK])
    }

    /// `saddr`.
    pub fn src(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// `daddr`.
    pub fn dst(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::DADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// True when `header_len()` is at least 20 and the buffer holds it and the
    /// header checksums to zero. Linux: `ip_fast_csum(iph, iph->ihl)` in `ip_rcv_core()`.
    pub fn verify_checksum(&self) -> bool {
        let hl = self.header_len();
        let buf = self.buffer.as_ref();
        hl >= IPV4_MIN_HLEN && hl <= buf.len() && ip_fast_csum(&buf[..hl]) == 0
    }

    /// Options: bytes 20..header_len, or empty if the IHL is 5 or less or the
    /// buffer does not hold the whole header.
    fn options_range(&self) -> Range<usize> {
        let hl = self.header_len();
        if hl > IPV4_MIN_HLEN && hl <= self.buffer.as_ref().len() {
            field::OPTIONS..hl
        } else {
            0..0
        }
    }

    /// Payload: header_len..min(total_len, buffer length), or empty if the IHL
    /// is below 5 or the header reaches past that end.
    fn payload_range(&self) -> Range<usize> {
        let hl = self.header_len();
        let end = (self.total_len() as usize).min(self.buffer.as_ref().len());
        if hl >= IPV4_MIN_HLEN && hl <= end {
            hl..end
        } else {
            0..0
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Ipv4Hdr<&'a T> {
    /// IP options (see [`Ipv4Hdr::header_len`]); empty unless the IHL is above 5
    /// and the buffer holds the whole header.
    pub fn options(&self) -> &'a [u8] {
        let r = self.options_range();
        &self.buffer.as_ref()[r]
    }

    /// The datagram's payload: from `header_len()` up to `total_len()`, clamped
    /// to the buffer (trailing link-layer padding excluded, a truncated
    /// payload cut short). Empty if the IHL is below 5 or past that end.
    pub fn payload(&self) -> &'a [u8] {
        let r = self.payload_range();
        &self.buffer.as_ref()[r]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Hdr<T> {
    /// Sets `version`.
    pub fn set_version(&mut self, v: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (v << 4);
    }

    /// Sets `ihl` (32-bit words).
    pub fn set_ihl(&mut self, words: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | (words & 0x0f);
    }

    /// Sets `ihl` from a length in bytes (a multiple of 4, at most 60).
    pub fn set_header_len(&mut self, bytes: usize) {
        self.set_ihl((bytes / 4) as u8);
    }

    /// Sets `tos`.
    pub fn set_tos(&mut self, v: u8) {
        self.buffer.as_mut()[field::TOS] = v;
    }

    /// Sets `tot_len`.
    pub fn set_total_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::TOT_LEN].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets `id`.
    pub fn set_id(&mut self, v: u16) {
        self.buffer.as_mut()[field::ID].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets `frag_off` raw (flags and offset).
    pub fn set_frag_off(&mut self, v: u16) {
        self.buffer.as_mut()[field::FRAG_OFF].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets or clears [`IP_DF`].
    pub fn set_dont_frag(&mut self, on: bool) {
        let f = self.frag_off() & !IP_DF;
        self.set_frag_off(if on { f | IP_DF } else { f });
    }

    /// Sets or clears [`IP_MF`].
    pub fn set_more_frags(&mut self, on: bool) {
        let f = self.frag_off() & !IP_MF;
        self.set_frag_off(if on { f | IP_MF } else { f });
    }

    /// Sets the fragment offset from bytes (a multiple of 8), keeping the flags.
    pub fn set_frag_offset(&mut self, bytes: usize) {
        let units = ((bytes >> 3) as u16) & IP_OFFSET;
        let f = self.frag_off() & !IP_OFFSET;
        self.set_frag_off(f | units);
    }

    /// Sets `ttl`.
    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }

    /// Sets `protocol`.
    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = v;
    }

    /// Sets `check`.
    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECK].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets `saddr`.
    pub fn set_src(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SADDR].copy_from_slice(&a.octets());
    }

    /// Sets `daddr`.
    pub fn set_dst(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DADDR].copy_from_slice(&a.octets());
    }

    /// Computes and stores `check` over `header_len()` bytes (clamped to at
    /// least 20 and at most the buffer). Linux: `ip_send_check()`.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let len = self.buffer.as_ref().len();
        let hl = self.header_len().max(IPV4_MIN_HLEN).min(len);
        let c = ip_fast_csum(&self.buffer.as_ref()[..hl]);
        self.set_checksum(c);
    }

    /// Decrements `ttl` and patches `check` incrementally (RFC 1624); returns
    /// the new TTL. Callers check for a TTL of 1 or less first.
    /// Linux: `ip_decrease_ttl()` in include/net/ip.h.
    pub fn decrease_ttl(&mut self) -> u8 {
        let ttl = self.ttl();
        let proto = self.protocol();
        let new_ttl = ttl.wrapping_sub(1);
        let old = u16::from_be_bytes([ttl, proto]);
        let new = u16::from_be_bytes([new_ttl, proto]);
        let c = csum_replace2(self.checksum(), old, new);
        self.set_ttl(new_ttl);
        self.set_checksum(c);
        new_ttl
    }

    /// Options, writable (same clamping as [`Ipv4Hdr::options`]).
    pub fn options_mut(&mut self) -> &mut [u8] {
        let r = self.options_range();
        &mut self.buffer.as_mut()[r]
    }

    /// Payload, writable (same clamping as [`Ipv4Hdr::payload`]).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let r = self.payload_range();
        &mut self.buffer.as_mut()[r]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Ipv4Hdr<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The parsed contents of an IPv4 header, as blink builds them: no options,
/// never a fragment (fragmentation writes MF/offset through the view).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    pub tos: u8,
    pub id: u16,
    /// [`IP_DF`].
    pub df: bool,
    /// Octets after the header (`tot_len - ihl * 4`).
    pub payload_len: usize,
}

impl Ipv4Repr {
    /// Reads a header for which `ip_rcv()` would not count an error other
    /// than the checksum.
    ///
    /// * `Err(Truncated)`: the buffer is shorter than 20 bytes.
    /// * `Err(Malformed)`: version != 4, IHL < 5, `tot_len` < header length,
    ///   or the buffer is shorter than `tot_len`.
    ///
    /// The checksum is *not* verified (the device may have done it; see
    /// [`Ipv4Hdr::verify_checksum`]). Options are skipped, and MF / fragment
    /// offset are not represented: `ip_defrag()` reads them from the view.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(hdr: &Ipv4Hdr<&T>) -> Result<Ipv4Repr, WireError> {
        hdr.check_len()?;
        let hl = hdr.header_len();
        let tot = hdr.total_len() as usize;
        if hdr.version() != IPVERSION || hl < IPV4_MIN_HLEN || tot < hl || hdr.buffer.as_ref().len() < tot {
            return Err(WireError::Malformed);
        }
        Ok(Ipv4Repr {
            src: hdr.src(),
            dst: hdr.dst(),
            protocol: hdr.protocol(),
            ttl: hdr.ttl(),
            tos: hdr.tos(),
            id: hdr.id(),
            df: hdr.dont_frag(),
            payload_len: tot - hl,
        })
    }

    /// Octets of the header `emit` writes: 20.
    pub const fn header_len(&self) -> usize {
        IPV4_MIN_HLEN
    }

    /// Octets of header plus payload.
    pub const fn buffer_len(&self) -> usize {
        IPV4_MIN_HLEN + self.payload_len
    }

    /// Writes a 20-byte header (IHL 5, no options, not a fragment) and fills
    /// the checksum. The view must hold at least 20 bytes (guaranteed by
    /// `new_checked`); `payload_len` must not exceed 65515, else `tot_len`
    /// saturates at 65535. Linux: the header part of `__ip_queue_xmit()`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, hdr: &mut Ipv4Hdr<&mut T>) {
        debug_assert!(self.payload_len <= u16::MAX as usize - IPV4_MIN_HLEN);
        let tot = u16::try_from(self.buffer_len()).unwrap_or(u16::MAX);
        hdr.set_version(IPVERSION);
        hdr.set_ihl(5);
        hdr.set_tos(self.tos);
        hdr.set_total_len(tot);
        hdr.set_id(self.id);
        hdr.set_frag_off(if self.df { IP_DF } else { 0 });
        hdr.set_ttl(self.ttl);
        hdr.set_protocol(self.protocol);
        hdr.set_src(self.src);
        hdr.set_dst(self.dst);
        // The checksum is summed from the field values, not read back from the header just
        // written: its 1-, 2- and 4-byte stores are still in the store buffer, and the 8-byte
        // loads of a checksum over them cannot be forwarded (a stall of a dozen cycles each,
        // on every packet sent: ~4% of a UDP sender's time, perf).
        let (s, d) = (u32::from(self.src), u32::from(self.dst));
        let sum = ((IPVERSION as u32) << 12 | 5 << 8 | self.tos as u32)
            + tot as u32
            + self.id as u32
            + if self.df { IP_DF as u32 } else { 0 }
            + ((self.ttl as u32) << 8 | self.protocol as u32)
            + (s >> 16)
            + (s & 0xffff)
            + (d >> 16)
            + (d & 0xffff);
        hdr.set_checksum(csum_fold(sum));
    }
}

impl fmt::Display for Ipv4Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IPv4 src={} dst={} proto={} ttl={} tos={:#04x} id={}{} len={}",
            self.src,
            self.dst,
            self.protocol,
            self.ttl,
            self.tos,
            self.id,
            if self.df { " DF" } else { "" },
            self.payload_len
        )
    }
}

/// An interface address with its prefix length, as in `ip addr add A.B.C.D/LEN`.
/// The address keeps its host bits; [`network`](Self::network) drops them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    /// 0..=32; larger values behave as 32.
    pub prefix_len: u8,
}

/// Error of `Ipv4Cidr::from_str` / [`Ipv4Cidr::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ipv4CidrError {
    #[error("missing \"/LEN\" prefix length (expected A.B.C.D/LEN)")]
    MissingPrefixLen,
    #[error("invalid IPv4 address before '/' (expected A.B.C.D/LEN)")]
    InvalidAddress,
    #[error("invalid prefix length after '/' (expected a number from 0 to 32)")]
    InvalidPrefixLen,
}

impl Ipv4Cidr {
    /// `Err(InvalidPrefixLen)` if `prefix_len > 32`.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Self, Ipv4CidrError> {
        if prefix_len > 32 {
            return Err(Ipv4CidrError::InvalidPrefixLen);
        }
        Ok(Ipv4Cidr { addr, prefix_len })
    }

    /// From an address and a dotted netmask (IPAugenblick-style `<ip> <mask>`);
    /// `None` if the mask is not contiguous.
    pub fn from_netmask(addr: Ipv4Addr, mask: Ipv4Addr) -> Option<Self> {
        Some(Ipv4Cidr {
            addr,
            prefix_len: inet_mask_len(mask)?,
        })
    }

    fn mask_u32(&self) -> u32 {
        let len = self.prefix_len.min(32) as u32;
        u32::MAX.checked_shl(32 - len).unwrap_or(0)
    }

    /// The netmask, e.g. 255.255.255.0 for /24. Linux: `inet_make_mask()`.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask_u32())
    }

    /// The address with its host bits cleared.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask_u32())
    }

    /// The address with all host bits set (for /31 and /32 just the highest
    /// address of the prefix, RFC 3021).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask_u32())
    }

    /// `ip` lies within the prefix. Linux: `inet_ifa_match()`.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let m = self.mask_u32();
        (u32::from(ip) ^ u32::from(self.addr)) & m == 0
    }
}

impl FromStr for Ipv4Cidr {
    type Err = Ipv4CidrError;

    /// Parses `A.B.C.D/LEN` with LEN in 0..=32 written in decimal.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, l) = s.split_once('/').ok_or(Ipv4CidrError::MissingPrefixLen)?;
        let addr = Ipv4Addr::from_str(a).map_err(|_| Ipv4CidrError::InvalidAddress)?;
        if l.is_empty() || l.len() > 2 || !l.bytes().all(|c| c.is_ascii_digit()) {
            return Err(Ipv4CidrError::InvalidPrefixLen);
        }
        let len = l.parse::<u8>().map_err(|_| Ipv4CidrError::InvalidPrefixLen)?;
        Ipv4Cidr::new(addr, len)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Prefix length of a contiguous netmask (255.255.255.0 -> 24); `None` for a
/// non-contiguous one. Linux: `inet_mask_len()` plus the `bad_mask()` check.
pub fn inet_mask_len(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let ones = m.leading_ones();
    if ones + m.trailing_zeros() == 32 {
        Some(ones as u8)
    } else {
        None
    }
}

/// Prefix length of a dotted netmask string ("255.255.255.0" -> `Some(24)`);
/// `None` if it is not an IPv4 address or not contiguous.
pub fn mask_to_prefix(mask: &str) -> Option<u8> {
    inet_mask_len(Ipv4Addr::from_str(mask).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 10.0.0.1 -> 10.0.0.2, ICMP, id 0x1234, DF, TTL 64, tot_len 32, then an
    // ICMP echo request (12 bytes) and 2 bytes of link-layer padding.
    static PKT: [u8; 34] = [
        0x45, 0x00, 0x00, 0x20, 0x12, 0x34, 0x40, 0x00, 0x40, 0x01, 0x14, 0xa7, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00,
        0x00, 0x02, //
        0x08, 0x00, 0x6d, 0x60, 0xab, 0xcd, 0x00, 0x01, b'p', b'i', b'n', b'g', //
        0x00, 0x00,
    ];
    static PAYLOAD: [u8; 12] = [0x08, 0x00, 0x6d, 0x60, 0xab, 0xcd, 0x00, 0x01, b'p', b'i', b'n', b'g'];

    // IHL 6 with options NOP NOP NOP EOL; UDP fragment, MF, offset 1480,
    // 192.168.1.1 -> 192.168.1.2, TTL 255, tot_len 32 (8 bytes of payload).
    static FRAG: [u8; 32] = [
        0x46, 0x00, 0x00, 0x20, 0xab, 0xcd, 0x20, 0xb9, 0xff, 0x11, 0x68, 0xf1, 0xc0, 0xa8, 0x01, 0x01, 0xc0, 0xa8,
        0x01, 0x02, 0x01, 0x01, 0x01, 0x00, //
        1, 2, 3, 4, 5, 6, 7, 8,
    ];

    fn repr() -> Ipv4Repr {
        Ipv4Repr {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            protocol: IPPROTO_ICMP,
            ttl: 64,
            tos: 0,
            id: 0x1234,
            df: true,
            payload_len: 12,
        }
    }

    #[test]
    fn deconstruct() {
        let hdr = Ipv4Hdr::new_checked(&PKT[..]).unwrap();
        assert_eq!(hdr.version(), 4);
        assert_eq!(hdr.ihl(), 5);
        assert_eq!(hdr.header_len(), 20);
        assert_eq!(hdr.tos(), 0);
        assert_eq!(hdr.total_len(), 32);
        assert_eq!(hdr.id(), 0x1234);
        assert_eq!(hdr.frag_off(), IP_DF);
        assert!(hdr.dont_frag() && !hdr.more_frags() && !hdr.is_fragment());
        assert_eq!(hdr.frag_offset(), 0);
        assert_eq!(hdr.ttl(), 64);
        assert_eq!(hdr.protocol(), IPPROTO_ICMP);
        assert_eq!(hdr.checksum(), 0x14a7);
        assert_eq!(hdr.src(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(hdr.dst(), Ipv4Addr::new(10, 0, 0, 2));
        assert!(hdr.verify_checksum());
        assert!(hdr.options().is_empty());
        assert_eq!(hdr.payload(), &PAYLOAD[..], "padding excluded");
    }

    #[test]
    fn deconstruct_options_and_fragment() {
        let hdr = Ipv4Hdr::new_checked(&FRAG[..]).unwrap();
        assert_eq!(hdr.ihl(), 6);
        assert_eq!(hdr.header_len(), 24);
        assert_eq!(hdr.options(), &[1, 1, 1, 0]);
        assert!(hdr.more_frags() && !hdr.dont_frag() && hdr.is_fragment());
        assert_eq!(hdr.frag_offset(), 1480);
        assert_eq!(hdr.protocol(), IPPROTO_UDP);
        assert!(hdr.verify_checksum());
        assert_eq!(hdr.payload(), &[1, 2, 3, 4, 5, 6, 7, 8]);

        // Buffer ends inside the options: they and the payload read as empty.
        let short = Ipv4Hdr::new_checked(&FRAG[..22]).unwrap();
        assert!(short.options().is_empty());
        assert!(short.payload().is_empty());
        assert!(!short.verify_checksum());

        // Truncated payload is clamped to the buffer.
        let cut = Ipv4Hdr::new_checked(&FRAG[..28]).unwrap();
        assert_eq!(cut.payload(), &[1, 2, 3, 4]);
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5u8; 34];
        bytes[32] = 0;
        bytes[33] = 0;
        let mut hdr = Ipv4Hdr::new_checked(&mut bytes[..]).unwrap();
        hdr.set_version(4);
        hdr.set_header_len(20);
        hdr.set_tos(0);
        hdr.set_total_len(32);
        hdr.set_id(0x1234);
        hdr.set_frag_off(0);
        hdr.set_dont_frag(true);
        hdr.set_more_frags(false);
        hdr.set_frag_offset(0);
        hdr.set_ttl(64);
        hdr.set_protocol(IPPROTO_ICMP);
        hdr.set_src(Ipv4Addr::new(10, 0, 0, 1));
        hdr.set_dst(Ipv4Addr::new(10, 0, 0, 2));
        hdr.fill_checksum();
        hdr.payload_mut().copy_from_slice(&PAYLOAD);
        assert_eq!(hdr.into_inner(), &PKT[..]);
    }

    #[test]
    fn construct_options_and_fragment() {
        let mut bytes = [0u8; 32];
        let mut hdr = Ipv4Hdr::new_checked(&mut bytes[..]).unwrap();
        hdr.set_version(4);
        hdr.set_ihl(6);
        hdr.set_total_len(32);
        hdr.set_id(0xabcd);
        hdr.set_more_frags(true);
        hdr.set_frag_offset(1480);
        hdr.set_ttl(255);
        hdr.set_protocol(IPPROTO_UDP);
        hdr.set_src(Ipv4Addr::new(192, 168, 1, 1));
        hdr.set_dst(Ipv4Addr::new(192, 168, 1, 2));
        hdr.options_mut().copy_from_slice(&[1, 1, 1, 0]);
        hdr.payload_mut().copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        hdr.fill_checksum();
        assert_eq!(bytes, FRAG);
    }

    #[test]
    fn parse() {
        let hdr = Ipv4Hdr::new_checked(&PKT[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&hdr), Ok(repr()));
        let hdr = Ipv4Hdr::new_checked(&FRAG[..]).unwrap();
        let r = Ipv4Repr::parse(&hdr).unwrap();
        assert_eq!(r.payload_len, 8, "options are not payload");
        assert!(!r.df);
    }

    #[test]
    fn emit() {
        let r = repr();
        let mut bytes = [0u8; 34];
        let mut hdr = Ipv4Hdr::new_checked(&mut bytes[..]).unwrap();
        r.emit(&mut hdr);
        hdr.payload_mut().copy_from_slice(&PAYLOAD);
        assert_eq!(bytes, PKT);
        assert_eq!(r.header_len(), 20);
        assert_eq!(r.buffer_len(), 32);
    }

    #[test]
    fn emitted_checksum_verifies_for_any_fields() {
        // The checksum is computed from the fields, not the bytes: over a buffer of garbage,
        // for field values that carry in the sum, the header must still verify.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let r = Ipv4Repr {
                src: Ipv4Addr::from(x as u32),
                dst: Ipv4Addr::from((x >> 32) as u32),
                protocol: (x >> 8) as u8,
                ttl: (x >> 16) as u8,
                tos: (x >> 24) as u8,
                id: (x >> 40) as u16,
                df: x & 1 == 1,
                payload_len: (x >> 48) as usize % 65000,
            };
            let mut bytes = [(x >> 56) as u8; 20];
            r.emit(&mut Ipv4Hdr::new_unchecked(&mut bytes[..]));
            assert_eq!(ip_fast_csum(&bytes), 0, "{r}");
            let h = Ipv4Hdr::new_unchecked(&bytes[..]);
            assert_eq!((h.src(), h.dst(), h.id(), h.ttl()), (r.src, r.dst, r.id, r.ttl));
        }
    }

    #[test]
    fn parse_errors() {
        let trunc = Ipv4Hdr::new_checked(&PKT[..19]);
        assert_eq!(trunc.err(), Some(WireError::Truncated));
        assert_eq!(
            Ipv4Repr::parse(&Ipv4Hdr::new_unchecked(&PKT[..10])),
            Err(WireError::Truncated)
        );

        let malformed = |edit: &dyn Fn(&mut [u8]), len: usize| {
            let mut b = PKT;
            edit(&mut b);
            let hdr = Ipv4Hdr::new_checked(&b[..len]).unwrap();
            Ipv4Repr::parse(&hdr)
        };
        assert_eq!(malformed(&|b| b[0] = 0x65, 34), Err(WireError::Malformed));
        assert_eq!(malformed(&|b| b[0] = 0x44, 34), Err(WireError::Malformed));
        assert_eq!(malformed(&|b| b[3] = 19, 34), Err(WireError::Malformed));
        assert_eq!(malformed(&|_| (), 31), Err(WireError::Malformed));
        assert_eq!(malformed(&|b| b[0] = 0x4f, 34), Err(WireError::Malformed));
        // A bad checksum is not parse's business.
        assert_eq!(malformed(&|b| b[11] ^= 1, 34), Ok(repr()));
        assert!(!Ipv4Hdr::new_checked(
            &{
                let mut b = PKT;
                b[11] ^= 1;
                b
            }[..]
        )
        .unwrap()
        .verify_checksum());
    }

    #[test]
    fn accessors_never_panic() {
        // Every IHL and a spread of tot_len values, over every buffer length
        // from 20 to 64: all accessors must clamp rather than panic.
        let mut base = [0u8; 64];
        for (i, b) in base.iter_mut().enumerate() {
            *b = i as u8;
        }
        for ihl in 0..16u8 {
            for tot in [0u16, 1, 19, 20, 24, 40, 60, 64, 65, 1500, 65535] {
                for len in 20..=64 {
                    let mut b = base;
                    b[0] = 0x40 | ihl;
                    b[2..4].copy_from_slice(&tot.to_be_bytes());
                    let hdr = Ipv4Hdr::new_checked(&b[..len]).unwrap();
                    let _ = (hdr.verify_checksum(), hdr.options(), hdr.payload());
                    let _ = Ipv4Repr::parse(&hdr);
                    let mut hdr = Ipv4Hdr::new_checked(&mut b[..len]).unwrap();
                    hdr.fill_checksum();
                    let _ = (hdr.options_mut().len(), hdr.payload_mut().len());
                    hdr.decrease_ttl();
                }
            }
        }
    }

    #[test]
    fn decrease_ttl_keeps_checksum_valid() {
        let mut b = PKT;
        let mut hdr = Ipv4Hdr::new_checked(&mut b[..]).unwrap();
        for want in (0..64u8).rev() {
            assert_eq!(hdr.decrease_ttl(), want);
            assert!(hdr.verify_checksum(), "ttl {want}");
        }
    }

    #[test]
    fn etherparse_oracle() {
        for pkt in [&PKT[..32], &FRAG[..]] {
            let theirs = etherparse::Ipv4HeaderSlice::from_slice(pkt).unwrap();
            let hdr = Ipv4Hdr::new_checked(pkt).unwrap();
            assert_eq!(hdr.header_len(), theirs.slice().len());
            assert_eq!(hdr.total_len(), theirs.total_len());
            assert_eq!(hdr.id(), theirs.identification());
            assert_eq!(hdr.dont_frag(), theirs.dont_fragment());
            assert_eq!(hdr.more_frags(), theirs.more_fragments());
            assert_eq!(hdr.frag_offset(), theirs.fragments_offset().value() as usize * 8);
            assert_eq!(hdr.ttl(), theirs.ttl());
            assert_eq!(hdr.protocol(), theirs.protocol().0);
            assert_eq!(hdr.src(), theirs.source_addr());
            assert_eq!(hdr.dst(), theirs.destination_addr());
            assert_eq!(hdr.options(), theirs.options());
            assert_eq!(hdr.checksum(), theirs.to_header().calc_header_checksum());
        }
    }

    #[test]
    fn repr_display() {
        assert_eq!(
            repr().to_string(),
            "IPv4 src=10.0.0.1 dst=10.0.0.2 proto=1 ttl=64 tos=0x00 id=4660 DF len=12"
        );
    }

    #[test]
    fn cidr() {
        let c: Ipv4Cidr = "192.168.10.77/24".parse().unwrap();
        assert_eq!(c.addr, Ipv4Addr::new(192, 168, 10, 77));
        assert_eq!(c.prefix_len, 24);
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(c.network(), Ipv4Addr::new(192, 168, 10, 0));
        assert_eq!(c.broadcast(), Ipv4Addr::new(192, 168, 10, 255));
        assert!(c.contains(Ipv4Addr::new(192, 168, 10, 1)));
        assert!(!c.contains(Ipv4Addr::new(192, 168, 11, 1)));
        assert_eq!(c.to_string(), "192.168.10.77/24");

        let all: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert_eq!(all.netmask(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(all.broadcast(), Ipv4Addr::BROADCAST);
        assert!(all.contains(Ipv4Addr::new(8, 8, 8, 8)));

        let host: Ipv4Cidr = "10.1.2.3/32".parse().unwrap();
        assert_eq!(host.netmask(), Ipv4Addr::BROADCAST);
        assert_eq!(host.network(), host.addr);
        assert_eq!(host.broadcast(), host.addr);
        assert!(host.contains(host.addr) && !host.contains(Ipv4Addr::new(10, 1, 2, 4)));

        let c20: Ipv4Cidr = "172.16.35.9/20".parse().unwrap();
        assert_eq!(c20.netmask(), Ipv4Addr::new(255, 255, 240, 0));
        assert_eq!(c20.network(), Ipv4Addr::new(172, 16, 32, 0));
        assert_eq!(c20.broadcast(), Ipv4Addr::new(172, 16, 47, 255));

        let wide = Ipv4Cidr {
            addr: Ipv4Addr::new(1, 2, 3, 4),
            prefix_len: 40,
        };
        assert_eq!(wide.netmask(), Ipv4Addr::BROADCAST, "prefix > 32 acts as 32");
        assert_eq!(
            Ipv4Cidr::new(Ipv4Addr::LOCALHOST, 33),
            Err(Ipv4CidrError::InvalidPrefixLen)
        );
        assert_eq!(
            Ipv4Cidr::from_netmask(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(255, 0, 0, 0)),
            Some(Ipv4Cidr {
                addr: Ipv4Addr::new(10, 0, 0, 1),
                prefix_len: 8
            })
        );
    }

    #[test]
    fn cidr_errors() {
        use Ipv4CidrError::*;
        for (s, e) in [
            ("10.0.0.1", MissingPrefixLen),
            ("", MissingPrefixLen),
            ("10.0.0/24", InvalidAddress),
            ("10.0.0.256/24", InvalidAddress),
            ("/24", InvalidAddress),
            ("10.0.0.1/", InvalidPrefixLen),
            ("10.0.0.1/33", InvalidPrefixLen),
            ("10.0.0.1/+8", InvalidPrefixLen),
            ("10.0.0.1/ 8", InvalidPrefixLen),
            ("10.0.0.1/008", InvalidPrefixLen),
            ("10.0.0.1/24/1", InvalidPrefixLen),
        ] {
            assert_eq!(s.parse::<Ipv4Cidr>(), Err(e), "{s:?}");
        }
        assert!(MissingPrefixLen.to_string().contains("A.B.C.D/LEN"));
    }

    #[test]
    fn masks() {
        assert_eq!(mask_to_prefix("255.255.255.0"), Some(24));
        assert_eq!(mask_to_prefix("255.255.255.255"), Some(32));
        assert_eq!(mask_to_prefix("0.0.0.0"), Some(0));
        assert_eq!(mask_to_prefix("255.255.254.0"), Some(23));
        assert_eq!(mask_to_prefix("128.0.0.0"), Some(1));
        assert_eq!(mask_to_prefix("255.0.255.0"), None);
        assert_eq!(mask_to_prefix("0.255.255.255"), None);
        assert_eq!(mask_to_prefix("255.255.255.1"), None);
        assert_eq!(mask_to_prefix("255.255.255"), None);
        assert_eq!(mask_to_prefix("24"), None);
        for len in 0..=32u8 {
            let c = Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, len).unwrap();
            assert_eq!(inet_mask_len(c.netmask()), Some(len));
        }
    }
}
