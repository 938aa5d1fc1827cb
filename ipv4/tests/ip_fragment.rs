//! IPv4 fragmentation on output and path MTU discovery (RFC 1191): large echo requests and
//! replies leave in fragments (parsed with etherparse and put back together here), an ICMP
//! "fragmentation needed" lowers the MTU towards one destination for 10 minutes, and nothing
//! leaks.

mod common;

use std::net::Ipv4Addr;

use blink_ipv4::icmp::icmp_send_echo;
use blink_ipv4::route::{IP_RT_MIN_PMTU, IP_RT_MTU_EXPIRES};
use blink_netcore::snmp::IpMib;
use common::*;
use etherparse::{Ethernet2Header, Ipv4Header};

/// (id, offset, MF, DF, payload) of one IPv4 frame, its header checksum checked.
fn frag_of(frame: &[u8]) -> (u16, usize, bool, bool, Vec<u8>) {
    let (_, rest) = Ethernet2Header::from_slice(frame).unwrap();
    let (ip, payload) = Ipv4Header::from_slice(rest).unwrap();
    assert_eq!(ip.header_checksum, ip.calc_header_checksum());
    assert_eq!(ip.total_len as usize, 20 + payload.len(), "no padding on large frames");
    (
        ip.identification,
        ip.fragment_offset.value() as usize * 8,
        ip.more_fragments,
        ip.dont_fragment,
        payload.to_vec(),
    )
}

/// Put one datagram's fragments back together (in any order); checks ids, offsets and MF.
fn reassemble(frames: &[Vec<u8>], mtu: usize) -> Vec<u8> {
    let mut frags: Vec<_> = frames.iter().map(|f| frag_of(f)).collect();
    frags.sort_by_key(|f| f.1);
    let id = frags[0].0;
    let mut out = Vec::new();
    for (i, (fid, off, mf, df, p)) in frags.iter().enumerate() {
        assert_eq!(*fid, id, "one id");
        assert!(!df);
        assert_eq!(*off, out.len(), "contiguous");
        assert_eq!(off % 8, 0);
        assert_eq!(*mf, i + 1 < frags.len(), "MF on all but the last");
        assert!(p.len() + 20 <= mtu);
        if *mf {
            assert_eq!(p.len() % 8, 0);
        }
        out.extend_from_slice(p);
    }
    out
}

/// IP fragments of `ip` (a whole datagram with a 20-byte header) cut at `mtu`, as frames from
/// the peer.
fn fragment_frames(ip: &[u8], mtu: usize) -> Vec<Vec<u8>> {
    let (hdr, data) = ip.split_at(20);
    let per = (mtu - 20) & !7;
    let mut out = Vec::new();
    for (i, chunk) in data.chunks(per).enumerate() {
        let off = i * per;
        let more = off + chunk.len() < data.len();
        let mut h = hdr.to_vec();
        h[2..4].copy_from_slice(&((20 + chunk.len()) as u16).to_be_bytes());
        let fo = (off / 8) as u16 | if more { 0x2000 } else { 0 };
        h[6..8].copy_from_slice(&fo.to_be_bytes());
        h[10..12].fill(0);
        let c = inet_csum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(chunk);
        out.push(eth_frame(STACK_MAC, PEER_MAC, ETH_P_IP, &h));
    }
    out
}

/// An ICMP "fragmentation needed" from `router` about a datagram STACK_IP -> `dst` of
/// `tot_len` bytes, next-hop MTU `mtu`.
fn frag_needed(router: Ipv4Addr, src: Ipv4Addr, dst: Ipv4Addr, tot_len: u16, mtu: u16) -> Vec<u8> {
    let mut quoted = ipv4_packet(src, dst, 17, &[0x12, 0x34, 0x00, 0x35, 0, 8, 0, 0]);
    quoted[2..4].copy_from_slice(&tot_len.to_be_bytes());
    quoted[6] = 0x40; // DF
    let mut rest = [0u8; 4];
    rest[2..4].copy_from_slice(&mtu.to_be_bytes());
    let msg = icmp_msg(3, 4, rest, &quoted);
    eth_frame(STACK_MAC, PEER_MAC, ETH_P_IP, &ipv4_packet(router, STACK_IP, 1, &msg))
}

fn echo_payload(frames: &[Vec<u8>], mtu: usize) -> Vec<u8> {
    let msg = reassemble(frames, mtu);
    assert_eq!(inet_csum(&msg), 0, "ICMP checksum over the whole message");
    msg
}

#[test]
fn large_echo_requests_leave_fragmented() {
    let mut h = Harness::new().with_static_peer();
    for len in [1473usize, 4000, 65_507] {
        let before = h.mib();
        icmp_send_echo(&mut h.stack, PEER_IP, 7, 1, len).unwrap();
        h.stack.flush_tx();
        let out = h.recv();
        let n = (8 + len).div_ceil(1480);
        assert_eq!(out.len(), n, "len {len}");
        let msg = echo_payload(&out, 1500);
        assert_eq!(msg.len(), 8 + len);
        assert_eq!(&msg[..2], &[8, 0]);
        assert!(msg[8..].iter().enumerate().all(|(i, &b)| b == i as u8), "pattern");
        let d = h.diff(&before);
        assert_eq!(d.get("Ip.FragOKs"), Some(&1));
        assert_eq!(d.get("Ip.FragCreates"), Some(&(n as u64)));
        assert_eq!(d.get("Ip.OutRequests"), Some(&1));
        assert_eq!(drop_part(&d), counters(&[]));
    }
    h.assert_pool_baseline();
}

#[test]
fn reassembled_ping_is_answered_in_fragments() {
    let mut h = Harness::new().with_static_peer();
    for len in [4000usize, 60_000] {
        let data: Vec<u8> = (0..len).map(|i| (i * 13 + 5) as u8).collect();
        let req = ping_frame(0x77, 3, &data);
        let frames = fragment_frames(&req[14..], 1500);
        for f in &frames {
            h.send(f);
        }
        // More fragments than one poll's burst: poll until the wire is drained.
        while h.poll() > 0 {}
        h.stack.flush_tx();
        let out = h.recv();
        assert_eq!(out.len(), (8 + len).div_ceil(1480), "len {len}");
        let msg = echo_payload(&out, 1500);
        assert_eq!(&msg[..2], &[0, 0], "echo reply");
        assert_eq!(&msg[4..8], &[0, 0x77, 0, 3]);
        assert_eq!(&msg[8..], &data[..], "payload returned intact");
    }
    assert_eq!(h.stack.core.mib.ip[IpMib::FragOKs], 2);
    h.assert_pool_baseline();
}

#[test]
fn frag_needed_lowers_path_mtu_until_it_expires() {
    let mut h = Harness::new().with_static_peer();
    let router = Ipv4Addr::new(10, 0, 0, 254);
    h.inject(&frag_needed(router, STACK_IP, PEER_IP, 1500, 1000));
    assert_eq!(h.stack.fib.pmtu(PEER_IP, h.stack.core.jiffies), Some(1000));
    icmp_send_echo(&mut h.stack, PEER_IP, 1, 1, 1400).unwrap();
    h.stack.flush_tx();
    let out = h.recv();
    assert_eq!(out.len(), 2, "fragmented at the path MTU");
    assert!(out.iter().all(|f| f.len() <= 14 + 1000));
    assert_eq!(echo_payload(&out, 1000).len(), 1408);

    // A larger MTU reported later does not raise it.
    h.inject(&frag_needed(router, STACK_IP, PEER_IP, 1500, 1400));
    assert_eq!(h.stack.fib.pmtu(PEER_IP, h.stack.core.jiffies), Some(1000));
    // Another destination is not affected.
    let other = Ipv4Addr::new(10, 0, 0, 3);
    assert_eq!(h.stack.fib.pmtu(other, h.stack.core.jiffies), None);

    // Ten minutes later the device MTU applies again.
    h.advance(IP_RT_MTU_EXPIRES);
    icmp_send_echo(&mut h.stack, PEER_IP, 1, 2, 1400).unwrap();
    h.stack.flush_tx();
    let out: Vec<_> = h.recv().into_iter().filter(|f| !is_arp(f)).collect();
    assert_eq!(out.len(), 1, "expired");
    h.assert_pool_baseline();
}

#[test]
fn frag_needed_without_mtu_or_tiny_mtu_is_clamped_and_foreign_ignored() {
    let mut h = Harness::new().with_static_peer();
    let router = Ipv4Addr::new(10, 0, 0, 254);
    // An old router says 0: the RFC 1191 plateau below the refused 1500-byte datagram.
    h.inject(&frag_needed(router, STACK_IP, PEER_IP, 1500, 0));
    assert_eq!(h.stack.fib.pmtu(PEER_IP, h.stack.core.jiffies), Some(1492));
    // Absurdly small: clamped to 552.
    h.inject(&frag_needed(router, STACK_IP, PEER_IP, 1492, 68));
    assert_eq!(h.stack.fib.pmtu(PEER_IP, h.stack.core.jiffies), Some(IP_RT_MIN_PMTU));
    // About a datagram we did not send: ignored.
    let third = Ipv4Addr::new(10, 0, 0, 3);
    h.inject(&frag_needed(router, Ipv4Addr::new(10, 0, 0, 9), third, 1500, 600));
    assert_eq!(h.stack.fib.pmtu(third, h.stack.core.jiffies), None);
    h.assert_pool_baseline();
}
