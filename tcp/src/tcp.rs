//! The TCP socket (Linux: `struct tcp_sock` in include/linux/tcp.h) and its states.

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use blink_ipv4::Stack;
use blink_netcore::mbuf::Mbuf;
use blink_netcore::skbuff::{Frag, SkBuff, SkBuffHead, SkbCb};
use blink_netcore::snmp::{TcpExtMib, TcpMib};
use blink_netcore::sock::SockHandle;
use blink_netcore::timer::TimerId;

use crate::inet_hashtables::FourTuple;
use crate::tcp_cong::{CaState, CongState, CongestionOps, TcpCong};
use crate::tcp_recovery::{Rack, Undo, XmitTimer};
use crate::tcphdr::SackBlock;
use crate::TcpErr;

/// RFC 9293 states (Linux: TCP_ESTABLISHED ... in include/net/tcp_states.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    Closed,
    Listen,
    SynSent,
    SynRecv,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
}

impl TcpState {
    /// The name `ss` prints.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::Closed => "CLOSE",
            TcpState::Listen => "LISTEN",
            TcpState::SynSent => "SYN-SENT",
            TcpState::SynRecv => "SYN-RECV",
            TcpState::Established => "ESTAB",
            TcpState::FinWait1 => "FIN-WAIT-1",
            TcpState::FinWait2 => "FIN-WAIT-2",
            TcpState::CloseWait => "CLOSE-WAIT",
            TcpState::Closing => "CLOSING",
            TcpState::LastAck => "LAST-ACK",
            TcpState::TimeWait => "TIME-WAIT",
        }
    }

    /// States in which the peer may still send us data.
    pub fn can_receive(self) -> bool {
        matches!(self, TcpState::Established | TcpState::FinWait1 | TcpState::FinWait2)
    }

    /// States in which we may still queue data to send.
    pub fn can_send(self) -> bool {
        matches!(self, TcpState::Established | TcpState::CloseWait)
    }
}

/// Why a connection ended badly (what `errno` the kernel would report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpError {
    /// RST in reply to our SYN.
    ConnectionRefused,
    /// RST on a synchronized connection.
    ConnectionReset,
    /// Retransmissions or keepalive probes exhausted.
    TimedOut,
    /// We aborted it (close with unread data, or user abort).
    Aborted,
}

/// Per-segment control block (Linux: `struct tcp_skb_cb`, `TCP_SKB_CB(skb)`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct TcpSkbCb {
    pub seq: u32,
    /// seq + payload + SYN + FIN.
    pub end_seq: u32,
    pub ack_seq: u32,
    /// TCPHDR_* flags.
    pub tcp_flags: u8,
    /// TCPCB_SACKED_ACKED / TCPCB_SACKED_RETRANS / TCPCB_LOST bits.
    pub sacked: u8,
    /// Times this segment was (re)transmitted.
    pub tx_count: u16,
    /// Receive window field (rx), unscaled.
    pub window: u16,
    /// Last transmit time, ns (rx: arrival time).
    pub when_ns: u64,
}

// SAFETY: plain integers; every bit pattern is a valid value.
unsafe impl SkbCb for TcpSkbCb {}

pub const TCPCB_SACKED_ACKED: u8 = 0x01;
pub const TCPCB_SACKED_RETRANS: u8 = 0x02;
pub const TCPCB_LOST: u8 = 0x04;

/// Event bits an application waits on (the wake-ups `sk_data_ready`, `sk_write_space` and
/// `sk_state_change` deliver in Linux).
pub mod ev {
    /// Data (or end of stream) to read.
    pub const READABLE: u8 = 0x01;
    /// Send buffer space opened up.
    pub const WRITABLE: u8 = 0x02;
    /// A listener has a connection to accept.
    pub const ACCEPT: u8 = 0x04;
    /// An active open completed.
    pub const CONNECTED: u8 = 0x08;
    /// The connection is finished or failed (see `TcpSock::error`).
    pub const CLOSED: u8 = 0x10;
}

/// Options negotiated on the handshake (Linux: `struct tcp_options_received`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RxOpt {
    pub tstamp_ok: bool,
    pub sack_ok: bool,
    pub wscale_ok: bool,
    /// Shift applied to the window the peer advertises.
    pub snd_wscale: u8,
    /// Shift we apply to the window we advertise.
    pub rcv_wscale: u8,
    /// Last timestamp value seen from the peer (for TSecr and PAWS).
    pub ts_recent: u32,
    /// Jiffies when ts_recent was set.
    pub ts_recent_stamp: u64,
    /// MSS the peer announced.
    pub mss_clamp: u16,
}

/// A TCP socket. Every field a kernel engineer knows keeps its kernel name.
pub struct TcpSock {
    pub state: TcpState,
    pub saddr: Ipv4Addr,
    pub sport: u16,
    pub daddr: Ipv4Addr,
    pub dport: u16,

    // ---- send sequence space ----
    pub iss: u32,
    pub snd_una: u32,
    pub snd_nxt: u32,
    /// Sequence number after the last byte queued by the application.
    pub write_seq: u32,
    /// The peer's window, already scaled.
    pub snd_wnd: u32,
    pub max_window: u32,
    pub snd_wl1: u32,
    /// End of the last sub-MSS segment sent (Minshall's Nagle variant).
    pub snd_sml: u32,
    /// Effective send MSS (payload bytes per segment, options excluded).
    pub mss_cache: u32,
    /// Path MTU the MSS was last lowered to by an ICMP "fragmentation needed" (Linux:
    /// icsk_pmtu_cookie); 0 while the device MTU applies.
    pub pmtu_cookie: u32,
    /// The route to the peer, with its next hop's Ethernet header (Linux: sk_dst_cache):
    /// resolved by the first segment, reused by the rest until a route, path MTU or
    /// neighbour change invalidates it (see blink_ipv4::dst).
    pub dst: blink_ipv4::dst::DstCache,

    // ---- receive sequence space ----
    pub irs: u32,
    pub rcv_nxt: u32,
    /// Window last advertised (bytes).
    pub rcv_wnd: u32,
    /// rcv_nxt when the window was last advertised.
    pub rcv_wup: u32,
    /// Our MSS announced on the SYN.
    pub advmss: u16,
    pub rx_opt: RxOpt,

    // ---- RTT (RFC 6298), microseconds ----
    pub srtt_us: u32,
    pub mdev_us: u32,
    pub rttvar_us: u32,
    /// Current retransmission timeout, ms (before backoff).
    pub rto_ms: u64,
    pub backoff: u32,
    /// Consecutive retransmission timeouts (icsk_retransmits).
    pub retransmits: u32,
    /// When the segment the current run of timeouts retransmits was last sent before the
    /// first of them, ns (Linux: retrans_stamp as tcp_write_timeout uses it).
    pub rto_start_ns: u64,
    /// When the first SYN or SYN-ACK went out, ns: the handshake's RTT sample (Linux: the
    /// SYN's tx time in tcp_ack, tcp_synack_rtt_meas for the passive side).
    pub syn_stamp_ns: Option<u64>,

    // ---- congestion control ----
    pub cong: CongState,
    pub ca_ops: TcpCong,
    pub ca_state: CaState,
    /// snd_nxt when recovery started: recovery ends when it is acked.
    pub high_seq: u32,
    pub packets_out: u32,
    pub sacked_out: u32,
    pub lost_out: u32,
    pub retrans_out: u32,
    /// Duplicate ACKs seen (Reno's sacked_out emulation when SACK is off).
    pub dupacks: u32,
    /// Highest sequence SACKed by the peer.
    pub highest_sack: u32,
    /// Smallest RTT seen, us (RACK's reordering window is a quarter of it).
    pub min_rtt_us: u32,
    /// When the last retransmission timeout fired, ns: segments sent before it give no RTT
    /// sample (Karn).
    pub rto_stamp_ns: u64,
    /// Our timestamp clock at that timeout (None: none yet): an echo older than it is of a
    /// segment sent before the timeout.
    pub rto_stamp_ts: Option<u32>,
    /// RACK loss detection (RFC 8985; tcp_recovery.rs).
    pub rack: Rack,
    /// Undo of spurious recoveries (undo_marker, undo_retrans, prior_ssthresh, retrans_stamp).
    pub undo: Undo,
    /// What the retransmission timer is armed for (icsk_pending).
    pub icsk_pending: XmitTimer,
    /// Tail loss probes on (Linux: net.ipv4.tcp_early_retrans = 3, the default).
    pub tlp: bool,
    /// snd_nxt when the outstanding loss probe was sent (one probe per episode).
    pub tlp_high_seq: Option<u32>,
    /// The outstanding probe was a retransmission (not new data).
    pub tlp_retrans: bool,

    // ---- queues ----
    /// Queued by the application, not yet sent (sk_write_queue).
    pub write_queue: SkBuffHead,
    /// Sent, not yet acknowledged (Linux: tcp_rtx_queue), in sequence order. A deque rather
    /// than an intrusive list because SACK tagging and retransmission update segments in the
    /// middle; it grows once to the window's worth of segments and is reused.
    pub rtx_queue: VecDeque<SkBuff>,
    /// In-order data the application has not read (sk_receive_queue).
    pub receive_queue: SkBuffHead,
    /// Out-of-order segments, sorted by seq (a Vec: insertion in the middle; it grows once
    /// to the window's worth of segments and is reused).
    pub ooo_queue: Vec<SkBuff>,
    /// SACK blocks we report (most recent first).
    pub selective_acks: [SackBlock; 4],
    pub num_sacks: u8,
    /// A D-SACK block (RFC 2883) to report first on the next ACK (Linux: rx_opt.dsack and
    /// duplicate_sack[0]).
    pub dsack: bool,
    pub duplicate_sack: SackBlock,

    // ---- buffers ----
    pub sndbuf: u32,
    pub rcvbuf: u32,

    // ---- ACK scheduling ----
    /// An ACK is owed (delayed ACK pending).
    pub ack_pending: bool,
    /// Full-sized segments received since the last ACK we sent.
    pub rcv_segs_since_ack: u32,
    /// Send ACKs immediately for this many more segments (quick ack mode).
    pub quickack: u32,
    /// Two full segments arrived since the last ACK: one is owed at the end of this receive
    /// burst (what GRO gives Linux: one ACK per aggregated burst, not per pair of segments).
    pub ack_at_burst_end: bool,

    // ---- flags and user settings ----
    pub nodelay: bool,
    pub cork: bool,
    /// A FIN is queued (close or shutdown(SHUT_WR) called).
    pub fin_queued: bool,
    /// The peer's FIN was received (end of stream for the reader).
    pub rcv_shutdown: bool,
    /// The application released the socket: destroy when the protocol is done with it.
    pub orphan: bool,
    pub error: Option<TcpError>,
    /// Listener this connection came from (until accepted).
    pub parent: Option<SockHandle>,

    // ---- listener ----
    pub backlog: u32,
    pub accept_queue: VecDeque<SockHandle>,
    /// Connections in SYN-RECV for this listener.
    pub syn_pending: u32,
    /// Listener: when (jiffies) its SYN queue last overflowed into cookies. Returning ACKs
    /// are checked as cookies only for two cookie periods after (Linux: tcp_synq_overflow()
    /// and tcp_synq_no_recent_overflow()), so an ACK at a listener that sent none is reset
    /// without counting a failed cookie, and cookies cannot be guessed at while none are out.
    pub synq_overflow: Option<u64>,

    // ---- timers ----
    pub retransmit_timer: Option<TimerId>,
    pub delack_timer: Option<TimerId>,
    pub keepalive_timer: Option<TimerId>,
    /// Persist (zero-window probe) mode instead of retransmission on the retransmit timer.
    pub probe0: bool,
    /// Keepalive: idle time, probe interval (ms) and probe count; None = off.
    pub keepalive: Option<(u64, u64, u32)>,
    pub keepalive_probes_sent: u32,
    /// Jiffies of the last segment received (keepalive idle time).
    pub rcv_tstamp: u64,
    /// The route's device fills TCP checksums (CHECKSUM_PARTIAL on transmit).
    pub tx_csum_offload: bool,
    /// Jiffies of the last challenge ACK (None: never), for its rate limit.
    pub last_oow_ack_time: Option<u64>,
    /// Offset added to our timestamps (randomized per connection like Linux's ts_offset).
    pub ts_offset: u32,
    /// TIME-WAIT length and orphan FIN-WAIT-2 timeout, ms (from TcpConfig).
    pub timewait_ms: u64,
    pub fin_timeout_ms: u64,

    // ---- events ----
    /// Event bits raised since the application last looked.
    pub ev_pending: u8,
    /// On `TcpProto::ready` (so joining it is O(1), not a search of the list).
    pub on_ready: bool,
    /// The send buffer was full when the application last tried (wake on space).
    pub snd_blocked: bool,
    /// A send was refused for lack of memory (global pressure or an empty pool): wake the
    /// writer when memory is back (`TcpProto::mem_waiters`), not only on this socket's ACKs.
    pub mem_blocked: bool,
    /// On `TcpProto::mem_waiters`.
    pub on_mem_waiters: bool,
    /// TcpConfig::tcp_mem_pct (pressure, max), percent of the mbuf pool.
    pub tcp_mem_pct: (u8, u8),

    // ---- socket options set by the application (tcp_sockopt.rs) ----
    /// TCP_MAXSEG (Linux: rx_opt.user_mss); 0 = not set.
    pub user_mss: u16,
    /// SO_LINGER time, ms; None = off.
    pub linger_ms: Option<u64>,
    /// Jiffies by which a lingering orphan must have finished (set by close).
    pub linger_deadline: Option<u64>,
    /// IP_TOS and IP_TTL of every segment (None: the stack's default TTL).
    pub tos: u8,
    pub ttl: Option<u8>,
    /// IP ID of the next segment (Linux: inet_sk->inet_id): a counter of this connection's
    /// own, started where `inet_id_init` says, so the IDs of one connection tell nothing about
    /// the host's other traffic.
    pub inet_id: u16,
}

impl TcpSock {
    pub fn new(mut ca_ops: TcpCong, sndbuf: u32, rcvbuf: u32) -> TcpSock {
        // The congestion state is set up before the socket is: returning the literal itself
        // lets the caller's box be built in place (see TcpProto::new_sock).
        let mut cong = CongState::default();
        ca_ops.init(&mut cong);
        TcpSock {
            state: TcpState::Closed,
            saddr: Ipv4Addr::UNSPECIFIED,
            sport: 0,
            daddr: Ipv4Addr::UNSPECIFIED,
            dport: 0,
            iss: 0,
            snd_una: 0,
            snd_nxt: 0,
            write_seq: 0,
            snd_wnd: 0,
            max_window: 0,
            snd_wl1: 0,
            snd_sml: 0,
            mss_cache: 536,
            pmtu_cookie: 0,
            dst: blink_ipv4::dst::DstCache::new(),
            irs: 0,
            rcv_nxt: 0,
            rcv_wnd: 0,
            rcv_wup: 0,
            advmss: 1460,
            rx_opt: RxOpt::default(),
            srtt_us: 0,
            mdev_us: 0,
            rttvar_us: 0,
            rto_ms: 1000,
            backoff: 0,
            retransmits: 0,
            rto_start_ns: 0,
            syn_stamp_ns: None,
            cong,
            ca_ops,
            ca_state: CaState::Open,
            high_seq: 0,
            packets_out: 0,
            sacked_out: 0,
            lost_out: 0,
            retrans_out: 0,
            dupacks: 0,
            highest_sack: 0,
            min_rtt_us: u32::MAX,
            rto_stamp_ns: 0,
            rto_stamp_ts: None,
            rack: Rack::default(),
            undo: Undo::default(),
            icsk_pending: XmitTimer::Retrans,
            tlp: true,
            tlp_high_seq: None,
            tlp_retrans: false,
            write_queue: SkBuffHead::new(),
            rtx_queue: VecDeque::new(),
            receive_queue: SkBuffHead::new(),
            ooo_queue: Vec::new(),
            selective_acks: [SackBlock::default(); 4],
            num_sacks: 0,
            dsack: false,
            duplicate_sack: SackBlock::default(),
            sndbuf,
            rcvbuf,
            ack_pending: false,
            rcv_segs_since_ack: 0,
            quickack: 0,
            ack_at_burst_end: false,
            nodelay: false,
            cork: false,
            fin_queued: false,
            rcv_shutdown: false,
            orphan: false,
            error: None,
            parent: None,
            backlog: 0,
            accept_queue: VecDeque::new(),
            syn_pending: 0,
            synq_overflow: None,
            retransmit_timer: None,
            delack_timer: None,
            keepalive_timer: None,
            probe0: false,
            keepalive: None,
            keepalive_probes_sent: 0,
            rcv_tstamp: 0,
            last_oow_ack_time: None,
            tx_csum_offload: false,
            ts_offset: 0,
            timewait_ms: 60_000,
            fin_timeout_ms: 60_000,
            ev_pending: 0,
            on_ready: false,
            snd_blocked: false,
            mem_blocked: false,
            on_mem_waiters: false,
            tcp_mem_pct: (75, 90),
            user_mss: 0,
            linger_ms: None,
            linger_deadline: None,
            tos: 0,
            ttl: None,
            inet_id: 0,
        }
    }

    /// The connection's 4-tuple as the hash tables key it.
    pub fn tuple(&self) -> FourTuple {
        FourTuple {
            laddr: self.saddr,
            lport: self.sport,
            raddr: self.daddr,
            rport: self.dport,
        }
    }

    /// Bytes the application has queued that are not yet acknowledged.
    pub fn send_queued(&self) -> u32 {
        self.write_seq.wrapping_sub(self.snd_una)
    }

    /// Room left in the send buffer (Linux: sk_stream_wspace).
    pub fn send_space(&self) -> u32 {
        self.sndbuf.saturating_sub(self.send_queued())
    }

    /// The most skbs the receive and out-of-order queues may hold together. The byte limit
    /// (`rcvbuf`) alone would let a peer sending tiny segments pin one mbuf per byte; this
    /// allows 2.8x what a full window of full-sized segments needs (Linux accounts truesize
    /// against rcvbuf to the same end).
    pub fn rcv_skb_limit(&self) -> usize {
        (self.rcvbuf as usize / 512).max(64)
    }

    /// The same bound for the write queue (tiny zero-copy sends hold an mbuf each).
    pub fn snd_skb_limit(&self) -> usize {
        (self.sndbuf as usize / 512).max(64)
    }

    /// Forget the SACK blocks we report (the out-of-order data they described is gone).
    pub fn selective_acks_clear(&mut self) {
        self.num_sacks = 0;
    }

    /// Bytes waiting to be read.
    pub fn recv_queued(&self) -> usize {
        self.receive_queue.bytes()
    }

    /// Packets in flight as RFC 6675 counts them (Linux: tcp_packets_in_flight).
    pub fn packets_in_flight(&self) -> u32 {
        (self.packets_out + self.retrans_out).saturating_sub(self.sacked_out + self.lost_out)
    }

    /// Current RTO with exponential backoff, clamped to 120 s (TCP_RTO_MAX).
    pub fn rto_backed_off_ms(&self) -> u64 {
        (self.rto_ms << self.backoff.min(16)).min(crate::TCP_RTO_MAX_MS)
    }

    pub fn raise(&mut self, ev: u8) {
        self.ev_pending |= ev;
    }
}

// ------------------------------------------------------------------ state changes

/// Linux: tcp_set_state(). Keeps Tcp.CurrEstab and Tcp.EstabResets right.
pub fn tcp_set_state(sk: &mut TcpSock, stack: &mut Stack, new: TcpState) {
    let old = sk.state;
    if old == new {
        return;
    }
    let estab = |s: TcpState| matches!(s, TcpState::Established | TcpState::CloseWait);
    if estab(new) && !estab(old) {
        stack.core.mib.tcp.inc(TcpMib::CurrEstab);
    }
    if estab(old) && !estab(new) {
        stack.core.mib.tcp.dec(TcpMib::CurrEstab);
        if new == TcpState::Closed {
            // Reset, aborted or timed out (Linux counts it here too, in tcp_set_state).
            stack.core.mib.tcp.inc(TcpMib::EstabResets);
        }
    }
    sk.state = new;
}

/// Linux: tcp_done(). The connection is over: stop its timers, free what it queued to send,
/// and tell the application.
pub fn tcp_done(sk: &mut TcpSock, stack: &mut Stack) {
    tcp_done_ev(sk, stack, ev::CLOSED | ev::READABLE | ev::WRITABLE);
}

/// `tcp_done` raising only `events` (a connection handed to TIME-WAIT finished normally: its
/// writers were shut down long ago and need no wake-up).
pub fn tcp_done_ev(sk: &mut TcpSock, stack: &mut Stack, events: u8) {
    if matches!(sk.state, TcpState::SynSent | TcpState::SynRecv) && sk.error.is_some() {
        stack.core.mib.tcp.inc(TcpMib::AttemptFails);
    }
    tcp_set_state(sk, stack, TcpState::Closed);
    for t in [sk.retransmit_timer, sk.delack_timer, sk.keepalive_timer]
        .into_iter()
        .flatten()
    {
        stack.timers.del_timer(t);
    }
    sk.write_queue.purge();
    sk.rtx_queue.clear();
    sk.ooo_queue.clear();
    sk.packets_out = 0;
    sk.sacked_out = 0;
    sk.lost_out = 0;
    sk.retrans_out = 0;
    sk.raise(events);
}

/// Linux: tcp_reset(). The peer reset the connection.
pub fn tcp_reset(sk: &mut TcpSock, stack: &mut Stack) {
    sk.error = Some(match sk.state {
        TcpState::SynSent => TcpError::ConnectionRefused,
        _ => TcpError::ConnectionReset,
    });
    tcp_done(sk, stack);
}

/// Linux: tcp_abort() / tcp_disconnect(): send a reset and finish.
pub fn tcp_abort(sk: &mut TcpSock, stack: &mut Stack) {
    if matches!(
        sk.state,
        TcpState::Established | TcpState::CloseWait | TcpState::FinWait1 | TcpState::FinWait2 | TcpState::SynRecv
    ) {
        crate::tcp_output::tcp_send_active_reset(sk, stack);
    }
    sk.error = Some(TcpError::Aborted);
    tcp_done(sk, stack);
}

// ------------------------------------------------------------------ memory

/// Is the core's mbuf pool at least `pct` percent in use? (Linux: sk_memory_allocated()
/// against sysctl_tcp_mem.) The pool's own in-use count is the accounting: every buffer TCP
/// queues comes from it, and so do the driver's receive buffers that must stay available.
/// Read from the core's snapshot, refreshed every jiffy (`NetCore::pool_in_use`).
pub fn tcp_mem_over(stack: &Stack, pct: u8) -> bool {
    let pool = stack.core.cache.pool();
    stack.core.pool_in_use * 100 >= pool.capacity() * pct as usize
}

/// Linux: sk_stream_memory_free() + sk_wmem_schedule(). May this socket queue another skb?
/// A socket with nothing queued may always queue one, so every connection can make progress
/// and gets its `ev::WRITABLE` from the ACK of what it queued.
fn sk_wmem_schedule(sk: &TcpSock, stack: &Stack) -> bool {
    let queued = sk.write_queue.len();
    queued == 0 || (queued < sk.snd_skb_limit() && !tcp_mem_over(stack, sk.tcp_mem_pct.0))
}

// ------------------------------------------------------------------ user calls

/// Linux: tcp_sendmsg(). Copy `data` into segments of at most one MSS, appending to the last
/// unsent segment when it has room, then push. Returns the bytes taken (0 when the send
/// buffer is full: wait for `ev::WRITABLE`).
pub fn tcp_sendmsg(sk: &mut TcpSock, stack: &mut Stack, data: &[u8]) -> Result<usize, TcpErr> {
    check_send(sk)?;
    let mss = crate::tcp_output::tcp_current_mss(sk, stack) as usize;
    let mut done = 0;
    while done < data.len() {
        let space = sk.send_space() as usize;
        if space == 0 {
            break;
        }
        // Fill the unsent tail segment first (Linux: skb_copy_to_page_nocache into the tail).
        if let Some(tail) = sk.write_queue.skb_peek_tail() {
            let room = mss.saturating_sub(tail.len()).min(tail.skb_tailroom());
            let fin = tail.cb::<TcpSkbCb>().tcp_flags & crate::tcphdr::TCPHDR_FIN != 0;
            if room > 0 && !fin && !tail.is_nonlinear() {
                let n = room.min(data.len() - done).min(space);
                let mut skb = sk.write_queue.skb_dequeue_tail().expect("peeked");
                skb.skb_put_data(&data[done..done + n]);
                skb.cb_mut::<TcpSkbCb>().end_seq = skb.cb::<TcpSkbCb>().end_seq.wrapping_add(n as u32);
                sk.write_queue.skb_queue_tail(skb);
                sk.write_seq = sk.write_seq.wrapping_add(n as u32);
                done += n;
                continue;
            }
        }
        if !sk_wmem_schedule(sk, stack) {
            // Memory pressure: a short write; `ev::WRITABLE` follows when memory is back.
            sk.mem_blocked = true;
            break;
        }
        let Some(mut skb) = SkBuff::alloc(&mut stack.core.cache) else {
            // Out of buffers: accept what fit; the caller sees a short write and
            // `ev::WRITABLE` when the pool has buffers again.
            sk.mem_blocked = true;
            break;
        };
        // Payload only: headers go in their own skb on transmit.
        let n = mss.min(skb.skb_tailroom()).min(data.len() - done).min(space);
        skb.skb_put_data(&data[done..done + n]);
        let cb = skb.cb_mut::<TcpSkbCb>();
        cb.seq = sk.write_seq;
        cb.end_seq = sk.write_seq.wrapping_add(n as u32);
        cb.tcp_flags = crate::tcphdr::TCPHDR_ACK;
        sk.write_seq = sk.write_seq.wrapping_add(n as u32);
        sk.write_queue.skb_queue_tail(skb);
        done += n;
    }
    if done < data.len() {
        sk.snd_blocked = true;
    }
    crate::tcp_output::tcp_write_xmit(sk, stack, false);
    Ok(done)
}

/// Linux: tcp_sendpage(). Zero-copy send: `m`'s data window becomes one segment's payload (it
/// must not exceed the MSS). Gives the mbuf back when the send buffer is full.
pub fn tcp_send_mbuf(sk: &mut TcpSock, stack: &mut Stack, m: Mbuf) -> Result<(), (Mbuf, TcpErr)> {
    tcp_send_frag(sk, stack, Frag::from_mbuf(m)).map_err(|(f, e)| (f.into_mbuf(), e))
}

/// [`tcp_send_mbuf`] for a fragment: `f`'s bytes (1..=MSS, in a buffer that may be shared,
/// e.g. received payload sent back) become one segment's payload, by reference.
pub fn tcp_send_frag(sk: &mut TcpSock, stack: &mut Stack, f: Frag) -> Result<(), (Frag, TcpErr)> {
    if let Err(e) = check_send(sk) {
        return Err((f, e));
    }
    let n = f.len();
    if n == 0 || n > sk.mss_cache as usize {
        return Err((f, TcpErr::InvalidArgument("mbuf payload must be 1..=MSS bytes")));
    }
    if (sk.send_space() as usize) < n {
        sk.snd_blocked = true;
        return Err((f, TcpErr::WouldBlock));
    }
    if !sk_wmem_schedule(sk, stack) {
        sk.snd_blocked = true;
        sk.mem_blocked = true;
        return Err((f, TcpErr::WouldBlock));
    }
    let Some(mut skb) = SkBuff::alloc(&mut stack.core.cache) else {
        // The pool is empty for the moment: try again on `ev::WRITABLE`.
        sk.snd_blocked = true;
        sk.mem_blocked = true;
        return Err((f, TcpErr::WouldBlock));
    };
    if let Err(f) = skb.skb_add_frag(f) {
        return Err((f, TcpErr::NoMemory));
    }
    let cb = skb.cb_mut::<TcpSkbCb>();
    cb.seq = sk.write_seq;
    cb.end_seq = sk.write_seq.wrapping_add(n as u32);
    cb.tcp_flags = crate::tcphdr::TCPHDR_ACK;
    sk.write_seq = sk.write_seq.wrapping_add(n as u32);
    sk.write_queue.skb_queue_tail(skb);
    crate::tcp_output::tcp_write_xmit(sk, stack, false);
    Ok(())
}

fn check_send(sk: &TcpSock) -> Result<(), TcpErr> {
    if let Some(e) = sk.error {
        return Err(TcpErr::Connection(e));
    }
    if sk.fin_queued {
        return Err(TcpErr::Shutdown);
    }
    match sk.state {
        TcpState::Established | TcpState::CloseWait => Ok(()),
        TcpState::SynSent | TcpState::SynRecv => Err(TcpErr::WouldBlock),
        _ => Err(TcpErr::NotConnected),
    }
}

/// Linux: tcp_recvmsg(). Copy received bytes into `buf`. Ok(0) means end of stream (the peer
/// closed); `Err(WouldBlock)` means nothing yet.
pub fn tcp_recvmsg(sk: &mut TcpSock, stack: &mut Stack, buf: &mut [u8]) -> Result<usize, TcpErr> {
    let mut done = 0;
    while done < buf.len() {
        let Some(head) = sk.receive_queue.skb_peek() else { break };
        let n = head.len().min(buf.len() - done);
        head.skb_copy_bits(0, &mut buf[done..done + n]);
        let mut skb = sk.receive_queue.skb_dequeue().expect("peeked");
        if skb.trace {
            // Linux: the skb:skb_copy_datagram_iovec tracepoint, then consume_skb.
            stack
                .core
                .mib
                .trace_event(&skb, "tcp_recvmsg", if n < skb.len() { "partial" } else { "" });
        }
        if n < skb.len() {
            skb.pskb_pull(n);
            sk.receive_queue.skb_queue_head(skb);
        } else {
            stack.core.consume_skb(skb);
        }
        done += n;
    }
    if done > 0 {
        tcp_cleanup_rbuf(sk, stack);
        return Ok(done);
    }
    if let Some(e) = sk.error {
        return Err(TcpErr::Connection(e));
    }
    if sk.rcv_shutdown || sk.state == TcpState::Closed {
        return Ok(0);
    }
    Err(TcpErr::WouldBlock)
}

/// Zero-copy receive: the next in-order segment as an skb whose data is payload (its buffers
/// are the ones the device delivered). None when nothing is queued.
pub fn tcp_recv_skb(sk: &mut TcpSock, stack: &mut Stack) -> Option<SkBuff> {
    let skb = sk.receive_queue.skb_dequeue()?;
    if skb.trace {
        stack.core.mib.trace_event(&skb, "tcp_recv_skb", "to the application");
    }
    tcp_cleanup_rbuf(sk, stack);
    Some(skb)
}

/// Linux: tcp_cleanup_rbuf(). After the application read, advertise the reopened window if it
/// grew enough to matter (at least two MSS or half the buffer), so a sender stalled on a full
/// window resumes. Only once the peer has used at least half of what we last advertised
/// (Linux: `2 * rcv_window_now <= window_clamp`): a small read from a barely used window is
/// not worth a segment of its own (without this, the first request of every connection drew
/// a pure window update, since the SYN's window is never scaled: one frame in ten of a
/// connect-request-response-close).
fn tcp_cleanup_rbuf(sk: &mut TcpSock, stack: &mut Stack) {
    if !sk.state.can_receive() {
        return;
    }
    let queued = sk.receive_queue.bytes() as u32;
    let free = sk.rcvbuf.saturating_sub(queued);
    let advertised_left = sk.rcv_wnd.saturating_sub(sk.rcv_nxt.wrapping_sub(sk.rcv_wup));
    if advertised_left.saturating_mul(2) <= sk.rcv_wnd
        && free >= advertised_left.saturating_mul(2)
        && free - advertised_left >= 2 * sk.mss_cache.min(sk.rcvbuf / 4)
    {
        crate::tcp_output::tcp_send_ack(sk, stack);
    }
}

/// Linux: tcp_shutdown(SHUT_WR). Send a FIN after the queued data; reading continues.
pub fn tcp_shutdown(sk: &mut TcpSock, stack: &mut Stack) -> Result<(), TcpErr> {
    match sk.state {
        TcpState::Established => tcp_set_state(sk, stack, TcpState::FinWait1),
        TcpState::CloseWait => tcp_set_state(sk, stack, TcpState::LastAck),
        TcpState::SynSent | TcpState::Listen => {
            tcp_done(sk, stack);
            return Ok(());
        }
        TcpState::SynRecv => tcp_set_state(sk, stack, TcpState::FinWait1),
        _ => return Ok(()),
    }
    crate::tcp_output::tcp_send_fin(sk, stack);
    Ok(())
}

/// Linux: tcp_close(). The application lets go: unread data means a reset (RFC 2525 2.17),
/// otherwise a graceful FIN; the protocol finishes the connection on its own (orphan).
pub fn tcp_close(sk: &mut TcpSock, stack: &mut Stack) {
    sk.orphan = true;
    if sk.recv_queued() > 0 {
        sk.receive_queue.purge();
        // Unread data at close: reset, not FIN (RFC 2525 2.17; Linux: TCPAbortOnClose).
        stack.core.mib.tcp_ext.inc(TcpExtMib::TCPAbortOnClose);
        tcp_abort(sk, stack);
        return;
    }
    match sk.state {
        TcpState::Closed | TcpState::Listen | TcpState::SynSent => tcp_done(sk, stack),
        _ if sk.linger_ms == Some(0) => {
            // SO_LINGER with a zero time: drop what is queued and reset (Linux: tcp_close ->
            // tcp_disconnect, counted as TCPAbortOnData).
            stack.core.mib.tcp_ext.inc(TcpExtMib::TCPAbortOnData);
            tcp_abort(sk, stack);
        }
        _ => {
            let _ = tcp_shutdown(sk, stack);
            if sk.state == TcpState::FinWait2 {
                // Orphans do not linger in FIN-WAIT-2 forever (tcp_fin_timeout).
                if let Some(t) = sk.keepalive_timer {
                    stack.timers.mod_timer(t, stack.core.jiffies + sk.fin_timeout_ms);
                }
            } else if let (Some(ms), Some(t)) = (sk.linger_ms, sk.keepalive_timer) {
                // Data or the FIN still unacknowledged: give it the linger time (the
                // keepalive timer is the orphan's timer, as for tcp_fin_timeout).
                let deadline = stack.core.jiffies + ms;
                sk.linger_deadline = Some(deadline);
                stack.timers.mod_timer(t, deadline);
            }
        }
    }
}
