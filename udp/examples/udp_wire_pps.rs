//! Datagrams per second between two blink stacks on the in-memory wire, in one thread with
//! the monotonic clock: A sends bursts of 32 datagrams with the copying `udp_sendmsg`, both
//! stacks poll, B reads them with the copying `udp_recvmsg` (and, in a second run, the
//! zero-copy `udp_recv_skb`). Every datagram is counted on arrival, none may be lost.
//!
//! `cargo run --release -p blink-udp --example udp_wire_pps [SECONDS]`

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use blink_ipv4::{Stack, StackConfig};
use blink_netcore::drivers::wire::{wire_pair, WireConfig};
use blink_netcore::jiffies::Clock;
use blink_netcore::snmp::UdpMib;
use blink_netcore::{EthAddr, Mempool, MempoolConfig};
use blink_udp::*;

fn run(size: usize, zero_copy: bool, secs: f64) {
    let pool = Mempool::new(&MempoolConfig {
        n: 8192,
        ..Default::default()
    })
    .unwrap();
    let clock = Clock::monotonic();
    let (wa, wb) = wire_pair(
        ("a", "b"),
        (EthAddr([2, 0, 0, 0, 0, 1]), EthAddr([2, 0, 0, 0, 0, 2])),
        &WireConfig::default(),
    );
    let mut a = Stack::new(0, 1, clock.clone(), &pool, StackConfig::default());
    let mut b = Stack::new(0, 1, clock, &pool, StackConfig::default());
    a.add_device(Box::new(wa), 0);
    b.add_device(Box::new(wb), 0);
    a.add_addr(0, "10.0.0.1/24".parse().unwrap()).unwrap();
    b.add_addr(0, "10.0.0.2/24".parse().unwrap()).unwrap();
    udp_init(&mut a, UdpConfig::default());
    udp_init(&mut b, UdpConfig::default());
    let s = udp_socket(&mut b).unwrap();
    udp_bind(&mut b, s, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9)).unwrap();
    let c = udp_socket(&mut a).unwrap();
    udp_connect(&mut a, c, SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 9)).unwrap();
    let data = vec![0x5au8; size];
    let mut buf = vec![0u8; 2048];
    // Warm up: resolve ARP.
    udp_sendmsg(&mut a, c, &data, None).unwrap();
    for _ in 0..10 {
        a.poll();
        b.poll();
    }
    while udp_recvmsg(&mut b, s, &mut buf).is_ok() {}
    let (mut sent, mut rcvd) = (0u64, 0u64);
    let t0 = Instant::now();
    let dur = Duration::from_secs_f64(secs);
    while t0.elapsed() < dur {
        for _ in 0..32 {
            udp_sendmsg(&mut a, c, &data, None).unwrap();
            sent += 1;
        }
        a.poll();
        b.poll();
        if zero_copy {
            while let Ok((skb, _)) = udp_recv_skb(&mut b, s) {
                rcvd += (skb.len() == size) as u64;
            }
        } else {
            while let Ok(r) = udp_recvmsg(&mut b, s, &mut buf) {
                rcvd += (r.len == size) as u64;
            }
        }
    }
    let el = t0.elapsed().as_secs_f64();
    let lost = b.core.mib.udp[UdpMib::RcvbufErrors] + b.core.mib.udp[UdpMib::InErrors];
    println!(
        "udp {size:>4} B {:<9}: {:>6.2} M datagrams/s, {:>6.2} Gbit/s payload ({} sent, {} received, {} UDP receive errors)",
        if zero_copy { "zero-copy" } else { "copy" },
        rcvd as f64 / el / 1e6,
        rcvd as f64 * size as f64 * 8.0 / el / 1e9,
        sent,
        rcvd,
        lost
    );
    assert_eq!(sent, rcvd, "datagrams lost on a clean wire");
}

fn main() {
    let secs: f64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2.0);
    for size in [64, 512, 1472] {
        run(size, false, secs);
        run(size, true, secs);
    }
}
