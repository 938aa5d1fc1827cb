//! IPIP and GRE tunnels on one stack, with the peer crafting the encapsulated frames: echo
//! through the tunnel comes back encapsulated to the remote end; an outer packet that arrived
//! in fragments is reassembled before decapsulation; IPIP inside IPIP is decapsulated twice
//! (the handler is not re-entered while it runs); GRE keys, checksums and protocol types are
//! checked; packets from an unknown remote are dropped and counted. No buffer is left.

mod common;

use std::net::Ipv4Addr;

use blink_ipv4::ip_tunnel::{ip_tunnel_add, TunnelKind, TunnelParms};
use blink_ipv4::Ipv4Cidr;
use common::*;

const IN_PEER: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 1);
const IN_STACK: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 2);

fn with_tunnel(kind: TunnelKind) -> Harness {
    let mut h = Harness::new().with_static_peer();
    let parms = TunnelParms {
        kind,
        remote: PEER_IP,
        local: None,
        ttl: 64,
    };
    let name = if kind == TunnelKind::Ipip { "ipip0" } else { "gre0" };
    let ifindex = ip_tunnel_add(&mut h.stack, name, parms, Ipv4Cidr::new(IN_STACK, 30).unwrap()).unwrap();
    assert_eq!(ifindex, 1);
    assert_eq!(h.stack.devs[1].mtu, 1500 - kind.overhead());
    h.reset_baseline();
    h
}

/// Inner echo request peer -> stack inside the tunnel.
fn inner_echo(seq: u16, payload: &[u8]) -> Vec<u8> {
    echo_request(IN_PEER, IN_STACK, 0x42, seq, payload)[14..].to_vec()
}

/// A GRE header: flags, protocol type, then the optional fields given.
fn gre(flags: u16, proto: u16, key: Option<u32>) -> Vec<u8> {
    let mut g = Vec::new();
    g.extend_from_slice(&flags.to_be_bytes());
    g.extend_from_slice(&proto.to_be_bytes());
    if let Some(k) = key {
        g.extend_from_slice(&k.to_be_bytes());
    }
    g
}

fn outer_frame(proto: u8, payload: &[u8]) -> Vec<u8> {
    eth_frame(
        STACK_MAC,
        PEER_MAC,
        ETH_P_IP,
        &ipv4_packet(PEER_IP, STACK_IP, proto, payload),
    )
}

/// The inner packet of an encapsulated frame blink sent: checks the outer header (to the
/// remote end, from our underlay address, valid checksum) and strips `gre_len` more bytes.
fn decap(frame: &[u8], proto: u8, gre_len: usize) -> Vec<u8> {
    let ip = &frame[14..];
    assert_eq!(ip[9], proto, "outer protocol");
    assert_eq!(&ip[12..16], &STACK_IP.octets(), "outer source");
    assert_eq!(&ip[16..20], &PEER_IP.octets(), "outer destination");
    assert_eq!(inet_csum(&ip[..20]), 0, "outer checksum");
    ip[20 + gre_len..].to_vec()
}

fn expect_echo_reply(inner: &[u8], seq: u16, payload: &[u8]) {
    assert_eq!(&inner[12..16], &IN_STACK.octets());
    assert_eq!(&inner[16..20], &IN_PEER.octets());
    assert_eq!(inner[9], 1);
    let icmp = &inner[20..];
    assert_eq!(icmp[0], 0, "echo reply");
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), seq);
    assert_eq!(&icmp[8..], payload);
    assert_eq!(inet_csum(icmp), 0);
}

#[test]
fn ipip_echo_comes_back_encapsulated() {
    let mut h = with_tunnel(TunnelKind::Ipip);
    let before = h.mib();
    let out = h.exchange(&outer_frame(4, &inner_echo(1, b"through the tunnel")));
    assert_eq!(out.len(), 1, "one encapsulated reply");
    expect_echo_reply(&decap(&out[0], 4, 0), 1, b"through the tunnel");
    let d = h.diff(&before);
    assert_eq!(d.get("Softnet.ReinjectLocal"), Some(&1), "{d:?}");
    assert_eq!(d.get("Icmp.OutEchoReps"), Some(&1), "{d:?}");
    let st = h.stack.devs[1].dev.stats();
    assert_eq!((st.rx_packets, st.tx_packets), (1, 1));
    h.assert_pool_baseline();
}

#[test]
fn a_fragmented_outer_packet_is_reassembled_then_decapsulated() {
    let mut h = with_tunnel(TunnelKind::Ipip);
    let payload: Vec<u8> = (0..2000).map(|i| (i * 7) as u8).collect();
    let outer = ipv4_packet(PEER_IP, STACK_IP, 4, &inner_echo(2, &payload));
    // Two outer fragments: 1480 bytes, then the rest.
    let (hdr, body) = outer.split_at(20);
    let mut out = Vec::new();
    for (off, chunk, more) in [(0usize, &body[..1480], true), (1480, &body[1480..], false)] {
        let mut f = hdr.to_vec();
        f[2..4].copy_from_slice(&((20 + chunk.len()) as u16).to_be_bytes());
        f[6..8].copy_from_slice(&(((off / 8) as u16) | if more { 0x2000 } else { 0 }).to_be_bytes());
        f[10] = 0;
        f[11] = 0;
        let c = inet_csum(&f);
        f[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(chunk);
        out.extend(h.exchange(&eth_frame(STACK_MAC, PEER_MAC, ETH_P_IP, &f)));
    }
    // The 2,028-byte reply is over the tunnel's 1,480-byte MTU: two inner fragments, each
    // in its own outer packet.
    assert_eq!(out.len(), 2, "{out:02x?}");
    let inner: Vec<Vec<u8>> = out.iter().map(|f| decap(f, 4, 0)).collect();
    let mut whole = inner[0][..20].to_vec();
    let mut parts: Vec<(usize, Vec<u8>)> = inner
        .iter()
        .map(|p| {
            (
                (u16::from_be_bytes([p[6], p[7]]) & 0x1fff) as usize * 8,
                p[20..].to_vec(),
            )
        })
        .collect();
    parts.sort();
    for (_, p) in &parts {
        whole.extend_from_slice(p);
    }
    expect_echo_reply(&whole, 2, &payload);
    assert_eq!(h.stack.core.mib.ip.get(blink_netcore::snmp::IpMib::ReasmOKs), 1);
    h.assert_pool_baseline();
}

#[test]
fn ipip_inside_ipip_is_decapsulated_twice() {
    let mut h = with_tunnel(TunnelKind::Ipip);
    let before = h.mib();
    let middle = ipv4_packet(PEER_IP, STACK_IP, 4, &inner_echo(3, b"nested"));
    let out = h.exchange(&outer_frame(4, &middle));
    assert_eq!(out.len(), 1, "answered, not protocol-unreachable");
    expect_echo_reply(&decap(&out[0], 4, 0), 3, b"nested");
    let d = h.diff(&before);
    assert_eq!(d.get("Softnet.ReinjectLocal"), Some(&2), "{d:?}");
    assert_eq!(d.get("Ip.InUnknownProtos"), None, "{d:?}");
    h.assert_pool_baseline();
}

#[test]
fn gre_keys_checksums_and_protocol_types() {
    // Keyless GRE: echo answered, reply with a 4-byte GRE header.
    let mut h = with_tunnel(TunnelKind::Gre { key: None });
    let mut p = gre(0, 0x0800, None);
    p.extend_from_slice(&inner_echo(4, b"gre"));
    let out = h.exchange(&outer_frame(47, &p));
    assert_eq!(out.len(), 1);
    let g = &out[0][34..38];
    assert_eq!(g, &[0, 0, 0x08, 0x00], "keyless GRE header");
    expect_echo_reply(&decap(&out[0], 47, 4), 4, b"gre");
    // A valid GRE checksum is accepted; a bad one dropped.
    let mut p = gre(0x8000, 0x0800, Some(0));
    p.extend_from_slice(&inner_echo(5, b"summed"));
    let c = inet_csum(&p);
    p[4..6].copy_from_slice(&c.to_be_bytes());
    assert_eq!(h.exchange(&outer_frame(47, &p)).len(), 1, "checksummed GRE answered");
    p[6] ^= 0xff;
    let before = h.mib();
    assert!(h.exchange(&outer_frame(47, &p)).is_empty());
    assert_eq!(drop_part(&h.diff(&before)), counters(&[("Drop.TunnelCsum", 1)]));
    // A keyed packet does not match a keyless tunnel; nor does another protocol type.
    for (pkt, why) in [
        (gre(0x2000, 0x0800, Some(9)), "Drop.TunnelNoMatch"),
        (gre(0, 0x86dd, None), "Drop.UnhandledProto"),
        (gre(1, 0x0800, None), "Drop.TunnelHdr"),
    ] {
        let mut p = pkt;
        p.extend_from_slice(&inner_echo(6, b"x"));
        let before = h.mib();
        assert!(h.exchange(&outer_frame(47, &p)).is_empty(), "{why}");
        assert_eq!(drop_part(&h.diff(&before)), counters(&[(why, 1)]));
    }
    h.assert_pool_baseline();

    // Keyed tunnel: the right key is answered (and the reply carries it), others dropped.
    let mut h = with_tunnel(TunnelKind::Gre { key: Some(0xabcd) });
    let mut p = gre(0x2000, 0x0800, Some(0xabcd));
    p.extend_from_slice(&inner_echo(7, b"keyed"));
    let out = h.exchange(&outer_frame(47, &p));
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0][34..42], &[0x20, 0, 0x08, 0x00, 0, 0, 0xab, 0xcd]);
    expect_echo_reply(&decap(&out[0], 47, 8), 7, b"keyed");
    for key in [None, Some(0xabce)] {
        let mut p = gre(if key.is_some() { 0x2000 } else { 0 }, 0x0800, key);
        p.extend_from_slice(&inner_echo(8, b"wrong key"));
        let before = h.mib();
        assert!(h.exchange(&outer_frame(47, &p)).is_empty());
        assert_eq!(drop_part(&h.diff(&before)), counters(&[("Drop.TunnelNoMatch", 1)]));
    }
    h.assert_pool_baseline();
}

#[test]
fn a_tunnel_packet_from_an_unknown_remote_is_dropped() {
    let mut h = with_tunnel(TunnelKind::Ipip);
    let stranger = Ipv4Addr::new(10, 0, 0, 77);
    blink_ipv4::neighbour::neigh_add_static(&mut h.stack, stranger, blink_netcore::EthAddr(OTHER_MAC), 0);
    h.reset_baseline();
    let frame = eth_frame(
        STACK_MAC,
        OTHER_MAC,
        ETH_P_IP,
        &ipv4_packet(stranger, STACK_IP, 4, &inner_echo(9, b"who?")),
    );
    let before = h.mib();
    assert!(h.exchange(&frame).is_empty());
    assert_eq!(drop_part(&h.diff(&before)), counters(&[("Drop.TunnelNoMatch", 1)]));
    h.assert_pool_baseline();
}

#[test]
fn tunnel_configuration_errors_name_the_field() {
    let mut h = Harness::new();
    let parms = |remote| TunnelParms {
        kind: TunnelKind::Ipip,
        remote,
        local: None,
        ttl: 64,
    };
    let cidr = Ipv4Cidr::new(IN_STACK, 30).unwrap();
    let e = ip_tunnel_add(&mut h.stack, "ipip0", parms(Ipv4Addr::new(192, 168, 9, 9)), cidr).unwrap_err();
    assert!(
        e.to_string().contains("--tunnel") && e.to_string().contains("no route"),
        "{e}"
    );
    ip_tunnel_add(&mut h.stack, "ipip0", parms(PEER_IP), cidr).unwrap();
    let e = ip_tunnel_add(&mut h.stack, "ipip1", parms(PEER_IP), cidr).unwrap_err();
    assert!(e.to_string().contains("exists"), "{e}");
}
