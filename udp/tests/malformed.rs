//! Hand-made datagrams against one blink host: checksums (zero, bad), lying lengths, short
//! headers, trailing bytes. Each drop is counted; nothing panics; nothing leaks.

mod common;

use std::net::Ipv4Addr;

use blink_netcore::snmp::{DropReason, UdpMib};
use blink_udp::*;
use common::*;

fn bound(h: &mut Host, port: u16) -> blink_netcore::sock::SockHandle {
    let s = udp_socket(&mut h.stack).unwrap();
    udp_bind(&mut h.stack, s, sa(Ipv4Addr::UNSPECIFIED, port)).unwrap();
    s
}

#[test]
fn zero_checksum_accepted() {
    let mut h = host(UdpConfig::default());
    let s = bound(&mut h, 7);
    let mut f = udp_frame(1000, 7, b"no checksum");
    f[UDP_OFF + 6] = 0;
    f[UDP_OFF + 7] = 0;
    h.inject(&f);
    let mut buf = [0u8; 64];
    let r = udp_recvmsg(&mut h.stack, s, &mut buf).unwrap();
    assert_eq!(&buf[..r.len], b"no checksum");
    assert_eq!(r.from, sa(B_IP, 1000));
    assert_eq!(h.stack.core.mib.udp[UdpMib::InCsumErrors], 0);
    udp_close(&mut h.stack, s).unwrap();
    h.assert_no_leak();
}

#[test]
fn bad_checksum_dropped_and_counted() {
    let mut h = host(UdpConfig::default());
    let s = bound(&mut h, 7);
    let mut f = udp_frame(1000, 7, b"corrupted");
    let last = f.len() - 1;
    f[last] ^= 0x40;
    h.inject(&f);
    let mut buf = [0u8; 64];
    assert_eq!(udp_recvmsg(&mut h.stack, s, &mut buf), Err(UdpErr::WouldBlock));
    let m = &h.stack.core.mib;
    assert_eq!(m.udp[UdpMib::InCsumErrors], 1);
    assert_eq!(m.udp[UdpMib::InErrors], 1);
    assert_eq!(m.drops[DropReason::UdpCsum], 1);
    // No port unreachable for a corrupted datagram either.
    assert!(h.recv().is_empty());
    udp_close(&mut h.stack, s).unwrap();
    h.assert_no_leak();
}

#[test]
fn lying_lengths_and_short_headers() {
    let mut h = host(UdpConfig::default());
    let s = bound(&mut h, 7);
    // len larger than the IP payload.
    let mut f = udp_frame(1000, 7, b"0123456789");
    f[UDP_OFF + 4..UDP_OFF + 6].copy_from_slice(&200u16.to_be_bytes());
    h.inject(&f);
    // len below the header size.
    for bad in [0u16, 4, 7] {
        let mut f = udp_frame(1000, 7, b"0123456789");
        f[UDP_OFF + 4..UDP_OFF + 6].copy_from_slice(&bad.to_be_bytes());
        h.inject(&f);
    }
    // Fewer than 8 bytes of UDP at all: IP total length cut to 20 + 4.
    let mut f = udp_frame(1000, 7, b"");
    f[IP_OFF + 2..IP_OFF + 4].copy_from_slice(&24u16.to_be_bytes());
    f.truncate(IP_OFF + 24);
    fix_ip_csum(&mut f);
    h.inject(&f);
    let m = &h.stack.core.mib;
    assert_eq!(m.udp[UdpMib::InErrors], 5);
    assert_eq!(m.drops[DropReason::PktTooSmall], 5);
    let mut buf = [0u8; 64];
    assert_eq!(udp_recvmsg(&mut h.stack, s, &mut buf), Err(UdpErr::WouldBlock));
    assert!(h.recv().is_empty(), "no ICMP about malformed datagrams");
    udp_close(&mut h.stack, s).unwrap();
    h.assert_no_leak();
}

#[test]
fn bytes_past_udp_len_are_trimmed() {
    let mut h = host(UdpConfig::default());
    let s = bound(&mut h, 7);
    // A valid 3-byte datagram followed by 5 bytes of junk inside the IP payload: the
    // checksum covers only `len` bytes, as the receiver must compute it.
    let good = udp_frame(1000, 7, b"abc");
    let mut f = good.clone();
    f.extend_from_slice(b"JUNK!");
    let tot = (20 + 8 + 3 + 5) as u16;
    f[IP_OFF + 2..IP_OFF + 4].copy_from_slice(&tot.to_be_bytes());
    fix_ip_csum(&mut f);
    h.inject(&f);
    let mut buf = [0u8; 64];
    let r = udp_recvmsg(&mut h.stack, s, &mut buf).unwrap();
    assert_eq!(&buf[..r.len], b"abc");
    udp_close(&mut h.stack, s).unwrap();
    h.assert_no_leak();
}

#[test]
fn closed_port_answers_unreachable_but_not_broadcast() {
    let mut h = host(UdpConfig::default());
    h.inject(&udp_frame(1000, 4444, b"hello?"));
    let out = h.recv();
    assert_eq!(out.len(), 1);
    let p = etherparse::SlicedPacket::from_ethernet(&out[0]).unwrap();
    match p.transport {
        Some(etherparse::TransportSlice::Icmpv4(i)) => {
            assert_eq!(i.type_u8(), 3);
            assert_eq!(i.code_u8(), 3);
        }
        other => panic!("expected ICMP, got {other:?}"),
    }
    assert_eq!(h.stack.core.mib.udp[UdpMib::NoPorts], 1);
    h.inject(&udp_frame_to(Ipv4Addr::new(10, 0, 0, 255), 1000, 4444, b"bcast"));
    assert!(h.recv().is_empty());
    assert_eq!(h.stack.core.mib.udp[UdpMib::NoPorts], 1);
    assert_eq!(h.stack.core.mib.udp[UdpMib::IgnoredMulti], 1);
    assert_eq!(h.stack.core.mib.drops[DropReason::NoSocket], 2);
    h.assert_no_leak();
}

#[test]
fn sent_datagrams_check_out_with_etherparse() {
    let mut h = host(UdpConfig::default());
    let s = udp_socket(&mut h.stack).unwrap();
    udp_bind(&mut h.stack, s, sa(Ipv4Addr::UNSPECIFIED, 5353)).unwrap();
    for len in [0usize, 1, 2, 3, 1000, 1472] {
        let data = pattern(len, len);
        udp_sendmsg(&mut h.stack, s, &data, Some(sa(B_IP, 53))).unwrap();
        h.stack.flush_tx();
        let out = h.recv();
        assert_eq!(out.len(), 1);
        let p = etherparse::SlicedPacket::from_ethernet(&out[0]).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not IPv4")
        };
        let Some(etherparse::TransportSlice::Udp(u)) = &p.transport else {
            panic!("not UDP")
        };
        assert_eq!(u.source_port(), 5353);
        assert_eq!(u.destination_port(), 53);
        assert_eq!(u.payload(), &data[..]);
        let want = u
            .to_header()
            .calc_checksum_ipv4(&ip.header().to_header(), u.payload())
            .unwrap();
        assert_eq!(u.checksum(), want, "len {len}");
        assert_ne!(u.checksum(), 0);
    }
    udp_close(&mut h.stack, s).unwrap();
    h.assert_no_leak();
}

/// An skb as a device would hand it up after IP: `data` at the UDP header, network header set.
fn rx_skb(h: &mut Host, frame: &[u8]) -> blink_netcore::skbuff::SkBuff {
    let mut skb = blink_netcore::skbuff::SkBuff::from_slice(&mut h.cache, &frame[IP_OFF..]).unwrap();
    skb.skb_reset_network_header();
    skb.skb_pull(20);
    skb.skb_reset_transport_header();
    skb
}

#[test]
fn device_verified_checksum_is_trusted() {
    let mut h = host(UdpConfig::default());
    let s = bound(&mut h, 7);
    let mut f = udp_frame(1000, 7, b"hw says ok");
    f[UDP_OFF + 6] ^= 0xff; // wrong checksum...
    let mut skb = rx_skb(&mut h, &f);
    skb.ip_summed = blink_netcore::skbuff::IpSummed::Unnecessary; // ...but the NIC verified it
    with_udp(&mut h.stack, |u, st| u.udp_rcv(st, skb)).unwrap();
    let mut buf = [0u8; 32];
    assert_eq!(udp_recvmsg(&mut h.stack, s, &mut buf).unwrap().len, 10);
    // Without the device's word the same datagram is dropped.
    let skb = rx_skb(&mut h, &f);
    with_udp(&mut h.stack, |u, st| u.udp_rcv(st, skb)).unwrap();
    assert_eq!(udp_recvmsg(&mut h.stack, s, &mut buf), Err(UdpErr::WouldBlock));
    assert_eq!(h.stack.core.mib.udp[UdpMib::InCsumErrors], 1);
    udp_close(&mut h.stack, s).unwrap();
    h.assert_no_leak();
}

#[test]
fn bucket_from_device_hash_or_software_toeplitz() {
    use blink_netcore::rss::{hash2cpu, Reta, RssHashType, Toeplitz};
    let mut h = host(UdpConfig::default());
    h.stack.core.reta = Reta::new(4).unwrap();
    let socks: Vec<_> = (0..4u16)
        .map(|b| {
            let s = udp_socket(&mut h.stack).unwrap();
            udp_set_rss_bucket(&mut h.stack, s, b).unwrap();
            udp_bind(&mut h.stack, s, sa(Ipv4Addr::UNSPECIFIED, 4789)).unwrap();
            s
        })
        .collect();
    let reta = Reta::new(4).unwrap();
    let mut buf = [0u8; 16];
    let which = |h: &mut Host, buf: &mut [u8]| -> Vec<usize> {
        (0..4)
            .filter(|&i| udp_recvmsg(&mut h.stack, socks[i], buf).is_ok())
            .collect()
    };
    for sport in [1000u16, 1001, 1002, 1003, 5555] {
        let f = udp_frame(sport, 4789, b"crafted");
        // No hash on the skb: software Toeplitz over the 4-tuple picks the bucket.
        let skb = rx_skb(&mut h, &f);
        with_udp(&mut h.stack, |u, st| u.udp_rcv(st, skb)).unwrap();
        let sw = Toeplitz::default().hash_ipv4_l4(B_IP.octets(), A_IP.octets(), sport, 4789);
        assert_eq!(
            which(&mut h, &mut buf),
            vec![hash2cpu(&reta, sw) as usize],
            "sport {sport}"
        );
        // A device hash covering the UDP ports is used as given: every bucket in turn.
        for bucket in 0..4u32 {
            let mut skb = rx_skb(&mut h, &f);
            skb.rss_hash = bucket; // RETA entry `bucket` -> queue `bucket`
            skb.hash_type = RssHashType::L4Ipv4Udp;
            with_udp(&mut h.stack, |u, st| u.udp_rcv(st, skb)).unwrap();
            assert_eq!(which(&mut h, &mut buf), vec![bucket as usize]);
        }
        // An L3-only hash (as for fragments) does not identify the flow: software again.
        let mut skb = rx_skb(&mut h, &f);
        skb.rss_hash = 3;
        skb.hash_type = RssHashType::L3Ipv4;
        with_udp(&mut h.stack, |u, st| u.udp_rcv(st, skb)).unwrap();
        assert_eq!(which(&mut h, &mut buf), vec![hash2cpu(&reta, sw) as usize]);
    }
    for s in socks {
        udp_close(&mut h.stack, s).unwrap();
    }
    h.assert_no_leak();
}
