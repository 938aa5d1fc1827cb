//! Time base: jiffies and the clocks that drive them.
//!
//! Linux: include/linux/jiffies.h and kernel/time/jiffies.c.
//!
//! blink's jiffies are `u64` milliseconds (`HZ = 1000`) since the clock's start. They are read
//! once per poll-loop iteration from a [`Clock`], never from a global: a real stack uses
//! [`Clock::monotonic`], tests use a [`VirtualClock`] they advance explicitly, so every timer
//! decision is deterministic under test. A `u64` of milliseconds does not wrap for 584 million
//! years, so the kernel's wraparound-safe comparisons become plain comparisons; they keep their
//! kernel names so ported code reads the same.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Jiffies per second.
///
/// Linux: `CONFIG_HZ` (include/asm-generic/param.h). 1000 makes one jiffy one millisecond,
/// which is also the tick of the timer wheel.
pub const HZ: u64 = 1000;

const NSEC_PER_JIFFY: u64 = 1_000_000_000 / HZ;
const MSEC_PER_SEC: u64 = 1000;

/// A manually driven clock for deterministic tests.
///
/// Cloning gives another handle on the same time, so a test can keep one handle and give
/// another to the stack (possibly on another thread) through [`Clock::virtual_clock`].
#[derive(Clone, Debug, Default)]
pub struct VirtualClock {
    ns: Arc<AtomicU64>,
}

impl VirtualClock {
    /// A clock at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Move time forward by `d` (saturating at `u64::MAX` nanoseconds).
    pub fn advance(&self, d: Duration) {
        let add = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.add_ns(add);
    }

    /// Move time forward by `ms` milliseconds, i.e. `ms` jiffies at `HZ = 1000`.
    pub fn advance_ms(&self, ms: u64) {
        self.add_ns(ms.saturating_mul(1_000_000));
    }

    /// Set the time to `ns` nanoseconds since the start. Tests may move time backwards with
    /// this; the stack itself never does.
    pub fn set_ns(&self, ns: u64) {
        self.ns.store(ns, Ordering::Release);
    }

    /// Nanoseconds since the start.
    pub fn now_ns(&self) -> u64 {
        self.ns.load(Ordering::Acquire)
    }

    fn add_ns(&self, add: u64) {
        // fetch_update rather than fetch_add so a huge advance saturates instead of wrapping.
        let _ = self
            .ns
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |ns| Some(ns.saturating_add(add)));
    }
}

/// Where a core reads the time from.
///
/// Linux: the clocksource that `do_timer()` (kernel/time/timekeeping.c) turns into jiffies.
#[derive(Clone, Debug)]
pub enum Clock {
    /// Real time: `std::time::Instant` (CLOCK_MONOTONIC) since `start`.
    Monotonic {
        /// Time zero of this clock.
        start: Instant,
    },
    /// Test time, moved only by the test.
    Virtual(VirtualClock),
}

impl Clock {
    /// A monotonic clock starting now.
    pub fn monotonic() -> Self {
        Clock::Monotonic { start: Instant::now() }
    }

    /// A clock that reads (a shared handle on) `vc`.
    pub fn virtual_clock(vc: &VirtualClock) -> Self {
        Clock::Virtual(vc.clone())
    }

    /// Nanoseconds since the clock's start.
    pub fn now_ns(&self) -> u64 {
        match self {
            Clock::Monotonic { start } => u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX),
            Clock::Virtual(vc) => vc.now_ns(),
        }
    }

    /// True for the real clock, whose reads cost a system-call-like vDSO call (the virtual
    /// clock of tests is a plain load and moves only when the test says so).
    pub fn is_monotonic(&self) -> bool {
        matches!(self, Clock::Monotonic { .. })
    }

    /// The current jiffy: whole milliseconds since the clock's start.
    ///
    /// Linux: `jiffies` (include/linux/jiffies.h), here read rather than a global.
    pub fn jiffies(&self) -> u64 {
        self.now_ns() / NSEC_PER_JIFFY
    }

    /// Time since the clock's start.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.now_ns())
    }
}

/// A free-running CPU cycle counter (x86's TSC, DPDK's `rte_rdtsc()`), or None where there is
/// none. Only differences of nearby reads on one core are meaningful; the poll loop uses it to
/// decide whether enough time may have passed to be worth reading the real clock.
#[inline]
pub fn cycles() -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no preconditions and exists on every x86_64 CPU; it only reads
        // the time-stamp counter.
        Some(unsafe { core::arch::x86_64::_rdtsc() })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// Milliseconds to jiffies, rounding up as the kernel does (exact at `HZ = 1000`).
///
/// Linux: msecs_to_jiffies() in include/linux/jiffies.h.
pub const fn msecs_to_jiffies(m: u64) -> u64 {
    if HZ == MSEC_PER_SEC {
        m
    } else {
        m.saturating_mul(HZ).div_ceil(MSEC_PER_SEC)
    }
}

/// Jiffies to milliseconds.
///
/// Linux: jiffies_to_msecs() in kernel/time/time.c.
pub const fn jiffies_to_msecs(j: u64) -> u64 {
    if HZ == MSEC_PER_SEC {
        j
    } else {
        j.saturating_mul(MSEC_PER_SEC) / HZ
    }
}

/// `true` if `a` is after `b`.
///
/// Linux: time_after() in include/linux/jiffies.h (wraparound-safe there; u64 jiffies here do
/// not wrap).
pub const fn time_after(a: u64, b: u64) -> bool {
    a > b
}

/// `true` if `a` is before `b`.
///
/// Linux: time_before() in include/linux/jiffies.h.
pub const fn time_before(a: u64, b: u64) -> bool {
    a < b
}

/// `true` if `a` is after or equal to `b`.
///
/// Linux: time_after_eq() in include/linux/jiffies.h.
pub const fn time_after_eq(a: u64, b: u64) -> bool {
    a >= b
}

/// `true` if `a` is before or equal to `b`.
///
/// Linux: time_before_eq() in include/linux/jiffies.h.
pub const fn time_before_eq(a: u64, b: u64) -> bool {
    a <= b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_clock_is_shared_between_handles() {
        let vc = VirtualClock::new();
        let clock = Clock::virtual_clock(&vc);
        assert_eq!(clock.jiffies(), 0);
        vc.advance_ms(5);
        assert_eq!(clock.jiffies(), 5);
        assert_eq!(clock.now_ns(), 5_000_000);
        let other = vc.clone();
        other.advance(Duration::from_micros(999));
        assert_eq!(clock.jiffies(), 5, "sub-jiffy time truncates");
        other.advance(Duration::from_micros(1));
        assert_eq!(clock.jiffies(), 6);
        assert_eq!(clock.elapsed(), Duration::from_millis(6));
        vc.set_ns(3 * NSEC_PER_JIFFY + 1);
        assert_eq!(clock.jiffies(), 3);
    }

    #[test]
    fn virtual_clock_saturates() {
        let vc = VirtualClock::new();
        vc.set_ns(u64::MAX - 1);
        vc.advance(Duration::from_secs(1));
        assert_eq!(vc.now_ns(), u64::MAX);
        vc.advance_ms(u64::MAX);
        assert_eq!(vc.now_ns(), u64::MAX);
    }

    #[test]
    fn monotonic_clock_does_not_go_backwards() {
        let clock = Clock::monotonic();
        let a = clock.now_ns();
        let b = clock.now_ns();
        assert!(b >= a);
        assert!(clock.jiffies() <= clock.now_ns() / NSEC_PER_JIFFY);
    }

    #[test]
    fn conversions_and_comparisons() {
        assert_eq!(msecs_to_jiffies(0), 0);
        assert_eq!(msecs_to_jiffies(200), 200);
        assert_eq!(jiffies_to_msecs(1500), 1500);
        assert_eq!(msecs_to_jiffies(u64::MAX), u64::MAX);
        assert_eq!(jiffies_to_msecs(u64::MAX), u64::MAX);
        assert!(time_after(2, 1));
        assert!(!time_after(1, 1));
        assert!(time_before(1, 2));
        assert!(!time_before(2, 2));
        assert!(time_after_eq(2, 2));
        assert!(time_before_eq(2, 2));
    }
}
