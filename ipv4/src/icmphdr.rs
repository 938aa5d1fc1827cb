//! ICMPv4 (RFC 792): type and code constants, the message view and an echo `Repr`.
//!
//! Linux: `struct icmphdr` and `ICMP_*` in include/uapi/linux/icmp.h,
//! `icmp_is_err()` in include/linux/icmp.h.

use core::fmt;
use std::net::Ipv4Addr;

use blink_netcore::checksum::{csum_fold, csum_partial};
use blink_netcore::if_ether::WireError;

/// Octets of the ICMP header (`sizeof(struct icmphdr)`).
pub const ICMP_HLEN: usize = 8;

// Types. Linux: include/uapi/linux/icmp.h.
pub const ICMP_ECHOREPLY: u8 = 0;
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_SOURCE_QUENCH: u8 = 4;
pub const ICMP_REDIRECT: u8 = 5;
pub const ICMP_ECHO: u8 = 8;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_PARAMETERPROB: u8 = 12;
pub const ICMP_TIMESTAMP: u8 = 13;
pub const ICMP_TIMESTAMPREPLY: u8 = 14;
pub const ICMP_INFO_REQUEST: u8 = 15;
pub const ICMP_INFO_REPLY: u8 = 16;
pub const ICMP_ADDRESS: u8 = 17;
pub const ICMP_ADDRESSREPLY: u8 = 18;
/// Highest classic type number. Linux: `NR_ICMP_TYPES`.
pub const NR_ICMP_TYPES: u8 = 18;

// Codes for ICMP_DEST_UNREACH.
pub const ICMP_NET_UNREACH: u8 = 0;
pub const ICMP_HOST_UNREACH: u8 = 1;
pub const ICMP_PROT_UNREACH: u8 = 2;
pub const ICMP_PORT_UNREACH: u8 = 3;
/// Fragmentation needed and DF set; the next-hop MTU is in [`IcmpHdr::frag_mtu`].
pub const ICMP_FRAG_NEEDED: u8 = 4;
pub const ICMP_SR_FAILED: u8 = 5;
pub const ICMP_NET_UNKNOWN: u8 = 6;
pub const ICMP_HOST_UNKNOWN: u8 = 7;
pub const ICMP_HOST_ISOLATED: u8 = 8;
pub const ICMP_NET_ANO: u8 = 9;
pub const ICMP_HOST_ANO: u8 = 10;
pub const ICMP_NET_UNR_TOS: u8 = 11;
pub const ICMP_HOST_UNR_TOS: u8 = 12;
pub const ICMP_PKT_FILTERED: u8 = 13;
pub const ICMP_PREC_VIOLATION: u8 = 14;
pub const ICMP_PREC_CUTOFF: u8 = 15;
/// Highest unreachable code. Linux: `NR_ICMP_UNREACH`.
pub const NR_ICMP_UNREACH: u8 = 15;

// Codes for ICMP_REDIRECT.
pub const ICMP_REDIR_NET: u8 = 0;
pub const ICMP_REDIR_HOST: u8 = 1;
pub const ICMP_REDIR_NETTOS: u8 = 2;
pub const ICMP_REDIR_HOSTTOS: u8 = 3;

// Codes for ICMP_TIME_EXCEEDED.
pub const ICMP_EXC_TTL: u8 = 0;
pub const ICMP_EXC_FRAGTIME: u8 = 1;

/// An error message (one that carries an offending datagram and must never
/// be answered with another error): destination unreachable, source quench,
/// redirect, time exceeded, parameter problem. Linux: `icmp_is_err()`.
pub const fn icmp_is_err(icmp_type: u8) -> bool {
    matches!(
        icmp_type,
        ICMP_DEST_UNREACH | ICMP_SOURCE_QUENCH | ICMP_REDIRECT | ICMP_TIME_EXCEEDED | ICMP_PARAMETERPROB
    )
}

mod field {
    pub type Field = core::ops::Range<usize>;
    pub type Rest = core::ops::RangeFrom<usize>;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    /// `un`: the rest of the header, whose meaning depends on the type.
    pub const UN: Field = 4..8;
    pub const ECHO_ID: Field = 4..6;
    pub const ECHO_SEQ: Field = 6..8;
    pub const FRAG_MTU: Field = 6..8;
    pub const PARAM_POINTER: usize = 4;
    pub const PAYLOAD: Rest = 8..;
}

#[inline]
fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// A view of an ICMP message: the 8-byte header and its payload (the echo
/// data, or the offending IP header plus 8 bytes for an error). The buffer
/// is taken to be exactly the message: checksums cover all of it.
///
/// Linux: `struct icmphdr` and `icmp_hdr(skb)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcmpHdr<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpHdr<T> {
    /// Wraps a buffer without checking its length; accessors may panic if it
    /// is shorter than [`ICMP_HLEN`].
    pub const fn new_unchecked(buffer: T) -> Self {
        IcmpHdr { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let hdr = Self::new_unchecked(buffer);
        hdr.check_len()?;
        Ok(hdr)
    }

    /// `Err(Truncated)` if the buffer cannot hold the 8-byte header.
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < ICMP_HLEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// `type`, e.g. [`ICMP_ECHO`].
    pub fn icmp_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// `code`, e.g. [`ICMP_PORT_UNREACH`].
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// `checksum` as stored.
    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// `un` raw: the rest of the header (bytes 4..8), host order.
    pub fn rest_of_header(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::UN];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// `un.echo.id` (echo, echo reply, timestamp, ...).
    pub fn echo_id(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::ECHO_ID])
    }

    /// `un.echo.sequence`.
    pub fn echo_seq(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::ECHO_SEQ])
    }

    /// `un.gateway`: the new gateway of an [`ICMP_REDIRECT`].
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.rest_of_header())
    }

    /// `un.frag.mtu`: next-hop MTU of [`ICMP_FRAG_NEEDED`] (RFC 1191).
    pub fn frag_mtu(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::FRAG_MTU])
    }

    /// Byte offset of the problem in a [`ICMP_PARAMETERPROB`] message
    /// (Linux reads it as `ntohl(icmph->un.gateway) >> 24`).
    pub fn param_pointer(&self) -> u8 {
        self.buffer.as_ref()[field::PARAM_POINTER]
    }

    /// The type is an error type; see [`icmp_is_err`].
    pub fn is_error(&self) -> bool {
        icmp_is_err(self.icmp_type())
    }

    /// The whole buffer checksums to zero. Linux: the `csum_fold()` check
    /// in `icmp_rcv()`.
    pub fn verify_checksum(&self) -> bool {
        csum_fold(csum_partial(self.buffer.as_ref(), 0)) == 0
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> IcmpHdr<&'a T> {
    /// Everything after the 8-byte header.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpHdr<T> {
    /// Sets `type`.
    pub fn set_icmp_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }

    /// Sets `code`.
    pub fn set_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }

    /// Sets `checksum`.
    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets `un` raw (e.g. 0 for the unused word of most errors).
    pub fn set_rest_of_header(&mut self, v: u32) {
        self.buffer.as_mut()[field::UN].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets `un.echo.id`.
    pub fn set_echo_id(&mut self, v: u16) {
        self.buffer.as_mut()[field::ECHO_ID].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets `un.echo.sequence`.
    pub fn set_echo_seq(&mut self, v: u16) {
        self.buffer.as_mut()[field::ECHO_SEQ].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets `un.gateway`.
    pub fn set_gateway(&mut self, a: Ipv4Addr) {
        self.set_rest_of_header(u32::from(a));
    }

    /// Sets `un.frag.mtu` (leaves the unused half alone).
    pub fn set_frag_mtu(&mut self, v: u16) {
        self.buffer.as_mut()[field::FRAG_MTU].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the parameter-problem pointer (byte 4).
    pub fn set_param_pointer(&mut self, v: u8) {
        self.buffer.as_mut()[field::PARAM_POINTER] = v;
    }

    /// Computes and stores `checksum` over the whole buffer.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = csum_fold(csum_partial(self.buffer.as_ref(), 0));
        self.set_checksum(c);
    }

    /// Everything after the 8-byte header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for IcmpHdr<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// An echo request or reply (what `ping` sends and `icmp_echo()` answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IcmpEchoRepr<'a> {
    /// [`ICMP_ECHOREPLY`] if true, [`ICMP_ECHO`] if false.
    pub reply: bool,
    pub id: u16,
    pub seq: u16,
    pub data: &'a [u8],
}

impl<'a> IcmpEchoRepr<'a> {
    /// Reads an echo request or reply. `Err(Truncated)` if shorter than the
    /// header, `Err(Malformed)` for any other type or a non-zero code. The
    /// checksum is not verified (`icmp_rcv()` does that first).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(hdr: &IcmpHdr<&'a T>) -> Result<Self, WireError> {
        hdr.check_len()?;
        let reply = match hdr.icmp_type() {
            ICMP_ECHO => false,
            ICMP_ECHOREPLY => true,
            _ => return Err(WireError::Malformed),
        };
        if hdr.code() != 0 {
            return Err(WireError::Malformed);
        }
        Ok(IcmpEchoRepr {
            reply,
            id: hdr.echo_id(),
            seq: hdr.echo_seq(),
            data: hdr.payload(),
        })
    }

    /// Octets of the whole message: 8 + data.
    pub const fn buffer_len(&self) -> usize {
        ICMP_HLEN + self.data.len()
    }

    /// Writes the message and fills the checksum. The view should be exactly
    /// [`buffer_len`](Self::buffer_len) bytes: data that does not fit is cut,
    /// and any bytes beyond it are covered by the checksum as they are.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, hdr: &mut IcmpHdr<&mut T>) {
        hdr.set_icmp_type(if self.reply { ICMP_ECHOREPLY } else { ICMP_ECHO });
        hdr.set_code(0);
        hdr.set_echo_id(self.id);
        hdr.set_echo_seq(self.seq);
        let payload = hdr.payload_mut();
        let n = payload.len().min(self.data.len());
        payload[..n].copy_from_slice(&self.data[..n]);
        hdr.fill_checksum();
    }
}

impl fmt::Display for IcmpEchoRepr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ICMP echo {} id={} seq={} len={}",
            if self.reply { "reply" } else { "request" },
            self.id,
            self.seq,
            self.data.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static ECHO_REQUEST: [u8; 12] = [0x08, 0x00, 0x6d, 0x60, 0xab, 0xcd, 0x00, 0x01, b'p', b'i', b'n', b'g'];
    static ECHO_REPLY: [u8; 12] = [0x00, 0x00, 0x75, 0x60, 0xab, 0xcd, 0x00, 0x01, b'p', b'i', b'n', b'g'];

    // Offending datagram: IPv4 UDP 10.0.0.2:1234 -> 10.0.0.1:53, header + 8 bytes.
    static INNER: [u8; 28] = [
        0x45, 0x00, 0x00, 0x1d, 0x00, 0x01, 0x00, 0x00, 0x40, 0x11, 0x66, 0xcd, 0x0a, 0x00, 0x00, 0x02, 0x0a, 0x00,
        0x00, 0x01, 0x04, 0xd2, 0x00, 0x35, 0x00, 0x09, 0x00, 0x00,
    ];

    fn with_inner(hdr: [u8; 8]) -> [u8; 36] {
        let mut m = [0u8; 36];
        m[..8].copy_from_slice(&hdr);
        m[8..].copy_from_slice(&INNER);
        m
    }

    fn port_unreach() -> [u8; 36] {
        with_inner([0x03, 0x03, 0xf7, 0xec, 0x00, 0x00, 0x00, 0x00])
    }

    fn frag_needed() -> [u8; 36] {
        with_inner([0x03, 0x04, 0xf2, 0x73, 0x00, 0x00, 0x05, 0x78])
    }

    #[test]
    fn deconstruct_echo() {
        let hdr = IcmpHdr::new_checked(&ECHO_REQUEST[..]).unwrap();
        assert_eq!(hdr.icmp_type(), ICMP_ECHO);
        assert_eq!(hdr.code(), 0);
        assert_eq!(hdr.checksum(), 0x6d60);
        assert_eq!(hdr.echo_id(), 0xabcd);
        assert_eq!(hdr.echo_seq(), 1);
        assert_eq!(hdr.rest_of_header(), 0xabcd_0001);
        assert_eq!(hdr.payload(), b"ping");
        assert!(hdr.verify_checksum());
        assert!(!hdr.is_error());
    }

    #[test]
    fn deconstruct_errors() {
        let m = port_unreach();
        let hdr = IcmpHdr::new_checked(&m[..]).unwrap();
        assert_eq!((hdr.icmp_type(), hdr.code()), (ICMP_DEST_UNREACH, ICMP_PORT_UNREACH));
        assert!(hdr.is_error());
        assert!(hdr.verify_checksum());
        assert_eq!(hdr.rest_of_header(), 0);
        assert_eq!(hdr.payload(), &INNER[..]);

        let m = frag_needed();
        let hdr = IcmpHdr::new_checked(&m[..]).unwrap();
        assert_eq!(hdr.code(), ICMP_FRAG_NEEDED);
        assert_eq!(hdr.frag_mtu(), 1400);
        assert!(hdr.verify_checksum());
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5u8; 12];
        let mut hdr = IcmpHdr::new_checked(&mut bytes[..]).unwrap();
        hdr.set_icmp_type(ICMP_ECHO);
        hdr.set_code(0);
        hdr.set_echo_id(0xabcd);
        hdr.set_echo_seq(1);
        hdr.payload_mut().copy_from_slice(b"ping");
        hdr.fill_checksum();
        assert_eq!(bytes, ECHO_REQUEST);

        let mut bytes = [0xa5u8; 36];
        let mut hdr = IcmpHdr::new_checked(&mut bytes[..]).unwrap();
        hdr.set_icmp_type(ICMP_DEST_UNREACH);
        hdr.set_code(ICMP_FRAG_NEEDED);
        hdr.set_rest_of_header(0);
        hdr.set_frag_mtu(1400);
        hdr.payload_mut().copy_from_slice(&INNER);
        hdr.fill_checksum();
        assert_eq!(bytes, frag_needed());
    }

    #[test]
    fn redirect_and_param_problem_fields() {
        let mut bytes = [0u8; 8];
        let mut hdr = IcmpHdr::new_checked(&mut bytes[..]).unwrap();
        hdr.set_icmp_type(ICMP_REDIRECT);
        hdr.set_code(ICMP_REDIR_HOST);
        hdr.set_gateway(Ipv4Addr::new(10, 0, 0, 254));
        assert_eq!(hdr.gateway(), Ipv4Addr::new(10, 0, 0, 254));
        assert_eq!(&hdr.as_ref()[4..8], &[10, 0, 0, 254]);
        assert!(hdr.is_error());
        hdr.set_icmp_type(ICMP_PARAMETERPROB);
        hdr.set_rest_of_header(0);
        hdr.set_param_pointer(9);
        assert_eq!(hdr.param_pointer(), 9);
        assert_eq!(hdr.rest_of_header() >> 24, 9);
    }

    #[test]
    fn parse_and_emit_echo() {
        let hdr = IcmpHdr::new_checked(&ECHO_REQUEST[..]).unwrap();
        let req = IcmpEchoRepr::parse(&hdr).unwrap();
        assert_eq!(
            req,
            IcmpEchoRepr {
                reply: false,
                id: 0xabcd,
                seq: 1,
                data: b"ping"
            }
        );
        let rep = IcmpEchoRepr { reply: true, ..req };
        let mut bytes = [0u8; 12];
        assert_eq!(rep.buffer_len(), 12);
        rep.emit(&mut IcmpHdr::new_checked(&mut bytes[..]).unwrap());
        assert_eq!(bytes, ECHO_REPLY);
        assert_eq!(rep.to_string(), "ICMP echo reply id=43981 seq=1 len=4");

        // A too-small buffer cuts the data instead of panicking.
        let mut small = [0u8; 10];
        rep.emit(&mut IcmpHdr::new_checked(&mut small[..]).unwrap());
        assert_eq!(&small[8..], b"pi");
        assert!(IcmpHdr::new_checked(&small[..]).unwrap().verify_checksum());
    }

    #[test]
    fn echo_parse_errors() {
        let m = port_unreach();
        let hdr = IcmpHdr::new_checked(&m[..]).unwrap();
        assert_eq!(IcmpEchoRepr::parse(&hdr), Err(WireError::Malformed));
        let mut b = ECHO_REQUEST;
        b[1] = 1;
        let hdr = IcmpHdr::new_checked(&b[..]).unwrap();
        assert_eq!(IcmpEchoRepr::parse(&hdr), Err(WireError::Malformed));
        assert_eq!(
            IcmpEchoRepr::parse(&IcmpHdr::new_unchecked(&b[..7])),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn truncated_and_bad_checksum() {
        assert_eq!(
            IcmpHdr::new_checked(&ECHO_REQUEST[..7]).err(),
            Some(WireError::Truncated)
        );
        let hdr = IcmpHdr::new_checked(&ECHO_REQUEST[..8]).unwrap();
        assert!(hdr.payload().is_empty());
        assert!(!hdr.verify_checksum(), "checksum covers the payload");
        let mut b = ECHO_REQUEST;
        b[11] ^= 0x20;
        assert!(!IcmpHdr::new_checked(&b[..]).unwrap().verify_checksum());
    }

    #[test]
    fn error_types() {
        let errs: Vec<u8> = (0..=255u8).filter(|&t| icmp_is_err(t)).collect();
        assert_eq!(errs, [3, 4, 5, 11, 12]);
    }

    #[test]
    fn etherparse_oracle() {
        for m in [
            &ECHO_REQUEST[..],
            &ECHO_REPLY[..],
            &port_unreach()[..],
            &frag_needed()[..],
        ] {
            let theirs = etherparse::Icmpv4Slice::from_slice(m).unwrap();
            let hdr = IcmpHdr::new_checked(m).unwrap();
            assert_eq!(hdr.icmp_type(), theirs.type_u8());
            assert_eq!(hdr.code(), theirs.code_u8());
            assert_eq!(hdr.checksum(), theirs.checksum());
            assert_eq!(hdr.rest_of_header().to_be_bytes(), theirs.bytes5to8());
            assert_eq!(hdr.payload(), theirs.payload());
            let recomputed = theirs.icmp_type().calc_checksum(theirs.payload());
            assert_eq!(hdr.checksum(), recomputed);
        }
    }
}
