//! The UDP port table and socket lookup. Linux: `struct udp_table`, `udp_lib_get_port()`,
//! `udp_lib_lport_inuse()`, `__udp4_lib_lookup()` with `compute_score()` in net/ipv4/udp.c.
//!
//! One table per core of [`UDP_HTABLE_SIZE`] slots, each the chain of sockets bound to the
//! ports that hash to it (Linux: udp_table's hslots, `udp_hashfn` = port & mask). Binding is
//! where the chains grow (allocation allowed there); a received datagram indexes its slot
//! by the port's low bits, walks one short chain and allocates nothing.

use std::net::{Ipv4Addr, SocketAddrV4};

use blink_ipv4::Stack;
use blink_netcore::sock::SockHandle;

use crate::udp::UdpProto;

/// Whether this core may hand out ephemeral port `p`: every port with one core, else the
/// ports `p % nb_cores == cpu`, so the cores' separate port tables never collide.
fn own_port(stack: &Stack, p: u16) -> bool {
    let n = stack.nb_cores();
    n <= 1 || p % n == stack.core.cpu
}

/// Slots of the port table (Linux: UDP_HTABLE_SIZE_MIN); a power of two.
pub const UDP_HTABLE_SIZE: usize = 256;

/// Local port -> sockets bound to it (Linux: `struct udp_table`). Each slot holds (port,
/// socket) in bind order, so a chain is walked without touching the sockets of the other
/// ports that share its slot. Indexing by the port's low bits replaces a general hash map's
/// hashing and group probe on every received datagram.
pub(crate) struct PortTable {
    slots: Box<[Vec<(u16, SockHandle)>; UDP_HTABLE_SIZE]>,
}

impl Default for PortTable {
    fn default() -> Self {
        PortTable {
            slots: Box::new(std::array::from_fn(|_| Vec::new())),
        }
    }
}

impl PortTable {
    #[inline(always)]
    fn slot(&self, port: u16) -> &Vec<(u16, SockHandle)> {
        &self.slots[port as usize & (UDP_HTABLE_SIZE - 1)]
    }

    /// The sockets bound to `port`, in bind order.
    #[inline]
    pub(crate) fn chain(&self, port: u16) -> impl Iterator<Item = SockHandle> + '_ {
        self.slot(port).iter().filter(move |e| e.0 == port).map(|e| e.1)
    }

    /// Whether any socket is bound to `port`.
    pub(crate) fn contains(&self, port: u16) -> bool {
        self.slot(port).iter().any(|e| e.0 == port)
    }

    pub(crate) fn insert(&mut self, port: u16, h: SockHandle) {
        self.slots[port as usize & (UDP_HTABLE_SIZE - 1)].push((port, h));
    }

    pub(crate) fn remove(&mut self, port: u16, h: SockHandle) {
        self.slots[port as usize & (UDP_HTABLE_SIZE - 1)].retain(|&e| e != (port, h));
    }
}

impl UdpProto {
    /// Linux: udp_lib_lport_inuse(). Two sockets conflict on a port when their addresses
    /// overlap (equal, or either is the wildcard), unless both set SO_REUSEADDR or both are
    /// bound to different RSS buckets (the bucket group then acts like SO_REUSEPORT).
    pub(crate) fn port_in_use(&self, port: u16, addr: Ipv4Addr, bucket: Option<u16>, reuse: bool) -> bool {
        self.ports.chain(port).filter_map(|o| self.socks.get(o)).any(|o| {
            let overlap = o.saddr.is_unspecified() || addr.is_unspecified() || o.saddr == addr;
            let split = matches!((o.bucket, bucket), (Some(a), Some(b)) if a != b);
            overlap && !split && !(reuse && o.reuse)
        })
    }

    /// Linux: udp_lib_get_port() with snum 0: the next free port of the range after the rover.
    /// An ephemeral port is never shared: only a port no socket uses is taken. With several
    /// cores each takes only the ports congruent to its id (see [`own_port`]), so two cores
    /// never hand out the same port: their tables are separate.
    pub(crate) fn ephemeral_port(&mut self, stack: &Stack) -> Option<u16> {
        let (lo, hi) = self.cfg.ephemeral_ports;
        let n = (hi as u32).saturating_sub(lo as u32) + 1;
        for _ in 0..n {
            let p = self.rover;
            self.rover = if self.rover >= hi { lo } else { self.rover + 1 };
            if own_port(stack, p) && !self.ports.contains(p) {
                return Some(p);
            }
        }
        None
    }

    /// An ephemeral port whose reply tuple (peer -> local) hashes, through the RETA, to this
    /// core, so replies come back to the core that owns the socket (DESIGN: outgoing
    /// connections pick such a source port). None when no free port qualifies.
    pub(crate) fn connect_port(&mut self, stack: &Stack, local: Ipv4Addr, peer: SocketAddrV4) -> Option<u16> {
        let (lo, hi) = self.cfg.ephemeral_ports;
        let n = (hi as u32).saturating_sub(lo as u32) + 1;
        let core = &stack.core;
        for _ in 0..n {
            let p = self.rover;
            self.rover = if self.rover >= hi { lo } else { self.rover + 1 };
            if !own_port(stack, p) || self.ports.contains(p) {
                continue;
            }
            if core.l4_owner(*peer.ip(), local, peer.port(), p) == core.cpu {
                return Some(p);
            }
        }
        None
    }

    /// Linux: __udp4_lib_lookup() + compute_score(). A connected 4-tuple match beats a bound
    /// local address, which beats the wildcard; among sockets bound to RSS buckets, the one
    /// whose bucket owns the flow's hash wins. A bucket socket that does not match still
    /// serves as a fallback, so no datagram is refused while every bucket is not covered.
    /// `hash` computes the flow's bucket, only when some candidate has a bucket.
    pub(crate) fn lookup(
        &self,
        saddr: Ipv4Addr,
        sport: u16,
        daddr: Ipv4Addr,
        dport: u16,
        mut bucket_of: impl FnMut() -> u16,
    ) -> Option<SockHandle> {
        let mut best: Option<(SockHandle, u32)> = None;
        let mut want: Option<u16> = None;
        for h in self.ports.chain(dport) {
            let Some(sk) = self.socks.get(h) else { continue };
            let mut score = 1u32;
            if !sk.saddr.is_unspecified() {
                if sk.saddr != daddr {
                    continue;
                }
                score += 4;
            }
            if sk.dport != 0 {
                if sk.daddr != saddr || sk.dport != sport {
                    continue;
                }
                score += 8;
            }
            if let Some(b) = sk.bucket {
                let w = *want.get_or_insert_with(&mut bucket_of);
                if b == w {
                    score += 2;
                }
            }
            match best {
                Some((_, s)) if s >= score => {}
                _ => best = Some((h, score)),
            }
        }
        best.map(|(h, _)| h)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use crate::udp::tests::{put, PEER, US};
    use crate::udp::{UdpConfig, UdpProto};

    #[test]
    fn lookup_scores_connected_over_bound_over_wildcard() {
        let mut u = UdpProto::new(UdpConfig::default());
        let wild = put(&mut u, Ipv4Addr::UNSPECIFIED, 53, None, None);
        assert_eq!(u.lookup(PEER, 1000, US, 53, || 0), Some(wild));
        let bound = put(&mut u, US, 53, None, None);
        assert_eq!(u.lookup(PEER, 1000, US, 53, || 0), Some(bound));
        let conn = put(&mut u, US, 53, Some((PEER, 1000)), None);
        assert_eq!(u.lookup(PEER, 1000, US, 53, || 0), Some(conn));
        // Another source port or address is not the connected peer.
        assert_eq!(u.lookup(PEER, 1001, US, 53, || 0), Some(bound));
        assert_eq!(u.lookup(Ipv4Addr::new(10, 0, 0, 3), 1000, US, 53, || 0), Some(bound));
        // Another local address only matches the wildcard; another port nothing.
        assert_eq!(u.lookup(PEER, 1000, Ipv4Addr::new(10, 0, 0, 9), 53, || 0), Some(wild));
        assert_eq!(u.lookup(PEER, 1000, US, 54, || 0), None);
        // Order of insertion does not matter: the best score wins.
        u.close(wild).unwrap();
        let wild2 = put(&mut u, Ipv4Addr::UNSPECIFIED, 53, None, None);
        assert_eq!(u.lookup(PEER, 1001, US, 53, || 0), Some(bound));
        u.close(bound).unwrap();
        assert_eq!(u.lookup(PEER, 1001, US, 53, || 0), Some(wild2));
    }

    #[test]
    fn lookup_by_bucket_and_fallback() {
        let mut u = UdpProto::new(UdpConfig::default());
        let b: Vec<_> = (0..3)
            .map(|i| put(&mut u, Ipv4Addr::UNSPECIFIED, 7, None, Some(i)))
            .collect();
        for want in 0..3u16 {
            assert_eq!(u.lookup(PEER, 1, US, 7, || want), Some(b[want as usize]));
        }
        // Bucket 3 has no socket: the datagram is still delivered (to a bucket socket).
        assert!(u.lookup(PEER, 1, US, 7, || 3).is_some());
        // The hash is only computed when a candidate has a bucket.
        let mut u2 = UdpProto::new(UdpConfig::default());
        put(&mut u2, Ipv4Addr::UNSPECIFIED, 7, None, None);
        assert!(u2
            .lookup(PEER, 1, US, 7, || panic!("no bucket socket, no hash"))
            .is_some());
    }

    #[test]
    fn port_conflicts() {
        let mut u = UdpProto::new(UdpConfig::default());
        let h = put(&mut u, US, 9, None, Some(1));
        u.socks.get_mut(h).unwrap().reuse = false;
        assert!(u.port_in_use(9, US, None, false));
        assert!(u.port_in_use(9, Ipv4Addr::UNSPECIFIED, None, false));
        assert!(
            !u.port_in_use(9, PEER, None, false),
            "different specific addresses coexist"
        );
        assert!(
            !u.port_in_use(9, US, Some(2), false),
            "different buckets share the port"
        );
        assert!(u.port_in_use(9, US, Some(1), false), "same bucket conflicts");
        assert!(u.port_in_use(9, US, None, true), "SO_REUSEADDR needs both sides");
        assert!(!u.port_in_use(10, US, None, false));
    }
}
