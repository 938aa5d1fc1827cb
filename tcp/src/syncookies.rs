//! SYN cookies (Linux: net/ipv4/syncookies.c, D. J. Bernstein's scheme): when a listener's
//! SYN backlog is full, answer a SYN with a SYN-ACK whose sequence number encodes the
//! connection, keep no state, and rebuild the connection from the returning ACK.
//!
//! cookie = H0(tuple) + peer_isn + (t << 24) + ((H1(tuple, t) + mss_index) mod 2^24), with t a
//! minute counter; a cookie is valid for 2 minutes. Options other than the MSS cannot be
//! remembered without timestamps, so cookie connections run without window scaling, SACK and
//! timestamps (Linux encodes them in the timestamp when the peer sends one; blink does not yet).

use std::hash::Hasher;

use blink_ipv4::Stack;
use blink_netcore::snmp::TcpExtMib;

use crate::inet_hashtables::FourTuple;
use crate::secure_seq::SecretKey;
use crate::tcphdr::*;

/// MSS values a cookie can carry (Linux: msstab).
pub const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];
const COOKIE_BITS: u32 = 24;
const COOKIE_MASK: u32 = (1 << COOKIE_BITS) - 1;
/// Minutes a cookie stays valid (Linux: MAX_SYNCOOKIE_AGE).
const MAX_AGE: u32 = 2;

/// The per-core secret (two keyed hashes).
pub struct CookieSecret {
    key: SecretKey,
}

impl Default for CookieSecret {
    fn default() -> Self {
        CookieSecret::new(SecretKey::new(None, "cookie"))
    }
}

impl CookieSecret {
    pub fn new(key: SecretKey) -> CookieSecret {
        CookieSecret { key }
    }

    fn hash(&self, t: &FourTuple, count: u32, c: u32) -> u32 {
        let mut h = self.key.hasher();
        h.write_u32(u32::from(t.laddr));
        h.write_u32(u32::from(t.raddr));
        h.write_u16(t.lport);
        h.write_u16(t.rport);
        h.write_u32(count);
        h.write_u32(c);
        h.finish() as u32
    }

    /// Linux: secure_tcp_syn_cookie(). `minute` is the cookie clock (jiffies / 60 s).
    pub fn make(&self, t: &FourTuple, peer_isn: u32, minute: u32, mss_index: u32) -> u32 {
        self.hash(t, 0, 0)
            .wrapping_add(peer_isn)
            .wrapping_add(minute << COOKIE_BITS)
            .wrapping_add(self.hash(t, minute, 1).wrapping_add(mss_index) & COOKIE_MASK)
    }

    /// Linux: check_tcp_syn_cookie(). The MSS index if `cookie` is ours and fresh.
    pub fn check(&self, t: &FourTuple, peer_isn: u32, minute: u32, cookie: u32) -> Option<u32> {
        let diff = cookie.wrapping_sub(self.hash(t, 0, 0)).wrapping_sub(peer_isn);
        let then = diff >> COOKIE_BITS;
        // Only the low 8 bits of the minute survive in the cookie.
        let age = (minute.wrapping_sub(then)) & ((1 << (32 - COOKIE_BITS)) - 1);
        if age > MAX_AGE {
            return None;
        }
        let idx = diff.wrapping_sub(self.hash(t, minute.wrapping_sub(age), 1)) & COOKIE_MASK;
        ((idx as usize) < MSS_TABLE.len()).then_some(idx)
    }
}

/// The largest table MSS not above the peer's.
pub fn mss_index(peer_mss: u16) -> u32 {
    MSS_TABLE.iter().rposition(|&m| m <= peer_mss).unwrap_or(0) as u32
}

/// How long after its last cookie a listener still checks ACKs for cookies: the age a cookie
/// may reach, two cookie periods of 60 s (Linux: TCP_SYNCOOKIE_VALID).
pub const TCP_SYNCOOKIE_VALID_MS: u64 = 2 * 60_000;

/// Cookie clock: minutes of jiffies (Linux: tcp_cookie_time()).
pub fn cookie_minute(stack: &Stack) -> u32 {
    (stack.core.jiffies / 60_000) as u32
}

/// Send the cookie SYN-ACK for a SYN (`peer_isn`) without creating any state; `ip` is the
/// listener's (IP_TOS, IP_TTL), which its SYN-ACK carries as a request sock's would.
pub fn send_cookie_synack(
    stack: &mut Stack,
    t: &FourTuple,
    cookie: u32,
    peer_isn: u32,
    mss: u16,
    window: u16,
    ip: (u8, Option<u8>),
) {
    let opts = TcpOptions {
        mss: Some(mss),
        ..Default::default()
    };
    let flags = TCPHDR_SYN | TCPHDR_ACK;
    if crate::tcp_ipv4::tcp_v4_send_stateless_ip(stack, t, cookie, peer_isn.wrapping_add(1), flags, window, &opts, ip) {
        stack.core.mib.tcp_ext.inc(TcpExtMib::SyncookiesSent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple() -> FourTuple {
        FourTuple {
            laddr: "10.0.0.2".parse().unwrap(),
            lport: 80,
            raddr: "10.0.0.1".parse().unwrap(),
            rport: 40000,
        }
    }

    #[test]
    fn cookie_round_trip_and_expiry() {
        let s = CookieSecret::default();
        let t = tuple();
        for idx in 0..4 {
            let c = s.make(&t, 12345, 100, idx);
            assert_eq!(s.check(&t, 12345, 100, c), Some(idx));
            assert_eq!(s.check(&t, 12345, 102, c), Some(idx), "valid for two minutes");
            assert_eq!(s.check(&t, 12345, 103, c), None, "expired");
            // A different peer ISN shifts the MSS index out of range (Linux has the same
            // small-offset ambiguity; the ACK's own seq supplies the ISN, so it is consistent).
            assert_eq!(s.check(&t, 12345 + 1000, 100, c), None, "other peer ISN");
            let mut other = t;
            other.rport += 1;
            assert_eq!(s.check(&other, 12345, 100, c), None, "other tuple");
        }
        assert_eq!(mss_index(1460), 3);
        assert_eq!(mss_index(1400), 1);
        assert_eq!(mss_index(100), 0);
    }

    #[test]
    fn forged_cookies_rarely_pass() {
        let s = CookieSecret::default();
        let t = tuple();
        let mut pass = 0;
        let mut x = 0x1234_5678u32;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if s.check(&t, 777, 50, x).is_some() {
                pass += 1;
            }
        }
        // 3 valid minutes * 4 indices in 2^32: about 3e-9 each; 100k guesses pass ~never.
        assert!(pass <= 2, "{pass} random cookies accepted");
    }
}
