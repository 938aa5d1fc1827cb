//! Ethernet II framing: addresses, EtherTypes and the 14-byte header view.
//!
//! Linux: include/uapi/linux/if_ether.h (`struct ethhdr`, `ETH_P_*`),
//! include/linux/etherdevice.h (`is_multicast_ether_addr()` and friends).
//!
//! Also home of [`WireError`], the error every header view and `Repr` in blink
//! returns (netcore is the one crate all protocol crates depend on).

use core::fmt;
use core::str::FromStr;

/// Why a header view or `Repr` refused a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the header (or than a length it declares).
    #[error("truncated packet")]
    Truncated,
    /// A field holds a value the protocol does not allow.
    #[error("malformed packet")]
    Malformed,
}

/// Octets in an Ethernet address. Linux: `ETH_ALEN`.
pub const ETH_ALEN: usize = 6;
/// Octets in an Ethernet II header. Linux: `ETH_HLEN`.
pub const ETH_HLEN: usize = 14;
/// Minimum frame length without FCS; shorter frames are padded. Linux: `ETH_ZLEN`.
pub const ETH_ZLEN: usize = 60;
/// Maximum payload (the standard MTU). Linux: `ETH_DATA_LEN`.
pub const ETH_DATA_LEN: usize = 1500;
/// Maximum frame length without FCS. Linux: `ETH_FRAME_LEN`.
pub const ETH_FRAME_LEN: usize = 1514;

/// EtherType of IPv4. Linux: `ETH_P_IP`.
pub const ETH_P_IP: u16 = 0x0800;
/// EtherType of ARP. Linux: `ETH_P_ARP`.
pub const ETH_P_ARP: u16 = 0x0806;
/// EtherType of an IEEE 802.1Q VLAN tag. Linux: `ETH_P_8021Q`.
pub const ETH_P_8021Q: u16 = 0x8100;
/// EtherType of IPv6. Linux: `ETH_P_IPV6`.
pub const ETH_P_IPV6: u16 = 0x86DD;

/// A 48-bit Ethernet (MAC) address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EthAddr(pub [u8; ETH_ALEN]);

impl EthAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: EthAddr = EthAddr([0xff; ETH_ALEN]);
    /// 00:00:00:00:00:00 (the target hardware address of an ARP request).
    pub const ZERO: EthAddr = EthAddr([0; ETH_ALEN]);

    /// The six octets.
    pub const fn octets(&self) -> [u8; ETH_ALEN] {
        self.0
    }

    /// Linux: `is_broadcast_ether_addr()`.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Group bit set; true for broadcast too. Linux: `is_multicast_ether_addr()`.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Not a group address. Linux: `is_unicast_ether_addr()`.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// Linux: `is_zero_ether_addr()`.
    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }

    /// Unicast and not all-zero: usable as a device address.
    /// Linux: `is_valid_ether_addr()`.
    pub fn is_valid(&self) -> bool {
        self.is_unicast() && !self.is_zero()
    }

    /// Locally administered bit set. Linux: `is_local_ether_addr()`.
    pub fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

impl From<[u8; ETH_ALEN]> for EthAddr {
    fn from(b: [u8; ETH_ALEN]) -> Self {
        EthAddr(b)
    }
}

impl From<EthAddr> for [u8; ETH_ALEN] {
    fn from(a: EthAddr) -> Self {
        a.0
    }
}

impl fmt::Display for EthAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for EthAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EthAddr({self})")
    }
}

/// Error of `EthAddr::from_str`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid Ethernet address (expected six hex octets as aa:bb:cc:dd:ee:ff)")]
pub struct EthAddrParseError;

impl FromStr for EthAddr {
    type Err = EthAddrParseError;

    /// Parses `aa:bb:cc:dd:ee:ff` (or with `-` separators); each octet is one
    /// or two hex digits, either case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; ETH_ALEN];
        let mut parts = s.split(sep);
        for o in out.iter_mut() {
            let p = parts.next().ok_or(EthAddrParseError)?;
            if p.is_empty() || p.len() > 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(EthAddrParseError);
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| EthAddrParseError)?;
        }
        if parts.next().is_some() {
            return Err(EthAddrParseError);
        }
        Ok(EthAddr(out))
    }
}

mod field {
    pub type Field = core::ops::Range<usize>;
    pub type Rest = core::ops::RangeFrom<usize>;

    pub const DST: Field = 0..6;
    pub const SRC: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: Rest = 14..;
}

#[inline]
fn read_addr(b: &[u8]) -> EthAddr {
    let mut a = [0u8; ETH_ALEN];
    a.copy_from_slice(b);
    EthAddr(a)
}

/// A view of an Ethernet II frame (header + payload, no FCS).
///
/// Linux: `struct ethhdr` (`h_dest`, `h_source`, `h_proto`) and `eth_hdr(skb)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthHdr<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthHdr<T> {
    /// Wraps a buffer without checking its length; accessors may panic if it
    /// is shorter than [`ETH_HLEN`].
    pub const fn new_unchecked(buffer: T) -> Self {
        EthHdr { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let hdr = Self::new_unchecked(buffer);
        hdr.check_len()?;
        Ok(hdr)
    }

    /// `Err(Truncated)` if the buffer cannot hold the 14-byte header.
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < ETH_HLEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Always [`ETH_HLEN`] (no VLAN tags are parsed here).
    pub const fn header_len() -> usize {
        ETH_HLEN
    }

    /// Destination address (`h_dest`).
    pub fn dst(&self) -> EthAddr {
        read_addr(&self.buffer.as_ref()[field::DST])
    }

    /// Source address (`h_source`).
    pub fn src(&self) -> EthAddr {
        read_addr(&self.buffer.as_ref()[field::SRC])
    }

    /// EtherType (`h_proto`), host order, e.g. [`ETH_P_IP`].
    pub fn ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> EthHdr<&'a T> {
    /// Everything after the header (including any padding up to [`ETH_ZLEN`]).
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthHdr<T> {
    /// Sets `h_dest`.
    pub fn set_dst(&mut self, addr: EthAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.0);
    }

    /// Sets `h_source`.
    pub fn set_src(&mut self, addr: EthAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.0);
    }

    /// Sets `h_proto`.
    pub fn set_ethertype(&mut self, ethertype: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&ethertype.to_be_bytes());
    }

    /// Everything after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for EthHdr<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The parsed contents of an Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthRepr {
    pub src: EthAddr,
    pub dst: EthAddr,
    pub ethertype: u16,
}

impl EthRepr {
    /// Reads the header; `Err(Truncated)` if the buffer is shorter than it.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(hdr: &EthHdr<&T>) -> Result<EthRepr, WireError> {
        hdr.check_len()?;
        Ok(EthRepr {
            src: hdr.src(),
            dst: hdr.dst(),
            ethertype: hdr.ethertype(),
        })
    }

    /// Octets the header takes: [`ETH_HLEN`].
    pub const fn header_len(&self) -> usize {
        ETH_HLEN
    }

    /// Octets a frame with `payload_len` bytes of payload takes (no padding).
    pub const fn buffer_len(&self, payload_len: usize) -> usize {
        ETH_HLEN + payload_len
    }

    /// Writes the header. The view must hold at least [`ETH_HLEN`] bytes
    /// (guaranteed by `new_checked`).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, hdr: &mut EthHdr<&mut T>) {
        hdr.set_dst(self.dst);
        hdr.set_src(self.src);
        hdr.set_ethertype(self.ethertype);
    }
}

impl fmt::Display for EthRepr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EthernetII src={} dst={} type={:#06x}",
            self.src, self.dst, self.ethertype
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // dst 02:00:00:00:00:02, src 02:00:00:00:00:01, IPv4, 4 payload bytes.
    static FRAME: [u8; 18] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0xaa, 0xbb, 0xcc, 0xdd,
    ];
    static PAYLOAD: [u8; 4] = [0xaa, 0xbb, 0xcc, 0xdd];

    fn repr() -> EthRepr {
        EthRepr {
            dst: EthAddr([0x02, 0, 0, 0, 0, 0x02]),
            src: EthAddr([0x02, 0, 0, 0, 0, 0x01]),
            ethertype: ETH_P_IP,
        }
    }

    #[test]
    fn deconstruct() {
        let hdr = EthHdr::new_checked(&FRAME[..]).unwrap();
        assert_eq!(hdr.dst(), EthAddr([0x02, 0, 0, 0, 0, 0x02]));
        assert_eq!(hdr.src(), EthAddr([0x02, 0, 0, 0, 0, 0x01]));
        assert_eq!(hdr.ethertype(), ETH_P_IP);
        assert_eq!(hdr.payload(), &PAYLOAD[..]);
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5u8; 18];
        let mut hdr = EthHdr::new_checked(&mut bytes[..]).unwrap();
        hdr.set_dst(EthAddr([0x02, 0, 0, 0, 0, 0x02]));
        hdr.set_src(EthAddr([0x02, 0, 0, 0, 0, 0x01]));
        hdr.set_ethertype(ETH_P_IP);
        hdr.payload_mut().copy_from_slice(&PAYLOAD);
        assert_eq!(hdr.into_inner(), &FRAME[..]);
    }

    #[test]
    fn parse_and_emit() {
        let hdr = EthHdr::new_checked(&FRAME[..]).unwrap();
        assert_eq!(EthRepr::parse(&hdr), Ok(repr()));

        let r = repr();
        let mut bytes = vec![0u8; r.buffer_len(PAYLOAD.len())];
        let mut hdr = EthHdr::new_checked(&mut bytes[..]).unwrap();
        r.emit(&mut hdr);
        hdr.payload_mut().copy_from_slice(&PAYLOAD);
        assert_eq!(&bytes[..], &FRAME[..]);
        assert_eq!(r.header_len(), ETH_HLEN);
    }

    #[test]
    fn truncated() {
        assert_eq!(EthHdr::new_checked(&FRAME[..13]).err(), Some(WireError::Truncated));
        let hdr = EthHdr::new_checked(&FRAME[..14]).unwrap();
        assert!(hdr.payload().is_empty());
        let unchecked = EthHdr::new_unchecked(&FRAME[..5]);
        assert_eq!(EthRepr::parse(&unchecked), Err(WireError::Truncated));
    }

    #[test]
    fn etherparse_oracle() {
        let (eth, rest) = etherparse::Ethernet2Header::from_slice(&FRAME).unwrap();
        let hdr = EthHdr::new_checked(&FRAME[..]).unwrap();
        assert_eq!(hdr.dst().0, eth.destination);
        assert_eq!(hdr.src().0, eth.source);
        assert_eq!(hdr.ethertype(), eth.ether_type.0);
        assert_eq!(hdr.payload(), rest);
    }

    #[test]
    fn addr_classes() {
        assert!(EthAddr::BROADCAST.is_broadcast());
        assert!(EthAddr::BROADCAST.is_multicast());
        assert!(!EthAddr::BROADCAST.is_unicast());
        let mcast = EthAddr([0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]);
        assert!(mcast.is_multicast() && !mcast.is_broadcast());
        let ucast = EthAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        assert!(ucast.is_unicast() && ucast.is_valid() && ucast.is_local());
        assert!(EthAddr::ZERO.is_zero() && !EthAddr::ZERO.is_valid());
    }

    #[test]
    fn addr_display_and_parse() {
        let a = EthAddr([0x52, 0x54, 0x00, 0x0a, 0xbc, 0xff]);
        assert_eq!(a.to_string(), "52:54:00:0a:bc:ff");
        assert_eq!(format!("{a:?}"), "EthAddr(52:54:00:0a:bc:ff)");
        assert_eq!("52:54:00:0a:bc:ff".parse(), Ok(a));
        assert_eq!("52:54:0:A:BC:FF".parse(), Ok(a));
        assert_eq!("52-54-00-0a-bc-ff".parse(), Ok(a));
        for bad in [
            "",
            "52:54:00:0a:bc",
            "52:54:00:0a:bc:ff:00",
            "52:54:00:0a:bc:fff",
            "52:54:00:0a:bc:",
            "52:54:00:0a:bc:+f",
            "52:54:00:0a:bc:gg",
            "52:54-00:0a:bc:ff",
        ] {
            assert_eq!(bad.parse::<EthAddr>(), Err(EthAddrParseError), "{bad:?}");
        }
    }

    #[test]
    fn repr_display() {
        assert_eq!(
            repr().to_string(),
            "EthernetII src=02:00:00:00:00:01 dst=02:00:00:00:00:02 type=0x0800"
        );
    }
}
