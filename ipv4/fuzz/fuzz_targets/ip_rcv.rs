//! `ip_rcv` and local delivery: IPv4 headers with options, lying lengths, bad checksums,
//! martian addresses, fragments, every protocol number (a probe protocol checks what it is
//! handed; a raw hook keeps clones so buffers end up shared), frames split over several
//! mbufs, and time passing. Invariants: see the harness (`blink_ipv4_fuzz`).
#![no_main]

use blink_ipv4_fuzz::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let cfg = inp.u8();
    let mut opts = HostOpts {
        probes: vec![PROBE_PROTO, 6, 17],
        static_peer: cfg & 1 == 0,
        ..Default::default()
    };
    if cfg & 2 != 0 {
        opts.raw = vec![1, PROBE_PROTO, 89];
    }
    let mut h = Host::new(opts);
    let mut ops = 0;
    while !inp.is_empty() && ops < 64 {
        ops += 1;
        match inp.u8() % 8 {
            0..=3 => {
                let proto = inp.pick(&[1, PROBE_PROTO, 6, 17, 4, 47, 89, 1]);
                let spec = IpSpec::decode(&mut inp, proto);
                let mut payload = inp.blob(1);
                if inp.u8() == 0xff {
                    // A big datagram: the payload repeated up to a length.
                    let want = (inp.u16() % 6000) as usize;
                    let seed = payload.clone();
                    payload = seed
                        .iter()
                        .copied()
                        .cycle()
                        .take(if seed.is_empty() { 0 } else { want })
                        .collect();
                }
                if spec.proto == 1 && payload.len() >= 4 && inp.bool() {
                    // A valid ICMP checksum, so the message gets past icmp_rcv's check.
                    payload[2] = 0;
                    payload[3] = 0;
                    let c = inet_csum(&payload);
                    payload[2..4].copy_from_slice(&c.to_be_bytes());
                }
                let dst = eth_dst(&mut inp);
                let frame = eth_frame(dst, PEER_MAC, ETH_P_IP, &spec.build(&payload));
                let nsplit = inp.u8() % 4;
                let splits: Vec<usize> = (0..nsplit).map(|_| inp.u16() as usize % (frame.len() + 1)).collect();
                h.inject_split(&frame, &splits);
            }
            4 => {
                let dst = eth_dst(&mut inp);
                let ethertype = if inp.bool() { ETH_P_IP } else { inp.u16() };
                let body = inp.blob(1);
                h.inject(&eth_frame(dst, PEER_MAC, ethertype, &body));
            }
            5 => h.advance(inp.u16() as u64),
            6 => raw_release(&mut h.stack),
            _ => h.poll(),
        }
    }
    h.settle_and_check();
});
