//! blink's raw IPv4 sockets, structured as Linux's net/ipv4/raw.c.
//!
//! - [`raw`]: the per-core table ([`RawProto`]), the receive hook IPv4 calls before the
//!   protocol handler (`raw_local_deliver`), send with and without IP_HDRINCL.
//!
//! `raw_init` installs the hook on a stack; IPv4 never names this crate. The functions below
//! are the user API glue wraps. Received data starts at the IP header, as on Linux.

pub mod raw;

use std::net::Ipv4Addr;

use blink_ipv4::Stack;
use blink_netcore::skbuff::SkBuff;
use blink_netcore::sock::SockHandle;

pub use raw::{ev, RawConfig, RawProto, RawRecv, RawSock};

/// Errors of the raw-socket calls.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RawErr {
    #[error("no such socket (closed or never opened)")]
    BadHandle,
    #[error("operation would block")]
    WouldBlock,
    #[error("no destination: socket is not connected and no address was given")]
    NotConnected,
    #[error("address {0} is not local")]
    AddrNotAvailable(Ipv4Addr),
    #[error("packet of {len} bytes exceeds the MTU {mtu} (IP_HDRINCL) or the 65,535-byte IP limit")]
    MessageTooLong { len: usize, mtu: usize },
    #[error("no route to {0}")]
    NoRoute(Ipv4Addr),
    #[error("bad IP header (IP_HDRINCL): {0}")]
    BadHeader(&'static str),
    #[error("no packet buffers left")]
    NoMemory,
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    #[error("raw sockets are not set up on this stack (call raw_init)")]
    NoRaw,
}

/// Install raw sockets on `stack` (replaces an earlier raw table).
pub fn raw_init(stack: &mut Stack, cfg: RawConfig) {
    stack.set_raw_handler(Box::new(RawProto::new(cfg)));
}

/// Run `f` with the stack's raw-socket table.
pub fn with_raw<R>(stack: &mut Stack, f: impl FnOnce(&mut RawProto, &mut Stack) -> R) -> Result<R, RawErr> {
    stack
        .with_raw(|s, r| r.as_any_mut().downcast_mut::<RawProto>().map(|p| f(p, s)))
        .flatten()
        .ok_or(RawErr::NoRaw)
}

/// Linux: socket(AF_INET, SOCK_RAW, protocol).
pub fn raw_socket(stack: &mut Stack, protocol: u8) -> Result<SockHandle, RawErr> {
    with_raw(stack, |r, _| r.socket(protocol))?
}

/// Receive only packets addressed to `addr` (0.0.0.0: any); also the source of sends.
pub fn raw_bind(stack: &mut Stack, h: SockHandle, addr: Ipv4Addr) -> Result<(), RawErr> {
    with_raw(stack, |r, s| r.bind(s, h, addr))?
}

/// Default destination, and receive only packets from `peer`.
pub fn raw_connect(stack: &mut Stack, h: SockHandle, peer: Ipv4Addr) -> Result<(), RawErr> {
    with_raw(stack, |r, _| r.connect(h, peer))?
}

/// IP_HDRINCL: the application supplies the IP header on send.
pub fn raw_set_hdrincl(stack: &mut Stack, h: SockHandle, on: bool) -> Result<(), RawErr> {
    with_raw(stack, |r, _| r.set_hdrincl(h, on))?
}

/// Linux: raw_sendmsg(). Copies `data` (payload, or a whole IP packet with IP_HDRINCL).
pub fn raw_sendmsg(stack: &mut Stack, h: SockHandle, data: &[u8], to: Option<Ipv4Addr>) -> Result<usize, RawErr> {
    with_raw(stack, |r, s| r.sendmsg(s, h, data, to))?
}

/// Linux: raw_recvmsg(). Copies the next packet, IP header first; truncates with a flag.
pub fn raw_recvmsg(stack: &mut Stack, h: SockHandle, buf: &mut [u8]) -> Result<RawRecv, RawErr> {
    with_raw(stack, |r, s| r.recvmsg(s, h, buf))?
}

/// Zero-copy receive: the packet (a clone sharing the received buffers), `data` at the IP
/// header, and its source.
pub fn raw_recv_skb(stack: &mut Stack, h: SockHandle) -> Result<(SkBuff, Ipv4Addr), RawErr> {
    with_raw(stack, |r, s| r.recv_skb(s, h))?
}

/// Close; queued packets are freed and the handle goes stale.
pub fn raw_close(stack: &mut Stack, h: SockHandle) -> Result<(), RawErr> {
    with_raw(stack, |r, _| r.close(h))?
}

/// Collect (socket, event bits from [`ev`]) for every socket with news since the last call.
pub fn raw_events(stack: &mut Stack, out: &mut Vec<(SockHandle, u8)>) -> Result<(), RawErr> {
    with_raw(stack, |r, _| r.events(out))
}
