//! glue's one error type: what an application can get back from any glue call.

use std::net::Ipv4Addr;

use blink_raw::RawErr;
use blink_tcp::{TcpErr, TcpError};
use blink_udp::{SockErr, UdpErr};

/// Why a connection ended (what `errno` a kernel socket would report on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Both sides finished (FIN exchanged) after the application shut its side down.
    Normal,
    /// RST in reply to our SYN (ECONNREFUSED).
    Refused,
    /// RST on an established connection (ECONNRESET).
    Reset,
    /// Retransmissions or keepalive probes ran out (ETIMEDOUT).
    TimedOut,
    /// The stack aborted it (ECONNABORTED).
    Aborted,
}

impl From<Option<TcpError>> for CloseReason {
    fn from(e: Option<TcpError>) -> Self {
        match e {
            None => CloseReason::Normal,
            Some(TcpError::ConnectionRefused) => CloseReason::Refused,
            Some(TcpError::ConnectionReset) => CloseReason::Reset,
            Some(TcpError::TimedOut) => CloseReason::TimedOut,
            Some(TcpError::Aborted) => CloseReason::Aborted,
        }
    }
}

/// Errors of the glue API. No errno integers: each case says what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlueError {
    /// The handle was closed (or never belonged to this glue instance).
    #[error("no such socket (closed or never opened)")]
    BadHandle,
    /// Nothing to read yet, or no room to send: wait for the readable/writable event.
    #[error("operation would block")]
    WouldBlock,
    #[error("socket is not connected")]
    NotConnected,
    #[error("socket was shut down for sending")]
    Shutdown,
    /// The connection failed; the reason is what the closed event reports too.
    #[error("connection failed: {0:?}")]
    Connection(CloseReason),
    #[error("port {0} already in use")]
    AddrInUse(u16),
    #[error("no route to {0}")]
    NoRoute(Ipv4Addr),
    #[error("no free local port")]
    NoPorts,
    /// The mempool is exhausted.
    #[error("out of buffers")]
    NoMemory,
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The operation does not apply to this kind of socket (e.g. accept on a connection).
    #[error("operation not supported on this socket: {0}")]
    NotSupported(&'static str),
    /// The address is not one of this stack's (EADDRNOTAVAIL).
    #[error("address {0} is not local")]
    AddrNotAvailable(Ipv4Addr),
    /// bind on a socket that is already bound (EINVAL on Linux).
    #[error("socket is already bound")]
    AlreadyBound,
    /// A datagram larger than the path allows (EMSGSIZE).
    #[error("message of {len} bytes exceeds the MTU {mtu}")]
    MessageTooLong { len: usize, mtu: usize },
    /// An ICMP error reported to a datagram socket (its `sk_err`), returned once.
    #[error("{0}")]
    Icmp(SockErr),
    /// The destination core's inbox is full: the message was dropped (Softnet.RingDrops).
    #[error("inbox of core {0} is full")]
    InboxFull(u16),
    /// A raw IP_HDRINCL packet whose IP header is unusable.
    #[error("bad IP header: {0}")]
    BadHeader(&'static str),
    /// Bad builder configuration: `field` names the setting.
    #[error("{field}: {msg}")]
    Config { field: String, msg: String },
    /// A device could not be opened or set up.
    #[error("device {name}: {msg}")]
    Device { name: String, msg: String },
}

impl From<TcpErr> for GlueError {
    fn from(e: TcpErr) -> Self {
        match e {
            TcpErr::BadHandle => GlueError::BadHandle,
            TcpErr::WouldBlock => GlueError::WouldBlock,
            TcpErr::NotConnected => GlueError::NotConnected,
            TcpErr::Shutdown => GlueError::Shutdown,
            TcpErr::Connection(e) => GlueError::Connection(Some(e).into()),
            TcpErr::AddrInUse(p) => GlueError::AddrInUse(p),
            TcpErr::NoRoute(a) => GlueError::NoRoute(a),
            TcpErr::NoPorts => GlueError::NoPorts,
            TcpErr::AddrNotAvailable(a) => GlueError::AddrNotAvailable(a),
            TcpErr::NoMemory => GlueError::NoMemory,
            TcpErr::InvalidArgument(m) => GlueError::InvalidArgument(m),
            // glue registers TCP itself, so this means the stack was assembled by hand.
            TcpErr::NoTcp => GlueError::NotSupported("TCP is not registered on this stack"),
        }
    }
}

impl From<UdpErr> for GlueError {
    fn from(e: UdpErr) -> Self {
        match e {
            UdpErr::BadHandle => GlueError::BadHandle,
            UdpErr::WouldBlock => GlueError::WouldBlock,
            UdpErr::NotConnected => GlueError::NotConnected,
            UdpErr::AddrInUse(a) => GlueError::AddrInUse(a.port()),
            UdpErr::AddrNotAvailable(a) => GlueError::AddrNotAvailable(a),
            UdpErr::AlreadyBound => GlueError::AlreadyBound,
            UdpErr::NoPorts => GlueError::NoPorts,
            UdpErr::MessageTooLong { len, mtu } => GlueError::MessageTooLong { len, mtu },
            UdpErr::NoRoute(a) => GlueError::NoRoute(a),
            UdpErr::NoMemory => GlueError::NoMemory,
            UdpErr::InvalidArgument(m) => GlueError::InvalidArgument(m),
            UdpErr::Sock(e) => GlueError::Icmp(e),
            // glue registers UDP itself, so this means the stack was assembled by hand.
            UdpErr::NoUdp => GlueError::NotSupported("UDP is not registered on this stack"),
        }
    }
}

impl From<RawErr> for GlueError {
    fn from(e: RawErr) -> Self {
        match e {
            RawErr::BadHandle => GlueError::BadHandle,
            RawErr::WouldBlock => GlueError::WouldBlock,
            RawErr::NotConnected => GlueError::NotConnected,
            RawErr::AddrNotAvailable(a) => GlueError::AddrNotAvailable(a),
            RawErr::MessageTooLong { len, mtu } => GlueError::MessageTooLong { len, mtu },
            RawErr::NoRoute(a) => GlueError::NoRoute(a),
            RawErr::BadHeader(m) => GlueError::BadHeader(m),
            RawErr::NoMemory => GlueError::NoMemory,
            RawErr::InvalidArgument(m) => GlueError::InvalidArgument(m),
            RawErr::NoRaw => GlueError::NotSupported("raw sockets are not set up on this stack"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_errors_map_without_errno() {
        assert_eq!(GlueError::from(TcpErr::BadHandle), GlueError::BadHandle);
        assert_eq!(
            GlueError::from(TcpErr::Connection(TcpError::ConnectionRefused)),
            GlueError::Connection(CloseReason::Refused)
        );
        assert_eq!(CloseReason::from(None), CloseReason::Normal);
        assert_eq!(CloseReason::from(Some(TcpError::TimedOut)), CloseReason::TimedOut);
        let e = GlueError::Config {
            field: "cores".into(),
            msg: "only 1".into(),
        };
        assert_eq!(e.to_string(), "cores: only 1");
    }

    #[test]
    fn datagram_errors_map_without_errno() {
        let a = std::net::SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 53);
        assert_eq!(GlueError::from(UdpErr::AddrInUse(a)), GlueError::AddrInUse(53));
        assert_eq!(
            GlueError::from(UdpErr::Sock(SockErr::ConnRefused)),
            GlueError::Icmp(SockErr::ConnRefused)
        );
        assert_eq!(GlueError::from(RawErr::BadHandle), GlueError::BadHandle);
        assert_eq!(GlueError::from(RawErr::BadHeader("ihl")), GlueError::BadHeader("ihl"));
    }
}
