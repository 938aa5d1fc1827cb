//! The forwarding information base: longest-prefix match over a short per-core route list
//! (Linux: net/ipv4/fib_trie.c, fib_lookup(); a host has a handful of routes, so a list
//! sorted by prefix length beats a trie here).

use std::net::Ipv4Addr;

use crate::iphdr::Ipv4Cidr;

/// One route (Linux: a fib_alias + fib_nh).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FibRoute {
    /// Destination network (address already masked).
    pub dst: Ipv4Cidr,
    /// Next hop; None for a connected network (the destination itself is the next hop).
    pub gateway: Option<Ipv4Addr>,
    /// Output device (ifindex).
    pub dev: u16,
    /// Preferred source address (Linux: fib_info->fib_prefsrc).
    pub prefsrc: Ipv4Addr,
}

impl FibRoute {
    /// The address to resolve with ARP for `dst` (Linux: rt_nexthop()).
    pub fn nexthop(&self, dst: Ipv4Addr) -> Ipv4Addr {
        self.gateway.unwrap_or(dst)
    }
}

/// The route table of one core.
#[derive(Debug, Default, Clone)]
pub struct Fib {
    /// Kept sorted by prefix length, longest first, so the first match is the best.
    routes: Vec<FibRoute>,
}

impl Fib {
    /// Add or replace the route for `r.dst`.
    pub fn add(&mut self, r: FibRoute) {
        self.routes.retain(|x| x.dst != r.dst);
        let pos = self
            .routes
            .iter()
            .position(|x| x.dst.prefix_len < r.dst.prefix_len)
            .unwrap_or(self.routes.len());
        self.routes.insert(pos, r);
    }

    /// Remove the route for exactly `dst`; true if there was one.
    pub fn del(&mut self, dst: Ipv4Cidr) -> bool {
        let n = self.routes.len();
        self.routes.retain(|x| x.dst != dst);
        n != self.routes.len()
    }

    /// Linux: fib_lookup(). The most specific route containing `dst`.
    #[inline]
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<&FibRoute> {
        self.routes.iter().find(|r| r.dst.contains(dst))
    }

    pub fn routes(&self) -> &[FibRoute] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(dst: &str, gw: Option<&str>, dev: u16) -> FibRoute {
        FibRoute {
            dst: dst.parse().unwrap(),
            gateway: gw.map(|g| g.parse().unwrap()),
            dev,
            prefsrc: Ipv4Addr::new(10, 0, 0, 1),
        }
    }

    #[test]
    fn longest_prefix_wins() {
        let mut f = Fib::default();
        f.add(r("0.0.0.0/0", Some("10.0.0.254"), 0));
        f.add(r("10.0.0.0/24", None, 0));
        f.add(r("10.0.0.128/25", None, 1));
        f.add(r("192.168.0.0/16", Some("10.0.0.1"), 0));
        let l = |a: &str| f.lookup(a.parse().unwrap()).unwrap().clone();
        assert_eq!(l("10.0.0.200").dev, 1);
        assert_eq!(l("10.0.0.5").dev, 0);
        assert_eq!(l("10.0.0.5").gateway, None);
        assert_eq!(l("8.8.8.8").gateway, Some("10.0.0.254".parse().unwrap()));
        assert_eq!(
            l("8.8.8.8").nexthop("8.8.8.8".parse().unwrap()),
            "10.0.0.254".parse::<Ipv4Addr>().unwrap()
        );
        assert_eq!(l("192.168.3.4").gateway, Some("10.0.0.1".parse().unwrap()));
        assert!(f.del("0.0.0.0/0".parse().unwrap()));
        assert!(f.lookup("8.8.8.8".parse().unwrap()).is_none());
    }

    #[test]
    fn replace_same_prefix() {
        let mut f = Fib::default();
        f.add(r("10.0.0.0/24", None, 0));
        f.add(r("10.0.0.0/24", None, 3));
        assert_eq!(f.routes().len(), 1);
        assert_eq!(f.lookup("10.0.0.9".parse().unwrap()).unwrap().dev, 3);
    }
}
