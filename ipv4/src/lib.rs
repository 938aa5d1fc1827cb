//! blink's IPv4 layer: what net/ipv4 (minus TCP/UDP) is to Linux.
//!
//! Header views ([`arphdr`], [`iphdr`], [`icmphdr`]) are parsed once per protocol and reused
//! by the input and output paths, the pcap printer and the tests.

pub mod arphdr;
pub mod icmphdr;
pub mod iphdr;
