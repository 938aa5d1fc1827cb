//! TCP over IPv4: the per-core protocol instance, segment receive and socket lookup, resets,
//! active and passive open. Linux: net/ipv4/tcp_ipv4.c (`tcp_v4_rcv`, `tcp_v4_connect`,
//! `tcp_v4_send_reset`, `tcp_v4_syn_recv_sock`) and inet_connection_sock.c (listen/accept).

use std::any::Any;
use std::collections::VecDeque;
use std::net::Ipv4Addr;

use blink_ipv4::ip_output::{ip_build_and_send_pkt, IpTx};
use blink_ipv4::iphdr::{Ipv4Hdr, IPPROTO_TCP};
use blink_ipv4::{InetProtocol, Stack};
use blink_netcore::skbuff::{IpSummed, SkBuff};
use blink_netcore::snmp::{DropReason, TcpExtMib, TcpMib};
use blink_netcore::sock::{SockHandle, SockSlab};

use crate::inet_hashtables::{FourTuple, InetHashTables};
use crate::secure_seq::{port_start, secure_tcp_seq, SecretKey};
use crate::syncookies::CookieSecret;
use crate::tcp::{ev, RxOpt, TcpError, TcpSkbCb, TcpSock, TcpState};
use crate::tcp_cong::cong_by_name;
use crate::tcp_input::{tcp_rcv_state_process, tcp_rcv_synsent};
use crate::tcp_minisocks::{ReqVerdict, TcpRequestSock, TcpTimewaitSock, TwStatus};
use crate::tcp_output::tcp_send_syn;
use crate::tcp_timer::{TimerKind, TCP_TIMER_FN};
use crate::tcphdr::*;
use crate::{TcpConfig, TcpErr};

/// The TCP instance of one core: its sockets, hash tables and settings.
pub struct TcpProto {
    pub socks: SockSlab<Box<TcpSock>>,
    /// Request socks of connections in SYN-RECV (tcp_minisocks.rs), hashed in `tables.reqhash`.
    pub reqs: SockSlab<TcpRequestSock>,
    /// TIME-WAIT socks (tcp_minisocks.rs), hashed by tuple in `tables.twhash`.
    pub tw: SockSlab<TcpTimewaitSock>,
    pub tables: InetHashTables,
    pub cfg: TcpConfig,
    /// Sockets with events the application has not collected (each at most once).
    pub ready: Vec<SockHandle>,
    /// Sockets whose writes were refused for memory, woken when the pool is below pressure.
    mem_waiters: Vec<SockHandle>,
    /// Sockets owing an ACK at the end of the current receive burst (tcp_ack_burst_flush).
    ack_backlog: Vec<SockHandle>,
    isn_key: SecretKey,
    cookies: CookieSecret,
    next_port: u16,
    /// Empty retransmit queues of destroyed sockets, kept with their storage for the next
    /// connections (Linux's sockets come from a slab cache and their rtx queue is an rbtree
    /// in the socket: neither allocates per connection). Without it every connection end
    /// allocated the deque's buffer on its first segment and freed it at close: an
    /// allocation, a growth and a free per connection end, code that crr ran each time.
    spare_rtx: Vec<VecDeque<SkBuff>>,
}

/// Most spare retransmit queues kept (`TcpProto::spare_rtx`).
const SPARE_RTX_MAX: usize = 1024;
/// Largest queue kept for reuse (in segments): a bulk connection's large deque goes back to
/// the allocator rather than being held for a connection that may never need it.
const SPARE_RTX_CAP: usize = 64;

impl TcpProto {
    pub fn new(cfg: TcpConfig) -> TcpProto {
        let (isn_key, cookies) = (
            SecretKey::new(cfg.seed, "isn"),
            CookieSecret::new(SecretKey::new(cfg.seed, "cookie")),
        );
        TcpProto {
            socks: SockSlab::default(),
            reqs: SockSlab::default(),
            tw: SockSlab::default(),
            tables: InetHashTables::default(),
            next_port: port_start(cfg.seed, cfg.ephemeral_ports),
            cfg,
            ready: Vec::new(),
            ack_backlog: Vec::new(),
            mem_waiters: Vec::new(),
            isn_key,
            cookies,
            spare_rtx: Vec::new(),
        }
    }

    /// Empty retransmit queues held for the next connections (see `spare_rtx`).
    pub fn spare_rtx_queues(&self) -> usize {
        self.spare_rtx.len()
    }

    /// RFC 6528 initial sequence number and timestamp offset of `t` (see `secure_seq`).
    fn isn(&self, t: &FourTuple, now_ns: u64) -> (u32, u32) {
        secure_tcp_seq(&self.isn_key, t, now_ns)
    }

    /// A socket on the heap, as Linux's come from a slab cache: a ~740-byte `TcpSock` held in
    /// place is not copied again on its way through handshake, slab insert and removal (ten
    /// copies per connection when it lived inline in the slab), and the slab's array stays
    /// small when it grows to a million connections.
    fn new_sock(&mut self) -> Box<TcpSock> {
        let ca = cong_by_name(&self.cfg.congestion).unwrap_or_else(|| cong_by_name("cubic").expect("cubic exists"));
        // Allocated first and built in place: `Box::new(TcpSock::new(..))` builds the socket on
        // the stack and copies it twice on its way to the heap.
        let mut sk = Box::write(Box::new_uninit(), TcpSock::new(ca, self.cfg.sndbuf, self.cfg.rcvbuf));
        sk.nodelay = self.cfg.nodelay;
        sk.rx_opt = self.rx_opt_allowed();
        sk.keepalive = self.cfg.keepalive;
        sk.timewait_ms = self.cfg.timewait_ms;
        sk.fin_timeout_ms = self.cfg.fin_timeout_ms;
        sk.tcp_mem_pct = self.cfg.tcp_mem_pct;
        sk.tlp = self.cfg.tlp;
        if let Some(q) = self.spare_rtx.pop() {
            sk.rtx_queue = q;
        }
        sk
    }

    /// The options we are willing to use; the handshake keeps those the peer offers too.
    fn rx_opt_allowed(&self) -> RxOpt {
        RxOpt {
            rcv_wscale: self.cfg.rcv_wscale(),
            tstamp_ok: self.cfg.timestamps,
            sack_ok: self.cfg.sack,
            wscale_ok: self.cfg.window_scaling,
            ..Default::default()
        }
    }

    /// Allocate the socket's timers (freed in `destroy`).
    fn setup_timers(stack: &mut Stack, sk: &mut TcpSock, h: SockHandle) {
        let d = h.to_u56();
        sk.retransmit_timer = Some(stack.timers.timer_setup(TCP_TIMER_FN, TimerKind::Retransmit.data(d)));
        sk.delack_timer = Some(stack.timers.timer_setup(TCP_TIMER_FN, TimerKind::Delack.data(d)));
        sk.keepalive_timer = Some(stack.timers.timer_setup(TCP_TIMER_FN, TimerKind::Keepalive.data(d)));
    }

    /// After anything touched socket `h`: unhash it if it closed, destroy it if nobody holds
    /// it any more, and note pending events for the application. Runs after every segment and
    /// every user call: a live socket costs one lookup; closing is the out-of-line part.
    #[inline]
    pub fn post_process(&mut self, stack: &mut Stack, h: SockHandle) {
        let Some(sk) = self.socks.get_mut(h) else { return };
        if matches!(sk.state, TcpState::TimeWait | TcpState::Closed) {
            self.post_process_dead(stack, h);
            return;
        }
        Self::note_pending(sk, h, &mut self.mem_waiters, &mut self.ack_backlog, &mut self.ready);
    }

    /// The pending work of a live socket: a writer waiting for memory, an ACK deferred to the
    /// end of the burst, events for the application.
    #[inline(always)]
    fn note_pending(
        sk: &mut TcpSock,
        h: SockHandle,
        mem_waiters: &mut Vec<SockHandle>,
        ack_backlog: &mut Vec<SockHandle>,
        ready: &mut Vec<SockHandle>,
    ) {
        if sk.mem_blocked && !sk.on_mem_waiters {
            sk.on_mem_waiters = true;
            mem_waiters.push(h);
        }
        // At most one entry per socket that received in this burst (a burst is 32 frames).
        if sk.ack_at_burst_end && !ack_backlog.contains(&h) {
            ack_backlog.push(h);
        }
        if sk.ev_pending != 0 && !sk.orphan && !sk.on_ready {
            sk.on_ready = true;
            ready.push(h);
        }
    }

    /// `post_process` of a socket that went to TIME-WAIT or CLOSED.
    #[cold]
    #[inline(never)]
    fn post_process_dead(&mut self, stack: &mut Stack, h: SockHandle) {
        let Some(sk) = self.socks.get_mut(h) else { return };
        if sk.state == TcpState::TimeWait {
            self.inet_twsk_hashdance(stack, h);
        }
        let sk = self.socks.get_mut(h).expect("exists");
        if sk.state == TcpState::Closed {
            let t = sk.tuple();
            if self.tables.ehash.get(&t) == Some(&h) {
                self.tables.ehash.remove(&t);
            }
            if let Some(p) = sk.parent.take() {
                // A connection that died before being accepted leaves the listener's counts.
                if let Some(l) = self.socks.get_mut(p) {
                    l.accept_queue.retain(|&c| c != h);
                }
                // Nobody will ever accept it: it is an orphan now.
                if let Some(sk) = self.socks.get_mut(h) {
                    sk.orphan = true;
                }
            }
            let sk = self.socks.get_mut(h).expect("exists");
            if sk.orphan {
                self.destroy(stack, h);
                return;
            }
        }
        let sk = self.socks.get_mut(h).expect("exists");
        Self::note_pending(sk, h, &mut self.mem_waiters, &mut self.ack_backlog, &mut self.ready);
    }

    /// Memory is back below pressure: wake the writers refused for lack of it (Linux:
    /// sk_stream_write_space after memory was reclaimed). Checked after every receive burst,
    /// which is when ACKs free send buffers, and whenever the application collects events
    /// (memory also comes back without any traffic: the application freed buffers, or the
    /// last ACKs came in an earlier burst).
    pub(crate) fn tcp_mem_wake(&mut self, stack: &mut Stack) {
        if self.mem_waiters.is_empty() || crate::tcp::tcp_mem_over(stack, self.cfg.tcp_mem_pct.0) {
            return;
        }
        let list = std::mem::take(&mut self.mem_waiters);
        for &h in &list {
            let Some(sk) = self.socks.get_mut(h) else { continue };
            sk.on_mem_waiters = false;
            if std::mem::take(&mut sk.mem_blocked) {
                sk.raise(ev::WRITABLE);
                self.post_process(stack, h);
            }
        }
    }

    /// Free a socket: its timers, queued buffers, port and slot (Linux: inet_csk_destroy_sock).
    fn destroy(&mut self, stack: &mut Stack, h: SockHandle) {
        let Some(mut sk) = self.socks.remove(h) else { return };
        for t in [
            sk.retransmit_timer.take(),
            sk.delack_timer.take(),
            sk.keepalive_timer.take(),
        ]
        .into_iter()
        .flatten()
        {
            stack.timers.timer_free(t);
        }
        let t = sk.tuple();
        if self.tables.ehash.get(&t) == Some(&h) {
            self.tables.ehash.remove(&t);
        }
        let was_listener = sk.state == TcpState::Listen || self.tables.lhash.get(&sk.sport) == Some(&h);
        if was_listener {
            self.tables.lhash.remove(&sk.sport);
        }
        if sk.sport != 0 {
            self.tables.unbind(sk.sport);
        }
        for c in std::mem::take(&mut sk.accept_queue) {
            // Connections never accepted are reset (Linux: inet_csk_listen_stop).
            if let Some(child) = self.socks.get_mut(c) {
                child.parent = None;
                crate::tcp::tcp_abort(child, stack);
                child.orphan = true;
            }
            self.post_process(stack, c);
        }
        if was_listener && sk.syn_pending > 0 {
            // Connections still in the handshake are forgotten (Linux: inet_csk_listen_stop
            // drops the request socks): the handshake's last ACK then finds no socket and
            // gets a reset.
            let reqs: Vec<SockHandle> = self
                .reqs
                .handles()
                .filter(|&r| self.reqs.get(r).is_some_and(|q| q.listener == h))
                .collect();
            for r in reqs {
                self.reqsk_queue_drop(stack, r);
            }
        }
        if sk.on_ready {
            self.ready.retain(|&r| r != h);
        }
        let rtx = std::mem::take(&mut sk.rtx_queue);
        if rtx.is_empty() && (1..=SPARE_RTX_CAP).contains(&rtx.capacity()) && self.spare_rtx.len() < SPARE_RTX_MAX {
            self.spare_rtx.push(rtx);
        }
        // Queues free their buffers on drop.
        drop(sk);
    }

    // ---------------------------------------------------------------- TIME-WAIT

    /// Linux: inet_twsk_hashdance() + tcp_done(). Socket `h` just entered TIME-WAIT: a
    /// TIME-WAIT sock takes over its tuple (and its port), and the full socket closes (the
    /// application, if it still holds it, sees it closed, as with Linux).
    fn inet_twsk_hashdance(&mut self, stack: &mut Stack, h: SockHandle) {
        let sk = self.socks.get_mut(h).expect("exists");
        let t = sk.tuple();
        let tw = TcpTimewaitSock::from_sock(sk, stack.core.jiffies);
        // From TIME-WAIT to closed: CurrEstab and the reset counters do not move.
        crate::tcp::tcp_done_ev(sk, stack, ev::CLOSED);
        if self.tables.ehash.get(&t) == Some(&h) {
            self.tables.ehash.remove(&t);
        }
        let Some(twh) = self.tw.insert(tw) else {
            // No room for the TIME-WAIT sock: Linux then just closes (TCPTimeWaitOverflow).
            return;
        };
        // The timer's data names the sock, so it is made once the sock has its handle.
        let tw = self.tw.get_mut(twh).expect("inserted");
        let timer = stack
            .timers
            .timer_setup(TCP_TIMER_FN, TimerKind::TimeWait.data(twh.to_u56()));
        stack.timers.mod_timer(timer, stack.core.jiffies + tw.timeout_ms);
        tw.timer = Some(timer);
        // An older TIME-WAIT sock for the same tuple cannot exist (it would have been found
        // before this connection was created), but never leak one.
        if let Some(old) = self.tables.twhash.insert(t, twh) {
            self.tw_free(stack, old);
        }
        self.tables.bind_ref(t.lport);
    }

    /// Free a TIME-WAIT sock: its timer, its hash entry, its port (Linux: inet_twsk_kill).
    fn inet_twsk_kill(&mut self, stack: &mut Stack, twh: SockHandle) {
        let Some(tw) = self.tw.get(twh) else { return };
        let t = tw.tuple;
        if self.tables.twhash.get(&t) == Some(&twh) {
            self.tables.twhash.remove(&t);
        }
        self.tw_free(stack, twh);
    }

    fn tw_free(&mut self, stack: &mut Stack, twh: SockHandle) {
        if let Some(tw) = self.tw.remove(twh) {
            if let Some(timer) = tw.timer {
                stack.timers.timer_free(timer);
            }
            self.tables.unbind(tw.tuple.lport);
        }
    }

    /// A segment for a TIME-WAIT sock (Linux: the TCP_TW_* cases of tcp_v4_rcv). Returns the
    /// initial sequence number to use when the segment is a SYN that may start a new
    /// connection on the tuple; otherwise the segment has been dealt with.
    fn tcp_timewait_rcv(&mut self, stack: &mut Stack, twh: SockHandle, skb: &SkBuff, opts: &TcpOptions) -> Option<u32> {
        let cb = *skb.cb::<TcpSkbCb>();
        let now = stack.core.jiffies;
        let tw = self.tw.get_mut(twh).expect("hashed TIME-WAIT socks exist");
        let v = tw.state_process(&cb, opts, now);
        if v.paws_reject {
            stack.core.mib.tcp_ext.inc(TcpExtMib::PAWSEstab);
        }
        if v.restart {
            if let Some(t) = tw.timer {
                stack.timers.mod_timer(t, now + tw.timeout_ms);
            }
        }
        match v.status {
            TwStatus::Success => None,
            TwStatus::Ack => {
                tw.send_ack(stack);
                None
            }
            TwStatus::Kill => {
                self.inet_twsk_kill(stack, twh);
                None
            }
            TwStatus::Syn(isn) => Some(isn),
        }
    }

    /// Is `t` in TIME-WAIT? (for tests and `blink stat`)
    pub fn in_time_wait(&self, t: &FourTuple) -> bool {
        self.tables.twhash.contains_key(t)
    }

    /// The listener for `daddr:dport`, if any.
    fn listener_for(&self, daddr: Ipv4Addr, dport: u16) -> Option<SockHandle> {
        let &l = self.tables.lhash.get(&dport)?;
        self.socks
            .get(l)
            .is_some_and(|ls| ls.saddr.is_unspecified() || ls.saddr == daddr)
            .then_some(l)
    }

    // ---------------------------------------------------------------- receive

    /// Linux: tcp_v4_rcv(). `skb->data` is at the TCP header, the IP header at the network mark.
    pub fn tcp_v4_rcv(&mut self, stack: &mut Stack, mut skb: SkBuff) {
        stack.core.mib.tcp.inc(TcpMib::InSegs);
        if !skb.pskb_may_pull(TCP_HLEN_MIN) {
            stack.core.mib.tcp.inc(TcpMib::InErrs);
            stack.core.kfree_skb_reason(skb, DropReason::PktTooSmall);
            return;
        }
        let doff = TcpHdr::new_unchecked(skb.data()).header_len();
        if doff < TCP_HLEN_MIN || !skb.pskb_may_pull(doff) {
            stack.core.mib.tcp.inc(TcpMib::InErrs);
            stack.core.kfree_skb_reason(skb, DropReason::PktTooSmall);
            return;
        }
        let (saddr, daddr) = {
            let ip = Ipv4Hdr::new_unchecked(skb.skb_network_header());
            (ip.src(), ip.dst())
        };
        if skb.ip_summed != IpSummed::Unnecessary {
            // Summed in place over the linear area and the fragments.
            let ok = tcp_v4_check_skb(saddr.octets(), daddr.octets(), &skb) == 0;
            if !ok {
                stack.core.mib.tcp.inc(TcpMib::InCsumErrors);
                stack.core.mib.tcp.inc(TcpMib::InErrs);
                stack.core.kfree_skb_reason(skb, DropReason::TcpCsum);
                return;
            }
        }
        if daddr.is_broadcast() || daddr.is_multicast() || stack.is_broadcast_addr(daddr) {
            stack.core.kfree_skb_reason(skb, DropReason::NoSocket);
            return;
        }
        let (sport, dport, cb, opts) = {
            let h = TcpHdr::new_unchecked(skb.data());
            let flags = h.flags();
            let plen = (skb.len() - doff) as u32;
            let syn = flags & TCPHDR_SYN != 0;
            let fin = flags & TCPHDR_FIN != 0;
            let cb = TcpSkbCb {
                seq: h.seq(),
                end_seq: h.seq().wrapping_add(plen + syn as u32 + fin as u32),
                ack_seq: h.ack_seq(),
                tcp_flags: flags,
                sacked: 0,
                tx_count: 0,
                window: h.window(),
                when_ns: stack.core.now_ns,
            };
            (h.src_port(), h.dst_port(), cb, TcpOptions::parse(h.options(), syn))
        };
        *skb.cb_mut::<TcpSkbCb>() = cb;
        skb.skb_pull(doff);

        let t = FourTuple {
            laddr: daddr,
            lport: dport,
            raddr: saddr,
            rport: sport,
        };
        if let Some(&h) = self.tables.ehash.get(&t) {
            let sk = self.socks.get_mut(h).expect("hashed sockets exist");
            if sk.state == TcpState::SynSent {
                tcp_rcv_synsent(sk, stack, skb, &opts);
            } else {
                tcp_rcv_state_process(sk, stack, skb, &opts);
            }
            // Only a child not yet accepted can become ready for accept (the parent link is
            // cut at accept): no second socket lookup for the rest.
            let unaccepted = sk.parent.is_some();
            self.post_process(stack, h);
            if unaccepted {
                self.accept_ready(stack, h);
            }
            return;
        }
        if let Some(&rh) = self.tables.reqhash.get(&t) {
            self.tcp_req_rcv(stack, rh, skb, &opts);
            return;
        }
        let mut tw_isn = None;
        if let Some(&twh) = self.tables.twhash.get(&t) {
            match self.tcp_timewait_rcv(stack, twh, &skb, &opts) {
                Some(isn) => tw_isn = Some(isn),
                None => {
                    stack.core.consume_skb(skb);
                    return;
                }
            }
        }
        if let Some(l) = self.listener_for(daddr, dport) {
            if let Some(isn) = tw_isn {
                // A new incarnation of a connection in TIME-WAIT (Linux: TCP_TW_SYN).
                if let Some(&twh) = self.tables.twhash.get(&t) {
                    self.inet_twsk_kill(stack, twh);
                }
                self.tcp_v4_listen_rcv(stack, l, t, skb, &opts, Some(isn));
            } else {
                self.tcp_v4_listen_rcv(stack, l, t, skb, &opts, None);
            }
            return;
        }
        if tw_isn.is_some() {
            // A SYN that could have reused the tuple, but nobody listens: ACK as TIME-WAIT.
            if let Some(tw) = self.tables.twhash.get(&t).and_then(|&twh| self.tw.get(twh)) {
                tw.send_ack(stack);
            }
            stack.core.consume_skb(skb);
            return;
        }
        if tcp_wrong_core(stack, &t) {
            stack.core.kfree_skb_reason(skb, DropReason::NoSocket);
            return;
        }
        // Nobody here wants it: the kernel sharing the NIC may (`--to-kernel unclaimed`).
        let Some(skb) = blink_ipv4::ip_exception::ip_exc_unclaimed(stack, skb) else {
            return;
        };
        // No socket: answer with a reset (RFC 9293 3.10.7.1), never a reset to a reset.
        if cb.tcp_flags & TCPHDR_RST == 0 {
            tcp_v4_send_reset(stack, &t, &cb, skb.len() as u32);
        }
        stack.core.kfree_skb_reason(skb, DropReason::NoSocket);
    }

    /// A segment for a listener: a SYN creates a connection in SYN-RECV (bounded by the
    /// backlog), anything else gets a reset.
    fn tcp_v4_listen_rcv(
        &mut self,
        stack: &mut Stack,
        l: SockHandle,
        t: FourTuple,
        skb: SkBuff,
        opts: &TcpOptions,
        isn: Option<u32>,
    ) {
        let cb = *skb.cb::<TcpSkbCb>();
        let flags = cb.tcp_flags;
        if flags & TCPHDR_RST != 0 {
            stack.core.kfree_skb_reason(skb, DropReason::NoSocket);
            return;
        }
        if flags & TCPHDR_ACK != 0 {
            // An ACK for a connection we do not have: a SYN cookie coming back, or garbage.
            // Only a listener that sent cookies lately checks for one.
            let recent =
                self.socks.get(l).and_then(|ls| ls.synq_overflow).is_some_and(|at| {
                    stack.core.jiffies.saturating_sub(at) <= crate::syncookies::TCP_SYNCOOKIE_VALID_MS
                });
            if self.cfg.syncookies && recent {
                self.cookie_ack(stack, l, t, skb, opts);
                return;
            }
            if tcp_wrong_core(stack, &t) {
                stack.core.kfree_skb_reason(skb, DropReason::NoSocket);
                return;
            }
            tcp_v4_send_reset(stack, &t, &cb, skb.len() as u32);
            stack.core.kfree_skb_reason(skb, DropReason::NoSocket);
            return;
        }
        if flags & TCPHDR_SYN == 0 {
            stack.core.kfree_skb_reason(skb, DropReason::NoSocket);
            return;
        }
        if flags & TCPHDR_FIN != 0 {
            // SYN+FIN is no connection request (Linux: tcp_rcv_state_process drops it with
            // SKB_DROP_REASON_TCP_FLAGS): answering it would let a segment that filters
            // matching "SYN without FIN" pass open a connection.
            stack.core.kfree_skb_reason(skb, DropReason::TcpFlags);
            return;
        }
        let (backlog, pending, queued) = {
            let ls = self.socks.get(l).expect("listener exists");
            (ls.backlog, ls.syn_pending, ls.accept_queue.len() as u32)
        };
        // Linux (tcp_conn_request) bounds the SYN queue (request socks) and the accept queue
        // by the backlog separately.
        let mut want_cookie = false;
        if pending >= backlog {
            if !self.cfg.syncookies {
                stack.core.mib.tcp_ext.inc(TcpExtMib::TCPReqQFullDrop);
                stack.core.mib.tcp_ext.inc(TcpExtMib::ListenDrops);
                stack.core.kfree_skb_reason(skb, DropReason::SocketRcvBuff);
                return;
            }
            stack.core.mib.tcp_ext.inc(TcpExtMib::TCPReqQFullDoCookies);
            want_cookie = true;
        }
        if queued >= backlog {
            // The accept queue itself is full: a cookie could not be accepted either, so the
            // SYN is dropped and the peer retries (Linux: sk_acceptq_is_full).
            stack.core.mib.tcp_ext.inc(TcpExtMib::ListenOverflows);
            stack.core.mib.tcp_ext.inc(TcpExtMib::ListenDrops);
            stack.core.kfree_skb_reason(skb, DropReason::SocketRcvBuff);
            return;
        }
        if want_cookie {
            // SYN queue full: answer statelessly (Linux: tcp_syncookies = 1).
            self.socks.get_mut(l).expect("listener exists").synq_overflow = Some(stack.core.jiffies);
            let idx = crate::syncookies::mss_index(opts.mss.unwrap_or(536));
            let cookie = self
                .cookies
                .make(&t, cb.seq, crate::syncookies::cookie_minute(stack), idx);
            let mss = crate::syncookies::MSS_TABLE[idx as usize];
            let win = self.cfg.rcvbuf.min(65535) as u16;
            // The listener's IP_TOS/IP_TTL, as on a request sock's SYN-ACK.
            let ip = {
                let ls = self.socks.get(l).expect("listener exists");
                (ls.tos, ls.ttl)
            };
            crate::syncookies::send_cookie_synack(stack, &t, cookie, cb.seq, mss, win, ip);
            stack.core.consume_skb(skb);
            return;
        }
        // Linux: tcp_conn_request(). A request sock, not a full socket, until the handshake
        // completes.
        let (mut advmss, tx_csum_offload) = crate::tcp_input::tcp_route(stack, t.raddr);
        let mut rx_opt = self.rx_opt_allowed();
        // The listener's TCP_MAXSEG and SO_RCVBUF shape the SYN-ACK (Linux: the request
        // sock takes them from the listener in tcp_openreq_init_rwin).
        let (user_mss, rcvbuf, tos, ttl) = {
            let ls = self.socks.get(l).expect("listener exists");
            (ls.user_mss, ls.rcvbuf, ls.tos, ls.ttl)
        };
        if user_mss != 0 {
            advmss = advmss.min(user_mss);
        }
        rx_opt.rcv_wscale = crate::tcp_sockopt::rcv_wscale_for(rx_opt.wscale_ok, rcvbuf);
        crate::tcp_input::tcp_negotiate_rx_opt(&mut rx_opt, opts, stack.core.jiffies);
        let (iss, ts_offset) = self.isn(&t, stack.core.now_ns);
        let req = TcpRequestSock {
            tuple: t,
            listener: l,
            rcv_isn: cb.seq,
            snt_isn: isn.unwrap_or(iss),
            ts_offset,
            rx_opt,
            advmss,
            tx_csum_offload,
            snd_wnd: cb.window,
            rcv_wnd: rcvbuf.min(65535) as u16,
            tos,
            ttl,
            num_retrans: 0,
            num_timeout: 0,
            snt_synack_ns: stack.core.now_ns,
            last_oow_ack_time: None,
            timer: None,
        };
        let Some(rh) = self.reqs.insert(req) else {
            stack.core.mib.tcp_ext.inc(TcpExtMib::ListenDrops);
            stack.core.kfree_skb_reason(skb, DropReason::NoMem);
            return;
        };
        let timer = stack
            .timers
            .timer_setup(TCP_TIMER_FN, TimerKind::ReqTimeout.data(rh.to_u56()));
        let req = self.reqs.get_mut(rh).expect("just inserted");
        stack.timers.mod_timer(timer, stack.core.jiffies + req.timeout_ms());
        req.timer = Some(timer);
        req.send_synack(stack);
        self.tables.reqhash.insert(t, rh);
        if let Some(ls) = self.socks.get_mut(l) {
            ls.syn_pending += 1;
        }
        stack.core.consume_skb(skb);
    }

    /// A segment for a connection in SYN-RECV (Linux: the TCP_NEW_SYN_RECV case of
    /// tcp_v4_rcv with tcp_check_req).
    fn tcp_req_rcv(&mut self, stack: &mut Stack, rh: SockHandle, skb: SkBuff, opts: &TcpOptions) {
        let cb = *skb.cb::<TcpSkbCb>();
        let now = stack.core.jiffies;
        let req = self.reqs.get_mut(rh).expect("hashed request socks exist");
        let (verdict, paws_reject) = req.check_req(&cb, opts);
        if paws_reject {
            stack.core.mib.tcp_ext.inc(TcpExtMib::PAWSEstab);
        }
        match verdict {
            ReqVerdict::Discard => {
                // An out-of-window reset, or a segment without ACK.
                let why = if cb.tcp_flags & TCPHDR_RST != 0 {
                    DropReason::TcpInvalidSequence
                } else {
                    DropReason::TcpFlags
                };
                stack.core.kfree_skb_reason(skb, why);
            }
            ReqVerdict::RetransmitSynack => {
                if !req_oow_rate_limited(req, stack, &cb) {
                    // Linux: inet_rtx_syn_ack, and the timer restarts from now.
                    req.num_retrans += 1;
                    stack.core.mib.tcp.inc(TcpMib::RetransSegs);
                    stack.core.mib.tcp_ext.inc(TcpExtMib::TCPSynRetrans);
                    req.send_synack(stack);
                    if let Some(t) = req.timer {
                        stack.timers.mod_timer(t, now + req.timeout_ms());
                    }
                }
                stack.core.consume_skb(skb);
            }
            ReqVerdict::Ack => {
                if !req_oow_rate_limited(req, stack, &cb) {
                    req.send_ack(stack);
                }
                let why = if paws_reject {
                    DropReason::TcpRfc7323Paws
                } else {
                    DropReason::TcpInvalidSequence
                };
                stack.core.kfree_skb_reason(skb, why);
            }
            ReqVerdict::Reset => {
                let t = req.tuple;
                tcp_v4_send_reset(stack, &t, &cb, skb.len() as u32);
                stack.core.kfree_skb_reason(skb, DropReason::TcpInvalidAckSequence);
            }
            ReqVerdict::Embryonic => {
                stack.core.mib.tcp.inc(TcpMib::AttemptFails);
                if cb.tcp_flags & TCPHDR_RST == 0 {
                    let t = req.tuple;
                    tcp_v4_send_reset(stack, &t, &cb, skb.len() as u32);
                }
                stack.core.mib.tcp_ext.inc(TcpExtMib::EmbryonicRsts);
                self.reqsk_queue_drop(stack, rh);
                stack.core.consume_skb(skb);
            }
            ReqVerdict::Promote => self.tcp_v4_syn_recv_sock(stack, rh, skb, opts),
        }
    }

    /// Linux: tcp_v4_syn_recv_sock() + tcp_create_openreq_child() + tcp_child_process(). The
    /// handshake's final ACK turns request sock `rh` into a full socket, which then processes
    /// the ACK (and any data on it) and goes to the listener's accept queue.
    fn tcp_v4_syn_recv_sock(&mut self, stack: &mut Stack, rh: SockHandle, skb: SkBuff, opts: &TcpOptions) {
        let l = self.reqs.get(rh).expect("hashed request socks exist").listener;
        let Some(ls) = self.socks.get(l) else {
            self.reqsk_queue_drop(stack, rh);
            stack.core.kfree_skb_reason(skb, DropReason::NoSocket);
            return;
        };
        if ls.accept_queue.len() as u32 >= ls.backlog {
            // The accept queue is full: drop the ACK and keep the request sock; its SYN-ACK
            // retransmissions make the peer ACK again later (Linux: listen_overflow with
            // tcp_abort_on_overflow = 0).
            stack.core.mib.tcp_ext.inc(TcpExtMib::ListenOverflows);
            stack.core.mib.tcp_ext.inc(TcpExtMib::ListenDrops);
            stack.core.kfree_skb_reason(skb, DropReason::SocketRcvBuff);
            return;
        }
        let req = self.reqsk_queue_drop(stack, rh).expect("looked up above");
        let t = req.tuple;
        let mut sk = self.new_child(stack, &t, req.rcv_isn, req.snd_wnd, l, req.snt_isn, req.ts_offset);
        sk.state = TcpState::SynRecv;
        sk.rx_opt = req.rx_opt;
        sk.advmss = req.advmss;
        sk.tx_csum_offload = req.tx_csum_offload;
        sk.mss_cache = crate::tcp_input::tcp_mss_cache(&sk.rx_opt, sk.advmss);
        sk.rcv_wnd = req.rcv_wnd as u32;
        // The handshake RTT: from the first SYN-ACK, unless it was sent again (Karn).
        sk.syn_stamp_ns = Some(req.snt_synack_ns);
        sk.retransmits = req.num_retrans;
        let Some(h) = self.socks.insert(sk) else {
            stack.core.mib.tcp_ext.inc(TcpExtMib::ListenDrops);
            stack.core.kfree_skb_reason(skb, DropReason::NoMem);
            return;
        };
        self.tables.ehash.insert(t, h);
        self.tables.bind_ref(t.lport);
        let sk = self.socks.get_mut(h).expect("just inserted");
        Self::setup_timers(stack, sk, h);
        tcp_rcv_state_process(sk, stack, skb, opts);
        self.post_process(stack, h);
        self.accept_ready(stack, h);
    }

    /// Free request sock `rh`: its timer, its hash entry, its place in the listener's SYN
    /// count (Linux: inet_csk_reqsk_queue_drop).
    /// Returns the request sock, for a promotion.
    fn reqsk_queue_drop(&mut self, stack: &mut Stack, rh: SockHandle) -> Option<TcpRequestSock> {
        let req = self.reqs.remove(rh)?;
        if let Some(t) = req.timer {
            stack.timers.timer_free(t);
        }
        if self.tables.reqhash.get(&req.tuple) == Some(&rh) {
            self.tables.reqhash.remove(&req.tuple);
        }
        if let Some(ls) = self.socks.get_mut(req.listener) {
            ls.syn_pending = ls.syn_pending.saturating_sub(1);
        }
        Some(req)
    }

    /// Linux: reqsk_timer_handler(). Send the SYN-ACK again with a doubled timeout, or give
    /// up after tcp_synack_retries (no counter but TCPTimeouts, as in Linux).
    fn reqsk_timer_handler(&mut self, stack: &mut Stack, rh: SockHandle) {
        let Some(req) = self.reqs.get_mut(rh) else { return };
        stack.core.mib.tcp_ext.inc(TcpExtMib::TCPTimeouts);
        if req.num_timeout >= crate::TCP_SYNACK_RETRIES {
            self.reqsk_queue_drop(stack, rh);
            return;
        }
        req.num_timeout += 1;
        req.num_retrans += 1;
        stack.core.mib.tcp.inc(TcpMib::RetransSegs);
        stack.core.mib.tcp_ext.inc(TcpExtMib::TCPSynRetrans);
        req.send_synack(stack);
        if let Some(t) = req.timer {
            stack.timers.mod_timer(t, stack.core.jiffies + req.timeout_ms());
        }
    }

    /// A connection born from listener `l` for a SYN with `peer_isn`, answered with our
    /// `iss` (Linux: tcp_create_openreq_child).
    #[allow(clippy::too_many_arguments)]
    fn new_child(
        &mut self,
        stack: &Stack,
        t: &FourTuple,
        peer_isn: u32,
        window: u16,
        l: SockHandle,
        iss: u32,
        tsoff: u32,
    ) -> Box<TcpSock> {
        let mut sk = self.new_sock();
        sk.saddr = t.laddr;
        sk.sport = t.lport;
        sk.daddr = t.raddr;
        sk.dport = t.rport;
        sk.iss = iss;
        sk.ts_offset = tsoff;
        sk.inet_id = inet_id_init(iss, tsoff);
        sk.snd_una = iss;
        sk.snd_nxt = iss.wrapping_add(1);
        sk.write_seq = iss.wrapping_add(1);
        sk.irs = peer_isn;
        sk.rcv_nxt = peer_isn.wrapping_add(1);
        sk.rcv_wup = sk.rcv_nxt;
        sk.snd_wl1 = peer_isn;
        sk.snd_wnd = window as u32;
        sk.max_window = sk.snd_wnd;
        sk.parent = Some(l);
        if let Some(ls) = self.socks.get(l) {
            crate::tcp_sockopt::tcp_inherit_opts(&mut sk, ls);
        }
        sk.rcv_tstamp = stack.core.jiffies;
        sk
    }

    /// Linux: cookie_v4_check(). Rebuild an established connection from a returning cookie.
    fn cookie_ack(&mut self, stack: &mut Stack, l: SockHandle, t: FourTuple, skb: SkBuff, opts: &TcpOptions) {
        let cb = *skb.cb::<TcpSkbCb>();
        let peer_isn = cb.seq.wrapping_sub(1);
        let minute = crate::syncookies::cookie_minute(stack);
        let Some(idx) = self.cookies.check(&t, peer_isn, minute, cb.ack_seq.wrapping_sub(1)) else {
            stack.core.mib.tcp_ext.inc(TcpExtMib::SyncookiesFailed);
            tcp_v4_send_reset(stack, &t, &cb, skb.len() as u32);
            stack.core.kfree_skb_reason(skb, DropReason::NoSocket);
            return;
        };
        let (backlog, queued) = {
            let ls = self.socks.get(l).expect("listener exists");
            (ls.backlog, ls.accept_queue.len() as u32)
        };
        if queued >= backlog {
            // The accept queue itself is full: cookies cannot help (Linux drops the ACK).
            stack.core.mib.tcp_ext.inc(TcpExtMib::ListenOverflows);
            stack.core.kfree_skb_reason(skb, DropReason::SocketRcvBuff);
            return;
        }
        stack.core.mib.tcp_ext.inc(TcpExtMib::SyncookiesRecv);
        // The cookie was our ISN.
        let iss = cb.ack_seq.wrapping_sub(1);
        let (_, tsoff) = self.isn(&t, stack.core.now_ns);
        let mut sk = self.new_child(stack, &t, peer_isn, cb.window, l, iss, tsoff);
        // The returning ACK acknowledges the cookie SYN-ACK.
        sk.snd_una = cb.ack_seq;
        let mss = crate::syncookies::MSS_TABLE[idx as usize];
        sk.rx_opt = Default::default();
        sk.rx_opt.mss_clamp = mss;
        sk.mss_cache = mss as u32;
        // The window the cookie SYN-ACK announced (unscaled).
        sk.rcv_wnd = self.cfg.rcvbuf.min(65535);
        let _ = opts;
        let Some(h) = self.socks.insert(sk) else {
            stack.core.kfree_skb_reason(skb, DropReason::NoMem);
            return;
        };
        self.tables.ehash.insert(t, h);
        self.tables.bind_ref(t.lport);
        let sk = self.socks.get_mut(h).expect("inserted");
        Self::setup_timers(stack, sk, h);
        crate::tcp::tcp_set_state(sk, stack, TcpState::Established);
        stack.core.mib.tcp.inc(TcpMib::PassiveOpens);
        sk.raise(crate::tcp::ev::CONNECTED | crate::tcp::ev::WRITABLE);
        // The ACK may carry data: let the connection process it.
        let sk = self.socks.get_mut(h).expect("inserted");
        tcp_rcv_state_process(sk, stack, skb, &TcpOptions::default());
        self.post_process(stack, h);
        self.accept_ready(stack, h);
    }

    /// A child that just became established moves to its listener's accept queue.
    fn accept_ready(&mut self, _stack: &mut Stack, h: SockHandle) {
        let Some(sk) = self.socks.get_mut(h) else { return };
        let Some(p) = sk.parent else { return };
        if !matches!(sk.state, TcpState::Established | TcpState::CloseWait) || sk.ev_pending & ev::CONNECTED == 0 {
            return;
        }
        sk.ev_pending &= !ev::CONNECTED;
        if let Some(l) = self.socks.get_mut(p) {
            l.accept_queue.push_back(h);
            l.raise(ev::ACCEPT);
            self.post_process(_stack, p);
        }
    }

    // ---------------------------------------------------------------- user calls

    /// Linux: inet_listen(). Listen on `port` of `addr` (UNSPECIFIED = every address).
    pub fn listen(&mut self, stack: &mut Stack, addr: Ipv4Addr, port: u16, backlog: u32) -> Result<SockHandle, TcpErr> {
        if port == 0 {
            return Err(TcpErr::InvalidArgument("port 0"));
        }
        if self.tables.lhash.contains_key(&port) || self.tables.is_bound(port) {
            return Err(TcpErr::AddrInUse(port));
        }
        let mut sk = self.new_sock();
        sk.state = TcpState::Listen;
        sk.saddr = addr;
        sk.sport = port;
        sk.backlog = backlog.clamp(1, self.cfg.max_backlog);
        let h = self.socks.insert(sk).ok_or(TcpErr::NoMemory)?;
        let sk = self.socks.get_mut(h).expect("inserted");
        Self::setup_timers(stack, sk, h);
        self.tables.lhash.insert(port, h);
        self.tables.bind_ref(port);
        Ok(h)
    }

    /// Linux: inet_csk_accept(). The next established connection, if any.
    pub fn accept(&mut self, l: SockHandle) -> Result<Option<SockHandle>, TcpErr> {
        let ls = self.socks.get_mut(l).ok_or(TcpErr::BadHandle)?;
        if ls.state != TcpState::Listen {
            return Err(TcpErr::InvalidArgument("not a listening socket"));
        }
        let Some(c) = ls.accept_queue.pop_front() else {
            return Ok(None);
        };
        if let Some(cs) = self.socks.get_mut(c) {
            cs.parent = None;
            // Data may have arrived before accept: let the application see it.
            if cs.recv_queued() > 0 || cs.rcv_shutdown {
                cs.raise(ev::READABLE);
            }
            cs.raise(ev::WRITABLE);
            if !cs.on_ready {
                cs.on_ready = true;
                self.ready.push(c);
            }
        }
        Ok(Some(c))
    }

    /// Linux: tcp_v4_connect(). Active open to `daddr:dport` on a new socket.
    pub fn connect(&mut self, stack: &mut Stack, daddr: Ipv4Addr, dport: u16) -> Result<SockHandle, TcpErr> {
        let h = self.socket(stack)?;
        if let Err(e) = self.connect_sock(stack, h, daddr, dport) {
            self.destroy(stack, h);
            return Err(e);
        }
        Ok(h)
    }

    /// Linux: socket(AF_INET, SOCK_STREAM) + tcp_v4_init_sock(). A closed socket the
    /// application can set options on and bind before [`TcpProto::connect_sock`].
    pub fn socket(&mut self, stack: &mut Stack) -> Result<SockHandle, TcpErr> {
        let sk = self.new_sock();
        let h = self.socks.insert(sk).ok_or(TcpErr::NoMemory)?;
        let sk = self.socks.get_mut(h).expect("inserted");
        Self::setup_timers(stack, sk, h);
        Ok(h)
    }

    /// Linux: inet_bind(). Fix the local address (UNSPECIFIED: the route's) and port (0: an
    /// ephemeral one at connect) of closed socket `h`. The port must be free: blink has no
    /// SO_REUSEADDR for TCP. On several cores the replies to a bound port must hash to this
    /// core, which connect checks once the peer is known.
    pub fn bind(&mut self, stack: &mut Stack, h: SockHandle, addr: Ipv4Addr, port: u16) -> Result<(), TcpErr> {
        let sk = self.socks.get(h).ok_or(TcpErr::BadHandle)?;
        if sk.state != TcpState::Closed || sk.sport != 0 || !sk.saddr.is_unspecified() {
            return Err(TcpErr::InvalidArgument("bind: socket already bound or in use"));
        }
        if !addr.is_unspecified() && !stack.is_local_addr(addr) {
            return Err(TcpErr::AddrNotAvailable(addr));
        }
        if port != 0 && (self.tables.lhash.contains_key(&port) || self.tables.is_bound(port)) {
            return Err(TcpErr::AddrInUse(port));
        }
        if port != 0 {
            self.tables.bind_ref(port);
        }
        let sk = self.socks.get_mut(h).expect("looked up above");
        sk.saddr = addr;
        sk.sport = port;
        Ok(())
    }

    /// Linux: tcp_v4_connect(). Active open of closed socket `h` (made by
    /// [`TcpProto::socket`], maybe bound) to `daddr:dport`.
    pub fn connect_sock(
        &mut self,
        stack: &mut Stack,
        h: SockHandle,
        daddr: Ipv4Addr,
        dport: u16,
    ) -> Result<(), TcpErr> {
        if dport == 0 || daddr.is_unspecified() || daddr.is_broadcast() || daddr.is_multicast() {
            return Err(TcpErr::InvalidArgument("destination"));
        }
        let (bound_addr, bound_port) = {
            let sk = self.socks.get(h).ok_or(TcpErr::BadHandle)?;
            if sk.state != TcpState::Closed || !sk.daddr.is_unspecified() {
                return Err(TcpErr::InvalidArgument(
                    "connect: socket already connected or listening",
                ));
            }
            (sk.saddr, sk.sport)
        };
        let route_src = stack
            .fib
            .lookup(daddr)
            .map(|r| r.prefsrc)
            .ok_or(TcpErr::NoRoute(daddr))?;
        let saddr = if bound_addr.is_unspecified() {
            route_src
        } else {
            bound_addr
        };
        let (lport, tw_isn) = if bound_port != 0 {
            let t = FourTuple {
                laddr: saddr,
                lport: bound_port,
                raddr: daddr,
                rport: dport,
            };
            if self.tables.ehash.contains_key(&t) || self.tables.twhash.contains_key(&t) {
                return Err(TcpErr::AddrInUse(bound_port));
            }
            let core = &stack.core;
            if core.reta.nb_queues() > 1 && core.l4_owner(daddr, saddr, dport, bound_port) != core.cpu {
                return Err(TcpErr::InvalidArgument(
                    "bind: the replies to this port would reach another core (pick one that hashes here, or port 0)",
                ));
            }
            (bound_port, None)
        } else {
            self.pick_ephemeral(stack, saddr, daddr, dport).ok_or(TcpErr::NoPorts)?
        };
        let t = FourTuple {
            laddr: saddr,
            lport,
            raddr: daddr,
            rport: dport,
        };
        let (iss, tsoff) = self.isn(&t, stack.core.now_ns);
        let iss = tw_isn.unwrap_or(iss);
        let sk = self.socks.get_mut(h).expect("looked up above");
        sk.saddr = saddr;
        sk.sport = lport;
        sk.daddr = daddr;
        sk.dport = dport;
        sk.iss = iss;
        sk.ts_offset = tsoff;
        sk.inet_id = inet_id_init(iss, tsoff);
        sk.snd_una = iss;
        sk.snd_nxt = iss.wrapping_add(1);
        sk.write_seq = iss.wrapping_add(1);
        sk.state = TcpState::SynSent;
        // The SYN-ACK's options settle the rest (tcp_negotiate_options); TCP_MAXSEG caps what
        // we announce (Linux: tcp_connect_init clamps to user_mss).
        let route_mss = crate::tcp_input::tcp_route(stack, daddr).0;
        sk.advmss = match sk.user_mss {
            0 => route_mss,
            u => route_mss.min(u),
        };
        sk.mss_cache = sk.advmss as u32;
        sk.rto_ms = crate::TCP_TIMEOUT_INIT_MS;
        self.tables.ehash.insert(t, h);
        if bound_port == 0 {
            self.tables.bind_ref(lport);
        }
        let sk = self.socks.get_mut(h).expect("looked up above");
        tcp_send_syn(sk, stack);
        crate::tcp_output::tcp_arm_rto(sk, stack, true);
        stack.core.mib.tcp.inc(TcpMib::ActiveOpens);
        Ok(())
    }

    /// An ephemeral port for a connection to `daddr:dport` whose reply tuple hashes back to
    /// this core (RSS: the NIC must steer the replies here).
    /// A port whose tuple is in TIME-WAIT is taken over only with `tw_reuse` (then the second
    /// value is the initial sequence number the new connection must use).
    fn pick_ephemeral(
        &mut self,
        stack: &mut Stack,
        saddr: Ipv4Addr,
        daddr: Ipv4Addr,
        dport: u16,
    ) -> Option<(u16, Option<u32>)> {
        let (lo, hi) = self.cfg.ephemeral_ports;
        let span = (hi - lo) as u32 + 1;
        for _ in 0..span {
            let p = self.next_port;
            self.next_port = if p >= hi { lo } else { p + 1 };
            let t = FourTuple {
                laddr: saddr,
                lport: p,
                raddr: daddr,
                rport: dport,
            };
            if self.tables.ehash.contains_key(&t) || self.tables.lhash.contains_key(&p) {
                continue;
            }
            let core = &stack.core;
            if core.reta.nb_queues() > 1 && core.l4_owner(daddr, saddr, dport, p) != core.cpu {
                continue;
            }
            let mut isn = None;
            if let Some(&twh) = self.tables.twhash.get(&t) {
                let tw = self.tw.get(twh).expect("hashed TIME-WAIT socks exist");
                if !(self.cfg.tw_reuse && tw.reusable(stack.core.jiffies)) {
                    continue;
                }
                isn = Some(tw.reuse_isn());
                self.inet_twsk_kill(stack, twh);
                stack.core.mib.tcp_ext.inc(TcpExtMib::TWRecycled);
            }
            return Some((p, isn));
        }
        None
    }

    // ---------------------------------------------------------------- timers

    /// A TCP timer fired for `h` (dispatched from the wheel via TCP_TIMER_FN).
    pub fn on_timer(&mut self, stack: &mut Stack, kind: TimerKind, h: SockHandle) {
        if kind == TimerKind::ReqTimeout {
            self.reqsk_timer_handler(stack, h);
            return;
        }
        if kind == TimerKind::TimeWait {
            // Linux: tw_timer_handler -> inet_twsk_kill, counted as TcpExt TW.
            if self.tw.get(h).is_some() {
                stack.core.mib.tcp_ext.inc(TcpExtMib::TW);
                self.inet_twsk_kill(stack, h);
            }
            return;
        }
        let Some(sk) = self.socks.get_mut(h) else { return };
        match kind {
            TimerKind::TimeWait | TimerKind::ReqTimeout => {}
            TimerKind::Retransmit => crate::tcp_timer::tcp_retransmit_timer(sk, stack),
            TimerKind::Delack => crate::tcp_timer::tcp_delack_timer(sk, stack),
            TimerKind::Keepalive => crate::tcp_timer::tcp_keepalive_timer(sk, stack),
        }
        self.post_process(stack, h);
    }
}

/// Linux: tcp_oow_rate_limited() for a request sock: at most one answer to out-of-window
/// segments and retransmitted SYNs per 500 ms (data segments are never limited: they are not
/// part of an ACK loop). Counted as TcpExt TCPACKSkippedSynRecv.
fn req_oow_rate_limited(req: &mut TcpRequestSock, stack: &mut Stack, cb: &TcpSkbCb) -> bool {
    if cb.end_seq != cb.seq && cb.tcp_flags & TCPHDR_SYN == 0 {
        return false;
    }
    crate::tcp_input::__tcp_oow_rate_limited(stack, &mut req.last_oow_ack_time, TcpExtMib::TCPACKSkippedSynRecv)
}

/// Send one segment that belongs to no socket (a reset, a cookie SYN-ACK): header in a fresh
/// skb, full checksum, straight to IP. Linux: ip_send_unicast_reply().
#[allow(clippy::too_many_arguments)]
pub fn tcp_v4_send_stateless(
    stack: &mut Stack,
    t: &FourTuple,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    opts: &TcpOptions,
) -> bool {
    tcp_v4_send_stateless_ip(stack, t, seq, ack, flags, window, opts, (0, None))
}

/// [`tcp_v4_send_stateless`] with the IP header's (TOS, TTL) of a listener's IP_TOS and
/// IP_TTL (a request sock's SYN-ACK; Linux: tcp_v4_send_synack uses the listener's).
#[allow(clippy::too_many_arguments)]
pub fn tcp_v4_send_stateless_ip(
    stack: &mut Stack,
    t: &FourTuple,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    opts: &TcpOptions,
    (tos, ttl): (u8, Option<u8>),
) -> bool {
    let Some(mut skb) = SkBuff::alloc(&mut stack.core.cache) else {
        stack.core.mib.drop_count(DropReason::NoMem);
        return false;
    };
    let Some(h) = skb.skb_put(TCP_HLEN_MIN + opts.len()) else {
        return false;
    };
    tcp_build_header(h, t.lport, t.rport, seq, ack, flags, window, opts);
    let c = tcp_v4_check(t.laddr.octets(), t.raddr.octets(), &[skb.data()]);
    skb.data_mut().expect("fresh")[16..18].copy_from_slice(&c.to_be_bytes());
    stack.core.mib.tcp.inc(TcpMib::OutSegs);
    let tx = IpTx {
        src: Some(t.laddr),
        dst: t.raddr,
        protocol: IPPROTO_TCP,
        ttl,
        tos,
        df: true,
        // No socket (SYN-ACKs of request socks, resets, TIME-WAIT ACKs): Linux's ip_select_ident
        // gives these DF datagrams ID 0.
        id: None,
    };
    ip_build_and_send_pkt(stack, skb, tx).is_ok()
}

/// First IP ID of a connection (Linux: tcp_v4_connect and tcp_v4_syn_recv_sock draw
/// `inet_id` at random). Here from the connection's secret-keyed ISN and timestamp offset, so
/// a test's seed reproduces it; it only has to differ from connection to connection.
pub(crate) fn inet_id_init(iss: u32, ts_offset: u32) -> u16 {
    let x = iss ^ ts_offset.rotate_left(13);
    (x ^ (x >> 16)) as u16
}

/// A segment found no connection here, but its tuple hashes to another core: steering failed
/// (it must not, by construction). Counted as `Softnet.WrongCore` so tests can assert zero,
/// and answered with nothing: a reset from the wrong core would kill the owner's connection
/// (mTCP's bug with SYN-ACKs landing on the wrong core).
fn tcp_wrong_core(stack: &mut Stack, t: &FourTuple) -> bool {
    if stack.nb_cores() <= 1 {
        return false;
    }
    let core = &stack.core;
    if core.l4_owner(t.raddr, t.laddr, t.rport, t.lport) == core.cpu {
        return false;
    }
    stack.core.mib.softnet.inc(blink_netcore::snmp::SoftnetMib::WrongCore);
    true
}

/// Linux: tcp_v4_send_reset(). A reset for a segment no socket wants.
pub fn tcp_v4_send_reset(stack: &mut Stack, t: &FourTuple, cb: &TcpSkbCb, payload_len: u32) {
    let (seq, ack, flags) = if cb.tcp_flags & TCPHDR_ACK != 0 {
        (cb.ack_seq, 0, TCPHDR_RST)
    } else {
        let syn = (cb.tcp_flags & TCPHDR_SYN != 0) as u32;
        let fin = (cb.tcp_flags & TCPHDR_FIN != 0) as u32;
        (0, cb.seq.wrapping_add(payload_len + syn + fin), TCPHDR_RST | TCPHDR_ACK)
    };
    stack.core.mib.tcp.inc(TcpMib::OutRsts);
    tcp_v4_send_stateless(stack, t, seq, ack, flags, 0, &TcpOptions::default());
}

impl InetProtocol for TcpProto {
    fn name(&self) -> &'static str {
        "tcp"
    }

    fn handler(&mut self, stack: &mut Stack, skb: SkBuff) {
        if skb.trace {
            stack.core.mib.trace_event(&skb, "tcp_v4_rcv", "");
        }
        self.tcp_v4_rcv(stack, skb);
    }

    /// The ACKs deferred to the end of the burst (tcp_input.rs: tcp_event_data_recv).
    fn flush(&mut self, stack: &mut Stack) {
        self.tcp_mem_wake(stack);
        let mut list = std::mem::take(&mut self.ack_backlog);
        for &h in &list {
            if let Some(sk) = self.socks.get_mut(h) {
                crate::tcp_input::tcp_ack_burst_flush(sk, stack);
            }
        }
        list.clear();
        self.ack_backlog = list;
    }

    /// Linux: tcp_v4_err(). A hard error (port/protocol unreachable) kills a connection still
    /// in SYN-SENT; others are soft errors TCP rides out (RFC 1122 4.2.3.9). "Fragmentation
    /// needed" (IPv4 has already lowered the path MTU) shrinks the MSS to fit the path and
    /// resends what no longer fits (Linux: tcp_v4_mtu_reduced).
    fn err_handler(&mut self, stack: &mut Stack, icmp_type: u8, code: u8, _info: u32, inner: &[u8]) {
        let ip = Ipv4Hdr::new_unchecked(inner);
        let hl = ip.header_len();
        if inner.len() < hl + 8 {
            return;
        }
        let th = &inner[hl..];
        let sport = u16::from_be_bytes([th[0], th[1]]);
        let dport = u16::from_be_bytes([th[2], th[3]]);
        let t = FourTuple {
            laddr: ip.src(),
            lport: sport,
            raddr: ip.dst(),
            rport: dport,
        };
        let Some(&h) = self.tables.ehash.get(&t) else { return };
        let hard = icmp_type == 3 && matches!(code, 2 | 3);
        if let Some(sk) = self.socks.get_mut(h) {
            // Linux: only about a segment in flight (OutOfWindowIcmps otherwise): a forged
            // ICMP must guess the window to shrink the MSS.
            let seq = u32::from_be_bytes([th[4], th[5], th[6], th[7]]);
            if icmp_type == 3 && code == 4 && between(seq, sk.snd_una, sk.snd_nxt) {
                crate::tcp_output::tcp_v4_mtu_reduced(sk, stack);
            }
            if sk.state == TcpState::SynSent && hard {
                sk.error = Some(TcpError::ConnectionRefused);
                crate::tcp::tcp_done(sk, stack);
            }
        }
        self.post_process(stack, h);
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
