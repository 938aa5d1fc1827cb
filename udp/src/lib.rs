//! blink's UDP, structured as Linux's net/ipv4/udp.c.
//!
//! - [`udphdr`]: the header view and the UDP/IPv4 checksum.
//! - [`udp`]: the per-core protocol instance ([`UdpProto`]): sockets, `udp_rcv`, `udp_err`,
//!   `udp_sendmsg`, `udp_recvmsg`.
//! - [`udp_table`]: the port table (bind conflicts, ephemeral ports, RSS-bucket binding) and
//!   the socket lookup with Linux's scoring.
//!
//! UDP registers itself with IPv4 (`udp_init`), which never names it. The functions below
//! are the user API (what glue wraps): socket, bind, connect, copying and zero-copy send
//! and receive, events, close. A stale handle is `Err(BadHandle)`, never a panic.

pub mod udp;
pub mod udp_table;
pub mod udphdr;

use std::net::{Ipv4Addr, SocketAddrV4};

use blink_ipv4::iphdr::IPPROTO_UDP;
use blink_ipv4::Stack;
use blink_netcore::skbuff::SkBuff;
use blink_netcore::sock::SockHandle;
use blink_netcore::Mbuf;

pub use udp::{ev, UdpConfig, UdpProto, UdpRecv, UdpSock};

/// An error reported by ICMP to a connected socket, returned (once) by the next call on it.
/// Linux: `sk->sk_err` as set by `icmp_err_convert[]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SockErr {
    #[error("connection refused (ICMP port unreachable)")]
    ConnRefused,
    #[error("protocol not available (ICMP protocol unreachable)")]
    ProtoUnreach,
    #[error("network unreachable")]
    NetUnreach,
    #[error("host unreachable")]
    HostUnreach,
    #[error("message too long for the path (ICMP fragmentation needed)")]
    MsgSize,
    #[error("protocol error (ICMP parameter problem)")]
    Proto,
}

/// Errors of the UDP user calls.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UdpErr {
    #[error("no such socket (closed or never opened)")]
    BadHandle,
    #[error("operation would block")]
    WouldBlock,
    #[error("no destination: socket is not connected and no address was given")]
    NotConnected,
    #[error("address {0} already in use")]
    AddrInUse(SocketAddrV4),
    #[error("address {0} is not local")]
    AddrNotAvailable(Ipv4Addr),
    #[error("socket is already bound")]
    AlreadyBound,
    #[error("no free local port")]
    NoPorts,
    #[error("datagram of {len} bytes exceeds the path MTU {mtu} with Don't Fragment set, or the 65,535-byte IP limit")]
    MessageTooLong { len: usize, mtu: usize },
    #[error("no route to {0}")]
    NoRoute(Ipv4Addr),
    #[error("no packet buffers left")]
    NoMemory,
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    #[error("{0}")]
    Sock(SockErr),
    #[error("UDP is not registered on this stack (call udp_init)")]
    NoUdp,
}

/// Register UDP with `stack` (Linux: inet_init adding udp_protocol).
pub fn udp_init(stack: &mut Stack, cfg: UdpConfig) {
    let _ = stack.inet_add_protocol(IPPROTO_UDP, Box::new(UdpProto::new(cfg)));
}

/// Run `f` with the stack's UDP instance.
pub fn with_udp<R>(stack: &mut Stack, f: impl FnOnce(&mut UdpProto, &mut Stack) -> R) -> Result<R, UdpErr> {
    stack
        .with_protocol_as::<UdpProto, _>(IPPROTO_UDP, |s, u| f(u, s))
        .ok_or(UdpErr::NoUdp)
}

/// Linux: socket(AF_INET, SOCK_DGRAM, 0). Unbound until `udp_bind`, `udp_connect` or the first
/// send (which binds an ephemeral port, as Linux's autobind does).
pub fn udp_socket(stack: &mut Stack) -> Result<SockHandle, UdpErr> {
    with_udp(stack, |u, _| u.socket())?
}

/// Linux: bind(). `addr` may be 0.0.0.0 (every local address) and port 0 (an ephemeral port).
/// Returns the bound address.
pub fn udp_bind(stack: &mut Stack, h: SockHandle, addr: SocketAddrV4) -> Result<SocketAddrV4, UdpErr> {
    with_udp(stack, |u, s| u.bind(s, h, addr))?
}

/// Bind the socket to RSS bucket `bucket` before `udp_bind` (FreeBSD: IP_RSS_LISTEN_BUCKET):
/// several sockets may then share a port, one per bucket, and each datagram goes to the one
/// whose bucket is `hash2cpu(reta, rss_hash)`.
pub fn udp_set_rss_bucket(stack: &mut Stack, h: SockHandle, bucket: u16) -> Result<(), UdpErr> {
    with_udp(stack, |u, _| u.set_rss_bucket(h, bucket))?
}

/// Linux: IP_MTU_DISCOVER = IP_PMTUDISC_DO (`on`) / IP_PMTUDISC_DONT (off, the default).
/// With it, datagrams go with Don't Fragment and one over the path MTU fails with
/// `UdpErr::MessageTooLong`; without, IP fragments datagrams over the path MTU.
pub fn udp_set_dontfrag(stack: &mut Stack, h: SockHandle, on: bool) -> Result<(), UdpErr> {
    with_udp(stack, |u, _| u.set_dontfrag(h, on))?
}

/// IP_TOS / IP_TTL of the socket's datagrams; None leaves a setting as it is.
pub fn udp_set_tos_ttl(stack: &mut Stack, h: SockHandle, tos: Option<u8>, ttl: Option<u8>) -> Result<(), UdpErr> {
    with_udp(stack, |u, _| u.set_tos_ttl(h, tos, ttl))?
}

/// SO_RCVBUF: bytes of datagrams the socket queues before dropping (RcvbufErrors).
pub fn udp_set_rcvbuf(stack: &mut Stack, h: SockHandle, bytes: usize) -> Result<(), UdpErr> {
    with_udp(stack, |u, _| u.set_rcvbuf(h, bytes))?
}

/// SO_REUSEADDR before `udp_bind`: sockets that all set it may share a port; a datagram goes
/// to the best match (connected 4-tuple, then bound address, then wildcard).
pub fn udp_set_reuseaddr(stack: &mut Stack, h: SockHandle, on: bool) -> Result<(), UdpErr> {
    with_udp(stack, |u, _| u.set_reuseaddr(h, on))?
}

/// Linux: connect() on a datagram socket: default destination, and only datagrams from it.
pub fn udp_connect(stack: &mut Stack, h: SockHandle, peer: SocketAddrV4) -> Result<(), UdpErr> {
    with_udp(stack, |u, s| u.connect(s, h, peer))?
}

/// Linux: udp_sendmsg(). Copy `data` into one datagram to `to` (or the connected peer).
pub fn udp_sendmsg(stack: &mut Stack, h: SockHandle, data: &[u8], to: Option<SocketAddrV4>) -> Result<usize, UdpErr> {
    with_udp(stack, |u, s| u.sendmsg(s, h, data, to))?
}

/// Zero-copy send: `m`'s data window (one segment) is the payload, attached to the datagram
/// as a fragment. The error gives the mbuf back when it was not consumed (`Some`): every
/// check runs before the datagram is built; once handed to IP it is consumed (`None`), and a
/// later drop is counted like any other.
pub fn udp_send_mbuf(
    stack: &mut Stack,
    h: SockHandle,
    m: Mbuf,
    to: Option<SocketAddrV4>,
) -> Result<(), (Option<Mbuf>, UdpErr)> {
    if !stack.has_protocol(IPPROTO_UDP) {
        return Err((Some(m), UdpErr::NoUdp));
    }
    with_udp(stack, |u, s| u.send_mbuf(s, h, m, to)).unwrap_or_else(|e| Err((None, e)))
}

/// Linux: udp_recvmsg(). Copy the next datagram into `buf`; a longer datagram is truncated
/// and the rest discarded, with `truncated` set (MSG_TRUNC). `Err(WouldBlock)` when empty.
pub fn udp_recvmsg(stack: &mut Stack, h: SockHandle, buf: &mut [u8]) -> Result<UdpRecv, UdpErr> {
    with_udp(stack, |u, s| u.recvmsg(s, h, buf))?
}

/// Zero-copy receive: the next datagram's skb (`data` at the payload; the IP and UDP headers
/// stay reachable through the network/transport marks) and its source.
pub fn udp_recv_skb(stack: &mut Stack, h: SockHandle) -> Result<(SkBuff, SocketAddrV4), UdpErr> {
    with_udp(stack, |u, s| u.recv_skb(s, h))?
}

/// Linux: udp_lib_close(). Queued datagrams are freed; the handle goes stale.
pub fn udp_close(stack: &mut Stack, h: SockHandle) -> Result<(), UdpErr> {
    with_udp(stack, |u, _| u.close(h))?
}

/// The socket's local address (0.0.0.0:0 when unbound).
pub fn udp_local_addr(stack: &mut Stack, h: SockHandle) -> Result<SocketAddrV4, UdpErr> {
    with_udp(stack, |u, _| u.socks.get(h).map(|s| s.local()).ok_or(UdpErr::BadHandle))?
}

/// Collect (socket, event bits from [`ev`]) for every socket with news since the last call.
pub fn udp_events(stack: &mut Stack, out: &mut Vec<(SockHandle, u8)>) -> Result<(), UdpErr> {
    with_udp(stack, |u, _| u.events(out))
}
