//! The per-core context: everything one core owns, passed explicitly as `&mut` down the
//! packet path (Seastar's per-core `engine`, Linux's per-CPU variables, without globals).
//!
//! Protocol layers embed a [`NetCore`] in their own per-core struct and add their tables; the
//! timer wheel lives beside it, typed by that outer struct, so timer callbacks receive the
//! whole core.

use crate::jiffies::Clock;
use crate::mbuf::{Mempool, MempoolCache};
use crate::rss::{Reta, Toeplitz};
use crate::snmp::Mib;

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
    /// Cycle counter at the last real clock read (see `update_time`).
    clock_cycles: u64,
}

/// Cycles (2^15: 10-30 us at 1-3 GHz) within which a poll reuses the last clock read.
pub const CLOCK_REFRESH_CYCLES: u64 = 1 << 15;

impl NetCore {
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
    /// Reading the real clock costs ~26 ns here (vDSO clock_gettime + Instant arithmetic),
    /// which was 15% of a request/response transaction polling both stacks a dozen times.
    /// So a poll that comes within [`CLOCK_REFRESH_CYCLES`] cycles of the last read keeps
    /// the time it has (a cycle-counter read costs ~10 ns): time then moves in steps of
    /// ~10 us, far below a jiffy. The virtual clock of tests is always read.
    #[inline]
    pub fn update_time(&mut self) {
        if self.clock.is_monotonic() {
            if let Some(c) = crate::jiffies::cycles() {
                // A counter that went backwards (another core's) wraps to a large difference
                // and refreshes too.
                if c.wrapping_sub(self.clock_cycles) < CLOCK_REFRESH_CYCLES {
                    return;
                }
                self.clock_cycles = c;
            }
        }
        self.now_ns = self.clock.now_ns();
        let jiffies = self.now_ns / 1_000_000;
        if jiffies != self.jiffies {
            self.pool_in_use = self.cache.pool().in_use();
        }
        self.jiffies = jiffies;
    }
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
        let mut core = NetCore::new(0, 1, Clock::monotonic(), &pool());
        let mut last = core.now_ns;
        for _ in 0..100_000 {
            core.update_time();
            assert!(core.now_ns >= last);
            last = core.now_ns;
        }
        // After a real pause (millions of cycles) the next update reads the clock again.
        std::thread::sleep(std::time::Duration::from_millis(3));
        core.update_time();
        assert!(core.now_ns >= last + 3_000_000);
    }
}
