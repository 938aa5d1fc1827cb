//! Poller steering: one thread drives a single-queue device and a load balancer hands each
//! frame to the core that owns its flow (IPAugenblick's poller + load balancer, and what a
//! NIC's RSS does in hardware).
//!
//! The poller runs inside core 0's poll loop (so N cores need N CPUs): it receives a burst,
//! computes each frame's Toeplitz hash and sends it through the RETA to that core's ring,
//! then collects what the cores queued for transmit and hands it to the device. Each core
//! sees the poller as an ordinary device, a [`RingDev`] over its pair of rings, so nothing
//! above the device layer knows which steering mode runs.
//!
//! Dispatch: TCP and UDP by their 4-tuple, IP fragments by the 2-tuple (all fragments of a
//! datagram meet on one core), everything else (ARP, ICMP, other protocols) to core 0. ARP
//! goes to one core only, not to all: the core that learns a neighbour tells the others
//! through their inboxes (`neigh_broadcast`), and one core answering a request avoids N
//! identical replies.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use blink_ipv4::iphdr::Ipv4Hdr;
use blink_ipv4::Stack;
use blink_netcore::if_ether::{EthHdr, ETH_HLEN, ETH_P_IP};
use blink_netcore::netdevice::{tx_burst_from_front, Burst, DevStats, NetDevice, NetdevFeatures};
use blink_netcore::ring::Ring;
use blink_netcore::rss::{hash2cpu, rss_hash_frame, Reta, Toeplitz};
use blink_netcore::skbuff::SkBuff;
use blink_netcore::snmp::{DropReason, SoftnetMib};
use blink_netcore::EthAddr;

/// Frames each direction of a core's lane holds.
pub const LANE_SIZE: usize = 4096;

/// Counters of one lane, shared by the poller and the core's [`RingDev`].
#[derive(Default, Debug)]
pub struct LaneStats {
    /// Frames the poller dispatched to this core.
    pub dispatched: AtomicU64,
    /// Frames dropped because this core's rx ring was full.
    pub rx_ring_full: AtomicU64,
    /// Frames this core handed to the poller for transmit.
    pub tx_frames: AtomicU64,
}

/// One core's pair of rings to and from the poller.
struct Lane {
    rx: Arc<Ring<SkBuff>>,
    tx: Arc<Ring<SkBuff>>,
    stats: Arc<LaneStats>,
}

/// The poller + load balancer over one single-queue device.
pub struct Poller {
    dev: Box<dyn NetDevice>,
    toeplitz: Toeplitz,
    reta: Reta,
    lanes: Vec<Lane>,
    /// Frames taken from the lanes that the device has not accepted yet (kept, in order).
    txq: Burst,
}

/// Which core a frame belongs to: the load balancer's decision.
pub fn lb_dispatch(toeplitz: &Toeplitz, reta: &Reta, skb: &mut SkBuff) -> u16 {
    let Some((hash, ty)) = rss_hash_frame(toeplitz, skb.data()) else {
        return 0;
    };
    if !ty.is_l4() {
        // Fragments by the 2-tuple; other IP protocols to core 0.
        let frag = EthHdr::new_checked(skb.data())
            .ok()
            .filter(|e| e.ethertype() == ETH_P_IP)
            .and_then(|_| Ipv4Hdr::new_checked(&skb.data()[ETH_HLEN..]).ok())
            .is_some_and(|ip| ip.is_fragment());
        if !frag {
            return 0;
        }
    }
    skb.rss_hash = hash;
    skb.hash_type = ty;
    hash2cpu(reta, hash)
}

impl Poller {
    /// A poller over `dev` (one queue) for `nb_cores` cores, and each core's device.
    pub fn new(dev: Box<dyn NetDevice>, nb_cores: u16, toeplitz: Toeplitz) -> (Poller, Vec<RingDev>) {
        let n = nb_cores.max(1);
        let reta = Reta::new(n).expect("at least one core");
        let mut lanes = Vec::new();
        let mut devs = Vec::new();
        // The load balancer sends every flow to its owner, as RSS would: no software
        // steering is needed behind it.
        let features = dev.features().without(NetdevFeatures::RXHASH) | NetdevFeatures::RSS_QUEUES;
        for cpu in 0..n {
            let rx = Arc::new(Ring::new(&format!("{}-lb{cpu}-rx", dev.name()), LANE_SIZE).expect("size > 0"));
            let tx = Arc::new(Ring::new(&format!("{}-lb{cpu}-tx", dev.name()), LANE_SIZE).expect("size > 0"));
            let stats = Arc::new(LaneStats::default());
            devs.push(RingDev {
                name: format!("{}.lb{cpu}", dev.name()),
                mac: dev.mac(),
                mtu: dev.mtu(),
                nb_queues: n,
                features,
                rx: rx.clone(),
                tx: tx.clone(),
                lane: stats.clone(),
                stats: DevStats::default(),
            });
            lanes.push(Lane { rx, tx, stats });
        }
        let p = Poller {
            dev,
            toeplitz,
            reta,
            lanes,
            txq: Burst::new(),
        };
        (p, devs)
    }

    /// Receive a burst from the device and dispatch it to the cores' rings. A full ring
    /// drops the frame, counted on `stack` (core 0's): `Softnet.RingDrops`, `Drop.RingFull`.
    pub fn poll_rx(&mut self, stack: &mut Stack) -> usize {
        let mut burst = Burst::new();
        let n = self.dev.rx_burst(0, &mut burst);
        for mut skb in burst.drain(..) {
            let cpu = lb_dispatch(&self.toeplitz, &self.reta, &mut skb) as usize;
            skb.queue = cpu as u16;
            let lane = &self.lanes[cpu];
            match lane.rx.enqueue(skb) {
                Ok(()) => {
                    lane.stats.dispatched.fetch_add(1, Ordering::Relaxed);
                }
                Err(skb) => {
                    lane.stats.rx_ring_full.fetch_add(1, Ordering::Relaxed);
                    stack.core.mib.softnet.inc(SoftnetMib::RingDrops);
                    stack.core.kfree_skb_reason(skb, DropReason::RingFull);
                }
            }
        }
        n
    }

    /// Hand what the cores queued for transmit to the device. What it refuses stays here for
    /// the next call; the cores' rings fill meanwhile and push back on them.
    pub fn flush_tx(&mut self) -> usize {
        let mut sent = 0;
        loop {
            for lane in &self.lanes {
                while !self.txq.is_full() {
                    match lane.tx.dequeue() {
                        Some(skb) => self.txq.push(skb),
                        None => break,
                    }
                }
            }
            if self.txq.is_empty() {
                return sent;
            }
            let before = self.txq.len();
            let n = self.dev.tx_burst(0, &mut self.txq);
            sent += n;
            if n < before {
                // The device is full: try again on the next poll.
                return sent;
            }
        }
    }

    /// The device the poller drives.
    pub fn dev(&self) -> &dyn NetDevice {
        self.dev.as_ref()
    }

    /// Frames dispatched to each core so far.
    pub fn dispatched(&self) -> Vec<u64> {
        self.lanes
            .iter()
            .map(|l| l.stats.dispatched.load(Ordering::Relaxed))
            .collect()
    }

    /// Frames dropped because a core's ring was full.
    pub fn ring_drops(&self) -> u64 {
        self.lanes
            .iter()
            .map(|l| l.stats.rx_ring_full.load(Ordering::Relaxed))
            .sum()
    }
}

/// A core's view of the poller: a device whose receive queue is the core's ring from the
/// load balancer and whose transmit queue is its ring back to the poller.
pub struct RingDev {
    name: String,
    mac: EthAddr,
    mtu: usize,
    nb_queues: u16,
    features: NetdevFeatures,
    rx: Arc<Ring<SkBuff>>,
    tx: Arc<Ring<SkBuff>>,
    lane: Arc<LaneStats>,
    stats: DevStats,
}

impl NetDevice for RingDev {
    fn name(&self) -> &str {
        &self.name
    }
    fn mac(&self) -> EthAddr {
        self.mac
    }
    fn mtu(&self) -> usize {
        self.mtu
    }
    fn nb_queues(&self) -> u16 {
        self.nb_queues
    }
    fn features(&self) -> NetdevFeatures {
        self.features
    }

    fn rx_burst(&mut self, _queue: u16, out: &mut Burst) -> usize {
        let mut n = 0;
        while !out.is_full() {
            let Some(skb) = self.rx.dequeue() else { break };
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += skb.len() as u64;
            out.push(skb);
            n += 1;
        }
        n
    }

    fn tx_burst(&mut self, _queue: u16, pkts: &mut Burst) -> usize {
        let (sent, bytes) = tx_burst_from_front(pkts, |skb| self.tx.enqueue(skb));
        self.stats.tx_packets += sent as u64;
        self.stats.tx_bytes += bytes;
        self.lane.tx_frames.fetch_add(sent as u64, Ordering::Relaxed);
        sent
    }

    fn stats(&self) -> DevStats {
        self.stats
    }

    fn extra_stats(&self) -> Vec<(String, u64)> {
        vec![
            ("lb.dispatched".into(), self.lane.dispatched.load(Ordering::Relaxed)),
            ("lb.rx_ring_full".into(), self.lane.rx_ring_full.load(Ordering::Relaxed)),
        ]
    }
}
