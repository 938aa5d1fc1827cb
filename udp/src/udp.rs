//! The per-core UDP instance. Linux: net/ipv4/udp.c (`__udp4_lib_rcv`, `__udp4_lib_lookup`,
//! `compute_score`, `__udp4_lib_err`, `udp_sendmsg`, `udp_recvmsg`, `udp_lib_get_port`).
//!
//! Each core owns one `UdpProto`: its sockets (a slab addressed by generational handles), its
//! port table and its ready list. Nothing here is shared or locked.

use std::any::Any;
use std::net::{Ipv4Addr, SocketAddrV4};

use blink_ipv4::dst::{ip_route_output_dst, DstCache};
use blink_ipv4::icmp::icmp_send;
use blink_ipv4::icmphdr::*;
use blink_ipv4::ip_output::{ip_dst_mtu, ip_send_skb, IpTx, IP_MAX_MTU};
use blink_ipv4::iphdr::{Ipv4Hdr, IPPROTO_UDP, IPV4_MIN_HLEN};
use blink_ipv4::{InetProtocol, Ipv4Error, Stack};
use blink_netcore::netdevice::NetdevFeatures;
use blink_netcore::percpu::NetCore;
use blink_netcore::rss::{hash2cpu, RssHashType};
use blink_netcore::skbuff::{Frag, IpSummed, PacketType, SkBuff, SkBuffHead};
use blink_netcore::snmp::{DropReason, UdpMib};
use blink_netcore::sock::{SockHandle, SockSlab};
use blink_netcore::Mbuf;

use crate::udp_table::PortTable;
use crate::udphdr::*;
use crate::{SockErr, UdpErr};

/// Event bits reported by `udp_events` (what glue turns into callbacks).
pub mod ev {
    /// A datagram is queued (Linux: sk_data_ready).
    pub const READABLE: u8 = 0x01;
    /// The socket can send (Linux: sk_write_space). UDP never queues on send, so this is
    /// raised once when the socket is created and again after a reported error.
    pub const WRITABLE: u8 = 0x02;
    /// An ICMP error is pending; the next call returns it (Linux: sk_error_report).
    pub const ERROR: u8 = 0x04;
}

/// UDP settings (Linux: socket defaults and net.ipv4 sysctls).
#[derive(Debug, Clone)]
pub struct UdpConfig {
    /// Receive buffer per socket in bytes of buffer memory (Linux: net.core.rmem_default,
    /// charged by truesize: every queued mbuf counts whole, so a flood of tiny datagrams
    /// cannot pin the mempool).
    pub rcvbuf: usize,
    /// Local port range for ephemeral binds (Linux: ip_local_port_range).
    pub ephemeral_ports: (u16, u16),
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            rcvbuf: 212_992,
            ephemeral_ports: (32768, 60999),
        }
    }
}

/// One UDP socket (Linux: `struct udp_sock` / `inet_sock`).
pub struct UdpSock {
    /// Local address; 0.0.0.0 = every local address (Linux: inet_rcv_saddr).
    pub saddr: Ipv4Addr,
    /// Local port; 0 = not bound yet.
    pub sport: u16,
    /// Connected peer; port 0 = not connected.
    pub daddr: Ipv4Addr,
    pub dport: u16,
    /// RSS bucket (FreeBSD IP_RSS_LISTEN_BUCKET); None = any.
    pub bucket: Option<u16>,
    /// SO_REUSEADDR: may share its port with other sockets that set it too; each datagram
    /// then goes to the best-scoring one (connected beats bound address beats wildcard).
    pub reuse: bool,
    /// IP_MTU_DISCOVER = IP_PMTUDISC_DO: send with Don't Fragment and refuse (EMSGSIZE) a
    /// datagram over the path MTU instead of letting IP fragment it.
    pub dontfrag: bool,
    /// IP_TOS and IP_TTL of every datagram (None: the stack's default TTL).
    pub tos: u8,
    pub ttl: Option<u8>,
    pub rcvbuf: usize,
    /// Receive-buffer memory charged (Linux: sk_rmem_alloc).
    pub rmem_alloc: usize,
    /// Datagrams dropped for want of buffer (Linux: sk_drops).
    pub drops: u64,
    receive_queue: SkBuffHead,
    /// Pending ICMP error (Linux: sk_err), reported once.
    pub err: Option<SockErr>,
    ev_pending: u8,
    /// The route of the last send, with its next hop's Ethernet header (Linux: sk_dst_cache):
    /// a connected socket's holds from datagram to datagram, an unconnected one's while it
    /// sends to the same destination.
    pub dst: DstCache,
}

impl UdpSock {
    pub fn local(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.saddr, self.sport)
    }

    pub fn peer(&self) -> Option<SocketAddrV4> {
        (self.dport != 0).then(|| SocketAddrV4::new(self.daddr, self.dport))
    }

    /// Datagrams waiting to be read.
    pub fn rx_queued(&self) -> usize {
        self.receive_queue.len()
    }

    /// Bytes waiting to be read (`ss`'s Recv-Q).
    pub fn rx_queued_bytes(&self) -> usize {
        self.receive_queue.bytes()
    }

    /// Linux: sock_error(). Return and clear the pending error.
    fn sock_error(&mut self) -> Result<(), UdpErr> {
        match self.err.take() {
            Some(e) => Err(UdpErr::Sock(e)),
            None => Ok(()),
        }
    }
}

/// What `udp_recvmsg` returns besides the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRecv {
    /// Bytes copied into the buffer.
    pub len: usize,
    /// Length of the datagram's payload (larger than `len` when truncated).
    pub datagram_len: usize,
    pub from: SocketAddrV4,
    /// MSG_TRUNC: the buffer was shorter than the datagram; the rest is discarded.
    pub truncated: bool,
}

/// The per-core UDP protocol instance.
pub struct UdpProto {
    pub cfg: UdpConfig,
    pub socks: SockSlab<UdpSock>,
    /// Port -> sockets bound to it (Linux: udp_table's hslot chains). Bind-time only
    /// allocation: the per-packet lookup walks the small chain of the port's slot.
    pub(crate) ports: PortTable,
    ready: Vec<SockHandle>,
    /// Next ephemeral port to try (Linux: the random start in udp_lib_get_port).
    pub(crate) rover: u16,
}

/// Buffer memory an skb pins (Linux: skb->truesize): one pool buffer per piece.
fn truesize(skb: &SkBuff, buf_size: usize) -> usize {
    (1 + skb.frags().len()) * buf_size
}

/// `UdpProto::raise` for a socket already looked up (the receive path holds it): no second
/// slab lookup per datagram.
#[inline]
fn raise_sk(ready: &mut Vec<SockHandle>, sk: &mut UdpSock, h: SockHandle, bits: u8) {
    if sk.ev_pending == 0 {
        ready.push(h);
    }
    sk.ev_pending |= bits;
}

/// Source address and port of a received datagram, from its IP and UDP headers.
fn skb_source(skb: &SkBuff) -> SocketAddrV4 {
    let src = Ipv4Hdr::new_unchecked(&ip_hdr(skb)[..]).src();
    let sport = UdpHdr::new_unchecked(&udp_hdr(skb)[..]).src_port();
    SocketAddrV4::new(src, sport)
}

/// The fixed IPv4 header of a received datagram (Linux: ip_hdr()), as an array: one bounds
/// check for the 20 bytes, none per field read. IP checked them before delivering.
#[inline(always)]
fn ip_hdr(skb: &SkBuff) -> &[u8; IPV4_MIN_HLEN] {
    skb.skb_network_header()[..IPV4_MIN_HLEN]
        .try_into()
        .expect("ip_rcv checked the header")
}

/// The UDP header of a received datagram (Linux: udp_hdr()), as an array: one bounds check
/// for the 8 bytes (udp_rcv made them linear).
#[inline(always)]
fn udp_hdr(skb: &SkBuff) -> &[u8; UDP_HLEN] {
    skb.skb_transport_header()[..UDP_HLEN]
        .try_into()
        .expect("udp_rcv pulled the header")
}

/// Linux: icmp_err_convert[] plus __udp4_lib_err's special cases: (error, hard).
fn icmp_to_sock_err(ty: u8, code: u8) -> Option<(SockErr, bool)> {
    match ty {
        ICMP_DEST_UNREACH => Some(match code {
            ICMP_NET_UNREACH => (SockErr::NetUnreach, false),
            ICMP_HOST_UNREACH => (SockErr::HostUnreach, false),
            ICMP_PROT_UNREACH => (SockErr::ProtoUnreach, true),
            ICMP_PORT_UNREACH => (SockErr::ConnRefused, true),
            // Linux treats "fragmentation needed" as hard for UDP (path MTU).
            ICMP_FRAG_NEEDED => (SockErr::MsgSize, true),
            ICMP_SR_FAILED => (SockErr::HostUnreach, false),
            ICMP_NET_UNKNOWN | ICMP_NET_ANO | ICMP_NET_UNR_TOS => (SockErr::NetUnreach, true),
            _ => (SockErr::HostUnreach, true),
        }),
        ICMP_TIME_EXCEEDED => Some((SockErr::HostUnreach, false)),
        ICMP_PARAMETERPROB => Some((SockErr::Proto, true)),
        _ => None,
    }
}

impl UdpProto {
    pub fn new(cfg: UdpConfig) -> UdpProto {
        let rover = cfg.ephemeral_ports.0;
        UdpProto {
            cfg,
            socks: SockSlab::default(),
            ports: PortTable::default(),
            ready: Vec::new(),
            rover,
        }
    }

    fn raise(&mut self, h: SockHandle, bits: u8) {
        if let Some(sk) = self.socks.get_mut(h) {
            raise_sk(&mut self.ready, sk, h, bits);
        }
    }

    pub fn socket(&mut self) -> Result<SockHandle, UdpErr> {
        let h = self
            .socks
            .insert(UdpSock {
                saddr: Ipv4Addr::UNSPECIFIED,
                sport: 0,
                daddr: Ipv4Addr::UNSPECIFIED,
                dport: 0,
                bucket: None,
                reuse: false,
                dontfrag: false,
                tos: 0,
                ttl: None,
                rcvbuf: self.cfg.rcvbuf,
                rmem_alloc: 0,
                drops: 0,
                receive_queue: SkBuffHead::new(),
                err: None,
                ev_pending: 0,
                dst: DstCache::new(),
            })
            .ok_or(UdpErr::NoMemory)?;
        self.raise(h, ev::WRITABLE);
        Ok(h)
    }

    pub fn set_rss_bucket(&mut self, h: SockHandle, bucket: u16) -> Result<(), UdpErr> {
        let sk = self.socks.get_mut(h).ok_or(UdpErr::BadHandle)?;
        if sk.sport != 0 {
            return Err(UdpErr::AlreadyBound);
        }
        sk.bucket = Some(bucket);
        Ok(())
    }

    /// SO_REUSEADDR, before bind.
    pub fn set_reuseaddr(&mut self, h: SockHandle, on: bool) -> Result<(), UdpErr> {
        let sk = self.socks.get_mut(h).ok_or(UdpErr::BadHandle)?;
        if sk.sport != 0 {
            return Err(UdpErr::AlreadyBound);
        }
        sk.reuse = on;
        Ok(())
    }

    /// Linux: setsockopt(IP_MTU_DISCOVER, IP_PMTUDISC_DO) (`on`) or IP_PMTUDISC_DONT (off,
    /// the default): with it, datagrams carry DF and one over the path MTU fails with
    /// MessageTooLong; without, IP fragments them.
    pub fn set_dontfrag(&mut self, h: SockHandle, on: bool) -> Result<(), UdpErr> {
        self.socks.get_mut(h).ok_or(UdpErr::BadHandle)?.dontfrag = on;
        Ok(())
    }

    /// Linux: setsockopt(IP_TOS) and setsockopt(IP_TTL) (`ttl` None: the stack's default).
    pub fn set_tos_ttl(&mut self, h: SockHandle, tos: Option<u8>, ttl: Option<u8>) -> Result<(), UdpErr> {
        if ttl == Some(0) {
            return Err(UdpErr::InvalidArgument("IP_TTL: 1..=255"));
        }
        let sk = self.socks.get_mut(h).ok_or(UdpErr::BadHandle)?;
        if let Some(t) = tos {
            sk.tos = t;
        }
        if ttl.is_some() {
            sk.ttl = ttl;
        }
        Ok(())
    }

    /// Linux: setsockopt(SO_RCVBUF): bytes of datagrams (truesize) the socket queues. blink
    /// refuses a value outside 4 KiB..=1 GiB where Linux clamps, and does not double it.
    pub fn set_rcvbuf(&mut self, h: SockHandle, bytes: usize) -> Result<(), UdpErr> {
        if !(4096..=1 << 30).contains(&bytes) {
            return Err(UdpErr::InvalidArgument("SO_RCVBUF: 4096..=1073741824 bytes"));
        }
        self.socks.get_mut(h).ok_or(UdpErr::BadHandle)?.rcvbuf = bytes;
        Ok(())
    }

    pub fn bind(&mut self, stack: &Stack, h: SockHandle, addr: SocketAddrV4) -> Result<SocketAddrV4, UdpErr> {
        let sk = self.socks.get(h).ok_or(UdpErr::BadHandle)?;
        if sk.sport != 0 {
            return Err(UdpErr::AlreadyBound);
        }
        let (bucket, reuse) = (sk.bucket, sk.reuse);
        let ip = *addr.ip();
        // Linux: inet_bind() refuses non-local addresses (without IP_FREEBIND) with
        // EADDRNOTAVAIL; broadcast addresses are allowed for receiving broadcasts.
        if !ip.is_unspecified() && !stack.is_local_addr(ip) && !stack.is_broadcast_addr(ip) {
            return Err(UdpErr::AddrNotAvailable(ip));
        }
        let port = match addr.port() {
            0 => self.ephemeral_port(stack).ok_or(UdpErr::NoPorts)?,
            p if self.port_in_use(p, ip, bucket, reuse) => return Err(UdpErr::AddrInUse(addr)),
            p => p,
        };
        self.ports.insert(port, h);
        let sk = self.socks.get_mut(h).expect("checked above");
        sk.saddr = ip;
        sk.sport = port;
        Ok(sk.local())
    }

    /// Bind an unbound socket to an ephemeral port before its first send to `dst`. With
    /// several cores the port is one whose replies from `dst` hash back to this core, as for
    /// connect (replies from other peers may hash elsewhere: an unconnected socket talking to
    /// many peers should be bound to an RSS bucket on every core instead).
    fn autobind(&mut self, stack: &Stack, h: SockHandle, dst: Option<SocketAddrV4>) -> Result<(), UdpErr> {
        let saddr = match self.socks.get(h) {
            None => return Err(UdpErr::BadHandle),
            Some(sk) if sk.sport != 0 => return Ok(()),
            Some(sk) => sk.saddr,
        };
        let mut port = 0;
        if let (true, Some(dst)) = (stack.nb_cores() > 1, dst) {
            if let Ok((_, _, src)) = udp_route(stack, *dst.ip()) {
                let local = if saddr.is_unspecified() { src } else { saddr };
                port = self.connect_port(stack, local, dst).unwrap_or(0);
            }
        }
        self.bind(stack, h, SocketAddrV4::new(saddr, port)).map(|_| ())
    }

    /// Linux: ip4_datagram_connect(). Also fixes the local address when it was the wildcard
    /// (the source the route picks), as Linux does.
    pub fn connect(&mut self, stack: &Stack, h: SockHandle, peer: SocketAddrV4) -> Result<(), UdpErr> {
        if peer.port() == 0 || peer.ip().is_unspecified() {
            return Err(UdpErr::InvalidArgument("connect needs a peer address and port"));
        }
        let (_, _, src) = udp_route(stack, *peer.ip())?;
        let sk = self.socks.get(h).ok_or(UdpErr::BadHandle)?;
        if sk.sport == 0 {
            let local = if sk.saddr.is_unspecified() { src } else { sk.saddr };
            let port = self
                .connect_port(stack, local, peer)
                .or_else(|| self.ephemeral_port(stack))
                .ok_or(UdpErr::NoPorts)?;
            self.bind(stack, h, SocketAddrV4::new(sk_saddr_or_any(self, h), port))?;
        }
        let sk = self.socks.get_mut(h).ok_or(UdpErr::BadHandle)?;
        if sk.saddr.is_unspecified() {
            sk.saddr = src;
        }
        sk.daddr = *peer.ip();
        sk.dport = peer.port();
        Ok(())
    }

    /// Linux: the first half of udp_sendmsg(). Resolve a send with one socket lookup and one
    /// route resolution: autobind an unbound socket, pick the destination (`to`, else the
    /// connected peer), check the socket's cached route for it (`UdpSock::dst`, Linux's
    /// sk_dst_check; resolved again only when stale or for another destination), check the
    /// length and pick the source; then run `f` with the socket, whose cached route IP
    /// sends by. On error `payload` comes back with it.
    #[inline(always)]
    fn prepare_send<P, R>(
        &mut self,
        stack: &mut Stack,
        h: SockHandle,
        len: usize,
        to: Option<SocketAddrV4>,
        payload: P,
        f: impl FnOnce(&mut Stack, &mut UdpSock, SendPlan, P) -> R,
    ) -> Result<R, (P, UdpErr)> {
        let Some(mut sk) = self.socks.get_mut(h) else {
            return Err((payload, UdpErr::BadHandle));
        };
        if let Err(e) = sk.sock_error() {
            return Err((payload, e));
        }
        if sk.sport == 0 {
            // The first send of an unbound socket (Linux: inet_autobind); looked up again after.
            let dst = to.or_else(|| sk.peer());
            if let Err(e) = self.autobind(stack, h, dst) {
                return Err((payload, e));
            }
            sk = self.socks.get_mut(h).expect("autobind checked the handle");
        }
        let dst = match to.or_else(|| sk.peer()) {
            Some(d) if d.port() != 0 && !d.ip().is_unspecified() => d,
            Some(_) => {
                return Err((
                    payload,
                    UdpErr::InvalidArgument("destination needs an address and a port"),
                ))
            }
            None => return Err((payload, UdpErr::NotConnected)),
        };
        let daddr = *dst.ip();
        // A connected socket's route holds from send to send; an unconnected one's is a
        // one-entry cache keyed by destination.
        if !sk.dst.check(stack, daddr) && !ip_route_output_dst(stack, &mut sk.dst, daddr) {
            return Err((payload, UdpErr::NoRoute(daddr)));
        }
        // IP fragments what exceeds the path MTU, up to the 65,535-byte datagram (65,507
        // bytes of payload, Linux: udp_sendmsg's `len > 0xFFFF` EMSGSIZE); with
        // IP_PMTUDISC_DO the datagram must fit the path MTU instead.
        let mtu = sk.dst.mtu();
        let ip_len = IPV4_MIN_HLEN + UDP_HLEN + len;
        if ip_len > IP_MAX_MTU || (sk.dontfrag && ip_len > mtu) {
            return Err((payload, UdpErr::MessageTooLong { len: ip_len, mtu }));
        }
        // A socket bound to the route's own source (what connect picks) takes it as it is,
        // without searching the broadcast list: either branch would give that address.
        let prefsrc = sk.dst.prefsrc();
        let src = if sk.saddr == prefsrc || sk.saddr.is_unspecified() || stack.is_broadcast_addr(sk.saddr) {
            prefsrc
        } else {
            sk.saddr
        };
        let plan = SendPlan {
            src: SocketAddrV4::new(src, sk.sport),
            dst,
            ip: TxIp {
                df: sk.dontfrag,
                tos: sk.tos,
                ttl: sk.ttl,
            },
        };
        Ok(f(stack, sk, plan, payload))
    }

    /// Linux: udp_sendmsg(). Copies `data` into a fresh datagram (the header and as much as
    /// fits in one mbuf, then further mbufs as fragments): up to 65,507 bytes, which IP
    /// fragments when they exceed the path MTU.
    pub fn sendmsg(
        &mut self,
        stack: &mut Stack,
        h: SockHandle,
        data: &[u8],
        to: Option<SocketAddrV4>,
    ) -> Result<usize, UdpErr> {
        let r = self.prepare_send(stack, h, data.len(), to, (), |stack, sk, plan, ()| {
            let Some(mut skb) = SkBuff::alloc(&mut stack.core.cache) else {
                stack.core.mib.udp.inc(UdpMib::SndbufErrors);
                return Err(UdpErr::NoMemory);
            };
            let first = data.len().min(skb.skb_tailroom().saturating_sub(UDP_HLEN));
            let Some(buf) = skb.skb_put(UDP_HLEN + first) else {
                stack.core.mib.udp.inc(UdpMib::SndbufErrors);
                stack.core.kfree_skb_reason(skb, DropReason::NoMem);
                return Err(UdpErr::NoMemory);
            };
            buf[UDP_HLEN..].copy_from_slice(&data[..first]);
            let mut rest = &data[first..];
            while !rest.is_empty() {
                let Some(mut m) = stack.core.cache.alloc() else {
                    stack.core.mib.udp.inc(UdpMib::SndbufErrors);
                    stack.core.kfree_skb_reason(skb, DropReason::NoMem);
                    return Err(UdpErr::NoMemory);
                };
                let n = rest.len().min(m.tailroom());
                m.append_slice(&rest[..n]);
                rest = &rest[n..];
                if skb.skb_add_frag(Frag::from_mbuf(m)).is_err() {
                    stack.core.kfree_skb_reason(skb, DropReason::Oversize);
                    return Err(UdpErr::MessageTooLong {
                        len: data.len(),
                        mtu: sk.dst.mtu(),
                    });
                }
            }
            udp_send_skb(stack, skb, &plan, &mut sk.dst)?;
            Ok(data.len())
        });
        match r {
            Ok(r) => r,
            Err(((), e)) => Err(e),
        }
    }

    /// Zero-copy send of one single-segment mbuf as the payload. The error carries the mbuf
    /// back when it was not consumed (every check before the datagram is handed to IP).
    pub fn send_mbuf(
        &mut self,
        stack: &mut Stack,
        h: SockHandle,
        m: Mbuf,
        to: Option<SocketAddrV4>,
    ) -> Result<(), (Option<Mbuf>, UdpErr)> {
        if m.nb_segs() != 1 {
            return Err((
                Some(m),
                UdpErr::InvalidArgument("the payload mbuf must have one segment"),
            ));
        }
        let len = m.data_len();
        let r = self.prepare_send(stack, h, len, to, m, |stack, sk, plan, m| {
            let Some(mut skb) = SkBuff::alloc(&mut stack.core.cache) else {
                stack.core.mib.udp.inc(UdpMib::SndbufErrors);
                return Err((Some(m), UdpErr::NoMemory));
            };
            if skb.skb_put(UDP_HLEN).is_none() {
                return Err((Some(m), UdpErr::NoMemory));
            }
            if m.data_len() > 0 {
                if let Err(f) = skb.skb_add_frag(Frag::from_mbuf(m)) {
                    return Err((Some(f.into_mbuf()), UdpErr::NoMemory));
                }
            }
            udp_send_skb(stack, skb, &plan, &mut sk.dst).map_err(|e| (None, e))
        });
        match r {
            Ok(r) => r,
            Err((m, e)) => Err((Some(m), e)),
        }
    }

    fn take_datagram(&mut self, stack: &mut Stack, h: SockHandle) -> Result<SkBuff, UdpErr> {
        let buf_size = stack.core.cache.pool().buf_size();
        let sk = self.socks.get_mut(h).ok_or(UdpErr::BadHandle)?;
        sk.sock_error()?;
        let skb = sk.receive_queue.skb_dequeue().ok_or(UdpErr::WouldBlock)?;
        if skb.trace {
            stack.core.mib.trace_event(&skb, "udp_recvmsg", "to the application");
        }
        sk.rmem_alloc = sk.rmem_alloc.saturating_sub(truesize(&skb, buf_size));
        // Linux counts InDatagrams when the application reads the datagram (udp_recvmsg).
        stack.core.mib.udp.inc(UdpMib::InDatagrams);
        Ok(skb)
    }

    /// Linux: udp_recvmsg().
    pub fn recvmsg(&mut self, stack: &mut Stack, h: SockHandle, buf: &mut [u8]) -> Result<UdpRecv, UdpErr> {
        let skb = self.take_datagram(stack, h)?;
        let from = skb_source(&skb);
        let n = skb.len().min(buf.len());
        skb.skb_copy_bits(0, &mut buf[..n]);
        let r = UdpRecv {
            len: n,
            datagram_len: skb.len(),
            from,
            truncated: n < skb.len(),
        };
        stack.core.consume_skb(skb);
        Ok(r)
    }

    pub fn recv_skb(&mut self, stack: &mut Stack, h: SockHandle) -> Result<(SkBuff, SocketAddrV4), UdpErr> {
        let skb = self.take_datagram(stack, h)?;
        let from = skb_source(&skb);
        Ok((skb, from))
    }

    pub fn close(&mut self, h: SockHandle) -> Result<(), UdpErr> {
        let mut sk = self.socks.remove(h).ok_or(UdpErr::BadHandle)?;
        if sk.sport != 0 {
            self.ports.remove(sk.sport, h);
        }
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

    /// Linux: __udp4_lib_rcv(). `skb->data` is at the UDP header.
    pub fn udp_rcv(&mut self, stack: &mut Stack, mut skb: SkBuff) {
        let mib = &mut stack.core.mib;
        if !skb.pskb_may_pull(UDP_HLEN) {
            mib.udp.inc(UdpMib::InErrors);
            mib.kfree_skb_reason(skb, DropReason::PktTooSmall);
            return;
        }
        let (sport, dport, ulen, check) = {
            let u: &[u8; UDP_HLEN] = skb.data()[..UDP_HLEN].try_into().expect("pulled above");
            let u = UdpHdr::new_unchecked(&u[..]);
            (u.src_port(), u.dst_port(), u.len() as usize, u.checksum())
        };
        if ulen < UDP_HLEN || ulen > skb.len() {
            mib.udp.inc(UdpMib::InErrors);
            mib.kfree_skb_reason(skb, DropReason::PktTooSmall);
            return;
        }
        // Linux: pskb_trim_rcsum(); a device's whole-packet sum no longer applies.
        if ulen < skb.len() {
            skb.skb_trim(ulen);
            if skb.ip_summed == IpSummed::Complete {
                skb.ip_summed = IpSummed::None;
            }
        }
        let (saddr, daddr) = {
            let ip = Ipv4Hdr::new_unchecked(&ip_hdr(&skb)[..]);
            (ip.src(), ip.dst())
        };
        // A zero checksum means the sender computed none (RFC 768); a device that verified
        // it says so with CHECKSUM_UNNECESSARY. A COMPLETE sum is re-done in software: blink's
        // drivers do not report one yet.
        if check != 0 && skb.ip_summed != IpSummed::Unnecessary && !udp_csum_ok(&skb, saddr, daddr) {
            mib.udp.inc(UdpMib::InCsumErrors);
            mib.udp.inc(UdpMib::InErrors);
            mib.kfree_skb_reason(skb, DropReason::UdpCsum);
            return;
        }
        let bcast = matches!(skb.pkt_type, PacketType::Broadcast | PacketType::Multicast)
            || daddr.is_multicast()
            || stack.is_broadcast_addr(daddr);
        let core = &stack.core;
        let (hash, htype) = (skb.rss_hash, skb.hash_type);
        let found = self.lookup(saddr, sport, daddr, dport, || {
            udp_flow_bucket(core, hash, htype, saddr, daddr, sport, dport)
        });
        if bcast && found.is_some() {
            self.udp_mcast_deliver(stack, skb, saddr, sport, daddr, dport);
            return;
        }
        let Some(h) = found else {
            let wrong_core =
                !bcast && stack.nb_cores() > 1 && stack.core.l4_owner(saddr, daddr, sport, dport) != stack.core.cpu;
            if wrong_core {
                // Steered to the wrong core (impossible by construction): its owner may have
                // the socket, so no port unreachable from here. Counted for the tests.
                stack.core.mib.softnet.inc(blink_netcore::snmp::SoftnetMib::WrongCore);
                stack.core.kfree_skb_reason(skb, DropReason::NoSocket);
                return;
            }
            // Nobody here wants it: the kernel sharing the NIC may (`--to-kernel unclaimed`).
            let Some(skb) = blink_ipv4::ip_exception::ip_exc_unclaimed(stack, skb) else {
                return;
            };
            if bcast {
                // Linux: __udp4_lib_mcast_deliver() with no listener.
                stack.core.mib.udp.inc(UdpMib::IgnoredMulti);
            } else {
                stack.core.mib.udp.inc(UdpMib::NoPorts);
                icmp_send(stack, &skb, ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, 0);
            }
            stack.core.kfree_skb_reason(skb, DropReason::NoSocket);
            return;
        };
        self.udp_queue_rcv_skb(stack, h, skb);
    }

    /// Linux: __udp4_lib_mcast_deliver(). A broadcast goes to every socket that matches it
    /// (each gets a clone sharing the buffers; the last one the original). Clones that cannot
    /// be made are counted as memory errors.
    fn udp_mcast_deliver(
        &mut self,
        stack: &mut Stack,
        skb: SkBuff,
        saddr: Ipv4Addr,
        sport: u16,
        daddr: Ipv4Addr,
        dport: u16,
    ) {
        // Bounded like Linux's stack array of sockets per pass; further matches are
        // served from the next chunk.
        let mut targets: arrayvec::ArrayVec<SockHandle, 32> = arrayvec::ArrayVec::new();
        for h in self.ports.chain(dport) {
            let Some(sk) = self.socks.get(h) else { continue };
            let addr_ok = sk.saddr.is_unspecified() || sk.saddr == daddr;
            let peer_ok = sk.dport == 0 || (sk.daddr == saddr && sk.dport == sport);
            if addr_ok && peer_ok && targets.try_push(h).is_err() {
                break;
            }
        }
        let Some(last) = targets.pop() else {
            stack.core.mib.udp.inc(UdpMib::IgnoredMulti);
            stack.core.kfree_skb_reason(skb, DropReason::NoSocket);
            return;
        };
        for h in targets {
            match skb.skb_clone(&mut stack.core.cache) {
                Some(c) => self.udp_queue_rcv_skb(stack, h, c),
                None => {
                    stack.core.mib.udp.inc(UdpMib::MemErrors);
                    stack.core.mib.drop_count(DropReason::NoMem);
                }
            }
        }
        self.udp_queue_rcv_skb(stack, last, skb);
    }

    /// Linux: udp_queue_rcv_skb() / __udp_enqueue_schedule_skb(). Bounded by rcvbuf in
    /// truesize; an empty queue always takes one datagram, so a small rcvbuf still receives.
    fn udp_queue_rcv_skb(&mut self, stack: &mut Stack, h: SockHandle, mut skb: SkBuff) {
        let ts = truesize(&skb, stack.core.cache.pool().buf_size());
        let sk = self.socks.get_mut(h).expect("lookup returns live sockets");
        if !sk.receive_queue.is_empty() && sk.rmem_alloc + ts > sk.rcvbuf {
            sk.drops += 1;
            stack.core.mib.udp.inc(UdpMib::RcvbufErrors);
            stack.core.mib.udp.inc(UdpMib::InErrors);
            stack.core.kfree_skb_reason(skb, DropReason::SocketRcvBuff);
            return;
        }
        skb.skb_pull(UDP_HLEN);
        sk.rmem_alloc += ts;
        if skb.trace {
            stack.core.mib.trace_event(&skb, "udp_queue_rcv_skb", "");
        }
        sk.receive_queue.skb_queue_tail(skb);
        raise_sk(&mut self.ready, sk, h, ev::READABLE);
    }

    /// Linux: __udp4_lib_err(). Only a connected socket hears about hard errors (no
    /// IP_RECVERR in blink): the next call on it returns the error.
    pub fn udp_err(&mut self, ty: u8, code: u8, inner: &[u8]) {
        let Ok(ip) = Ipv4Hdr::new_checked(inner) else { return };
        let hl = ip.header_len();
        let Some(uh) = inner.get(hl..hl + UDP_HLEN) else { return };
        let uh = UdpHdr::new_unchecked(uh);
        let Some((err, hard)) = icmp_to_sock_err(ty, code) else {
            return;
        };
        // The quoted datagram is one we sent: its source is us, its destination the peer.
        let Some(h) = self.lookup(ip.dst(), uh.dst_port(), ip.src(), uh.src_port(), || 0) else {
            return;
        };
        let sk = self.socks.get_mut(h).expect("lookup returns live sockets");
        if !hard || sk.dport == 0 {
            return;
        }
        if ty == ICMP_DEST_UNREACH && code == ICMP_FRAG_NEEDED && !sk.dontfrag {
            // IPv4 has lowered the path MTU already; without IP_PMTUDISC_DO the next
            // datagrams are fragmented to fit, so there is nothing to report (Linux:
            // __udp4_lib_err with IP_PMTUDISC_DONT).
            return;
        }
        sk.err = Some(err);
        self.raise(h, ev::ERROR | ev::READABLE | ev::WRITABLE);
    }
}

/// The socket's bound address, or the wildcard for an unknown handle.
fn sk_saddr_or_any(u: &UdpProto, h: SockHandle) -> Ipv4Addr {
    u.socks.get(h).map(|s| s.saddr).unwrap_or(Ipv4Addr::UNSPECIFIED)
}

/// Output device, the path MTU (the device's, lowered by an ICMP "fragmentation needed") and
/// the preferred source for `dst` (the limited broadcast leaves by the first device with an
/// address, as ip_build_and_send_pkt does).
#[inline(always)]
fn udp_route(stack: &Stack, dst: Ipv4Addr) -> Result<(u16, usize, Ipv4Addr), UdpErr> {
    if dst.is_broadcast() {
        return stack
            .devs
            .iter()
            .find(|d| !d.addrs().is_empty())
            .map(|d| (d.ifindex, d.mtu, d.addrs()[0].addr))
            .ok_or(UdpErr::NoRoute(dst));
    }
    let r = stack.fib.lookup(dst).ok_or(UdpErr::NoRoute(dst))?;
    Ok((r.dev, ip_dst_mtu(stack, r.dev, dst), r.prefsrc))
}

/// The RSS bucket of a datagram's flow, for the lookup among sockets bound to buckets: the
/// device's hash when it covers the UDP ports, else software Toeplitz over the same 4-tuple
/// the NIC would use. Out of line: only bucket sockets need it, and inlined into the lookup
/// its byte-wise Toeplitz inputs were prepared before the socket loop on every datagram.
#[cold]
#[inline(never)]
fn udp_flow_bucket(
    core: &NetCore,
    hash: u32,
    htype: RssHashType,
    saddr: Ipv4Addr,
    daddr: Ipv4Addr,
    sport: u16,
    dport: u16,
) -> u16 {
    let h = if htype == RssHashType::L4Ipv4Udp {
        hash
    } else {
        core.toeplitz.hash_ipv4_l4(saddr.octets(), daddr.octets(), sport, dport)
    };
    hash2cpu(&core.reta, h)
}

/// The software half of udp4_csum_init() + __skb_checksum_complete(): whether the datagram's
/// (non-zero) checksum is right. A datagram in one buffer (most) is summed as that one slice,
/// without the segment iterator a fragmented one needs.
#[inline]
fn udp_csum_ok(skb: &SkBuff, saddr: Ipv4Addr, daddr: Ipv4Addr) -> bool {
    let (s, d, len) = (saddr.octets(), daddr.octets(), skb.len());
    if skb.is_nonlinear() {
        udp_v4_verify(s, d, len, skb.segments())
    } else {
        udp_v4_verify(s, d, len, std::iter::once(skb.data()))
    }
}

/// What `prepare_send` resolved for one datagram: its source (the socket's address, else the
/// route's preferred source) and destination, and the socket's IP header settings.
#[derive(Debug, Clone, Copy)]
struct SendPlan {
    src: SocketAddrV4,
    dst: SocketAddrV4,
    ip: TxIp,
}

/// What a socket puts in the IP header of its datagrams (Linux: the inet_sock fields
/// ip_setup_cork copies).
#[derive(Debug, Clone, Copy)]
struct TxIp {
    df: bool,
    tos: u8,
    ttl: Option<u8>,
}

/// Linux: udp_send_skb(). Fill the header, checksum it (in software unless the device
/// offers UDP transmit checksum offload), and hand it to IP with the socket's cached route
/// (`prepare_send` resolved and checked it: IP neither routes nor checks it again).
fn udp_send_skb(stack: &mut Stack, mut skb: SkBuff, plan: &SendPlan, rt: &mut DstCache) -> Result<(), UdpErr> {
    let (src, dst, ip) = (plan.src, plan.dst, plan.ip);
    let len = skb.len();
    let offload = stack.devs[rt.dev() as usize].features.has(NetdevFeatures::TXCSUM_UDP);
    let nonlinear = skb.is_nonlinear();
    let Some(h) = skb.data_mut() else {
        stack.core.kfree_skb_reason(skb, DropReason::NoMem);
        return Err(UdpErr::NoMemory);
    };
    let (s, d) = (src.ip().octets(), dst.ip().octets());
    let (hdr, payload) = h.split_at_mut(UDP_HLEN);
    let mut uh = UdpHdr::new_unchecked(hdr);
    UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
        payload_len: len - UDP_HLEN,
    }
    .emit(&mut uh);
    if offload {
        // Linux: udp4_hwcsum(). The device adds the datagram's sum to the pseudo-header sum.
        uh.set_checksum(udp_v4_pseudo(s, d, len as u16));
        skb.ip_summed = IpSummed::Partial;
    } else if !nonlinear {
        // A datagram that fits one buffer (most): no segment list to build, the header summed
        // from its fields (see udp_v4_check_fields), and the checksum stored through the same
        // borrow of the buffer as the header.
        uh.set_checksum(udp_v4_check_fields(s, d, src.port(), dst.port(), payload));
    } else {
        let c = {
            let mut segs: arrayvec::ArrayVec<&[u8], { blink_netcore::skbuff::MAX_SKB_FRAGS + 1 }> =
                arrayvec::ArrayVec::new();
            segs.extend(skb.segments());
            udp_v4_check(s, d, &segs)
        };
        UdpHdr::new_unchecked(&mut skb.data_mut().expect("checked writable above")[..UDP_HLEN]).set_checksum(c);
    }
    skb.skb_reset_transport_header();
    let tx = IpTx {
        src: Some(*src.ip()),
        dst: *dst.ip(),
        protocol: IPPROTO_UDP,
        ttl: ip.ttl,
        tos: ip.tos,
        df: ip.df,
        id: None,
    };
    // prepare_send checked the socket's route for this destination: IP does not check again.
    match ip_send_skb(stack, skb, tx, rt) {
        Ok(()) => {
            stack.core.mib.udp.inc(UdpMib::OutDatagrams);
            Ok(())
        }
        Err(Ipv4Error::NoBuffers) => {
            stack.core.mib.udp.inc(UdpMib::SndbufErrors);
            Err(UdpErr::NoMemory)
        }
        Err(Ipv4Error::NoRoute(a)) => Err(UdpErr::NoRoute(a)),
        Err(Ipv4Error::MessageTooLong { len, mtu }) => Err(UdpErr::MessageTooLong { len, mtu }),
        Err(_) => Err(UdpErr::InvalidArgument("IP refused the datagram")),
    }
}

impl InetProtocol for UdpProto {
    fn name(&self) -> &'static str {
        "udp"
    }

    fn handler(&mut self, stack: &mut Stack, skb: SkBuff) {
        if skb.trace {
            stack.core.mib.trace_event(&skb, "udp_rcv", "");
        }
        self.udp_rcv(stack, skb);
    }

    fn err_handler(&mut self, _stack: &mut Stack, icmp_type: u8, code: u8, _info: u32, inner: &[u8]) {
        self.udp_err(icmp_type, code, inner);
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const US: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    pub(crate) const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    /// A socket placed straight into the tables (bind's address checks need a stack).
    pub(crate) fn put(
        u: &mut UdpProto,
        saddr: Ipv4Addr,
        port: u16,
        peer: Option<(Ipv4Addr, u16)>,
        bucket: Option<u16>,
    ) -> SockHandle {
        let h = u.socket().unwrap();
        let sk = u.socks.get_mut(h).unwrap();
        sk.saddr = saddr;
        sk.sport = port;
        if let Some((a, p)) = peer {
            sk.daddr = a;
            sk.dport = p;
        }
        sk.bucket = bucket;
        sk.reuse = true;
        u.ports.insert(port, h);
        h
    }

    #[test]
    fn icmp_errors_map_like_linux() {
        assert_eq!(
            icmp_to_sock_err(ICMP_DEST_UNREACH, ICMP_PORT_UNREACH),
            Some((SockErr::ConnRefused, true))
        );
        assert_eq!(
            icmp_to_sock_err(ICMP_DEST_UNREACH, ICMP_PROT_UNREACH),
            Some((SockErr::ProtoUnreach, true))
        );
        assert_eq!(
            icmp_to_sock_err(ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED),
            Some((SockErr::MsgSize, true))
        );
        assert_eq!(
            icmp_to_sock_err(ICMP_DEST_UNREACH, ICMP_HOST_UNREACH),
            Some((SockErr::HostUnreach, false))
        );
        assert_eq!(
            icmp_to_sock_err(ICMP_TIME_EXCEEDED, 0),
            Some((SockErr::HostUnreach, false))
        );
        assert_eq!(icmp_to_sock_err(ICMP_PARAMETERPROB, 0), Some((SockErr::Proto, true)));
        assert_eq!(icmp_to_sock_err(ICMP_ECHOREPLY, 0), None);
    }

    #[test]
    fn soft_errors_and_unconnected_sockets_stay_silent() {
        let mut u = UdpProto::new(UdpConfig::default());
        let conn = put(&mut u, US, 5000, Some((PEER, 53)), None);
        let mut quoted = [0u8; 28];
        quoted[0] = 0x45;
        quoted[9] = IPPROTO_UDP;
        quoted[12..16].copy_from_slice(&US.octets());
        quoted[16..20].copy_from_slice(&PEER.octets());
        quoted[20..22].copy_from_slice(&5000u16.to_be_bytes());
        quoted[22..24].copy_from_slice(&53u16.to_be_bytes());
        u.udp_err(ICMP_TIME_EXCEEDED, 0, &quoted);
        assert_eq!(u.socks.get(conn).unwrap().err, None, "soft error");
        u.udp_err(ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, &quoted[..27]);
        assert_eq!(u.socks.get(conn).unwrap().err, None, "quote too short");
        u.udp_err(ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, &quoted);
        assert_eq!(u.socks.get(conn).unwrap().err, Some(SockErr::ConnRefused));
        let mut out = Vec::new();
        u.events(&mut out);
        assert!(out.iter().any(|&(h, e)| h == conn && e & ev::ERROR != 0));
    }

    #[test]
    fn frag_needed_reported_only_with_dontfrag() {
        let mut u = UdpProto::new(UdpConfig::default());
        let conn = put(&mut u, US, 5000, Some((PEER, 53)), None);
        let mut quoted = [0u8; 28];
        quoted[0] = 0x45;
        quoted[9] = IPPROTO_UDP;
        quoted[12..16].copy_from_slice(&US.octets());
        quoted[16..20].copy_from_slice(&PEER.octets());
        quoted[20..22].copy_from_slice(&5000u16.to_be_bytes());
        quoted[22..24].copy_from_slice(&53u16.to_be_bytes());
        // IP fragments to the lowered path MTU: nothing to tell the application.
        u.udp_err(ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, &quoted);
        assert_eq!(u.socks.get(conn).unwrap().err, None);
        // With IP_PMTUDISC_DO the datagram was refused on the path: EMSGSIZE.
        u.set_dontfrag(conn, true).unwrap();
        u.udp_err(ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, &quoted);
        assert_eq!(u.socks.get(conn).unwrap().err, Some(SockErr::MsgSize));
    }
}
