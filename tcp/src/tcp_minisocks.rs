//! The small sockets of a connection's two ends: request socks (SYN-RECV) and TIME-WAIT
//! socks. Linux: net/ipv4/tcp_minisocks.c (`tcp_check_req`, `tcp_time_wait`,
//! `tcp_timewait_state_process`), request_sock.c and inet_timewait_sock.c.
//!
//! A SYN to a listener creates a `TcpRequestSock` (about a hundred bytes, one timer), not a
//! full socket: a SYN flood or a slow handshake costs no buffers, queues or congestion state.
//! The handshake's final ACK promotes it to a full socket (Linux: tcp_v4_syn_recv_sock), which
//! goes to the listener's accept queue.
//!
//! A connection that reaches TIME-WAIT no longer needs its buffers, queues, congestion state or
//! three timers: only what is needed to answer the peer's last segments and to judge whether a
//! new SYN for the same 4-tuple may reuse it. So, as in Linux, the full socket is freed and a
//! small `TcpTimewaitSock` (one timer) holds the tuple for the TIME-WAIT period. A SYN that is
//! provably newer (higher sequence number, or higher timestamp) is allowed to end TIME-WAIT
//! early and open a new connection (RFC 6191), and with `TcpConfig::tw_reuse` an active open
//! may take over a tuple whose TIME-WAIT has lasted a second (Linux: tcp_tw_reuse).

use blink_ipv4::Stack;
use blink_netcore::sock::SockHandle;
use blink_netcore::timer::TimerId;

use crate::inet_hashtables::FourTuple;
use crate::tcp::{RxOpt, TcpSkbCb, TcpSock};
use crate::tcp_ipv4::{tcp_v4_send_stateless, tcp_v4_send_stateless_ip};
use crate::tcphdr::*;

/// Linux: struct tcp_request_sock (with inet_request_sock and request_sock): what a SYN-RECV
/// connection needs until its handshake completes.
#[derive(Debug, Clone)]
pub struct TcpRequestSock {
    pub tuple: FourTuple,
    /// The listener that will own the connection.
    pub listener: SockHandle,
    /// The peer's initial sequence number.
    pub rcv_isn: u32,
    /// Ours.
    pub snt_isn: u32,
    pub ts_offset: u32,
    /// The negotiated options (MSS clamp, window scales, SACK, timestamps and `ts_recent`).
    pub rx_opt: RxOpt,
    /// The MSS we announced and whether the route's device fills TCP checksums.
    pub advmss: u16,
    pub tx_csum_offload: bool,
    /// The peer's window from its SYN (never scaled).
    pub snd_wnd: u16,
    /// The window our SYN-ACK announced (never scaled; Linux: rsk_rcv_wnd).
    pub rcv_wnd: u16,
    /// The listener's IP_TOS and IP_TTL, for the SYN-ACK and ACKs sent from here.
    pub tos: u8,
    pub ttl: Option<u8>,
    /// SYN-ACKs sent again for any reason (a sample of the handshake RTT needs none).
    pub num_retrans: u32,
    /// Timer expiries so far: the SYN-ACK backoff and the give-up count.
    pub num_timeout: u32,
    /// When the first SYN-ACK went out (ns), for the handshake RTT sample.
    pub snt_synack_ns: u64,
    /// Rate limit of out-of-window ACKs (Linux: last_oow_ack_time).
    pub last_oow_ack_time: Option<u64>,
    pub timer: Option<TimerId>,
}

/// What `check_req` decided about a segment for a request sock (Linux: the outcomes of
/// tcp_check_req).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReqVerdict {
    /// Nothing more to do (the segment is dropped).
    Discard,
    /// The peer retransmitted its SYN: send the SYN-ACK again (if not rate limited).
    RetransmitSynack,
    /// Out of window or a PAWS reject: answer with an ACK (if not rate limited), drop.
    Ack,
    /// An ACK of something we never sent: answer with a reset; the request sock stays.
    Reset,
    /// A reset or SYN in window: the handshake is over (counted as Tcp AttemptFails and
    /// TcpExt EmbryonicRsts); answer a SYN with a reset.
    Embryonic,
    /// The handshake's final ACK: promote to a full socket.
    Promote,
}

impl TcpRequestSock {
    /// Linux: tcp_check_req(). Judge a segment for this request sock; updates `ts_recent`.
    /// `paws_reject` is reported separately so the caller can count it (PAWSEstab).
    pub fn check_req(&mut self, cb: &TcpSkbCb, opts: &TcpOptions) -> (ReqVerdict, bool) {
        let mut flags = cb.tcp_flags;
        let rst = flags & TCPHDR_RST != 0;
        let tsval = if self.rx_opt.tstamp_ok {
            opts.ts.map(|(v, _)| v)
        } else {
            None
        };
        // PAWS (RFC 7323 5.3): an older timestamp than the SYN's marks an old duplicate.
        let paws_reject = !rst && tsval.is_some_and(|v| before(v, self.rx_opt.ts_recent));
        if cb.seq == self.rcv_isn && flags == TCPHDR_SYN && !paws_reject {
            return (ReqVerdict::RetransmitSynack, false);
        }
        // RFC 9293 3.10.7.4: an unacceptable ACK in a non-synchronized state gets a reset.
        if flags & TCPHDR_ACK != 0 && cb.ack_seq != self.snt_isn.wrapping_add(1) {
            return (ReqVerdict::Reset, paws_reject);
        }
        let rcv_nxt = self.rcv_isn.wrapping_add(1);
        if paws_reject || !tcp_in_window(cb.seq, cb.end_seq, rcv_nxt, rcv_nxt.wrapping_add(self.rcv_wnd as u32)) {
            let v = if rst { ReqVerdict::Discard } else { ReqVerdict::Ack };
            return (v, paws_reject);
        }
        if let Some(v) = tsval {
            if !after(cb.seq, rcv_nxt) {
                self.rx_opt.ts_recent = v;
            }
        }
        if cb.seq == self.rcv_isn {
            // The SYN itself lies before the window, which starts at rcv_isn + 1.
            flags &= !TCPHDR_SYN;
        }
        if flags & (TCPHDR_RST | TCPHDR_SYN) != 0 {
            return (ReqVerdict::Embryonic, false);
        }
        if flags & TCPHDR_ACK == 0 {
            return (ReqVerdict::Discard, false);
        }
        (ReqVerdict::Promote, false)
    }

    /// Linux: tcp_v4_send_synack() / tcp_make_synack(). A SYN-ACK with the negotiated options;
    /// a request sock has no queue, so it goes out like a reset, from a fresh skb.
    pub fn send_synack(&self, stack: &mut Stack) -> bool {
        let tsval = (stack.core.jiffies as u32).wrapping_add(self.ts_offset);
        let opts = crate::tcp_output::syn_options_from(&self.rx_opt, self.advmss, tsval, true);
        tcp_v4_send_stateless_ip(
            stack,
            &self.tuple,
            self.snt_isn,
            self.rcv_isn.wrapping_add(1),
            TCPHDR_SYN | TCPHDR_ACK,
            self.rcv_wnd,
            &opts,
            (self.tos, self.ttl),
        )
    }

    /// Linux: tcp_v4_reqsk_send_ack(). An ACK from SYN-RECV for an out-of-window segment.
    pub fn send_ack(&self, stack: &mut Stack) {
        let mut opts = TcpOptions::default();
        if self.rx_opt.tstamp_ok {
            let tsval = (stack.core.jiffies as u32).wrapping_add(self.ts_offset);
            opts.ts = Some((tsval, self.rx_opt.ts_recent));
        }
        tcp_v4_send_stateless_ip(
            stack,
            &self.tuple,
            self.snt_isn.wrapping_add(1),
            self.rcv_isn.wrapping_add(1),
            TCPHDR_ACK,
            self.rcv_wnd,
            &opts,
            (self.tos, self.ttl),
        );
    }

    /// The SYN-ACK retransmission timeout after `num_timeout` expiries (Linux: reqsk_timeout:
    /// TCP_TIMEOUT_INIT doubled each time, at most TCP_RTO_MAX).
    pub fn timeout_ms(&self) -> u64 {
        (crate::TCP_TIMEOUT_INIT_MS << self.num_timeout.min(16)).min(crate::TCP_RTO_MAX_MS)
    }
}

/// Linux: tcp_in_window(). Does `[seq, end_seq)` touch the window `[s_win, e_win]`?
fn tcp_in_window(seq: u32, end_seq: u32, s_win: u32, e_win: u32) -> bool {
    if seq == s_win {
        return true;
    }
    if after(end_seq, s_win) && before(seq, e_win) {
        return true;
    }
    seq == e_win && seq == end_seq
}

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

    fn req() -> TcpRequestSock {
        TcpRequestSock {
            tuple: tw().tuple,
            listener: SockHandle::from_u56(1),
            rcv_isn: 1000,
            snt_isn: 9000,
            ts_offset: 0,
            rx_opt: RxOpt {
                tstamp_ok: true,
                ts_recent: 500,
                ..Default::default()
            },
            advmss: 1460,
            tx_csum_offload: false,
            snd_wnd: 65535,
            rcv_wnd: 65535,
            tos: 0,
            ttl: None,
            num_retrans: 0,
            num_timeout: 0,
            snt_synack_ns: 0,
            last_oow_ack_time: None,
            timer: None,
        }
    }

    fn ack(seq: u32, len: u32, flags: u8, ack: u32) -> TcpSkbCb {
        TcpSkbCb {
            ack_seq: ack,
            ..seg(seq, len, flags | TCPHDR_ACK)
        }
    }

    #[test]
    fn req_handshake_ack_promotes_and_updates_ts_recent() {
        let mut r = req();
        assert_eq!(
            r.check_req(&ack(1001, 0, 0, 9001), &ts(600)),
            (ReqVerdict::Promote, false)
        );
        assert_eq!(r.rx_opt.ts_recent, 600);
        // Data on the final ACK is fine too.
        assert_eq!(
            r.check_req(&ack(1001, 100, TCPHDR_PSH, 9001), &ts(600)).0,
            ReqVerdict::Promote
        );
    }

    #[test]
    fn req_retransmitted_syn_and_bad_acks() {
        let mut r = req();
        assert_eq!(
            r.check_req(&seg(1000, 1, TCPHDR_SYN), &ts(500)).0,
            ReqVerdict::RetransmitSynack
        );
        // An ACK of something never sent: reset, whatever its sequence number.
        assert_eq!(r.check_req(&ack(1001, 0, 0, 9005), &ts(600)).0, ReqVerdict::Reset);
        // No ACK and nothing else: dropped.
        assert_eq!(r.check_req(&seg(1001, 10, TCPHDR_PSH), &ts(600)).0, ReqVerdict::Discard);
        // Out of window: an ACK answers it.
        assert_eq!(
            r.check_req(&ack(1001 + 70_000, 0, 0, 9001), &ts(600)).0,
            ReqVerdict::Ack
        );
        assert_eq!(r.check_req(&ack(900, 0, 0, 9001), &ts(600)).0, ReqVerdict::Ack);
    }

    #[test]
    fn req_paws_rejects_older_timestamps() {
        let mut r = req();
        assert_eq!(r.check_req(&ack(1001, 0, 0, 9001), &ts(400)), (ReqVerdict::Ack, true));
        assert_eq!(r.rx_opt.ts_recent, 500);
    }

    #[test]
    fn req_reset_or_new_syn_in_window_ends_the_handshake() {
        let mut r = req();
        assert_eq!(
            r.check_req(&seg(1001, 0, TCPHDR_RST), &ts(600)).0,
            ReqVerdict::Embryonic
        );
        assert_eq!(
            r.check_req(&seg(1500, 1, TCPHDR_SYN), &ts(600)).0,
            ReqVerdict::Embryonic
        );
        // A reset outside the window is ignored silently.
        assert_eq!(
            r.check_req(&seg(500_000, 0, TCPHDR_RST), &ts(600)).0,
            ReqVerdict::Discard
        );
    }

    #[test]
    fn req_timeout_backs_off_to_rto_max() {
        let mut r = req();
        let t: Vec<u64> = (0..5)
            .map(|n| {
                r.num_timeout = n;
                r.timeout_ms()
            })
            .collect();
        assert_eq!(t, [1000, 2000, 4000, 8000, 16000]);
        r.num_timeout = 10;
        assert_eq!(r.timeout_ms(), crate::TCP_RTO_MAX_MS);
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

#[cfg(test)]
mod size_tests {
    /// The point of request and TIME-WAIT socks is their size: a SYN flood or a busy server's
    /// TIME-WAIT population must cost a small fraction of a full socket.
    #[test]
    fn minisocks_are_small() {
        let full = std::mem::size_of::<crate::tcp::TcpSock>();
        let req = std::mem::size_of::<super::TcpRequestSock>();
        let tw = std::mem::size_of::<super::TcpTimewaitSock>();
        println!("TcpSock {full} B, TcpRequestSock {req} B, TcpTimewaitSock {tw} B");
        assert!(req <= 128, "TcpRequestSock is {req} bytes");
        assert!(tw <= 96, "TcpTimewaitSock is {tw} bytes");
        assert!(req * 4 <= full);
    }
}
