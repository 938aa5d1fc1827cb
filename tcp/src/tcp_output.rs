//! TCP output. Linux: net/ipv4/tcp_output.c (`tcp_transmit_skb`, `tcp_write_xmit`,
//! `tcp_select_window`, `tcp_send_ack`, `tcp_connect`, `tcp_send_synack`, `tcp_send_fin`,
//! `tcp_retransmit_skb`, `tcp_xmit_retransmit_queue`, `tcp_send_probe0`).
//!
//! Every segment is a small header skb whose linear area holds the TCP header (IP and Ethernet
//! are pushed in front of it) and whose fragments reference the payload buffers held in the
//! write or retransmit queue: data is never copied on transmit or retransmit.

use arrayvec::ArrayVec;
use blink_ipv4::ip_output::{ip_queue_xmit, IpTx};
use blink_ipv4::iphdr::IPPROTO_TCP;
use blink_ipv4::Stack;
use blink_netcore::checksum::{csum_fold, pseudo_header_ipv4};
use blink_netcore::skbuff::{Frag, IpSummed, SkBuff};
use blink_netcore::snmp::{DropReason, TcpMib};

use crate::tcp::{TcpSkbCb, TcpSock, TcpState, TCPCB_LOST, TCPCB_SACKED_ACKED, TCPCB_SACKED_RETRANS};
use crate::tcp_timer;
use crate::tcphdr::*;

/// Most payload references one segment carries: a segment is at most one MSS of 2 KiB mbufs
/// the application filled, so a few; 17 as Linux's MAX_SKB_FRAGS. Smaller than the skb's own
/// fragment array because this array is passed by value on every transmit.
pub const TCP_PAYLOAD_FRAGS: usize = 17;

/// Payload references of one segment (moved into the header skb's fragments).
pub type PayloadFrags = ArrayVec<Frag, TCP_PAYLOAD_FRAGS>;

/// The payload of a queued segment as fragments: its linear area, then its own fragments.
pub fn payload_frags(p: &SkBuff) -> PayloadFrags {
    let mut v = PayloadFrags::new();
    if p.headlen() > 0 {
        v.push(Frag::new(p.head_mbuf().clone(), p.data_offset(), p.headlen()).expect("inside the buffer"));
    }
    for f in p.frags() {
        if v.is_full() {
            break;
        }
        v.push(f.clone());
    }
    v
}

/// Our timestamp clock: milliseconds (Linux: tcp_time_stamp_ts, 1 kHz) plus the per-connection
/// offset.
#[inline]
pub fn tcp_time_stamp(sk: &TcpSock, stack: &Stack) -> u32 {
    (stack.core.jiffies as u32).wrapping_add(sk.ts_offset)
}

/// Linux: __tcp_select_window() + tcp_select_window(). The window to advertise, scaled; never
/// moves the right edge left, and avoids silly windows (less than an MSS of free space).
pub fn tcp_select_window(sk: &mut TcpSock) -> u16 {
    let queued = sk.receive_queue.bytes() as u32 + sk.ooo_queue.iter().map(|s| s.len() as u32).sum::<u32>();
    let mut free = sk.rcvbuf.saturating_sub(queued);
    let mss = sk.mss_cache.max(536);
    if free < mss.min(sk.rcvbuf / 2) {
        free = 0;
    }
    let shift = if sk.rx_opt.wscale_ok { sk.rx_opt.rcv_wscale } else { 0 };
    let max = 65535u32 << shift;
    let mut win = free.min(max);
    // Round down to the scale granularity so the advertised value is exact.
    win &= !((1u32 << shift) - 1);
    // Never shrink: the right edge rcv_wup + rcv_wnd may not move left.
    let cur = sk.rcv_wnd.saturating_sub(sk.rcv_nxt.wrapping_sub(sk.rcv_wup));
    if win < cur {
        win = (cur + (1 << shift) - 1) & !((1u32 << shift) - 1);
    }
    sk.rcv_wnd = win;
    sk.rcv_wup = sk.rcv_nxt;
    (win >> shift).min(65535) as u16
}

/// Options for a segment of this connection carrying `payload` bytes (SYN segments are built
/// by their own callers). SACK blocks only go in while the segment still fits the peer's MSS
/// (Linux shrinks the MSS for them in tcp_current_mss; blink sends fewer blocks instead).
fn established_options(sk: &TcpSock, stack: &Stack, payload: usize) -> TcpOptions {
    let mut o = TcpOptions::default();
    let mut room = (sk.rx_opt.mss_clamp.max(536) as usize).saturating_sub(payload);
    if sk.pmtu_cookie != 0 {
        // A narrow path: options may not push the segment past its MTU (DF is set).
        room = room.min((sk.pmtu_cookie as usize).saturating_sub(40 + payload));
    }
    if sk.rx_opt.tstamp_ok {
        o.ts = Some((tcp_time_stamp(sk, stack), sk.rx_opt.ts_recent));
        room = room.saturating_sub(12);
    }
    if sk.rx_opt.sack_ok && (sk.num_sacks > 0 || sk.dsack) {
        let fit = room.saturating_sub(4) / 8;
        let mut n = 0;
        if sk.dsack && fit > 0 {
            // The D-SACK block goes first (RFC 2883 4).
            o.sack[0] = sk.duplicate_sack;
            n = 1;
        }
        let k = (sk.num_sacks as usize).min(4 - n).min(fit.saturating_sub(n));
        o.sack[n..n + k].copy_from_slice(&sk.selective_acks[..k]);
        o.num_sacks = (n + k) as u8;
    }
    o
}

/// Linux: tcp_transmit_skb(). Build one segment (header + referenced payload) and send it.
/// `window` None computes the window; SYNs pass their unscaled window.
#[allow(clippy::too_many_arguments)]
pub fn tcp_transmit(
    sk: &mut TcpSock,
    stack: &mut Stack,
    payload: &mut PayloadFrags,
    seq: u32,
    flags: u8,
    opts: &TcpOptions,
    window: Option<u16>,
) -> bool {
    // By reference and drained in place: moving the array (into this function, the closure or
    // an iterator) copies all of it, for every segment, empty or not.
    __tcp_transmit(
        sk,
        stack,
        &mut |h| {
            for f in payload.drain(..) {
                // Cannot overflow: payload frags are at most TCP_PAYLOAD_FRAGS < MAX_SKB_FRAGS.
                let _ = h.skb_add_frag(f);
            }
        },
        seq,
        flags,
        opts,
        window,
    )
}

/// Reference the payload of queued segment `p` from header skb `h` (its linear area, then
/// its fragments), sharing the buffers by refcount. The per-segment form of
/// [`payload_frags`], without the intermediate array.
fn add_payload_refs(h: &mut SkBuff, p: &SkBuff) {
    if !p.is_nonlinear() && p.headlen() <= TCP_COPY_SMALL && p.headlen() > 0 {
        // A small payload in the stack's own buffer (what tcp_sendmsg copied in) is copied
        // behind the header instead of referenced: a few words of copying cost less than a
        // fragment (a reference taken and dropped, a second checksum segment, a two-mbuf
        // frame for the receiver). Zero-copy payloads (the application's or a NIC's mbufs,
        // attached as fragments) are never copied.
        if let Some(dst) = h.skb_put(p.headlen()) {
            dst.copy_from_slice(p.data());
            return;
        }
    }
    if p.headlen() > 0 {
        let f = Frag::new(p.head_mbuf().clone(), p.data_offset(), p.headlen()).expect("inside the buffer");
        let _ = h.skb_add_frag(f);
    }
    for f in p.frags() {
        if h.skb_add_frag(f.clone()).is_err() {
            break;
        }
    }
}

/// Payloads up to this many bytes in the stack's own buffer are copied into the segment
/// rather than referenced (see `add_payload_refs`).
const TCP_COPY_SMALL: usize = 128;

/// The body of tcp_transmit: `add_payload` attaches the payload to the fresh header skb.
/// One copy for every caller (a `dyn` closure, not a generic one, and never inlined): a
/// connection's life sends through both callers (its data through tcp_write_xmit, its SYN,
/// ACKs and FIN through tcp_transmit), and two copies of this ~2 KB of code per connection
/// were instruction-cache misses, the larger part of crr's cost (apps/BENCHMARKS.md).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn __tcp_transmit(
    sk: &mut TcpSock,
    stack: &mut Stack,
    add_payload: &mut dyn FnMut(&mut SkBuff),
    seq: u32,
    flags: u8,
    opts: &TcpOptions,
    window: Option<u16>,
) -> bool {
    let Some(mut skb) = SkBuff::alloc(&mut stack.core.cache) else {
        stack.core.mib.drop_count(DropReason::NoMem);
        return false;
    };
    let win = match window {
        Some(w) => w,
        None => tcp_select_window(sk),
    };
    let ack = if flags & TCPHDR_ACK != 0 { sk.rcv_nxt } else { 0 };
    let hlen = TCP_HLEN_MIN + opts.len();
    let Some(h) = skb.skb_put(hlen) else {
        stack.core.kfree_skb_reason(skb, DropReason::NoMem);
        return false;
    };
    tcp_build_header(h, sk.sport, sk.dport, seq, ack, flags, win, opts);
    let hsum = if sk.tx_csum_offload {
        None
    } else {
        tcp_header_sum(sk.sport, sk.dport, seq, ack, flags, win, opts)
    };
    add_payload(&mut skb);
    let csum = if sk.tx_csum_offload {
        // CHECKSUM_PARTIAL (Linux: tcp_v4_send_check with hardware checksumming): the field
        // holds the pseudo-header sum and the device adds the segment's sum to it.
        skb.ip_summed = IpSummed::Partial;
        let p = pseudo_header_ipv4(sk.saddr.octets(), sk.daddr.octets(), IPPROTO_TCP, skb.len() as u16);
        !csum_fold(p)
    } else if let Some(hsum) = hsum {
        tcp_v4_check_skb_hsum(sk.saddr.octets(), sk.daddr.octets(), &skb, hlen, hsum)
    } else {
        tcp_v4_check_skb(sk.saddr.octets(), sk.daddr.octets(), &skb)
    };
    skb.data_mut().expect("fresh header skb")[16..18].copy_from_slice(&csum.to_be_bytes());
    skb.skb_reset_transport_header();
    stack.core.mib.tcp.inc(TcpMib::OutSegs);
    if flags & TCPHDR_ACK != 0 {
        sk.ack_pending = false;
        sk.rcv_segs_since_ack = 0;
        if let Some(t) = sk.delack_timer {
            stack.timers.del_timer(t);
        }
    }
    let tx = IpTx {
        src: Some(sk.saddr),
        dst: sk.daddr,
        protocol: IPPROTO_TCP,
        ttl: sk.ttl,
        tos: sk.tos,
        df: true,
        id: Some(sk.inet_id),
    };
    // Linux: ip_select_ident_segs, `inet_id += segs` (one segment each here).
    sk.inet_id = sk.inet_id.wrapping_add(1);
    // Linux: ip_queue_xmit() with the socket's cached route (sk_dst_cache).
    ip_queue_xmit(stack, skb, tx, &mut sk.dst).is_ok()
}

/// Linux: tcp_send_ack(). A bare ACK carrying the current window (and SACK blocks).
pub fn tcp_send_ack(sk: &mut TcpSock, stack: &mut Stack) {
    if matches!(sk.state, TcpState::Closed | TcpState::Listen | TcpState::SynSent) {
        return;
    }
    let opts = established_options(sk, stack, 0);
    let seq = sk.snd_nxt;
    tcp_transmit(sk, stack, &mut PayloadFrags::new(), seq, TCPHDR_ACK, &opts, None);
    // A D-SACK is reported once (Linux clears rx_opt.dsack in tcp_options_write).
    sk.dsack = false;
}

/// Linux: tcp_send_delayed_ack(). Owe an ACK; send it within the delayed-ACK time unless data
/// or another segment carries it first.
pub fn tcp_send_delayed_ack(sk: &mut TcpSock, stack: &mut Stack) {
    sk.ack_pending = true;
    if let Some(t) = sk.delack_timer {
        if !stack.timers.timer_pending(t) {
            // Linux's ato starts at TCP_ATO_MIN (40 ms) and stays there for a steady
            // receiver; it is not scaled with the RTT (only bounded by it when larger).
            let ato = crate::TCP_DELACK_MIN_MS;
            stack.timers.mod_timer(t, stack.core.jiffies + ato);
        }
    }
}

/// SYN options: MSS, SACK permitted, timestamps, window scale (Linux: tcp_syn_options).
fn syn_options(sk: &TcpSock, stack: &Stack, synack: bool) -> TcpOptions {
    syn_options_from(&sk.rx_opt, sk.advmss, tcp_time_stamp(sk, stack), synack)
}

/// SYN / SYN-ACK options from `rx` (shared with request socks). Before the handshake `rx`
/// holds what TcpConfig allows, so a SYN offers exactly that; for a SYN-ACK it has been
/// negotiated down to what the peer's SYN offered too.
pub fn syn_options_from(rx: &crate::tcp::RxOpt, advmss: u16, tsval: u32, synack: bool) -> TcpOptions {
    TcpOptions {
        mss: Some(advmss),
        sack_ok: rx.sack_ok,
        ts: rx.tstamp_ok.then_some((tsval, if synack { rx.ts_recent } else { 0 })),
        wscale: rx.wscale_ok.then_some(rx.rcv_wscale),
        ..Default::default()
    }
}

/// The receive window a SYN or SYN-ACK announces (never scaled, RFC 7323 2.2).
fn syn_window(sk: &mut TcpSock) -> u16 {
    sk.rcv_wnd = sk.rcvbuf.min(65535);
    sk.rcv_wup = sk.rcv_nxt;
    sk.rcv_wnd as u16
}

/// Linux: tcp_connect() / tcp_transmit_skb of the SYN. (Retransmissions call it again.)
pub fn tcp_send_syn(sk: &mut TcpSock, stack: &mut Stack) {
    // Retransmitted SYNs keep every option, as in Linux (dropping them would cost the whole
    // connection window scaling, SACK and timestamps after two lost SYNs).
    let opts = syn_options(sk, stack, false);
    sk.syn_stamp_ns.get_or_insert(stack.core.now_ns);
    let win = syn_window(sk);
    let iss = sk.iss;
    tcp_transmit(sk, stack, &mut PayloadFrags::new(), iss, TCPHDR_SYN, &opts, Some(win));
}

/// Linux: tcp_send_synack() / tcp_make_synack().
pub fn tcp_send_synack(sk: &mut TcpSock, stack: &mut Stack) {
    let opts = syn_options(sk, stack, true);
    sk.syn_stamp_ns.get_or_insert(stack.core.now_ns);
    let win = syn_window(sk);
    let iss = sk.iss;
    tcp_transmit(
        sk,
        stack,
        &mut PayloadFrags::new(),
        iss,
        TCPHDR_SYN | TCPHDR_ACK,
        &opts,
        Some(win),
    );
}

/// Linux: tcp_send_active_reset(). RST from a connection we abort.
pub fn tcp_send_active_reset(sk: &mut TcpSock, stack: &mut Stack) {
    let seq = sk.snd_nxt;
    stack.core.mib.tcp.inc(TcpMib::OutRsts);
    tcp_transmit(
        sk,
        stack,
        &mut PayloadFrags::new(),
        seq,
        TCPHDR_RST | TCPHDR_ACK,
        &TcpOptions::default(),
        Some(0),
    );
}

/// Linux: tcp_send_fin(). Queue a FIN after all queued data.
pub fn tcp_send_fin(sk: &mut TcpSock, stack: &mut Stack) {
    if sk.fin_queued {
        return;
    }
    sk.fin_queued = true;
    let Some(mut skb) = SkBuff::alloc(&mut stack.core.cache) else {
        // Without a buffer the FIN is queued later: by the next tcp_write_xmit (an ACK), or
        // by the retransmission timer, armed here in case nothing else is in flight.
        stack.core.mib.drop_count(DropReason::NoMem);
        sk.fin_queued = false;
        tcp_arm_rto(sk, stack, false);
        return;
    };
    let cb = skb.cb_mut::<TcpSkbCb>();
    cb.seq = sk.write_seq;
    cb.end_seq = sk.write_seq.wrapping_add(1);
    cb.tcp_flags = TCPHDR_FIN | TCPHDR_ACK;
    sk.write_seq = sk.write_seq.wrapping_add(1);
    sk.write_queue.skb_queue_tail(skb);
    tcp_write_xmit(sk, stack, true);
}

/// Arm the retransmission timer if it is idle (Linux: inet_csk_reset_xmit_timer on the first
/// segment in flight).
pub fn tcp_arm_rto(sk: &mut TcpSock, stack: &mut Stack, force: bool) {
    if let Some(t) = sk.retransmit_timer {
        if force || !stack.timers.timer_pending(t) || sk.probe0 {
            sk.probe0 = false;
            sk.icsk_pending = crate::tcp_recovery::XmitTimer::Retrans;
            stack.timers.mod_timer(t, stack.core.jiffies + sk.rto_backed_off_ms());
        }
    }
}

/// Linux: tcp_write_xmit(). Send queued segments while the congestion window, the peer's
/// window and Nagle allow. `push` sends small segments regardless of Nagle and cork (the
/// kernel's TCP_NAGLE_PUSH, used for the FIN and explicit pushes).
pub fn tcp_write_xmit(sk: &mut TcpSock, stack: &mut Stack, push: bool) {
    if !matches!(
        sk.state,
        TcpState::Established | TcpState::CloseWait | TcpState::FinWait1 | TcpState::Closing | TcpState::LastAck
    ) {
        return;
    }
    if !sk.fin_queued && matches!(sk.state, TcpState::FinWait1 | TcpState::Closing | TcpState::LastAck) {
        // A FIN that found no buffer when it was due (tcp_send_fin): queue it now, behind
        // the data (tcp_send_fin transmits).
        tcp_send_fin(sk, stack);
        if sk.fin_queued {
            return;
        }
        // Still no buffer: the data queued before it goes on as usual, and a closed window
        // is probed (and given up on). Returning here left an orphan whose own unsent data
        // held the pool empty under a zero window: no FIN, no probe, no end (fuzz finding).
    }
    let mss = tcp_current_mss(sk, stack);
    let prior_packets = sk.packets_out;
    let mut sent_any = false;
    while let Some(head) = sk.write_queue.skb_peek() {
        let cb = *head.cb::<TcpSkbCb>();
        let len = head.len() as u32;
        let fin = cb.tcp_flags & TCPHDR_FIN != 0;
        if sk.packets_in_flight() >= sk.cong.cwnd {
            break;
        }
        // Peer's window (tcp_snd_wnd_test): a FIN may go beyond it.
        let data_end = cb.end_seq.wrapping_sub(fin as u32);
        if after(data_end, sk.snd_una.wrapping_add(sk.snd_wnd)) {
            if sk.packets_out == 0 {
                // Zero (or too small) window with nothing in flight: probe it.
                tcp_timer::tcp_arm_probe0(sk, stack);
            }
            break;
        }
        // Nagle and cork: hold a small segment while an earlier small segment is
        // unacknowledged (Minshall's variant, Linux: tcp_nagle_check + tcp_minshall_check),
        // unless it is the last thing we will send for a while (push).
        let is_last = sk.write_queue.len() == 1;
        let small_in_flight = after(sk.snd_sml, sk.snd_una) && !after(sk.snd_sml, sk.snd_nxt);
        if len < mss && !fin && !push && (sk.cork || (!sk.nodelay && sk.packets_out > 0 && small_in_flight)) {
            break;
        }
        let mut skb = sk.write_queue.skb_dequeue().expect("peeked");
        let mut flags = TCPHDR_ACK;
        if fin {
            flags |= TCPHDR_FIN;
        }
        if (is_last && len > 0) || cb.tcp_flags & TCPHDR_PSH != 0 {
            flags |= TCPHDR_PSH;
        }
        if len > mss {
            // Queued before an ICMP lowered the MSS: out in MSS-sized pieces.
            tcp_transmit_pieces(sk, stack, &skb, cb.seq, flags);
        } else {
            let opts = established_options(sk, stack, len as usize);
            __tcp_transmit(
                sk,
                stack,
                &mut |h| add_payload_refs(h, &skb),
                cb.seq,
                flags,
                &opts,
                None,
            );
        }
        {
            let c = skb.cb_mut::<TcpSkbCb>();
            c.tx_count = 1;
            c.when_ns = stack.core.now_ns;
            c.tcp_flags = flags;
        }
        if after(cb.end_seq, sk.snd_nxt) {
            sk.snd_nxt = cb.end_seq;
        }
        if len < mss {
            // Linux: tcp_minshall_update().
            sk.snd_sml = cb.end_seq;
        }
        sk.packets_out += 1;
        sk.rtx_queue.push_back(skb);
        sent_any = true;
    }
    if sent_any {
        // The first segment in flight starts a fresh RTO, whatever the timer was doing (a
        // zero-window probe) (Linux: tcp_event_new_data_sent).
        tcp_arm_rto(sk, stack, prior_packets == 0);
        // One loss probe per tail (Linux: tcp_schedule_loss_probe at the end of
        // tcp_write_xmit).
        crate::tcp_recovery::tcp_schedule_loss_probe(sk, stack, false);
    }
}

/// Linux: tcp_write_wakeup(). The probe timer found the peer's window open but too small for
/// the next segment (so tcp_write_xmit holds it): split off what fits and send it, as Linux
/// does, rather than probe a window that will never grow by itself. False when nothing fits.
pub fn tcp_write_wakeup(sk: &mut TcpSock, stack: &mut Stack) -> bool {
    let wnd_end = sk.snd_una.wrapping_add(sk.snd_wnd);
    let Some(head) = sk.write_queue.skb_peek() else {
        return false;
    };
    let cb = *head.cb::<TcpSkbCb>();
    if !before(cb.seq, wnd_end) || cb.tcp_flags & TCPHDR_FIN != 0 {
        return false;
    }
    let fits = wnd_end.wrapping_sub(cb.seq) as usize;
    if fits < head.len() {
        // A copy, not a clone: the rest stays the sole owner of its buffer, so tcp_sendmsg
        // may still append to it. This path is rare.
        let Some(mut part) = SkBuff::alloc(&mut stack.core.cache) else {
            return false;
        };
        let Some(dst) = part.skb_put(fits) else { return false };
        head.skb_copy_bits(0, dst);
        let c = part.cb_mut::<TcpSkbCb>();
        *c = cb;
        c.end_seq = cb.seq.wrapping_add(fits as u32);
        c.tcp_flags = TCPHDR_ACK | TCPHDR_PSH;
        let mut rest = sk.write_queue.skb_dequeue().expect("peeked");
        rest.pskb_pull(fits);
        rest.cb_mut::<TcpSkbCb>().seq = cb.seq.wrapping_add(fits as u32);
        sk.write_queue.skb_queue_head(rest);
        sk.write_queue.skb_queue_head(part);
    }
    let before_nxt = sk.snd_nxt;
    tcp_write_xmit(sk, stack, true);
    sk.snd_nxt != before_nxt
}

/// Linux: tcp_current_mss(). The MSS to send with now: lowered first if the path MTU towards
/// the peer went down since it was last synced (an ICMP about another connection to the same
/// host, or about a segment outside our window, lowers it for everyone). The exception is one
/// `is_empty` test when no path is narrow.
#[inline]
pub fn tcp_current_mss(sk: &mut TcpSock, stack: &Stack) -> u32 {
    if let Some(pmtu) = stack.fib.pmtu(sk.daddr, stack.core.jiffies) {
        if sk.pmtu_cookie == 0 || pmtu < sk.pmtu_cookie as usize {
            crate::tcp_input::tcp_sync_mss(sk, pmtu);
        }
    }
    sk.mss_cache
}

/// Linux: tcp_retransmit_skb(). Resend segment `i` of the retransmit queue.
pub fn tcp_retransmit_skb(sk: &mut TcpSock, stack: &mut Stack, i: usize) -> bool {
    tcp_current_mss(sk, stack);
    let (cb, len) = {
        let skb = &sk.rtx_queue[i];
        (*skb.cb::<TcpSkbCb>(), skb.len())
    };
    let flags = (cb.tcp_flags & (TCPHDR_FIN | TCPHDR_PSH)) | TCPHDR_ACK;
    if len > sk.mss_cache as usize {
        // Queued before the path MTU went down (Linux splits the skb with tcp_fragment();
        // blink keeps the queue entry whole and sends it as several segments). A clone (one
        // mbuf of metadata, no data) lets the entry stay queued while `sk` is lent out; only
        // after an MSS reduction.
        let skb = sk.rtx_queue[i].skb_clone(&mut stack.core.cache);
        let Some(skb) = skb else {
            stack.core.mib.drop_count(DropReason::NoMem);
            return false;
        };
        let n = tcp_transmit_pieces(sk, stack, &skb, cb.seq, flags);
        if n == 0 {
            return false;
        }
        stack.core.mib.tcp.add(TcpMib::RetransSegs, n);
    } else {
        let mut frags = payload_frags(&sk.rtx_queue[i]);
        // The segment may start below snd_una if it was partially acknowledged; the receiver
        // trims the overlap.
        let opts = established_options(sk, stack, len);
        if !tcp_transmit(sk, stack, &mut frags, cb.seq, flags, &opts, None) {
            return false;
        }
        stack.core.mib.tcp.inc(TcpMib::RetransSegs);
    }
    if sk.undo.marker.is_some() {
        // Undo bookkeeping (Linux: tcp_retransmit_skb): count the episode's retransmissions,
        // and stamp the first one for the Eifel check.
        sk.undo.retrans = sk.undo.retrans.max(0) + 1;
        // Full: later D-SACKs below snd_una are not recognised and this episode is not undone.
        let _ = sk.undo.retrans_ends.try_push(cb.end_seq);
        if sk.undo.retrans_stamp.is_none() {
            sk.undo.retrans_stamp = Some(tcp_time_stamp(sk, stack));
        }
    }
    let now = stack.core.now_ns;
    let c = sk.rtx_queue[i].cb_mut::<TcpSkbCb>();
    c.tx_count = c.tx_count.saturating_add(1);
    c.when_ns = now;
    if c.sacked & TCPCB_SACKED_RETRANS == 0 {
        c.sacked |= TCPCB_SACKED_RETRANS;
        sk.retrans_out += 1;
    }
    true
}

/// Send queued segment `p` (sequence `seq`, `flags` for the whole) as segments of at most one
/// MSS, each referencing its slice of `p`'s buffers; FIN and PSH ride on the last. Returns the
/// segments sent (stops at the first failure).
fn tcp_transmit_pieces(sk: &mut TcpSock, stack: &mut Stack, p: &SkBuff, seq: u32, flags: u8) -> u64 {
    let (len, mss) = (p.len(), (sk.mss_cache as usize).max(1));
    let mut off = 0;
    let mut sent = 0;
    while off < len {
        let n = mss.min(len - off);
        let last = off + n == len;
        let f = if last {
            flags
        } else {
            flags & !(TCPHDR_FIN | TCPHDR_PSH)
        };
        let opts = established_options(sk, stack, n);
        let mut frags = payload_frags_range(p, off, n);
        if !tcp_transmit(sk, stack, &mut frags, seq.wrapping_add(off as u32), f, &opts, None) {
            break;
        }
        sent += 1;
        off += n;
    }
    sent
}

/// `n` bytes of `p`'s payload from `off`, as fragments referencing its buffers.
fn payload_frags_range(p: &SkBuff, mut off: usize, mut n: usize) -> PayloadFrags {
    let mut v = PayloadFrags::new();
    let lin = (p.headlen() > 0).then(|| (p.head_mbuf(), p.data_offset(), p.headlen()));
    let rest = p.frags().iter().map(|f| (f.mbuf(), f.offset(), f.len()));
    for (m, base, len) in lin.into_iter().chain(rest) {
        if n == 0 || v.is_full() {
            break;
        }
        if off >= len {
            off -= len;
            continue;
        }
        let take = (len - off).min(n);
        if let Some(f) = Frag::new(m.clone(), base + off, take) {
            v.push(f);
        }
        n -= take;
        off = 0;
    }
    v
}

/// Linux: tcp_v4_mtu_reduced() + tcp_simple_retransmit(). The path MTU to the peer went
/// down: lower the MSS to fit it, and resend at once (not at the RTO) every segment in flight
/// that is now too big, since the router dropped it. Congestion state is left alone: this
/// is not congestion. The MSS never rises here.
pub fn tcp_v4_mtu_reduced(sk: &mut TcpSock, stack: &mut Stack) {
    if matches!(sk.state, TcpState::Closed | TcpState::Listen) {
        return;
    }
    let Some(pmtu) = stack.fib.pmtu(sk.daddr, stack.core.jiffies) else {
        return;
    };
    if sk.pmtu_cookie != 0 && sk.pmtu_cookie as usize <= pmtu {
        return;
    }
    if !crate::tcp_input::tcp_sync_mss(sk, pmtu) {
        return;
    }
    let mss = sk.mss_cache as usize;
    let mut marked = false;
    for skb in sk.rtx_queue.iter_mut() {
        let too_big = skb.len() > mss;
        let c = skb.cb_mut::<TcpSkbCb>();
        if too_big && c.sacked & TCPCB_SACKED_ACKED == 0 {
            if c.sacked & TCPCB_SACKED_RETRANS != 0 {
                c.sacked &= !TCPCB_SACKED_RETRANS;
                sk.retrans_out = sk.retrans_out.saturating_sub(1);
            }
            if c.sacked & TCPCB_LOST == 0 {
                c.sacked |= TCPCB_LOST;
                sk.lost_out += 1;
            }
            marked = true;
        }
    }
    if marked {
        tcp_xmit_retransmit_queue(sk, stack);
    }
}

/// Linux: tcp_xmit_retransmit_queue(). Resend segments marked lost while the pipe allows.
pub fn tcp_xmit_retransmit_queue(sk: &mut TcpSock, stack: &mut Stack) {
    let mut i = 0;
    while i < sk.rtx_queue.len() {
        if sk.packets_in_flight() >= sk.cong.cwnd {
            break;
        }
        let s = sk.rtx_queue[i].cb::<TcpSkbCb>().sacked;
        if s & TCPCB_LOST != 0
            && s & (TCPCB_SACKED_ACKED | TCPCB_SACKED_RETRANS) == 0
            && !tcp_retransmit_skb(sk, stack, i)
        {
            break;
        }
        i += 1;
    }
}

/// Linux: tcp_send_probe0() / tcp_xmit_probe_skb(). A zero-window probe: an ACK with a
/// sequence number the peer has already seen, which it must answer with its window.
pub fn tcp_send_probe0(sk: &mut TcpSock, stack: &mut Stack) {
    let opts = established_options(sk, stack, 0);
    let seq = sk.snd_una.wrapping_sub(1);
    tcp_transmit(sk, stack, &mut PayloadFrags::new(), seq, TCPHDR_ACK, &opts, None);
}
