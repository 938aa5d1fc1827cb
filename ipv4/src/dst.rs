//! The route a socket caches: one FIB lookup and one neighbour lookup per flow, not per packet.
//!
//! Linux: include/net/dst.h (`struct dst_entry`, `dst_check`), include/net/route.h (`struct
//! rtable`: rt_gw4, rt_pmtu, rt_genid) and the socket's `sk_dst_cache` (`__sk_dst_check`),
//! with the neighbour's cached hardware header (`struct hh_cache`, `neigh_hh_output`).
//!
//! A [`DstCache`] is a small `Copy` value a socket holds (TCP: `TcpSock::dst`, UDP: its
//! socket's): the output device, the next hop, the preferred source, the path MTU, and, once
//! the neighbour is resolved, the Ethernet header to put in front of every packet. It is
//! valid while
//! - the core's route generation ([`crate::route::Fib::rt_genid`]) is the one it was filled
//!   under: routes, addresses, path MTU exceptions created, lowered or removed, neighbours
//!   created, re-addressed, gone stale, failed or removed, and devices added or turned into
//!   tunnels all bump it;
//! - the path MTU exception it copied has not expired: an expiry is time passing, not an
//!   event anyone could bump the generation on, so the cache keeps the exception's expiry
//!   jiffy and lapses by itself (Linux: `rt_bind_exception` gives the rtable the fnhe's
//!   expiry, and `ipv4_mtu` stops using it past that);
//! - it was filled for the destination asked for (an unconnected UDP socket's one-entry
//!   cache is keyed by destination this way).
//!
//! Neighbour confirmation: blink's neighbour state machine needs nothing per packet while an
//! entry is REACHABLE, PROBE or PERMANENT (`neigh_resolve_output` only counts the lookup and
//! its hit, and sends); only the use of a STALE entry does something (it starts the probe
//! timer, Linux's NUD_DELAY). An entry going stale bumps the generation, so the next packet
//! of every flow takes `neigh_resolve_output` once more and starts the probe as it does
//! today, and only entries in the other three states are cached. The lookup and hit counters
//! are counted on the cached path too (two increments), so `Arp.*` stays as it was. INCOMPLETE
//! and FAILED entries are never cached: their packets queue and ARP as before.

use std::net::Ipv4Addr;

use blink_netcore::if_ether::{EthHdr, ETH_HLEN, ETH_P_IP};

use blink_netcore::EthAddr;

use crate::stack::Stack;

/// A socket's cached route (Linux: the `rtable` behind `sk_dst_cache`, with its neighbour's
/// `hh_cache`). `DstCache::default()` is empty and never valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DstCache {
    /// `Fib::rt_genid` when filled; 0 (never a generation) when empty. Linux: rt_genid.
    genid: u32,
    /// The destination it was resolved for (Linux: the flowi4 daddr the route was looked up
    /// with).
    daddr: Ipv4Addr,
    /// Linux: fib_info->fib_prefsrc, the source a socket without a bound address uses.
    prefsrc: Ipv4Addr,
    /// The address to resolve (Linux: rt_nexthop()); None for the limited broadcast.
    nexthop: Option<Ipv4Addr>,
    /// Output device (Linux: dst->dev).
    dev: u16,
    /// Device the neighbour sits on, which the frame leaves by (`Neighbour::dev`).
    hh_dev: u16,
    /// Path MTU (Linux: dst_mtu()): the device's, lowered by a live exception.
    mtu: u32,
    /// Jiffies until which `mtu` holds: the exception's expiry, u64::MAX without one.
    expires: u64,
    /// The Ethernet header (destination and source MAC, ETH_P_IP) of a resolved next hop
    /// (Linux: hh_cache->hh_data); None until the neighbour is resolved.
    hh: Option<[u8; ETH_HLEN]>,
}

impl Default for DstCache {
    fn default() -> Self {
        DstCache::new()
    }
}

impl DstCache {
    /// An empty cache (the first send resolves and fills it).
    pub const fn new() -> DstCache {
        DstCache {
            genid: 0,
            daddr: Ipv4Addr::UNSPECIFIED,
            prefsrc: Ipv4Addr::UNSPECIFIED,
            nexthop: None,
            dev: 0,
            hh_dev: 0,
            mtu: 0,
            expires: 0,
            hh: None,
        }
    }

    /// Linux: __sk_dst_check() / dst_check(). Whether the route part holds for `daddr` now.
    #[inline(always)]
    pub fn check(&self, stack: &Stack, daddr: Ipv4Addr) -> bool {
        self.genid == stack.fib.rt_genid() && self.daddr == daddr && stack.core.jiffies < self.expires
    }

    /// Whether the next hop's Ethernet header is cached too (only meaningful after `check`).
    #[inline(always)]
    pub fn has_hh(&self) -> bool {
        self.hh.is_some()
    }

    /// Forget everything (Linux: sk_dst_reset()).
    pub fn reset(&mut self) {
        *self = DstCache::new();
    }

    pub fn dev(&self) -> u16 {
        self.dev
    }

    pub fn mtu(&self) -> usize {
        self.mtu as usize
    }

    pub fn prefsrc(&self) -> Ipv4Addr {
        self.prefsrc
    }

    pub fn nexthop(&self) -> Option<Ipv4Addr> {
        self.nexthop
    }

    /// The cached Ethernet header, when there is one.
    pub fn hh(&self) -> Option<&[u8; ETH_HLEN]> {
        self.hh.as_ref()
    }

    pub(crate) fn hh_dev(&self) -> u16 {
        self.hh_dev
    }
}

/// Linux: ip_route_output_key() as __sk_dst_check's caller does it on a miss: resolve the
/// route to `daddr` (output device, next hop, preferred source, path MTU) into `dst`, its
/// neighbour not yet cached. False (and `dst` emptied) when there is no route.
pub fn ip_route_output_dst(stack: &Stack, dst: &mut DstCache, daddr: Ipv4Addr) -> bool {
    let Some((nexthop, dev, prefsrc)) = crate::ip_output::ip_route_output(stack, daddr) else {
        dst.reset();
        return false;
    };
    let dev_mtu = stack.devs[dev as usize].mtu;
    let (mtu, expires) = stack.fib.dst_mtu_expires(daddr, dev_mtu, stack.core.jiffies);
    *dst = DstCache {
        genid: stack.fib.rt_genid(),
        daddr,
        prefsrc,
        nexthop,
        dev,
        hh_dev: dev,
        mtu: mtu.min(u32::MAX as usize) as u32,
        expires,
        hh: None,
    };
    true
}

/// Linux: neigh_hh_init(), after a packet went through the neighbour layer to `mac` on
/// `ndev` (which `neigh_resolve_output` reports only for an entry usable without it:
/// REACHABLE, PROBE, PERMANENT; see the module comment): cache the next hop's Ethernet
/// header. Not when the generation moved meanwhile (the route part is stale then too).
/// Tunnels and broadcasts never get here: they take the full output path every time.
pub(crate) fn dst_hh_init(stack: &Stack, dst: &mut DstCache, mac: EthAddr, ndev: u16) {
    if dst.genid != stack.fib.rt_genid() {
        return;
    }
    let mut hh = [0u8; ETH_HLEN];
    let mut eth = EthHdr::new_unchecked(&mut hh[..]);
    eth.set_dst(mac);
    eth.set_src(stack.devs[ndev as usize].mac);
    eth.set_ethertype(ETH_P_IP);
    dst.hh = Some(hh);
    dst.hh_dev = ndev;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip_output::{ip_build_and_send_pkt, ip_queue_xmit, IpTx};
    use crate::neighbour::{neigh_add_static, neigh_update, NudState};
    use crate::route::IP_RT_MTU_EXPIRES;
    use crate::{Ipv4Cidr, Ipv4Error, StackConfig};
    use blink_netcore::drivers::wire::{wire_pair, WireConfig, WireDev};
    use blink_netcore::jiffies::{Clock, VirtualClock};
    use blink_netcore::netdevice::{Burst, NetDevice};
    use blink_netcore::skbuff::SkBuff;
    use blink_netcore::snmp::{ArpMib, IpMib};
    use blink_netcore::{Mempool, MempoolConfig};

    const US: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const GW2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
    const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
    const FAR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
    const PEER_MAC: EthAddr = EthAddr([2, 0, 0, 0, 0, 2]);
    const NEW_MAC: EthAddr = EthAddr([2, 0, 0, 0, 0, 0x22]);
    const GW_MAC: EthAddr = EthAddr([2, 0, 0, 0, 0, 0xfe]);
    const GW2_MAC: EthAddr = EthAddr([2, 0, 0, 0, 0, 3]);

    struct H {
        stack: Stack,
        peer: WireDev,
        clock: VirtualClock,
        #[allow(dead_code)]
        pool: Mempool,
    }

    fn harness() -> H {
        let pool = Mempool::new(&MempoolConfig {
            name: "dst".into(),
            n: 512,
            cache_size: 32,
            ..Default::default()
        })
        .unwrap();
        let clock = VirtualClock::new();
        let (a, b) = wire_pair(
            ("blink0", "peer0"),
            (EthAddr([2, 0, 0, 0, 0, 1]), PEER_MAC),
            &WireConfig::default(),
        );
        let cfg = StackConfig {
            arp_announce: false,
            ..Default::default()
        };
        let mut stack = Stack::new(0, 1, Clock::virtual_clock(&clock), &pool, cfg);
        stack.add_device(Box::new(a), 0);
        stack.add_addr(0, Ipv4Cidr::new(US, 24).unwrap()).unwrap();
        let mut h = H {
            stack,
            peer: b,
            clock,
            pool,
        };
        h.frames();
        h
    }

    impl H {
        /// (destination MAC, IP destination, total length) of every frame sent.
        fn frames(&mut self) -> Vec<(EthAddr, Ipv4Addr, usize)> {
            self.stack.flush_tx();
            let mut out = Vec::new();
            loop {
                let mut b = Burst::new();
                if self.peer.rx_burst(0, &mut b) == 0 {
                    break;
                }
                for f in b {
                    let d = f.data();
                    let mac = EthAddr(d[0..6].try_into().unwrap());
                    if u16::from_be_bytes([d[12], d[13]]) != ETH_P_IP {
                        continue; // ARP
                    }
                    let ip = Ipv4Addr::new(d[30], d[31], d[32], d[33]);
                    out.push((mac, ip, f.len() - ETH_HLEN));
                }
            }
            out
        }

        fn send(&mut self, dst: &mut DstCache, to: Ipv4Addr, len: usize, df: bool) -> Result<(), Ipv4Error> {
            let skb = payload(&mut self.stack, len);
            ip_queue_xmit(&mut self.stack, skb, tx(to, df), dst)
        }

        fn tick(&mut self, ms: u64) {
            self.clock.advance_ms(ms);
            self.stack.poll();
        }
    }

    fn payload(stack: &mut Stack, len: usize) -> SkBuff {
        let mut skb = SkBuff::alloc(&mut stack.core.cache).unwrap();
        skb.skb_put(len).unwrap().fill(0xab);
        skb
    }

    fn tx(dst: Ipv4Addr, df: bool) -> IpTx {
        IpTx {
            src: None,
            dst,
            protocol: 253,
            ttl: None,
            tos: 0,
            df,
            id: Some(7),
        }
    }

    #[test]
    fn filled_on_first_send_then_hit() {
        let mut h = harness();
        neigh_add_static(&mut h.stack, PEER, PEER_MAC, 0);
        let mut dst = DstCache::new();
        assert!(!dst.check(&h.stack, PEER), "an empty cache is never valid");
        h.send(&mut dst, PEER, 100, true).unwrap();
        assert!(dst.check(&h.stack, PEER) && dst.has_hh(), "filled by the first send");
        assert_eq!(
            (dst.dev(), dst.mtu(), dst.prefsrc(), dst.nexthop()),
            (0, 1500, US, Some(PEER))
        );
        assert_eq!(h.frames(), vec![(PEER_MAC, PEER, 120)]);
        // Prove the second send uses the cache (no neighbour lookup): mark its header.
        let marked = EthAddr([2, 9, 9, 9, 9, 9]);
        dst.hh.as_mut().expect("cached")[0..6].copy_from_slice(&marked.0);
        let before = dst;
        h.send(&mut dst, PEER, 100, true).unwrap();
        assert_eq!(h.frames(), vec![(marked, PEER, 120)], "sent by the cached header");
        assert_eq!(dst, before, "a hit changes nothing");
        // Another destination misses (an unconnected socket's one-entry cache).
        assert!(!dst.check(&h.stack, GW2));
    }

    #[test]
    fn counters_same_cached_or_not() {
        let run = |cached: bool| {
            let mut h = harness();
            neigh_add_static(&mut h.stack, PEER, PEER_MAC, 0);
            let mut dst = DstCache::new();
            for _ in 0..5 {
                let skb = payload(&mut h.stack, 64);
                if cached {
                    ip_queue_xmit(&mut h.stack, skb, tx(PEER, true), &mut dst).unwrap();
                } else {
                    ip_build_and_send_pkt(&mut h.stack, skb, tx(PEER, true)).unwrap();
                }
            }
            let f = h.frames();
            let m = &h.stack.core.mib;
            (
                f,
                m.ip[IpMib::OutRequests],
                m.ip[IpMib::OutTransmits],
                m.arp[ArpMib::Lookups],
                m.arp[ArpMib::Hits],
            )
        };
        let cached = run(true);
        assert_eq!(cached, run(false));
        assert_eq!(cached.1, 5);
    }

    #[test]
    fn route_change_invalidates() {
        let mut h = harness();
        h.stack.add_route("0.0.0.0/0".parse().unwrap(), GW).unwrap();
        neigh_add_static(&mut h.stack, GW, GW_MAC, 0);
        neigh_add_static(&mut h.stack, GW2, GW2_MAC, 0);
        let mut dst = DstCache::new();
        h.send(&mut dst, FAR, 40, true).unwrap();
        assert!(dst.check(&h.stack, FAR) && dst.has_hh());
        assert_eq!(dst.nexthop(), Some(GW));
        // A more specific route through another gateway.
        h.stack.add_route("192.0.2.0/24".parse().unwrap(), GW2).unwrap();
        assert!(!dst.check(&h.stack, FAR), "route add bumps the generation");
        h.send(&mut dst, FAR, 40, true).unwrap();
        assert_eq!(dst.nexthop(), Some(GW2));
        // Deleted again (through the table itself): back to the default gateway.
        assert!(h.stack.fib.del("192.0.2.0/24".parse().unwrap()));
        assert!(!dst.check(&h.stack, FAR), "route del bumps the generation");
        h.send(&mut dst, FAR, 40, true).unwrap();
        assert_eq!(
            h.frames(),
            vec![(GW_MAC, FAR, 60), (GW2_MAC, FAR, 60), (GW_MAC, FAR, 60)]
        );
        // No route left: refused and counted, the cache emptied.
        assert!(h.stack.fib.del("0.0.0.0/0".parse().unwrap()));
        assert_eq!(h.send(&mut dst, FAR, 40, true), Err(Ipv4Error::NoRoute(FAR)));
        assert!(!dst.check(&h.stack, FAR));
        assert_eq!(h.stack.core.mib.ip[IpMib::OutNoRoutes], 1);
    }

    #[test]
    fn pmtu_change_and_expiry() {
        let mut h = harness();
        neigh_add_static(&mut h.stack, PEER, PEER_MAC, 0);
        let mut dst = DstCache::new();
        h.send(&mut dst, PEER, 1400, true).unwrap();
        assert_eq!(dst.mtu(), 1500);
        let now = h.stack.core.jiffies;
        assert_eq!(h.stack.fib.update_pmtu(PEER, 1000, 1500, now), Some(1000));
        assert!(!dst.check(&h.stack, PEER), "a new exception bumps the generation");
        assert_eq!(
            h.send(&mut dst, PEER, 1400, true),
            Err(Ipv4Error::MessageTooLong { len: 1420, mtu: 1000 }),
            "the cached MTU is the new one"
        );
        assert_eq!(dst.mtu(), 1000);
        assert!(dst.check(&h.stack, PEER));
        // Lowered again.
        assert_eq!(h.stack.fib.update_pmtu(PEER, 800, 1500, now), Some(800));
        h.send(&mut dst, PEER, 700, true).unwrap();
        assert_eq!(dst.mtu(), 800);
        // Without DF a datagram over the cached MTU is fragmented.
        h.send(&mut dst, PEER, 1400, false).unwrap();
        let f = h.frames();
        let lens: Vec<usize> = f.iter().map(|x| x.2).collect();
        assert_eq!(lens, vec![1420, 720, 796, 644], "first, 700, then two fragments");
        // Expiry is time passing: no bump, the cache lapses by itself.
        let genid = h.stack.fib.rt_genid();
        h.tick(IP_RT_MTU_EXPIRES + 1);
        assert_eq!(h.stack.fib.rt_genid(), genid);
        assert!(!dst.check(&h.stack, PEER), "the exception expired");
        h.send(&mut dst, PEER, 1400, true).unwrap();
        assert_eq!(dst.mtu(), 1500);
        assert!(dst.check(&h.stack, PEER));
    }

    #[test]
    fn neighbour_mac_change_never_uses_old_mac() {
        let mut h = harness();
        // A learned (not static) entry: a peer's ARP reply.
        neigh_update(&mut h.stack, PEER, PEER_MAC, 0, true);
        let mut dst = DstCache::new();
        h.send(&mut dst, PEER, 60, true).unwrap();
        assert!(dst.has_hh());
        // The peer moved to another MAC (a new NIC, a failover).
        neigh_update(&mut h.stack, PEER, NEW_MAC, 0, false);
        assert!(!dst.check(&h.stack, PEER), "a MAC change bumps the generation");
        h.send(&mut dst, PEER, 60, true).unwrap();
        h.send(&mut dst, PEER, 60, true).unwrap();
        assert_eq!(
            h.frames(),
            vec![(PEER_MAC, PEER, 80), (NEW_MAC, PEER, 80), (NEW_MAC, PEER, 80)]
        );
        // A plain confirmation (same MAC) keeps the cache.
        neigh_update(&mut h.stack, PEER, NEW_MAC, 0, false);
        assert!(dst.check(&h.stack, PEER));
        // Made static with yet another address.
        neigh_add_static(&mut h.stack, PEER, PEER_MAC, 0);
        assert!(!dst.check(&h.stack, PEER));
        h.send(&mut dst, PEER, 60, true).unwrap();
        assert_eq!(h.frames(), vec![(PEER_MAC, PEER, 80)]);
    }

    #[test]
    fn unresolved_neighbour_queues_then_caches() {
        let mut h = harness();
        let mut dst = DstCache::new();
        h.send(&mut dst, PEER, 60, true).unwrap();
        assert!(!dst.has_hh(), "nothing to cache while ARP runs");
        assert!(h.frames().is_empty(), "queued for resolution");
        assert_eq!(h.stack.neigh.lookup(PEER).unwrap().state, NudState::Incomplete);
        h.send(&mut dst, PEER, 60, true).unwrap();
        // The reply: both queued packets leave, and the next send fills the cache.
        neigh_update(&mut h.stack, PEER, PEER_MAC, 0, false);
        h.send(&mut dst, PEER, 60, true).unwrap();
        assert!(dst.has_hh() && dst.check(&h.stack, PEER));
        assert_eq!(h.frames().len(), 3);
    }

    #[test]
    fn stale_neighbour_is_probed_as_without_cache() {
        let mut h = harness();
        neigh_update(&mut h.stack, PEER, PEER_MAC, 0, true);
        let mut dst = DstCache::new();
        h.send(&mut dst, PEER, 60, true).unwrap();
        assert!(dst.has_hh());
        // reachable_time passes: the entry goes stale, and cached routes with it.
        h.tick(h.stack.neigh.parms.reachable_time_ms + 1);
        assert_eq!(h.stack.neigh.lookup(PEER).unwrap().state, NudState::Stale);
        assert!(!dst.check(&h.stack, PEER));
        // The next packet goes through the neighbour layer, which starts the probe.
        h.send(&mut dst, PEER, 60, true).unwrap();
        assert_eq!(h.stack.neigh.lookup(PEER).unwrap().state, NudState::Probe);
        assert!(dst.has_hh() && dst.check(&h.stack, PEER));
        // No answer to the probes: the entry fails, and the cache may not outlive it.
        for _ in 0..20 {
            h.tick(1000);
        }
        assert_ne!(h.stack.neigh.lookup(PEER).map(|n| n.state), Some(NudState::Probe));
        assert!(!dst.check(&h.stack, PEER));
        assert_eq!(h.frames().len(), 2);
    }
}
