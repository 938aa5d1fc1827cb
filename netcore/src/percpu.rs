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
}

impl NetCore {
    pub fn new(cpu: u16, nb_cores: u16, clock: Clock, pool: &Mempool) -> NetCore {
        let now_ns = clock.now_ns();
        NetCore {
            cpu,
            jiffies: now_ns / 1_000_000,
            now_ns,
            clock,
            cache: pool.cache(),
            mib: Mib::default(),
            toeplitz: Toeplitz::default(),
            reta: Reta::new(nb_cores.max(1)).expect("at least one core"),
        }
    }

    /// Refresh `jiffies` and `now_ns` from the clock (once per poll, as the tick would).
    #[inline]
    pub fn update_time(&mut self) {
        self.now_ns = self.clock.now_ns();
        self.jiffies = self.now_ns / 1_000_000;
    }
}
