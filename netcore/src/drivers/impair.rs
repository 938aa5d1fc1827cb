//! Seeded fault injection around any driver: loss, duplication, reordering, corruption and
//! delay, in both directions (`--impair loss=0.05,reorder=0.1,dup=0.01,corrupt=0.001,delay=1ms`).
//!
//! This VM's kernel has no netem, and the in-memory wire needs the same faults, so blink
//! brings its own: a wrapper that applies them to every frame a device sends or receives.
//! A seed makes every run repeatable; it is printed so a failing run can be replayed.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

use crate::if_ether::EthAddr;
use crate::jiffies::Clock;
use crate::mbuf::MempoolCache;
use crate::netdevice::{Burst, DevStats, NetDevice, NetdevFeatures};
use crate::skbuff::{IpSummed, SkBuff};

/// Probabilities (0..=1) and delay of the injected faults.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ImpairConfig {
    pub loss: f64,
    pub reorder: f64,
    pub dup: f64,
    pub corrupt: f64,
    pub delay_ms: u64,
    pub seed: u64,
}

impl ImpairConfig {
    pub fn is_noop(&self) -> bool {
        self.loss == 0.0 && self.reorder == 0.0 && self.dup == 0.0 && self.corrupt == 0.0 && self.delay_ms == 0
    }
}

/// A bad `--impair` specification, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--impair: field `{field}`: {msg}")]
pub struct ImpairError {
    pub field: String,
    pub msg: String,
}

impl FromStr for ImpairConfig {
    type Err = ImpairError;

    /// `loss=P,reorder=P,dup=P,corrupt=P,delay=MS,seed=N`; P is a fraction (0.05) or a
    /// percentage (5%); delay takes an optional `ms` suffix.
    fn from_str(s: &str) -> Result<Self, ImpairError> {
        let mut c = ImpairConfig {
            seed: 1,
            ..Default::default()
        };
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let err = |f: &str, m: &str| ImpairError {
                field: f.to_string(),
                msg: m.to_string(),
            };
            let (k, v) = item.split_once('=').ok_or_else(|| err(item, "expected key=value"))?;
            let prob = |v: &str| -> Result<f64, ImpairError> {
                let (num, scale) = match v.strip_suffix('%') {
                    Some(n) => (n, 100.0),
                    None => (v, 1.0),
                };
                let p: f64 = num.parse().map_err(|_| err(k, &format!("`{v}` is not a number")))?;
                let p = p / scale;
                if !(0.0..=1.0).contains(&p) {
                    return Err(err(k, &format!("`{v}` must be between 0 and 1 (or 0% and 100%)")));
                }
                Ok(p)
            };
            match k {
                "loss" => c.loss = prob(v)?,
                "reorder" => c.reorder = prob(v)?,
                "dup" => c.dup = prob(v)?,
                "corrupt" => c.corrupt = prob(v)?,
                "delay" => {
                    let n = v.strip_suffix("ms").unwrap_or(v);
                    c.delay_ms = n
                        .parse()
                        .map_err(|_| err(k, &format!("`{v}` is not a number of milliseconds")))?;
                }
                "seed" => c.seed = v.parse().map_err(|_| err(k, &format!("`{v}` is not an integer")))?,
                _ => {
                    return Err(err(
                        k,
                        "unknown field (expected loss, reorder, dup, corrupt, delay or seed)",
                    ))
                }
            }
        }
        Ok(c)
    }
}

impl fmt::Display for ImpairConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "loss={},reorder={},dup={},corrupt={},delay={}ms,seed={}",
            self.loss, self.reorder, self.dup, self.corrupt, self.delay_ms, self.seed
        )
    }
}

/// What the impairment did, per direction summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImpairStats {
    pub passed: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub corrupted: u64,
    pub delayed: u64,
    /// Copies for dup/corrupt that failed for lack of mbufs (the frame went through unharmed).
    pub nomem: u64,
}

/// xorshift64*: small, fast and good enough for fault injection.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// True with probability p.
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// One direction's pipeline state.
#[derive(Default)]
struct Lane {
    /// Frames held back by `delay`, with their release time (ns).
    delayed: VecDeque<(u64, SkBuff)>,
    /// A frame held back to be overtaken by the next one (reordering).
    held: Option<SkBuff>,
}

/// A device wrapped in seeded faults.
pub struct Impair<D: NetDevice> {
    inner: D,
    cfg: ImpairConfig,
    rng: Rng,
    clock: Clock,
    cache: MempoolCache,
    rx: Lane,
    tx: Lane,
    stats: ImpairStats,
    scratch: Burst,
}

impl<D: NetDevice> Impair<D> {
    /// Wrap `inner`. `cache` supplies buffers for duplicated and corrupted copies; `clock`
    /// times the delay.
    pub fn new(inner: D, cfg: ImpairConfig, clock: Clock, cache: MempoolCache) -> Impair<D> {
        Impair {
            inner,
            rng: Rng::new(cfg.seed),
            cfg,
            clock,
            cache,
            rx: Lane::default(),
            tx: Lane::default(),
            stats: ImpairStats::default(),
            scratch: Burst::new(),
        }
    }

    pub fn impair_stats(&self) -> ImpairStats {
        self.stats
    }

    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// Apply loss, corruption, duplication and reordering to `skb`, pushing survivors into
    /// the lane's delay queue (release time `now + delay`).
    fn shape(&mut self, skb: SkBuff, tx: bool, now: u64) {
        let cfg = self.cfg;
        if self.rng.chance(cfg.loss) {
            self.stats.lost += 1;
            return;
        }
        let mut skb = skb;
        if self.rng.chance(cfg.corrupt) {
            // Corrupt a private copy: the original buffers may be shared (retransmit clones).
            match skb.skb_copy(&mut self.cache) {
                Some(mut c) => {
                    let len = c.len();
                    if len > 0 {
                        let byte = (self.rng.next() % len as u64) as usize;
                        let bit = (self.rng.next() % 8) as u8;
                        if let Some(d) = c.data_mut() {
                            d[byte] ^= 1 << bit;
                        }
                    }
                    // A device's "checksum verified" no longer holds for the damaged copy
                    // (DPDK rx offload): software must check it again and drop it.
                    if c.ip_summed == IpSummed::Unnecessary {
                        c.ip_summed = IpSummed::None;
                    }
                    skb = c;
                    self.stats.corrupted += 1;
                }
                None => self.stats.nomem += 1,
            }
        }
        let dup = if self.rng.chance(cfg.dup) {
            match skb.skb_copy(&mut self.cache) {
                Some(c) => {
                    self.stats.duplicated += 1;
                    Some(c)
                }
                None => {
                    self.stats.nomem += 1;
                    None
                }
            }
        } else {
            None
        };
        let release = now + cfg.delay_ms * 1_000_000;
        if cfg.delay_ms > 0 {
            self.stats.delayed += 1;
        }
        let lane = if tx { &mut self.tx } else { &mut self.rx };
        let reorder = self.rng.chance(cfg.reorder);
        for s in std::iter::once(skb).chain(dup) {
            if reorder && lane.held.is_none() {
                // Held until the next frame of this lane overtakes it.
                lane.held = Some(s);
                self.stats.reordered += 1;
                continue;
            }
            lane.delayed.push_back((release, s));
            if let Some(h) = lane.held.take() {
                lane.delayed.push_back((release, h));
            }
        }
        self.stats.passed += 1;
    }

    /// Move frames whose time has come from a lane into `out` (a held frame that nothing
    /// overtook by the next poll is released too, so reordering never stalls a flow).
    fn release(lane: &mut Lane, now: u64, out: &mut Burst, flush_held: bool) {
        if flush_held {
            if let Some(h) = lane.held.take() {
                lane.delayed.push_back((now, h));
            }
        }
        while !out.is_full() {
            match lane.delayed.front() {
                Some((t, _)) if *t <= now => {
                    let (_, s) = lane.delayed.pop_front().expect("front exists");
                    out.push(s);
                }
                _ => break,
            }
        }
    }

    fn flush_tx(&mut self, queue: u16, now: u64) {
        let mut out = std::mem::take(&mut self.scratch);
        loop {
            Self::release(&mut self.tx, now, &mut out, false);
            if out.is_empty() {
                break;
            }
            self.inner.tx_burst(queue, &mut out);
            if !out.is_empty() {
                // What the device refused goes back to the front of the lane, in order.
                while let Some(s) = out.pop() {
                    self.tx.delayed.push_front((now, s));
                }
                break;
            }
        }
        self.scratch = out;
    }
}

impl<D: NetDevice> NetDevice for Impair<D> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn mac(&self) -> EthAddr {
        self.inner.mac()
    }
    fn mtu(&self) -> usize {
        self.inner.mtu()
    }
    fn nb_queues(&self) -> u16 {
        self.inner.nb_queues()
    }
    /// The inner device's features without transmit checksum offload: corruption models the
    /// wire, after the checksum, so outgoing checksums must be complete before a frame can be
    /// corrupted here (a NIC filling them later would bless the damage).
    fn features(&self) -> NetdevFeatures {
        self.inner
            .features()
            .without(NetdevFeatures::TXCSUM_IPV4)
            .without(NetdevFeatures::TXCSUM_TCP)
            .without(NetdevFeatures::TXCSUM_UDP)
    }

    fn rx_burst(&mut self, queue: u16, out: &mut Burst) -> usize {
        let now = self.clock.now_ns();
        // Delayed or held transmit frames go out on every poll, even when nothing is sent.
        let tx_held = self.tx.held.take();
        if let Some(h) = tx_held {
            self.tx.delayed.push_back((now, h));
        }
        self.flush_tx(queue, now);

        let mut got = std::mem::take(&mut self.scratch);
        self.inner.rx_burst(queue, &mut got);
        for s in got.drain(..) {
            self.shape(s, false, now);
        }
        self.scratch = got;
        let before = out.len();
        Self::release(&mut self.rx, now, out, true);
        out.len() - before
    }

    fn tx_burst(&mut self, queue: u16, pkts: &mut Burst) -> usize {
        let now = self.clock.now_ns();
        let n = pkts.len();
        for s in pkts.drain(..) {
            self.shape(s, true, now);
        }
        self.flush_tx(queue, now);
        // Every frame was accepted into the impairment pipeline (lost ones count as sent, as
        // on a real lossy link).
        n
    }

    fn stats(&self) -> DevStats {
        self.inner.stats()
    }

    fn link_up(&self) -> bool {
        self.inner.link_up()
    }

    fn extra_stats(&self) -> Vec<(String, u64)> {
        let s = self.stats;
        let mut v = self.inner.extra_stats();
        v.extend([
            ("impair.passed".to_string(), s.passed),
            ("impair.lost".to_string(), s.lost),
            ("impair.duplicated".to_string(), s.duplicated),
            ("impair.reordered".to_string(), s.reordered),
            ("impair.corrupted".to_string(), s.corrupted),
            ("impair.delayed".to_string(), s.delayed),
            ("impair.nomem".to_string(), s.nomem),
        ]);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::wire::{wire_pair, WireConfig, WireDev};
    use crate::jiffies::VirtualClock;
    use crate::mbuf::{Mempool, MempoolConfig};

    #[test]
    fn parse_spec() {
        let c: ImpairConfig = "loss=0.05,reorder=10%,dup=0.01,corrupt=0.001,delay=1ms,seed=7"
            .parse()
            .unwrap();
        assert_eq!(c.loss, 0.05);
        assert!((c.reorder - 0.1).abs() < 1e-12);
        assert_eq!(c.delay_ms, 1);
        assert_eq!(c.seed, 7);
        let e = "loss=2".parse::<ImpairConfig>().unwrap_err();
        assert!(e.to_string().contains("`loss`"), "{e}");
        let e = "jitter=1".parse::<ImpairConfig>().unwrap_err();
        assert!(e.to_string().contains("`jitter`"), "{e}");
        let e = "delay=abc".parse::<ImpairConfig>().unwrap_err();
        assert!(e.to_string().contains("`delay`"), "{e}");
    }

    fn setup(cfg: ImpairConfig, n: usize) -> (Mempool, VirtualClock, Impair<WireDev>, WireDev) {
        let p = Mempool::new(&MempoolConfig {
            n,
            ..Default::default()
        })
        .unwrap();
        let vc = VirtualClock::new();
        let (a, b) = wire_pair(
            ("a", "b"),
            (EthAddr([2, 0, 0, 0, 0, 1]), EthAddr([2, 0, 0, 0, 0, 2])),
            &WireConfig::default(),
        );
        let imp = Impair::new(a, cfg, Clock::virtual_clock(&vc), p.cache());
        (p, vc, imp, b)
    }

    fn send(imp: &mut Impair<WireDev>, c: &mut MempoolCache, n: u32) {
        for i in 0..n {
            let mut b = Burst::new();
            b.push(SkBuff::from_slice(c, &i.to_be_bytes()).unwrap());
            imp.tx_burst(0, &mut b);
        }
    }

    fn recv_all(b: &mut WireDev) -> Vec<u32> {
        let mut v = Vec::new();
        loop {
            let mut got = Burst::new();
            if b.rx_burst(0, &mut got) == 0 {
                return v;
            }
            for s in got {
                let d = s.data();
                v.push(u32::from_be_bytes([d[0], d[1], d[2], d[3]]));
            }
        }
    }

    #[test]
    fn loss_rate_is_close_and_seeded() {
        let cfg = ImpairConfig {
            loss: 0.2,
            seed: 42,
            ..Default::default()
        };
        let (p, _vc, mut imp, mut b) = setup(cfg, 8192);
        let mut c = p.cache();
        send(&mut imp, &mut c, 5000);
        let got = recv_all(&mut b);
        let lost = 5000 - got.len();
        assert!((800..1200).contains(&lost), "lost {lost} of 5000 at 20%");
        assert_eq!(imp.impair_stats().lost as usize, lost);
        // Same seed, same losses.
        let (p2, _vc2, mut imp2, mut b2) = setup(cfg, 8192);
        let mut c2 = p2.cache();
        send(&mut imp2, &mut c2, 5000);
        assert_eq!(recv_all(&mut b2), got);
        drop((imp, imp2, c, c2));
        assert_eq!(p.in_use(), 0);
        assert_eq!(p2.in_use(), 0);
    }

    #[test]
    fn corruption_voids_the_devices_checksum_verdict() {
        let cfg = ImpairConfig {
            corrupt: 1.0,
            seed: 5,
            ..Default::default()
        };
        let (p, _vc, mut imp, _b) = setup(cfg, 64);
        let mut c = p.cache();
        let mut skb = SkBuff::from_slice(&mut c, &[0u8; 64]).unwrap();
        skb.ip_summed = IpSummed::Unnecessary;
        imp.shape(skb, false, 0);
        let mut got = Burst::new();
        imp.rx_burst(0, &mut got);
        assert_eq!(got.len(), 1);
        assert_eq!(imp.impair_stats().corrupted, 1);
        assert_eq!(got[0].ip_summed, IpSummed::None);
        drop((got, imp, c));
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn dup_reorder_corrupt_delay() {
        let cfg = ImpairConfig {
            dup: 0.1,
            reorder: 0.1,
            corrupt: 0.05,
            delay_ms: 5,
            seed: 3,
            ..Default::default()
        };
        let (p, vc, mut imp, mut b) = setup(cfg, 8192);
        let mut c = p.cache();
        send(&mut imp, &mut c, 1000);
        assert!(recv_all(&mut b).is_empty(), "nothing arrives before the delay");
        vc.advance_ms(5);
        let mut none = Burst::new();
        imp.rx_burst(0, &mut none);
        let got = recv_all(&mut b);
        let s = imp.impair_stats();
        assert!(s.duplicated > 50 && s.reordered > 50 && s.corrupted > 20, "{s:?}");
        assert_eq!(got.len() as u64, 1000 + s.duplicated);
        let out_of_order = got.windows(2).filter(|w| w[1] < w[0]).count();
        assert!(out_of_order > 0);
        drop((imp, c, b));
        assert_eq!(p.in_use(), 0);
    }
}
