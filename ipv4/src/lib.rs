//! blink's IPv4 layer: what net/ipv4 (minus TCP/UDP) is to Linux.
//!
//! - [`stack`]: the per-core [`Stack`] (devices, addresses, protocol registry, poll loop).
//! - [`inbox`]: the per-core inboxes through which cores hand each other frames (RPS),
//!   neighbours and application messages.
//! - [`dev`]: Ethernet receive demux (`netif_receive_skb`) and `dev_queue_xmit`.
//! - [`arp`] and [`neighbour`]: ARP and the neighbour table with NUD states.
//! - [`ip_input`] and [`ip_output`]: `ip_rcv` .. `ip_local_deliver`, `ip_build_and_send_pkt`.
//! - [`ip_options`]: the checks a received packet's IP options must pass.
//! - [`ip_defrag`]: reassembly queues, and the re-hash that sends a reassembled datagram to
//!   the core owning its flow.
//! - [`ip_exception`]: the exception path's classifier (which frames the kernel that shares
//!   the NIC gets) and its hook.
//! - [`dst`]: the route a socket caches (`sk_dst_cache`): one FIB and one neighbour lookup
//!   per flow, not per packet.
//! - [`route`]: the FIB (longest-prefix match, default gateway).
//! - [`icmp`]: echo, errors, rate limiting.
//! - Header views, parsed once and reused everywhere: [`arphdr`], [`iphdr`], [`icmphdr`].

pub mod arp;
pub mod arphdr;
pub mod dev;
pub mod dst;
pub mod icmp;
pub mod icmphdr;
pub mod inbox;
pub mod ip_defrag;
pub mod ip_exception;
pub mod ip_fragment;
pub mod ip_input;
pub mod ip_options;
pub mod ip_output;
pub mod ip_tunnel;
pub mod iphdr;
pub mod neighbour;
pub mod route;
pub mod stack;

use std::net::Ipv4Addr;

pub use iphdr::Ipv4Cidr;
pub use stack::{InetProtocol, RawDeliver, Stack, StackConfig};

/// Errors of the IPv4 layer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Ipv4Error {
    #[error("no route to host {0}")]
    NoRoute(Ipv4Addr),
    #[error("packet of {len} bytes exceeds the MTU {mtu}")]
    MessageTooLong { len: usize, mtu: usize },
    #[error("no packet buffers left")]
    NoBuffers,
    #[error("no device with ifindex {0}")]
    NoDevice(u16),
    #[error("protocol {0} already has a handler")]
    ProtocolTaken(u8),
    #[error("--{field}: {msg}")]
    Config { field: String, msg: String },
}
