//! blink's TCP, structured as Linux's net/ipv4/tcp*.c.
//!
//! - [`tcp`]: the socket (`TcpSock`), states, and the user calls (sendmsg, recvmsg, close).
//! - [`tcp_ipv4`]: the per-core protocol instance (`TcpProto`), `tcp_v4_rcv`, connect/listen.
//! - [`tcp_input`], [`tcp_output`], [`tcp_timer`]: the state machine, transmit, timers.
//! - [`tcp_cong`]: pluggable congestion control (CUBIC by default, Reno).
//! - [`inet_hashtables`]: established, listening and bind tables.
//! - [`tcphdr`]: the header view and options.
//!
//! TCP registers itself with IPv4 (`tcp_init`), which never names it.

pub mod inet_hashtables;
pub mod secure_seq;
pub mod syncookies;
pub mod tcp;
pub mod tcp_cong;
pub mod tcp_input;
pub mod tcp_ipv4;
pub mod tcp_minisocks;
pub mod tcp_output;
pub mod tcp_recovery;
pub mod tcp_sockopt;
pub mod tcp_timer;
pub mod tcphdr;

use std::net::Ipv4Addr;

use blink_ipv4::iphdr::IPPROTO_TCP;
use blink_ipv4::Stack;
use blink_netcore::sock::SockHandle;

pub use tcp::{TcpError, TcpState};
pub use tcp_ipv4::TcpProto;
pub use tcp_sockopt::{Keepalive, TcpSockOpt};

/// Minimum retransmission timeout (Linux: TCP_RTO_MIN, 200 ms).
pub const TCP_RTO_MIN_MS: u64 = 200;
/// Maximum retransmission timeout (Linux: TCP_RTO_MAX, 120 s).
pub const TCP_RTO_MAX_MS: u64 = 120_000;
/// RTO before any RTT sample (RFC 6298: 1 s).
pub const TCP_TIMEOUT_INIT_MS: u64 = 1000;
pub const TCP_DELACK_MIN_MS: u64 = 40;
/// Floor of RACK's reordering window (ns); the window is otherwise min_rtt / 4 (RFC 8985).
pub const TCP_RACK_REO_WND_MIN_NS: u64 = 1_000_000;
pub const TCP_DELACK_MAX_MS: u64 = 200;
/// At most one challenge ACK per socket in this many ms (Linux: tcp_invalid_ratelimit).
pub const TCP_INVALID_RATELIMIT_MS: u64 = 500;
/// Linux: net.ipv4.tcp_syn_retries / tcp_synack_retries / tcp_retries2.
pub const TCP_SYN_RETRIES: u32 = 6;
pub const TCP_SYNACK_RETRIES: u32 = 5;
pub const TCP_RETRIES2: u32 = 15;

/// TCP settings (Linux: the net.ipv4.tcp_* sysctls and socket defaults).
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// Send/receive buffer per socket, bytes (the window follows the receive buffer).
    pub sndbuf: u32,
    pub rcvbuf: u32,
    pub window_scaling: bool,
    pub timestamps: bool,
    pub sack: bool,
    /// Congestion control algorithm: "cubic" or "reno".
    pub congestion: String,
    /// TCP_NODELAY by default.
    pub nodelay: bool,
    /// TIME-WAIT length (Linux: fixed 60 s).
    pub timewait_ms: u64,
    /// Orphaned FIN-WAIT-2 timeout (Linux: tcp_fin_timeout).
    pub fin_timeout_ms: u64,
    /// Keepalive (idle, interval, probes) for every socket; None = off (Linux default).
    pub keepalive: Option<(u64, u64, u32)>,
    pub max_backlog: u32,
    /// Answer SYNs with cookies when a listener's backlog is full (Linux: tcp_syncookies=1).
    pub syncookies: bool,
    /// Local port range for active opens (Linux: ip_local_port_range).
    pub ephemeral_ports: (u16, u16),
    /// Let an active open take over a 4-tuple in TIME-WAIT once its last timestamp is a
    /// second old (Linux: net.ipv4.tcp_tw_reuse = 1; Linux's default 2 means loopback only,
    /// and blink has no loopback, so the default here is off).
    pub tw_reuse: bool,
    /// Global TCP memory limits, in percent of the core's mbuf pool (Linux: tcp_mem's
    /// pressure and max). Above `pressure`, sockets that already have data queued take no more
    /// (the write returns short and `ev::WRITABLE` follows the next ACK); above `max`, received
    /// data is dropped (out-of-order queues pruned first), so the pool keeps buffers for the
    /// driver to receive the ACKs that free memory.
    pub tcp_mem_pct: (u8, u8),
    /// Tail loss probes (RACK-TLP, RFC 8985; Linux: net.ipv4.tcp_early_retrans = 3, the
    /// default). Off, a lost tail waits for the RTO.
    pub tlp: bool,
    /// Fixes the secrets behind ISNs, timestamp offsets, SYN cookies and the ephemeral-port
    /// start (see `secure_seq`), so a run can be replayed; None (the default): random keys.
    pub seed: Option<u64>,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            sndbuf: 1 << 20,
            rcvbuf: 1 << 20,
            window_scaling: true,
            timestamps: true,
            sack: true,
            congestion: "cubic".into(),
            nodelay: false,
            timewait_ms: 60_000,
            fin_timeout_ms: 60_000,
            keepalive: None,
            max_backlog: 4096,
            syncookies: true,
            ephemeral_ports: (32768, 60999),
            tw_reuse: false,
            tcp_mem_pct: (75, 90),
            tlp: true,
            seed: None,
        }
    }
}

impl TcpConfig {
    /// The window scale we offer: the smallest shift that lets the receive buffer be
    /// advertised (Linux: tcp_select_initial_window).
    pub fn rcv_wscale(&self) -> u8 {
        tcp_sockopt::rcv_wscale_for(self.window_scaling, self.rcvbuf)
    }
}

/// Errors of the TCP user calls.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TcpErr {
    #[error("no such socket (closed or never opened)")]
    BadHandle,
    #[error("operation would block")]
    WouldBlock,
    #[error("socket is not connected")]
    NotConnected,
    #[error("socket was shut down for sending")]
    Shutdown,
    #[error("connection failed: {0:?}")]
    Connection(TcpError),
    #[error("port {0} already in use")]
    AddrInUse(u16),
    #[error("no route to {0}")]
    NoRoute(Ipv4Addr),
    #[error("no free local port")]
    NoPorts,
    #[error("address {0} is not local")]
    AddrNotAvailable(Ipv4Addr),
    #[error("out of memory")]
    NoMemory,
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    #[error("TCP is not registered on this stack (call tcp_init)")]
    NoTcp,
}

/// Register TCP with `stack` (Linux: inet_init adding tcp_protocol).
pub fn tcp_init(stack: &mut Stack, cfg: TcpConfig) {
    let _ = stack.inet_add_protocol(IPPROTO_TCP, Box::new(TcpProto::new(cfg)));
}

/// Run `f` with the stack's TCP instance.
pub fn with_tcp<R>(stack: &mut Stack, f: impl FnOnce(&mut TcpProto, &mut Stack) -> R) -> Result<R, TcpErr> {
    stack
        .with_protocol_as::<TcpProto, _>(IPPROTO_TCP, |s, t| f(t, s))
        .ok_or(TcpErr::NoTcp)
}

/// Run a user call on socket `h`, then let TCP tidy up after it.
fn on_sock<R>(
    stack: &mut Stack,
    h: SockHandle,
    f: impl FnOnce(&mut tcp::TcpSock, &mut Stack) -> Result<R, TcpErr>,
) -> Result<R, TcpErr> {
    with_tcp(stack, |tcp, stack| {
        let sk = tcp.socks.get_mut(h).ok_or(TcpErr::BadHandle)?;
        let r = f(sk, stack);
        tcp.post_process(stack, h);
        r
    })?
}

/// Listen on `port` (every local address).
pub fn tcp_listen(stack: &mut Stack, port: u16, backlog: u32) -> Result<SockHandle, TcpErr> {
    with_tcp(stack, |t, s| t.listen(s, Ipv4Addr::UNSPECIFIED, port, backlog))?
}

/// Accept the next established connection of listener `l`.
pub fn tcp_accept(stack: &mut Stack, l: SockHandle) -> Result<Option<SockHandle>, TcpErr> {
    with_tcp(stack, |t, _| t.accept(l))?
}

/// Start connecting to `daddr:dport`; `ev::CONNECTED` (or `ev::CLOSED`) follows.
pub fn tcp_connect(stack: &mut Stack, daddr: Ipv4Addr, dport: u16) -> Result<SockHandle, TcpErr> {
    with_tcp(stack, |t, s| t.connect(s, daddr, dport))?
}

/// A closed socket to set options on, bind and connect (socket(2)).
pub fn tcp_socket(stack: &mut Stack) -> Result<SockHandle, TcpErr> {
    with_tcp(stack, |t, s| t.socket(s))?
}

/// Bind closed socket `h` to `addr:port` before connecting (bind(2)).
pub fn tcp_bind(stack: &mut Stack, h: SockHandle, addr: Ipv4Addr, port: u16) -> Result<(), TcpErr> {
    with_tcp(stack, |t, s| t.bind(s, h, addr, port))?
}

/// Connect closed socket `h` (from [`tcp_socket`]) to `daddr:dport` (connect(2)).
pub fn tcp_connect_sock(stack: &mut Stack, h: SockHandle, daddr: Ipv4Addr, dport: u16) -> Result<(), TcpErr> {
    with_tcp(stack, |t, s| {
        let r = t.connect_sock(s, h, daddr, dport);
        t.post_process(s, h);
        r
    })?
}

/// Set a socket option (setsockopt(2)).
pub fn tcp_setsockopt(stack: &mut Stack, h: SockHandle, opt: TcpSockOpt) -> Result<(), TcpErr> {
    on_sock(stack, h, |sk, s| tcp_sockopt::tcp_setsockopt(sk, s, opt))
}

/// Copying send; returns the bytes accepted (0 when the send buffer is full).
pub fn tcp_send(stack: &mut Stack, h: SockHandle, data: &[u8]) -> Result<usize, TcpErr> {
    on_sock(stack, h, |sk, s| tcp::tcp_sendmsg(sk, s, data))
}

/// Copying receive; Ok(0) = end of stream, Err(WouldBlock) = nothing yet.
pub fn tcp_recv(stack: &mut Stack, h: SockHandle, buf: &mut [u8]) -> Result<usize, TcpErr> {
    on_sock(stack, h, |sk, s| tcp::tcp_recvmsg(sk, s, buf))
}

/// Close (graceful, or a reset if unread data remains). The handle is invalid afterwards.
pub fn tcp_close(stack: &mut Stack, h: SockHandle) -> Result<(), TcpErr> {
    on_sock(stack, h, |sk, s| {
        tcp::tcp_close(sk, s);
        Ok(())
    })
}

/// shutdown(SHUT_WR): send FIN after queued data, keep reading.
pub fn tcp_shutdown(stack: &mut Stack, h: SockHandle) -> Result<(), TcpErr> {
    on_sock(stack, h, tcp::tcp_shutdown)
}

/// The socket's state.
pub fn tcp_state(stack: &mut Stack, h: SockHandle) -> Result<TcpState, TcpErr> {
    with_tcp(stack, |t, _| t.socks.get(h).map(|s| s.state).ok_or(TcpErr::BadHandle))?
}

/// Collect (socket, event bits) for every socket with news since the last call.
pub fn tcp_events(stack: &mut Stack, out: &mut Vec<(SockHandle, u8)>) -> Result<(), TcpErr> {
    with_tcp(stack, |t, stack| {
        t.tcp_mem_wake(stack);
        for h in t.ready.drain(..) {
            if let Some(sk) = t.socks.get_mut(h) {
                sk.on_ready = false;
                if sk.ev_pending != 0 {
                    out.push((h, sk.ev_pending));
                    sk.ev_pending = 0;
                }
            }
        }
    })
}
