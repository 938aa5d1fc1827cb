//! blink's FFI to the system DPDK (22.11, `libdpdk-dev`), found with pkg-config.
//!
//! Bindings for EAL, ethdev, mbuf, mempool and ring come from bindgen (`bindings.rs`); DPDK's
//! static-inline fast-path functions (rx/tx burst, mbuf alloc/free/refcount, ring burst
//! enqueue/dequeue, lcore id, errno) are reached through `blink_*` wrappers in `shim.c`.
//! The crates.io `dpdk-sys` targets DPDK 18.05 and does not build against 22.11, hence this one.
//!
//! A few `RTE_*` flags are macros bindgen cannot evaluate (`RTE_BIT64(n)`); they are mirrored
//! below and checked against the headers by `_Static_assert`s in shim.c at build time.

//! Without the `enabled` feature (which `blink-netcore/dpdk` turns on) the crate is empty and
//! needs no DPDK.

#[cfg(feature = "enabled")]
mod ffi {
    #![allow(non_upper_case_globals, non_camel_case_types, non_snake_case, dead_code)]
    #![allow(clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}
#[cfg(feature = "enabled")]
pub use ffi::*;

pub const RTE_ETH_RX_OFFLOAD_IPV4_CKSUM: u64 = 1 << 1;
pub const RTE_ETH_RX_OFFLOAD_UDP_CKSUM: u64 = 1 << 2;
pub const RTE_ETH_RX_OFFLOAD_TCP_CKSUM: u64 = 1 << 3;
pub const RTE_ETH_RX_OFFLOAD_RSS_HASH: u64 = 1 << 19;
pub const RTE_ETH_TX_OFFLOAD_IPV4_CKSUM: u64 = 1 << 1;
pub const RTE_ETH_TX_OFFLOAD_UDP_CKSUM: u64 = 1 << 2;
pub const RTE_ETH_TX_OFFLOAD_TCP_CKSUM: u64 = 1 << 3;
pub const RTE_ETH_TX_OFFLOAD_TCP_TSO: u64 = 1 << 5;
pub const RTE_ETH_TX_OFFLOAD_MULTI_SEGS: u64 = 1 << 15;

pub const RTE_ETH_RSS_IPV4: u64 = 1 << 2;
pub const RTE_ETH_RSS_FRAG_IPV4: u64 = 1 << 3;
pub const RTE_ETH_RSS_NONFRAG_IPV4_TCP: u64 = 1 << 4;
pub const RTE_ETH_RSS_NONFRAG_IPV4_UDP: u64 = 1 << 5;
pub const RTE_ETH_RSS_NONFRAG_IPV4_OTHER: u64 = 1 << 7;

pub const RTE_MBUF_F_RX_RSS_HASH: u64 = 1 << 1;
pub const RTE_MBUF_F_RX_IP_CKSUM_MASK: u64 = (1 << 4) | (1 << 7);
pub const RTE_MBUF_F_RX_IP_CKSUM_GOOD: u64 = 1 << 7;
pub const RTE_MBUF_F_RX_IP_CKSUM_BAD: u64 = 1 << 4;
pub const RTE_MBUF_F_RX_L4_CKSUM_MASK: u64 = (1 << 3) | (1 << 8);
pub const RTE_MBUF_F_RX_L4_CKSUM_GOOD: u64 = 1 << 8;
pub const RTE_MBUF_F_RX_L4_CKSUM_BAD: u64 = 1 << 3;
pub const RTE_MBUF_F_TX_TCP_CKSUM: u64 = 1 << 52;
pub const RTE_MBUF_F_TX_UDP_CKSUM: u64 = 3 << 52;
pub const RTE_MBUF_F_TX_IP_CKSUM: u64 = 1 << 54;
pub const RTE_MBUF_F_TX_IPV4: u64 = 1 << 55;

/// `sizeof(struct rte_mbuf)`: the private area starts right after it.
pub const RTE_MBUF_SIZE: usize = 128;

#[cfg(all(test, feature = "enabled"))]
mod tests {
    use super::*;

    #[test]
    fn mbuf_layout_matches_headers() {
        // SAFETY: a pure function returning sizeof(struct rte_mbuf).
        assert_eq!(unsafe { blink_rte_mbuf_priv_offset() } as usize, RTE_MBUF_SIZE);
        assert_eq!(std::mem::size_of::<rte_mbuf>(), RTE_MBUF_SIZE);
    }

    #[test]
    fn links_and_reports_version() {
        // SAFETY: rte_version returns a static string and needs no EAL.
        let v = unsafe { std::ffi::CStr::from_ptr(rte_version()) };
        assert!(v.to_string_lossy().contains("22.11"), "{v:?}");
    }
}
