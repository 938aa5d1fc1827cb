//! Ethernet demux and ARP: requests and replies with any field (hardware and protocol types
//! and lengths, opcodes, martian and broadcast sender addresses, multicast sender MACs,
//! gratuitous ARP), raw frames of any EtherType and length, time passing (neighbour states
//! age, probes and retries fire), and packets that make the stack resolve neighbours while
//! the fuzzer answers or does not. Invariants: every frame sent is well formed (ARP replies go
//! from us to their asker), the neighbour table stays within its bound, and once every timer
//! has run no buffer is left queued on a neighbour.
#![no_main]

use std::net::Ipv4Addr;

use blink_ipv4_fuzz::*;
use libfuzzer_sys::fuzz_target;

const ARP_ADDRS: [Ipv4Addr; 10] = [
    PEER_IP,
    STACK_IP,
    Ipv4Addr::new(10, 0, 0, 3),
    Ipv4Addr::new(10, 0, 0, 4),
    Ipv4Addr::new(10, 0, 0, 255),
    Ipv4Addr::new(0, 0, 0, 0),
    Ipv4Addr::new(255, 255, 255, 255),
    Ipv4Addr::new(224, 0, 0, 5),
    Ipv4Addr::new(192, 0, 2, 1),
    Ipv4Addr::new(10, 0, 0, 5),
];

fn mac(inp: &mut Input) -> [u8; 6] {
    match inp.u8() % 6 {
        0 => PEER_MAC,
        1 => [0x02, 0, 0, 0, 0, 0x33],
        2 => [0xff; 6],
        3 => [0x01, 0, 0x5e, 0, 0, 5],
        4 => STACK_MAC,
        _ => {
            let b = inp.bytes(6);
            let mut m = [0u8; 6];
            m[..b.len()].copy_from_slice(b);
            m
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let cfg = inp.u8();
    let mut opts = HostOpts {
        static_peer: cfg & 1 == 0,
        ..Default::default()
    };
    if cfg & 2 != 0 {
        opts.cfg.arp_announce = false;
    }
    let mut h = Host::new(opts);
    if cfg & 4 != 0 {
        h.stack.neigh.parms.max_entries = 4;
    }
    let max_entries = h.stack.neigh.parms.max_entries;
    let mut ops = 0;
    while !inp.is_empty() && ops < 64 {
        ops += 1;
        match inp.u8() % 8 {
            0..=3 => {
                // An ARP packet: mostly sane Ethernet/IPv4 ARP, fields overridden on demand.
                let op = match inp.u8() % 4 {
                    0 | 1 => 1,
                    2 => 2,
                    _ => inp.u16(),
                };
                let sha = mac(&mut inp);
                let spa = addr(&mut inp, &ARP_ADDRS);
                let tha = mac(&mut inp);
                let tpa = addr(&mut inp, &ARP_ADDRS);
                let mut body = arp_body(op, sha, spa, tha, tpa);
                let mode = inp.u8();
                if mode & 1 != 0 {
                    // Other hardware/protocol types and lengths.
                    let b = inp.bytes(6);
                    body[..b.len()].copy_from_slice(b);
                }
                if mode & 2 != 0 {
                    let n = inp.u8() as usize % (body.len() + 1);
                    body.truncate(n);
                }
                if mode & 4 != 0 {
                    body.resize(46, 0); // Ethernet padding
                }
                let dst = if mode & 8 != 0 {
                    mac(&mut inp)
                } else if op == 1 {
                    [0xff; 6]
                } else {
                    STACK_MAC
                };
                let src = if mode & 16 != 0 { mac(&mut inp) } else { sha };
                h.inject(&eth_frame(dst, src, ETH_P_ARP, &body));
            }
            4 => {
                // A raw frame: any length, any EtherType.
                let f = inp.blob(1);
                h.inject(&f);
            }
            5 => {
                // A ping from another host on the link: the reply needs that host's MAC.
                let src = addr(&mut inp, &ARP_ADDRS);
                let mut spec = IpSpec::new(1);
                spec.src = src;
                let frame = eth_frame(
                    STACK_MAC,
                    PEER_MAC,
                    ETH_P_IP,
                    &spec.build(&icmp_msg(8, 0, 0x0101_0001, b"arp?")),
                );
                h.inject(&frame);
            }
            6 => h.advance(inp.u16() as u64 * 2),
            _ => {
                // Send from the stack: a ping to an on-link host (resolution from our side).
                let dst = addr(&mut inp, &ARP_ADDRS);
                let _ = blink_ipv4::icmp::icmp_send_echo(&mut h.stack, dst, 7, 1, 8);
                h.poll();
            }
        }
        assert!(
            h.stack.neigh.len() <= max_entries.max(1) + 1,
            "neighbour table over its bound"
        );
    }
    h.settle_and_check();
});
