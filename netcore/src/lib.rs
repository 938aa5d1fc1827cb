//! blink's kernel core: what `net/core` and friends are to Linux.
//!
//! - [`mbuf`]: packet buffers (`Mempool`, `Mbuf`), [`skbuff`]: `SkBuff` over mbufs.
//! - [`jiffies`] and [`timer`]: kernel time and timers on a hierarchical wheel per core.
//! - [`netdevice`] and [`drivers`]: the device interface, the in-memory wire, TAP, impairment.
//! - [`rss`]: Toeplitz hashing and the redirection table; [`ring`]: rings between cores.
//! - [`pcap`]: captures at device boundaries; [`snmp`]: MIB counters and drop reasons.
//! - [`checksum`] and [`if_ether`]: the Internet checksum and the Ethernet header view.
//! - [`percpu`]: the per-core context the protocol layers build on.

pub mod checksum;
pub mod drivers;
pub mod if_ether;
pub mod jiffies;
pub mod mbuf;
pub mod netdevice;
pub mod pcap;
pub mod percpu;
pub mod ring;
pub mod rss;
pub mod skbuff;
pub mod snmp;
pub mod sock;
pub mod stack_lf;
pub mod timer;
pub mod trace;

/// Small tests of every `unsafe` block for Miri (`cargo +nightly miri test -p blink-netcore --lib miri_tests`).
#[cfg(test)]
mod miri_tests;

pub use if_ether::EthAddr;
pub use mbuf::{Mbuf, Mempool, MempoolCache, MempoolConfig};
pub use skbuff::{SkBuff, SkBuffHead};
