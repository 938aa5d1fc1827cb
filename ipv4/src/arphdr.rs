//! ARP for Ethernet/IPv4 (RFC 826): the 28-byte packet view and its `Repr`.
//!
//! Linux: `struct arphdr` in include/uapi/linux/if_arp.h; the Ethernet/IPv4
//! body (`ar_sha`, `ar_sip`, `ar_tha`, `ar_tip`) as read by `arp_process()`
//! in net/ipv4/arp.c.

use core::fmt;
use std::net::Ipv4Addr;

use blink_netcore::if_ether::{EthAddr, WireError, ETH_ALEN, ETH_P_IP};

/// Octets of an Ethernet/IPv4 ARP packet (`struct arphdr` + body).
pub const ARP_HLEN: usize = 28;
/// Hardware type Ethernet. Linux: `ARPHRD_ETHER`.
pub const ARPHRD_ETHER: u16 = 1;
/// Linux: `ARPOP_REQUEST`.
pub const ARPOP_REQUEST: u16 = 1;
/// Linux: `ARPOP_REPLY`.
pub const ARPOP_REPLY: u16 = 2;

mod field {
    pub type Field = core::ops::Range<usize>;

    pub const HTYPE: Field = 0..2; // ar_hrd
    pub const PTYPE: Field = 2..4; // ar_pro
    pub const HLEN: usize = 4; // ar_hln
    pub const PLEN: usize = 5; // ar_pln
    pub const OPER: Field = 6..8; // ar_op
    pub const SHA: Field = 8..14;
    pub const SPA: Field = 14..18;
    pub const THA: Field = 18..24;
    pub const TPA: Field = 24..28;
}

/// A view of an ARP packet laid out for Ethernet/IPv4 (6-byte hardware and
/// 4-byte protocol addresses). The fixed layout is only meaningful once
/// `hardware_len() == 6 && protocol_len() == 4`; [`ArpRepr::parse`] checks that.
///
/// Linux: `struct arphdr` + `arp_hdr(skb)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpHdr<T: AsRef<[u8]>> {
    buffer: T,
}

#[inline]
fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

#[inline]
fn ipv4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

#[inline]
fn eth(b: &[u8]) -> EthAddr {
    let mut a = [0u8; ETH_ALEN];
    a.copy_from_slice(b);
    EthAddr(a)
}

impl<T: AsRef<[u8]>> ArpHdr<T> {
    /// Wraps a buffer without checking its length; accessors may panic if it
    /// is shorter than [`ARP_HLEN`].
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpHdr { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let hdr = Self::new_unchecked(buffer);
        hdr.check_len()?;
        Ok(hdr)
    }

    /// `Err(Truncated)` if the buffer cannot hold [`ARP_HLEN`] bytes. Trailing
    /// bytes (Ethernet padding) are allowed.
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < ARP_HLEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Hardware type (`ar_hrd`), [`ARPHRD_ETHER`] for Ethernet.
    pub fn hardware_type(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::HTYPE])
    }

    /// Protocol type (`ar_pro`), an EtherType: `ETH_P_IP` for IPv4.
    pub fn protocol_type(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::PTYPE])
    }

    /// Hardware address length (`ar_hln`).
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length (`ar_pln`).
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// Raw operation (`ar_op`), e.g. [`ARPOP_REQUEST`].
    pub fn operation(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::OPER])
    }

    /// Sender hardware address (`ar_sha`).
    pub fn sha(&self) -> EthAddr {
        eth(&self.buffer.as_ref()[field::SHA])
    }

    /// Sender protocol address (`ar_sip`).
    pub fn spa(&self) -> Ipv4Addr {
        ipv4(&self.buffer.as_ref()[field::SPA])
    }

    /// Target hardware address (`ar_tha`).
    pub fn tha(&self) -> EthAddr {
        eth(&self.buffer.as_ref()[field::THA])
    }

    /// Target protocol address (`ar_tip`).
    pub fn tpa(&self) -> Ipv4Addr {
        ipv4(&self.buffer.as_ref()[field::TPA])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpHdr<T> {
    /// Sets `ar_hrd`.
    pub fn set_hardware_type(&mut self, v: u16) {
        self.buffer.as_mut()[field::HTYPE].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets `ar_pro`.
    pub fn set_protocol_type(&mut self, v: u16) {
        self.buffer.as_mut()[field::PTYPE].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets `ar_hln`.
    pub fn set_hardware_len(&mut self, v: u8) {
        self.buffer.as_mut()[field::HLEN] = v;
    }

    /// Sets `ar_pln`.
    pub fn set_protocol_len(&mut self, v: u8) {
        self.buffer.as_mut()[field::PLEN] = v;
    }

    /// Sets `ar_op`.
    pub fn set_operation(&mut self, v: u16) {
        self.buffer.as_mut()[field::OPER].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets `ar_sha`.
    pub fn set_sha(&mut self, a: EthAddr) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&a.0);
    }

    /// Sets `ar_sip`.
    pub fn set_spa(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&a.octets());
    }

    /// Sets `ar_tha`.
    pub fn set_tha(&mut self, a: EthAddr) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&a.0);
    }

    /// Sets `ar_tip`.
    pub fn set_tpa(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&a.octets());
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for ArpHdr<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// ARP operation. Linux: `ARPOP_*`; `arp_process()` ignores all but request
/// and reply, so other values are kept rather than rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOp {
    Request,
    Reply,
    Other(u16),
}

impl From<u16> for ArpOp {
    fn from(v: u16) -> Self {
        match v {
            ARPOP_REQUEST => ArpOp::Request,
            ARPOP_REPLY => ArpOp::Reply,
            o => ArpOp::Other(o),
        }
    }
}

impl From<ArpOp> for u16 {
    fn from(op: ArpOp) -> Self {
        match op {
            ArpOp::Request => ARPOP_REQUEST,
            ArpOp::Reply => ARPOP_REPLY,
            ArpOp::Other(o) => o,
        }
    }
}

/// The parsed contents of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    pub op: ArpOp,
    /// Sender hardware address.
    pub sha: EthAddr,
    /// Sender protocol address.
    pub spa: Ipv4Addr,
    /// Target hardware address ([`EthAddr::ZERO`] in a request).
    pub tha: EthAddr,
    /// Target protocol address.
    pub tpa: Ipv4Addr,
}

impl ArpRepr {
    /// Reads an Ethernet/IPv4 ARP packet. `Err(Truncated)` if shorter than
    /// [`ARP_HLEN`]; `Err(Malformed)` if the hardware type, protocol type or
    /// address lengths are not Ethernet (1, 6) and IPv4 (0x0800, 4), as
    /// `arp_rcv()`/`arp_process()` drop such packets on an Ethernet device.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(hdr: &ArpHdr<&T>) -> Result<ArpRepr, WireError> {
        hdr.check_len()?;
        if hdr.hardware_type() != ARPHRD_ETHER
            || hdr.protocol_type() != ETH_P_IP
            || hdr.hardware_len() as usize != ETH_ALEN
            || hdr.protocol_len() != 4
        {
            return Err(WireError::Malformed);
        }
        Ok(ArpRepr {
            op: hdr.operation().into(),
            sha: hdr.sha(),
            spa: hdr.spa(),
            tha: hdr.tha(),
            tpa: hdr.tpa(),
        })
    }

    /// Octets the packet takes: [`ARP_HLEN`].
    pub const fn buffer_len(&self) -> usize {
        ARP_HLEN
    }

    /// Writes the whole packet. The view must hold at least [`ARP_HLEN`]
    /// bytes (guaranteed by `new_checked`). Linux: `arp_create()`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, hdr: &mut ArpHdr<&mut T>) {
        hdr.set_hardware_type(ARPHRD_ETHER);
        hdr.set_protocol_type(ETH_P_IP);
        hdr.set_hardware_len(ETH_ALEN as u8);
        hdr.set_protocol_len(4);
        hdr.set_operation(self.op.into());
        hdr.set_sha(self.sha);
        hdr.set_spa(self.spa);
        hdr.set_tha(self.tha);
        hdr.set_tpa(self.tpa);
    }
}

impl fmt::Display for ArpRepr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.op {
            ArpOp::Request => write!(f, "ARP who-has {} tell {} ({})", self.tpa, self.spa, self.sha),
            ArpOp::Reply => write!(f, "ARP reply {} is-at {}", self.spa, self.sha),
            ArpOp::Other(o) => write!(
                f,
                "ARP op={o} sha={} spa={} tha={} tpa={}",
                self.sha, self.spa, self.tha, self.tpa
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Request: who-has 10.0.0.2 tell 10.0.0.1 (52:54:00:12:34:56).
    static REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x0a, 0x00, 0x00, 0x01,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x02,
    ];

    fn request_repr() -> ArpRepr {
        ArpRepr {
            op: ArpOp::Request,
            sha: EthAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
            spa: Ipv4Addr::new(10, 0, 0, 1),
            tha: EthAddr::ZERO,
            tpa: Ipv4Addr::new(10, 0, 0, 2),
        }
    }

    #[test]
    fn deconstruct() {
        let hdr = ArpHdr::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(hdr.hardware_type(), ARPHRD_ETHER);
        assert_eq!(hdr.protocol_type(), ETH_P_IP);
        assert_eq!(hdr.hardware_len(), 6);
        assert_eq!(hdr.protocol_len(), 4);
        assert_eq!(hdr.operation(), ARPOP_REQUEST);
        assert_eq!(hdr.sha(), EthAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]));
        assert_eq!(hdr.spa(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(hdr.tha(), EthAddr::ZERO);
        assert_eq!(hdr.tpa(), Ipv4Addr::new(10, 0, 0, 2));
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5u8; 28];
        let mut hdr = ArpHdr::new_checked(&mut bytes[..]).unwrap();
        hdr.set_hardware_type(ARPHRD_ETHER);
        hdr.set_protocol_type(ETH_P_IP);
        hdr.set_hardware_len(6);
        hdr.set_protocol_len(4);
        hdr.set_operation(ARPOP_REQUEST);
        hdr.set_sha(EthAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]));
        hdr.set_spa(Ipv4Addr::new(10, 0, 0, 1));
        hdr.set_tha(EthAddr::ZERO);
        hdr.set_tpa(Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(hdr.into_inner(), &REQUEST[..]);
    }

    #[test]
    fn parse() {
        let hdr = ArpHdr::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(ArpRepr::parse(&hdr), Ok(request_repr()));
        // Ethernet pads ARP to 46 bytes of payload; the padding is ignored.
        let mut padded = [0u8; 46];
        padded[..28].copy_from_slice(&REQUEST);
        let hdr = ArpHdr::new_checked(&padded[..]).unwrap();
        assert_eq!(ArpRepr::parse(&hdr), Ok(request_repr()));
    }

    #[test]
    fn emit() {
        let r = request_repr();
        let mut bytes = [0xffu8; 28];
        r.emit(&mut ArpHdr::new_checked(&mut bytes[..]).unwrap());
        assert_eq!(bytes, REQUEST);

        let reply = ArpRepr {
            op: ArpOp::Reply,
            sha: EthAddr([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]),
            spa: r.tpa,
            tha: r.sha,
            tpa: r.spa,
        };
        let mut bytes = [0u8; 28];
        reply.emit(&mut ArpHdr::new_checked(&mut bytes[..]).unwrap());
        let hdr = ArpHdr::new_checked(&bytes[..]).unwrap();
        assert_eq!(ArpRepr::parse(&hdr), Ok(reply));
        assert_eq!(reply.buffer_len(), ARP_HLEN);
    }

    #[test]
    fn rejects_non_ethernet_ipv4() {
        assert_eq!(ArpHdr::new_checked(&REQUEST[..27]).err(), Some(WireError::Truncated));
        let unchecked = ArpHdr::new_unchecked(&REQUEST[..8]);
        assert_eq!(ArpRepr::parse(&unchecked), Err(WireError::Truncated));
        // (offset, bad value) for ar_hrd low byte, ar_pro high byte, ar_hln, ar_pln.
        for (off, val) in [(1, 6), (2, 0x86), (4, 8), (5, 16)] {
            let mut bytes = REQUEST;
            bytes[off] = val;
            let hdr = ArpHdr::new_checked(&bytes[..]).unwrap();
            assert_eq!(ArpRepr::parse(&hdr), Err(WireError::Malformed), "byte {off}");
        }
    }

    #[test]
    fn other_op_is_kept() {
        let mut bytes = REQUEST;
        bytes[7] = 3; // RARP request
        let hdr = ArpHdr::new_checked(&bytes[..]).unwrap();
        let r = ArpRepr::parse(&hdr).unwrap();
        assert_eq!(r.op, ArpOp::Other(3));
        assert_eq!(u16::from(r.op), 3);
        assert_eq!(ArpOp::from(2), ArpOp::Reply);
    }

    #[test]
    fn etherparse_oracle() {
        let pkt = etherparse::ArpPacket::from_slice(&REQUEST)
            .unwrap()
            .try_eth_ipv4()
            .unwrap();
        let r = ArpRepr::parse(&ArpHdr::new_checked(&REQUEST[..]).unwrap()).unwrap();
        assert_eq!(u16::from(r.op), pkt.operation.0);
        assert_eq!(r.sha.0, pkt.sender_mac);
        assert_eq!(r.spa, pkt.sender_ipv4_addr());
        assert_eq!(r.tha.0, pkt.target_mac);
        assert_eq!(r.tpa, pkt.target_ipv4_addr());
        assert_eq!(pkt.to_bytes(), REQUEST);
    }

    #[test]
    fn display() {
        assert_eq!(
            request_repr().to_string(),
            "ARP who-has 10.0.0.2 tell 10.0.0.1 (52:54:00:12:34:56)"
        );
    }
}
