//! The in-memory wire: a point-to-point Ethernet link between two stacks in one process.
//!
//! Each direction is a set of bounded lock-free rings, one per receive queue of the far end,
//! so the two stacks may run on different threads. Frames cross without a copy: the sender's
//! skb (header mbuf + payload fragments) becomes the receiver's, its per-layer state reset,
//! the way a NIC would hand over DMA'd buffers. With several queues the wire emulates a NIC's
//! RSS: it computes the Toeplitz hash of each frame, stores it in the skb and picks the queue
//! through the receiver's RETA.
//!
//! Loss, duplication, reordering, corruption and delay are not the wire's business: wrap either
//! end in [`super::impair::Impair`], which works on any driver.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::if_ether::EthAddr;
use crate::netdevice::{tx_burst_from_front, Burst, DevStats, NetDevice, NetdevFeatures};
use crate::ring::Ring;
use crate::rss::{rss_hash_frame, Reta, Toeplitz};
use crate::skbuff::IpSummed;

/// Wire configuration (both ends alike).
#[derive(Debug, Clone)]
pub struct WireConfig {
    pub mtu: usize,
    /// Receive queues per end (RSS emulation when > 1).
    pub queues: u16,
    /// Frames each queue's ring holds before the sender sees "ring full".
    pub ring_size: usize,
    /// Compute and report the RSS hash even with one queue.
    pub rxhash: bool,
    /// Declare TCP/UDP checksum offload, as veth does: senders leave those checksums partial
    /// (CHECKSUM_PARTIAL) and such frames arrive marked verified (CHECKSUM_UNNECESSARY), since
    /// nothing on an in-memory link can damage them. Frames with complete checksums are
    /// verified by the receiver as usual. An [`super::impair::Impair`] wrapper hides the
    /// transmit offload, so impaired traffic keeps complete, checked checksums.
    pub csum_offload: bool,
    /// Spread frames over the queues by a hash that is not blink's (Toeplitz under another
    /// key), as TAP's kernel flow hash or virtio do: the device then neither reports a hash
    /// nor advertises `RSS_QUEUES`, and the stack's cores must steer in software.
    pub foreign_rss: bool,
    /// The Toeplitz key of the RSS emulation (the stacks on both ends must use the same one
    /// for the queues to match their RETA; see `rss::RSS_KEY_SYMMETRIC`).
    pub rss_key: [u8; 40],
}

/// The key of a `foreign_rss` wire: any key but blink's.
const FOREIGN_KEY: [u8; 40] = [
    0x2c, 0xc6, 0x81, 0xd1, 0x5b, 0xdb, 0xf4, 0xf7, 0xfc, 0xa2, 0x83, 0x19, 0xdb, 0x1a, 0x3e, 0x94, 0x6b, 0x9e, 0x38,
    0xd9, 0x2c, 0x9c, 0x03, 0xd1, 0xad, 0x99, 0x44, 0xa7, 0xd9, 0x56, 0x3d, 0x59, 0x06, 0x3c, 0x25, 0xf3, 0xfc, 0x1f,
    0xdc, 0x2a,
];

impl Default for WireConfig {
    fn default() -> Self {
        WireConfig {
            mtu: 1500,
            queues: 1,
            ring_size: 4096,
            rxhash: false,
            csum_offload: false,
            foreign_rss: false,
            rss_key: crate::rss::RSS_KEY_DEFAULT,
        }
    }
}

struct Direction {
    rings: Vec<Ring<crate::skbuff::SkBuff>>,
}

#[derive(Default)]
struct Counters {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    tx_dropped: AtomicU64,
}

/// Add to a counter only this handle writes (`&mut self` paths): a plain load and store, not
/// a locked read-modify-write, which would cost ~20 cycles per burst of one frame. Other
/// threads may still read it (relaxed) for statistics.
#[inline]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

/// One end of an in-memory wire.
pub struct WireDev {
    name: String,
    mac: EthAddr,
    cfg: WireConfig,
    /// Frames for us.
    rx: Arc<Direction>,
    /// Frames for the peer.
    tx: Arc<Direction>,
    toeplitz: Toeplitz,
    peer_reta: Reta,
    stats: Counters,
}

/// Create a connected pair of wire ends with the given MAC addresses.
pub fn wire_pair(names: (&str, &str), macs: (EthAddr, EthAddr), cfg: &WireConfig) -> (WireDev, WireDev) {
    let q = cfg.queues.max(1);
    let mk = |n: &str| {
        Arc::new(Direction {
            rings: (0..q)
                .map(|i| Ring::new(&format!("{n}-rxq{i}"), cfg.ring_size.max(1)).expect("ring size checked"))
                .collect(),
        })
    };
    let a_rx = mk(names.0);
    let b_rx = mk(names.1);
    let end = |name: &str, mac, rx: &Arc<Direction>, tx: &Arc<Direction>| WireDev {
        name: name.to_string(),
        mac,
        cfg: WireConfig {
            queues: q,
            ..cfg.clone()
        },
        rx: rx.clone(),
        tx: tx.clone(),
        toeplitz: if cfg.foreign_rss {
            Toeplitz::new(&FOREIGN_KEY).expect("40-byte key")
        } else {
            Toeplitz::new(&cfg.rss_key).expect("40-byte key")
        },
        peer_reta: Reta::new(q).expect("queue count >= 1"),
        stats: Counters::default(),
    };
    let a = end(names.0, macs.0, &a_rx, &b_rx);
    let b = end(names.1, macs.1, &b_rx, &a_rx);
    (a, b)
}

impl WireDev {
    /// One handle per receive queue, each to be owned by one core (DPDK's port + queue id):
    /// handle `q` polls ring `q` and transmits on the shared far-end rings (lock-free,
    /// multi-producer), so cores never share a handle. Counters are per handle; sum them
    /// for the port. A one-queue wire gives back itself.
    pub fn into_queues(self) -> Vec<WireDev> {
        let n = self.cfg.queues.max(1);
        (0..n)
            .map(|q| WireDev {
                name: if n > 1 {
                    format!("{}q{q}", self.name)
                } else {
                    self.name.clone()
                },
                mac: self.mac,
                cfg: self.cfg.clone(),
                rx: self.rx.clone(),
                tx: self.tx.clone(),
                toeplitz: self.toeplitz.clone(),
                peer_reta: self.peer_reta.clone(),
                stats: Counters::default(),
            })
            .collect()
    }
}

impl NetDevice for WireDev {
    fn name(&self) -> &str {
        &self.name
    }

    fn mac(&self) -> EthAddr {
        self.mac
    }

    fn mtu(&self) -> usize {
        self.cfg.mtu
    }

    fn nb_queues(&self) -> u16 {
        self.cfg.queues
    }

    fn features(&self) -> NetdevFeatures {
        // The wire picks the far end's queue by Toeplitz through a RETA over its queues, as
        // a NIC programmed by blink would.
        let mut f = NetdevFeatures::SG;
        if !self.cfg.foreign_rss {
            f = f | NetdevFeatures::RSS_QUEUES;
            if self.cfg.queues > 1 || self.cfg.rxhash {
                f = f | NetdevFeatures::RXHASH;
            }
        }
        if self.cfg.csum_offload {
            f = f
                | NetdevFeatures::TXCSUM_TCP
                | NetdevFeatures::TXCSUM_UDP
                | NetdevFeatures::RXCSUM_TCP
                | NetdevFeatures::RXCSUM_UDP;
        }
        f
    }

    fn rx_burst(&mut self, queue: u16, out: &mut Burst) -> usize {
        let Some(ring) = self.rx.rings.get(queue as usize) else {
            return 0;
        };
        let mut n = 0;
        let mut bytes = 0;
        // Take what the ring held a moment ago, no more: a pop that finds the ring empty
        // costs a full fence (the lock-free queue's emptiness check), and most polls of a
        // request/response flow find one frame or none.
        let avail = ring.len().min(out.capacity() - out.len());
        for _ in 0..avail {
            let Some(skb) = ring.dequeue() else { break };
            bytes += skb.len() as u64;
            out.push(skb);
            n += 1;
        }
        if n > 0 {
            bump(&self.stats.rx_packets, n as u64);
            bump(&self.stats.rx_bytes, bytes);
        }
        n
    }

    fn tx_burst(&mut self, _queue: u16, pkts: &mut Burst) -> usize {
        let hash = self.cfg.queues > 1 || self.cfg.rxhash;
        // A full ring stops the burst (NIC tx ring full); the refused frames stay in `pkts`.
        let (sent, bytes) = tx_burst_from_front(pkts, |mut skb| {
            let offloaded = self.cfg.csum_offload && skb.ip_summed == IpSummed::Partial;
            skb.reset_for_rx();
            if offloaded {
                skb.ip_summed = IpSummed::Unnecessary;
            }
            let mut q = 0;
            if hash {
                if let Some((h, t)) = rss_hash_frame(&self.toeplitz, skb.data()) {
                    if !self.cfg.foreign_rss {
                        skb.rss_hash = h;
                        skb.hash_type = t;
                    }
                    q = self.peer_reta.lookup(h) as usize;
                }
            }
            skb.queue = q as u16;
            self.tx.rings[q].enqueue(skb)
        });
        bump(&self.stats.tx_packets, sent as u64);
        bump(&self.stats.tx_bytes, bytes);
        sent
    }

    fn stats(&self) -> DevStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DevStats {
            rx_packets: l(&self.stats.rx_packets),
            rx_bytes: l(&self.stats.rx_bytes),
            tx_packets: l(&self.stats.tx_packets),
            tx_bytes: l(&self.stats.tx_bytes),
            tx_dropped: l(&self.stats.tx_dropped),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mbuf::{Mempool, MempoolConfig};
    use crate::skbuff::SkBuff;

    fn macs() -> (EthAddr, EthAddr) {
        (EthAddr([2, 0, 0, 0, 0, 1]), EthAddr([2, 0, 0, 0, 0, 2]))
    }

    #[test]
    fn frames_cross_without_copy() {
        let p = Mempool::new(&MempoolConfig {
            n: 64,
            ..Default::default()
        })
        .unwrap();
        let mut c = p.cache();
        let (mut a, mut b) = wire_pair(("a", "b"), macs(), &WireConfig::default());
        let mut burst = Burst::new();
        for i in 0..3u8 {
            burst.push(SkBuff::from_slice(&mut c, &[i; 60]).unwrap());
        }
        let addr0 = burst[0].host_addr();
        assert_eq!(a.tx_burst(0, &mut burst), 3);
        assert!(burst.is_empty());
        let mut got = Burst::new();
        assert_eq!(b.rx_burst(0, &mut got), 3);
        assert_eq!(got[0].host_addr(), addr0, "the receiver sees the sender's buffer");
        assert_eq!(got[2].data(), &[2u8; 60]);
        assert_eq!(a.stats().tx_packets, 3);
        assert_eq!(b.stats().rx_bytes, 180);
        drop(got);
        drop(c);
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn checksum_offload_marks_only_partial_frames_verified() {
        let p = Mempool::new(&MempoolConfig {
            n: 64,
            ..Default::default()
        })
        .unwrap();
        let mut c = p.cache();
        for offload in [false, true] {
            let cfg = WireConfig {
                csum_offload: offload,
                ..Default::default()
            };
            let (mut a, mut b) = wire_pair(("a", "b"), macs(), &cfg);
            assert_eq!(a.features().has(NetdevFeatures::TXCSUM_TCP), offload);
            let mut burst = Burst::new();
            for summed in [IpSummed::Partial, IpSummed::None] {
                let mut skb = SkBuff::from_slice(&mut c, &[7u8; 60]).unwrap();
                skb.ip_summed = summed;
                burst.push(skb);
            }
            assert_eq!(a.tx_burst(0, &mut burst), 2);
            let mut got = Burst::new();
            assert_eq!(b.rx_burst(0, &mut got), 2);
            let want = if offload { IpSummed::Unnecessary } else { IpSummed::None };
            assert_eq!(got[0].ip_summed, want, "offloaded frame, offload {offload}");
            assert_eq!(got[1].ip_summed, IpSummed::None, "complete checksum is checked");
        }
        drop(c);
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn full_ring_leaves_frames_with_caller() {
        let p = Mempool::new(&MempoolConfig {
            n: 64,
            ..Default::default()
        })
        .unwrap();
        let mut c = p.cache();
        let cfg = WireConfig {
            ring_size: 2,
            ..Default::default()
        };
        let (mut a, _b) = wire_pair(("a", "b"), macs(), &cfg);
        let mut burst = Burst::new();
        for i in 0..5u8 {
            burst.push(SkBuff::from_slice(&mut c, &[i; 60]).unwrap());
        }
        assert_eq!(a.tx_burst(0, &mut burst), 2);
        assert_eq!(burst.len(), 3);
        assert_eq!(burst[0].data()[0], 2, "unsent frames keep their order");
        drop(burst);
        drop(_b);
        drop(a);
        drop(c);
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn queue_handles_share_the_link() {
        let p = Mempool::new(&MempoolConfig {
            n: 64,
            ..Default::default()
        })
        .unwrap();
        let mut c = p.cache();
        let cfg = WireConfig {
            queues: 2,
            ..Default::default()
        };
        let (a, b) = wire_pair(("a", "b"), macs(), &cfg);
        let mut aq = a.into_queues();
        let mut bq = b.into_queues();
        assert_eq!(aq.len(), 2);
        assert!(aq[1].features().has(NetdevFeatures::RSS_QUEUES));
        // A frame sent from either handle of `a` lands on the queue its hash selects at `b`.
        let mut f = [0u8; 54];
        f[12] = 0x08;
        f[14] = 0x45;
        f[23] = 17;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        let mut burst = Burst::new();
        burst.push(SkBuff::from_slice(&mut c, &f).unwrap());
        assert_eq!(aq[1].tx_burst(1, &mut burst), 1);
        let mut got = Burst::new();
        let n: usize = (0..2u16).map(|q| bq[q as usize].rx_burst(q, &mut got)).sum();
        assert_eq!(n, 1);
        assert_eq!(aq[1].stats().tx_packets, 1);
        assert_eq!(aq[0].stats().tx_packets, 0, "counters are per handle");
        drop(got);
        drop(c);
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn rss_spreads_flows_over_queues() {
        let p = Mempool::new(&MempoolConfig {
            n: 512,
            ..Default::default()
        })
        .unwrap();
        let mut c = p.cache();
        let cfg = WireConfig {
            queues: 4,
            ..Default::default()
        };
        let (mut a, mut b) = wire_pair(("a", "b"), macs(), &cfg);
        let t = Toeplitz::default();
        let reta = Reta::new(4).unwrap();
        let mut per_q = [0usize; 4];
        for sport in 0..200u16 {
            // Ethernet + IPv4 + TCP ports.
            let mut f = [0u8; 54];
            f[12] = 0x08;
            f[14] = 0x45;
            f[23] = 6;
            f[26..30].copy_from_slice(&[10, 0, 0, 1]);
            f[30..34].copy_from_slice(&[10, 0, 0, 2]);
            f[34..36].copy_from_slice(&(1000 + sport).to_be_bytes());
            f[36..38].copy_from_slice(&80u16.to_be_bytes());
            let want = reta.lookup(t.hash_ipv4_l4([10, 0, 0, 1], [10, 0, 0, 2], 1000 + sport, 80));
            let mut burst = Burst::new();
            burst.push(SkBuff::from_slice(&mut c, &f).unwrap());
            a.tx_burst(0, &mut burst);
            let mut got = Burst::new();
            b.rx_burst(want, &mut got);
            assert_eq!(got.len(), 1, "frame lands on the queue its hash selects");
            assert_eq!(got[0].queue, want);
            per_q[want as usize] += 1;
        }
        assert!(per_q.iter().all(|&n| n > 20), "flows spread: {per_q:?}");
        drop(c);
        assert_eq!(p.in_use(), 0);
    }
}
