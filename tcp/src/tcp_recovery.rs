//! Time-based loss detection, RACK-TLP (RFC 8985), and the D-SACK side of loss recovery:
//! reordering detection and undo of spurious retransmissions.
//!
//! Linux: net/ipv4/tcp_recovery.c (`tcp_rack_advance`, `tcp_rack_detect_loss`,
//! `tcp_rack_mark_lost`, `tcp_rack_reo_timeout`, `tcp_rack_update_reo_wnd`), the loss probe of
//! tcp_output.c (`tcp_schedule_loss_probe`, `tcp_send_loss_probe`, `tcp_rearm_rto`) and the
//! D-SACK / undo helpers of tcp_input.c (`tcp_check_dsack`, `tcp_process_tlp_ack`,
//! `tcp_may_undo`, `tcp_undo_cwnd_reduction`).
//!
//! RACK replaces counting duplicate ACKs by time: a segment is lost once a segment sent after
//! it has been delivered and more than an RTT plus a reordering window has passed since it was
//! sent. That finds lost retransmissions too (they were sent, later segments got through), which
//! the SACK scoreboard alone never does: before RACK every lost retransmission cost an RTO.

use blink_ipv4::Stack;
use blink_netcore::snmp::TcpExtMib;

use crate::tcp::*;
use crate::tcp_cong::{CaState, CongestionOps};
use crate::tcp_output::*;
use crate::tcphdr::*;

/// Linux: tp->reordering's initial value (sysctl tcp_reordering): the DupThresh.
pub const TCP_REORDERING: u32 = 3;
/// Recoveries a grown reordering window survives without new D-SACKs (Linux:
/// TCP_RACK_RECOVERY_THRESH).
pub const TCP_RACK_RECOVERY_THRESH: u32 = 16;
/// Smallest loss-probe timeout (RFC 8985 7.2 and Linux: 10 ms).
pub const TCP_TLP_MIN_MS: u64 = 10;

/// What the retransmission timer is armed for (Linux: icsk_pending; zero-window probing keeps
/// its own `probe0` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XmitTimer {
    /// The RTO (ICSK_TIME_RETRANS).
    #[default]
    Retrans,
    /// RACK's reordering timer (ICSK_TIME_REO_TIMEOUT).
    ReoTimeout,
    /// Tail loss probe (ICSK_TIME_LOSS_PROBE).
    LossProbe,
}

/// RACK state (Linux: `tp->rack` plus `tp->reord_seen`).
#[derive(Debug, Clone, Copy)]
pub struct Rack {
    /// Send time of the most recently sent segment known delivered, ns.
    pub mstamp_ns: u64,
    /// Its end_seq: breaks ties between segments sent in the same instant.
    pub end_seq: u32,
    /// RTT of that delivery, us.
    pub rtt_us: u32,
    /// Reordering window in quarters of min_rtt, grown by D-SACKs.
    pub reo_wnd_steps: u32,
    /// Recoveries a grown window is kept for.
    pub reo_wnd_persist: u32,
    /// A D-SACK arrived since the window was last adjusted.
    pub dsack_seen: bool,
    /// snd_nxt when the window last grew: D-SACKs count once per round trip.
    pub reo_wnd_round: u32,
    /// Something was newly delivered since the last scan.
    pub advanced: bool,
    /// Reordering has been seen on this connection (Linux: reord_seen).
    pub reord: bool,
}

impl Default for Rack {
    fn default() -> Self {
        Rack {
            mstamp_ns: 0,
            end_seq: 0,
            rtt_us: 0,
            reo_wnd_steps: 1,
            reo_wnd_persist: 0,
            dsack_seen: false,
            reo_wnd_round: 0,
            advanced: false,
            reord: false,
        }
    }
}

/// Retransmissions of an episode whose D-SACKs are recognised once they are below snd_una.
pub const UNDO_RETRANS_MAX: usize = 16;

/// Undo bookkeeping (Linux: undo_marker, undo_retrans, prior_ssthresh, retrans_stamp).
#[derive(Debug, Clone, Default)]
pub struct Undo {
    /// snd_una when the recovery episode began; None: nothing to undo.
    pub marker: Option<u32>,
    /// Retransmissions of the episode not yet shown spurious by a D-SACK (-1: none yet).
    pub retrans: i32,
    /// ssthresh before the reduction (0: do not restore).
    pub prior_ssthresh: u32,
    /// Our timestamp (TSval) on the episode's first retransmission: an ACK echoing an
    /// older one was caused by an original (Eifel, RFC 3522).
    pub retrans_stamp: Option<u32>,
    /// end_seq of the episode's retransmissions (the first UNDO_RETRANS_MAX). Linux credits
    /// any D-SACK below snd_una and above the marker ("dumb counting"); the network also
    /// duplicates originals, and on a path that does (the impaired wire) those D-SACKs
    /// undid real recoveries. A D-SACK below snd_una counts only if it matches one of ours.
    pub retrans_ends: arrayvec::ArrayVec<u32, UNDO_RETRANS_MAX>,
}

/// `t1/seq1` was sent after `t2/seq2` (Linux: tcp_skb_sent_after).
#[inline]
fn sent_after(t1: u64, t2: u64, seq1: u32, seq2: u32) -> bool {
    t1 > t2 || (t1 == t2 && after(seq1, seq2))
}

/// Linux: tcp_rack_advance(). A segment sent at `c.when_ns` was delivered (SACKed or
/// cumulatively acknowledged for the first time).
pub fn tcp_rack_advance(sk: &mut TcpSock, c: &TcpSkbCb, now_ns: u64) {
    let rtt_us = (now_ns.saturating_sub(c.when_ns) / 1000) as u32;
    if c.tx_count > 1 && rtt_us < sk.min_rtt_us {
        // Delivered sooner than any RTT after its retransmission: the original was probably
        // what arrived, and the retransmission says nothing about time.
        return;
    }
    sk.rack.advanced = true;
    sk.rack.rtt_us = rtt_us;
    if sent_after(c.when_ns, sk.rack.mstamp_ns, c.end_seq, sk.rack.end_seq) {
        sk.rack.mstamp_ns = c.when_ns;
        sk.rack.end_seq = c.end_seq;
    }
}

/// Linux: tcp_rack_reo_wnd(), in ns. Without reordering seen, none at all in recovery or
/// once DupThresh segments are SACKed (RACK then acts like RFC 6675); otherwise a quarter
/// of min_rtt per step, at most SRTT, at least the timer's resolution.
fn tcp_rack_reo_wnd_ns(sk: &TcpSock) -> u64 {
    if !sk.rack.reord && (matches!(sk.ca_state, CaState::Recovery | CaState::Loss) || sk.sacked_out >= TCP_REORDERING) {
        return 0;
    }
    let min_rtt = if sk.min_rtt_us == u32::MAX {
        0
    } else {
        sk.min_rtt_us as u64
    };
    let w = ((min_rtt / 4) * sk.rack.reo_wnd_steps as u64).min(sk.srtt_us as u64) * 1000;
    w.max(crate::TCP_RACK_REO_WND_MIN_NS)
}

/// Linux: tcp_mark_skb_lost(). A lost retransmission is counted and made eligible for
/// retransmission again.
fn tcp_mark_skb_lost(sk: &mut TcpSock, stack: &mut Stack, i: usize) {
    let c = sk.rtx_queue[i].cb_mut::<TcpSkbCb>();
    if c.sacked & TCPCB_SACKED_RETRANS != 0 {
        c.sacked &= !TCPCB_SACKED_RETRANS;
        sk.retrans_out = sk.retrans_out.saturating_sub(1);
        stack.core.mib.tcp_ext.inc(TcpExtMib::TCPLostRetransmit);
    }
    if c.sacked & TCPCB_LOST == 0 {
        c.sacked |= TCPCB_LOST;
        sk.lost_out += 1;
    }
}

/// Linux: tcp_rack_detect_loss(). Marks lost what was sent before the latest delivered
/// segment and has waited longer than RTT + reordering window; returns how long (ns) the
/// youngest of the others still has to wait (0: none waits).
fn tcp_rack_detect_loss(sk: &mut TcpSock, stack: &mut Stack) -> u64 {
    let now = stack.core.now_ns;
    let wait_ns = sk.rack.rtt_us as u64 * 1000 + tcp_rack_reo_wnd_ns(sk);
    let mut reo_timeout = 0u64;
    for i in 0..sk.rtx_queue.len() {
        let c = *sk.rtx_queue[i].cb::<TcpSkbCb>();
        if c.sacked & TCPCB_SACKED_ACKED != 0 {
            continue;
        }
        // Marked lost and not yet retransmitted: nothing more to learn.
        if c.sacked & TCPCB_LOST != 0 && c.sacked & TCPCB_SACKED_RETRANS == 0 {
            continue;
        }
        if !sent_after(sk.rack.mstamp_ns, c.when_ns, sk.rack.end_seq, c.end_seq) {
            if c.tx_count == 1 {
                // The queue is in sequence order, and segments sent once were sent in that
                // order; retransmissions further on went out later still. Nothing beyond
                // was sent before the delivered one (Linux stops at the same point of its
                // time-ordered list).
                break;
            }
            continue;
        }
        let elapsed = now.saturating_sub(c.when_ns);
        if elapsed >= wait_ns {
            tcp_mark_skb_lost(sk, stack, i);
        } else {
            reo_timeout = reo_timeout.max(wait_ns - elapsed);
        }
    }
    reo_timeout
}

/// Linux: tcp_rack_mark_lost(). Run after an ACK delivered something; arms the reordering
/// timer for segments that may still be merely reordered. Returns whether it did.
pub fn tcp_rack_mark_lost(sk: &mut TcpSock, stack: &mut Stack) -> bool {
    if sk.ca_state == CaState::Recovery {
        // In fast recovery the RFC 6675 scoreboard marks losses (tcp_mark_lost), not RACK
        // (a deviation from Linux, measured): on the wire at 20% loss RACK in recovery ended
        // every recovery quickly, so each further loss began an episode of its own that cut
        // cwnd again; cwnd stayed at 2, tails and lost retransmissions had no later segment
        // to reveal them, and timeouts grew from ~1,500 to ~10,000 per 256 MiB. The
        // reordering timer armed before recovery still runs (tcp_rack_reo_timeout).
        return false;
    }
    if !sk.rack.advanced {
        return false;
    }
    sk.rack.advanced = false;
    let timeout_ns = tcp_rack_detect_loss(sk, stack);
    if timeout_ns == 0 {
        return false;
    }
    tcp_rack_arm_reo(sk, stack, timeout_ns);
    true
}

/// Arm the reordering timer in place of the RTO: at least one jiffy (Linux adds
/// TCP_TIMEOUT_MIN), never later than the RTO.
fn tcp_rack_arm_reo(sk: &mut TcpSock, stack: &mut Stack, timeout_ns: u64) {
    if let Some(t) = sk.retransmit_timer {
        let ms = (timeout_ns.div_ceil(1_000_000) + 1).min(sk.rto_backed_off_ms());
        sk.icsk_pending = XmitTimer::ReoTimeout;
        sk.probe0 = false;
        stack.timers.mod_timer(t, stack.core.jiffies + ms);
    }
}

/// Linux: tcp_rack_reo_timeout(). The reordering window has passed for segments RACK held
/// back: those still undelivered are lost.
pub fn tcp_rack_reo_timeout(sk: &mut TcpSock, stack: &mut Stack) {
    let prior_lost = sk.lost_out;
    let prior_retrans = sk.retrans_out;
    let timeout_ns = tcp_rack_detect_loss(sk, stack);
    if sk.lost_out != prior_lost || sk.retrans_out != prior_retrans {
        if matches!(sk.ca_state, CaState::Open | CaState::Disorder | CaState::Cwr) {
            crate::tcp_input::tcp_enter_recovery(sk, stack);
        }
        tcp_xmit_retransmit_queue(sk, stack);
    }
    if timeout_ns > 0 {
        // Some segments may still be merely reordered: look again when their window ends.
        // (Armed here, not through tcp_rack_mark_lost, which does nothing in recovery: the
        // socket must never be left without a timer while data is in flight.)
        tcp_rack_arm_reo(sk, stack, timeout_ns);
    } else {
        tcp_rearm_rto(sk, stack);
    }
}

/// Linux: tcp_rack_update_reo_wnd(). A D-SACK means we retransmitted something that was only
/// reordered (or duplicated): widen the window by a step, once per round trip, and keep it
/// for TCP_RACK_RECOVERY_THRESH recoveries.
pub fn tcp_rack_update_reo_wnd(sk: &mut TcpSock) {
    if sk.rack.dsack_seen && !before(sk.snd_una, sk.rack.reo_wnd_round) {
        sk.rack.reo_wnd_steps = (sk.rack.reo_wnd_steps + 1).min(0xff);
        sk.rack.reo_wnd_round = sk.snd_nxt;
        sk.rack.reo_wnd_persist = TCP_RACK_RECOVERY_THRESH;
    } else if sk.rack.reo_wnd_persist == 0 {
        sk.rack.reo_wnd_steps = 1;
    }
    sk.rack.dsack_seen = false;
}

/// Linux: tcp_check_dsack() + tcp_dsack_seen(). Is the first SACK block a D-SACK (RFC 2883:
/// below the cumulative ACK, or inside the second block)? Counts it and credits the undo
/// bookkeeping when it reports a retransmission below `prior_una` as unnecessary.
pub fn tcp_check_dsack(sk: &mut TcpSock, stack: &mut Stack, opts: &TcpOptions, ack: u32, prior_una: u32) -> bool {
    if opts.num_sacks == 0 {
        return false;
    }
    let b0 = opts.sack[0];
    if before(b0.start, ack) {
        stack.core.mib.tcp_ext.inc(TcpExtMib::TCPDSACKRecv);
    } else if opts.num_sacks > 1 {
        let b1 = opts.sack[1];
        if after(b0.end, b1.end) || before(b0.start, b1.start) {
            return false;
        }
        stack.core.mib.tcp_ext.inc(TcpExtMib::TCPDSACKOfoRecv);
    } else {
        return false;
    }
    let len = b0.end.wrapping_sub(b0.start);
    if len == 0 || len > sk.max_window.max(65535) {
        // Linux: TCPDSACKIgnoredDubious.
        stack.core.mib.tcp_ext.inc(TcpExtMib::TCPDSACKIgnoredDubious);
        return false;
    }
    // Only with reordering seen may the D-SACK mean RACK's window was too small (Linux:
    // tcp_dsack_seen); otherwise it is a duplicate made by the network, or a probe's.
    if sk.rack.reord {
        sk.rack.dsack_seen = true;
    }
    if let Some(m) = sk.undo.marker {
        if sk.undo.retrans > 0 && !after(b0.end, prior_una) && after(b0.end, m) {
            if let Some(i) = sk.undo.retrans_ends.iter().position(|&e| e == b0.end) {
                sk.undo.retrans_ends.swap_remove(i);
                sk.undo.retrans -= 1;
            }
        }
    }
    if sk.tlp_high_seq.is_some() && sk.tlp_retrans && Some(b0.end) == sk.tlp_high_seq {
        // The loss probe was a copy of a segment that had arrived: no loss.
        sk.tlp_high_seq = None;
    }
    true
}

/// Linux: tcp_init_undo(). A recovery episode starts: what it retransmits may prove
/// spurious later.
pub fn tcp_init_undo(sk: &mut TcpSock) {
    sk.undo.marker = Some(sk.snd_una);
    sk.undo.retrans = if sk.retrans_out > 0 { sk.retrans_out as i32 } else { -1 };
    sk.undo.retrans_stamp = None;
    sk.undo.retrans_ends.clear();
}

/// Linux: tcp_packet_delayed(). The ACK echoes a timestamp older than our first
/// retransmission: an original caused it, the retransmissions were not needed.
fn tcp_packet_delayed(sk: &TcpSock, tsecr: Option<u32>) -> bool {
    match (sk.undo.retrans_stamp, tsecr) {
        (None, _) => true,
        (Some(stamp), Some(ecr)) => sk.rx_opt.tstamp_ok && ecr != 0 && before(ecr, stamp),
        _ => false,
    }
}

/// Linux: tcp_may_undo(). Every retransmission of the episode was D-SACKed, or the peer's
/// timestamps show it received the originals.
pub fn tcp_may_undo(sk: &TcpSock, tsecr: Option<u32>) -> bool {
    sk.undo.marker.is_some() && (sk.undo.retrans == 0 || tcp_packet_delayed(sk, tsecr))
}

/// Linux: tcp_undo_cwnd_reduction(). Give back the window a spurious recovery took;
/// `unmark_loss` also forgets the loss marks (after a spurious timeout).
pub fn tcp_undo_cwnd_reduction(sk: &mut TcpSock, unmark_loss: bool) {
    if unmark_loss {
        for skb in sk.rtx_queue.iter_mut() {
            skb.cb_mut::<TcpSkbCb>().sacked &= !TCPCB_LOST;
        }
        sk.lost_out = 0;
    }
    if sk.undo.prior_ssthresh > 0 {
        sk.cong.cwnd = sk.ca_ops.undo_cwnd(&sk.cong).max(1);
        sk.cong.ssthresh = sk.cong.ssthresh.max(sk.undo.prior_ssthresh);
    }
    sk.undo.marker = None;
    // Losses RACK saw must be looked at again with the restored state.
    sk.rack.advanced = true;
}

/// Linux: tcp_current_ssthresh(). The threshold to come back to on undo.
pub fn tcp_current_ssthresh(sk: &TcpSock) -> u32 {
    if sk.cong.cwnd < sk.cong.ssthresh {
        sk.cong.ssthresh
    } else {
        sk.cong.ssthresh.max((sk.cong.cwnd >> 1) + (sk.cong.cwnd >> 2))
    }
}

// ------------------------------------------------------------------ RTO / TLP timer

/// Linux: tcp_rearm_rto(). Arm the RTO for what is in flight. When it replaces a reordering
/// or probe timer, the RTO still counts from the oldest segment's transmission, so those
/// timers can never postpone it.
pub fn tcp_rearm_rto(sk: &mut TcpSock, stack: &mut Stack) {
    let Some(t) = sk.retransmit_timer else { return };
    if sk.packets_out == 0 {
        if !sk.probe0 {
            stack.timers.del_timer(t);
        }
        sk.icsk_pending = XmitTimer::Retrans;
        return;
    }
    let mut rto = sk.rto_backed_off_ms();
    if sk.icsk_pending != XmitTimer::Retrans {
        if let Some(head) = sk.rtx_queue.front() {
            let elapsed_ms = stack.core.now_ns.saturating_sub(head.cb::<TcpSkbCb>().when_ns) / 1_000_000;
            rto = rto.saturating_sub(elapsed_ms).max(1);
        }
    }
    sk.icsk_pending = XmitTimer::Retrans;
    sk.probe0 = false;
    stack.timers.mod_timer(t, stack.core.jiffies + rto);
}

/// Linux: tcp_schedule_loss_probe(). In the open state with SACK, arm a probe for two RTTs
/// from now (plus the worst-case delayed ACK when one segment is out), so a lost tail is found
/// in a few RTTs rather than an RTO. The RTO is armed instead when it would come no later
/// (`advancing_rto`: it would restart from now). Returns whether the probe was armed.
pub fn tcp_schedule_loss_probe(sk: &mut TcpSock, stack: &mut Stack, advancing_rto: bool) -> bool {
    if !sk.tlp
        || !sk.rx_opt.sack_ok
        || sk.packets_out == 0
        || sk.probe0
        || !matches!(sk.ca_state, CaState::Open | CaState::Cwr)
        || sk.icsk_pending == XmitTimer::ReoTimeout
    {
        return false;
    }
    let Some(t) = sk.retransmit_timer else { return false };
    let mut pto = if sk.srtt_us > 0 {
        (2 * sk.srtt_us as u64).div_ceil(1000).max(TCP_TLP_MIN_MS)
    } else {
        crate::TCP_TIMEOUT_INIT_MS
    };
    if sk.packets_out == 1 {
        // RFC 8985 7.2: WCDelAckT, the receiver may hold its ACK for a lone segment.
        pto += crate::TCP_DELACK_MAX_MS;
    }
    let rto_left = if advancing_rto {
        sk.rto_backed_off_ms()
    } else {
        let elapsed_ms = sk.rtx_queue.front().map_or(0, |h| {
            stack.core.now_ns.saturating_sub(h.cb::<TcpSkbCb>().when_ns) / 1_000_000
        });
        sk.rto_backed_off_ms().saturating_sub(elapsed_ms)
    };
    if pto >= rto_left {
        // A probe at the RTO's time would only replace the RTO: leave the RTO in charge.
        return false;
    }
    sk.icsk_pending = XmitTimer::LossProbe;
    stack.timers.mod_timer(t, stack.core.jiffies + pto);
    true
}

/// After an ACK: arm the probe timer if a tail loss probe applies, the RTO otherwise
/// (Linux: tcp_set_xmit_timer).
pub fn tcp_set_xmit_timer(sk: &mut TcpSock, stack: &mut Stack) {
    if !tcp_schedule_loss_probe(sk, stack, true) {
        sk.icsk_pending = XmitTimer::Retrans;
        tcp_rearm_rto(sk, stack);
    }
}

/// Linux: tcp_send_loss_probe(). The probe timer fired: send one new segment if the peer's
/// window allows, else retransmit the last one, so that the peer's ACK (with SACK) tells RACK
/// what is missing. One probe per episode (until `tlp_high_seq` is acknowledged).
pub fn tcp_send_loss_probe(sk: &mut TcpSock, stack: &mut Stack) {
    let mut sent = false;
    if sk.tlp_high_seq.is_none() {
        let before_out = sk.packets_out;
        if sk.write_queue.skb_peek().is_some() {
            // Linux forces this one segment past the congestion window (tcp_write_xmit with
            // push_one == 2): open the window by exactly one for the call.
            let cwnd = sk.cong.cwnd;
            sk.cong.cwnd = sk.packets_in_flight() + 1;
            tcp_write_xmit(sk, stack, true);
            sk.cong.cwnd = cwnd;
        }
        if sk.packets_out > before_out {
            sk.tlp_retrans = false;
            sent = true;
        } else if let Some(last) = sk
            .rtx_queue
            .iter()
            .rposition(|s| s.cb::<TcpSkbCb>().sacked & TCPCB_SACKED_ACKED == 0)
        {
            // The highest segment not known delivered (Linux takes the last one; when
            // that one is SACKed, probing it would teach nothing).
            if tcp_retransmit_skb(sk, stack, last) {
                sk.tlp_retrans = true;
                sent = true;
            }
        }
        if sent {
            sk.tlp_high_seq = Some(sk.snd_nxt);
            stack.core.mib.tcp_ext.inc(TcpExtMib::TCPLossProbes);
        }
    }
    if sent {
        // The RTO restarts from the probe (Linux clears icsk_pending for this).
        sk.icsk_pending = XmitTimer::Retrans;
    }
    tcp_rearm_rto(sk, stack);
}

/// Linux: tcp_process_tlp_ack(). The ACK covers the probe: if the probe was a retransmission
/// and the ACK goes beyond it (no D-SACK for the probe cleared `tlp_high_seq` first, see
/// `tcp_check_dsack`), the probe repaired a loss: reduce the window once
/// (TCPLossProbeRecovery).
pub fn tcp_process_tlp_ack(sk: &mut TcpSock, stack: &mut Stack, ack: u32, dupack: bool) {
    let Some(high) = sk.tlp_high_seq else { return };
    if before(ack, high) {
        return;
    }
    if !sk.tlp_retrans {
        // A probe of new data acknowledged: nothing was repaired.
        sk.tlp_high_seq = None;
    } else if after(ack, high) && !matches!(sk.ca_state, CaState::Open | CaState::Cwr) {
        // A probe sent during recovery: the recovery already reduced the window.
        sk.tlp_high_seq = None;
    } else if after(ack, high) {
        sk.tlp_high_seq = None;
        sk.cong.ssthresh = sk.ca_ops.ssthresh(&sk.cong);
        sk.cong.cwnd = sk.cong.ssthresh.max(2);
        sk.cong.cwnd_cnt = 0;
        stack.core.mib.tcp_ext.inc(TcpExtMib::TCPLossProbeRecovery);
    } else if dupack {
        // A pure duplicate of the probe's ACK: original and probe both arrived.
        sk.tlp_high_seq = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_after_breaks_ties_by_sequence() {
        assert!(sent_after(2, 1, 0, 100));
        assert!(!sent_after(1, 2, 100, 0));
        assert!(sent_after(5, 5, 2000, 1000));
        assert!(!sent_after(5, 5, 1000, 2000));
        // Sequence comparison wraps.
        assert!(sent_after(5, 5, 10, u32::MAX - 10));
    }

    #[test]
    fn rack_default_window_is_one_step() {
        let r = Rack::default();
        assert_eq!(r.reo_wnd_steps, 1);
        assert!(!r.reord && !r.advanced);
    }
}
