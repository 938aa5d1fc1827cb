//! TCP timers. Linux: net/ipv4/tcp_timer.c (`tcp_retransmit_timer`, `tcp_probe_timer`,
//! `tcp_delack_timer`, `tcp_keepalive_timer`) and the TIME-WAIT timer of tcp_minisocks.c.
//!
//! Each socket owns three wheel timers (retransmit/probe, delayed ACK, keepalive — which also
//! times FIN-WAIT-2 and TIME-WAIT). A timer's data word carries the socket handle and the
//! timer kind, so a late timer of a freed socket finds a stale handle and does nothing.

use blink_ipv4::iphdr::IPPROTO_TCP;
use blink_ipv4::Stack;
use blink_netcore::snmp::{TcpExtMib, TcpMib};
use blink_netcore::sock::SockHandle;
use blink_netcore::timer::TimerFn;

use crate::tcp::{tcp_done, TcpError, TcpSkbCb, TcpSock, TcpState, TCPCB_LOST, TCPCB_SACKED_ACKED};
use crate::tcp_cong::{CaState, CongestionOps};
use crate::tcp_ipv4::TcpProto;
use crate::tcp_output::*;
use crate::tcp_recovery::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    Retransmit = 0,
    Delack = 1,
    Keepalive = 2,
    /// The timer of a TIME-WAIT sock; the handle is in `TcpProto::tw`.
    TimeWait = 3,
    /// The SYN-ACK timer of a request sock; the handle is in `TcpProto::reqs`.
    ReqTimeout = 4,
}

impl TimerKind {
    pub fn data(self, handle: u64) -> u64 {
        handle | ((self as u64) << 56)
    }

    fn from_data(d: u64) -> (TimerKind, SockHandle) {
        let k = match d >> 56 {
            0 => TimerKind::Retransmit,
            1 => TimerKind::Delack,
            2 => TimerKind::Keepalive,
            3 => TimerKind::TimeWait,
            _ => TimerKind::ReqTimeout,
        };
        (k, SockHandle::from_u56(d & ((1 << 56) - 1)))
    }
}

/// The wheel callback for every TCP timer: find TCP in the stack and the socket in TCP.
pub const TCP_TIMER_FN: TimerFn<Stack> = tcp_timer_dispatch;

fn tcp_timer_dispatch(stack: &mut Stack, data: u64) {
    let (kind, h) = TimerKind::from_data(data);
    stack.with_protocol_as::<TcpProto, _>(IPPROTO_TCP, |stack, tcp| tcp.on_timer(stack, kind, h));
}

/// Arm the retransmit timer in persist mode (Linux: ICSK_TIME_PROBE0).
pub fn tcp_arm_probe0(sk: &mut TcpSock, stack: &mut Stack) {
    if let Some(t) = sk.retransmit_timer {
        if !sk.probe0 || !stack.timers.timer_pending(t) {
            sk.probe0 = true;
            sk.icsk_pending = XmitTimer::Retrans;
            stack.timers.mod_timer(
                t,
                stack.core.jiffies + sk.rto_backed_off_ms().max(crate::TCP_RTO_MIN_MS),
            );
        }
    }
}

/// Linux: tcp_retransmit_timer() / tcp_probe_timer() / the SYN and SYN-ACK retries.
pub fn tcp_retransmit_timer(sk: &mut TcpSock, stack: &mut Stack) {
    let now = stack.core.jiffies;
    match sk.state {
        TcpState::SynSent | TcpState::SynRecv => {
            let limit = if sk.state == TcpState::SynSent {
                crate::TCP_SYN_RETRIES
            } else {
                crate::TCP_SYNACK_RETRIES
            };
            if sk.retransmits >= limit {
                // tcp_done counts Tcp.AttemptFails.
                sk.error = Some(TcpError::TimedOut);
                tcp_done(sk, stack);
                return;
            }
            sk.retransmits += 1;
            sk.backoff += 1;
            stack.core.mib.tcp.inc(TcpMib::RetransSegs);
            if sk.state == TcpState::SynSent {
                tcp_send_syn(sk, stack);
            } else {
                tcp_send_synack(sk, stack);
            }
            tcp_arm_rto(sk, stack, true);
            return;
        }
        TcpState::Closed | TcpState::Listen | TcpState::TimeWait => return,
        _ => {}
    }
    if sk.probe0 {
        // Persist: the peer's window is closed; probe it with growing intervals, forever while
        // it answers (Linux gives up after tcp_retries2 unanswered probes).
        if sk.write_queue.is_empty() || sk.packets_out > 0 {
            sk.probe0 = false;
            return;
        }
        if sk.retransmits >= crate::TCP_RETRIES2 {
            sk.error = Some(TcpError::TimedOut);
            stack.core.mib.tcp_ext.inc(TcpExtMib::TCPAbortOnTimeout);
            tcp_done(sk, stack);
            return;
        }
        if tcp_write_wakeup(sk, stack) {
            // Data went out into a window smaller than a segment: the retransmission timer
            // guards it now (Linux: tcp_send_probe0 with packets_out).
            sk.retransmits = 0;
            sk.backoff = 0;
            return;
        }
        tcp_send_probe0(sk, stack);
        sk.retransmits += 1;
        sk.backoff += 1;
        if let Some(t) = sk.retransmit_timer {
            stack
                .timers
                .mod_timer(t, now + sk.rto_backed_off_ms().max(crate::TCP_RTO_MIN_MS));
        }
        // Send new data too if the window reopened meanwhile.
        tcp_write_xmit(sk, stack, false);
        return;
    }
    if sk.rtx_queue.is_empty() {
        sk.icsk_pending = XmitTimer::Retrans;
        // Nothing in flight: a FIN still waiting for a buffer goes out from here (see
        // tcp_send_fin).
        tcp_write_xmit(sk, stack, false);
        return;
    }
    // The same timer serves RACK's reordering timeout and the tail loss probe.
    match sk.icsk_pending {
        XmitTimer::ReoTimeout => return tcp_rack_reo_timeout(sk, stack),
        XmitTimer::LossProbe => return tcp_send_loss_probe(sk, stack),
        XmitTimer::Retrans => {}
    }
    if sk.retransmits == 0 {
        sk.rto_start_ns = sk
            .rtx_queue
            .front()
            .map_or(stack.core.now_ns, |s| s.cb::<TcpSkbCb>().when_ns);
    } else if retransmits_timed_out(sk, stack.core.now_ns) {
        sk.error = Some(TcpError::TimedOut);
        stack.core.mib.tcp_ext.inc(TcpExtMib::TCPAbortOnTimeout);
        tcp_done(sk, stack);
        return;
    }
    stack.core.mib.tcp_ext.inc(TcpExtMib::TCPTimeouts);
    // Linux: tcp_enter_loss(). Everything not SACKed is lost; restart from one segment.
    if matches!(sk.ca_state, CaState::Open | CaState::Disorder | CaState::Cwr)
        || (sk.ca_state == CaState::Loss && sk.retransmits == 0)
    {
        // A new episode: remember what to restore if the timeout proves spurious. (In
        // Recovery the episode, and its undo state, began with the fast retransmit.)
        sk.undo.prior_ssthresh = tcp_current_ssthresh(sk);
        sk.cong.prior_cwnd = sk.cong.cwnd;
        tcp_init_undo(sk);
    }
    if sk.ca_state != CaState::Loss || sk.retransmits == 0 {
        sk.cong.ssthresh = sk.ca_ops.ssthresh(&sk.cong);
    }
    sk.tlp_high_seq = None;
    sk.rto_stamp_ns = stack.core.now_ns;
    sk.rto_stamp_ts = Some(tcp_time_stamp(sk, stack));
    sk.cong.cwnd = 1;
    sk.cong.cwnd_cnt = 0;
    sk.ca_state = CaState::Loss;
    sk.ca_ops.set_state(&mut sk.cong, CaState::Loss);
    sk.high_seq = sk.snd_nxt;
    sk.dupacks = 0;
    sk.retrans_out = 0;
    sk.lost_out = 0;
    // A SACKed segment at the head of the queue: the cumulative ACK stopped at data the
    // receiver had SACKed, so it dropped it again (reneging, RFC 2018 8; blink itself does so
    // under memory pressure). Forget every SACK mark and resend it all (Linux:
    // tcp_check_sack_reneging + tcp_timeout_mark_lost).
    let reneg = sk
        .rtx_queue
        .front()
        .is_some_and(|s| s.cb::<TcpSkbCb>().sacked & TCPCB_SACKED_ACKED != 0);
    if reneg {
        stack.core.mib.tcp_ext.inc(TcpExtMib::TCPSACKReneging);
        sk.sacked_out = 0;
    } else if !sk.rx_opt.sack_ok {
        // Reno's duplicate-ACK count goes with the timeout, which marks every segment lost
        // (Linux: tcp_reset_reno_sack in tcp_enter_loss).
        sk.sacked_out = 0;
    }
    for skb in sk.rtx_queue.iter_mut() {
        let c = skb.cb_mut::<TcpSkbCb>();
        c.sacked &= !crate::tcp::TCPCB_SACKED_RETRANS;
        if reneg {
            c.sacked &= !TCPCB_SACKED_ACKED;
        }
        if c.sacked & TCPCB_SACKED_ACKED == 0 {
            c.sacked |= TCPCB_LOST;
            sk.lost_out += 1;
        }
    }
    sk.retransmits += 1;
    sk.backoff += 1;
    tcp_xmit_retransmit_queue(sk, stack);
    tcp_arm_rto(sk, stack, true);
}

/// Linux: tcp_model_timeout(). How long `boundary` timeouts take from an RTO of `rto_base`
/// ms doubling up to TCP_RTO_MAX: tcp_retries2 (15) at the 200 ms floor is 924.6 s.
pub fn tcp_model_timeout(boundary: u32, rto_base: u64) -> u64 {
    let thresh = (crate::TCP_RTO_MAX_MS / rto_base).ilog2();
    if boundary <= thresh {
        ((2u64 << boundary) - 1) * rto_base
    } else {
        ((2u64 << thresh) - 1) * rto_base + (boundary - thresh) as u64 * crate::TCP_RTO_MAX_MS
    }
}

/// Linux: retransmits_timed_out() for tcp_retries2. Established connections give up by time,
/// not by count: a path with a long RTO makes fewer retransmissions in the same 924.6 s.
fn retransmits_timed_out(sk: &TcpSock, now_ns: u64) -> bool {
    let limit_ms = tcp_model_timeout(crate::TCP_RETRIES2, crate::TCP_RTO_MIN_MS);
    now_ns.saturating_sub(sk.rto_start_ns) >= limit_ms * 1_000_000
}

/// Linux: tcp_delack_timer(). Send the ACK we owe.
pub fn tcp_delack_timer(sk: &mut TcpSock, stack: &mut Stack) {
    if sk.ack_pending {
        stack.core.mib.tcp_ext.inc(TcpExtMib::DelayedACKs);
        tcp_send_ack(sk, stack);
    }
}

/// Linux: tcp_keepalive_timer(), which also ends FIN-WAIT-2 for orphans.
pub fn tcp_keepalive_timer(sk: &mut TcpSock, stack: &mut Stack) {
    let now = stack.core.jiffies;
    if crate::tcp_sockopt::tcp_linger_expired(sk, stack) {
        return;
    }
    match sk.state {
        // An orphan's FIN-WAIT-2 timeout; a socket the application still holds is kept
        // (and probed, with keepalive on), as in Linux.
        TcpState::FinWait2 if sk.orphan => tcp_done(sk, stack),
        TcpState::Established | TcpState::CloseWait | TcpState::FinWait2 => {
            let Some((idle, intvl, cnt)) = sk.keepalive else { return };
            if sk.packets_out > 0 || !sk.write_queue.is_empty() {
                // Data in flight or waiting: the retransmission / persist timer watches the
                // peer, probes would only add noise (Linux: tcp_keepalive_timer resched).
                if let Some(t) = sk.keepalive_timer {
                    stack.timers.mod_timer(t, now + idle);
                }
                return;
            }
            let quiet = now.saturating_sub(sk.rcv_tstamp);
            if quiet < idle && sk.keepalive_probes_sent == 0 {
                if let Some(t) = sk.keepalive_timer {
                    stack.timers.mod_timer(t, sk.rcv_tstamp + idle);
                }
                return;
            }
            if sk.keepalive_probes_sent >= cnt {
                // Linux resets the connection it gives up on (tcp_keepalive_timer).
                tcp_send_active_reset(sk, stack);
                sk.error = Some(TcpError::TimedOut);
                stack.core.mib.tcp_ext.inc(TcpExtMib::TCPAbortOnTimeout);
                tcp_done(sk, stack);
                return;
            }
            // A keepalive probe is a zero-window-probe-shaped ACK (seq snd_una - 1).
            tcp_send_probe0(sk, stack);
            sk.keepalive_probes_sent += 1;
            if let Some(t) = sk.keepalive_timer {
                stack.timers.mod_timer(t, now + intvl);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::tcp_model_timeout;

    #[test]
    fn model_timeout_matches_linux() {
        // tcp_retries2 = 15 at TCP_RTO_MIN: the documented ~924.6 s.
        assert_eq!(tcp_model_timeout(15, 200), 924_600);
        // Below the linear threshold: a plain doubling sum, 0.2 + 0.4 + 0.8 s.
        assert_eq!(tcp_model_timeout(2, 200), 1_400);
        // tcp_retries1 = 3.
        assert_eq!(tcp_model_timeout(3, 200), 3_000);
    }
}
