//! UDP transmit checksum offload: on a device that offers it, udp_sendmsg leaves the
//! pseudo-header sum in `check` and marks the skb CHECKSUM_PARTIAL; a NIC model here finishes
//! the checksum as hardware would, and the receiving stack verifies it in software.

mod common;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use blink_ipv4::{Stack, StackConfig};
use blink_netcore::checksum::Csum;
use blink_netcore::drivers::wire::{wire_pair, WireConfig, WireDev};
use blink_netcore::jiffies::{Clock, VirtualClock};
use blink_netcore::netdevice::{Burst, DevStats, NetDevice, NetdevFeatures};
use blink_netcore::skbuff::IpSummed;
use blink_netcore::snmp::UdpMib;
use blink_netcore::{EthAddr, Mempool, MempoolConfig};
use blink_udp::*;
use common::*;

/// A wire end that claims UDP tx checksum offload and does the NIC's part: one's-complement
/// sum from the transport header to the end, stored at `csum_offset` 6.
struct CsumNic {
    inner: WireDev,
    partial: Arc<AtomicUsize>,
}

impl NetDevice for CsumNic {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn mac(&self) -> EthAddr {
        self.inner.mac()
    }
    fn mtu(&self) -> usize {
        self.inner.mtu()
    }
    fn features(&self) -> NetdevFeatures {
        NetdevFeatures::TXCSUM_UDP
    }
    fn rx_burst(&mut self, q: u16, out: &mut Burst) -> usize {
        self.inner.rx_burst(q, out)
    }
    fn tx_burst(&mut self, q: u16, pkts: &mut Burst) -> usize {
        for skb in pkts.iter_mut() {
            if skb.ip_summed != IpSummed::Partial {
                continue;
            }
            self.partial.fetch_add(1, Ordering::Relaxed);
            let mut c = Csum::new();
            c.add(skb.skb_transport_header());
            for f in skb.frags() {
                c.add(f.bytes());
            }
            let v = match c.finish() {
                0 => 0xffff,
                v => v,
            };
            let th = skb.skb_transport_header_mut().expect("unshared header");
            th[6..8].copy_from_slice(&v.to_be_bytes());
            skb.ip_summed = IpSummed::None;
        }
        self.inner.tx_burst(q, pkts)
    }
    fn stats(&self) -> DevStats {
        self.inner.stats()
    }
}

#[test]
fn partial_checksum_finished_by_the_device_verifies() {
    let pool = Mempool::new(&MempoolConfig {
        n: 2048,
        ..Default::default()
    })
    .unwrap();
    let vc = VirtualClock::new();
    let clock = Clock::virtual_clock(&vc);
    let (wa, wb) = wire_pair(("a", "b"), (EthAddr(A_MAC), EthAddr(B_MAC)), &WireConfig::default());
    let partial = Arc::new(AtomicUsize::new(0));
    let mut a = Stack::new(0, 1, clock.clone(), &pool, StackConfig::default());
    let mut b = Stack::new(0, 1, clock, &pool, StackConfig::default());
    a.add_device(
        Box::new(CsumNic {
            inner: wa,
            partial: partial.clone(),
        }),
        0,
    );
    b.add_device(Box::new(wb), 0);
    a.add_addr(0, "10.0.0.1/24".parse().unwrap()).unwrap();
    b.add_addr(0, "10.0.0.2/24".parse().unwrap()).unwrap();
    udp_init(&mut a, UdpConfig::default());
    udp_init(&mut b, UdpConfig::default());
    let s = udp_socket(&mut b).unwrap();
    udp_bind(&mut b, s, sa(Ipv4Addr::UNSPECIFIED, 9)).unwrap();
    let c = udp_socket(&mut a).unwrap();
    let sizes = [1usize, 2, 3, 100, 1001, 1472];
    for &n in &sizes {
        udp_sendmsg(&mut a, c, &pattern(n, n), Some(sa(B_IP, 9))).unwrap();
    }
    // Zero-copy payload too: the device sums the fragment.
    let mut m = a.core.cache.alloc().unwrap();
    m.append_slice(&pattern(5, 777));
    udp_send_mbuf(&mut a, c, m, Some(sa(B_IP, 9)))
        .map_err(|(_, e)| e)
        .unwrap();
    for _ in 0..20 {
        if a.poll() + b.poll() == 0 {
            vc.advance_ms(1);
        }
    }
    assert_eq!(partial.load(Ordering::Relaxed), sizes.len() + 1);
    let mut buf = [0u8; 1500];
    for &n in sizes.iter().chain([777].iter()) {
        let r = udp_recvmsg(&mut b, s, &mut buf).unwrap();
        assert_eq!(r.len, n);
    }
    assert_eq!(b.core.mib.udp[UdpMib::InCsumErrors], 0);
    assert_eq!(b.core.mib.udp[UdpMib::InDatagrams], sizes.len() as u64 + 1);
    udp_close(&mut a, c).unwrap();
    udp_close(&mut b, s).unwrap();
    drop((a, b));
    assert_eq!(pool.in_use(), 0, "mbufs leaked");
}

#[test]
fn fragmented_datagram_gets_its_checksum_in_software() {
    // The device would only ever see fragments: IP fills the checksum before cutting
    // (skb_checksum_help), so nothing reaches the NIC as CHECKSUM_PARTIAL.
    let pool = Mempool::new(&MempoolConfig {
        n: 2048,
        ..Default::default()
    })
    .unwrap();
    let vc = VirtualClock::new();
    let clock = Clock::virtual_clock(&vc);
    let (wa, wb) = wire_pair(("a", "b"), (EthAddr(A_MAC), EthAddr(B_MAC)), &WireConfig::default());
    let partial = Arc::new(AtomicUsize::new(0));
    let mut a = Stack::new(0, 1, clock.clone(), &pool, StackConfig::default());
    let mut b = Stack::new(0, 1, clock, &pool, StackConfig::default());
    a.add_device(
        Box::new(CsumNic {
            inner: wa,
            partial: partial.clone(),
        }),
        0,
    );
    b.add_device(Box::new(wb), 0);
    a.add_addr(0, "10.0.0.1/24".parse().unwrap()).unwrap();
    b.add_addr(0, "10.0.0.2/24".parse().unwrap()).unwrap();
    udp_init(&mut a, UdpConfig::default());
    udp_init(&mut b, UdpConfig::default());
    let s = udp_socket(&mut b).unwrap();
    udp_bind(&mut b, s, sa(Ipv4Addr::UNSPECIFIED, 9)).unwrap();
    let c = udp_socket(&mut a).unwrap();
    let mut buf = vec![0u8; 65_507];
    for n in [4000usize, 65_507] {
        let data = pattern(n, n);
        udp_sendmsg(&mut a, c, &data, Some(sa(B_IP, 9))).unwrap();
        for _ in 0..50 {
            if a.poll() + b.poll() == 0 {
                vc.advance_ms(1);
            }
        }
        let r = udp_recvmsg(&mut b, s, &mut buf).unwrap();
        assert_eq!(&buf[..r.len], &data[..], "size {n}");
    }
    assert_eq!(partial.load(Ordering::Relaxed), 0);
    assert_eq!(b.core.mib.udp[UdpMib::InCsumErrors], 0);
    udp_close(&mut a, c).unwrap();
    udp_close(&mut b, s).unwrap();
    drop((a, b));
    assert_eq!(pool.in_use(), 0, "mbufs leaked");
}
