//! Per-socket options, as Linux's `setsockopt(2)` offers them, and the socket/bind/connect
//! sequence that lets options and a local address be set before the SYN goes out.
//!
//! glue only translates: TCP checks and applies its options in `blink_tcp::tcp_sockopt`
//! (Linux: do_tcp_setsockopt), UDP its few in `blink_udp` (IP_TOS, IP_TTL, SO_RCVBUF).
//!
//! ```
//! # use blink_glue::netcore::{drivers::wire::{wire_pair, WireConfig}, EthAddr};
//! # let (a, _b) = wire_pair(("a", "b"), (EthAddr([2, 0, 0, 0, 0, 1]), EthAddr([2, 0, 0, 0, 0, 2])), &WireConfig::default());
//! use std::time::Duration;
//! use blink_glue::{Glue, GlueBuilder, GlueError, Keepalive, SockOpt};
//!
//! let mut glue: Glue<()> = GlueBuilder::new().device(Box::new(a)).addr("10.0.0.1/24".parse().unwrap()).build().unwrap();
//! let s = glue.tcp_socket(None).unwrap();
//! glue.set_option(s, SockOpt::NoDelay(true)).unwrap();
//! glue.set_option(s, SockOpt::MaxSeg(1200)).unwrap();
//! glue.set_option(s, SockOpt::KeepAlive(Some(Keepalive {
//!     idle: Duration::from_secs(60),
//!     interval: Duration::from_secs(10),
//!     count: 5,
//! }))).unwrap();
//! glue.set_option(s, SockOpt::Tos(0x10)).unwrap();
//! assert!(matches!(glue.set_option(s, SockOpt::MaxSeg(40)), Err(GlueError::InvalidArgument(_))));
//! glue.tcp_bind(s, "10.0.0.1:40000".parse().unwrap()).unwrap();
//! glue.tcp_connect_sock(s, "10.0.0.2:80".parse().unwrap()).unwrap(); // the SYN leaves from port 40000
//! ```

use std::net::SocketAddrV4;
use std::time::Duration;

use blink_tcp::tcp_sockopt::TcpSockOpt;

use crate::socket::{SockKind, Socket};
use crate::{Glue, GlueError};

/// SO_KEEPALIVE's timings (TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT). Linux's bounds: idle and
/// interval 1..=32767 s, count 1..=127. Linux's defaults are 7200 s, 75 s and 9.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Quiet time before the first probe.
    pub idle: Duration,
    /// Time between unanswered probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is reset (closed event: `TimedOut`).
    pub count: u32,
}

/// One socket option with its value (Linux's `setsockopt` level and name in each doc).
/// TCP sockets take all of them; UDP sockets take `Tos`, `Ttl` and `RcvBuf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SockOpt {
    /// TCP_NODELAY: a small write goes out at once instead of waiting for the ACK of an
    /// earlier small segment (Nagle). Setting it pushes what Nagle held.
    NoDelay(bool),
    /// TCP_CORK: hold partial segments until a full one is queued or the cork is removed
    /// (which pushes them). blink has no 200 ms ceiling: it holds until uncorked.
    Cork(bool),
    /// SO_KEEPALIVE with its timings; None turns it off.
    KeepAlive(Option<Keepalive>),
    /// SO_SNDBUF, bytes (4 KiB..=1 GiB, used as given: Linux doubles it and clamps).
    SndBuf(usize),
    /// SO_RCVBUF, bytes (4 KiB..=1 GiB): bounds the receive queue and the window. Before
    /// connect, or on a listener, it also sets the window scale the handshake offers.
    RcvBuf(usize),
    /// SO_LINGER. None: off, close sends FIN after the queued data. `Some(ZERO)`: close
    /// drops the queued data and sends RST. `Some(t)`: blink's close never blocks, so `t`
    /// bounds the closing connection instead: data and FIN not acknowledged within `t` are
    /// given up with a RST (Linux's close would have returned after `t` and kept trying).
    Linger(Option<Duration>),
    /// TCP_MAXSEG (88..=32767): the MSS the SYN announces and the largest segment sent.
    /// Set it before connect, or on a listener for the connections it accepts; on a
    /// connection it lowers the segment size from then on.
    MaxSeg(u16),
    /// IP_TOS of every packet (on TCP the two ECN bits are cleared, as in Linux); a
    /// listener's go on its SYN-ACKs and its connections' segments.
    Tos(u8),
    /// IP_TTL of every packet (1..=255), a listener's as for `Tos`.
    Ttl(u8),
}

impl SockOpt {
    fn to_tcp(self) -> Result<TcpSockOpt, GlueError> {
        let buf = |v: usize| {
            u32::try_from(v).map_err(|_| GlueError::InvalidArgument("SO_SNDBUF/SO_RCVBUF: 4096..=1073741824 bytes"))
        };
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Ok(match self {
            SockOpt::NoDelay(on) => TcpSockOpt::NoDelay(on),
            SockOpt::Cork(on) => TcpSockOpt::Cork(on),
            SockOpt::KeepAlive(k) => TcpSockOpt::KeepAlive(k.map(|k| blink_tcp::Keepalive {
                idle_ms: ms(k.idle),
                intvl_ms: ms(k.interval),
                probes: k.count,
            })),
            SockOpt::SndBuf(v) => TcpSockOpt::SndBuf(buf(v)?),
            SockOpt::RcvBuf(v) => TcpSockOpt::RcvBuf(buf(v)?),
            SockOpt::Linger(l) => TcpSockOpt::Linger(l.map(ms)),
            SockOpt::MaxSeg(v) => TcpSockOpt::MaxSeg(v),
            SockOpt::Tos(v) => TcpSockOpt::Tos(v),
            SockOpt::Ttl(v) => TcpSockOpt::Ttl(v),
        })
    }
}

impl<U> Glue<U> {
    /// Set option `opt` on socket `s` (setsockopt). An out-of-range value is
    /// `InvalidArgument` naming the option and its bounds; an option the socket's protocol
    /// does not have is `NotSupported`.
    pub fn set_option(&mut self, s: Socket, opt: SockOpt) -> Result<(), GlueError> {
        let h = self.live(s)?;
        match s.kind() {
            SockKind::Tcp => Ok(blink_tcp::tcp_setsockopt(&mut self.stack, h, opt.to_tcp()?)?),
            SockKind::Udp => match opt {
                SockOpt::Tos(v) => Ok(blink_udp::udp_set_tos_ttl(&mut self.stack, h, Some(v), None)?),
                SockOpt::Ttl(v) => Ok(blink_udp::udp_set_tos_ttl(&mut self.stack, h, None, Some(v))?),
                SockOpt::RcvBuf(v) => Ok(blink_udp::udp_set_rcvbuf(&mut self.stack, h, v)?),
                _ => Err(GlueError::NotSupported("a TCP option on a UDP socket")),
            },
            SockKind::Raw => Err(GlueError::NotSupported("socket options on a raw socket")),
        }
    }

    /// A TCP socket that is not connected yet (socket(2)): set options and bind it, then
    /// [`Glue::tcp_connect_sock`]. Closing it before connecting just releases it.
    pub fn tcp_socket(&mut self, data: Option<U>) -> Result<Socket, GlueError> {
        let h = blink_tcp::tcp_socket(&mut self.stack)?;
        self.table_mut(SockKind::Tcp).insert(h, data);
        Ok(Socket::tcp(h))
    }

    /// Bind TCP socket `s` to a local address (0.0.0.0: the route's) and port (0: an
    /// ephemeral one) before connecting (bind(2)). A port in use is `AddrInUse`; an address
    /// that is not this stack's is `AddrNotAvailable`.
    pub fn tcp_bind(&mut self, s: Socket, addr: SocketAddrV4) -> Result<(), GlueError> {
        let h = self.live(s)?;
        if s.kind() != SockKind::Tcp {
            return Err(GlueError::NotSupported("tcp_bind on a datagram socket"));
        }
        Ok(blink_tcp::tcp_bind(&mut self.stack, h, *addr.ip(), addr.port())?)
    }

    /// Connect TCP socket `s` (from [`Glue::tcp_socket`]) to `peer`; the connected event (or
    /// closed, with the reason) follows, as for [`Glue::tcp_connect`].
    pub fn tcp_connect_sock(&mut self, s: Socket, peer: SocketAddrV4) -> Result<(), GlueError> {
        let h = self.live(s)?;
        if s.kind() != SockKind::Tcp {
            return Err(GlueError::NotSupported("tcp_connect_sock on a datagram socket"));
        }
        Ok(blink_tcp::tcp_connect_sock(
            &mut self.stack,
            h,
            *peer.ip(),
            peer.port(),
        )?)
    }
}
