//! Device drivers: the in-memory wire, Linux TAP, DPDK (feature `dpdk`), and the impairment
//! wrapper for any of them.

#[cfg(feature = "dpdk")]
pub mod dpdk;

pub mod impair;
pub mod tap;
pub mod wire;
