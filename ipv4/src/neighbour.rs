//! The neighbour (ARP) table: next-hop IPv4 address -> MAC, with the kernel's NUD states.
//!
//! Linux: net/core/neighbour.c (`neigh_resolve_output`, `neigh_update`, `neigh_timer_handler`)
//! and net/ipv4/arp.c. A packet for an unresolved next hop waits in a bounded per-entry queue
//! while ARP requests are retried; when the entry fails, the queue is dropped and counted.

use std::net::Ipv4Addr;

use blink_netcore::if_ether::ETH_P_IP;
use blink_netcore::skbuff::{SkBuff, SkBuffHead};
use blink_netcore::snmp::{ArpMib, DropReason};
use blink_netcore::timer::TimerId;
use blink_netcore::EthAddr;
use hashbrown::HashMap;

use crate::arp::{arp_send, ArpOp};
use crate::dev::{dev_queue_xmit, eth_header};
use crate::stack::Stack;

/// Neighbour Unreachability Detection state (Linux: NUD_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NudState {
    /// Request sent, no answer yet; packets wait in the entry's queue.
    Incomplete,
    /// Confirmed within `reachable_time`.
    Reachable,
    /// Not confirmed lately; still used, re-confirmed on the next use.
    Stale,
    /// In use while stale: unicast probes are being sent.
    Probe,
    /// Resolution failed; removed after `gc_stale_time`.
    Failed,
    /// Static entry: never expires.
    Permanent,
}

impl NudState {
    /// Whether the MAC address may be used for output.
    /// The name `ip neigh` prints.
    pub fn name(self) -> &'static str {
        match self {
            NudState::Incomplete => "INCOMPLETE",
            NudState::Reachable => "REACHABLE",
            NudState::Stale => "STALE",
            NudState::Probe => "PROBE",
            NudState::Failed => "FAILED",
            NudState::Permanent => "PERMANENT",
        }
    }

    pub fn is_valid(self) -> bool {
        matches!(
            self,
            NudState::Reachable | NudState::Stale | NudState::Probe | NudState::Permanent
        )
    }
}

/// Tunables (Linux: /proc/sys/net/ipv4/neigh/default/*). All bounded.
#[derive(Debug, Clone)]
pub struct NeighParms {
    pub retrans_time_ms: u64,
    /// Broadcast requests before an incomplete entry fails.
    pub mcast_solicit: u32,
    /// Unicast probes before a probed entry fails.
    pub ucast_solicit: u32,
    pub reachable_time_ms: u64,
    pub delay_first_probe_time_ms: u64,
    pub gc_stale_time_ms: u64,
    /// Packets queued per unresolved entry (Linux: unres_qlen).
    pub unres_qlen: usize,
    /// Most entries the table holds (Linux: gc_thresh3).
    pub max_entries: usize,
}

impl Default for NeighParms {
    fn default() -> Self {
        NeighParms {
            retrans_time_ms: 1000,
            mcast_solicit: 3,
            ucast_solicit: 3,
            reachable_time_ms: 30_000,
            delay_first_probe_time_ms: 5000,
            gc_stale_time_ms: 60_000,
            unres_qlen: 101,
            max_entries: 1024,
        }
    }
}

/// One entry (Linux: `struct neighbour`).
#[derive(Debug)]
pub struct Neighbour {
    pub ip: Ipv4Addr,
    pub mac: EthAddr,
    pub dev: u16,
    pub state: NudState,
    /// Jiffies of the last confirmation.
    pub confirmed: u64,
    pub probes: u32,
    arp_queue: SkBuffHead,
    timer: Option<TimerId>,
}

/// The table of one core.
#[derive(Debug, Default)]
pub struct NeighTable {
    entries: HashMap<Ipv4Addr, Neighbour>,
    pub parms: NeighParms,
}

impl NeighTable {
    pub fn lookup(&self, ip: Ipv4Addr) -> Option<&Neighbour> {
        self.entries.get(&ip)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Neighbour> {
        self.entries.values()
    }

    /// Lines like `ip neigh show`: `10.0.0.1 dev 0 lladdr 02:.. REACHABLE`.
    pub fn show(&self) -> Vec<String> {
        let mut v: Vec<_> = self
            .entries
            .values()
            .map(|n| format!("{} dev {} lladdr {} {}", n.ip, n.dev, n.mac, n.state.name()))
            .collect();
        v.sort();
        v
    }
}

fn ip_key(ip: Ipv4Addr) -> u64 {
    u32::from(ip) as u64
}

/// Transmit `skb` (data at the IP header) to `mac` on `dev`.
fn neigh_output(stack: &mut Stack, mut skb: SkBuff, mac: EthAddr, dev: u16) {
    let src = stack.devs[dev as usize].mac;
    skb.dev = dev;
    if !eth_header(&mut skb, src, mac, ETH_P_IP) {
        stack.core.kfree_skb_reason(skb, DropReason::NoMem);
        return;
    }
    dev_queue_xmit(stack, skb);
}

/// Linux: neigh_resolve_output(). Send an IP packet (`skb->data` at the IP header) to next hop
/// `nexthop` on device `dev`, resolving its MAC address first if needed. Returns the MAC
/// and device the packet went to when the entry is resolved (REACHABLE, PROBE, PERMANENT
/// once used), which a cached route may keep (Linux: neigh_hh_init; see `crate::dst`).
pub fn neigh_resolve_output(stack: &mut Stack, skb: SkBuff, nexthop: Ipv4Addr, dev: u16) -> Option<(EthAddr, u16)> {
    stack.core.mib.arp.inc(ArpMib::Lookups);
    let now = stack.core.jiffies;
    let parms = stack.neigh.parms.clone();
    if let Some(n) = stack.neigh.entries.get_mut(&nexthop) {
        if n.state.is_valid() {
            stack.core.mib.arp.inc(ArpMib::Hits);
            let (mac, ndev) = (n.mac, n.dev);
            if n.state == NudState::Stale {
                // Used while stale: give the peer delay_first_probe_time to be confirmed, then
                // probe it (Linux: NUD_DELAY, folded into Probe with probes == 0).
                n.state = NudState::Probe;
                n.probes = 0;
                if let Some(t) = n.timer {
                    stack.timers.mod_timer(t, now + parms.delay_first_probe_time_ms);
                }
            }
            neigh_output(stack, skb, mac, ndev);
            return Some((mac, ndev));
        }
        if n.state == NudState::Incomplete {
            if n.arp_queue.len() >= parms.unres_qlen {
                stack.core.mib.arp.inc(ArpMib::UnresolvedDiscards);
                stack.core.kfree_skb_reason(skb, DropReason::NeighQueueFull);
            } else {
                n.arp_queue.skb_queue_tail(skb);
            }
            return None;
        }
        // Failed: a new packet restarts resolution. (No cached route holds a failed entry's
        // address: entering Failed bumped rt_genid.)
        n.state = NudState::Incomplete;
        n.probes = 1;
        n.dev = dev;
        n.arp_queue.skb_queue_tail(skb);
        if let Some(t) = n.timer {
            stack.timers.mod_timer(t, now + parms.retrans_time_ms);
        }
        arp_solicit(stack, nexthop, dev, None);
        return None;
    }
    if stack.neigh.entries.len() >= parms.max_entries && !neigh_forced_gc(stack) {
        stack.core.mib.arp.inc(ArpMib::TableFulls);
        stack.core.kfree_skb_reason(skb, DropReason::NeighFailed);
        return None;
    }
    let timer = stack.timers.timer_setup(neigh_timer_handler, ip_key(nexthop));
    stack.fib.rt_genid_bump();
    let mut q = SkBuffHead::new();
    q.skb_queue_tail(skb);
    stack.neigh.entries.insert(
        nexthop,
        Neighbour {
            ip: nexthop,
            mac: EthAddr::ZERO,
            dev,
            state: NudState::Incomplete,
            confirmed: 0,
            probes: 1,
            arp_queue: q,
            timer: Some(timer),
        },
    );
    stack.timers.mod_timer(timer, now + parms.retrans_time_ms);
    arp_solicit(stack, nexthop, dev, None);
    None
}

/// Send an ARP request for `target` on `dev`: broadcast, or unicast to `known` when probing.
fn arp_solicit(stack: &mut Stack, target: Ipv4Addr, dev: u16, known: Option<EthAddr>) {
    let Some(src_ip) = stack
        .fib
        .lookup(target)
        .map(|r| r.prefsrc)
        .or_else(|| stack.dev_addr(dev))
    else {
        return;
    };
    let dst = known.unwrap_or(EthAddr::BROADCAST);
    arp_send(stack, ArpOp::Request, dev, dst, target, EthAddr::ZERO, src_ip);
}

/// Linux: neigh_update(). Record that `ip` is at `mac` on `dev`. With `create`, a missing entry
/// is created (an ARP request or reply aimed at us); otherwise only existing entries are
/// refreshed (Linux updates, but does not create, entries from ARP traffic not for us).
pub fn neigh_update(stack: &mut Stack, ip: Ipv4Addr, mac: EthAddr, dev: u16, create: bool) {
    let now = stack.core.jiffies;
    let reach = stack.neigh.parms.reachable_time_ms;
    let max = stack.neigh.parms.max_entries;
    let queued = match stack.neigh.entries.get_mut(&ip) {
        Some(n) => {
            if n.state == NudState::Permanent {
                return;
            }
            if n.mac != mac && n.state.is_valid() {
                stack.core.mib.arp.inc(ArpMib::Updates);
            }
            if n.mac != mac || n.dev != dev || !n.state.is_valid() {
                // A cached route may hold the old address (or none yet): refill it. A
                // plain confirmation (same address, still valid) leaves caches alone.
                stack.fib.rt_genid_bump();
            }
            n.mac = mac;
            n.dev = dev;
            n.state = NudState::Reachable;
            n.confirmed = now;
            n.probes = 0;
            if let Some(t) = n.timer {
                stack.timers.mod_timer(t, now + reach);
            }
            std::mem::take(&mut n.arp_queue)
        }
        None => {
            if !create {
                return;
            }
            if stack.neigh.entries.len() >= max && !neigh_forced_gc(stack) {
                stack.core.mib.arp.inc(ArpMib::TableFulls);
                return;
            }
            let timer = stack.timers.timer_setup(neigh_timer_handler, ip_key(ip));
            stack.timers.mod_timer(timer, now + reach);
            stack.fib.rt_genid_bump();
            stack.neigh.entries.insert(
                ip,
                Neighbour {
                    ip,
                    mac,
                    dev,
                    state: NudState::Reachable,
                    confirmed: now,
                    probes: 0,
                    arp_queue: SkBuffHead::new(),
                    timer: Some(timer),
                },
            );
            SkBuffHead::new()
        }
    };
    let mut queued = queued;
    while let Some(skb) = queued.skb_dequeue() {
        neigh_output(stack, skb, mac, dev);
    }
}

/// Send what this core learned about `ip` to every other core's inbox (`Softnet.NeighSent`),
/// where it is applied with [`neigh_update`]. Linux has one `arp_tbl` for all CPUs; blink's
/// shared-nothing tables stay in step this way instead of through a lock.
pub fn neigh_broadcast(stack: &mut Stack, ip: Ipv4Addr, mac: EthAddr, dev: u16, create: bool) {
    let me = stack.core.cpu;
    for cpu in (0..stack.nb_cores()).filter(|&c| c != me) {
        if stack.post_to_core(cpu, crate::inbox::CoreMsg::Neigh { ip, mac, dev, create }) {
            stack.core.mib.softnet.inc(blink_netcore::snmp::SoftnetMib::NeighSent);
        }
    }
}

/// A static entry (Linux: `ip neigh add ... nud permanent`).
pub fn neigh_add_static(stack: &mut Stack, ip: Ipv4Addr, mac: EthAddr, dev: u16) {
    // Packets waiting for resolution now have their answer: send them rather than drop them
    // (Linux: neigh_update() to NUD_PERMANENT flushes arp_queue).
    let mut queued = SkBuffHead::new();
    stack.fib.rt_genid_bump();
    if let Some(mut old) = stack.neigh.entries.remove(&ip) {
        queued = std::mem::take(&mut old.arp_queue);
        neigh_destroy(stack, old);
    }
    stack.neigh.entries.insert(
        ip,
        Neighbour {
            ip,
            mac,
            dev,
            state: NudState::Permanent,
            confirmed: stack.core.jiffies,
            probes: 0,
            arp_queue: SkBuffHead::new(),
            timer: None,
        },
    );
    while let Some(skb) = queued.skb_dequeue() {
        neigh_output(stack, skb, mac, dev);
    }
}

/// Free an entry's timer and drop what it still queues (counted).
fn neigh_destroy(stack: &mut Stack, mut n: Neighbour) {
    // A route cached with this entry's address must not outlive it.
    stack.fib.rt_genid_bump();
    if let Some(t) = n.timer.take() {
        stack.timers.timer_free(t);
    }
    while let Some(skb) = n.arp_queue.skb_dequeue() {
        stack.core.mib.arp.inc(ArpMib::UnresolvedDiscards);
        stack.core.kfree_skb_reason(skb, DropReason::NeighFailed);
    }
}

/// Make room in a full table by removing one failed or stale entry (Linux: neigh_forced_gc).
fn neigh_forced_gc(stack: &mut Stack) -> bool {
    let victim = stack
        .neigh
        .entries
        .values()
        .find(|n| matches!(n.state, NudState::Failed | NudState::Stale))
        .map(|n| n.ip);
    match victim {
        Some(ip) => {
            let n = stack.neigh.entries.remove(&ip).expect("victim exists");
            neigh_destroy(stack, n);
            true
        }
        None => false,
    }
}

/// Linux: neigh_timer_handler(). Drives an entry through its NUD states.
fn neigh_timer_handler(stack: &mut Stack, data: u64) {
    let ip = Ipv4Addr::from(data as u32);
    let now = stack.core.jiffies;
    let p = stack.neigh.parms.clone();
    let Some(n) = stack.neigh.entries.get_mut(&ip) else {
        return;
    };
    let Some(timer) = n.timer else { return };
    match n.state {
        NudState::Incomplete => {
            if n.probes >= p.mcast_solicit {
                n.state = NudState::Failed;
                stack.fib.rt_genid_bump();
                let mut q = std::mem::take(&mut n.arp_queue);
                stack.timers.mod_timer(timer, now + p.gc_stale_time_ms);
                stack.core.mib.arp.inc(ArpMib::ResFailed);
                // Warn: an unresolved neighbour is the first thing a user of a new setup hits
                // (wrong address, peer down, NIC bound elsewhere), and only a counter says so.
                log::warn!(
                    "arp: {ip} not resolved after {} requests: no reply, its packets are dropped (Arp.ResFailed)",
                    p.mcast_solicit
                );
                while let Some(skb) = q.skb_dequeue() {
                    stack.core.mib.arp.inc(ArpMib::UnresolvedDiscards);
                    stack.core.kfree_skb_reason(skb, DropReason::NeighFailed);
                }
            } else {
                n.probes += 1;
                let dev = n.dev;
                stack.timers.mod_timer(timer, now + p.retrans_time_ms);
                arp_solicit(stack, ip, dev, None);
            }
        }
        NudState::Reachable => {
            n.state = NudState::Stale;
            // Cached routes must see the entry go stale: their next packet takes
            // neigh_resolve_output, which starts the probe (Stale -> Probe) as today.
            stack.fib.rt_genid_bump();
            stack.timers.mod_timer(timer, now + p.gc_stale_time_ms);
        }
        NudState::Probe => {
            if n.probes >= p.ucast_solicit {
                n.state = NudState::Failed;
                stack.fib.rt_genid_bump();
                log::warn!("arp: {ip} stopped answering after {} unicast probes", p.ucast_solicit);
                stack.core.mib.arp.inc(ArpMib::ResFailed);
                stack.timers.mod_timer(timer, now + p.gc_stale_time_ms);
            } else {
                n.probes += 1;
                let (dev, mac) = (n.dev, n.mac);
                stack.timers.mod_timer(timer, now + p.retrans_time_ms);
                arp_solicit(stack, ip, dev, Some(mac));
            }
        }
        NudState::Stale | NudState::Failed => {
            let n = stack.neigh.entries.remove(&ip).expect("entry exists");
            neigh_destroy(stack, n);
        }
        NudState::Permanent => {}
    }
}
