//! Bad input: every malformed frame is dropped with the right named counter, never panics, and
//! leaves the mbuf pool where it was. Ends with a seeded fuzz over mutated ARP/ICMP frames.

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use blink_netcore::snmp::{DropReason, IcmpMib, IpMib};
use common::*;
use etherparse::{icmpv4, ArpOperation, Icmpv4Type, Ipv4Header};

/// Inject `frame`, expect no answer, and expect exactly `want` as the changed counters.
fn expect_dropped(frame: &[u8], want: &[(&str, u64)]) {
    let mut h = Harness::new().with_static_peer();
    let before = h.mib();
    let out = h.exchange(frame);
    assert!(out.is_empty(), "unexpected answer: {out:02x?}");
    assert_eq!(h.diff(&before), counters(want), "frame {frame:02x?}");
    h.assert_pool_baseline();
}

fn ping_ip_part() -> Vec<u8> {
    ping_frame(0x4242, 1, b"abcdefgh")[14..].to_vec()
}

/// The peer's echo request with its IPv4 header edited by `f` (checksum fixed afterwards
/// unless `f` is about the checksum).
fn edited_ping(f: impl FnOnce(&mut Vec<u8>), fix_csum: bool) -> Vec<u8> {
    let mut frame = ping_frame(0x4242, 1, b"abcdefgh");
    f(&mut frame);
    if fix_csum {
        fix_ip_csum(&mut frame);
    }
    frame
}

#[test]
fn truncated_ethernet_header() {
    for len in [0usize, 1, 6, 13] {
        let frame = ping_frame(1, 1, b"")[..len].to_vec();
        expect_dropped(&frame, &[("Drop.PktTooSmall", 1)]);
    }
}

#[test]
fn unknown_ethertype() {
    let frame = eth_frame(STACK_MAC, PEER_MAC, 0x88b5, &[0u8; 46]);
    expect_dropped(&frame, &[("Drop.UnhandledProto", 1)]);
    // IPv6 too: blink has no handler for it.
    let frame = eth_frame(STACK_MAC, PEER_MAC, 0x86dd, &[0x60; 46]);
    expect_dropped(&frame, &[("Drop.UnhandledProto", 1)]);
}

#[test]
fn frame_for_another_mac() {
    let mut frame = ping_frame(1, 1, b"x");
    frame[0..6].copy_from_slice(&OTHER_MAC);
    expect_dropped(&frame, &[("Drop.OtherHost", 1)]);
}

#[test]
fn truncated_ipv4_header() {
    for len in [0usize, 1, 19] {
        let frame = eth_frame(STACK_MAC, PEER_MAC, ETH_P_IP, &ping_ip_part()[..len]);
        expect_dropped(
            &frame,
            &[("Ip.InReceives", 1), ("Ip.InHdrErrors", 1), ("Drop.PktTooSmall", 1)],
        );
    }
}

#[test]
fn ip_version_6_in_ipv4_frame() {
    let frame = edited_ping(|f| f[14] = 0x65, true);
    expect_dropped(
        &frame,
        &[("Ip.InReceives", 1), ("Ip.InHdrErrors", 1), ("Drop.IpInHdr", 1)],
    );
}

#[test]
fn ihl_below_five() {
    for ihl in 0..5u8 {
        let frame = edited_ping(|f| f[14] = 0x40 | ihl, false);
        expect_dropped(
            &frame,
            &[("Ip.InReceives", 1), ("Ip.InHdrErrors", 1), ("Drop.IpInHdr", 1)],
        );
    }
}

#[test]
fn ihl_larger_than_packet() {
    // IHL 15 = 60 bytes, the packet has 36: the header cannot be pulled.
    let frame = edited_ping(|f| f[14] = 0x4f, false);
    expect_dropped(
        &frame,
        &[("Ip.InReceives", 1), ("Ip.InHdrErrors", 1), ("Drop.PktTooSmall", 1)],
    );
}

#[test]
fn bad_ip_header_checksum() {
    let frame = edited_ping(|f| f[24] ^= 0x01, false);
    expect_dropped(
        &frame,
        &[
            ("Ip.InReceives", 1),
            ("Ip.InHdrErrors", 1),
            ("Ip.InCsumErrors", 1),
            ("Drop.IpCsum", 1),
        ],
    );
}

#[test]
fn total_length_larger_than_frame() {
    let frame = edited_ping(|f| f[16..18].copy_from_slice(&100u16.to_be_bytes()), true);
    expect_dropped(
        &frame,
        &[("Ip.InReceives", 1), ("Ip.InTruncatedPkts", 1), ("Drop.PktTooSmall", 1)],
    );
}

#[test]
fn total_length_smaller_than_header() {
    for tot in [0u16, 10, 19] {
        let frame = edited_ping(|f| f[16..18].copy_from_slice(&tot.to_be_bytes()), true);
        expect_dropped(
            &frame,
            &[("Ip.InReceives", 1), ("Ip.InHdrErrors", 1), ("Drop.IpInHdr", 1)],
        );
    }
}

#[test]
fn ethernet_padding_is_trimmed() {
    // 28-byte IP packet (an 8-byte echo with no data) padded to the 60-byte minimum frame
    // with non-zero junk that must not reach the reply or the ICMP checksum.
    for data in [&b""[..], &b"xyz"[..]] {
        let mut h = Harness::new().with_static_peer();
        let mut frame = ping_frame(0x1111, 7, data);
        let ip_len = frame.len() - 14;
        frame.resize(60, 0xa5);
        let out = h.exchange(&frame);
        assert_eq!(out.len(), 1, "one echo reply");
        let r = parse_icmp(&out[0]);
        assert_eq!(r.ip.total_len as usize, ip_len);
        assert_eq!(out[0].len(), 14 + ip_len, "reply carries no padding");
        assert_eq!(r.payload, data);
        match r.icmp.icmp_type {
            Icmpv4Type::EchoReply(e) => assert_eq!((e.id, e.seq), (0x1111, 7)),
            t => panic!("not an echo reply: {t:?}"),
        }
        assert_eq!(h.total_drops(), 0);
        drop(out);
        h.assert_pool_baseline();
    }
}

#[test]
fn packet_for_another_address() {
    let frame = echo_request(PEER_IP, Ipv4Addr::new(10, 0, 0, 3), 1, 1, b"x");
    expect_dropped(
        &frame,
        &[("Ip.InReceives", 1), ("Ip.InAddrErrors", 1), ("Drop.IpInAddrErrors", 1)],
    );
    let frame = echo_request(PEER_IP, Ipv4Addr::new(192, 168, 1, 1), 1, 1, b"x");
    expect_dropped(
        &frame,
        &[("Ip.InReceives", 1), ("Ip.InAddrErrors", 1), ("Drop.IpInAddrErrors", 1)],
    );
}

#[test]
fn martian_sources() {
    for src in [
        Ipv4Addr::BROADCAST,
        SUBNET_BCAST,
        Ipv4Addr::new(224, 0, 0, 1),
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::new(0, 1, 2, 3),
        STACK_IP,
    ] {
        let frame = echo_request(src, STACK_IP, 1, 1, b"x");
        expect_dropped(
            &frame,
            &[("Ip.InReceives", 1), ("Ip.InAddrErrors", 1), ("Drop.IpInAddrErrors", 1)],
        );
    }
}

#[test]
fn zero_source_to_limited_broadcast_is_not_martian() {
    // A DHCP-style 0.0.0.0 -> 255.255.255.255 datagram is accepted (Linux: brd_input); an
    // echo request like that is then ignored as a broadcast, without a drop.
    let mut h = Harness::new().with_static_peer();
    let mut frame = echo_request(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 1, 1, b"x");
    frame[0..6].copy_from_slice(&BCAST_MAC);
    let before = h.mib();
    let out = h.exchange(&frame);
    assert!(out.is_empty());
    let d = h.diff(&before);
    assert_eq!(d.get("Icmp.InEchos"), Some(&1));
    assert_eq!(drop_part(&d), counters(&[]));
    h.assert_pool_baseline();
}

#[test]
fn unknown_protocol_gets_protocol_unreachable() {
    let mut h = Harness::new().with_static_peer();
    let payload: Vec<u8> = (0..40u8).collect();
    let ip = ipv4_packet(PEER_IP, STACK_IP, 253, &payload);
    let frame = eth_frame(STACK_MAC, PEER_MAC, ETH_P_IP, &ip);
    let before = h.mib();
    let out = h.exchange(&frame);
    let d = h.diff(&before);
    assert_eq!(d.get("Ip.InUnknownProtos"), Some(&1));
    assert_eq!(d.get("Icmp.OutDestUnreachs"), Some(&1));
    assert_eq!(d.get("Icmp.OutMsgs"), Some(&1));
    assert_eq!(drop_part(&d), counters(&[("Drop.IpNoProto", 1)]));
    assert_eq!(out.len(), 1);
    let r = parse_icmp(&out[0]);
    assert_eq!(r.eth.destination, PEER_MAC);
    assert_eq!(r.eth.source, STACK_MAC);
    assert_eq!(r.ip.source, STACK_IP.octets());
    assert_eq!(r.ip.destination, PEER_IP.octets());
    assert_eq!(r.ip.dscp.value() << 2, 0xc0, "sent with IPTOS_PREC_INTERNETCONTROL");
    match r.icmp.icmp_type {
        Icmpv4Type::DestinationUnreachable(icmpv4::DestUnreachableHeader::Protocol) => {}
        t => panic!("expected protocol unreachable, got {t:?}"),
    }
    // Type 3 code 2 on the wire, and the whole offending datagram quoted (it fits in 576).
    let icmp_off = 14 + r.ip.header_len();
    assert_eq!(&out[0][icmp_off..icmp_off + 2], &[3, 2]);
    assert_eq!(r.payload, ip, "the quote is the original IP header and data");
    let (quoted, rest) = Ipv4Header::from_slice(&r.payload).expect("quoted header parses");
    assert_eq!(quoted.protocol.0, 253);
    assert_eq!(quoted.source, PEER_IP.octets());
    assert_eq!(rest[..8], payload[..8]);
    drop(out);
    h.assert_pool_baseline();
}

#[test]
fn icmp_bad_checksum() {
    let frame = edited_ping(|f| f[14 + 20 + 8] ^= 0xff, false);
    expect_dropped(
        &frame,
        &[
            ("Ip.InReceives", 1),
            ("Ip.InDelivers", 1),
            ("Icmp.InMsgs", 1),
            ("Icmp.InErrors", 1),
            ("Icmp.InCsumErrors", 1),
            ("Drop.IcmpCsum", 1),
        ],
    );
}

#[test]
fn truncated_icmp() {
    // A 4-byte "ICMP header" whose checksum is right: too short for the 8-byte header.
    let mut m = vec![8u8, 0, 0, 0];
    let c = inet_csum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    let frame = eth_frame(STACK_MAC, PEER_MAC, ETH_P_IP, &ipv4_packet(PEER_IP, STACK_IP, 1, &m));
    expect_dropped(
        &frame,
        &[
            ("Ip.InReceives", 1),
            ("Ip.InDelivers", 1),
            ("Icmp.InMsgs", 1),
            ("Icmp.InErrors", 1),
            ("Drop.IcmpHdr", 1),
        ],
    );
    // An empty ICMP message fails the checksum (the folded sum of nothing is 0xffff, as in
    // Linux's skb_checksum_simple_validate).
    let frame = eth_frame(STACK_MAC, PEER_MAC, ETH_P_IP, &ipv4_packet(PEER_IP, STACK_IP, 1, &[]));
    expect_dropped(
        &frame,
        &[
            ("Ip.InReceives", 1),
            ("Ip.InDelivers", 1),
            ("Icmp.InMsgs", 1),
            ("Icmp.InErrors", 1),
            ("Icmp.InCsumErrors", 1),
            ("Drop.IcmpCsum", 1),
        ],
    );
}

#[test]
fn truncated_icmp_error_quote() {
    // A destination unreachable that quotes less than an IP header.
    let m = icmp_msg(3, 1, [0; 4], &[0x45, 0, 0, 20]);
    let frame = eth_frame(STACK_MAC, PEER_MAC, ETH_P_IP, &ipv4_packet(PEER_IP, STACK_IP, 1, &m));
    expect_dropped(
        &frame,
        &[
            ("Ip.InReceives", 1),
            ("Ip.InDelivers", 1),
            ("Icmp.InMsgs", 1),
            ("Icmp.InDestUnreachs", 1),
            ("Icmp.InErrors", 1),
            ("Drop.IcmpHdr", 1),
        ],
    );
}

#[test]
fn truncated_arp() {
    let full = arp_request(PEER_IP, STACK_IP);
    for len in [14usize, 15, 14 + 8, 14 + 27] {
        expect_dropped(&full[..len], &[("Drop.ArpHdr", 1)]);
    }
}

#[test]
fn arp_with_wrong_hardware_type() {
    let mut frame = arp_request(PEER_IP, STACK_IP);
    frame[14..16].copy_from_slice(&6u16.to_be_bytes()); // IEEE 802
    expect_dropped(&frame, &[("Drop.ArpHdr", 1)]);
    let mut frame = arp_request(PEER_IP, STACK_IP);
    frame[16..18].copy_from_slice(&0x86ddu16.to_be_bytes()); // protocol type IPv6
    expect_dropped(&frame, &[("Drop.ArpHdr", 1)]);
    let mut frame = arp_request(PEER_IP, STACK_IP);
    frame[18] = 8; // hardware address length
    expect_dropped(&frame, &[("Drop.ArpHdr", 1)]);
}

#[test]
fn arp_unknown_opcode_and_martian_sender() {
    let frame = arp_frame(ArpOperation(9), BCAST_MAC, PEER_MAC, PEER_IP, [0; 6], STACK_IP);
    expect_dropped(&frame, &[("Drop.ArpHdr", 1)]);
    let frame = arp_request(Ipv4Addr::new(224, 0, 0, 5), STACK_IP);
    expect_dropped(&frame, &[("Drop.ArpHdr", 1)]);
    let mut frame = arp_request(PEER_IP, STACK_IP);
    frame[14 + 8] = 0x01; // multicast sender hardware address
    expect_dropped(&frame, &[("Drop.ArpHdr", 1)]);
}

#[test]
fn ip_fragments_wait_for_reassembly_then_time_out() {
    // MF set, offset 0: queued, nothing answered, nothing dropped yet.
    let mut h = Harness::new().with_static_peer();
    let before = h.mib();
    let out = h.exchange(&edited_ping(|f| f[20] |= 0x20, true));
    assert!(out.is_empty());
    assert_eq!(h.diff(&before), counters(&[("Ip.InReceives", 1), ("Ip.ReasmReqds", 1)]));
    // 30 s later the datagram is given up: its first fragment had come, so the sender hears
    // of it (ICMP time exceeded, fragment reassembly).
    h.advance(30_001);
    let out = h.recv();
    assert_eq!(out.len(), 1);
    let d = h.diff(&before);
    assert_eq!(d.get("Ip.ReasmTimeout"), Some(&1), "{d:?}");
    assert_eq!(d.get("Icmp.OutTimeExcds"), Some(&1), "{d:?}");
    assert_eq!(drop_part(&d), counters(&[("Drop.FragReasmTimeout", 1)]));
    drop(out);
    h.assert_pool_baseline();
    // Last fragment alone (MF clear, offset 1480): queued, then dropped in silence.
    let mut h = Harness::new().with_static_peer();
    let before = h.mib();
    assert!(h
        .exchange(&edited_ping(|f| f[20..22].copy_from_slice(&185u16.to_be_bytes()), true))
        .is_empty());
    h.advance(30_001);
    assert!(h.recv().is_empty());
    let d = h.diff(&before);
    assert_eq!(d.get("Ip.ReasmFails"), Some(&1), "{d:?}");
    assert_eq!(drop_part(&d), counters(&[("Drop.FragReasmTimeout", 1)]));
    h.assert_pool_baseline();
    // DF alone is not a fragment: answered.
    let mut h = Harness::new().with_static_peer();
    let out = h.exchange(&edited_ping(|f| f[20] |= 0x40, true));
    assert_eq!(out.len(), 1);
    drop(out);
    h.assert_pool_baseline();
}

#[test]
fn many_drops_leave_no_buffers_behind() {
    // A few thousand bad frames in bursts larger than one rx burst: the pool returns to its
    // baseline and every frame is counted.
    let mut h = Harness::new().with_static_peer();
    let bad = edited_ping(|f| f[24] ^= 0xff, false);
    for _ in 0..100 {
        for _ in 0..40 {
            h.send(&bad);
        }
        h.poll();
        h.poll();
    }
    assert_eq!(h.drops(DropReason::IpCsum), 4000);
    assert_eq!(h.stack.core.mib.ip[IpMib::InCsumErrors], 4000);
    h.assert_pool_baseline();
}

// ---------------------------------------------------------------------------------------------
// Fuzz

/// Why blink may legitimately consume `frame` without answering it and without a drop
/// counter, decided from the bytes alone (RFC rules, not blink's code). None: the frame must
/// be answered or counted as a drop.
/// A fragment to us with a sane header: reassembly queues it (silently), or drops it or its
/// datagram (any number of reassembly drops), or completes a datagram (answered).
const FRAG_QUEUED: &str = "IP fragment queued for reassembly";

/// Drop reasons reassembly may count for one fragment (its own and its datagram's).
const REASM_DROPS: [&str; 5] = [
    "Drop.DupFrag",
    "Drop.FragOverlap",
    "Drop.Oversize",
    "Drop.IpFrag",
    "Drop.FragTooFar",
];

/// The test's own reading of an IPv4 option list (RFC 791 framing plus the checks Linux's
/// ip_options_compile makes on receive): `Ok(source_routed)`, or the parameter problem's
/// pointer (from the IP header's first byte) of the first fault.
fn ip_opts_verdict(opts: &[u8]) -> Result<bool, u8> {
    let (mut i, mut srr, mut rr, mut ts) = (0usize, false, false, false);
    while i < opts.len() {
        let p = |k: usize| (20 + i + k) as u8;
        let ty = opts[i];
        if ty == 0 {
            break;
        }
        if ty == 1 {
            i += 1;
            continue;
        }
        let Some(&len) = opts.get(i + 1) else { return Err(p(0)) };
        let len = len as usize;
        if len < 2 || i + len > opts.len() {
            return Err(p(0));
        }
        let o = &opts[i..i + len];
        // The pointer byte and what it leaves: `need` bytes at pointer - 1 must fit.
        let room = |min_ptr: u8, need: usize, flags_ok: bool| -> Result<(), u8> {
            let ptr = *o.get(2).ok_or(p(1))?;
            if ptr < min_ptr {
                return Err(p(2));
            }
            if (ptr as usize) <= len && ptr as usize - 1 + need > len {
                return Err(p(2));
            }
            if !flags_ok {
                return Err(p(3));
            }
            Ok(())
        };
        match ty {
            131 | 137 => {
                if len < 3 {
                    return Err(p(1));
                }
                room(4, 0, true)?;
                if srr {
                    return Err(p(0));
                }
                srr = true;
            }
            7 => {
                if rr {
                    return Err(p(0));
                }
                if len < 3 {
                    return Err(p(1));
                }
                room(4, 4, true)?;
                rr = true;
            }
            68 => {
                if ts {
                    return Err(p(0));
                }
                if len < 4 {
                    return Err(p(1));
                }
                let (ptr, flags) = (o[2] as usize, o[3] & 0xf);
                let need = if flags == 1 || flags == 3 { 8 } else { 4 };
                let full_overflowed = ptr > len && flags != 3 && o[3] >> 4 == 15;
                room(5, need, !full_overflowed)?;
                ts = true;
            }
            148 if len < 4 => return Err(p(1)),
            _ => {}
        }
        i += len;
    }
    Ok(srr)
}

fn legit_silent_consumption(f: &[u8]) -> Option<&'static str> {
    if f.len() < 14 {
        return None;
    }
    let dst_mac = &f[0..6];
    if dst_mac != STACK_MAC && dst_mac[0] & 1 == 0 {
        return None;
    }
    let be16 = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    let ip4 = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
    let body = &f[14..];
    match be16(&f[12..14]) {
        ETH_P_ARP => {
            if body.len() < 28 || body[0..6] != [0, 1, 8, 0, 6, 4] {
                return None;
            }
            let (op, sha, spa, tpa) = (be16(&body[6..8]), &body[8..14], ip4(&body[14..18]), ip4(&body[24..28]));
            let martian = spa.is_multicast() || spa.is_broadcast() || sha[0] & 1 == 1;
            (op == 2 && tpa == STACK_IP && spa != STACK_IP && !martian).then_some("ARP reply for us (learned)")
        }
        ETH_P_IP => {
            if body.len() < 20 {
                return None;
            }
            let ihl = (body[0] & 0x0f) as usize * 4;
            if body[0] >> 4 != 4 || ihl < 20 || body.len() < ihl || inet_csum(&body[..ihl]) != 0 {
                return None;
            }
            let tot = be16(&body[2..4]) as usize;
            if tot < ihl || tot > body.len() {
                return None;
            }
            let frag = be16(&body[6..8]) & 0x3fff != 0;
            let (src, dst) = (ip4(&body[12..16]), ip4(&body[16..20]));
            let bcast_dst = dst.is_broadcast() || dst == SUBNET_BCAST;
            if dst != STACK_IP && !bcast_dst {
                return None;
            }
            let zeronet = src.octets()[0] == 0 && !dst.is_broadcast();
            if src.is_multicast()
                || src.is_broadcast()
                || src == SUBNET_BCAST
                || src.is_loopback()
                || zeronet
                || src == STACK_IP
            {
                return None;
            }
            // A malformed or source-routed option list is refused before reassembly.
            if ihl > 20 && ip_opts_verdict(&body[20..ihl]) != Ok(false) {
                return None;
            }
            if frag {
                return Some(FRAG_QUEUED);
            }
            if body[9] != 1 {
                return None;
            }
            let icmp = &body[ihl..tot];
            if icmp.len() < 8 || inet_csum(icmp) != 0 {
                return None;
            }
            match icmp[0] {
                8 if bcast_dst || dst_mac[0] & 1 == 1 => Some("broadcast echo ignored"),
                8 => None,
                0 => Some("echo reply recorded"),
                3 | 11 | 12 => {
                    // Passed to the quoted protocol's err_handler (none registered here) when
                    // the quote holds a sane IP header and 8 bytes of transport header.
                    let q = &icmp[8..];
                    let qihl = q.first().map_or(0, |b| (b & 0x0f) as usize * 4);
                    (q.len() >= 20 && qihl >= 20 && q.len() >= qihl + 8).then_some("ICMP error delivered")
                }
                _ => Some("other ICMP type counted"),
            }
        }
        _ => None,
    }
}

fn mutate(rng: &mut XorShift, base: &[u8]) -> Vec<u8> {
    let mut f = base.to_vec();
    let flips = rng.below(4);
    for _ in 0..flips {
        let i = rng.below(f.len());
        if rng.below(2) == 0 {
            f[i] = rng.byte();
        } else {
            f[i] ^= 1 << rng.below(8);
        }
    }
    if rng.below(3) == 0 {
        let l = rng.below(f.len() + 1);
        f.truncate(l);
    }
    if rng.below(5) == 0 && f.len() < 60 {
        f.resize(60, rng.byte()); // Ethernet padding
    }
    // Often repair checksums so mutations reach past the checks into deeper code.
    let is_ip = f.len() >= 14 + 20 && f[12..14] == [8, 0];
    if is_ip && rng.below(2) == 0 {
        fix_ip_csum(&mut f);
    }
    if is_ip && rng.below(2) == 0 {
        let ihl = (f[14] & 0x0f) as usize * 4;
        let tot = u16::from_be_bytes([f[16], f[17]]) as usize;
        let end = (14 + tot).min(f.len());
        if ihl >= 20 && 14 + ihl + 4 <= end {
            let s = 14 + ihl;
            f[s + 2] = 0;
            f[s + 3] = 0;
            let c = inet_csum(&f[s..end]);
            f[s + 2..s + 4].copy_from_slice(&c.to_be_bytes());
        }
    }
    f
}

#[derive(Default, Debug)]
struct Tally {
    answered: u64,
    dropped: u64,
    answered_and_dropped: u64,
    /// Drop counter increments (a frame may cause two, see above).
    drop_events: u64,
    silent: BTreeMap<&'static str, u64>,
}

#[test]
fn fuzz_mutated_arp_and_icmp() {
    let seed = test_seed(0x5eed_b11c);
    let mut rng = XorShift::new(seed);
    let mut h = Harness::new();
    // Every on-link address but ours is a static neighbour at the peer's MAC, so an answer
    // to a mutated source leaves at once (or is dropped, counted) and nothing waits for ARP.
    for last in (0..=254u8).filter(|&l| l != 1) {
        blink_ipv4::neighbour::neigh_add_static(&mut h.stack, Ipv4Addr::new(10, 0, 0, last), PEER_MAC.into(), 0);
    }
    let payload: Vec<u8> = (0..48u8).collect();
    let bases: Vec<Vec<u8>> = vec![
        arp_request(PEER_IP, STACK_IP),
        arp_reply(PEER_MAC, PEER_IP),
        ping_frame(0x77, 1, &payload),
        ping_frame(0x78, 2, b""),
        eth_frame(
            STACK_MAC,
            PEER_MAC,
            ETH_P_IP,
            &ipv4_packet(
                PEER_IP,
                STACK_IP,
                1,
                &icmp_msg(3, 3, [0; 4], &ipv4_packet(STACK_IP, PEER_IP, 17, &[0; 8])),
            ),
        ),
    ];
    const N: u64 = 20_000;
    let mut t = Tally::default();
    for i in 0..N {
        let base = &bases[rng.below(bases.len())];
        let f = mutate(&mut rng, base);
        let before = h.mib();
        let out = h.exchange(&f);
        let d = h.diff(&before);
        let drops = drop_part(&d);
        let ndrops: u64 = drops.values().sum();
        let ctx = || format!("frame #{i} (seed {seed}) {f:02x?}\n counters {d:?}\n out {out:02x?}");
        if legit_silent_consumption(&f) == Some(FRAG_QUEUED) {
            // Reassembly's own drops; and when this fragment completed a datagram (made of
            // earlier mutated fragments the oracle does not keep), that datagram is judged
            // like any other: at most one drop of its own (a bad ICMP checksum, say).
            let completed = d.get("Ip.ReasmOKs").is_some_and(|&n| n > 0);
            let upper: u64 = drops
                .iter()
                .filter(|(k, _)| !REASM_DROPS.contains(&k.as_str()))
                .map(|(_, n)| *n)
                .sum();
            assert!(upper == 0 || (completed && upper == 1), "{}", ctx());
            t.drop_events += ndrops;
            assert!(out.len() <= 1, "one fragment, several answers: {}", ctx());
            if let Some(o) = out.first() {
                // The answer to a completed datagram quotes or echoes all of it, earlier
                // fragments included: only its checksums are checked (parse_icmp).
                if completed {
                    parse_icmp(o);
                } else {
                    check_answer(&f, o).unwrap_or_else(|e| panic!("bad answer: {e}: {}", ctx()));
                }
                t.answered += 1;
            } else if ndrops > 0 {
                t.dropped += 1;
            } else {
                *t.silent.entry(FRAG_QUEUED).or_default() += 1;
            }
            continue;
        }
        if ndrops > 1 {
            // Two skbs died: the datagram of an unknown protocol (or with malformed IP
            // options), and the protocol-unreachable (parameter problem) built for it, which
            // has no route back to an off-link source.
            assert!(
                drops == counters(&[("Drop.IpNoProto", 1), ("Drop.IpOutNoRoutes", 1)])
                    || drops == counters(&[("Drop.IpInHdr", 1), ("Drop.IpOutNoRoutes", 1)]),
                "one frame, several drops: {}",
                ctx()
            );
            t.drop_events += 2;
        } else {
            t.drop_events += ndrops;
        }
        assert!(out.len() <= 1, "one frame, several answers: {}", ctx());
        if let Some(o) = out.first() {
            check_answer(&f, o).unwrap_or_else(|e| panic!("bad answer: {e}: {}", ctx()));
        }
        match (out.len(), ndrops) {
            (1, 0) => t.answered += 1,
            (0, 1 | 2) => t.dropped += 1,
            (1, 1) if drops == counters(&[("Drop.IpInHdr", 1)]) => {
                // Malformed IP options: a parameter problem (check_answer checked its pointer)
                // and the datagram dropped (Linux: ip_options_compile, InHdrErrors).
                t.answered_and_dropped += 1;
            }
            (1, 1) => {
                // The one legitimate double: an unknown protocol is answered with ICMP
                // protocol-unreachable *and* counted as dropped (Linux does the same).
                assert_eq!(drops, counters(&[("Drop.IpNoProto", 1)]), "{}", ctx());
                t.answered_and_dropped += 1;
            }
            _ => {
                let why = legit_silent_consumption(&f)
                    .unwrap_or_else(|| panic!("consumed without answer or drop counter: {}", ctx()));
                *t.silent.entry(why).or_default() += 1;
            }
        }
    }
    let silent: u64 = t.silent.values().sum();
    println!("fuzz tally: {t:?}");
    assert_eq!(t.answered + t.dropped + t.answered_and_dropped + silent, N);
    assert_eq!(
        h.total_drops(),
        t.drop_events,
        "every drop counter increment belongs to one frame"
    );
    // Sanity: the mutations reach every outcome.
    assert!(t.answered > 1000 && t.dropped > 1000, "{t:?}");
    assert!(t.silent.len() >= 3, "{t:?}");
    // Let learned neighbours age out; nothing must be left holding buffers.
    for _ in 0..200 {
        h.advance(1000);
    }
    h.assert_pool_baseline();
}

/// What the stack sent for `req` must be a well-formed answer to it.
fn check_answer(req: &[u8], out: &[u8]) -> Result<(), String> {
    if is_arp(out) {
        let (eth, a) = parse_arp(out);
        if a.operation != ArpOperation::REPLY {
            return Err("ARP output that is not a reply".into());
        }
        if a.sender_mac != STACK_MAC || a.sender_ipv4 != STACK_IP.octets() || eth.source != STACK_MAC {
            return Err("ARP reply not from us".into());
        }
        if a.target_mac != req[14 + 8..14 + 14] || a.target_ipv4 != req[14 + 14..14 + 18] {
            return Err("ARP reply not to the asker".into());
        }
        return Ok(());
    }
    let r = parse_icmp(out);
    let ihl = (req[14] & 0x0f) as usize * 4;
    let tot = u16::from_be_bytes([req[16], req[17]]) as usize;
    let req_ip = &req[14..14 + tot];
    if r.ip.destination != req_ip[12..16] || r.ip.time_to_live != 64 {
        return Err("answer not sent back to the source with TTL 64".into());
    }
    match &r.icmp.icmp_type {
        Icmpv4Type::EchoReply(e) => {
            let icmp = &req_ip[ihl..];
            if icmp[0] != 8
                || (e.id, e.seq)
                    != (
                        u16::from_be_bytes([icmp[4], icmp[5]]),
                        u16::from_be_bytes([icmp[6], icmp[7]]),
                    )
            {
                return Err("echo reply does not match the request".into());
            }
            if r.payload != icmp[8..] {
                return Err("echo reply payload differs".into());
            }
        }
        Icmpv4Type::DestinationUnreachable(icmpv4::DestUnreachableHeader::Protocol) => {
            // The datagram as received (padding trimmed), up to 576 - 20 - 8 bytes.
            if req_ip[9] == 1 || r.payload[..] != req_ip[..req_ip.len().min(548)] {
                return Err("protocol unreachable does not quote the datagram".into());
            }
        }
        Icmpv4Type::ParameterProblem(icmpv4::ParameterProblemHeader::PointerIndicatesError(ptr)) => {
            if ihl <= 20 || ip_opts_verdict(&req_ip[20..ihl]) != Err(*ptr) {
                return Err(format!(
                    "parameter problem at {ptr} for options {:02x?}",
                    &req_ip[20..ihl.max(20)]
                ));
            }
            if r.payload[..] != req_ip[..req_ip.len().min(548)] {
                return Err("parameter problem does not quote the datagram".into());
            }
        }
        t => return Err(format!("unexpected ICMP {t:?}")),
    }
    Ok(())
}

#[test]
fn fuzz_with_dynamic_neighbours_and_time() {
    // Chaos variant: no static neighbours, time moves, the peer sometimes answers ARP. Only
    // "no panic, no leak" and "the pool drains" are asserted here.
    let seed = test_seed(0xc4a0_5000);
    let mut rng = XorShift::new(seed);
    let mut h = Harness::new();
    h.stack.neigh.parms.max_entries = 64;
    let bases: Vec<Vec<u8>> = vec![
        arp_request(PEER_IP, STACK_IP),
        arp_reply(PEER_MAC, PEER_IP),
        ping_frame(0x99, 3, &[0x5a; 100]),
    ];
    for _ in 0..5_000 {
        let base = &bases[rng.below(bases.len())];
        let f = mutate(&mut rng, base);
        h.inject(&f);
        for o in h.recv() {
            // Answer some of the stack's ARP requests so queued packets get released.
            if is_arp(&o) && rng.below(2) == 0 {
                let (_, a) = parse_arp(&o);
                if a.operation == ArpOperation::REQUEST {
                    h.send(&arp_reply(PEER_MAC, a.target_ipv4_addr()));
                }
            }
        }
        if rng.below(8) == 0 {
            h.advance(rng.below(3000) as u64);
        }
    }
    assert!(h.stack.core.mib.icmp[IcmpMib::InMsgs] > 0);
    for _ in 0..200 {
        h.advance(1000);
        h.recv();
    }
    assert_eq!(
        h.stack.neigh.len(),
        0,
        "every dynamic entry aged out: {:?}",
        h.stack.neigh.show()
    );
    h.assert_pool_baseline();
}

#[test]
fn pool_exhaustion_is_counted_not_fatal() {
    let mut h = Harness::new().with_static_peer();
    let ping = ping_frame(1, 1, b"no buffers");
    let unknown = eth_frame(
        STACK_MAC,
        PEER_MAC,
        ETH_P_IP,
        &ipv4_packet(PEER_IP, STACK_IP, 253, &[0; 8]),
    );
    let arp = arp_request(PEER_IP, STACK_IP);
    // Hoard every free buffer (the stack's cache first, then the shared stack and the other
    // caches' slots), leaving one free per frame the peer injects.
    let mut hoard = Vec::new();
    while let Some(m) = h.stack.core.cache.alloc() {
        hoard.push(m);
    }
    for (frame, want) in [
        (&ping, vec![("Icmp.OutErrors", 1), ("Drop.NoMem", 1)]),
        (
            &unknown,
            vec![("Icmp.OutErrors", 1), ("Drop.NoMem", 1), ("Drop.IpNoProto", 1)],
        ),
        (&arp, vec![("Drop.NoMem", 1)]),
    ] {
        hoard.pop();
        let held = h.pool.in_use();
        let before = h.mib();
        let out = h.exchange(frame);
        assert!(out.is_empty(), "nothing can be sent without buffers");
        let d = h.diff(&before);
        for (k, v) in want {
            assert_eq!(d.get(k), Some(&v), "{k} in {d:?}");
        }
        assert_eq!(h.pool.in_use(), held, "the injected frame's buffer is back");
        hoard.push(
            h.cache
                .alloc()
                .or_else(|| h.stack.core.cache.alloc())
                .expect("the freed buffer"),
        );
    }
    assert_eq!(
        blink_ipv4::icmp::icmp_send_echo(&mut h.stack, PEER_IP, 1, 1, 8),
        Err(blink_ipv4::Ipv4Error::NoBuffers)
    );
    drop(hoard);
    // Buffers are back: everything works again.
    assert_eq!(h.exchange(&ping).len(), 1);
    h.assert_pool_baseline();
}
