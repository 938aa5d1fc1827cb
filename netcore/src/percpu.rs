//! The per-core context: everything one core owns, passed explicitly as `&mut` down the
//! packet path (Seastar's per-core `engine`, Linux's per-CPU variables, without globals).
//!
//! Protocol layers embed a [`NetCore`] in their own per-core struct and add their tables; the
//! timer wheel lives beside it, typed by that outer struct, so timer callbacks receive the
//! whole core.

use crate::jiffies::Clock;
use crate::mbuf::{Mempool, MempoolCache};
use crate::rss::{Reta, Toeplitz};
use crate::skbuff::SkBuff;
use crate::snmp::{DropReason, Mib};

/// What every core has, whatever protocols run on it.
pub struct NetCore {
    /// Core id (the queue it polls in RSS mode).
    pub cpu: u16,
    pub clock: Clock,
    /// Kernel time: milliseconds since the clock started, refreshed once per poll.
    pub jiffies: u64,
    /// Nanoseconds since the clock started, refreshed once per poll.
    pub now_ns: u64,
    /// This core's buffer cache in front of the shared pool.
    pub cache: MempoolCache,
    /// This core's counters.
    pub mib: Mib,
    /// RSS: the hash and the redirection table that map flows to cores.
    pub toeplitz: Toeplitz,
    pub reta: Reta,
    /// Buffers of the pool in use, as of the last jiffy (see `update_time`): what memory
    /// pressure checks read on the packet path. Summing the pool's per-cache counts reads
    /// lines other cores write, so it is done once per jiffy, not per segment (Linux's
    /// `sk_memory_allocated` is a per-CPU batched approximation too).
    pub pool_in_use: usize,
    /// Cycle counter and clock at the last real clock read, and nanoseconds per cycle
    /// (fixed point, 32 fractional bits; 0 until measured) between two reads: the clocksource
    /// `mult` that turns cycles into time (see `update_time`).
    clock_cycles: u64,
    clock_ns: u64,
    ns_per_cycle_q32: u64,
}

/// Cycles (2^22: 1.4-4 ms at 1-3 GHz) after which a poll reads the real clock again rather
/// than extrapolating from the cycle counter: the bound on drift between the two, and the
/// interval over which nanoseconds per cycle are measured.
pub const CLOCK_REFRESH_CYCLES: u64 = 1 << 22;

/// The shortest interval, in cycles, that measures nanoseconds per cycle (shorter ones are
/// dominated by the cost of the reads themselves).
const CLOCK_CALIBRATE_MIN_CYCLES: u64 = 1 << 18;

impl NetCore {
    /// Linux: consume_skb() on this core: [`Mib::consume_skb`], the buffer returned through
    /// this core's cache (see `SkBuff::free_to`).
    #[inline]
    pub fn consume_skb(&mut self, skb: SkBuff) {
        if skb.trace {
            self.mib.trace_event(&skb, "consume_skb", "");
        }
        skb.free_to(&mut self.cache);
    }

    /// Linux: kfree_skb_reason() on this core: [`Mib::kfree_skb_reason`], the buffer returned
    /// through this core's cache.
    #[inline]
    #[track_caller]
    pub fn kfree_skb_reason(&mut self, skb: SkBuff, reason: DropReason) {
        self.mib.kfree_skb_note(&skb, reason);
        skb.free_to(&mut self.cache);
    }

    pub fn new(cpu: u16, nb_cores: u16, clock: Clock, pool: &Mempool) -> NetCore {
        let now_ns = clock.now_ns();
        let pool_in_use = pool.in_use();
        NetCore {
            pool_in_use,
            cpu,
            jiffies: now_ns / 1_000_000,
            now_ns,
            clock,
            cache: pool.cache(),
            mib: Mib::default(),
            toeplitz: Toeplitz::default(),
            reta: Reta::new(nb_cores.max(1)).expect("at least one core"),
            clock_cycles: crate::jiffies::cycles().unwrap_or(0),
            clock_ns: now_ns,
            ns_per_cycle_q32: 0,
        }
    }

    /// The core that owns the TCP/UDP flow whose packets arrive as `src:sport -> dst:dport`:
    /// its Toeplitz hash through the RETA, as the NIC (or the load balancer) steers it. The
    /// one place every "whose is this flow?" question is answered (connect's port choice, a
    /// segment with no socket, an ICMP error about a flow).
    #[inline]
    pub fn l4_owner(&self, src: std::net::Ipv4Addr, dst: std::net::Ipv4Addr, sport: u16, dport: u16) -> u16 {
        crate::rss::hash2cpu(
            &self.reta,
            self.toeplitz.hash_ipv4_l4(src.octets(), dst.octets(), sport, dport),
        )
    }

    /// Refresh `jiffies` and `now_ns` from the clock (once per poll, as the tick would).
    ///
    /// Reading the real clock (vDSO clock_gettime + Instant arithmetic) cost 2.5% of a crr
    /// run even once per 2^15 cycles (perf; it is slow in this kind of VM), and reading it
    /// every poll was 15% of a request/response transaction. So, as Linux's timekeeping
    /// does with its clocksource, time between real reads is the cycle counter scaled by
    /// nanoseconds per cycle (measured between two real reads); the real clock is read again
    /// after [`CLOCK_REFRESH_CYCLES`], which bounds the drift. Time never goes backwards: a
    /// real read behind the extrapolation holds the time until it catches up. The virtual
    /// clock of tests is always read.
    #[inline]
    pub fn update_time(&mut self) {
        if self.clock.is_monotonic() {
            if let Some(c) = crate::jiffies::cycles() {
                // A counter that went backwards (another core's) wraps to a large difference
                // and reads the clock.
                let d = c.wrapping_sub(self.clock_cycles);
                if d < CLOCK_REFRESH_CYCLES && self.ns_per_cycle_q32 != 0 {
                    let ns = self.clock_ns + ((d * self.ns_per_cycle_q32) >> 32);
                    self.set_now(ns);
                    return;
                }
                let ns = self.clock.now_ns();
                if self.ns_per_cycle_q32 == 0 && d < CLOCK_REFRESH_CYCLES {
                    // Not measured yet: keep the first read as the baseline until a full
                    // refresh interval has passed (re-basing on every poll of a busy loop would
                    // never let it grow, and calibration would wait for a preemption). The
                    // first measurement is taken as it is, so it spans the long interval: a
                    // read delayed by a few microseconds (a VM exit) skews a short one by %.
                    self.set_now(ns);
                    return;
                }
                if (CLOCK_CALIBRATE_MIN_CYCLES..=CLOCK_REFRESH_CYCLES << 4).contains(&d) && ns > self.clock_ns {
                    let q = u64::try_from((((ns - self.clock_ns) as u128) << 32) / d as u128).unwrap_or(u64::MAX);
                    self.ns_per_cycle_q32 = calibrate(self.ns_per_cycle_q32, q);
                }
                self.clock_cycles = c;
                self.clock_ns = ns;
                self.set_now(ns);
                return;
            }
        }
        let ns = self.clock.now_ns();
        self.set_now(ns);
    }

    /// Nanoseconds per cycle now in use (fixed point, 32 fractional bits; 0 until measured).
    pub fn ns_per_cycle_q32(&self) -> u64 {
        self.ns_per_cycle_q32
    }

    #[inline]
    fn set_now(&mut self, ns: u64) {
        // max: an extrapolation ahead of the next real read must not turn time back (the
        // virtual clock of tests may be set back; its time is taken as it is).
        self.now_ns = if self.clock.is_monotonic() {
            ns.max(self.now_ns)
        } else {
            ns
        };
        let jiffies = self.now_ns / 1_000_000;
        if jiffies != self.jiffies {
            self.pool_in_use = self.cache.pool().in_use();
        }
        self.jiffies = jiffies;
    }
}

/// Plausible nanoseconds per cycle, 32 fractional bits: counters from 500 MHz to 8 GHz.
const NS_PER_CYCLE_MIN_Q32: u64 = 1 << 29;
const NS_PER_CYCLE_MAX_Q32: u64 = 1 << 33;

/// The next nanoseconds-per-cycle from the one in use (`cur`, 0 for none yet) and a new
/// measurement `m`. A measurement is only as good as the interval it spans: a thread
/// descheduled (or a VM paused) between the two reads makes one far off. So `m` is held to a
/// plausible counter rate, then to half to twice `cur`, and moves `cur` a quarter of the way:
/// one bad interval shifts the rate by at most 25%, and real ones pull it back.
fn calibrate(cur: u64, m: u64) -> u64 {
    let m = m.clamp(NS_PER_CYCLE_MIN_Q32, NS_PER_CYCLE_MAX_Q32);
    if cur == 0 {
        return m;
    }
    let m = m.clamp(cur / 2, cur.saturating_mul(2));
    cur - cur / 4 + m / 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jiffies::VirtualClock;
    use crate::mbuf::MempoolConfig;

    fn pool() -> Mempool {
        Mempool::new(&MempoolConfig {
            n: 4,
            ..Default::default()
        })
        .unwrap()
    }

    /// A drop through the core is recorded at the caller's line (what `blink drops` shows),
    /// and its buffer goes back to the pool either way.
    #[test]
    fn core_frees_record_the_callers_site_and_return_the_buffer() {
        let p = pool();
        let mut core = NetCore::new(0, 1, Clock::virtual_clock(&VirtualClock::new()), &p);
        let skb = SkBuff::alloc(&mut core.cache).unwrap();
        core.kfree_skb_reason(skb, DropReason::NoMem);
        let line = line!() - 1;
        let skb = SkBuff::alloc(&mut core.cache).unwrap();
        core.consume_skb(skb);
        assert_eq!(core.mib.drop_sites.list(), vec![(file!(), line, DropReason::NoMem, 1)]);
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn virtual_time_is_seen_at_every_update() {
        let vc = VirtualClock::new();
        let mut core = NetCore::new(0, 1, Clock::virtual_clock(&vc), &pool());
        for ms in 1..=50u64 {
            vc.advance_ms(1);
            core.update_time();
            assert_eq!(core.jiffies, ms);
            assert_eq!(core.now_ns, ms * 1_000_000);
        }
    }

    #[test]
    fn real_time_never_goes_back_and_keeps_up() {
        let clock = Clock::monotonic();
        let mut core = NetCore::new(0, 1, clock.clone(), &pool());
        let mut last = core.now_ns;
        for _ in 0..100_000 {
            core.update_time();
            assert!(core.now_ns >= last);
            last = core.now_ns;
        }
        // After a real pause (more than CLOCK_REFRESH_CYCLES on any counter faster than
        // 420 MHz) the next update reads the clock again: at least the real time before the
        // pause plus the pause.
        let before = clock.now_ns();
        std::thread::sleep(std::time::Duration::from_millis(10));
        core.update_time();
        assert!(
            core.now_ns >= before + 10_000_000,
            "now {} before {before}",
            core.now_ns
        );
    }

    #[test]
    fn extrapolated_time_follows_the_real_clock() {
        let clock = Clock::monotonic();
        let mut core = NetCore::new(0, 1, clock.clone(), &pool());
        // Poll for 30 ms of real time: long enough for several real reads and measurements.
        while clock.now_ns() < 30_000_000 {
            core.update_time();
        }
        if cfg!(target_arch = "x86_64") {
            assert_ne!(core.ns_per_cycle_q32(), 0, "the cycle counter was never measured");
        }
        // Between real reads (at most CLOCK_REFRESH_CYCLES apart) the extrapolation may run
        // behind or ahead; a few milliseconds bounds either on any machine this runs on.
        // Real reads on both sides, so a preemption of this thread (a loaded CI machine) widens
        // the window instead of failing the test.
        let before = clock.now_ns();
        core.update_time();
        let (mine, after) = (core.now_ns, clock.now_ns());
        assert!(
            mine + 10_000_000 > before && mine < after + 10_000_000,
            "stack time {mine} ns, clock {before}..{after} ns"
        );
    }

    #[test]
    fn a_bad_measurement_moves_the_rate_a_little() {
        let ghz3 = (1u64 << 32) / 3; // 0.33 ns per cycle
        assert_eq!(calibrate(0, ghz3), ghz3, "the first measurement is taken as it is");
        assert_eq!(calibrate(0, 1), NS_PER_CYCLE_MIN_Q32, "an implausible rate is clamped");
        assert_eq!(calibrate(0, u64::MAX), NS_PER_CYCLE_MAX_Q32);
        // A pause between two reads (a measurement 1000x too slow) moves the rate by 25%.
        let after = calibrate(ghz3, ghz3 * 1000);
        assert_eq!(after, ghz3 - ghz3 / 4 + (ghz3 * 2) / 4);
        // Good measurements pull it back.
        let mut q = after;
        for _ in 0..40 {
            q = calibrate(q, ghz3);
        }
        assert!(q.abs_diff(ghz3) < ghz3 / 1000);
    }
}
