//! Per-core TCP lookup tables (Linux: net/ipv4/inet_hashtables.c): established connections by
//! 4-tuple, listeners by port, and bound ports with their use counts.

use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;

use blink_netcore::sock::SockHandle;
use hashbrown::HashMap;

/// A connection's identity seen from our side (Linux: the inet_sock addr/port quadruple).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FourTuple {
    pub laddr: Ipv4Addr,
    pub lport: u16,
    pub raddr: Ipv4Addr,
    pub rport: u16,
}

/// The whole tuple goes to the hasher as one word, as Linux's inet_ehashfn() takes it in one
/// jhash: every segment and every connection setup/teardown looks tuples up, and a derived
/// Hash feeds the four fields one at a time (four hasher rounds instead of one). The word is
/// the remote address in the low half and the local address xor both ports in the high half:
/// for one local address and port (a listener's connections) distinct remote ends give
/// distinct words, so a peer choosing its addresses and ports cannot make keys collide before
/// the seeded hash.
impl Hash for FourTuple {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        let ports = (self.lport as u32) << 16 | self.rport as u32;
        let hi = self.laddr.to_bits() ^ ports;
        state.write_u64((hi as u64) << 32 | self.raddr.to_bits() as u64);
    }
}

#[derive(Default)]
pub struct InetHashTables {
    /// Linux: ehash (ESTABLISHED .. TIME-WAIT, and SYN-SENT / SYN-RECV).
    pub ehash: HashMap<FourTuple, SockHandle>,
    /// Request socks (SYN-RECV; Linux keeps them in ehash too).
    pub reqhash: HashMap<FourTuple, SockHandle>,
    /// TIME-WAIT sockets (Linux keeps them in ehash too; a separate map keeps the established
    /// lookup free of a type check).
    pub twhash: HashMap<FourTuple, SockHandle>,
    /// Linux: listening_hash.
    pub lhash: HashMap<u16, SockHandle>,
    /// Linux: bhash — sockets using each local port.
    bhash: HashMap<u16, u32>,
}

impl InetHashTables {
    pub fn bind_ref(&mut self, port: u16) {
        *self.bhash.entry(port).or_insert(0) += 1;
    }

    pub fn unbind(&mut self, port: u16) {
        if let Some(n) = self.bhash.get_mut(&port) {
            *n -= 1;
            if *n == 0 {
                self.bhash.remove(&port);
            }
        }
    }

    pub fn is_bound(&self, port: u16) -> bool {
        self.bhash.contains_key(&port)
    }

    pub fn bound_ports(&self) -> usize {
        self.bhash.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the words a key writes, so the test sees what the seeded hasher would mix.
    #[derive(Default)]
    struct Words(Vec<u64>);
    impl Hasher for Words {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, _: &[u8]) {
            panic!("FourTuple writes whole words");
        }
        fn write_u64(&mut self, w: u64) {
            self.0.push(w);
        }
    }

    fn words(t: FourTuple) -> Vec<u64> {
        let mut h = Words::default();
        t.hash(&mut h);
        h.0
    }

    #[test]
    fn one_listener_distinct_remote_ends_give_distinct_words() {
        let laddr = Ipv4Addr::new(10, 200, 0, 1);
        let mut seen = std::collections::HashSet::new();
        for r in 0..64u8 {
            for rport in [0u16, 1, 80, 1024, 40000, 65535] {
                let t = FourTuple {
                    laddr,
                    lport: 80,
                    raddr: Ipv4Addr::new(10, 200, 1, r),
                    rport,
                };
                let w = words(t);
                assert_eq!(w.len(), 1, "one hasher round per lookup");
                assert!(seen.insert(w[0]), "{t:?} collides before the hash");
            }
        }
    }
}
