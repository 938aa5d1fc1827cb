//! UDP and raw sockets through glue (app_glue's UDP and raw socket calls): creation, bind,
//! connect, and copying or zero-copy send and receive with the peer's address.
//!
//! They share the event lists and callbacks with TCP: READABLE when a datagram is queued,
//! WRITABLE once at creation (datagram sends never queue, so there is no window to wait for)
//! and again after an error, and, for UDP, the error list when ICMP reports a problem.
//!
//! A UDP echo, driven by callbacks:
//!
//! ```
//! use blink_glue::{Glue, GlueHandler, Socket};
//!
//! struct UdpEcho;
//! impl GlueHandler<()> for UdpEcho {
//!     fn on_readable(&mut self, glue: &mut Glue<()>, s: Socket) {
//!         let mut buf = [0u8; 2048];
//!         while let Ok(r) = glue.recv_from(s, &mut buf) {
//!             // A datagram that cannot be sent is lost, as UDP allows.
//!             let _ = glue.send_to(s, &buf[..r.len], Some(r.from));
//!         }
//!     }
//! }
//!
//! # use blink_glue::netcore::{drivers::wire::{wire_pair, WireConfig}, EthAddr};
//! # let (a, _b) = wire_pair(("a", "b"), (EthAddr([2, 0, 0, 0, 0, 1]), EthAddr([2, 0, 0, 0, 0, 2])), &WireConfig::default());
//! let mut glue: Glue<()> = blink_glue::GlueBuilder::new()
//!     .device(Box::new(a))
//!     .addr("10.0.0.1/24".parse().unwrap())
//!     .build()
//!     .unwrap();
//! let s = glue.udp_socket(None).unwrap();
//! glue.udp_bind(s, "0.0.0.0:7".parse().unwrap()).unwrap();
//! for _ in 0..10 {
//!     glue.periodic_with(&mut UdpEcho);
//! }
//! glue.close(s).unwrap();
//! ```

use std::net::{Ipv4Addr, SocketAddrV4};

use blink_netcore::mbuf::Mbuf;
use blink_netcore::skbuff::SkBuff;

use crate::socket::{SockKind, Socket};
use crate::{Glue, GlueError};

/// What [`Glue::recv_from`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvFrom {
    /// Bytes copied into the buffer.
    pub len: usize,
    /// Length of the whole datagram (UDP payload; raw: the IP packet), larger than `len`
    /// when truncated.
    pub orig_len: usize,
    /// The sender (port 0 for raw sockets).
    pub from: SocketAddrV4,
    /// MSG_TRUNC: the buffer was too short; the rest of the datagram is discarded.
    pub truncated: bool,
}

impl<U> Glue<U> {
    fn dgram_kind(&self, s: Socket, want: SockKind, what: &'static str) -> Result<(), GlueError> {
        self.live(s)?;
        if s.kind() != want {
            return Err(GlueError::NotSupported(what));
        }
        Ok(())
    }

    /// A UDP socket (socket(AF_INET, SOCK_DGRAM)); unbound until [`Glue::udp_bind`],
    /// [`Glue::udp_connect`] or the first send (which picks an ephemeral port).
    pub fn udp_socket(&mut self, data: Option<U>) -> Result<Socket, GlueError> {
        let h = blink_udp::udp_socket(&mut self.stack)?;
        self.udp.insert(h, data);
        Ok(Socket::udp(h))
    }

    /// Bind to `addr` (0.0.0.0 for every local address, port 0 for an ephemeral one);
    /// returns the bound address.
    pub fn udp_bind(&mut self, s: Socket, addr: SocketAddrV4) -> Result<SocketAddrV4, GlueError> {
        self.dgram_kind(s, SockKind::Udp, "udp_bind on a non-UDP socket")?;
        Ok(blink_udp::udp_bind(&mut self.stack, s.handle(), addr)?)
    }

    /// Bind the socket to RSS bucket `bucket` before [`Glue::udp_bind`] (FreeBSD:
    /// IP_RSS_LISTEN_BUCKET): several sockets may share the port, one per bucket, and each
    /// datagram goes to the socket of the bucket its Toeplitz hash selects through the RETA.
    /// In blink a bucket is a core, so a core binds its own bucket (`glue.cpu()`): another
    /// core's bucket is refused, since its datagrams never reach this core.
    pub fn udp_set_rss_bucket(&mut self, s: Socket, bucket: u16) -> Result<(), GlueError> {
        self.dgram_kind(s, SockKind::Udp, "udp_set_rss_bucket on a non-UDP socket")?;
        if bucket != self.cpu() {
            return Err(GlueError::InvalidArgument(
                "RSS bucket of another core: open the socket on the core that owns the bucket",
            ));
        }
        Ok(blink_udp::udp_set_rss_bucket(&mut self.stack, s.handle(), bucket)?)
    }

    /// IP_MTU_DISCOVER = IP_PMTUDISC_DO (`on`) or IP_PMTUDISC_DONT (off, the default): with
    /// it, datagrams carry Don't Fragment and a send over the path MTU fails with
    /// [`GlueError::MessageTooLong`]; without, datagrams up to 65,507 bytes are fragmented.
    pub fn udp_set_dontfrag(&mut self, s: Socket, on: bool) -> Result<(), GlueError> {
        self.dgram_kind(s, SockKind::Udp, "udp_set_dontfrag on a non-UDP socket")?;
        Ok(blink_udp::udp_set_dontfrag(&mut self.stack, s.handle(), on)?)
    }

    /// Default destination, and receive only from `peer`.
    pub fn udp_connect(&mut self, s: Socket, peer: SocketAddrV4) -> Result<(), GlueError> {
        self.dgram_kind(s, SockKind::Udp, "udp_connect on a non-UDP socket")?;
        Ok(blink_udp::udp_connect(&mut self.stack, s.handle(), peer)?)
    }

    /// The UDP socket's local address (0.0.0.0:0 while unbound).
    pub fn udp_local_addr(&mut self, s: Socket) -> Result<SocketAddrV4, GlueError> {
        self.dgram_kind(s, SockKind::Udp, "udp_local_addr on a non-UDP socket")?;
        Ok(blink_udp::udp_local_addr(&mut self.stack, s.handle())?)
    }

    /// A raw IPv4 socket for `protocol` (socket(AF_INET, SOCK_RAW, protocol)): it gets a copy
    /// of every packet of that protocol addressed here, IP header first.
    pub fn raw_socket(&mut self, protocol: u8, data: Option<U>) -> Result<Socket, GlueError> {
        let h = blink_raw::raw_socket(&mut self.stack, protocol)?;
        self.raw.insert(h, data);
        Ok(Socket::raw(h))
    }

    /// Receive only packets addressed to `addr` (0.0.0.0: any); also the source of sends.
    pub fn raw_bind(&mut self, s: Socket, addr: Ipv4Addr) -> Result<(), GlueError> {
        self.dgram_kind(s, SockKind::Raw, "raw_bind on a non-raw socket")?;
        Ok(blink_raw::raw_bind(&mut self.stack, s.handle(), addr)?)
    }

    /// Default destination, and receive only packets from `peer`.
    pub fn raw_connect(&mut self, s: Socket, peer: Ipv4Addr) -> Result<(), GlueError> {
        self.dgram_kind(s, SockKind::Raw, "raw_connect on a non-raw socket")?;
        Ok(blink_raw::raw_connect(&mut self.stack, s.handle(), peer)?)
    }

    /// IP_HDRINCL: sends carry their own IP header.
    pub fn raw_set_hdrincl(&mut self, s: Socket, on: bool) -> Result<(), GlueError> {
        self.dgram_kind(s, SockKind::Raw, "raw_set_hdrincl on a non-raw socket")?;
        Ok(blink_raw::raw_set_hdrincl(&mut self.stack, s.handle(), on)?)
    }

    /// Copying send of one datagram to `to` (or the connected peer when `None`); for a raw
    /// socket the port of `to` is ignored and `data` is the payload (or the whole packet with
    /// IP_HDRINCL). Returns the bytes sent.
    pub fn send_to(&mut self, s: Socket, data: &[u8], to: Option<SocketAddrV4>) -> Result<usize, GlueError> {
        let h = self.live(s)?;
        match s.kind() {
            SockKind::Udp => Ok(blink_udp::udp_sendmsg(&mut self.stack, h, data, to)?),
            SockKind::Raw => Ok(blink_raw::raw_sendmsg(&mut self.stack, h, data, to.map(|a| *a.ip()))?),
            SockKind::Tcp => Err(GlueError::NotSupported("send_to on a TCP socket (use send)")),
        }
    }

    /// Copying receive of one datagram, with its source. `Err(WouldBlock)` when none is
    /// queued; on UDP, a pending ICMP error comes back once as `Err(Icmp(..))`.
    pub fn recv_from(&mut self, s: Socket, buf: &mut [u8]) -> Result<RecvFrom, GlueError> {
        let h = self.live(s)?;
        match s.kind() {
            SockKind::Udp => {
                let r = blink_udp::udp_recvmsg(&mut self.stack, h, buf)?;
                Ok(RecvFrom {
                    len: r.len,
                    orig_len: r.datagram_len,
                    from: r.from,
                    truncated: r.truncated,
                })
            }
            SockKind::Raw => {
                let r = blink_raw::raw_recvmsg(&mut self.stack, h, buf)?;
                Ok(RecvFrom {
                    len: r.len,
                    orig_len: r.packet_len,
                    from: SocketAddrV4::new(r.from, 0),
                    truncated: r.truncated,
                })
            }
            SockKind::Tcp => Err(GlueError::NotSupported("recv_from on a TCP socket (use recv)")),
        }
    }

    /// Zero-copy UDP send: `m`'s data (from [`Glue::get_buffer`]) becomes the datagram's
    /// payload without a copy. On failure the mbuf comes back when it was not consumed
    /// (`Some`); once handed to IP a later drop is counted there like any other.
    pub fn send_mbuf_to(
        &mut self,
        s: Socket,
        m: Mbuf,
        to: Option<SocketAddrV4>,
    ) -> Result<(), (Option<Mbuf>, GlueError)> {
        let h = match self.live(s) {
            Ok(h) => h,
            Err(e) => return Err((Some(m), e)),
        };
        match s.kind() {
            SockKind::Udp => blink_udp::udp_send_mbuf(&mut self.stack, h, m, to).map_err(|(m, e)| (m, e.into())),
            // blink_raw sends copy only (raw_sendmsg); TCP has send_mbuf.
            SockKind::Raw => Err((Some(m), GlueError::NotSupported("zero-copy send on a raw socket"))),
            SockKind::Tcp => Err((
                Some(m),
                GlueError::NotSupported("send_mbuf_to on a TCP socket (use send_mbuf)"),
            )),
        }
    }

    /// Zero-copy receive of one datagram with its source: the skb in the buffers the device
    /// delivered. UDP: `data` starts at the payload; raw: at the IP header (port 0).
    pub fn recv_skb_from(&mut self, s: Socket) -> Result<(SkBuff, SocketAddrV4), GlueError> {
        let h = self.live(s)?;
        match s.kind() {
            SockKind::Udp => Ok(blink_udp::udp_recv_skb(&mut self.stack, h)?),
            SockKind::Raw => {
                let (skb, from) = blink_raw::raw_recv_skb(&mut self.stack, h)?;
                Ok((skb, SocketAddrV4::new(from, 0)))
            }
            SockKind::Tcp => Err(GlueError::NotSupported("recv_skb_from on a TCP socket (use recv_skb)")),
        }
    }
}
