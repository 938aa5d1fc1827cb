//! The keyed hashes behind initial sequence numbers, timestamp offsets, SYN cookies and the
//! start of the ephemeral-port search (Linux: net/core/secure_seq.c and its `net_secret`).
//!
//! The keys are random per stack, as Linux's are per boot, unless [`crate::TcpConfig::seed`]
//! fixes them: then one seed gives the same ISNs, offsets, cookies and ports again (with the
//! same build: std's `DefaultHasher` is only stable within one), so a test that prints its
//! seed can be replayed, and a test can pick ISNs near 2^32 to cover sequence wraparound.

use std::collections::hash_map::{DefaultHasher, RandomState};
use std::hash::{BuildHasher, Hasher};

use crate::inet_hashtables::FourTuple;

/// One secret: a random key, or one derived from a seed.
#[derive(Clone, Debug)]
pub enum SecretKey {
    Random(RandomState),
    Seeded(u64),
}

impl SecretKey {
    /// The key for `purpose` ("isn", "cookie", ...): each use has its own, so seeing one
    /// (an ISN on the wire) says nothing about another (the cookie secret).
    pub fn new(seed: Option<u64>, purpose: &str) -> SecretKey {
        match seed {
            None => SecretKey::Random(RandomState::new()),
            Some(s) => {
                let mut h = DefaultHasher::new();
                h.write_u64(s);
                h.write(purpose.as_bytes());
                SecretKey::Seeded(h.finish())
            }
        }
    }

    /// A hasher already keyed: write the input, then `finish`.
    pub fn hasher(&self) -> DefaultHasher {
        match self {
            SecretKey::Random(r) => r.build_hasher(),
            SecretKey::Seeded(k) => {
                let mut h = DefaultHasher::new();
                h.write_u64(*k);
                h
            }
        }
    }
}

/// RFC 6528 initial sequence number of a 4-tuple, and its timestamp offset: a keyed hash of the
/// tuple plus a clock ticking every 64 ns (Linux: secure_tcp_seq() + the ns clock >> 6, and
/// secure_tcp_ts_off()).
pub fn secure_tcp_seq(key: &SecretKey, t: &FourTuple, now_ns: u64) -> (u32, u32) {
    // One 12-byte write: SipHash buffers every write call separately (four small writes
    // cost twice the hashing of one, per connection end).
    let mut b = [0u8; 12];
    b[..4].copy_from_slice(&t.laddr.octets());
    b[4..8].copy_from_slice(&t.raddr.octets());
    b[8..10].copy_from_slice(&t.lport.to_be_bytes());
    b[10..].copy_from_slice(&t.rport.to_be_bytes());
    let mut h = key.hasher();
    h.write(&b);
    let v = h.finish();
    ((v as u32).wrapping_add((now_ns >> 6) as u32), (v >> 32) as u32)
}

/// Where the ephemeral-port search starts: a random point of the range (RFC 6056), so a new
/// process does not walk straight into the tuples its predecessor left in the peer's
/// TIME-WAIT; with a seed, a point the seed fixes.
pub fn port_start(seed: Option<u64>, (lo, hi): (u16, u16)) -> u16 {
    let mut h = SecretKey::new(seed, "ephemeral port").hasher();
    h.write_u64(std::process::id() as u64 * seed.is_none() as u64);
    let span = (hi - lo) as u64 + 1;
    lo + (h.finish() % span) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn tuple(rport: u16) -> FourTuple {
        FourTuple {
            laddr: Ipv4Addr::new(10, 0, 0, 2),
            lport: 80,
            raddr: Ipv4Addr::new(10, 0, 0, 1),
            rport,
        }
    }

    #[test]
    fn a_seed_fixes_isns_offsets_and_ports() {
        let isn = |seed| secure_tcp_seq(&SecretKey::new(seed, "isn"), &tuple(1000), 0);
        assert_eq!(isn(Some(5)), isn(Some(5)));
        assert_ne!(isn(Some(5)), isn(Some(6)));
        // Random keys: two stacks differ (a collision of 64 bits would be a broken RNG).
        assert_ne!(isn(None), isn(None));
        assert_eq!(port_start(Some(5), (32768, 60999)), port_start(Some(5), (32768, 60999)));
        // Purposes have separate keys.
        let a = SecretKey::new(Some(5), "isn").hasher().finish();
        let b = SecretKey::new(Some(5), "cookie").hasher().finish();
        assert_ne!(a, b);
        // The clock moves the ISN by one every 64 ns; the offset stays.
        let k = SecretKey::new(Some(5), "isn");
        let (i0, o0) = secure_tcp_seq(&k, &tuple(1000), 0);
        let (i1, o1) = secure_tcp_seq(&k, &tuple(1000), 64_000);
        assert_eq!((i1.wrapping_sub(i0), o1), (1000, o0));
    }
}
