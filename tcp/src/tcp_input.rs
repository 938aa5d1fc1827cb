//! TCP input. Linux: net/ipv4/tcp_input.c (`tcp_rcv_state_process`, `tcp_rcv_synsent_state_process`,
//! `tcp_ack`, `tcp_sacktag_write_queue`, `tcp_fastretrans_alert`, `tcp_data_queue`,
//! `tcp_ofo_queue`, `tcp_fin`, `tcp_rtt_estimator`, `tcp_validate_incoming`).

use blink_ipv4::Stack;
use blink_netcore::skbuff::SkBuff;
use blink_netcore::snmp::{DropReason, TcpExtMib, TcpMib};

use crate::inet_hashtables::FourTuple;
use crate::tcp::*;
use crate::tcp_cong::{CaState, CongestionOps};
use crate::tcp_output::*;
use crate::tcp_recovery::*;
use crate::tcphdr::*;

/// Settle MSS, window scaling, timestamps and SACK from a SYN (passive side) or SYN-ACK.
pub fn tcp_negotiate_options(sk: &mut TcpSock, stack: &Stack, o: &TcpOptions, t: &FourTuple) {
    // Decided once per connection, not per segment: the route (and its device) is fixed.
    (sk.advmss, sk.tx_csum_offload) = tcp_route(stack, t.raddr);
    if sk.user_mss != 0 {
        // TCP_MAXSEG (Linux: tcp_connect_init / tcp_openreq_init_rwin clamp to user_mss).
        sk.advmss = sk.advmss.min(sk.user_mss);
    }
    tcp_negotiate_rx_opt(&mut sk.rx_opt, o, stack.core.jiffies);
    sk.mss_cache = tcp_mss_cache(&sk.rx_opt, sk.advmss);
    // A path MTU learnt from an earlier connection still holds (Linux: tcp_sync_mss with
    // dst_mtu at connect time); the MSS we announce stays the device's.
    if let Some(pmtu) = stack.fib.pmtu(t.raddr, stack.core.jiffies) {
        tcp_sync_mss(sk, pmtu);
    }
}

/// Linux: tcp_sync_mss() for a lower path MTU: the payload a segment may carry on a path of
/// `pmtu` bytes (less the IP and TCP headers and the timestamp option every segment carries),
/// never more than the MSS negotiated, never below 48 bytes (Linux: TCP_MIN_SND_MSS).
/// Returns true when the MSS went down.
pub fn tcp_sync_mss(sk: &mut TcpSock, pmtu: usize) -> bool {
    let mut mss = pmtu.saturating_sub(40) as u32;
    if sk.rx_opt.tstamp_ok {
        mss = mss.saturating_sub(12);
    }
    let mss = mss.max(48);
    sk.pmtu_cookie = pmtu as u32;
    if mss >= sk.mss_cache {
        return false;
    }
    sk.mss_cache = mss;
    true
}

/// The payload a full segment carries: the smaller of the peer's MSS and ours, less the
/// timestamp option that every segment carries when negotiated (12 bytes).
pub fn tcp_mss_cache(rx: &crate::tcp::RxOpt, advmss: u16) -> u32 {
    let mss = rx.mss_clamp.min(advmss) as u32;
    if rx.tstamp_ok {
        mss.saturating_sub(12).max(64)
    } else {
        mss
    }
}

/// What the route towards `raddr` gives a connection, from one FIB lookup: the MSS we
/// announce (the device MTU less the IP and TCP headers) and whether the device fills TCP
/// checksums.
pub fn tcp_route(stack: &Stack, raddr: std::net::Ipv4Addr) -> (u16, bool) {
    let dev = stack.fib.lookup(raddr).map(|r| &stack.devs[r.dev as usize]);
    let mtu = dev.map_or(1500, |d| d.mtu);
    let offload = dev.is_some_and(|d| {
        d.dev
            .features()
            .has(blink_netcore::netdevice::NetdevFeatures::TXCSUM_TCP)
    });
    ((mtu.saturating_sub(40)).clamp(88, 65495) as u16, offload)
}

/// The option half of the negotiation (Linux: tcp_parse_options into tcp_options_received +
/// the checks of tcp_openreq_init / tcp_finish_connect). `rx` holds what we are willing to use
/// (TcpConfig); an option stays on only if the peer's SYN or SYN-ACK carries it too.
pub fn tcp_negotiate_rx_opt(rx: &mut crate::tcp::RxOpt, o: &TcpOptions, jiffies: u64) {
    rx.mss_clamp = o.mss.unwrap_or(536).max(88);
    rx.wscale_ok = o.wscale.is_some() && rx.wscale_ok;
    if rx.wscale_ok {
        rx.snd_wscale = o.wscale.unwrap_or(0).min(TCP_MAX_WSCALE);
    } else {
        rx.snd_wscale = 0;
        rx.rcv_wscale = 0;
    }
    rx.sack_ok = o.sack_ok && rx.sack_ok;
    rx.tstamp_ok = o.ts.is_some() && rx.tstamp_ok;
    if let Some((tsval, _)) = o.ts {
        rx.ts_recent = tsval;
        rx.ts_recent_stamp = jiffies;
    }
}

/// Linux: tcp_rtt_estimator() + tcp_set_rto(). RFC 6298 with Linux's 200 ms floor on the
/// variance term.
fn tcp_rtt_estimator(sk: &mut TcpSock, rtt_us: u32) {
    let r = rtt_us.max(1);
    if sk.srtt_us == 0 {
        sk.srtt_us = r;
        sk.rttvar_us = r / 2;
    } else {
        let diff = sk.srtt_us.abs_diff(r);
        sk.rttvar_us = (3 * sk.rttvar_us + diff) / 4;
        sk.srtt_us = (7 * sk.srtt_us + r) / 8;
    }
    sk.mdev_us = sk.rttvar_us;
    let var = (4 * sk.rttvar_us as u64).max(crate::TCP_RTO_MIN_MS * 1000);
    sk.rto_ms = ((sk.srtt_us as u64 + var) / 1000).clamp(crate::TCP_RTO_MIN_MS, crate::TCP_RTO_MAX_MS);
}

/// The handshake's RTT sample, if our SYN or SYN-ACK was not retransmitted (Karn).
fn tcp_syn_rtt_meas(sk: &mut TcpSock, stack: &Stack) {
    if let (0, Some(t)) = (sk.retransmits, sk.syn_stamp_ns) {
        tcp_rtt_estimator(sk, (stack.core.now_ns.saturating_sub(t) / 1000) as u32);
    }
}

/// Linux: __tcp_oow_rate_limited(). At most one answer to out-of-window segments per
/// tcp_invalid_ratelimit (500 ms) per socket; `last` is the socket's last_oow_ack_time, and a
/// held-back answer is counted as `skipped`.
pub fn __tcp_oow_rate_limited(stack: &mut Stack, last: &mut Option<u64>, skipped: TcpExtMib) -> bool {
    let now = stack.core.jiffies;
    if last.is_some_and(|t| now.saturating_sub(t) < crate::TCP_INVALID_RATELIMIT_MS) {
        stack.core.mib.tcp_ext.inc(skipped);
        return true;
    }
    *last = Some(now);
    false
}

/// RFC 5961 / Linux tcp_send_challenge_ack(): answer a suspicious RST or SYN with an ACK.
/// Rate limited per socket (Linux: __tcp_oow_rate_limited), so a blind attacker cannot turn
/// us into an ACK reflector, and an ACK storm between confused peers dies out.
#[cold]
#[inline(never)]
fn tcp_send_challenge_ack(sk: &mut TcpSock, stack: &mut Stack) {
    if __tcp_oow_rate_limited(stack, &mut sk.last_oow_ack_time, TcpExtMib::TCPACKSkippedChallenge) {
        return;
    }
    stack.core.mib.tcp_ext.inc(TcpExtMib::TCPChallengeACK);
    tcp_send_ack(sk, stack);
}

/// SYN-SENT (Linux: tcp_rcv_synsent_state_process).
pub fn tcp_rcv_synsent(sk: &mut TcpSock, stack: &mut Stack, skb: SkBuff, opts: &TcpOptions) {
    let cb = *skb.cb::<TcpSkbCb>();
    let f = cb.tcp_flags;
    if f & TCPHDR_ACK != 0 && cb.ack_seq != sk.snd_nxt {
        // An ACK for something we never sent: reset it (unless it is a reset).
        if f & TCPHDR_RST == 0 {
            let t = sk.tuple();
            crate::tcp_ipv4::tcp_v4_send_reset(stack, &t, &cb, skb.len() as u32);
        }
        stack.core.kfree_skb_reason(skb, DropReason::TcpInvalidAckSequence);
        return;
    }
    if f & TCPHDR_RST != 0 {
        if f & TCPHDR_ACK != 0 {
            tcp_reset(sk, stack);
        }
        stack.core.consume_skb(skb);
        return;
    }
    if f & TCPHDR_SYN == 0 {
        stack.core.kfree_skb_reason(skb, DropReason::TcpFlags);
        return;
    }
    let t = sk.tuple();
    sk.irs = cb.seq;
    sk.rcv_nxt = cb.seq.wrapping_add(1);
    sk.rcv_wup = sk.rcv_nxt;
    tcp_negotiate_options(sk, stack, opts, &t);
    sk.snd_wl1 = cb.seq;
    sk.rcv_tstamp = stack.core.jiffies;
    if f & TCPHDR_ACK != 0 {
        // Our SYN is acknowledged: established.
        sk.snd_una = cb.ack_seq;
        sk.snd_sml = cb.ack_seq;
        // A SYN-ACK's window is never scaled (RFC 7323 2.2; Linux: tcp_rcv_synsent_state_process).
        sk.snd_wnd = cb.window as u32;
        sk.max_window = sk.snd_wnd;
        tcp_syn_rtt_meas(sk, stack);
        sk.retransmits = 0;
        sk.backoff = 0;
        if let Some(t) = sk.retransmit_timer {
            stack.timers.del_timer(t);
        }
        tcp_set_state(sk, stack, TcpState::Established);
        start_keepalive(sk, stack);
        sk.raise(ev::CONNECTED | ev::WRITABLE);
        tcp_send_ack(sk, stack);
        stack.core.consume_skb(skb);
        return;
    }
    // Simultaneous open (RFC 9293 3.5 figure 8): SYN-RECV and a SYN-ACK.
    sk.snd_wnd = cb.window as u32;
    tcp_set_state(sk, stack, TcpState::SynRecv);
    tcp_send_synack(sk, stack);
    stack.core.consume_skb(skb);
}

fn start_keepalive(sk: &mut TcpSock, stack: &mut Stack) {
    if let (Some((idle, _, _)), Some(t)) = (sk.keepalive, sk.keepalive_timer) {
        stack.timers.mod_timer(t, stack.core.jiffies + idle);
    }
}

/// Linux: tcp_sequence(). Does the segment touch the receive window (RFC 9293 3.10.7.4)?
/// Data beyond the window is trimmed later; ACK and RST fields are still processed.
fn tcp_sequence(sk: &TcpSock, seq: u32, end_seq: u32) -> bool {
    let wnd = sk.rcv_wup.wrapping_add(sk.rcv_wnd).wrapping_sub(sk.rcv_nxt);
    let wnd = if (wnd as i32) < 0 { 0 } else { wnd };
    !before(end_seq, sk.rcv_wup) && !after(seq, sk.rcv_nxt.wrapping_add(wnd))
}

/// Every state after SYN-SENT (Linux: tcp_rcv_state_process + tcp_rcv_established, without a
/// separate fast path: the checks are the same few comparisons).
pub fn tcp_rcv_state_process(sk: &mut TcpSock, stack: &mut Stack, skb: SkBuff, opts: &TcpOptions) {
    let cb = *skb.cb::<TcpSkbCb>();
    let f = cb.tcp_flags;
    if sk.state == TcpState::Closed {
        stack.core.kfree_skb_reason(skb, DropReason::NoSocket);
        return;
    }
    // An orphan in FIN-WAIT-2 is, in Linux, no full socket any more but a TIME-WAIT sock in
    // substate FIN-WAIT-2 (tcp_time_wait(sk, TCP_FIN_WAIT2, tmo) in tcp_rcv_state_process),
    // judged by the FIN_WAIT2 branch of tcp_timewait_state_process: the same checks in a
    // different order. A segment without ACK meets the window check first (out of window:
    // ACKed), and a SYN at or after rcv_nxt is answered with a reset, not a challenge ACK.
    let orphan_fin_wait2 = sk.orphan && sk.state == TcpState::FinWait2;
    // Neither ACK, RST nor SYN: nothing in it can be processed, so it is dropped before any
    // check that could answer it (Linux: tcp_rcv_established's slow path and
    // tcp_rcv_state_process, SKB_DROP_REASON_TCP_FLAGS): an out-of-window one gets no
    // duplicate ACK either.
    if f & (TCPHDR_ACK | TCPHDR_RST | TCPHDR_SYN) == 0 && !orphan_fin_wait2 {
        stack.core.kfree_skb_reason(skb, DropReason::TcpFlags);
        return;
    }
    // PAWS (RFC 7323 5): a segment whose timestamp is older than the last one is a duplicate.
    if sk.rx_opt.tstamp_ok && f & TCPHDR_RST == 0 {
        if let Some((tsval, _)) = opts.ts {
            if before(tsval, sk.rx_opt.ts_recent) && sk.state != TcpState::SynRecv {
                stack.core.mib.tcp_ext.inc(TcpExtMib::PAWSEstab);
                tcp_send_ack(sk, stack);
                stack.core.kfree_skb_reason(skb, DropReason::TcpRfc7323Paws);
                return;
            }
        }
    }
    // Sequence check.
    if sk.state != TcpState::SynRecv && !tcp_sequence(sk, cb.seq, cb.end_seq) {
        if f & TCPHDR_RST == 0 {
            // Linux: tcp_send_dupack(). Old data again: report it as a D-SACK.
            // (A TIME-WAIT sock's ACK carries no SACK blocks: not for an orphan in FIN-WAIT-2.)
            if !skb.is_empty() && before(cb.seq, sk.rcv_nxt) && !orphan_fin_wait2 {
                let end = if after(cb.end_seq, sk.rcv_nxt) {
                    sk.rcv_nxt
                } else {
                    cb.end_seq
                };
                tcp_dsack_set(sk, stack, cb.seq, end);
            }
            tcp_send_ack(sk, stack);
        }
        stack.core.kfree_skb_reason(skb, DropReason::TcpInvalidSequence);
        return;
    }
    // RST (RFC 5961 3.2): exact match resets, in-window gets a challenge ACK.
    if f & TCPHDR_RST != 0 {
        if cb.seq == sk.rcv_nxt || sk.state == TcpState::SynRecv {
            tcp_reset(sk, stack);
        } else {
            tcp_send_challenge_ack(sk, stack);
        }
        stack.core.consume_skb(skb);
        return;
    }
    // Timestamp bookkeeping for our TSecr (RFC 7323 4.3).
    if let Some((tsval, _)) = opts.ts {
        if sk.rx_opt.tstamp_ok && !after(cb.seq, sk.rcv_wup) {
            sk.rx_opt.ts_recent = tsval;
            sk.rx_opt.ts_recent_stamp = stack.core.jiffies;
        }
    }
    // SYN in a synchronized state (RFC 5961 4): challenge ACK. The one exception is the peer's
    // SYN-ACK in a simultaneous open, which acknowledges our SYN (Linux: the SYN_RECV case
    // of tcp_validate_incoming).
    let simultaneous_synack =
        sk.state == TcpState::SynRecv && f & TCPHDR_ACK != 0 && cb.seq == sk.irs && cb.ack_seq == sk.snd_nxt;
    if f & TCPHDR_SYN != 0 && orphan_fin_wait2 {
        // Linux: TCP_TW_RST for a SYN at or after rcv_nxt; an older one is a duplicate.
        if !before(cb.seq, sk.rcv_nxt) {
            let t = sk.tuple();
            crate::tcp_ipv4::tcp_v4_send_reset(stack, &t, &cb, skb.len() as u32);
            tcp_done(sk, stack);
        }
        stack.core.consume_skb(skb);
        return;
    }
    if f & TCPHDR_SYN != 0 && !simultaneous_synack {
        if sk.state == TcpState::SynRecv && cb.seq == sk.irs {
            // Our SYN-ACK was lost: the peer retransmitted its SYN.
            stack.core.mib.tcp.inc(TcpMib::RetransSegs);
            tcp_send_synack(sk, stack);
        } else {
            // Linux (tcp_validate_incoming, syn_challenge): counted as TCPSYNChallenge, and
            // as an input error when it came through tcp_rcv_established (syn_inerr), which
            // only ESTABLISHED segments do.
            if sk.state == TcpState::Established {
                stack.core.mib.tcp.inc(TcpMib::InErrs);
            }
            stack.core.mib.tcp_ext.inc(TcpExtMib::TCPSYNChallenge);
            tcp_send_challenge_ack(sk, stack);
        }
        stack.core.consume_skb(skb);
        return;
    }
    if f & TCPHDR_ACK == 0 {
        // Only an orphan in FIN-WAIT-2 gets here without ACK (see above).
        stack.core.kfree_skb_reason(skb, DropReason::TcpFlags);
        return;
    }
    sk.rcv_tstamp = stack.core.jiffies;
    sk.keepalive_probes_sent = 0;
    if sk.state == TcpState::SynRecv {
        if before(cb.ack_seq, sk.snd_una.wrapping_add(1)) || after(cb.ack_seq, sk.snd_nxt) {
            let t = sk.tuple();
            crate::tcp_ipv4::tcp_v4_send_reset(stack, &t, &cb, skb.len() as u32);
            stack.core.kfree_skb_reason(skb, DropReason::TcpInvalidAckSequence);
            return;
        }
        sk.snd_una = cb.ack_seq;
        sk.snd_sml = cb.ack_seq;
        // A SYN's window is never scaled (RFC 7323 2.2).
        let shift = if f & TCPHDR_SYN != 0 { 0 } else { sk.rx_opt.snd_wscale };
        sk.snd_wnd = (cb.window as u32) << shift;
        sk.max_window = sk.snd_wnd;
        sk.snd_wl1 = cb.seq;
        tcp_syn_rtt_meas(sk, stack);
        sk.retransmits = 0;
        sk.backoff = 0;
        if let Some(t) = sk.retransmit_timer {
            stack.timers.del_timer(t);
        }
        tcp_set_state(sk, stack, TcpState::Established);
        if sk.parent.is_some() {
            // Not for a simultaneous open, which connect() counted as active.
            stack.core.mib.tcp.inc(TcpMib::PassiveOpens);
        }
        start_keepalive(sk, stack);
        sk.raise(ev::CONNECTED | ev::WRITABLE);
    } else if !tcp_ack(sk, stack, &cb, opts) {
        // Linux: tcp_ack() < 0, SKB_DROP_REASON_TCP_ACK_UNSENT_DATA / TCP_TOO_OLD_ACK.
        let why = if after(cb.ack_seq, sk.snd_nxt) {
            DropReason::TcpAckUnsentData
        } else {
            DropReason::TcpTooOldAck
        };
        stack.core.kfree_skb_reason(skb, why);
        return;
    }
    // Our FIN acknowledged?
    let fin_acked = sk.fin_queued && sk.snd_una == sk.write_seq;
    match sk.state {
        TcpState::FinWait1 if fin_acked => {
            tcp_set_state(sk, stack, TcpState::FinWait2);
            if sk.orphan {
                if let Some(t) = sk.keepalive_timer {
                    stack.timers.mod_timer(t, stack.core.jiffies + sk.fin_timeout_ms);
                }
            }
        }
        TcpState::Closing if fin_acked => tcp_time_wait(sk, stack),
        TcpState::LastAck if fin_acked => {
            tcp_done(sk, stack);
            stack.core.consume_skb(skb);
            return;
        }
        _ => {}
    }
    // New data for an application that has closed: nobody will read it, so reset (RFC 1122
    // 4.2.2.13; Linux: TCPAbortOnData in tcp_rcv_state_process).
    let fin = (f & TCPHDR_FIN != 0) as u32;
    if sk.orphan
        && matches!(sk.state, TcpState::FinWait1 | TcpState::FinWait2)
        && !skb.is_empty()
        && after(cb.end_seq.wrapping_sub(fin), sk.rcv_nxt)
    {
        stack.core.mib.tcp_ext.inc(TcpExtMib::TCPAbortOnData);
        let t = sk.tuple();
        crate::tcp_ipv4::tcp_v4_send_reset(stack, &t, &cb, skb.len() as u32);
        tcp_done(sk, stack);
        stack.core.consume_skb(skb);
        return;
    }
    tcp_data_queue(sk, stack, skb);
    // Data, window updates or acks may let more data out.
    tcp_write_xmit(sk, stack, false);
    if sk.ack_pending && sk.quickack > 0 {
        tcp_send_ack(sk, stack);
    }
}

/// Enter TIME-WAIT (Linux: tcp_time_wait). The state change is all that happens here: when
/// the segment's processing ends, `TcpProto::post_process` moves the connection into a small
/// TIME-WAIT sock (tcp_minisocks.rs) and frees the full socket.
fn tcp_time_wait(sk: &mut TcpSock, stack: &mut Stack) {
    tcp_set_state(sk, stack, TcpState::TimeWait);
}

/// Linux: tcp_sacktag_write_queue(). Mark segments the peer reports holding. Returns an RTT
/// sample from a newly SACKed, never retransmitted segment (Linux: sack_rtt_us) and the number
/// of segments newly SACKed. `dsack`: the first block is a D-SACK (RFC 2883), reporting a
/// duplicate, not new data: it only credits the undo of a retransmission it covers.
#[cold]
#[inline(never)]
fn tcp_sacktag(sk: &mut TcpSock, stack: &mut Stack, opts: &TcpOptions, dsack: bool) -> (Option<u32>, u32) {
    let now = stack.core.now_ns;
    let mut rtt: Option<u32> = None;
    let mut newly = 0u32;
    // highest_sack means something only inside the flight. Otherwise (never set: 0, which
    // after() puts "ahead" of every sequence number in half of the ISN space, so no SACK
    // would ever raise it; or left behind by snd_una) restart it from snd_una.
    if !between(sk.highest_sack, sk.snd_una, sk.snd_nxt) {
        sk.highest_sack = sk.snd_una;
    }
    let prior_fack = sk.highest_sack;
    let mut reord = false;
    for (bi, b) in opts.sack[..opts.num_sacks.min(4) as usize].iter().enumerate() {
        let dup = dsack && bi == 0;
        if !after(b.end, sk.snd_una) || after(b.end, sk.snd_nxt) || !before(b.start, b.end) {
            continue;
        }
        if !dup && after(b.end, sk.highest_sack) {
            sk.highest_sack = b.end;
        }
        for i in 0..sk.rtx_queue.len() {
            let c = *sk.rtx_queue[i].cb::<TcpSkbCb>();
            if !before(c.seq, b.end) {
                // Sequence order: nothing further is inside the block.
                break;
            }
            if before(c.seq, b.start) || after(c.end_seq, b.end) {
                continue;
            }
            if dup && c.tx_count > 1 && sk.undo.retrans > 0 && sk.undo.marker.is_some_and(|m| after(c.end_seq, m)) {
                // Linux: tcp_sacktag_one with dup_sack: this retransmission was not needed.
                sk.undo.retrans -= 1;
            }
            if c.sacked & TCPCB_SACKED_ACKED != 0 {
                continue;
            }
            if c.sacked & TCPCB_LOST != 0 {
                sk.lost_out = sk.lost_out.saturating_sub(1);
            }
            if c.sacked & TCPCB_SACKED_RETRANS != 0 {
                sk.retrans_out = sk.retrans_out.saturating_sub(1);
            } else if c.tx_count == 1 && c.when_ns >= sk.rto_stamp_ns {
                let r = (now.saturating_sub(c.when_ns) / 1000) as u32;
                rtt = Some(rtt.map_or(r, |x| x.min(r)));
            }
            if c.tx_count == 1 && before(c.seq, prior_fack) {
                // Sent once, SACKed below what was already SACKed: it was reordered, not lost.
                reord = true;
            }
            tcp_rack_advance(sk, &c, now);
            sk.rtx_queue[i].cb_mut::<TcpSkbCb>().sacked = TCPCB_SACKED_ACKED;
            sk.sacked_out += 1;
            newly += 1;
        }
    }
    if reord {
        tcp_check_sack_reordering(sk, stack);
    }
    (rtt, newly)
}

/// Linux: tcp_check_sack_reordering(). A segment sent once arrived after later ones: the
/// path reorders, so RACK keeps a reordering window even in recovery (reord_seen).
#[cold]
#[inline(never)]
fn tcp_check_sack_reordering(sk: &mut TcpSock, stack: &mut Stack) {
    sk.rack.reord = true;
    stack.core.mib.tcp_ext.inc(TcpExtMib::TCPSACKReorder);
}

/// Mark segments lost for recovery: with SACK, every unSACKed segment below the highest SACK
/// (FACK-style); without, the head (Linux: tcp_mark_head_lost / tcp_update_scoreboard).
#[cold]
#[inline(never)]
fn tcp_mark_lost(sk: &mut TcpSock) {
    let sack = sk.rx_opt.sack_ok && sk.sacked_out > 0;
    let hs = sk.highest_sack;
    for (i, skb) in sk.rtx_queue.iter_mut().enumerate() {
        let c = skb.cb_mut::<TcpSkbCb>();
        if sack {
            if !before(c.seq, hs) {
                break;
            }
        } else if i > 0 {
            break;
        }
        if c.sacked & (TCPCB_SACKED_ACKED | TCPCB_LOST) == 0 {
            c.sacked |= TCPCB_LOST;
            sk.lost_out += 1;
        }
    }
}

/// Linux: tcp_enter_recovery() + tcp_init_cwnd_reduction(). Fast retransmit (RFC 5681 3.2 /
/// RFC 6675): reduce the window once, remember what to restore should the recovery prove
/// spurious, and recover until everything sent so far is acknowledged.
#[cold]
#[inline(never)]
pub(crate) fn tcp_enter_recovery(sk: &mut TcpSock, stack: &mut Stack) {
    sk.undo.prior_ssthresh = tcp_current_ssthresh(sk);
    sk.cong.prior_cwnd = sk.cong.cwnd;
    tcp_init_undo(sk);
    sk.cong.ssthresh = sk.ca_ops.ssthresh(&sk.cong);
    sk.cong.cwnd = sk.cong.ssthresh.max(2);
    sk.ca_state = CaState::Recovery;
    sk.ca_ops.set_state(&mut sk.cong, CaState::Recovery);
    sk.high_seq = sk.snd_nxt;
    sk.tlp_high_seq = None;
    stack.core.mib.tcp_ext.inc(if sk.rx_opt.sack_ok {
        TcpExtMib::TCPSackRecovery
    } else {
        TcpExtMib::TCPRenoRecovery
    });
    stack.core.mib.tcp_ext.inc(TcpExtMib::TCPFastRetrans);
    tcp_mark_lost(sk);
    if sk.icsk_pending == XmitTimer::LossProbe {
        // No probes in recovery: the RTO (counted from the oldest segment) guards it.
        tcp_rearm_rto(sk, stack);
    }
}

/// Linux: tcp_ack(). Process the acknowledgment: window, RTT, congestion state, retransmit
/// queue, recovery. Returns false when the segment must be dropped.
fn tcp_ack(sk: &mut TcpSock, stack: &mut Stack, cb: &TcpSkbCb, opts: &TcpOptions) -> bool {
    let ack = cb.ack_seq;
    let prior_una = sk.snd_una;
    if after(ack, sk.snd_nxt) {
        // RFC 5961 5.2: an ACK for data we never sent.
        tcp_send_challenge_ack(sk, stack);
        return false;
    }
    if before(ack, prior_una.wrapping_sub(sk.max_window.max(65535))) {
        // Far too old (RFC 5961 5.2): ignore.
        tcp_send_challenge_ack(sk, stack);
        return false;
    }
    // Window update (Linux: tcp_may_update_window).
    let nwin = (cb.window as u32) << sk.rx_opt.snd_wscale;
    let win_changed = nwin != sk.snd_wnd;
    // A zero window is taken even from a pure window update (the peer closing it).
    let wl1_update = cb.seq == sk.snd_wl1 && (nwin > sk.snd_wnd || nwin == 0);
    if after(ack, prior_una) || after(cb.seq, sk.snd_wl1) || wl1_update {
        sk.snd_wnd = nwin;
        sk.snd_wl1 = cb.seq;
        sk.max_window = sk.max_window.max(nwin);
    }
    let now = stack.core.now_ns;
    let tsecr = opts.ts.filter(|_| sk.rx_opt.tstamp_ok).map(|(_, ecr)| ecr);
    // The highest SACKed sequence before this ACK (Linux: prior_fack): a segment sent once
    // and acknowledged below it arrived out of order.
    let prior_fack = (sk.sacked_out > 0).then_some(sk.highest_sack);
    let mut rtt_us: Option<u32> = None;
    let mut sack_rtt: Option<u32> = None;
    let mut newly_sacked = 0;
    let mut dsack = false;
    if sk.rx_opt.sack_ok && opts.num_sacks > 0 {
        dsack = tcp_check_dsack(sk, stack, opts, ack, prior_una);
        (sack_rtt, newly_sacked) = tcp_sacktag(sk, stack, opts, dsack);
    }
    let mut acked_pkts = 0u32;
    let mut reord = false;
    if after(ack, prior_una) {
        sk.snd_una = ack;
        // This ACK covers a retransmission: a segment sent once and acked along with it was
        // held up behind the hole, so its send time says nothing about the RTT (Karn; Linux:
        // no seq_rtt with FLAG_RETRANS_DATA_ACKED). The timestamp echo still gives a sample.
        let mut retrans_acked = false;
        // Remove fully acknowledged segments.
        while let Some(skb) = sk.rtx_queue.front() {
            let c = *skb.cb::<TcpSkbCb>();
            if after(c.end_seq, ack) {
                break;
            }
            retrans_acked |= c.tx_count > 1;
            if c.tx_count == 1
                && c.sacked & (TCPCB_SACKED_RETRANS | TCPCB_SACKED_ACKED) == 0
                && c.when_ns >= sk.rto_stamp_ns
            {
                // Karn: only never-retransmitted segments give RTT samples, and SACKed ones
                // were sampled when SACKed (Linux: first_ackt of tcp_clean_rtx_queue). A
                // segment outstanding across a timeout is ambiguous too: the timeout marked
                // it lost, and its late ACK measures the outage, not the path.
                if rtt_us.is_none() {
                    rtt_us = Some(((now.saturating_sub(c.when_ns)) / 1000) as u32);
                }
            }
            if c.sacked & TCPCB_SACKED_ACKED == 0 && sk.rx_opt.sack_ok {
                tcp_rack_advance(sk, &c, now);
                if c.tx_count == 1 && prior_fack.is_some_and(|f| before(c.seq, f)) {
                    reord = true;
                }
            }
            if c.sacked & TCPCB_SACKED_ACKED != 0 {
                sk.sacked_out = sk.sacked_out.saturating_sub(1);
            }
            if c.sacked & TCPCB_LOST != 0 {
                sk.lost_out = sk.lost_out.saturating_sub(1);
            }
            if c.sacked & TCPCB_SACKED_RETRANS != 0 {
                sk.retrans_out = sk.retrans_out.saturating_sub(1);
            }
            sk.packets_out = sk.packets_out.saturating_sub(1);
            acked_pkts += 1;
            // Linux: tcp_rtx_queue_unlink_and_free(); the buffer goes back through this
            // core's cache.
            if let Some(done) = sk.rtx_queue.pop_front() {
                done.free_to(&mut stack.core.cache);
            }
        }
        if retrans_acked {
            rtt_us = None;
        }
        if rtt_us.is_none() {
            if let Some(ecr) = tsecr.filter(|&e| e != 0) {
                // RFC 7323 4.1: the echo of the segment that advanced the window -- unless
                // that segment went out before the last timeout. A receiver echoes the
                // timestamp of the last in-sequence segment, not of a duplicate (RFC 7323
                // 4.3), so the ACK of a retransmission made needless by lost ACKs carries
                // a pre-timeout echo and would measure the outage (RTO inflation).
                // (Compared in the timestamp clock itself: jiffies and the ns clock round
                // differently, and a sample wrongly refused keeps the RTO backed off.)
                let ms = tcp_time_stamp(sk, stack).wrapping_sub(ecr);
                if ms < 60_000 && sk.rto_stamp_ts.is_none_or(|t| !before(ecr, t)) {
                    rtt_us = Some(ms.max(1) * 1000);
                }
            }
        }
        if rtt_us.is_none() {
            rtt_us = sack_rtt;
        }
        if let Some(r) = rtt_us {
            tcp_rtt_estimator(sk, r);
            sk.min_rtt_us = sk.min_rtt_us.min(r.max(1));
            // Only a valid RTT sample ends the backoff (RFC 6298 5.7, Karn; Linux:
            // tcp_ack_update_rtt): the ACK of a retransmission says nothing about the RTT.
            sk.backoff = 0;
        }
        sk.retransmits = 0;
        sk.dupacks = 0;
        if sk.snd_blocked && sk.send_space() >= sk.sndbuf / 3 {
            sk.snd_blocked = false;
            sk.raise(ev::WRITABLE);
        }
    } else if let Some(r) = sack_rtt.filter(|_| ack == prior_una) {
        tcp_rtt_estimator(sk, r);
        sk.min_rtt_us = sk.min_rtt_us.min(r.max(1));
        rtt_us = Some(r);
        if cb.end_seq == cb.seq && !win_changed {
            sk.dupacks += 1;
        }
    } else if ack == prior_una
        && sk.packets_out > 0
        && cb.end_seq == cb.seq
        && !win_changed
        && cb.tcp_flags & (TCPHDR_SYN | TCPHDR_FIN) == 0
    {
        sk.dupacks += 1;
    }
    if reord {
        tcp_check_sack_reordering(sk, stack);
    }
    if !sk.rx_opt.sack_ok {
        // Reno: each duplicate ACK means one segment left the network (tcp_add_reno_sack),
        // but never more than the segments not marked lost, so that sacked_out + lost_out
        // stays within packets_out (tcp_limit_reno_sacked; after a timeout every segment is
        // lost and duplicate ACKs count nothing).
        let holes = sk.lost_out.max(1).min(sk.packets_out);
        sk.sacked_out = sk.dupacks.min(sk.packets_out - holes);
    }
    if sk.probe0 {
        // The peer answers our probes: keep probing as long as it does (RFC 1122 4.2.2.17;
        // Linux resets icsk_probes_out on every ACK). The backoff stays.
        sk.retransmits = 0;
    }
    if sk.snd_wnd > 0 && sk.probe0 {
        sk.probe0 = false;
        sk.retransmits = 0;
        sk.backoff = 0;
    }
    if sk.tlp_high_seq.is_some() {
        let pure_dup = ack == prior_una && cb.end_seq == cb.seq && newly_sacked == 0 && !win_changed;
        tcp_process_tlp_ack(sk, stack, ack, pure_dup);
    }
    // RACK (RFC 8985): with SACK, time decides what is lost (outside fast recovery, see
    // tcp_rack_mark_lost); after a timeout this is what finds lost retransmissions without
    // another timeout.
    let mut reo_armed = false;
    if sk.rx_opt.sack_ok {
        tcp_rack_update_reo_wnd(sk);
        reo_armed = tcp_rack_mark_lost(sk, stack);
    }

    // Congestion control state machine (Linux: tcp_fastretrans_alert, simplified).
    match sk.ca_state {
        CaState::Recovery | CaState::Loss => {
            if !before(sk.snd_una, sk.high_seq) {
                // Recovery complete (RFC 6582 full acknowledgment). Undo it if it was
                // spurious (Linux: tcp_try_undo_recovery). After fast recovery the window is
                // the reduced one (Linux: tcp_end_cwnd_reduction); after a timeout it is
                // whatever slow start has grown back to.
                let undone = tcp_may_undo(sk, tsecr);
                if undone {
                    tcp_undo_cwnd_reduction(sk, false);
                    stack.core.mib.tcp_ext.inc(if sk.ca_state == CaState::Loss {
                        TcpExtMib::TCPLossUndo
                    } else {
                        TcpExtMib::TCPFullUndo
                    });
                } else {
                    sk.rack.reo_wnd_persist = sk.rack.reo_wnd_persist.saturating_sub(1);
                    if sk.ca_state == CaState::Recovery {
                        sk.cong.cwnd = sk.cong.ssthresh.max(2);
                        sk.cong.cwnd_cnt = 0;
                    }
                }
                // The undo state stays: D-SACKs for the episode's retransmissions may still
                // arrive and prove it spurious (below).
                sk.ca_state = CaState::Open;
                sk.ca_ops.set_state(&mut sk.cong, CaState::Open);
                sk.dupacks = 0;
            } else if sk.ca_state == CaState::Loss && after(ack, prior_una) && tcp_may_undo(sk, tsecr) {
                // Linux: tcp_try_undo_loss(). The timeout was spurious (the D-SACKs or the
                // timestamps say the originals arrived): back to where we were.
                tcp_undo_cwnd_reduction(sk, true);
                stack.core.mib.tcp_ext.inc(TcpExtMib::TCPLossUndo);
                sk.retransmits = 0;
                sk.ca_state = CaState::Open;
                sk.ca_ops.set_state(&mut sk.cong, CaState::Open);
            } else if sk.ca_state == CaState::Recovery && sk.undo.marker.is_some() && sk.undo.retrans == 0 {
                // Linux: tcp_try_undo_dsack(). Every retransmission was D-SACKed: the
                // recovery was reordering; keep the reordering window wide for a while.
                tcp_undo_cwnd_reduction(sk, false);
                stack.core.mib.tcp_ext.inc(TcpExtMib::TCPDSACKUndo);
                sk.rack.reo_wnd_persist = (sk.rack.reo_wnd_persist + 1).min(TCP_RACK_RECOVERY_THRESH);
                sk.ca_state = CaState::Open;
                sk.ca_ops.set_state(&mut sk.cong, CaState::Open);
                sk.high_seq = sk.snd_nxt;
            } else {
                if sk.ca_state == CaState::Loss {
                    // Slow start again after the timeout.
                    sk.ca_ops
                        .cong_avoid(&mut sk.cong, acked_pkts, stack.core.jiffies, rtt_us);
                }
                if (sk.rx_opt.sack_ok && sk.sacked_out > 0) || acked_pkts > 0 || sk.dupacks > 0 {
                    // A NewReno partial ACK: the next hole is lost too.
                    tcp_mark_lost(sk);
                }
                tcp_xmit_retransmit_queue(sk, stack);
            }
        }
        CaState::Open | CaState::Disorder | CaState::Cwr => {
            // Recovery starts when RACK has marked a segment lost (a later one was delivered
            // more than an RTT plus the reordering window after it was sent), or at RFC
            // 6675's DupThresh (three SACKed segments, or three duplicate ACKs without SACK).
            let lost = if sk.rx_opt.sack_ok {
                sk.lost_out > 0 || sk.sacked_out >= TCP_REORDERING || sk.dupacks >= TCP_REORDERING
            } else {
                sk.dupacks >= 3
            };
            if dsack && sk.undo.marker.is_some() && sk.undo.retrans == 0 {
                // Linux: tcp_try_undo_dsack() from the open state. The D-SACKs for every
                // retransmission of the last episode came after it ended (the originals
                // were only reordered): give the window back.
                tcp_undo_cwnd_reduction(sk, false);
                stack.core.mib.tcp_ext.inc(TcpExtMib::TCPDSACKUndo);
            }
            if sk.packets_out > 0 && lost {
                tcp_enter_recovery(sk, stack);
                tcp_xmit_retransmit_queue(sk, stack);
            } else if acked_pkts > 0 {
                sk.ca_ops
                    .cong_avoid(&mut sk.cong, acked_pkts, stack.core.jiffies, rtt_us);
            }
        }
    }
    if after(ack, prior_una) && !reo_armed {
        // Restart the RTO, or arm a tail loss probe (Linux: tcp_set_xmit_timer).
        tcp_set_xmit_timer(sk, stack);
    }
    true
}

/// Linux: tcp_sack_new_ofo_skb() + tcp_sack_remove(). Refresh the SACK blocks we advertise
/// from the out-of-order queue. RFC 2018 4: the first block MUST hold the segment that
/// triggered the ACK (`newest`; None when the ACK is for in-order data), and the others
/// SHOULD repeat the most recently reported blocks, most recent first. So the order is
/// recency, not sequence: each block reported before keeps its rank (grown to the queue's
/// range that now holds it, or gone if that data left the queue), and a block that fell off
/// the four is not brought back (Linux forgets it too). Built from the queue, not patched,
/// so merges and prunes need no bookkeeping of their own.
fn tcp_update_sack_blocks(sk: &mut TcpSock, newest: Option<u32>) {
    // Keys to place, in rank order: the newest segment, then each block reported before.
    let mut keys: [Option<u32>; 5] = [None; 5];
    keys[0] = newest;
    for (k, b) in keys[1..].iter_mut().zip(&sk.selective_acks[..sk.num_sacks as usize]) {
        *k = Some(b.start);
    }
    // One pass over the queue: the contiguous range holding each key.
    let mut found: [Option<SackBlock>; 5] = [None; 5];
    let mut place = |r: SackBlock| {
        for (k, f) in keys.iter().zip(found.iter_mut()) {
            if k.is_some_and(|k| !before(k, r.start) && before(k, r.end)) {
                *f = Some(r);
            }
        }
    };
    let mut cur: Option<SackBlock> = None;
    for s in &sk.ooo_queue {
        let c = s.cb::<TcpSkbCb>();
        match cur.as_mut() {
            Some(r) if !after(c.seq, r.end) => {
                if after(c.end_seq, r.end) {
                    r.end = c.end_seq;
                }
            }
            _ => {
                if let Some(r) = cur {
                    place(r);
                }
                cur = Some(SackBlock {
                    start: c.seq,
                    end: c.end_seq,
                });
            }
        }
    }
    if let Some(r) = cur {
        place(r);
    }
    let mut n = 0;
    for r in found.into_iter().flatten() {
        if n < 4 && !sk.selective_acks[..n].contains(&r) {
            sk.selective_acks[n] = r;
            n += 1;
        }
    }
    sk.num_sacks = n as u8;
}

/// Linux: tcp_data_queue(). `skb->data` is the payload.
fn tcp_data_queue(sk: &mut TcpSock, stack: &mut Stack, mut skb: SkBuff) {
    let cb = *skb.cb::<TcpSkbCb>();
    let fin = cb.tcp_flags & TCPHDR_FIN != 0;
    let len = skb.len() as u32;
    if len == 0 && !fin {
        // A pure ACK: tcp_ack took all it carried.
        stack.core.consume_skb(skb);
        return;
    }
    if !after(cb.end_seq, sk.rcv_nxt) {
        // Entirely old: a retransmission of something we have. ACK at once (the sender may
        // have missed our ACK) -- in CLOSE-WAIT, CLOSING and LAST-ACK too, where it is the
        // peer's FIN again (TIME-WAIT is handled by its own sock: tcp_minisocks.rs) -- with
        // a D-SACK, so the sender learns the retransmission was not needed.
        if len > 0 {
            // (A FIN alone is not reported: D-SACK is about data the sender resent.)
            tcp_dsack_set(sk, stack, cb.seq, cb.end_seq);
        }
        sk.quickack = sk.quickack.max(1);
        tcp_send_ack(sk, stack);
        stack.core.kfree_skb_reason(skb, DropReason::TcpOldData);
        return;
    }
    if !sk.state.can_receive() {
        // Data after the peer's FIN, or after we were reset: outside the sequence space that
        // is still open, nothing to do with it.
        stack.core.kfree_skb_reason(skb, DropReason::TcpInvalidSequence);
        return;
    }
    if !before(cb.seq, sk.rcv_wup.wrapping_add(sk.rcv_wnd)) && len > 0 {
        // Beyond the window we advertised (with a zero window, any data at all: RFC 9293
        // 3.10.7.4, Linux's TCPZeroWindowDrop).
        tcp_send_ack(sk, stack);
        stack.core.kfree_skb_reason(skb, DropReason::TcpOverWindow);
        return;
    }
    let in_order = !after(cb.seq, sk.rcv_nxt);
    let queued =
        |sk: &TcpSock| sk.receive_queue.bytes() as u32 + sk.ooo_queue.iter().map(|s| s.len() as u32).sum::<u32>();
    if queued(sk) + len > sk.rcvbuf + sk.mss_cache {
        // Memory bound (Linux: tcp_try_rmem_schedule failing -> TCPRcvQDrop). Out-of-order
        // segments that overlap one another can fill it on their own; in-order data reclaims
        // them first (Linux: tcp_prune_ofo_queue), or the hole could never be filled.
        if in_order && !sk.ooo_queue.is_empty() {
            tcp_prune_ofo_queue(sk, stack);
        }
        if queued(sk) + len > sk.rcvbuf + sk.mss_cache {
            stack.core.kfree_skb_reason(skb, DropReason::SocketRcvBuff);
            return;
        }
    }
    if !tcp_try_rmem_schedule(sk, stack, in_order) {
        // Dropped for memory; the ACK tells the peer what we still need.
        let (counter, reason) = if in_order {
            (TcpExtMib::TCPRcvQDrop, DropReason::ProtoMem)
        } else {
            (TcpExtMib::TCPOFODrop, DropReason::TcpOfoDrop)
        };
        stack.core.mib.tcp_ext.inc(counter);
        stack.core.kfree_skb_reason(skb, reason);
        tcp_send_ack(sk, stack);
        return;
    }
    if !after(cb.seq, sk.rcv_nxt) {
        // In order (possibly overlapping what we have: trim the front).
        let dup = sk.rcv_nxt.wrapping_sub(cb.seq);
        if dup > 0 {
            // Partly old (Linux: the partial-packet D-SACK of tcp_data_queue); ACK at once.
            let n = sk.rcv_nxt;
            tcp_dsack_set(sk, stack, cb.seq, n);
            sk.quickack = sk.quickack.max(1);
            skb.pskb_pull(dup.min(len) as usize);
        }
        let was_ooo = !sk.ooo_queue.is_empty();
        sk.rcv_nxt = cb.end_seq;
        if !skb.is_empty() {
            if skb.trace {
                stack.core.mib.trace_event(&skb, "tcp_queue_rcv", "");
            }
            sk.receive_queue.skb_queue_tail(skb);
            sk.raise(ev::READABLE);
        }
        let mut got_fin = fin;
        // Nothing follows a FIN: what waits out of order beyond it is not data (tcp_fin
        // drops it).
        if was_ooo && !fin {
            got_fin = tcp_ofo_queue(sk);
            tcp_update_sack_blocks(sk, None);
            // Filling a hole: ACK at once so the sender leaves recovery quickly.
            sk.quickack = sk.quickack.max(1);
        }
        if got_fin {
            tcp_fin(sk, stack);
            return;
        }
        tcp_event_data_recv(sk, stack, len);
        return;
    }
    // Out of order: keep it sorted, drop what is fully covered, ACK at once with SACK.
    let pos = sk
        .ooo_queue
        .iter()
        .position(|s| after(s.cb::<TcpSkbCb>().seq, cb.seq))
        .unwrap_or(sk.ooo_queue.len());
    let covered = pos > 0 && {
        let p = sk.ooo_queue[pos - 1].cb::<TcpSkbCb>();
        !after(cb.end_seq, p.end_seq)
    };
    if !covered {
        sk.ooo_queue.insert(pos, skb);
    } else {
        // Already held out of order (Linux: tcp_data_queue_ofo's D-SACK).
        tcp_dsack_set(sk, stack, cb.seq, cb.end_seq);
        stack.core.kfree_skb_reason(skb, DropReason::TcpOfoMerge);
    }
    tcp_update_sack_blocks(sk, Some(cb.seq));
    sk.quickack = sk.quickack.max(1);
    tcp_send_ack(sk, stack);
}

/// Linux: tcp_try_rmem_schedule(). May one more skb be queued? Not beyond the socket's skb
/// bound, nor with the pool above `tcp_mem` max. In-order data may first reclaim what the
/// out-of-order queue holds (Linux: tcp_prune_ofo_queue): the peer sends it again, and
/// in-order data is what lets the application and the window move.
fn tcp_try_rmem_schedule(sk: &mut TcpSock, stack: &mut Stack, in_order: bool) -> bool {
    let fits = |sk: &TcpSock, stack: &Stack| {
        sk.receive_queue.len() + sk.ooo_queue.len() < sk.rcv_skb_limit()
            && !crate::tcp::tcp_mem_over(stack, sk.tcp_mem_pct.1)
    };
    if fits(sk, stack) {
        return true;
    }
    if !in_order || sk.ooo_queue.is_empty() {
        return false;
    }
    tcp_prune_ofo_queue(sk, stack);
    fits(sk, stack)
}

/// Linux: tcp_prune_ofo_queue(). Drop the whole out-of-order queue (Linux drops from the far
/// end until enough is freed; with skb counts as the measure, all of it is simplest) and
/// forget the SACK blocks that described it, so the sender retransmits it.
#[cold]
#[inline(never)]
fn tcp_prune_ofo_queue(sk: &mut TcpSock, stack: &mut Stack) {
    stack.core.mib.tcp_ext.inc(TcpExtMib::OfoPruned);
    for skb in sk.ooo_queue.drain(..) {
        stack.core.mib.tcp_ext.inc(TcpExtMib::TCPOFODrop);
        stack.core.kfree_skb_reason(skb, DropReason::TcpOfoDrop);
    }
    sk.selective_acks_clear();
}

/// Linux: tcp_dsack_set(). Report `seq..end_seq` as received twice in the next ACK's first
/// SACK block (RFC 2883).
#[cold]
#[inline(never)]
fn tcp_dsack_set(sk: &mut TcpSock, stack: &mut Stack, seq: u32, end_seq: u32) {
    if !sk.rx_opt.sack_ok || !before(seq, end_seq) {
        return;
    }
    stack.core.mib.tcp_ext.inc(if before(seq, sk.rcv_nxt) {
        TcpExtMib::TCPDSACKOldSent
    } else {
        TcpExtMib::TCPDSACKOfoSent
    });
    sk.dsack = true;
    sk.duplicate_sack = SackBlock {
        start: seq,
        end: end_seq,
    };
}

/// Linux: tcp_ofo_queue(). Move segments that became in-order to the receive queue; returns
/// whether one of them carried the FIN.
fn tcp_ofo_queue(sk: &mut TcpSock) -> bool {
    let mut fin = false;
    while let Some(first) = sk.ooo_queue.first() {
        let c = *first.cb::<TcpSkbCb>();
        if after(c.seq, sk.rcv_nxt) {
            break;
        }
        let mut skb = sk.ooo_queue.remove(0);
        if !after(c.end_seq, sk.rcv_nxt) {
            continue;
        }
        let dup = sk.rcv_nxt.wrapping_sub(c.seq);
        if dup > 0 {
            let n = (dup as usize).min(skb.len());
            skb.pskb_pull(n);
        }
        sk.rcv_nxt = c.end_seq;
        if !skb.is_empty() {
            sk.receive_queue.skb_queue_tail(skb);
            sk.raise(ev::READABLE);
        }
        if c.tcp_flags & TCPHDR_FIN != 0 {
            // The end of the stream: what is queued beyond it is not data (tcp_fin drops it).
            fin = true;
            break;
        }
    }
    fin
}

/// Linux: tcp_event_data_recv() + __tcp_ack_snd_check(): ACK at once in quick-ack mode;
/// after a second full segment, at the end of the receive burst (as GRO makes Linux do:
/// a burst of segments aggregated into one gets one ACK), otherwise after the delayed-ACK
/// timeout.
fn tcp_event_data_recv(sk: &mut TcpSock, stack: &mut Stack, len: u32) {
    if len >= sk.mss_cache.min(536) {
        sk.rcv_segs_since_ack += 1;
    }
    if sk.quickack > 0 {
        sk.quickack -= 1;
        tcp_send_ack(sk, stack);
    } else if sk.rcv_segs_since_ack >= 2 {
        // The delayed-ACK timer stays armed as a backstop for a receive path that never
        // flushes its bursts; the burst-end ACK (or any segment we send first) disarms it.
        sk.ack_at_burst_end = true;
        tcp_send_delayed_ack(sk, stack);
    } else {
        tcp_send_delayed_ack(sk, stack);
    }
}

/// End of a receive burst (called through `TcpProto`'s `InetProtocol::flush` for each socket
/// that set `ack_at_burst_end`): send the ACK it owes unless a data segment already carried it.
pub fn tcp_ack_burst_flush(sk: &mut TcpSock, stack: &mut Stack) {
    sk.ack_at_burst_end = false;
    if sk.ack_pending {
        tcp_send_ack(sk, stack);
    }
}

/// Linux: tcp_fin(). The peer finished sending.
fn tcp_fin(sk: &mut TcpSock, stack: &mut Stack) {
    sk.rcv_shutdown = true;
    // Segments held out of order beyond the FIN can never become data (Linux purges the
    // out-of-order queue and the SACK blocks here too).
    for skb in sk.ooo_queue.drain(..) {
        stack.core.kfree_skb_reason(skb, DropReason::TcpOfoDrop);
    }
    sk.selective_acks_clear();
    sk.raise(ev::READABLE);
    match sk.state {
        TcpState::SynRecv | TcpState::Established => {
            // As Linux: the ACK of a FIN that moves us to CLOSE-WAIT is delayed (tcp_fin
            // enters pingpong mode and only schedules it), so an application that closes in
            // reply sends FIN+ACK in one segment; the delayed-ACK timer covers one that
            // does not.
            tcp_set_state(sk, stack, TcpState::CloseWait);
            crate::tcp_output::tcp_send_delayed_ack(sk, stack);
            return;
        }
        TcpState::FinWait1 => {
            // Simultaneous close: our FIN is not acknowledged yet.
            tcp_set_state(sk, stack, TcpState::Closing);
        }
        TcpState::FinWait2 => {
            tcp_send_ack(sk, stack);
            tcp_time_wait(sk, stack);
            return;
        }
        _ => {}
    }
    tcp_send_ack(sk, stack);
}

#[cfg(test)]
mod tests {
    use super::*;
    use blink_netcore::{Mempool, MempoolConfig};

    /// Out-of-order segments `(seq, end_seq)` arrive one by one; the SACK blocks after each.
    fn sack_blocks_after(segs: &[(u32, u32)]) -> Vec<Vec<(u32, u32)>> {
        let pool = Mempool::new(&MempoolConfig {
            name: "sack".into(),
            n: 256,
            cache_size: 0,
            ..Default::default()
        })
        .expect("pool");
        let mut cache = pool.cache();
        let ca = crate::tcp_cong::cong_by_name("cubic").expect("cubic");
        let mut sk = TcpSock::new(ca, 65535, 65535);
        let mut seen = Vec::new();
        for &(seq, end_seq) in segs {
            let mut skb = SkBuff::from_slice(&mut cache, &[0u8; 1]).expect("skb");
            *skb.cb_mut::<TcpSkbCb>() = TcpSkbCb {
                seq,
                end_seq,
                ..Default::default()
            };
            let pos = sk
                .ooo_queue
                .iter()
                .position(|s| after(s.cb::<TcpSkbCb>().seq, seq))
                .unwrap_or(sk.ooo_queue.len());
            sk.ooo_queue.insert(pos, skb);
            tcp_update_sack_blocks(&mut sk, Some(seq));
            seen.push(
                sk.selective_acks[..sk.num_sacks as usize]
                    .iter()
                    .map(|b| (b.start, b.end))
                    .collect(),
            );
        }
        sk.ooo_queue.clear();
        seen
    }

    /// RFC 2018 4 (and Linux's tcp_sack_new_ofo_skb): the newest block first, then the blocks
    /// reported before, most recent first; the oldest falls off the four. blink used to list
    /// the others in sequence order, so with five holes the newest but one was forgotten.
    #[test]
    fn sack_blocks_in_recency_order() {
        let seen = sack_blocks_after(&[(10, 11), (30, 31), (20, 21), (50, 51), (40, 41), (31, 32)]);
        assert_eq!(seen[2], [(20, 21), (30, 31), (10, 11)]);
        assert_eq!(seen[3], [(50, 51), (20, 21), (30, 31), (10, 11)]);
        assert_eq!(seen[4], [(40, 41), (50, 51), (20, 21), (30, 31)]);
        // A segment that grows a block moves it to the front.
        assert_eq!(seen[5], [(30, 32), (40, 41), (50, 51), (20, 21)]);
    }

    /// The first block holds the newest segment however many holes come before it (blink
    /// used to look at the lowest 16 ranges only, so the 17th hole's ACK led with another).
    #[test]
    fn first_sack_block_holds_the_newest_segment_beyond_sixteen_holes() {
        let segs: Vec<(u32, u32)> = (0..20).map(|i| (2 + 2 * i, 3 + 2 * i)).collect();
        let seen = sack_blocks_after(&segs);
        assert_eq!(seen[19], [(40, 41), (38, 39), (36, 37), (34, 35)]);
    }
}
