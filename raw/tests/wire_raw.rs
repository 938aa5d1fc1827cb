//! Raw IPv4 sockets between two blink stacks on the in-memory wire: protocol 89 both ways,
//! IP_HDRINCL, a copy for every matching socket, raw ICMP beside the stack's own echo
//! replies, no "protocol unreachable" once a raw socket took a packet, bounded queues, and
//! no mbuf in use at the end.

use std::net::Ipv4Addr;

use blink_ipv4::icmp::icmp_send_echo;
use blink_ipv4::{Stack, StackConfig};
use blink_netcore::drivers::wire::{wire_pair, WireConfig};
use blink_netcore::jiffies::{Clock, VirtualClock};
use blink_netcore::snmp::{DropReason, IcmpMib, IpMib};
use blink_netcore::sock::SockHandle;
use blink_netcore::{EthAddr, Mempool, MempoolConfig};
use blink_raw::*;

const A_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

struct Pair {
    pool: Mempool,
    vc: VirtualClock,
    a: Stack,
    b: Stack,
}

fn pair() -> Pair {
    let pool = Mempool::new(&MempoolConfig {
        n: 4096,
        ..Default::default()
    })
    .unwrap();
    let vc = VirtualClock::new();
    let clock = Clock::virtual_clock(&vc);
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
    raw_init(&mut a, RawConfig::default());
    raw_init(&mut b, RawConfig::default());
    Pair { pool, vc, a, b }
}

impl Pair {
    fn settle(&mut self) {
        for _ in 0..20 {
            if self.a.poll() + self.b.poll() == 0 {
                self.vc.advance_ms(1);
            }
        }
    }

    fn finish(mut self, socks: &[(bool, SockHandle)]) {
        for &(on_a, h) in socks {
            raw_close(if on_a { &mut self.a } else { &mut self.b }, h).unwrap();
        }
        self.settle();
        let pool = self.pool.clone();
        drop(self);
        assert_eq!(pool.in_use(), 0, "mbufs leaked");
    }
}

/// (source, protocol, payload after the IP header) of a received packet.
fn split(buf: &[u8]) -> (Ipv4Addr, u8, Vec<u8>) {
    let ip = etherparse::Ipv4HeaderSlice::from_slice(buf).expect("starts with an IP header");
    assert_eq!(ip.to_header().calc_header_checksum(), ip.header_checksum());
    assert_eq!(ip.total_len() as usize, buf.len());
    (ip.source_addr(), ip.protocol().0, buf[ip.slice().len()..].to_vec())
}

#[test]
fn protocol_89_both_ways() {
    let mut p = pair();
    let sa = raw_socket(&mut p.a, 89).unwrap();
    let sb = raw_socket(&mut p.b, 89).unwrap();
    raw_connect(&mut p.a, sa, B_IP).unwrap();
    assert_eq!(raw_sendmsg(&mut p.a, sa, b"hello ospf", None).unwrap(), 10);
    p.settle();
    let mut buf = [0u8; 1600];
    let r = raw_recvmsg(&mut p.b, sb, &mut buf).unwrap();
    assert_eq!(r.from, A_IP);
    assert_eq!(split(&buf[..r.len]), (A_IP, 89, b"hello ospf".to_vec()));
    let payload = split(&buf[..r.len]).2;
    let reply: Vec<u8> = payload.iter().rev().copied().collect();
    raw_sendmsg(&mut p.b, sb, &reply, Some(r.from)).unwrap();
    p.settle();
    let r = raw_recvmsg(&mut p.a, sa, &mut buf).unwrap();
    assert_eq!(split(&buf[..r.len]), (B_IP, 89, b"fpso olleh".to_vec()));
    // Nobody answered "protocol unreachable": the raw sockets took the packets.
    for s in [&p.a, &p.b] {
        assert_eq!(s.core.mib.icmp[IcmpMib::OutDestUnreachs], 0);
        assert_eq!(s.core.mib.ip[IpMib::InUnknownProtos], 0);
    }
    // Not connected and no address: an error, nothing sent.
    let lone = raw_socket(&mut p.a, 89).unwrap();
    assert_eq!(raw_sendmsg(&mut p.a, lone, b"x", None), Err(RawErr::NotConnected));
    p.finish(&[(true, sa), (true, lone), (false, sb)]);
}

#[test]
fn unhandled_protocol_without_raw_socket_is_still_unreachable() {
    let mut p = pair();
    let sb = raw_socket(&mut p.b, 89).unwrap();
    let sa = raw_socket(&mut p.a, 90).unwrap();
    raw_sendmsg(&mut p.a, sa, b"nobody speaks 90", Some(B_IP)).unwrap();
    p.settle();
    assert_eq!(p.b.core.mib.ip[IpMib::InUnknownProtos], 1);
    assert_eq!(p.b.core.mib.icmp[IcmpMib::OutDestUnreachs], 1);
    let mut buf = [0u8; 100];
    assert_eq!(raw_recvmsg(&mut p.b, sb, &mut buf), Err(RawErr::WouldBlock));
    p.finish(&[(true, sa), (false, sb)]);
}

#[test]
fn hdrincl_send_is_completed_by_the_stack() {
    let mut p = pair();
    let sa = raw_socket(&mut p.a, 89).unwrap();
    raw_set_hdrincl(&mut p.a, sa, true).unwrap();
    let sb = raw_socket(&mut p.b, 89).unwrap();
    // id 0, source 0, tot_len 0, checksum 0: the stack fills them, keeps TTL and TOS.
    let mut pkt = vec![0u8; 20];
    pkt[0] = 0x45;
    pkt[1] = 0x10;
    pkt[8] = 7;
    pkt[9] = 89;
    pkt[16..20].copy_from_slice(&B_IP.octets());
    pkt.extend_from_slice(b"handmade");
    raw_sendmsg(&mut p.a, sa, &pkt, None).unwrap();
    p.settle();
    let mut buf = [0u8; 200];
    let r = raw_recvmsg(&mut p.b, sb, &mut buf).unwrap();
    let ip = etherparse::Ipv4HeaderSlice::from_slice(&buf[..r.len]).unwrap();
    assert_eq!(ip.source_addr(), A_IP);
    assert_eq!(ip.destination_addr(), B_IP);
    assert_eq!(ip.total_len(), 28);
    assert_ne!(ip.identification(), 0);
    assert_eq!(ip.ttl(), 7);
    assert_eq!(ip.dcp().value() << 2 | ip.ecn().value(), 0x10);
    assert_eq!(ip.header_checksum(), ip.to_header().calc_header_checksum());
    assert_eq!(&buf[20..r.len], b"handmade");
    // Bad headers are errors, never panics, and leak nothing.
    let mut bad = pkt.clone();
    bad[0] = 0x65;
    assert!(matches!(
        raw_sendmsg(&mut p.a, sa, &bad, None),
        Err(RawErr::BadHeader(_))
    ));
    bad[0] = 0x4f;
    assert!(matches!(
        raw_sendmsg(&mut p.a, sa, &bad, None),
        Err(RawErr::BadHeader(_))
    ));
    assert!(matches!(
        raw_sendmsg(&mut p.a, sa, &pkt[..12], None),
        Err(RawErr::BadHeader(_))
    ));
    let mut big = pkt.clone();
    big.resize(1501, 0);
    assert!(matches!(
        raw_sendmsg(&mut p.a, sa, &big, None),
        Err(RawErr::MessageTooLong { .. })
    ));
    // No destination in the header and none given.
    let mut nodst = pkt.clone();
    nodst[16..20].fill(0);
    assert_eq!(raw_sendmsg(&mut p.a, sa, &nodst, None), Err(RawErr::NotConnected));
    assert_eq!(raw_sendmsg(&mut p.a, sa, &nodst, Some(B_IP)), Ok(28));
    p.settle();
    assert_eq!(raw_recvmsg(&mut p.b, sb, &mut buf).unwrap().len, 28);
    p.finish(&[(true, sa), (false, sb)]);
}

#[test]
fn every_matching_socket_gets_a_copy() {
    let mut p = pair();
    let one = raw_socket(&mut p.b, 89).unwrap();
    let two = raw_socket(&mut p.b, 89).unwrap();
    let bound = raw_socket(&mut p.b, 89).unwrap();
    raw_bind(&mut p.b, bound, B_IP).unwrap();
    let elsewhere = raw_socket(&mut p.b, 89).unwrap();
    raw_connect(&mut p.b, elsewhere, Ipv4Addr::new(10, 0, 0, 77)).unwrap();
    let other_proto = raw_socket(&mut p.b, 88).unwrap();
    assert_eq!(
        raw_bind(&mut p.b, other_proto, Ipv4Addr::new(10, 9, 9, 9)),
        Err(RawErr::AddrNotAvailable(Ipv4Addr::new(10, 9, 9, 9)))
    );
    let sa = raw_socket(&mut p.a, 89).unwrap();
    raw_sendmsg(&mut p.a, sa, b"to all", Some(B_IP)).unwrap();
    p.settle();
    let mut buf = [0u8; 100];
    for h in [one, two, bound] {
        let r = raw_recvmsg(&mut p.b, h, &mut buf).unwrap();
        assert_eq!(split(&buf[..r.len]).2, b"to all");
    }
    for h in [elsewhere, other_proto] {
        assert_eq!(raw_recvmsg(&mut p.b, h, &mut buf), Err(RawErr::WouldBlock));
    }
    // Zero-copy receive shares the buffer among the copies: check one of them.
    raw_sendmsg(&mut p.a, sa, b"again", Some(B_IP)).unwrap();
    p.settle();
    let (s1, _) = raw_recv_skb(&mut p.b, one).unwrap();
    let (s2, from) = raw_recv_skb(&mut p.b, two).unwrap();
    assert_eq!(from, A_IP);
    assert_eq!(
        s1.data().as_ptr(),
        s2.data().as_ptr(),
        "clones share the received buffer"
    );
    assert_eq!(&s2.data()[20..], b"again");
    drop((s1, s2));
    // Truncation.
    let mut small = [0u8; 22];
    let r = raw_recvmsg(&mut p.b, bound, &mut small).unwrap();
    assert_eq!((r.len, r.packet_len, r.truncated), (22, 25, true));
    p.finish(&[
        (true, sa),
        (false, one),
        (false, two),
        (false, bound),
        (false, elsewhere),
        (false, other_proto),
    ]);
}

#[test]
fn raw_icmp_sees_echo_requests_while_the_stack_answers() {
    let mut p = pair();
    let icmp_b = raw_socket(&mut p.b, 1).unwrap();
    for seq in 0..3 {
        icmp_send_echo(&mut p.a, B_IP, 0x77, seq, 32).unwrap();
        p.settle();
    }
    assert_eq!(p.a.icmp.echo_replies.len(), 3, "the stack still answers ping");
    assert_eq!(p.b.core.mib.icmp[IcmpMib::OutEchoReps], 3);
    let mut buf = [0u8; 200];
    for seq in 0..3u16 {
        let r = raw_recvmsg(&mut p.b, icmp_b, &mut buf).unwrap();
        let (from, proto, icmp) = split(&buf[..r.len]);
        assert_eq!((from, proto), (A_IP, 1));
        assert_eq!(icmp[0], 8, "echo request");
        assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), seq);
    }
    // A raw ICMP socket on A sees the replies too.
    let icmp_a = raw_socket(&mut p.a, 1).unwrap();
    icmp_send_echo(&mut p.a, B_IP, 0x77, 9, 8).unwrap();
    p.settle();
    let r = raw_recvmsg(&mut p.a, icmp_a, &mut buf).unwrap();
    assert_eq!(split(&buf[..r.len]).2[0], 0, "echo reply");
    let _ = raw_recvmsg(&mut p.b, icmp_b, &mut buf).unwrap();
    p.finish(&[(true, icmp_a), (false, icmp_b)]);
}

#[test]
fn receive_queue_is_bounded_and_counted() {
    let mut p = pair();
    let buf_size = p.pool.buf_size();
    let sb = raw_socket(&mut p.b, 89).unwrap();
    with_raw(&mut p.b, |r, _| r.socks.get_mut(sb).unwrap().rcvbuf = 2 * buf_size).unwrap();
    let sa = raw_socket(&mut p.a, 89).unwrap();
    for i in 0..6u8 {
        raw_sendmsg(&mut p.a, sa, &[i; 10], Some(B_IP)).unwrap();
    }
    p.settle();
    assert_eq!(p.b.core.mib.drops[DropReason::SocketRcvBuff], 4);
    assert_eq!(with_raw(&mut p.b, |r, _| r.socks.get(sb).unwrap().drops).unwrap(), 4);
    // Taken (so no unreachable) even when the queue was full.
    assert_eq!(p.b.core.mib.icmp[IcmpMib::OutDestUnreachs], 0);
    let mut buf = [0u8; 64];
    for i in 0..2u8 {
        let r = raw_recvmsg(&mut p.b, sb, &mut buf).unwrap();
        assert_eq!(&buf[20..r.len], &[i; 10]);
    }
    assert_eq!(raw_recvmsg(&mut p.b, sb, &mut buf), Err(RawErr::WouldBlock));
    // Packets still queued at close are freed with the socket.
    raw_sendmsg(&mut p.a, sa, b"left", Some(B_IP)).unwrap();
    p.settle();
    let mut evs = Vec::new();
    raw_events(&mut p.b, &mut evs).unwrap();
    assert!(evs.iter().any(|&(h, e)| h == sb && e & ev::READABLE != 0));
    p.finish(&[(true, sa), (false, sb)]);
}

#[test]
fn large_packets_are_fragmented_and_reassembled() {
    let mut p = pair();
    let sa = raw_socket(&mut p.a, 89).unwrap();
    let sb = raw_socket(&mut p.b, 89).unwrap();
    let mut buf = vec![0u8; 70_000];
    for n in [1481usize, 4000, 65_515] {
        let data: Vec<u8> = (0..n).map(|i| (i * 7 + n) as u8).collect();
        assert_eq!(raw_sendmsg(&mut p.a, sa, &data, Some(B_IP)), Ok(n));
        for _ in 0..5 {
            p.settle();
        }
        let r = raw_recvmsg(&mut p.b, sb, &mut buf).unwrap();
        assert_eq!(split(&buf[..r.len]), (A_IP, 89, data), "size {n}");
    }
    assert_eq!(p.a.core.mib.ip[IpMib::FragOKs], 3);
    // Past the 65,535-byte datagram: refused.
    assert!(matches!(
        raw_sendmsg(&mut p.a, sa, &vec![0u8; 65_516], Some(B_IP)),
        Err(RawErr::MessageTooLong { len: 65_536, .. })
    ));
    p.finish(&[(true, sa), (false, sb)]);
}
