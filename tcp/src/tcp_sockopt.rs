//! Per-socket options of a TCP socket, as `setsockopt(2)` sets them on Linux: the SOL_TCP
//! ones (Linux: do_tcp_setsockopt() in net/ipv4/tcp.c), the SOL_SOCKET ones TCP honours
//! (sock_setsockopt() in net/core/sock.c) and the SOL_IP ones its segments carry
//! (do_ip_setsockopt() in net/ipv4/ip_sockglue.c).
//!
//! Values are checked here, so a caller straight into `blink_tcp` gets the same errors as
//! glue's. Where blink differs from Linux the variant's doc says so.

use blink_ipv4::Stack;
use blink_netcore::snmp::TcpExtMib;

use crate::tcp::{TcpSock, TcpState};
use crate::TcpErr;

/// Smallest TCP_MAXSEG Linux accepts (TCP_MIN_MSS).
pub const TCP_MIN_MSS: u16 = 88;
/// Largest TCP_MAXSEG Linux accepts (MAX_TCP_WINDOW).
pub const TCP_MAX_USER_MSS: u16 = 32767;
/// Send/receive buffer bounds. Linux's floors are SOCK_MIN_SNDBUF / SOCK_MIN_RCVBUF (about
/// 4.5 KiB and 2.3 KiB); blink takes 4 KiB for both. The ceiling is what a window scale of 14
/// can advertise (RFC 7323), 1 GiB. Linux clamps instead of refusing and doubles the value
/// for its bookkeeping; blink refuses a value out of bounds and uses it as given.
pub const SOCK_MIN_BUF: u32 = 4096;
pub const SOCK_MAX_BUF: u32 = 1 << 30;
/// Keepalive bounds (Linux: MAX_TCP_KEEPIDLE / MAX_TCP_KEEPINTVL seconds, MAX_TCP_KEEPCNT).
pub const MAX_TCP_KEEPIDLE_MS: u64 = 32767 * 1000;
pub const MAX_TCP_KEEPINTVL_MS: u64 = 32767 * 1000;
pub const MAX_TCP_KEEPCNT: u32 = 127;
/// Longest SO_LINGER time (Linux: MAX_SCHEDULE_TIMEOUT in seconds is far longer; a day is
/// plenty for a time blink uses to bound an orphan's life).
pub const MAX_LINGER_MS: u64 = 86_400_000;

/// SO_KEEPALIVE with TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Quiet time before the first probe (TCP_KEEPIDLE).
    pub idle_ms: u64,
    /// Time between unanswered probes (TCP_KEEPINTVL).
    pub intvl_ms: u64,
    /// Unanswered probes before the connection is reset (TCP_KEEPCNT).
    pub probes: u32,
}

/// One option and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpSockOpt {
    /// TCP_NODELAY: send small segments at once (no Nagle). Turning it on pushes what Nagle
    /// held back, as Linux does.
    NoDelay(bool),
    /// TCP_CORK: hold partial segments until a full MSS is queued or the cork is removed;
    /// removing it pushes what was held. (Linux also ends a cork after 200 ms; blink holds
    /// until uncorked.)
    Cork(bool),
    /// SO_KEEPALIVE with its timings; None turns probing off.
    KeepAlive(Option<Keepalive>),
    /// SO_SNDBUF, bytes: how much unacknowledged data the socket queues.
    SndBuf(u32),
    /// SO_RCVBUF, bytes: the receive window. Before connect (or on a listener) it also sets
    /// the window scale the SYN offers; afterwards the scale stays as negotiated.
    RcvBuf(u32),
    /// SO_LINGER: None = off (close sends FIN and the connection finishes in the
    /// background). Some(0) = close resets the connection (RST, queued data dropped).
    /// Some(ms): blink's close never blocks, so the time bounds the orphan instead: if the
    /// data and FIN are not acknowledged within it, the connection is reset (Linux would
    /// have returned from close() then and gone on trying in the background).
    Linger(Option<u64>),
    /// TCP_MAXSEG: the MSS announced on the SYN and the largest segment sent. Set before
    /// connect or on a listener it shapes the handshake; on a connection it lowers the
    /// segment size from then on. 88..=32767 as Linux.
    MaxSeg(u16),
    /// IP_TOS for every segment. The two ECN bits are TCP's own, as in Linux: they are
    /// cleared.
    Tos(u8),
    /// IP_TTL for every segment, 1..=255.
    Ttl(u8),
}

impl TcpSockOpt {
    /// The option's Linux name (for error messages).
    pub fn name(&self) -> &'static str {
        match self {
            TcpSockOpt::NoDelay(_) => "TCP_NODELAY",
            TcpSockOpt::Cork(_) => "TCP_CORK",
            TcpSockOpt::KeepAlive(_) => "SO_KEEPALIVE",
            TcpSockOpt::SndBuf(_) => "SO_SNDBUF",
            TcpSockOpt::RcvBuf(_) => "SO_RCVBUF",
            TcpSockOpt::Linger(_) => "SO_LINGER",
            TcpSockOpt::MaxSeg(_) => "TCP_MAXSEG",
            TcpSockOpt::Tos(_) => "IP_TOS",
            TcpSockOpt::Ttl(_) => "IP_TTL",
        }
    }

    /// Is the value one Linux would take? (The error names the option and the bounds.)
    pub fn check(&self) -> Result<(), TcpErr> {
        let bad = |m: &'static str| Err(TcpErr::InvalidArgument(m));
        match *self {
            TcpSockOpt::SndBuf(v) | TcpSockOpt::RcvBuf(v) if !(SOCK_MIN_BUF..=SOCK_MAX_BUF).contains(&v) => {
                bad("SO_SNDBUF/SO_RCVBUF: 4096..=1073741824 bytes")
            }
            TcpSockOpt::MaxSeg(v) if !(TCP_MIN_MSS..=TCP_MAX_USER_MSS).contains(&v) => {
                bad("TCP_MAXSEG: 88..=32767 bytes")
            }
            TcpSockOpt::Ttl(0) => bad("IP_TTL: 1..=255"),
            TcpSockOpt::Linger(Some(ms)) if ms > MAX_LINGER_MS => bad("SO_LINGER: at most 86400 s"),
            TcpSockOpt::KeepAlive(Some(k)) => {
                if !(1000..=MAX_TCP_KEEPIDLE_MS).contains(&k.idle_ms) {
                    bad("TCP_KEEPIDLE: 1..=32767 s")
                } else if !(1000..=MAX_TCP_KEEPINTVL_MS).contains(&k.intvl_ms) {
                    bad("TCP_KEEPINTVL: 1..=32767 s")
                } else if !(1..=MAX_TCP_KEEPCNT).contains(&k.probes) {
                    bad("TCP_KEEPCNT: 1..=127")
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }
}

/// Linux: do_tcp_setsockopt() (and the SOL_SOCKET / SOL_IP options TCP honours). Sets `opt`
/// on `sk`, with the side effects Linux has: pushing held data when Nagle or the cork goes,
/// (re)arming the keepalive timer, lowering the MSS of a connection.
pub fn tcp_setsockopt(sk: &mut TcpSock, stack: &mut Stack, opt: TcpSockOpt) -> Result<(), TcpErr> {
    opt.check()?;
    let connected = !matches!(sk.state, TcpState::Closed | TcpState::Listen | TcpState::SynSent);
    match opt {
        TcpSockOpt::NoDelay(on) => {
            sk.nodelay = on;
            if on {
                crate::tcp_output::tcp_write_xmit(sk, stack, true);
            }
        }
        TcpSockOpt::Cork(on) => {
            sk.cork = on;
            if !on {
                crate::tcp_output::tcp_write_xmit(sk, stack, true);
            }
        }
        TcpSockOpt::KeepAlive(k) => {
            sk.keepalive = k.map(|k| (k.idle_ms, k.intvl_ms, k.probes));
            sk.keepalive_probes_sent = 0;
            // Linux: tcp_set_keepalive / keepalive_time_when: counted from the last segment
            // received, so a connection quiet for long is probed soon.
            if let (Some(k), Some(t), true) = (k, sk.keepalive_timer, connected) {
                let when = sk.rcv_tstamp.saturating_add(k.idle_ms).max(stack.core.jiffies);
                stack.timers.mod_timer(t, when);
            }
        }
        TcpSockOpt::SndBuf(v) => {
            sk.sndbuf = v;
            if sk.send_space() > 0 && sk.snd_blocked {
                sk.snd_blocked = false;
                sk.raise(crate::tcp::ev::WRITABLE);
            }
        }
        TcpSockOpt::RcvBuf(v) => {
            sk.rcvbuf = v;
            if matches!(sk.state, TcpState::Closed | TcpState::Listen) {
                sk.rx_opt.rcv_wscale = rcv_wscale_for(sk.rx_opt.wscale_ok, v);
            }
        }
        TcpSockOpt::Linger(l) => sk.linger_ms = l,
        TcpSockOpt::MaxSeg(v) => {
            sk.user_mss = v;
            if sk.state == TcpState::SynSent || sk.state == TcpState::Closed {
                sk.advmss = sk.advmss.min(v);
                sk.mss_cache = sk.mss_cache.min(v as u32);
            } else if connected {
                // The payload of a segment: the timestamp option rides in every one.
                let opt = if sk.rx_opt.tstamp_ok { 12 } else { 0 };
                sk.mss_cache = sk.mss_cache.min((v as u32).saturating_sub(opt).max(64));
            }
        }
        TcpSockOpt::Tos(v) => sk.tos = v & !0x03,
        TcpSockOpt::Ttl(v) => sk.ttl = Some(v),
    }
    Ok(())
}

/// The window scale that lets `rcvbuf` be advertised (Linux: tcp_select_initial_window).
pub fn rcv_wscale_for(wscale_ok: bool, rcvbuf: u32) -> u8 {
    if !wscale_ok {
        return 0;
    }
    let mut s = 0;
    while s < crate::tcphdr::TCP_MAX_WSCALE && (65535u32 << s) < rcvbuf {
        s += 1;
    }
    s
}

/// What a connection born from `listener` inherits (Linux: sk_clone_lock copies the whole
/// socket, options included).
pub fn tcp_inherit_opts(child: &mut TcpSock, listener: &TcpSock) {
    child.nodelay = listener.nodelay;
    child.cork = listener.cork;
    child.keepalive = listener.keepalive;
    child.sndbuf = listener.sndbuf;
    child.rcvbuf = listener.rcvbuf;
    child.linger_ms = listener.linger_ms;
    child.user_mss = listener.user_mss;
    child.tos = listener.tos;
    child.ttl = listener.ttl;
}

/// SO_LINGER's time ran out on an orphan that still has data or its FIN unacknowledged:
/// reset it (see [`TcpSockOpt::Linger`]). True when it did.
pub fn tcp_linger_expired(sk: &mut TcpSock, stack: &mut Stack) -> bool {
    let Some(deadline) = sk.linger_deadline else {
        return false;
    };
    if !sk.orphan
        || stack.core.jiffies < deadline
        || !matches!(sk.state, TcpState::FinWait1 | TcpState::Closing | TcpState::LastAck)
    {
        return false;
    }
    stack.core.mib.tcp_ext.inc(TcpExtMib::TCPAbortOnLinger);
    crate::tcp::tcp_abort(sk, stack);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_linux_refuses_are_refused() {
        assert!(TcpSockOpt::MaxSeg(87).check().is_err());
        assert!(TcpSockOpt::MaxSeg(88).check().is_ok());
        assert!(TcpSockOpt::MaxSeg(32767).check().is_ok());
        assert!(TcpSockOpt::MaxSeg(32768).check().is_err());
        assert!(TcpSockOpt::Ttl(0).check().is_err());
        assert!(TcpSockOpt::Ttl(255).check().is_ok());
        assert!(TcpSockOpt::SndBuf(4095).check().is_err());
        assert!(TcpSockOpt::RcvBuf((1 << 30) + 1).check().is_err());
        let k = Keepalive {
            idle_ms: 1000,
            intvl_ms: 1000,
            probes: 1,
        };
        assert!(TcpSockOpt::KeepAlive(Some(k)).check().is_ok());
        assert!(TcpSockOpt::KeepAlive(Some(Keepalive { probes: 0, ..k }))
            .check()
            .is_err());
        assert!(TcpSockOpt::KeepAlive(Some(Keepalive { probes: 128, ..k }))
            .check()
            .is_err());
        assert!(TcpSockOpt::KeepAlive(Some(Keepalive { idle_ms: 999, ..k }))
            .check()
            .is_err());
        assert!(TcpSockOpt::KeepAlive(None).check().is_ok());
        let e = TcpSockOpt::MaxSeg(1).check().unwrap_err();
        assert!(e.to_string().contains("TCP_MAXSEG"), "{e}");
    }

    #[test]
    fn window_scale_follows_the_buffer() {
        assert_eq!(rcv_wscale_for(true, 65535), 0);
        assert_eq!(rcv_wscale_for(true, 65536), 1);
        assert_eq!(rcv_wscale_for(true, 1 << 20), 5);
        assert_eq!(rcv_wscale_for(false, 1 << 20), 0);
        assert_eq!(rcv_wscale_for(true, 1 << 30), 14);
    }
}
