//! Raw IPv4 sockets. Linux: net/ipv4/raw.c (`raw_local_deliver`, `raw_v4_match`, `raw_rcv`,
//! `raw_sendmsg`, `raw_send_hdrinc`, `raw_recvmsg`).
//!
//! Each core owns one `RawProto`: its sockets in a slab, a per-protocol list of handles (the
//! hash Linux keys by protocol number) and a ready list. IPv4 calls it through the
//! [`RawDeliver`] hook for every locally delivered packet; every matching socket gets its own
//! clone, sharing the packet's buffers.

use std::any::Any;
use std::net::Ipv4Addr;

use blink_ipv4::ip_output::{ip_append_data, ip_build_and_send_pkt, ip_send_hdrincl, IpTx, IP_MAX_MTU};
use blink_ipv4::iphdr::{Ipv4Hdr, IPPROTO_RAW, IPV4_MIN_HLEN};
use blink_ipv4::{Ipv4Error, RawDeliver, Stack};
use blink_netcore::skbuff::{SkBuff, SkBuffHead};
use blink_netcore::snmp::DropReason;
use blink_netcore::sock::{SockHandle, SockSlab};

use crate::RawErr;

/// Event bits reported by `raw_events`.
pub mod ev {
    /// A packet is queued (Linux: sk_data_ready).
    pub const READABLE: u8 = 0x01;
    /// The socket can send; raw sends never queue, so raised once at creation.
    pub const WRITABLE: u8 = 0x02;
}

/// Raw socket settings.
#[derive(Debug, Clone)]
pub struct RawConfig {
    /// Receive buffer per socket, charged by truesize like UDP (Linux: net.core.rmem_default).
    pub rcvbuf: usize,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig { rcvbuf: 212_992 }
    }
}

/// One raw socket (Linux: `struct raw_sock`).
pub struct RawSock {
    /// Protocol number it sends with and receives (Linux: inet->inet_num).
    pub protocol: u8,
    /// Bound local address; 0.0.0.0 = any (Linux: inet_rcv_saddr).
    pub laddr: Ipv4Addr,
    /// Connected remote address; 0.0.0.0 = none (Linux: inet_daddr).
    pub raddr: Ipv4Addr,
    /// IP_HDRINCL: the application writes the IP header.
    pub hdrincl: bool,
    pub rcvbuf: usize,
    pub rmem_alloc: usize,
    /// Packets dropped for want of receive buffer or clones (Linux: sk_drops).
    pub drops: u64,
    receive_queue: SkBuffHead,
    ev_pending: u8,
}

impl RawSock {
    /// Linux: raw_v4_match().
    fn matches(&self, protocol: u8, saddr: Ipv4Addr, daddr: Ipv4Addr) -> bool {
        self.protocol == protocol
            && (self.raddr.is_unspecified() || self.raddr == saddr)
            && (self.laddr.is_unspecified() || self.laddr == daddr)
    }

    pub fn rx_queued(&self) -> usize {
        self.receive_queue.len()
    }
}

/// What `raw_recvmsg` returns besides the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecv {
    /// Bytes copied (the IP header included).
    pub len: usize,
    /// Length of the whole packet (larger than `len` when truncated).
    pub packet_len: usize,
    pub from: Ipv4Addr,
    pub truncated: bool,
}

/// The per-core raw-socket table.
pub struct RawProto {
    pub cfg: RawConfig,
    pub socks: SockSlab<RawSock>,
    /// Protocol -> sockets (Linux: raw_v4_hashinfo, keyed by protocol). Bind-time only
    /// allocation; an empty chain makes the per-packet hook one index and one length test.
    by_proto: Vec<Vec<SockHandle>>,
    ready: Vec<SockHandle>,
}

fn truesize(skb: &SkBuff, buf_size: usize) -> usize {
    (1 + skb.frags().len()) * buf_size
}

impl RawProto {
    pub fn new(cfg: RawConfig) -> RawProto {
        RawProto {
            cfg,
            socks: SockSlab::default(),
            by_proto: (0..256).map(|_| Vec::new()).collect(),
            ready: Vec::new(),
        }
    }

    fn raise(&mut self, h: SockHandle, bits: u8) {
        if let Some(sk) = self.socks.get_mut(h) {
            if sk.ev_pending == 0 {
                self.ready.push(h);
            }
            sk.ev_pending |= bits;
        }
    }

    /// Linux: raw_init() via socket(AF_INET, SOCK_RAW, protocol). Protocol 0 is refused
    /// (EPROTONOSUPPORT); IPPROTO_RAW (255) implies IP_HDRINCL and receives nothing, as on Linux.
    pub fn socket(&mut self, protocol: u8) -> Result<SockHandle, RawErr> {
        if protocol == 0 {
            return Err(RawErr::InvalidArgument("protocol 0 is not a raw protocol"));
        }
        let h = self
            .socks
            .insert(RawSock {
                protocol,
                laddr: Ipv4Addr::UNSPECIFIED,
                raddr: Ipv4Addr::UNSPECIFIED,
                hdrincl: protocol == IPPROTO_RAW,
                rcvbuf: self.cfg.rcvbuf,
                rmem_alloc: 0,
                drops: 0,
                receive_queue: SkBuffHead::new(),
                ev_pending: 0,
            })
            .ok_or(RawErr::NoMemory)?;
        if protocol != IPPROTO_RAW {
            self.by_proto[protocol as usize].push(h);
        }
        self.raise(h, ev::WRITABLE);
        Ok(h)
    }

    /// Linux: raw_bind(). Only local (or broadcast) addresses, or 0.0.0.0.
    pub fn bind(&mut self, stack: &Stack, h: SockHandle, addr: Ipv4Addr) -> Result<(), RawErr> {
        if !addr.is_unspecified() && !stack.is_local_addr(addr) && !stack.is_broadcast_addr(addr) {
            return Err(RawErr::AddrNotAvailable(addr));
        }
        self.socks.get_mut(h).ok_or(RawErr::BadHandle)?.laddr = addr;
        Ok(())
    }

    /// Linux: ip4_datagram_connect() on a raw socket: default destination, input filter.
    pub fn connect(&mut self, h: SockHandle, peer: Ipv4Addr) -> Result<(), RawErr> {
        self.socks.get_mut(h).ok_or(RawErr::BadHandle)?.raddr = peer;
        Ok(())
    }

    pub fn set_hdrincl(&mut self, h: SockHandle, on: bool) -> Result<(), RawErr> {
        self.socks.get_mut(h).ok_or(RawErr::BadHandle)?.hdrincl = on;
        Ok(())
    }

    /// Linux: raw_sendmsg(). Without IP_HDRINCL `data` is the payload and the stack builds
    /// the header with the socket's protocol; with it, `data` starts with an IP header that
    /// is checked (`raw_send_hdrinc`) and completed by IPv4. Without IP_HDRINCL, packets up to
    /// 65,535 bytes are built over several mbufs and fragmented by IP beyond the path MTU;
    /// with it, as on Linux, a packet over the path MTU is refused (EMSGSIZE).
    pub fn sendmsg(
        &mut self,
        stack: &mut Stack,
        h: SockHandle,
        data: &[u8],
        to: Option<Ipv4Addr>,
    ) -> Result<usize, RawErr> {
        let sk = self.socks.get(h).ok_or(RawErr::BadHandle)?;
        let (protocol, laddr, hdrincl) = (sk.protocol, sk.laddr, sk.hdrincl);
        let dst = match (to, sk.raddr) {
            (Some(d), _) => d,
            (None, r) if !r.is_unspecified() => r,
            _ if hdrincl => Ipv4Addr::UNSPECIFIED,
            _ => return Err(RawErr::NotConnected),
        };
        if hdrincl {
            raw_check_hdrinc(data)?;
        }
        let len = data.len() + if hdrincl { 0 } else { IPV4_MIN_HLEN };
        if len > IP_MAX_MTU {
            return Err(RawErr::MessageTooLong { len, mtu: IP_MAX_MTU });
        }
        let Some(mut skb) = SkBuff::alloc(&mut stack.core.cache) else {
            return Err(RawErr::NoMemory);
        };
        if hdrincl {
            // One mbuf holds a packet of any MTU but jumbo ones (ip_send_hdrincl refuses what
            // exceeds the path MTU, and the header must be linear).
            if !skb.skb_put_data(data) {
                let mtu = skb.skb_tailroom();
                stack.core.kfree_skb_reason(skb, DropReason::Oversize);
                return Err(RawErr::MessageTooLong { len, mtu });
            }
        } else if let Err(e) = ip_append_data(stack, &mut skb, data.len(), |off, buf| {
            buf.copy_from_slice(&data[off..off + buf.len()])
        }) {
            stack.core.kfree_skb_reason(skb, DropReason::NoMem);
            return Err(match e {
                Ipv4Error::MessageTooLong { len, mtu } => RawErr::MessageTooLong { len, mtu },
                _ => RawErr::NoMemory,
            });
        }
        let r = if hdrincl {
            // Linux routes by the address given to sendto() but sends the header as written;
            // blink routes by the header's destination (the same address in practice) unless
            // the header leaves it 0, where `to` fills it in.
            if Ipv4Hdr::new_unchecked(data).dst().is_unspecified() {
                if dst.is_unspecified() {
                    return Err(RawErr::NotConnected);
                }
                let b = skb.data_mut().expect("fresh skb");
                Ipv4Hdr::new_unchecked(&mut b[..IPV4_MIN_HLEN]).set_dst(dst);
            }
            ip_send_hdrincl(stack, skb)
        } else {
            let tx = IpTx {
                src: (!laddr.is_unspecified() && stack.is_local_addr(laddr)).then_some(laddr),
                dst,
                protocol,
                ttl: None,
                tos: 0,
                df: false,
                id: None,
            };
            ip_build_and_send_pkt(stack, skb, tx)
        };
        match r {
            Ok(()) => Ok(data.len()),
            Err(Ipv4Error::NoRoute(a)) => Err(RawErr::NoRoute(a)),
            Err(Ipv4Error::MessageTooLong { len, mtu }) => Err(RawErr::MessageTooLong { len, mtu }),
            Err(Ipv4Error::NoBuffers) => Err(RawErr::NoMemory),
            Err(_) => Err(RawErr::InvalidArgument("IP refused the packet")),
        }
    }

    fn take(&mut self, stack: &mut Stack, h: SockHandle) -> Result<SkBuff, RawErr> {
        let buf_size = stack.core.cache.pool().buf_size();
        let sk = self.socks.get_mut(h).ok_or(RawErr::BadHandle)?;
        let skb = sk.receive_queue.skb_dequeue().ok_or(RawErr::WouldBlock)?;
        sk.rmem_alloc = sk.rmem_alloc.saturating_sub(truesize(&skb, buf_size));
        Ok(skb)
    }

    /// Linux: raw_recvmsg(). The copy starts at the IP header.
    pub fn recvmsg(&mut self, stack: &mut Stack, h: SockHandle, buf: &mut [u8]) -> Result<RawRecv, RawErr> {
        let skb = self.take(stack, h)?;
        let from = Ipv4Hdr::new_unchecked(skb.data()).src();
        let n = skb.len().min(buf.len());
        skb.skb_copy_bits(0, &mut buf[..n]);
        Ok(RawRecv {
            len: n,
            packet_len: skb.len(),
            from,
            truncated: n < skb.len(),
        })
    }

    /// Zero-copy receive: the packet's clone, `data` at its IP header.
    pub fn recv_skb(&mut self, stack: &mut Stack, h: SockHandle) -> Result<(SkBuff, Ipv4Addr), RawErr> {
        let skb = self.take(stack, h)?;
        let from = Ipv4Hdr::new_unchecked(skb.data()).src();
        Ok((skb, from))
    }

    pub fn close(&mut self, h: SockHandle) -> Result<(), RawErr> {
        let mut sk = self.socks.remove(h).ok_or(RawErr::BadHandle)?;
        self.by_proto[sk.protocol as usize].retain(|&o| o != h);
        sk.receive_queue.purge();
        Ok(())
    }

    pub fn events(&mut self, out: &mut Vec<(SockHandle, u8)>) {
        for h in self.ready.drain(..) {
            if let Some(sk) = self.socks.get_mut(h) {
                if sk.ev_pending != 0 {
                    out.push((h, sk.ev_pending));
                    sk.ev_pending = 0;
                }
            }
        }
    }
}

/// Linux: raw_send_hdrinc()'s checks on the user's header: at least 20 bytes, version 4, an
/// IHL of 5 or more whose header fits in what was given.
pub fn raw_check_hdrinc(data: &[u8]) -> Result<(), RawErr> {
    let h = Ipv4Hdr::new_checked(data).map_err(|_| RawErr::BadHeader("shorter than the IP header it declares"))?;
    if h.version() != 4 {
        return Err(RawErr::BadHeader("version is not 4"));
    }
    if h.header_len() < IPV4_MIN_HLEN {
        return Err(RawErr::BadHeader("IHL below 5"));
    }
    if h.header_len() > data.len() {
        return Err(RawErr::BadHeader("shorter than the IP header it declares"));
    }
    Ok(())
}

impl RawDeliver for RawProto {
    /// Linux: raw_local_deliver() -> raw_v4_input() -> raw_rcv(). `skb->data` is at the IP
    /// header; each matching socket queues its own clone.
    fn raw_local_deliver(&mut self, stack: &mut Stack, skb: &SkBuff, protocol: u8) -> bool {
        if self.by_proto[protocol as usize].is_empty() {
            return false;
        }
        let (saddr, daddr) = {
            let ip = Ipv4Hdr::new_unchecked(skb.data());
            (ip.src(), ip.dst())
        };
        let buf_size = stack.core.cache.pool().buf_size();
        let mut delivered = false;
        for i in 0..self.by_proto[protocol as usize].len() {
            let h = self.by_proto[protocol as usize][i];
            let Some(sk) = self.socks.get_mut(h) else { continue };
            if !sk.matches(protocol, saddr, daddr) {
                continue;
            }
            // The packet was for this socket even when it cannot be queued (Linux: raw_rcv
            // returns NET_RX_DROP but the delivery still counts, so no ICMP follows).
            delivered = true;
            let ts = truesize(skb, buf_size);
            if !sk.receive_queue.is_empty() && sk.rmem_alloc + ts > sk.rcvbuf {
                sk.drops += 1;
                stack.core.mib.drop_count(DropReason::SocketRcvBuff);
                continue;
            }
            let Some(c) = skb.skb_clone(&mut stack.core.cache) else {
                sk.drops += 1;
                stack.core.mib.drop_count(DropReason::NoMem);
                continue;
            };
            sk.rmem_alloc += ts;
            sk.receive_queue.skb_queue_tail(c);
            self.raise(h, ev::READABLE);
        }
        delivered
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(protocol: u8, laddr: [u8; 4], raddr: [u8; 4]) -> RawSock {
        RawSock {
            protocol,
            laddr: laddr.into(),
            raddr: raddr.into(),
            hdrincl: false,
            rcvbuf: 0,
            rmem_alloc: 0,
            drops: 0,
            receive_queue: SkBuffHead::new(),
            ev_pending: 0,
        }
    }

    #[test]
    fn raw_v4_match_rules() {
        let (peer, us, other) = ([10, 0, 0, 2], [10, 0, 0, 1], [10, 0, 0, 3]);
        let any = sock(89, [0; 4], [0; 4]);
        assert!(any.matches(89, peer.into(), us.into()));
        assert!(!any.matches(88, peer.into(), us.into()));
        let bound = sock(89, us, [0; 4]);
        assert!(bound.matches(89, peer.into(), us.into()));
        assert!(!bound.matches(89, peer.into(), other.into()));
        let conn = sock(89, [0; 4], peer);
        assert!(conn.matches(89, peer.into(), us.into()));
        assert!(!conn.matches(89, other.into(), us.into()));
    }

    #[test]
    fn hdrinc_header_checks() {
        let mut h = [0u8; 28];
        h[0] = 0x45;
        assert!(raw_check_hdrinc(&h).is_ok());
        assert!(raw_check_hdrinc(&h[..19]).is_err());
        h[0] = 0x65;
        assert_eq!(raw_check_hdrinc(&h), Err(RawErr::BadHeader("version is not 4")));
        h[0] = 0x44;
        assert!(raw_check_hdrinc(&h).is_err());
        h[0] = 0x48; // 32-byte header in 28 bytes
        assert!(raw_check_hdrinc(&h).is_err());
    }

    #[test]
    fn protocol_zero_refused_and_stale_handles() {
        let mut r = RawProto::new(RawConfig::default());
        assert!(r.socket(0).is_err());
        let h = r.socket(89).unwrap();
        r.close(h).unwrap();
        assert_eq!(r.close(h), Err(RawErr::BadHandle));
        assert_eq!(r.connect(h, Ipv4Addr::LOCALHOST), Err(RawErr::BadHandle));
        assert!(r.by_proto[89].is_empty());
    }
}
