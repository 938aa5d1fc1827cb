//! The forwarding information base: longest-prefix match over a short per-core route list
//! (Linux: net/ipv4/fib_trie.c, fib_lookup(); a host has a handful of routes, so a list
//! sorted by prefix length beats a trie here).
//!
//! Path MTU (RFC 1191) lives here too, as Linux keeps it: per-destination next-hop exceptions
//! (`fib_nh_exception`, net/ipv4/route.c `__ip_rt_update_pmtu`, `update_or_create_fnhe`)
//! that lower the MTU towards one host for `ip_rt_mtu_expires` after an ICMP "fragmentation
//! needed" said the path is narrower than our device.

use std::net::Ipv4Addr;

use blink_netcore::jiffies::HZ;
use hashbrown::HashMap;

use crate::iphdr::Ipv4Cidr;

/// Linux: ip_rt_mtu_expires (net.ipv4.route.mtu_expires), 10 minutes: after that the path is
/// tried at the device MTU again, in case the narrow link went away (RFC 1191 6.3).
pub const IP_RT_MTU_EXPIRES: u64 = 10 * 60 * HZ;
/// Linux: ip_rt_min_pmtu (net.ipv4.route.min_pmtu), 512 + 20 + 20. An ICMP cannot push the
/// path MTU below it: a forged "MTU 68" would otherwise cut every send into tiny fragments.
pub const IP_RT_MIN_PMTU: usize = 552;
/// Exceptions kept per core (Linux bounds each nexthop's hash at FNHE_RECLAIM_DEPTH per
/// bucket; one bound for the table does here). The oldest goes when it is full.
pub const FNHE_MAX: usize = 2048;

/// RFC 1191 7.1 plateau table, for "fragmentation needed" from routers too old to say the
/// next-hop MTU (Linux's old guess_mtu()): the next plateau below the refused datagram.
const MTU_PLATEAU: [usize; 10] = [32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68];

/// RFC 1191 7.1: the largest plateau strictly below `old_len` (the refused datagram's
/// tot_len), 68 at worst.
pub fn mtu_plateau(old_len: usize) -> usize {
    MTU_PLATEAU.iter().copied().find(|&p| p < old_len).unwrap_or(68)
}

/// One path MTU exception (Linux: struct fib_nh_exception, the fnhe_pmtu half).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FibNhException {
    pub pmtu: usize,
    /// Jiffies after which the exception no longer applies.
    pub expires: u64,
    /// Jiffies it was created or last lowered (eviction order).
    pub stamp: u64,
}

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
#[derive(Debug, Clone)]
pub struct Fib {
    /// Kept sorted by prefix length, longest first, so the first match is the best.
    routes: Vec<FibRoute>,
    /// Path MTU exceptions by destination host. Empty unless an ICMP lowered a path, so the
    /// per-packet check is one `is_empty` on the common path.
    exceptions: HashMap<Ipv4Addr, FibNhException>,
    /// Linux: net->ipv4.rt_genid. Every route a socket caches ([`crate::dst::DstCache`])
    /// records it and is valid only while it is unchanged; bumped by whatever can change
    /// what a cached route says (routes, path MTU exceptions, neighbours, devices). Kept
    /// here, beside the routes, because `Stack::fib` is public: a route added through
    /// `stack.fib.add` invalidates caches as one added through `Stack::add_route` does.
    /// Never 0, so an empty cache (genid 0) never matches.
    rt_genid: u32,
}

impl Default for Fib {
    fn default() -> Self {
        Fib {
            routes: Vec::new(),
            exceptions: HashMap::new(),
            rt_genid: 1,
        }
    }
}

impl Fib {
    /// Linux: rt_genid_ipv4(). The generation cached routes are checked against.
    #[inline(always)]
    pub fn rt_genid(&self) -> u32 {
        self.rt_genid
    }

    /// Linux: rt_genid_bump_ipv4() (what rt_cache_flush() does). Invalidate every cached
    /// route of this core: each socket's next send takes the full output path once and
    /// caches again.
    #[inline]
    pub fn rt_genid_bump(&mut self) {
        self.rt_genid = self.rt_genid.wrapping_add(1).max(1);
    }

    /// Add or replace the route for `r.dst`.
    pub fn add(&mut self, r: FibRoute) {
        self.rt_genid_bump();
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
        self.rt_genid_bump();
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

    /// The table as `ip route show` prints it (device names from `dev_name`), then the path
    /// MTU exceptions still in force at `now` as `ip route show cache` does.
    pub fn show(&self, now: u64, dev_name: impl Fn(u16) -> String) -> Vec<String> {
        let mut v: Vec<String> = self
            .routes
            .iter()
            .map(|r| {
                let dst = if r.dst.prefix_len == 0 {
                    "default".to_string()
                } else {
                    format!("{}/{}", r.dst.addr, r.dst.prefix_len)
                };
                match r.gateway {
                    Some(gw) => format!("{dst} via {gw} dev {} src {}", dev_name(r.dev), r.prefsrc),
                    None => format!(
                        "{dst} dev {} proto kernel scope link src {}",
                        dev_name(r.dev),
                        r.prefsrc
                    ),
                }
            })
            .collect();
        let mut cache: Vec<(&Ipv4Addr, &FibNhException)> =
            self.exceptions.iter().filter(|(_, e)| now < e.expires).collect();
        cache.sort_by_key(|(a, _)| **a);
        for (a, e) in cache {
            let dev = self.lookup(*a).map_or_else(|| "?".to_string(), |r| dev_name(r.dev));
            v.push(format!(
                "{a} dev {dev} cache expires {}sec mtu {}",
                (e.expires - now).div_ceil(1000),
                e.pmtu
            ));
        }
        v
    }

    /// The path MTU exception towards `daddr` still valid at `now` (jiffies), if any.
    /// Linux: the fnhe_pmtu read in rt_bind_exception() / ipv4_mtu(). Asked for every packet
    /// sent: the common case (no narrow path anywhere) is one inlined test.
    #[inline(always)]
    pub fn pmtu(&self, daddr: Ipv4Addr, now: u64) -> Option<usize> {
        if self.exceptions.is_empty() {
            return None;
        }
        self.pmtu_lookup(daddr, now)
    }

    #[cold]
    #[inline(never)]
    fn pmtu_lookup(&self, daddr: Ipv4Addr, now: u64) -> Option<usize> {
        self.exceptions.get(&daddr).filter(|e| now < e.expires).map(|e| e.pmtu)
    }

    /// `dst_mtu` and the jiffies until which it holds: the exception's expiry (u64::MAX when
    /// none applies). A cached route keeps the MTU only until then (Linux: the rtable bound
    /// to an fnhe carries its expiry, `rt_bind_exception` / `ipv4_mtu`), so an exception
    /// that expires needs no generation bump: nothing is told, time alone ends it.
    #[inline]
    pub fn dst_mtu_expires(&self, daddr: Ipv4Addr, dev_mtu: usize, now: u64) -> (usize, u64) {
        if self.exceptions.is_empty() {
            return (dev_mtu, u64::MAX);
        }
        match self.exceptions.get(&daddr).filter(|e| now < e.expires) {
            Some(e) => (e.pmtu.min(dev_mtu), e.expires),
            None => (dev_mtu, u64::MAX),
        }
    }

    /// The MTU to send to `daddr` with: the device's, lowered by a live exception.
    /// Linux: dst_mtu() of the output route.
    #[inline(always)]
    pub fn dst_mtu(&self, daddr: Ipv4Addr, dev_mtu: usize, now: u64) -> usize {
        self.pmtu(daddr, now).map_or(dev_mtu, |p| p.min(dev_mtu))
    }

    /// Linux: __ip_rt_update_pmtu() + update_or_create_fnhe(). Lower the path MTU towards
    /// `daddr` to `mtu` for IP_RT_MTU_EXPIRES. Never raises it (a "bigger" MTU in an ICMP is
    /// either stale or forged, RFC 1191 6.3), never below IP_RT_MIN_PMTU. Returns the MTU now
    /// in force when it changed, None when the report was ignored.
    pub fn update_pmtu(&mut self, daddr: Ipv4Addr, mtu: usize, dev_mtu: usize, now: u64) -> Option<usize> {
        let mtu = if mtu < IP_RT_MIN_PMTU {
            // Linux: "lock" the MTU at min(old, min_pmtu) and stop trusting smaller reports.
            dev_mtu.min(IP_RT_MIN_PMTU)
        } else {
            mtu
        };
        let cur = self.dst_mtu(daddr, dev_mtu, now);
        if mtu >= cur {
            // Linux refreshes the expiry of an equal report; so do we.
            if let Some(e) = self.exceptions.get_mut(&daddr) {
                if mtu == e.pmtu && now < e.expires {
                    e.expires = now + IP_RT_MTU_EXPIRES;
                }
            }
            return None;
        }
        if self.exceptions.len() >= FNHE_MAX && !self.exceptions.contains_key(&daddr) {
            self.fnhe_evict(now);
        }
        // Created or lowered: routes cached towards `daddr` carry the old MTU.
        self.rt_genid_bump();
        self.exceptions.insert(
            daddr,
            FibNhException {
                pmtu: mtu,
                expires: now + IP_RT_MTU_EXPIRES,
                stamp: now,
            },
        );
        Some(mtu)
    }

    /// Make room for one exception: every expired one goes, else the oldest (Linux:
    /// fnhe_remove_oldest()). A full scan, but only when an ICMP arrives with the table full.
    fn fnhe_evict(&mut self, now: u64) {
        // A path whose exception goes may use the device MTU again.
        self.rt_genid_bump();
        let n = self.exceptions.len();
        self.exceptions.retain(|_, e| now < e.expires);
        if self.exceptions.len() < n {
            return;
        }
        let oldest = self.exceptions.iter().min_by_key(|(_, e)| e.stamp).map(|(&a, _)| a);
        if let Some(a) = oldest {
            self.exceptions.remove(&a);
        }
    }

    /// Forget every path MTU exception (Linux: fnhe flush when routes change).
    pub fn flush_pmtu(&mut self) {
        self.rt_genid_bump();
        self.exceptions.clear();
    }

    /// Number of exceptions held, expired ones included until evicted.
    pub fn pmtu_exceptions(&self) -> usize {
        self.exceptions.len()
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

    #[test]
    fn show_prints_like_ip_route() {
        let mut f = Fib::default();
        f.add(r("0.0.0.0/0", Some("10.0.0.254"), 0));
        f.add(r("10.0.0.0/24", None, 0));
        f.update_pmtu(Ipv4Addr::new(192, 0, 2, 7), 1400, 1500, 1000);
        let name = |d: u16| format!("eth{d}");
        assert_eq!(
            f.show(1000, name),
            vec![
                "10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.1",
                "default via 10.0.0.254 dev eth0 src 10.0.0.1",
                "192.0.2.7 dev eth0 cache expires 600sec mtu 1400",
            ]
        );
        assert_eq!(
            f.show(1000 + IP_RT_MTU_EXPIRES, name).len(),
            2,
            "an expired exception is not shown"
        );
    }

    const D: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

    #[test]
    fn pmtu_lowers_never_raises_and_expires() {
        let mut f = Fib::default();
        assert_eq!(f.dst_mtu(D, 1500, 0), 1500);
        assert_eq!(f.update_pmtu(D, 1000, 1500, 100), Some(1000));
        assert_eq!(f.dst_mtu(D, 1500, 100), 1000);
        assert_eq!(
            f.dst_mtu(Ipv4Addr::new(192, 0, 2, 8), 1500, 100),
            1500,
            "per destination"
        );
        assert_eq!(f.update_pmtu(D, 1200, 1500, 200), None, "never raised");
        assert_eq!(f.update_pmtu(D, 1600, 1500, 200), None, "nor above the device");
        assert_eq!(f.dst_mtu(D, 1500, 200), 1000);
        assert_eq!(f.update_pmtu(D, 900, 1500, 300), Some(900));
        // The device MTU still bounds it when it is the smaller one.
        assert_eq!(f.dst_mtu(D, 800, 300), 800);
        let end = 300 + IP_RT_MTU_EXPIRES;
        assert_eq!(f.dst_mtu(D, 1500, end - 1), 900);
        assert_eq!(f.dst_mtu(D, 1500, end), 1500, "expired after 10 minutes");
        // Once expired, a larger report applies again.
        assert_eq!(f.update_pmtu(D, 1400, 1500, end), Some(1400));
    }

    #[test]
    fn pmtu_clamped_to_min() {
        let mut f = Fib::default();
        assert_eq!(f.update_pmtu(D, 68, 1500, 0), Some(IP_RT_MIN_PMTU));
        assert_eq!(f.update_pmtu(D, 300, 1500, 0), None, "already at the floor");
        assert_eq!(f.dst_mtu(D, 1500, 0), 552);
        // A device narrower than the floor keeps its own MTU.
        let mut g = Fib::default();
        assert_eq!(g.update_pmtu(D, 100, 576, 0), Some(552));
        assert_eq!(g.update_pmtu(D, 100, 500, 0), None);
    }

    #[test]
    fn pmtu_table_bounded_oldest_evicted() {
        let mut f = Fib::default();
        for i in 0..FNHE_MAX as u32 {
            f.update_pmtu(Ipv4Addr::from(0x0a00_0000 + i), 1000, 1500, i as u64);
        }
        assert_eq!(f.pmtu_exceptions(), FNHE_MAX);
        f.update_pmtu(D, 1000, 1500, 100_000);
        assert_eq!(f.pmtu_exceptions(), FNHE_MAX);
        assert_eq!(f.pmtu(Ipv4Addr::from(0x0a00_0000), 100_000), None, "oldest went");
        assert_eq!(f.pmtu(Ipv4Addr::from(0x0a00_0001), 100_000), Some(1000));
        assert_eq!(f.pmtu(D, 100_000), Some(1000));
        // With expired entries present, they are the ones reclaimed.
        let later = 100_000 + IP_RT_MTU_EXPIRES;
        f.update_pmtu(Ipv4Addr::new(198, 51, 100, 1), 1000, 1500, later);
        assert_eq!(f.pmtu_exceptions(), 1, "{}", f.pmtu_exceptions());
        f.flush_pmtu();
        assert_eq!(f.pmtu_exceptions(), 0);
    }

    #[test]
    fn plateaus() {
        assert_eq!(mtu_plateau(1500), 1492);
        assert_eq!(mtu_plateau(1492), 1006);
        assert_eq!(mtu_plateau(65535), 32000);
        assert_eq!(mtu_plateau(600), 508);
        assert_eq!(mtu_plateau(20), 68);
    }
}
