//! ICMP input: echo requests (the reply must carry the request's id, sequence and payload),
//! replies, timestamps, and errors of every type and code quoting IP headers with options,
//! of every protocol, truncated or not; fragmentation-needed about our own packets (path MTU
//! updates); wrong checksums. Protocols registered for 6, 17 and the probe's number check the
//! quote `err_handler` gets (an IP header and 8 bytes after it). Every answer the stack sends
//! must answer something the fuzzer sent: an echo reply matches a request, an ICMP error
//! quotes the start of a packet the stack received.
#![no_main]

use std::net::Ipv4Addr;

use blink_ipv4_fuzz::*;
use libfuzzer_sys::fuzz_target;

const TYPES: [u8; 16] = [0, 3, 3, 3, 4, 5, 8, 8, 11, 11, 12, 13, 14, 15, 17, 3];

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let cfg = inp.u8();
    let mut opts = HostOpts {
        probes: vec![PROBE_PROTO, 6, 17],
        static_peer: cfg & 1 == 0,
        ..Default::default()
    };
    if cfg & 2 != 0 {
        opts.raw = vec![1];
    }
    if cfg & 4 != 0 {
        opts.cfg.icmp_msgs_burst = 2;
    }
    let mut h = Host::new(opts);
    h.keep_sent = true;
    // Every IP packet injected (from its IP header), for the oracle.
    let mut sent_to_stack: Vec<Vec<u8>> = Vec::new();
    let mut ops = 0;
    while !inp.is_empty() && ops < 48 {
        ops += 1;
        match inp.u8() % 8 {
            0..=3 => {
                let ty = match inp.u8() {
                    255 => inp.u8(),
                    s => TYPES[s as usize % TYPES.len()],
                };
                let code = match inp.u8() {
                    255 => inp.u8(),
                    s => s % 16,
                };
                let rest = inp.u32();
                let body = if inp.u8() % 4 != 0 {
                    // A quoted packet, as if we had sent it.
                    let proto = inp.pick(&[6, 17, PROBE_PROTO, 1, 99, 6]);
                    let mut q = IpSpec::decode(&mut inp, proto);
                    if q.src == PEER_IP && q.dst == STACK_IP {
                        (q.src, q.dst) = (STACK_IP, PEER_IP);
                    }
                    let l4 = inp.blob(1);
                    let mut b = q.build(&l4);
                    if inp.bool() {
                        let keep = inp.u8() as usize % (b.len() + 1);
                        b.truncate(keep);
                    }
                    b
                } else {
                    inp.blob(1)
                };
                let mut msg = icmp_msg(ty, code, rest, &body);
                if inp.u8() == 0xee {
                    msg[2] ^= 0x5a;
                }
                let spec = IpSpec::decode(&mut inp, 1);
                let ip = spec.build(&msg);
                let dst = eth_dst(&mut inp);
                sent_to_stack.push(ip.clone());
                h.inject(&eth_frame(dst, PEER_MAC, ETH_P_IP, &ip));
            }
            4 => {
                let id = inp.u16();
                let seq = inp.u16();
                let payload = inp.blob(1);
                let mut spec = IpSpec::new(1);
                if inp.bool() {
                    spec.src = addr(&mut inp, &SRC_ADDRS);
                }
                let ip = spec.build(&icmp_msg(8, inp.u8() % 2, (id as u32) << 16 | seq as u32, &payload));
                sent_to_stack.push(ip.clone());
                let splits = [inp.u8() as usize];
                h.inject_split(&eth_frame(STACK_MAC, PEER_MAC, ETH_P_IP, &ip), &splits);
            }
            5 => {
                // Fragmentation needed about a packet we sent to an address off the peer.
                let dst = addr(
                    &mut inp,
                    &[PEER_IP, Ipv4Addr::new(10, 0, 0, 3), Ipv4Addr::new(10, 0, 0, 255)],
                );
                let mtu = inp.u16();
                let mut q = IpSpec::new(6);
                (q.src, q.dst) = (STACK_IP, dst);
                q.tot_len = Some(inp.u16());
                let quoted = q.build(&[0x9c, 0x40, 0, 80, 0, 0, 0, 1]);
                let ip = IpSpec::new(1).build(&icmp_msg(3, 4, mtu as u32, &quoted));
                sent_to_stack.push(ip.clone());
                h.inject(&eth_frame(STACK_MAC, PEER_MAC, ETH_P_IP, &ip));
            }
            6 => h.advance(inp.u16() as u64),
            _ => raw_release(&mut h.stack),
        }
    }
    // The oracle on what was sent.
    for f in &h.sent {
        let Some((iph, body)) = ip_of(f) else { continue };
        if iph[9] != 1 || body.len() < 8 || u16::from_be_bytes([iph[6], iph[7]]) & 0x3fff != 0 {
            continue;
        }
        let to = &iph[16..20];
        match body[0] {
            0 => {
                let ok = sent_to_stack.iter().any(|p| {
                    let hl = (p[0] & 0x0f) as usize * 4;
                    p.len() >= hl + 8 && &p[12..16] == to && p[hl] == 8 && p[hl + 4..] == body[4..]
                });
                assert!(ok, "echo reply answers no request: {body:02x?}");
            }
            3 | 11 | 12 => {
                let quote = &body[8..];
                assert!(quote.len() >= 20, "ICMP error quotes less than an IP header");
                let ok = sent_to_stack
                    .iter()
                    .any(|p| p.len() >= 20 && p[..20] == quote[..20] && &p[12..16] == to);
                assert!(ok, "ICMP error about nothing we sent: {body:02x?}");
            }
            t => panic!("ICMP type {t} sent"),
        }
    }
    h.settle_and_check();
});
