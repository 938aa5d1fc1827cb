//! UDP datagrams over the MTU: fragmented by IP up to 65,507 bytes and reassembled by the
//! peer, refused with IP_PMTUDISC_DO (`udp_set_dontfrag`), and cut at a path MTU an ICMP
//! "fragmentation needed" lowered (RFC 1191) until it expires.

mod common;

use std::net::Ipv4Addr;

use blink_ipv4::route::IP_RT_MTU_EXPIRES;
use blink_netcore::snmp::{IpMib, UdpMib};
use blink_udp::*;
use common::*;
use etherparse::{Ethernet2Header, Ipv4Header};

/// (offset, MF, DF, IP payload length) of a frame the host sent.
fn frag_info(frame: &[u8]) -> (usize, bool, bool, usize) {
    let (_, rest) = Ethernet2Header::from_slice(frame).unwrap();
    let (ip, payload) = Ipv4Header::from_slice(rest).unwrap();
    assert_eq!(ip.header_checksum, ip.calc_header_checksum());
    (
        ip.fragment_offset.value() as usize * 8,
        ip.more_fragments,
        ip.dont_fragment,
        payload.len(),
    )
}

/// An ICMP "fragmentation needed" (next-hop MTU `mtu`) from a router about a UDP datagram
/// 10.0.0.1:4000 -> 10.0.0.2:9.
fn frag_needed(mtu: u16) -> Vec<u8> {
    let mut quoted = vec![0x45, 0, 0x05, 0xdc, 0, 1, 0x40, 0, 64, 17, 0, 0];
    quoted.extend_from_slice(&A_IP.octets());
    quoted.extend_from_slice(&B_IP.octets());
    quoted.extend_from_slice(&[0x0f, 0xa0, 0, 9, 0x05, 0xc8, 0, 0]);
    let mut icmp = vec![3, 4, 0, 0, 0, 0];
    icmp.extend_from_slice(&mtu.to_be_bytes());
    icmp.extend_from_slice(&quoted);
    let c = inet_csum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let b = etherparse::PacketBuilder::ethernet2(B_MAC, A_MAC).ipv4([10, 0, 0, 254], A_IP.octets(), 64);
    let mut ip = Vec::new();
    // etherparse has no "raw ICMP" builder: an IP packet of protocol 1 with our bytes.
    b.write(&mut ip, etherparse::IpNumber::ICMP, &icmp).unwrap();
    ip
}

fn inet_csum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[test]
fn datagrams_up_to_65507_bytes_are_fragmented_and_reassembled() {
    let mut p = pair(UdpConfig::default());
    let srv = udp_socket(&mut p.b).unwrap();
    udp_bind(&mut p.b, srv, sa(Ipv4Addr::UNSPECIFIED, 9)).unwrap();
    let cli = udp_socket(&mut p.a).unwrap();
    let mut buf = vec![0u8; 70_000];
    let sizes = [1473usize, 4000, 20_000, 65_507];
    for &n in &sizes {
        let data = pattern(n, n);
        assert_eq!(udp_sendmsg(&mut p.a, cli, &data, Some(sa(B_IP, 9))), Ok(n));
        let mut got = None;
        p.run_until(200, |p| {
            if let Ok(r) = udp_recvmsg(&mut p.b, srv, &mut buf) {
                got = Some(r.len);
            }
            got.is_some()
        });
        let len = got.unwrap_or_else(|| panic!("size {n} not received"));
        assert_eq!(&buf[..len], &data[..], "size {n}");
    }
    let frags: u64 = sizes.iter().map(|n| (8 + n).div_ceil(1480) as u64).sum();
    assert_eq!(p.a.core.mib.ip[IpMib::FragOKs], sizes.len() as u64);
    assert_eq!(p.a.core.mib.ip[IpMib::FragCreates], frags);
    assert_eq!(p.a.core.mib.ip[IpMib::FragFails], 0);
    assert_eq!(p.b.core.mib.udp[UdpMib::InCsumErrors], 0);
    // One byte more than a 65,535-byte datagram holds.
    assert_eq!(
        udp_sendmsg(&mut p.a, cli, &vec![0u8; 65_508], Some(sa(B_IP, 9))),
        Err(UdpErr::MessageTooLong { len: 65_536, mtu: 1500 })
    );
    udp_close(&mut p.a, cli).unwrap();
    udp_close(&mut p.b, srv).unwrap();
    p.settle();
    let pool = p.pool.clone();
    drop(p);
    assert_eq!(pool.in_use(), 0, "mbufs leaked");
}

#[test]
fn dontfrag_sets_df_and_refuses_over_the_mtu() {
    let mut h = host(UdpConfig::default());
    let s = udp_socket(&mut h.stack).unwrap();
    udp_set_dontfrag(&mut h.stack, s, true).unwrap();
    udp_sendmsg(&mut h.stack, s, &[7u8; 1472], Some(sa(B_IP, 9))).unwrap();
    h.stack.flush_tx();
    let out = h.recv();
    assert_eq!(out.len(), 1);
    assert_eq!(frag_info(&out[0]), (0, false, true, 1480), "DF set");
    assert_eq!(
        udp_sendmsg(&mut h.stack, s, &[7u8; 1473], Some(sa(B_IP, 9))),
        Err(UdpErr::MessageTooLong { len: 1501, mtu: 1500 })
    );
    // Off again: fragmented, without DF.
    udp_set_dontfrag(&mut h.stack, s, false).unwrap();
    udp_sendmsg(&mut h.stack, s, &[7u8; 1473], Some(sa(B_IP, 9))).unwrap();
    h.stack.flush_tx();
    let out: Vec<_> = h.recv().iter().map(|f| frag_info(f)).collect();
    assert_eq!(out, vec![(0, true, false, 1480), (1480, false, false, 1)]);
    udp_close(&mut h.stack, s).unwrap();
    h.assert_no_leak();
}

#[test]
fn frag_needed_lowers_the_path_mtu_for_ten_minutes() {
    let mut h = host(UdpConfig::default());
    let s = udp_socket(&mut h.stack).unwrap();
    udp_bind(&mut h.stack, s, sa(A_IP, 4000)).unwrap();
    h.inject(&frag_needed(1000));
    udp_sendmsg(&mut h.stack, s, &pattern(1, 1400), Some(sa(B_IP, 9))).unwrap();
    h.stack.flush_tx();
    let out: Vec<_> = h.recv().iter().map(|f| frag_info(f)).collect();
    assert_eq!(out, vec![(0, true, false, 976), (976, false, false, 432)]);
    // With DF the path MTU is the limit now.
    udp_set_dontfrag(&mut h.stack, s, true).unwrap();
    assert_eq!(
        udp_sendmsg(&mut h.stack, s, &pattern(1, 1400), Some(sa(B_IP, 9))),
        Err(UdpErr::MessageTooLong { len: 1428, mtu: 1000 })
    );
    udp_sendmsg(&mut h.stack, s, &pattern(1, 972), Some(sa(B_IP, 9))).unwrap();
    // Ten minutes on, the device MTU is back.
    h.vc.advance_ms(IP_RT_MTU_EXPIRES);
    h.stack.poll();
    udp_sendmsg(&mut h.stack, s, &pattern(1, 1400), Some(sa(B_IP, 9))).unwrap();
    h.stack.flush_tx();
    let out: Vec<_> = h.recv().iter().map(|f| frag_info(f)).collect();
    assert_eq!(out, vec![(0, false, true, 980), (0, false, true, 1408)]);
    udp_close(&mut h.stack, s).unwrap();
    h.assert_no_leak();
}
