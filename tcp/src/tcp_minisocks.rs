//! TIME-WAIT sockets. Linux: net/ipv4/tcp_minisocks.c (`tcp_time_wait`,
//! `tcp_timewait_state_process`) and inet_timewait_sock.c.
//!
//! A connection that reaches TIME-WAIT no longer needs its buffers, queues, congestion state or
//! three timers: only what is needed to answer the peer's last segments and to judge whether a
//! new SYN for the same 4-tuple may reuse it. So, as in Linux, the full socket is freed and a
//! small `TcpTimewaitSock` (one timer) holds the tuple for the TIME-WAIT period. A SYN that is
//! provably newer (higher sequence number, or higher timestamp) is allowed to end TIME-WAIT
//! early and open a new connection (RFC 6191), and with `TcpConfig::tw_reuse` an active open
//! may take over a tuple whose TIME-WAIT has lasted a second (Linux: tcp_tw_reuse).

use blink_ipv4::Stack;
use blink_netcore::timer::TimerId;

use crate::inet_hashtables::FourTuple;
use crate::tcp::{TcpSkbCb, TcpSock};
use crate::tcp_ipv4::tcp_v4_send_stateless;
use crate::tcphdr::*;

/// Linux: struct tcp_timewait_sock (the part blink needs).
#[derive(Debug, Clone)]
pub struct TcpTimewaitSock {
    pub tuple: FourTuple,
    pub rcv_nxt: u32,
    pub snd_nxt: u32,
    /// Window we advertise in our ACKs, already shifted by `rcv_wscale`.
    pub rcv_wnd: u16,
    pub tstamp_ok: bool,
    pub ts_recent: u32,
    /// Jiffies when `ts_recent` was last updated.
    pub ts_recent_stamp: u64,
    pub ts_offset: u32,
    /// TIME-WAIT length (ms), restarted by the peer's retransmitted FIN.
    pub timeout_ms: u64,
    pub timer: Option<TimerId>,
}

/// The outcome of `state_process`: what to do, whether to restart the TIME-WAIT timer, and
/// whether PAWS rejected the segment (counted as TcpExt PAWSEstab).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwVerdict {
    pub status: TwStatus,
    pub restart: bool,
    pub paws_reject: bool,
}

/// What `tcp_timewait_state_process` decided (Linux: enum tcp_tw_status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwStatus {
    /// Nothing to send; the segment is consumed.
    Success,
    /// Answer with an ACK of what we have.
    Ack,
    /// A new SYN that may reuse the tuple: kill the TIME-WAIT sock and hand the SYN to the
    /// listener, which must use this initial sequence number.
    Syn(u32),
    /// The TIME-WAIT sock is finished (a reset killed it).
    Kill,
}

impl TcpTimewaitSock {
    /// Linux: tcp_time_wait() building the timewait sock from the full socket.
    pub fn from_sock(sk: &TcpSock, jiffies: u64) -> TcpTimewaitSock {
        let wnd = sk.rcv_wnd.saturating_sub(sk.rcv_nxt.wrapping_sub(sk.rcv_wup)) >> sk.rx_opt.rcv_wscale;
        TcpTimewaitSock {
            tuple: sk.tuple(),
            rcv_nxt: sk.rcv_nxt,
            snd_nxt: sk.snd_nxt,
            rcv_wnd: wnd.min(65535) as u16,
            tstamp_ok: sk.rx_opt.tstamp_ok,
            ts_recent: sk.rx_opt.ts_recent,
            ts_recent_stamp: if sk.rx_opt.ts_recent_stamp != 0 {
                sk.rx_opt.ts_recent_stamp
            } else {
                jiffies
            },
            ts_offset: sk.ts_offset,
            timeout_ms: sk.timewait_ms,
            timer: None,
        }
    }

    /// The initial sequence number a connection reusing this tuple must start from: beyond
    /// anything the old one sent, by more than a window (Linux: tw_snd_nxt + 65535 + 2).
    pub fn reuse_isn(&self) -> u32 {
        let isn = self.snd_nxt.wrapping_add(65535 + 2);
        if isn == 0 {
            1
        } else {
            isn
        }
    }

    /// May an active open take this tuple over now? (Linux: tcp_twsk_unique with
    /// tcp_tw_reuse: timestamps protect the new connection from old duplicates once the old
    /// one's last timestamp is at least a second old.)
    pub fn reusable(&self, jiffies: u64) -> bool {
        self.tstamp_ok && jiffies >= self.ts_recent_stamp + 1000
    }

    /// Linux: tcp_timewait_state_process() for the TIME-WAIT substate. Updates the sock and
    /// says what to do with the segment.
    pub fn state_process(&mut self, cb: &TcpSkbCb, opts: &TcpOptions, now: u64) -> TwVerdict {
        let flags = cb.tcp_flags;
        let rst = flags & TCPHDR_RST != 0;
        let syn = flags & TCPHDR_SYN != 0;
        let ack = flags & TCPHDR_ACK != 0;
        let tsval = if self.tstamp_ok { opts.ts.map(|(v, _)| v) } else { None };
        // PAWS (RFC 7323 5.3): an older timestamp marks an old duplicate.
        let paws_reject = !rst && tsval.is_some_and(|v| (self.ts_recent.wrapping_sub(v) as i32) > 0);
        let seq_len = cb.end_seq.wrapping_sub(cb.seq);
        let verdict = |status, restart| TwVerdict {
            status,
            restart,
            paws_reject,
        };

        if !paws_reject && cb.seq == self.rcv_nxt && (seq_len == 0 || rst) {
            // In window: only a reset or a bare ACK can be here.
            if rst {
                // TIME-WAIT assassination (RFC 1337); Linux (tcp_rfc1337 = 0) lets it kill.
                return verdict(TwStatus::Kill, false);
            }
            if let Some(v) = tsval {
                self.ts_recent = v;
                self.ts_recent_stamp = now;
            }
            return verdict(TwStatus::Success, true);
        }
        // A new SYN may reuse the tuple when it cannot be an old duplicate (RFC 6191).
        if syn
            && !rst
            && !ack
            && !paws_reject
            && (after(cb.seq, self.rcv_nxt) || tsval.is_some_and(|v| (self.ts_recent.wrapping_sub(v) as i32) < 0))
        {
            return verdict(TwStatus::Syn(self.reuse_isn()), false);
        }
        if rst {
            return verdict(TwStatus::Success, false);
        }
        // Out of window (e.g. the peer's FIN again, because our ACK was lost): ACK it, and
        // restart TIME-WAIT when it acknowledges something or failed PAWS.
        verdict(TwStatus::Ack, paws_reject || ack)
    }

    /// Linux: tcp_v4_timewait_ack(). ACK what the connection had, with its timestamps.
    pub fn send_ack(&self, stack: &mut Stack) {
        let mut opts = TcpOptions::default();
        if self.tstamp_ok {
            opts.ts = Some(((stack.core.jiffies as u32).wrapping_add(self.ts_offset), self.ts_recent));
        }
        tcp_v4_send_stateless(
            stack,
            &self.tuple,
            self.snd_nxt,
            self.rcv_nxt,
            TCPHDR_ACK,
            self.rcv_wnd,
            &opts,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn tw() -> TcpTimewaitSock {
        TcpTimewaitSock {
            tuple: FourTuple {
                laddr: Ipv4Addr::new(10, 0, 0, 2),
                lport: 80,
                raddr: Ipv4Addr::new(10, 0, 0, 1),
                rport: 40000,
            },
            rcv_nxt: 1000,
            snd_nxt: 5000,
            rcv_wnd: 65535,
            tstamp_ok: true,
            ts_recent: 700,
            ts_recent_stamp: 10_000,
            ts_offset: 0,
            timeout_ms: 60_000,
            timer: None,
        }
    }

    fn seg(seq: u32, len: u32, flags: u8) -> TcpSkbCb {
        TcpSkbCb {
            seq,
            end_seq: seq.wrapping_add(len),
            tcp_flags: flags,
            ..Default::default()
        }
    }

    fn ts(v: u32) -> TcpOptions {
        TcpOptions {
            ts: Some((v, 0)),
            ..Default::default()
        }
    }

    #[test]
    fn in_window_ack_restarts_and_updates_ts_recent() {
        let mut t = tw();
        let v = t.state_process(&seg(1000, 0, TCPHDR_ACK), &ts(800), 20_000);
        assert_eq!((v.status, v.restart, v.paws_reject), (TwStatus::Success, true, false));
        assert_eq!((t.ts_recent, t.ts_recent_stamp), (800, 20_000));
    }

    #[test]
    fn retransmitted_fin_is_acked_and_restarts() {
        let mut t = tw();
        // The peer's FIN again: one below rcv_nxt, one sequence number long.
        let v = t.state_process(&seg(999, 1, TCPHDR_FIN | TCPHDR_ACK), &ts(800), 20_000);
        assert_eq!((v.status, v.restart), (TwStatus::Ack, true));
    }

    #[test]
    fn in_window_reset_kills() {
        let mut t = tw();
        let v = t.state_process(&seg(1000, 0, TCPHDR_RST), &TcpOptions::default(), 20_000);
        assert_eq!(v.status, TwStatus::Kill);
        // Out of window, a reset is ignored.
        let v = t.state_process(&seg(5000, 0, TCPHDR_RST), &TcpOptions::default(), 20_000);
        assert_eq!((v.status, v.restart), (TwStatus::Success, false));
    }

    #[test]
    fn newer_syn_reuses_by_sequence_or_timestamp() {
        let mut t = tw();
        let want = TwStatus::Syn(5000 + 65537);
        assert_eq!(t.state_process(&seg(2000, 1, TCPHDR_SYN), &ts(800), 0).status, want);
        // A lower sequence number, but a newer timestamp: PAWS says it is new.
        assert_eq!(t.state_process(&seg(10, 1, TCPHDR_SYN), &ts(701), 0).status, want);
        // Lower sequence number and an equal timestamp: maybe an old duplicate, so ACK.
        assert_eq!(
            t.state_process(&seg(10, 1, TCPHDR_SYN), &ts(700), 0).status,
            TwStatus::Ack
        );
        // A SYN-ACK is never a new connection.
        let v = t.state_process(&seg(2000, 1, TCPHDR_SYN | TCPHDR_ACK), &ts(800), 0);
        assert_eq!(v.status, TwStatus::Ack);
    }

    #[test]
    fn paws_rejects_old_timestamps() {
        let mut t = tw();
        let v = t.state_process(&seg(1000, 0, TCPHDR_ACK), &ts(600), 0);
        assert_eq!((v.status, v.restart, v.paws_reject), (TwStatus::Ack, true, true));
        // A newer-sequence SYN with an old timestamp is an old duplicate too.
        let v = t.state_process(&seg(2000, 1, TCPHDR_SYN), &ts(600), 0);
        assert_eq!((v.status, v.paws_reject), (TwStatus::Ack, true));
        assert_eq!(t.ts_recent, 700);
    }

    #[test]
    fn reuse_needs_timestamps_and_a_second() {
        let t = tw();
        assert!(!t.reusable(10_999));
        assert!(t.reusable(11_000));
        let t = TcpTimewaitSock {
            tstamp_ok: false,
            ..tw()
        };
        assert!(!t.reusable(1_000_000));
        let t = TcpTimewaitSock {
            snd_nxt: u32::MAX - 65536,
            ..tw()
        };
        assert_eq!(t.reuse_isn(), 1, "ISN 0 is avoided");
    }
}
