//! TCP over IPv4: the per-core protocol instance, segment receive and socket lookup, resets,
//! active and passive open. Linux: net/ipv4/tcp_ipv4.c (`tcp_v4_rcv`, `tcp_v4_connect`,
//! `tcp_v4_send_reset`, `tcp_v4_syn_recv_sock`) and inet_connection_sock.c (listen/accept).

use std::any::Any;
use std::hash::{BuildHasher, Hasher};
use std::net::Ipv4Addr;

use arrayvec::ArrayVec;
use blink_ipv4::ip_output::{ip_build_and_send_pkt, IpTx};
use blink_ipv4::iphdr::{Ipv4Hdr, IPPROTO_TCP};
use blink_ipv4::{InetProtocol, Stack};
use blink_netcore::skbuff::{IpSummed, SkBuff, MAX_SKB_FRAGS};
use blink_netcore::snmp::{DropReason, TcpExtMib, TcpMib};
use blink_netcore::sock::{SockHandle, SockSlab};

use crate::inet_hashtables::{FourTuple, InetHashTables};
use crate::tcp::{ev, TcpError, TcpSkbCb, TcpSock, TcpState};
use crate::tcp_cong::cong_by_name;
use crate::tcp_input::{tcp_rcv_state_process, tcp_rcv_synsent};
use crate::tcp_minisocks::{TcpTimewaitSock, TwStatus};
use crate::tcp_output::{tcp_send_syn, tcp_send_synack};
use crate::tcp_timer::{TimerKind, TCP_TIMER_FN};
use crate::tcphdr::*;
use crate::{TcpConfig, TcpErr};

/// The TCP instance of one core: its sockets, hash tables and settings.
pub struct TcpProto {
    pub socks: SockSlab<TcpSock>,
    /// TIME-WAIT socks (tcp_minisocks.rs), hashed by tuple in `tables.twhash`.
    pub tw: SockSlab<TcpTimewaitSock>,
    pub tables: InetHashTables,
    pub cfg: TcpConfig,
    /// Sockets with events the application has not collected (each at most once).
    pub ready: Vec<SockHandle>,
    isn_key: std::collections::hash_map::RandomState,
    cookies: crate::syncookies::CookieSecret,
    next_port: u16,
}

/// Where the ephemeral-port search starts: a random point of the range (RFC 6056), so a new
/// process does not walk straight into the tuples its predecessor left in the peer's
/// TIME-WAIT.
fn random_port((lo, hi): (u16, u16)) -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    let span = (hi - lo) as u64 + 1;
    lo + (h.finish() % span) as u16
}

impl TcpProto {
    pub fn new(cfg: TcpConfig) -> TcpProto {
        TcpProto {
            socks: SockSlab::default(),
            tw: SockSlab::default(),
            tables: InetHashTables::default(),
            next_port: random_port(cfg.ephemeral_ports),
            cfg,
            ready: Vec::new(),
            isn_key: std::collections::hash_map::RandomState::new(),
            cookies: Default::default(),
        }
    }

    /// RFC 6528 initial sequence number: a keyed hash of the 4-tuple plus a clock ticking every
    /// 64 ns (Linux: secure_tcp_seq + the ns clock >> 6).
    fn isn(&self, t: &FourTuple, now_ns: u64) -> (u32, u32) {
        let mut h = self.isn_key.build_hasher();
        h.write_u32(u32::from(t.laddr));
        h.write_u32(u32::from(t.raddr));
        h.write_u16(t.lport);
        h.write_u16(t.rport);
        let v = h.finish();
        ((v as u32).wrapping_add((now_ns >> 6) as u32), (v >> 32) as u32)
    }

    fn new_sock(&self) -> TcpSock {
        let ca = cong_by_name(&self.cfg.congestion).unwrap_or_else(|| cong_by_name("cubic").expect("cubic exists"));
        let mut sk = TcpSock::new(ca, self.cfg.sndbuf, self.cfg.rcvbuf);
        sk.nodelay = self.cfg.nodelay;
        sk.rx_opt.rcv_wscale = self.cfg.rcv_wscale();
        // What we are willing to use; the handshake keeps what the peer offers too.
        sk.rx_opt.tstamp_ok = self.cfg.timestamps;
        sk.rx_opt.sack_ok = self.cfg.sack;
        sk.rx_opt.wscale_ok = self.cfg.window_scaling;
        sk.keepalive = self.cfg.keepalive;
        sk.timewait_ms = self.cfg.timewait_ms;
        sk.fin_timeout_ms = self.cfg.fin_timeout_ms;
        sk.tlp = self.cfg.tlp;
        sk
    }

    /// Allocate the socket's timers (freed in `destroy`).
    fn setup_timers(stack: &mut Stack, sk: &mut TcpSock, h: SockHandle) {
        let d = h.to_u56();
        sk.retransmit_timer = Some(stack.timers.timer_setup(TCP_TIMER_FN, TimerKind::Retransmit.data(d)));
        sk.delack_timer = Some(stack.timers.timer_setup(TCP_TIMER_FN, TimerKind::Delack.data(d)));
        sk.keepalive_timer = Some(stack.timers.timer_setup(TCP_TIMER_FN, TimerKind::Keepalive.data(d)));
    }

    /// After anything touched socket `h`: unhash it if it closed, destroy it if nobody holds
    /// it any more, and note pending events for the application.
    pub fn post_process(&mut self, stack: &mut Stack, h: SockHandle) {
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
                    let before = l.accept_queue.len();
                    l.accept_queue.retain(|&c| c != h);
                    // Not in the accept queue: it was still counted as a pending SYN.
                    if before == l.accept_queue.len() {
                        l.syn_pending = l.syn_pending.saturating_sub(1);
                    }
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
        if sk.ev_pending != 0 && !sk.orphan && !self.ready.contains(&h) {
            self.ready.push(h);
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
        if was_listener {
            // Connections still in the handshake are forgotten, as Linux drops its request
            // socks: the handshake's last ACK then finds no socket and gets a reset.
            let embryos: Vec<SockHandle> = self
                .socks
                .handles()
                .filter(|&c| self.socks.get(c).is_some_and(|s| s.parent == Some(h)))
                .collect();
            for c in embryos {
                if let Some(child) = self.socks.get_mut(c) {
                    child.parent = None;
                    child.orphan = true;
                    crate::tcp::tcp_done(child, stack);
                }
                self.post_process(stack, c);
            }
        }
        self.ready.retain(|&r| r != h);
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
            stack.core.mib.kfree_skb_reason(skb, DropReason::PktTooSmall);
            return;
        }
        let doff = TcpHdr::new_unchecked(skb.data()).header_len();
        if doff < TCP_HLEN_MIN || !skb.pskb_may_pull(doff) {
            stack.core.mib.tcp.inc(TcpMib::InErrs);
            stack.core.mib.kfree_skb_reason(skb, DropReason::PktTooSmall);
            return;
        }
        let (saddr, daddr) = {
            let ip = Ipv4Hdr::new_unchecked(skb.skb_network_header());
            (ip.src(), ip.dst())
        };
        if skb.ip_summed != IpSummed::Unnecessary {
            let ok = {
                let mut segs: ArrayVec<&[u8], { MAX_SKB_FRAGS + 1 }> = ArrayVec::new();
                segs.extend(skb.segments());
                tcp_v4_verify(saddr.octets(), daddr.octets(), &segs)
            };
            if !ok {
                stack.core.mib.tcp.inc(TcpMib::InCsumErrors);
                stack.core.mib.tcp.inc(TcpMib::InErrs);
                stack.core.mib.kfree_skb_reason(skb, DropReason::TcpCsum);
                return;
            }
        }
        if daddr.is_broadcast() || daddr.is_multicast() || stack.is_broadcast_addr(daddr) {
            stack.core.mib.kfree_skb_reason(skb, DropReason::NoSocket);
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
            self.post_process(stack, h);
            self.accept_ready(stack, h);
            return;
        }
        let mut tw_isn = None;
        if let Some(&twh) = self.tables.twhash.get(&t) {
            match self.tcp_timewait_rcv(stack, twh, &skb, &opts) {
                Some(isn) => tw_isn = Some(isn),
                None => {
                    drop(skb);
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
            drop(skb);
            return;
        }
        // No socket: answer with a reset (RFC 9293 3.10.7.1), never a reset to a reset.
        if cb.tcp_flags & TCPHDR_RST == 0 {
            tcp_v4_send_reset(stack, &t, &cb, skb.len() as u32);
        }
        stack.core.mib.kfree_skb_reason(skb, DropReason::NoSocket);
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
            stack.core.mib.kfree_skb_reason(skb, DropReason::NoSocket);
            return;
        }
        if flags & TCPHDR_ACK != 0 {
            // An ACK for a connection we do not have: a SYN cookie coming back, or garbage.
            if self.cfg.syncookies {
                self.cookie_ack(stack, l, t, skb, opts);
                return;
            }
            tcp_v4_send_reset(stack, &t, &cb, skb.len() as u32);
            stack.core.mib.kfree_skb_reason(skb, DropReason::NoSocket);
            return;
        }
        if flags & TCPHDR_SYN == 0 {
            stack.core.mib.kfree_skb_reason(skb, DropReason::NoSocket);
            return;
        }
        let (backlog, pending, queued) = {
            let ls = self.socks.get(l).expect("listener exists");
            let queued = ls.accept_queue.len() as u32;
            (ls.backlog, ls.syn_pending + queued, queued)
        };
        if queued >= backlog {
            // The accept queue itself is full: a cookie could not be accepted either, so the
            // SYN is dropped and the peer retries (Linux: tcp_conn_request, sk_acceptq_is_full).
            stack.core.mib.tcp_ext.inc(TcpExtMib::ListenOverflows);
            stack.core.mib.tcp_ext.inc(TcpExtMib::ListenDrops);
            stack.core.mib.kfree_skb_reason(skb, DropReason::SocketRcvBuff);
            return;
        }
        if pending >= backlog {
            if self.cfg.syncookies {
                // Backlog full: answer statelessly (Linux: tcp_syncookies = 1).
                let idx = crate::syncookies::mss_index(opts.mss.unwrap_or(536));
                let cookie = self
                    .cookies
                    .make(&t, cb.seq, crate::syncookies::cookie_minute(stack), idx);
                let mss = crate::syncookies::MSS_TABLE[idx as usize];
                let win = self.cfg.rcvbuf.min(65535) as u16;
                crate::syncookies::send_cookie_synack(stack, &t, cookie, cb.seq, mss, win);
                drop(skb);
                return;
            }
            stack.core.mib.tcp_ext.inc(TcpExtMib::ListenOverflows);
            stack.core.mib.tcp_ext.inc(TcpExtMib::ListenDrops);
            stack.core.mib.kfree_skb_reason(skb, DropReason::SocketRcvBuff);
            return;
        }
        let mut sk = self.new_child(stack, &t, cb.seq, cb.window, l, isn);
        sk.state = TcpState::SynRecv;
        crate::tcp_input::tcp_negotiate_options(&mut sk, stack, opts, &t);
        let Some(h) = self.socks.insert(sk) else {
            stack.core.mib.tcp_ext.inc(TcpExtMib::ListenDrops);
            stack.core.mib.kfree_skb_reason(skb, DropReason::NoMem);
            return;
        };
        self.tables.ehash.insert(t, h);
        self.tables.bind_ref(t.lport);
        let sk = self.socks.get_mut(h).expect("just inserted");
        Self::setup_timers(stack, sk, h);
        tcp_send_synack(sk, stack);
        crate::tcp_output::tcp_arm_rto(sk, stack, true);
        if let Some(ls) = self.socks.get_mut(l) {
            ls.syn_pending += 1;
        }
        drop(skb);
    }

    /// A connection born from listener `l` for a SYN with `peer_isn` (Linux:
    /// tcp_create_openreq_child).
    /// `isn` overrides the initial sequence number (a tuple taken over from TIME-WAIT).
    fn new_child(
        &self,
        stack: &Stack,
        t: &FourTuple,
        peer_isn: u32,
        window: u16,
        l: SockHandle,
        isn: Option<u32>,
    ) -> TcpSock {
        let mut sk = self.new_sock();
        sk.saddr = t.laddr;
        sk.sport = t.lport;
        sk.daddr = t.raddr;
        sk.dport = t.rport;
        let (mut iss, tsoff) = self.isn(t, stack.core.now_ns);
        if let Some(i) = isn {
            iss = i;
        }
        sk.iss = iss;
        sk.ts_offset = tsoff;
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
            stack.core.mib.kfree_skb_reason(skb, DropReason::NoSocket);
            return;
        };
        let (backlog, queued) = {
            let ls = self.socks.get(l).expect("listener exists");
            (ls.backlog, ls.accept_queue.len() as u32)
        };
        if queued >= backlog {
            // The accept queue itself is full: cookies cannot help (Linux drops the ACK).
            stack.core.mib.tcp_ext.inc(TcpExtMib::ListenOverflows);
            stack.core.mib.kfree_skb_reason(skb, DropReason::SocketRcvBuff);
            return;
        }
        stack.core.mib.tcp_ext.inc(TcpExtMib::SyncookiesRecv);
        let mut sk = self.new_child(stack, &t, peer_isn, cb.window, l, None);
        // The cookie was our ISN.
        let iss = cb.ack_seq.wrapping_sub(1);
        sk.iss = iss;
        sk.snd_una = cb.ack_seq;
        sk.snd_nxt = cb.ack_seq;
        sk.write_seq = cb.ack_seq;
        let mss = crate::syncookies::MSS_TABLE[idx as usize];
        sk.rx_opt = Default::default();
        sk.rx_opt.mss_clamp = mss;
        sk.mss_cache = mss as u32;
        // The window the cookie SYN-ACK announced (unscaled).
        sk.rcv_wnd = self.cfg.rcvbuf.min(65535);
        let _ = opts;
        let Some(h) = self.socks.insert(sk) else {
            stack.core.mib.kfree_skb_reason(skb, DropReason::NoMem);
            return;
        };
        self.tables.ehash.insert(t, h);
        self.tables.bind_ref(t.lport);
        let sk = self.socks.get_mut(h).expect("inserted");
        Self::setup_timers(stack, sk, h);
        crate::tcp::tcp_set_state(sk, stack, TcpState::Established);
        stack.core.mib.tcp.inc(TcpMib::PassiveOpens);
        sk.raise(crate::tcp::ev::CONNECTED | crate::tcp::ev::WRITABLE);
        if let Some(ls) = self.socks.get_mut(l) {
            // accept_ready moves it to the queue and undoes this count.
            ls.syn_pending += 1;
        }
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
            l.syn_pending = l.syn_pending.saturating_sub(1);
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
            if !self.ready.contains(&c) {
                self.ready.push(c);
            }
        }
        Ok(Some(c))
    }

    /// Linux: tcp_v4_connect(). Active open to `daddr:dport`.
    pub fn connect(&mut self, stack: &mut Stack, daddr: Ipv4Addr, dport: u16) -> Result<SockHandle, TcpErr> {
        if dport == 0 || daddr.is_unspecified() || daddr.is_broadcast() || daddr.is_multicast() {
            return Err(TcpErr::InvalidArgument("destination"));
        }
        let saddr = stack
            .fib
            .lookup(daddr)
            .map(|r| r.prefsrc)
            .ok_or(TcpErr::NoRoute(daddr))?;
        let (lport, tw_isn) = self.pick_ephemeral(stack, saddr, daddr, dport).ok_or(TcpErr::NoPorts)?;
        let t = FourTuple {
            laddr: saddr,
            lport,
            raddr: daddr,
            rport: dport,
        };
        let mut sk = self.new_sock();
        sk.saddr = saddr;
        sk.sport = lport;
        sk.daddr = daddr;
        sk.dport = dport;
        let (iss, tsoff) = self.isn(&t, stack.core.now_ns);
        let iss = tw_isn.unwrap_or(iss);
        sk.iss = iss;
        sk.ts_offset = tsoff;
        sk.snd_una = iss;
        sk.snd_nxt = iss.wrapping_add(1);
        sk.write_seq = iss.wrapping_add(1);
        sk.state = TcpState::SynSent;
        // The SYN-ACK's options settle the rest (tcp_negotiate_options).
        sk.advmss = crate::tcp_input::tcp_route(stack, daddr).0;
        sk.mss_cache = sk.advmss as u32;
        sk.rto_ms = crate::TCP_TIMEOUT_INIT_MS;
        let h = self.socks.insert(sk).ok_or(TcpErr::NoMemory)?;
        self.tables.ehash.insert(t, h);
        self.tables.bind_ref(lport);
        let sk = self.socks.get_mut(h).expect("inserted");
        Self::setup_timers(stack, sk, h);
        tcp_send_syn(sk, stack);
        crate::tcp_output::tcp_arm_rto(sk, stack, true);
        stack.core.mib.tcp.inc(TcpMib::ActiveOpens);
        Ok(h)
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
            if core.reta.nb_queues() > 1 {
                let hash = core.toeplitz.hash_ipv4_l4(daddr.octets(), saddr.octets(), dport, p);
                if core.reta.lookup(hash) != core.cpu {
                    continue;
                }
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
            TimerKind::TimeWait => {}
            TimerKind::Retransmit => crate::tcp_timer::tcp_retransmit_timer(sk, stack),
            TimerKind::Delack => crate::tcp_timer::tcp_delack_timer(sk, stack),
            TimerKind::Keepalive => crate::tcp_timer::tcp_keepalive_timer(sk, stack),
        }
        self.post_process(stack, h);
    }
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
    let Some(mut skb) = SkBuff::alloc(&mut stack.core.cache) else {
        stack.core.mib.drops.inc(DropReason::NoMem);
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
        ttl: None,
        tos: 0,
        df: true,
    };
    ip_build_and_send_pkt(stack, skb, tx).is_ok()
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
        self.tcp_v4_rcv(stack, skb);
    }

    /// Linux: tcp_v4_err(). A hard error (port/protocol unreachable) kills a connection still
    /// in SYN-SENT; others are soft errors TCP rides out (RFC 1122 4.2.3.9).
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
