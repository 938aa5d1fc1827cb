//! ICMP: echo replies (fields, checksum, zero copy), broadcasts, the rules on errors, rate
//! limiting, error delivery to transport protocols, and output routing.

mod common;

use std::any::Any;
use std::net::Ipv4Addr;

use blink_ipv4::icmp::{icmp_send, icmp_send_echo};
use blink_ipv4::neighbour::{neigh_add_static, NudState};
use blink_ipv4::{InetProtocol, Ipv4Error, Stack, StackConfig};
use blink_netcore::skbuff::{PacketType, SkBuff};
use blink_netcore::snmp::{DropReason, IcmpMib, IpMib};
use blink_netcore::EthAddr;
use common::*;
use etherparse::{icmpv4, ArpOperation, Icmpv4Type};

const GW_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

fn echo_reply_ids(f: &[u8]) -> (u16, u16) {
    match parse_icmp(f).icmp.icmp_type {
        Icmpv4Type::EchoReply(e) => (e.id, e.seq),
        t => panic!("not an echo reply: {t:?}"),
    }
}

/// An IP datagram of protocol 253 (no handler) from `src` to `dst`, in a frame to `eth_dst`.
fn unknown_proto_frame(eth_dst: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    eth_frame(eth_dst, PEER_MAC, ETH_P_IP, &ipv4_packet(src, dst, 253, &[0xee; 12]))
}

#[test]
fn echo_reply_fields() {
    let mut h = Harness::new().with_static_peer();
    let data = payload(56);
    let mut req = ping_frame(0x1234, 7, &data);
    req[15] = 0x10; // TOS: low delay
    fix_ip_csum(&mut req);
    let before = h.mib();
    let out = h.exchange(&req);
    assert_eq!(out.len(), 1);
    let r = parse_icmp(&out[0]);
    assert_eq!(r.eth.destination, PEER_MAC);
    assert_eq!(r.eth.source, STACK_MAC);
    assert_eq!(r.ip.source, STACK_IP.octets(), "src/dst swapped");
    assert_eq!(r.ip.destination, PEER_IP.octets());
    assert_eq!(r.ip.time_to_live, 64);
    assert_eq!(r.ip.total_len as usize, 20 + 8 + 56);
    assert_eq!(r.ip.dscp.value() << 2, 0x10, "TOS echoed");
    assert!(!r.ip.more_fragments && r.ip.fragment_offset.value() == 0);
    assert_eq!(echo_reply_ids(&out[0]), (0x1234, 7));
    assert_eq!(&out[0][34..36], &[0, 0], "type 0 code 0");
    assert_eq!(r.payload, data, "payload identical");
    let d = h.diff(&before);
    for k in [
        "Icmp.InMsgs",
        "Icmp.InEchos",
        "Icmp.OutMsgs",
        "Icmp.OutEchoReps",
        "Ip.InDelivers",
        "Ip.OutRequests",
    ] {
        assert_eq!(d.get(k), Some(&1), "{k} in {d:?}");
    }
    assert_eq!(drop_part(&d), counters(&[]));
    drop(out);
    h.assert_pool_baseline();
}

#[test]
fn echo_reply_checksum_with_nonzero_code_and_odd_lengths() {
    // The reply's checksum is patched incrementally; a request with code != 0 (RFC 792 says 0,
    // but senders vary) must still get a valid checksum. Odd payload lengths exercise the
    // checksum over the shared fragment.
    let mut h = Harness::new().with_static_peer();
    for (code, len) in [(0u8, 0usize), (1, 1), (0x80, 55), (0xff, 1471), (7, 1472)] {
        let data = payload(len);
        let icmp = icmp_msg(8, code, [0xbe, 0xef, 0, 9], &data);
        let frame = eth_frame(STACK_MAC, PEER_MAC, ETH_P_IP, &ipv4_packet(PEER_IP, STACK_IP, 1, &icmp));
        let out = h.exchange(&frame);
        assert_eq!(out.len(), 1, "code {code} len {len}");
        let r = parse_icmp(&out[0]); // checks both checksums
        assert_eq!(echo_reply_ids(&out[0]), (0xbeef, 9));
        assert_eq!(r.payload, data);
        assert_eq!(out[0][14 + 21], 0, "reply code is 0");
    }
    h.assert_pool_baseline();
}

#[test]
fn echo_reply_shares_the_request_buffer() {
    let mut h = Harness::new().with_static_peer();
    let data = payload(200);
    let req_buf = h.send(&ping_frame(9, 9, &data));
    h.poll();
    let skbs = h.recv_skbs();
    assert_eq!(skbs.len(), 1);
    let reply = &skbs[0];
    assert_eq!(reply.headlen(), 14 + 20 + 8, "only the headers are in the new buffer");
    assert_eq!(reply.frags().len(), 1);
    let f = &reply.frags()[0];
    assert_eq!(f.mbuf().buf_addr(), req_buf, "payload is the request's own buffer");
    assert_eq!(f.len(), 200);
    assert_eq!(f.bytes(), &data[..]);
    assert_eq!(f.mbuf().refcnt(), 1, "the request itself has been freed");
    assert_eq!(
        h.pool.in_use(),
        h.baseline() + 2,
        "reply header buffer + the shared request buffer"
    );
    assert_eq!(linearize(reply).len(), 14 + 20 + 8 + 200);
    drop(skbs);
    h.assert_pool_baseline();
}

#[test]
fn echo_with_ip_options_and_low_ttl_is_answered() {
    let mut h = Harness::new().with_static_peer();
    // IHL 6: one 4-byte option (NOP NOP NOP EOL); TTL 1 (a host does not drop low TTLs).
    let icmp = icmp_msg(8, 0, [0, 1, 0, 2], b"opts");
    let mut ip = ipv4_packet(PEER_IP, STACK_IP, 1, &icmp);
    ip.splice(20..20, [1, 1, 1, 0]);
    ip[0] = 0x46;
    let tot = ip.len() as u16;
    ip[2..4].copy_from_slice(&tot.to_be_bytes());
    ip[8] = 1;
    let mut frame = eth_frame(STACK_MAC, PEER_MAC, ETH_P_IP, &ip);
    fix_ip_csum(&mut frame);
    let out = h.exchange(&frame);
    assert_eq!(out.len(), 1);
    let r = parse_icmp(&out[0]);
    assert_eq!(r.ip.header_len(), 20, "no options on the reply");
    assert_eq!(r.ip.time_to_live, 64);
    assert_eq!(echo_reply_ids(&out[0]), (1, 2));
    assert_eq!(r.payload, b"opts");
    drop(out);
    h.assert_pool_baseline();
}

#[test]
fn broadcast_echo_is_ignored_by_default() {
    let mut h = Harness::new().with_static_peer();
    let mut cases = Vec::new();
    for (mac, dst) in [
        (BCAST_MAC, SUBNET_BCAST),
        (BCAST_MAC, Ipv4Addr::BROADCAST),
        (STACK_MAC, SUBNET_BCAST),
        ([0x01, 0, 0x5e, 0, 0, 1], STACK_IP),
    ] {
        let mut f = echo_request(PEER_IP, dst, 5, 5, b"smurf");
        f[0..6].copy_from_slice(&mac);
        cases.push(f);
    }
    for f in &cases {
        let before = h.mib();
        assert!(h.exchange(f).is_empty(), "{f:02x?}");
        let d = h.diff(&before);
        assert_eq!(d.get("Icmp.InEchos"), Some(&1));
        assert_eq!(d.get("Icmp.OutEchoReps"), None);
        assert_eq!(drop_part(&d), counters(&[]));
    }
    h.assert_pool_baseline();

    // With icmp_echo_ignore_broadcasts off they are answered, from our unicast address.
    let mut h = Harness::with_config(StackConfig {
        icmp_echo_ignore_broadcasts: false,
        ..Default::default()
    })
    .with_static_peer();
    for f in &cases {
        let out = h.exchange(f);
        assert_eq!(out.len(), 1);
        let r = parse_icmp(&out[0]);
        assert_eq!(r.ip.source, STACK_IP.octets());
        assert_eq!(r.eth.destination, PEER_MAC);
        assert_eq!(r.payload, b"smurf");
    }
    h.assert_pool_baseline();
}

#[test]
fn no_protocol_unreachable_for_broadcasts() {
    let mut h = Harness::new().with_static_peer();
    for (mac, dst) in [
        (BCAST_MAC, SUBNET_BCAST),
        (BCAST_MAC, STACK_IP),
        (STACK_MAC, Ipv4Addr::BROADCAST),
    ] {
        let before = h.mib();
        assert!(h.exchange(&unknown_proto_frame(mac, PEER_IP, dst)).is_empty());
        let d = h.diff(&before);
        assert_eq!(d.get("Ip.InUnknownProtos"), Some(&1));
        assert_eq!(d.get("Icmp.OutMsgs"), None);
        assert_eq!(drop_part(&d), counters(&[("Drop.IpNoProto", 1)]));
    }
    h.assert_pool_baseline();
}

/// A received datagram as icmp_send sees it: data at the transport header, network header at
/// the IP header.
fn rx_skb(h: &mut Harness, ip: &[u8], pkt_type: PacketType) -> SkBuff {
    let mut skb = SkBuff::from_slice(&mut h.cache, ip).unwrap();
    skb.skb_reset_network_header();
    let ihl = (ip[0] & 0x0f) as usize * 4;
    assert!(skb.skb_pull(ihl));
    skb.skb_reset_transport_header();
    skb.pkt_type = pkt_type;
    skb
}

#[test]
fn icmp_errors_are_never_sent_about_errors_broadcasts_or_fragments() {
    let mut h = Harness::new().with_static_peer();
    let quoted = ipv4_packet(STACK_IP, PEER_IP, 17, &[0; 8]);
    let forbidden: Vec<(&str, Vec<u8>, PacketType)> = vec![
        (
            "ICMP dest unreach",
            ipv4_packet(PEER_IP, STACK_IP, 1, &icmp_msg(3, 3, [0; 4], &quoted)),
            PacketType::Host,
        ),
        (
            "ICMP time exceeded",
            ipv4_packet(PEER_IP, STACK_IP, 1, &icmp_msg(11, 0, [0; 4], &quoted)),
            PacketType::Host,
        ),
        (
            "ICMP parameter problem",
            ipv4_packet(PEER_IP, STACK_IP, 1, &icmp_msg(12, 0, [0; 4], &quoted)),
            PacketType::Host,
        ),
        (
            "link broadcast",
            ipv4_packet(PEER_IP, STACK_IP, 253, &[0; 8]),
            PacketType::Broadcast,
        ),
        (
            "link multicast",
            ipv4_packet(PEER_IP, STACK_IP, 253, &[0; 8]),
            PacketType::Multicast,
        ),
        (
            "subnet broadcast",
            ipv4_packet(PEER_IP, SUBNET_BCAST, 253, &[0; 8]),
            PacketType::Host,
        ),
        (
            "limited broadcast",
            ipv4_packet(PEER_IP, Ipv4Addr::BROADCAST, 253, &[0; 8]),
            PacketType::Host,
        ),
        (
            "multicast dst",
            ipv4_packet(PEER_IP, Ipv4Addr::new(224, 0, 0, 9), 253, &[0; 8]),
            PacketType::Host,
        ),
        (
            "source 0.0.0.0",
            ipv4_packet(Ipv4Addr::UNSPECIFIED, STACK_IP, 253, &[0; 8]),
            PacketType::Host,
        ),
        (
            "source broadcast",
            ipv4_packet(Ipv4Addr::BROADCAST, STACK_IP, 253, &[0; 8]),
            PacketType::Host,
        ),
        (
            "non-first fragment",
            {
                let mut p = ipv4_packet(PEER_IP, STACK_IP, 253, &[0; 8]);
                p[6..8].copy_from_slice(&100u16.to_be_bytes());
                p
            },
            PacketType::Host,
        ),
    ];
    for (what, ip, pt) in forbidden {
        let skb = rx_skb(&mut h, &ip, pt);
        let before = h.mib();
        icmp_send(&mut h.stack, &skb, 3, 2, 0);
        drop(skb);
        h.stack.flush_tx();
        assert!(h.recv().is_empty(), "{what}: no ICMP error may be sent");
        assert_eq!(h.diff(&before), counters(&[]), "{what}");
    }
    // Informational ICMP (an echo request) may be answered with an error.
    let ip = ipv4_packet(PEER_IP, STACK_IP, 1, &icmp_msg(8, 0, [0; 4], b"x"));
    let skb = rx_skb(&mut h, &ip, PacketType::Host);
    icmp_send(&mut h.stack, &skb, 3, 3, 0);
    drop(skb);
    h.stack.flush_tx();
    let out = h.recv();
    assert_eq!(out.len(), 1);
    match parse_icmp(&out[0]).icmp.icmp_type {
        Icmpv4Type::DestinationUnreachable(icmpv4::DestUnreachableHeader::Port) => {}
        t => panic!("{t:?}"),
    }
    drop(out);
    h.assert_pool_baseline();
}

#[test]
fn error_rate_limit() {
    let mut h = Harness::with_config(StackConfig {
        icmp_msgs_per_sec: 10,
        icmp_msgs_burst: 5,
        ..Default::default()
    })
    .with_static_peer();
    let frame = unknown_proto_frame(STACK_MAC, PEER_IP, STACK_IP);
    let burst = |h: &mut Harness, n: usize| -> usize {
        let mut sent = 0;
        for _ in 0..n {
            sent += h.exchange(&frame).len();
        }
        sent
    };
    assert_eq!(burst(&mut h, 20), 5, "the burst");
    assert_eq!(h.stack.core.mib.icmp[IcmpMib::OutRateLimitGlobal], 15);
    assert_eq!(h.stack.core.mib.icmp[IcmpMib::OutDestUnreachs], 5);
    // 10 per second: one token per 100 ms.
    h.clock.advance_ms(99);
    assert_eq!(burst(&mut h, 3), 0);
    h.clock.advance_ms(1);
    assert_eq!(burst(&mut h, 3), 1);
    // A long pause refills to the burst, not beyond.
    h.clock.advance_ms(60_000);
    assert_eq!(burst(&mut h, 20), 5);
    assert_eq!(h.stack.core.mib.icmp[IcmpMib::OutRateLimitGlobal], 15 + 3 + 2 + 15);
    assert_eq!(h.stack.core.mib.ip[IpMib::InUnknownProtos], 46);
    assert_eq!(h.drops(DropReason::IpNoProto), 46, "every datagram is still counted");
    // Echo replies are not rate limited.
    for seq in 0..50 {
        assert_eq!(h.exchange(&ping_frame(3, seq, b"fast")).len(), 1);
    }
    h.assert_pool_baseline();
}

/// (type, code, info, quoted bytes) of one error handed to err_handler.
type IcmpErr = (u8, u8, u32, Vec<u8>);

/// A transport protocol that records the errors ICMP hands it.
#[derive(Default)]
struct Recorder {
    errors: Vec<IcmpErr>,
    packets: usize,
}

impl InetProtocol for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }
    fn handler(&mut self, _stack: &mut Stack, skb: SkBuff) {
        self.packets += 1;
        drop(skb);
    }
    fn err_handler(&mut self, _stack: &mut Stack, icmp_type: u8, code: u8, info: u32, inner: &[u8]) {
        self.errors.push((icmp_type, code, info, inner.to_vec()));
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

fn recorder(h: &mut Harness) -> (Vec<IcmpErr>, usize) {
    h.stack
        .with_protocol(17, |_, p| {
            let r = p.as_any_mut().downcast_mut::<Recorder>().unwrap();
            (r.errors.clone(), r.packets)
        })
        .unwrap()
}

#[test]
fn errors_reach_the_quoted_protocol_with_its_transport_header() {
    let mut h = Harness::new().with_static_peer();
    h.stack.inet_add_protocol(17, Box::<Recorder>::default()).unwrap();
    assert_eq!(
        h.stack.inet_add_protocol(17, Box::<Recorder>::default()).unwrap_err(),
        Ipv4Error::ProtocolTaken(17)
    );
    // A datagram of a registered protocol is delivered, not answered.
    let udp = eth_frame(
        STACK_MAC,
        PEER_MAC,
        ETH_P_IP,
        &ipv4_packet(PEER_IP, STACK_IP, 17, &[1; 12]),
    );
    assert!(h.exchange(&udp).is_empty());
    assert_eq!(recorder(&mut h).1, 1);

    // Port unreachable quoting our UDP datagram (IP header + 8 bytes): delivered.
    let quoted = ipv4_packet(STACK_IP, PEER_IP, 17, &[0x11; 8]);
    let msg = icmp_msg(3, 3, [0, 0, 0x05, 0xdc], &quoted);
    let f = eth_frame(STACK_MAC, PEER_MAC, ETH_P_IP, &ipv4_packet(PEER_IP, STACK_IP, 1, &msg));
    assert!(h.exchange(&f).is_empty());
    let (errs, _) = recorder(&mut h);
    assert_eq!(errs.len(), 1);
    assert_eq!((errs[0].0, errs[0].1, errs[0].2), (3, 3, 0x05dc));
    assert_eq!(errs[0].3, quoted);

    // A quote without the 8 transport bytes, or with a bad IHL, never reaches err_handler.
    let before = h.mib();
    for q in [ipv4_packet(STACK_IP, PEER_IP, 17, &[]), {
        let mut q = ipv4_packet(STACK_IP, PEER_IP, 17, &[0x11; 8]);
        q[0] = 0x44;
        q
    }] {
        let msg = icmp_msg(3, 3, [0; 4], &q);
        let f = eth_frame(STACK_MAC, PEER_MAC, ETH_P_IP, &ipv4_packet(PEER_IP, STACK_IP, 1, &msg));
        assert!(h.exchange(&f).is_empty());
    }
    assert_eq!(recorder(&mut h).0.len(), 1, "short quotes are not delivered");
    let d = h.diff(&before);
    assert_eq!(d.get("Icmp.InErrors"), Some(&2));
    assert_eq!(drop_part(&d), counters(&[("Drop.IcmpHdr", 2)]));
    h.assert_pool_baseline();
}

#[test]
fn echo_replies_are_recorded() {
    let mut h = Harness::new().with_static_peer();
    h.clock.advance_ms(1234);
    h.poll();
    icmp_send_echo(&mut h.stack, PEER_IP, 0x55, 3, 10).unwrap();
    h.stack.flush_tx();
    let out = h.recv();
    assert_eq!(out.len(), 1);
    let req = parse_icmp(&out[0]);
    let mut reply = Vec::new();
    etherparse::PacketBuilder::ethernet2(PEER_MAC, STACK_MAC)
        .ipv4(PEER_IP.octets(), STACK_IP.octets(), 64)
        .icmpv4_echo_reply(0x55, 3)
        .write(&mut reply, &req.payload)
        .unwrap();
    h.clock.advance_ms(2);
    h.inject(&reply);
    let r = h.stack.icmp.echo_replies.back().copied().expect("recorded");
    assert_eq!((r.from, r.id, r.seq, r.len), (PEER_IP, 0x55, 3, 10));
    assert_eq!(r.tstamp, 1_236_000_000);
    assert_eq!(h.stack.core.mib.icmp[IcmpMib::InEchoReps], 1);
    assert_eq!(h.stack.core.mib.icmp[IcmpMib::OutEchos], 1);
    drop(out);
    h.assert_pool_baseline();
}

#[test]
fn no_route_is_an_error_and_counted() {
    let mut h = Harness::new();
    let dst = Ipv4Addr::new(192, 168, 7, 7);
    let before = h.mib();
    assert_eq!(icmp_send_echo(&mut h.stack, dst, 1, 1, 8), Err(Ipv4Error::NoRoute(dst)));
    h.stack.flush_tx();
    assert!(h.recv().is_empty());
    let d = h.diff(&before);
    assert_eq!(d.get("Ip.OutNoRoutes"), Some(&1));
    assert_eq!(d.get("Icmp.OutEchos"), None);
    assert_eq!(drop_part(&d), counters(&[("Drop.IpOutNoRoutes", 1)]));
    h.assert_pool_baseline();
}

#[test]
fn oversized_echo_is_fragmented_and_over_65535_refused() {
    let mut h = Harness::new().with_static_peer();
    // One byte over the MTU: two fragments now, not EMSGSIZE.
    icmp_send_echo(&mut h.stack, PEER_IP, 1, 1, 1473).unwrap();
    h.stack.flush_tx();
    let out = h.recv();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].len(), 1514);
    assert_eq!(out[1].len(), 14 + 20 + 1);
    assert_eq!(h.stack.core.mib.ip[IpMib::FragOKs], 1);
    assert_eq!(h.stack.core.mib.ip[IpMib::FragCreates], 2);
    // Beyond the 65,535-byte datagram: refused before anything is built.
    let before = h.mib();
    assert_eq!(
        icmp_send_echo(&mut h.stack, PEER_IP, 1, 2, 65_508),
        Err(Ipv4Error::MessageTooLong {
            len: 65_536,
            mtu: 65_535
        })
    );
    assert_eq!(drop_part(&h.diff(&before)), counters(&[]));
    // The largest that fits one frame still leaves as one 1514-byte frame.
    icmp_send_echo(&mut h.stack, PEER_IP, 1, 3, 1472).unwrap();
    h.stack.flush_tx();
    let out = h.recv();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].len(), 1514);
    drop(out);
    h.assert_pool_baseline();
}

#[test]
fn default_gateway_is_resolved_for_off_link_destinations() {
    let mut h = Harness::new();
    // A gateway must be on a connected network.
    match h
        .stack
        .add_route("0.0.0.0/0".parse().unwrap(), Ipv4Addr::new(192, 168, 0, 1))
    {
        Err(Ipv4Error::Config { field, .. }) => assert_eq!(field, "gw"),
        r => panic!("{r:?}"),
    }
    h.stack.add_route("0.0.0.0/0".parse().unwrap(), GW_IP).unwrap();
    let far = Ipv4Addr::new(8, 8, 8, 8);
    icmp_send_echo(&mut h.stack, far, 0xabcd, 1, 32).unwrap();
    h.stack.flush_tx();
    let out = h.recv();
    assert_eq!(out.len(), 1);
    let (eth, a) = parse_arp(&out[0]);
    assert_eq!(eth.destination, BCAST_MAC);
    assert_eq!(a.operation, ArpOperation::REQUEST);
    assert_eq!(a.target_ipv4_addr(), GW_IP, "ARP for the gateway, not the destination");
    assert_eq!(a.sender_ipv4_addr(), STACK_IP);
    assert!(h.stack.neigh.lookup(far).is_none());
    // The gateway answers; the ping leaves to its MAC, still addressed to 8.8.8.8.
    let out = h.exchange(&arp_reply(GW_MAC, GW_IP));
    assert_eq!(out.len(), 1);
    let r = parse_icmp(&out[0]);
    assert_eq!(r.eth.destination, GW_MAC);
    assert_eq!(r.ip.destination, far.octets());
    assert_eq!(r.ip.source, STACK_IP.octets());
    assert_eq!(h.stack.neigh.lookup(GW_IP).map(|n| n.state), Some(NudState::Reachable));
    // An on-link destination still goes direct.
    neigh_add_static(&mut h.stack, PEER_IP, EthAddr(PEER_MAC), 0);
    icmp_send_echo(&mut h.stack, PEER_IP, 0xabcd, 2, 8).unwrap();
    h.stack.flush_tx();
    let out2 = h.recv();
    assert_eq!(parse_icmp(&out2[0]).eth.destination, PEER_MAC);
    // Replies to off-link pingers go through the gateway too.
    let mut f = echo_request(far, STACK_IP, 4, 4, b"far");
    f[6..12].copy_from_slice(&GW_MAC);
    let out3 = h.exchange(&f);
    assert_eq!(out3.len(), 1);
    let r = parse_icmp(&out3[0]);
    assert_eq!(r.eth.destination, GW_MAC);
    assert_eq!(r.ip.destination, far.octets());
    drop((out, out2, out3));
    h.assert_pool_baseline();
}

#[test]
fn pings_to_broadcast_addresses_leave_as_link_broadcasts() {
    let mut h = Harness::new();
    for (seq, dst) in [(1u16, SUBNET_BCAST), (2, Ipv4Addr::BROADCAST)] {
        icmp_send_echo(&mut h.stack, dst, 0xb, seq, 4).unwrap();
        h.stack.flush_tx();
        let out = h.recv();
        assert_eq!(out.len(), 1, "no ARP for a broadcast");
        let r = parse_icmp(&out[0]);
        assert_eq!(r.eth.destination, BCAST_MAC);
        assert_eq!(r.ip.destination, dst.octets());
        assert_eq!(r.ip.source, STACK_IP.octets());
    }
    assert!(h.stack.neigh.is_empty());
    h.assert_pool_baseline();
}

/// Put `frame` on the wire as a multi-segment skb: the bytes before the first cut in the
/// linear area, each further piece in a fragment of its own mbuf.
fn send_segmented(h: &mut Harness, frame: &[u8], cuts: &[usize]) {
    use blink_netcore::netdevice::{Burst, NetDevice};
    use blink_netcore::skbuff::Frag;
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(frame.len());
    let mut skb = SkBuff::from_slice(&mut h.cache, &frame[bounds[0]..bounds[1]]).unwrap();
    for w in bounds[1..].windows(2) {
        let mut m = h.cache.alloc().unwrap();
        assert!(m.append_slice(&frame[w[0]..w[1]]));
        assert!(skb.skb_add_frag(Frag::from_mbuf(m)).is_ok());
    }
    assert_eq!(linearize(&skb), frame);
    let mut burst = Burst::new();
    burst.push(skb);
    assert_eq!(h.peer.tx_burst(0, &mut burst), 1);
}

#[test]
fn echo_request_split_across_segments() {
    // Devices may split a frame anywhere (headers included); the stack must pull what it
    // needs and answer exactly as for a linear frame.
    let mut h = Harness::new().with_static_peer();
    let data = payload(100);
    let mut frame = ping_frame(0x5e9, 1, &data);
    for cuts in [
        vec![14],
        vec![20],
        vec![14 + 10],
        vec![34],
        vec![34 + 3],
        vec![42],
        vec![42 + 51],
        vec![14, 34, 42],
        vec![1, 2, 3, 40, 41, 100],
    ] {
        send_segmented(&mut h, &frame, &cuts);
        h.poll();
        let out = h.recv();
        assert_eq!(out.len(), 1, "cuts {cuts:?}");
        assert_eq!(echo_reply_ids(&out[0]), (0x5e9, 1), "cuts {cuts:?}");
        assert_eq!(parse_icmp(&out[0]).payload, data, "cuts {cuts:?}");
        assert_eq!(h.total_drops(), 0, "cuts {cuts:?}");
    }
    // Ethernet padding that sits in a fragment is trimmed too.
    frame = ping_frame(0x5e9, 2, b"ab");
    let ip_len = frame.len() - 14;
    frame.resize(60, 0x77);
    send_segmented(&mut h, &frame, &[30, 44]);
    h.poll();
    let out = h.recv();
    assert_eq!(out.len(), 1);
    let r = parse_icmp(&out[0]);
    assert_eq!(r.ip.total_len as usize, ip_len);
    assert_eq!(r.payload, b"ab");
    drop(out);
    h.assert_pool_baseline();
}
