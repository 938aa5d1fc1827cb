//! IP reassembly, structure-aware: up to four datagrams (ids, protocols, lengths up to the
//! 65,535-byte limit and past it) cut into fragments the fuzzer places: any offset and length,
//! more-fragments set or not, headers with options, in any order, duplicated, overlapping,
//! corrupted, interleaved with time passing (the 30 s timeout), with small memory thresholds
//! (the evictor) and a small `ipfrag_max_dist`, and with a raw socket holding clones of the
//! first fragment. Invariants, beyond the harness's: reassembly never holds more than
//! `ipfrag_high_thresh` (or one fragment, when it alone is bigger); a reassembled datagram is
//! delivered with its true length and, unless the fuzzer corrupted one of its fragments, with
//! every byte where the sender put it; nothing is left once `ipfrag_time` passed.
#![no_main]

use blink_ipv4_fuzz::*;
use libfuzzer_sys::fuzz_target;

/// The byte at offset `o` of datagram `id`'s payload.
fn pattern(id: u16, o: usize) -> u8 {
    ((o as u32).wrapping_mul(0x9E37_79B1) >> 24) as u8 ^ (id as u8)
}

struct Dgram {
    id: u16,
    proto: u8,
    src: std::net::Ipv4Addr,
    /// The sender's payload (an ICMP echo, or the pattern).
    content: Vec<u8>,
    /// A fragment with altered bytes was sent.
    dirty: bool,
}

impl Dgram {
    fn byte(&self, o: usize) -> u8 {
        self.content.get(o).copied().unwrap_or_else(|| pattern(self.id, o))
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let cfg = inp.u8();
    let mut opts = HostOpts {
        probes: vec![PROBE_PROTO],
        pool_n: 1024,
        ..Default::default()
    };
    opts.cfg.ipfrag_high_thresh = [1 << 20, 64 << 10, 16 << 10, 2 << 20][(cfg & 3) as usize];
    opts.cfg.ipfrag_low_thresh = opts.cfg.ipfrag_high_thresh * 3 / 4;
    if cfg & 4 != 0 {
        opts.cfg.ipfrag_max_dist = 4;
    }
    if cfg & 8 != 0 {
        opts.raw = vec![PROBE_PROTO, 1];
    }
    // Reassembly stays under ipfrag_high_thresh, but for a single fragment bigger than the
    // threshold by itself (a jumbo fragment against a tiny threshold: the evictor empties
    // everything else and takes it, as Linux does); the harness makes skbs of 8 mbufs at most.
    let high = opts.cfg.ipfrag_high_thresh.max(8 * 2176);
    let mut h = Host::new(opts);
    h.log.lock().unwrap().keep = true;
    h.keep_sent = true;
    // The datagrams.
    let n = 1 + inp.u8() as usize % 4;
    let mut dg: Vec<Dgram> = (0..n)
        .map(|i| {
            let id = inp.u16();
            let proto = inp.pick(&[PROBE_PROTO, PROBE_PROTO, 1, 17]);
            let src = if inp.u8() % 8 == 0 {
                addr(&mut inp, &SRC_ADDRS)
            } else {
                PEER_IP
            };
            let len = match inp.u8() % 8 {
                7 => inp.u16() as usize,
                _ => inp.u16() as usize % 4000,
            };
            let content = if proto == 1 {
                let body: Vec<u8> = (0..len.saturating_sub(8)).map(|o| pattern(id, o)).collect();
                icmp_msg(8, 0, 0x4242_0000 | i as u32, &body)
            } else {
                (0..len).map(|o| pattern(id, o)).collect()
            };
            Dgram {
                id,
                proto,
                src,
                content,
                dirty: false,
            }
        })
        .collect();
    let mut ops = 0;
    while !inp.is_empty() && ops < 96 {
        ops += 1;
        let op = inp.u8();
        match op % 8 {
            0..=3 => {
                // One fragment.
                let d = inp.u8() as usize % n;
                let off = (inp.u16() as usize % 8192) * 8;
                let len = match inp.u8() % 4 {
                    0 => dg[d].content.len().saturating_sub(off),
                    _ => inp.u16() as usize % 1480,
                };
                let mf = match inp.u8() % 4 {
                    0 => true,
                    1 => false,
                    _ => off + len < dg[d].content.len(),
                };
                let words = if inp.u8() % 8 == 0 { inp.u8() % 11 } else { 0 };
                let corrupt = inp.u8() == 0xc5;
                let mut payload: Vec<u8> = (off..off + len).map(|o| dg[d].byte(o)).collect();
                if corrupt && !payload.is_empty() {
                    payload[0] ^= 0xff;
                    dg[d].dirty = true;
                }
                let mut spec = IpSpec::new(dg[d].proto);
                spec.id = dg[d].id;
                spec.src = dg[d].src;
                spec.frag_off = ((off / 8) as u16 & 0x1fff) | if mf { 0x2000 } else { 0 };
                spec.options = vec![1; words as usize * 4]; // NOPs
                spec.ihl = 5 + words;
                let ip = spec.build(&payload);
                h.inject(&eth_frame(STACK_MAC, PEER_MAC, ETH_P_IP, &ip));
            }
            4 | 5 => {
                // A whole datagram in fragments of one size, in order or reversed.
                let d = inp.u8() as usize % n;
                let size = (8 + (inp.u16() as usize % 1480)) & !7;
                let reverse = inp.bool();
                let total = dg[d].content.len();
                let mut offs: Vec<usize> = (0..total.max(1)).step_by(size).collect();
                if reverse {
                    offs.reverse();
                }
                for off in offs {
                    let end = (off + size).min(total);
                    let payload: Vec<u8> = (off..end).map(|o| dg[d].byte(o)).collect();
                    let mut spec = IpSpec::new(dg[d].proto);
                    spec.id = dg[d].id;
                    spec.src = dg[d].src;
                    spec.frag_off = ((off / 8) as u16 & 0x1fff) | if end < total { 0x2000 } else { 0 };
                    h.inject(&eth_frame(STACK_MAC, PEER_MAC, ETH_P_IP, &spec.build(&payload)));
                    assert!(h.stack.frags.mem() <= high, "reassembly over ipfrag_high_thresh");
                }
            }
            6 => h.advance(inp.u16() as u64 * 4),
            _ => raw_release(&mut h.stack),
        }
        assert!(h.stack.frags.mem() <= high, "reassembly over ipfrag_high_thresh");
    }
    // What the probe protocol got: each reassembled datagram at its true length, its bytes
    // where the sender put them.
    let log = h.log.lock().unwrap();
    for (iph, payload) in &log.packets {
        let id = u16::from_be_bytes([iph[4], iph[5]]);
        let src = std::net::Ipv4Addr::new(iph[12], iph[13], iph[14], iph[15]);
        assert!(
            iph.len() + payload.len() <= 65535,
            "datagram over 65,535 bytes delivered"
        );
        let Some(d) = dg.iter().find(|d| d.id == id && d.src == src && d.proto == iph[9]) else {
            continue;
        };
        if d.dirty
            || dg
                .iter()
                .filter(|x| x.id == id && x.src == src && x.proto == iph[9])
                .count()
                > 1
        {
            continue;
        }
        for (o, &b) in payload.iter().enumerate() {
            assert_eq!(b, d.byte(o), "reassembled datagram {id:#x}: byte {o} moved");
        }
    }
    drop(log);
    h.settle_and_check();
});
