//! IPIP and GRE decapsulation (`ip_tunnel_rcv` through the backlog): a stack with an IPIP
//! tunnel to 10.0.0.2, a GRE tunnel to 10.0.0.3 and a keyed GRE tunnel to 10.0.0.4 receives
//! encapsulated packets from any source, with GRE flags (checksum, key, sequence, routing,
//! versions) and protocol types of the fuzzer's choosing, right or wrong checksums and keys,
//! and inner packets that are tunnel packets again, down to four levels. Echo requests inside
//! answer back through the tunnel, so the encapsulating transmit runs too. Invariants: the
//! harness's (well-formed output at every level of encapsulation, IP counters, no buffer
//! left), and the backlog is empty after every poll.
#![no_main]

use std::net::Ipv4Addr;

use blink_ipv4::ip_tunnel::{ip_tunnel_add, TunnelKind, TunnelParms};
use blink_ipv4_fuzz::*;
use libfuzzer_sys::fuzz_target;

const R_GRE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
const R_GREKEY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 4);
const KEY: u32 = 0x1234;
/// (the remote's underlay address, its inner address, ours inside)
const TUNNELS: [(Ipv4Addr, Ipv4Addr, Ipv4Addr); 3] = [
    (PEER_IP, Ipv4Addr::new(192, 168, 1, 2), Ipv4Addr::new(192, 168, 1, 1)),
    (R_GRE, Ipv4Addr::new(192, 168, 2, 2), Ipv4Addr::new(192, 168, 2, 1)),
    (R_GREKEY, Ipv4Addr::new(192, 168, 3, 2), Ipv4Addr::new(192, 168, 3, 1)),
];

/// One packet, possibly a tunnel packet around another (`depth` levels left).
fn packet(inp: &mut Input, depth: u8) -> Vec<u8> {
    let t = inp.u8() as usize % 4;
    let kind = if t == 3 { inp.u8() % 3 } else { t as u8 };
    let (remote, inner_src, inner_dst) = TUNNELS[(t % 3) as usize];
    let proto = match kind {
        0 => 4,
        _ => 47,
    };
    let mut outer = IpSpec::new(proto);
    outer.src = remote;
    if inp.u8() % 4 == 0 {
        outer = IpSpec::decode(inp, proto);
    }
    // What goes inside: another tunnel packet, or an inner packet for us behind the tunnel.
    let inner = if depth > 0 && inp.u8() % 4 == 0 {
        packet(inp, depth - 1)
    } else {
        let proto = inp.pick(&[1, PROBE_PROTO, 17, 1]);
        let mut spec = IpSpec::new(proto);
        spec.src = inner_src;
        spec.dst = inner_dst;
        if inp.u8() % 4 == 0 {
            spec = IpSpec::decode(inp, proto);
        }
        let body = inp.blob(1);
        let body = if proto == 1 && inp.u8() % 2 == 0 {
            icmp_msg(8, 0, inp.u32(), &body)
        } else {
            body
        };
        spec.build(&body)
    };
    let payload = if proto == 47 {
        let mode = inp.u8();
        let mut flags: u16 = match mode % 8 {
            0 => 0,
            1 | 2 => 0x2000,               // key
            3 => 0x8000,                   // checksum
            4 => 0x8000 | 0x2000 | 0x1000, // all three
            5 => 0x1000,                   // sequence
            _ => inp.u16(),                // anything (routing, versions)
        };
        if kind == 2 && mode % 8 == 0 {
            flags = 0x2000;
        }
        let ptype = if inp.u8() % 8 == 0 { inp.u16() } else { 0x0800 };
        let mut g = Vec::new();
        g.extend_from_slice(&flags.to_be_bytes());
        g.extend_from_slice(&ptype.to_be_bytes());
        if flags & 0x8000 != 0 {
            g.extend_from_slice(&[0, 0, 0, 0]);
        }
        if flags & 0x2000 != 0 {
            let key = if inp.u8() % 4 == 0 { inp.u32() } else { KEY };
            g.extend_from_slice(&key.to_be_bytes());
        }
        if flags & 0x1000 != 0 {
            g.extend_from_slice(&inp.u32().to_be_bytes());
        }
        let hl = g.len();
        g.extend_from_slice(&inner);
        if flags & 0x8000 != 0 && inp.u8() % 8 != 0 {
            let c = inet_csum(&g);
            g[4..6].copy_from_slice(&c.to_be_bytes());
        }
        let _ = hl;
        g
    } else {
        inner
    };
    outer.build(&payload)
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let cfg = inp.u8();
    let opts = HostOpts {
        probes: vec![PROBE_PROTO, 17],
        raw: if cfg & 1 != 0 { vec![4, 47, 1] } else { Vec::new() },
        ..Default::default()
    };
    let mut h = Host::with_setup(opts, |st| {
        for (i, (remote, _, ours)) in TUNNELS.iter().enumerate() {
            let kind = match i {
                0 => TunnelKind::Ipip,
                1 => TunnelKind::Gre { key: None },
                _ => TunnelKind::Gre { key: Some(KEY) },
            };
            if *remote != PEER_IP {
                blink_ipv4::neighbour::neigh_add_static(st, *remote, blink_netcore::EthAddr(PEER_MAC), 0);
            }
            let parms = TunnelParms {
                kind,
                remote: *remote,
                local: None,
                ttl: 64,
            };
            ip_tunnel_add(st, &kind.dev_name(i), parms, Ipv4Cidr::new(*ours, 24).unwrap()).expect("tunnel");
        }
    });
    let mut ops = 0;
    while !inp.is_empty() && ops < 32 {
        ops += 1;
        match inp.u8() % 6 {
            0..=3 => {
                let p = packet(&mut inp, 3);
                let splits = [inp.u8() as usize, inp.u16() as usize];
                h.inject_split(&eth_frame(STACK_MAC, PEER_MAC, ETH_P_IP, &p), &splits);
                assert!(h.stack.backlog.is_empty(), "backlog left after a poll");
            }
            4 => h.advance(inp.u16() as u64),
            _ => raw_release(&mut h.stack),
        }
    }
    h.settle_and_check();
});
