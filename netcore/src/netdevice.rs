//! The device interface (Linux: include/linux/netdevice.h, `struct net_device_ops`;
//! DPDK: `rte_eth_rx_burst` / `rte_eth_tx_burst`).
//!
//! Devices move bursts of skbs per queue. A core polls its own queue(s): the queue id is part
//! of every call so that one rx/tx queue pair per stack core works when multi-core steering
//! arrives, with no change to drivers.

use std::fmt;

use arrayvec::ArrayVec;

use crate::if_ether::EthAddr;
use crate::skbuff::SkBuff;

/// Packets per burst (DPDK's customary 32).
pub const BURST: usize = 32;

/// A burst of packets for rx or tx.
pub type Burst = ArrayVec<SkBuff, BURST>;

/// Hand the frames of `pkts` to `send` from the front, in order, until it refuses one (a full
/// ring: it gives the frame back). The refused frame and those behind it stay in `pkts`, in
/// order, for the caller to retry; only then is the burst rebuilt (draining in place avoids
/// moving the whole array per call). Returns (frames sent, bytes sent). The common body of
/// ring-backed drivers' `tx_burst`.
#[inline]
pub fn tx_burst_from_front(pkts: &mut Burst, mut send: impl FnMut(SkBuff) -> Result<(), SkBuff>) -> (usize, u64) {
    let (mut sent, mut bytes) = (0, 0);
    let mut rest: Option<Burst> = None;
    let mut it = pkts.drain(..);
    while let Some(skb) = it.next() {
        let len = skb.len() as u64;
        match send(skb) {
            Ok(()) => {
                sent += 1;
                bytes += len;
            }
            Err(skb) => {
                let mut r = Burst::new();
                r.push(skb);
                r.extend(it.by_ref());
                rest = Some(r);
                break;
            }
        }
    }
    drop(it);
    if let Some(r) = rest {
        *pkts = r;
    }
    (sent, bytes)
}

/// Offload features a device offers (Linux: `netdev_features_t`, DPDK: `RTE_ETH_*_OFFLOAD_*`).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct NetdevFeatures(pub u32);

impl NetdevFeatures {
    pub const NONE: Self = Self(0);
    /// rx: the device verifies IPv4 header checksums.
    pub const RXCSUM_IPV4: Self = Self(1 << 0);
    /// rx: the device verifies TCP checksums.
    pub const RXCSUM_TCP: Self = Self(1 << 1);
    /// rx: the device verifies UDP checksums.
    pub const RXCSUM_UDP: Self = Self(1 << 2);
    /// tx: the device fills IPv4 header checksums.
    pub const TXCSUM_IPV4: Self = Self(1 << 3);
    /// tx: the device fills TCP checksums.
    pub const TXCSUM_TCP: Self = Self(1 << 4);
    /// tx: the device fills UDP checksums.
    pub const TXCSUM_UDP: Self = Self(1 << 5);
    /// tx: TCP segmentation offload.
    pub const TSO: Self = Self(1 << 6);
    /// rx: the device computes the RSS hash and reports it per packet.
    pub const RXHASH: Self = Self(1 << 7);
    /// tx: the device takes multi-segment packets (scatter-gather).
    pub const SG: Self = Self(1 << 8);
    /// rx: the device picks the receive queue by the Toeplitz hash with the stack's key and
    /// RETA, so every flow lands on the queue of the core that owns it. Without it (TAP's
    /// kernel flow hash, virtio, a NIC whose RETA could not be set) the receiving core
    /// recomputes the owner in software and forwards what is not its own (Linux: RPS).
    pub const RSS_QUEUES: Self = Self(1 << 9);

    #[inline]
    /// These features minus `f`.
    pub fn without(self, f: NetdevFeatures) -> NetdevFeatures {
        Self(self.0 & !f.0)
    }

    pub fn has(self, f: NetdevFeatures) -> bool {
        self.0 & f.0 == f.0
    }

    pub fn names(self) -> Vec<&'static str> {
        const N: [(NetdevFeatures, &str); 10] = [
            (NetdevFeatures::RXCSUM_IPV4, "rx-ipv4-csum"),
            (NetdevFeatures::RXCSUM_TCP, "rx-tcp-csum"),
            (NetdevFeatures::RXCSUM_UDP, "rx-udp-csum"),
            (NetdevFeatures::TXCSUM_IPV4, "tx-ipv4-csum"),
            (NetdevFeatures::TXCSUM_TCP, "tx-tcp-csum"),
            (NetdevFeatures::TXCSUM_UDP, "tx-udp-csum"),
            (NetdevFeatures::TSO, "tso"),
            (NetdevFeatures::RXHASH, "rxhash"),
            (NetdevFeatures::SG, "scatter-gather"),
            (NetdevFeatures::RSS_QUEUES, "rss-queues"),
        ];
        N.iter().filter(|(f, _)| self.has(*f)).map(|(_, n)| *n).collect()
    }
}

impl std::ops::BitOr for NetdevFeatures {
    type Output = Self;
    fn bitor(self, o: Self) -> Self {
        Self(self.0 | o.0)
    }
}

impl fmt::Debug for NetdevFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.names())
    }
}

/// Device counters (Linux: `struct rtnl_link_stats64`; DPDK: `rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DevStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Received but dropped by the driver (e.g. frame larger than a buffer).
    pub rx_dropped: u64,
    pub tx_dropped: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    /// Receive failed for lack of buffers (DPDK: rx_nombuf).
    pub rx_nombuf: u64,
    /// Missed by the device (DPDK: imissed).
    pub rx_missed: u64,
}

impl DevStats {
    pub fn merge(&mut self, o: &DevStats) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.rx_dropped += o.rx_dropped;
        self.tx_dropped += o.tx_dropped;
        self.rx_errors += o.rx_errors;
        self.tx_errors += o.tx_errors;
        self.rx_nombuf += o.rx_nombuf;
        self.rx_missed += o.rx_missed;
    }
}

/// A network device driver.
pub trait NetDevice: Send {
    /// Interface name (`wire0`, `tap:blink0`, ...).
    fn name(&self) -> &str;
    /// The stack's MAC address on this device.
    fn mac(&self) -> EthAddr;
    /// Largest IP packet the link carries (without the Ethernet header).
    fn mtu(&self) -> usize;
    /// Number of rx/tx queue pairs.
    fn nb_queues(&self) -> u16 {
        1
    }
    fn features(&self) -> NetdevFeatures {
        NetdevFeatures::NONE
    }
    /// Receive up to `out.remaining_capacity()` frames from `queue`, appending them to `out`.
    /// Returns how many were added. Frames arrive as skbs with `data` at the Ethernet header.
    fn rx_burst(&mut self, queue: u16, out: &mut Burst) -> usize;
    /// Transmit frames from the front of `pkts` on `queue`. Sent frames are removed from
    /// `pkts` (the driver owns them now); frames the device could not take stay, in order,
    /// for the caller to retry or drop. Returns how many were sent.
    fn tx_burst(&mut self, queue: u16, pkts: &mut Burst) -> usize;
    fn stats(&self) -> DevStats;
    fn link_up(&self) -> bool {
        true
    }
    /// Driver-specific lines for `blink stat` (e.g. impairment counters).
    fn extra_stats(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
}

impl NetDevice for Box<dyn NetDevice> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn mac(&self) -> EthAddr {
        (**self).mac()
    }
    fn mtu(&self) -> usize {
        (**self).mtu()
    }
    fn nb_queues(&self) -> u16 {
        (**self).nb_queues()
    }
    fn features(&self) -> NetdevFeatures {
        (**self).features()
    }
    fn rx_burst(&mut self, queue: u16, out: &mut Burst) -> usize {
        (**self).rx_burst(queue, out)
    }
    fn tx_burst(&mut self, queue: u16, pkts: &mut Burst) -> usize {
        (**self).tx_burst(queue, pkts)
    }
    fn stats(&self) -> DevStats {
        (**self).stats()
    }
    fn link_up(&self) -> bool {
        (**self).link_up()
    }
    fn extra_stats(&self) -> Vec<(String, u64)> {
        (**self).extra_stats()
    }
}
