//! TCP header and options parsing, checked against an independent reading of the rules
//! `TcpOptions::parse` documents (Linux's `tcp_parse_options`): EOL stops, NOP skips, a length
//! below 2 or past the end stops, a wrong length skips the option, a repeated option wins,
//! MSS (non-zero) / window scale (clamped to 14) / SACK-permitted count only on a SYN, TS needs
//! 10 bytes, SACK 2 + 8n with 1 <= n <= 4. Then: what `emit` writes parses back to the same
//! options, the header view never panics and agrees with the bytes, and the checksum of a
//! segment held in pieces is the RFC 1071 sum of the whole.
#![no_main]

use blink_ipv4_fuzz::{l4_csum, Input};
use blink_tcp::tcphdr::*;
use libfuzzer_sys::fuzz_target;

/// The reference reading of the option rules.
fn reference(opts: &[u8], syn: bool) -> TcpOptions {
    let mut o = TcpOptions::default();
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => break,
            1 => {
                i += 1;
                continue;
            }
            kind => {
                if i + 1 >= opts.len() {
                    break;
                }
                let size = opts[i + 1] as usize;
                if size < 2 || i + size > opts.len() {
                    break;
                }
                let b = &opts[i + 2..i + size];
                match (kind, size) {
                    (2, 4) if syn => {
                        let m = u16::from_be_bytes([b[0], b[1]]);
                        if m != 0 {
                            o.mss = Some(m);
                        }
                    }
                    (3, 3) if syn => o.wscale = Some(b[0].min(14)),
                    (4, 2) if syn => o.sack_ok = true,
                    (8, 10) => {
                        o.ts = Some((
                            u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                            u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
                        ))
                    }
                    (5, s) if s >= 10 && (s - 2) % 8 == 0 && (s - 2) / 8 <= 4 => {
                        let n = (s - 2) / 8;
                        for k in 0..n {
                            let q = &b[8 * k..8 * k + 8];
                            o.sack[k] = SackBlock {
                                start: u32::from_be_bytes([q[0], q[1], q[2], q[3]]),
                                end: u32::from_be_bytes([q[4], q[5], q[6], q[7]]),
                            };
                        }
                        o.num_sacks = n as u8;
                    }
                    _ => {}
                }
                i += size;
            }
        }
    }
    o
}

/// What two parses must agree on (SACK blocks past `num_sacks` are left over from a longer
/// earlier SACK option in both, and do not count).
fn key(o: &TcpOptions) -> (Option<u16>, Option<u8>, bool, Option<(u32, u32)>, Vec<SackBlock>) {
    (o.mss, o.wscale, o.sack_ok, o.ts, o.sack_blocks().to_vec())
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let syn = inp.bool();
    let olen = inp.u8() as usize % 41;
    let opts = inp.bytes(olen).to_vec();
    // 1. Options: blink's parser against the reference.
    let o = TcpOptions::parse(&opts, syn);
    assert_eq!(key(&o), key(&reference(&opts, syn)), "options {opts:02x?} (syn {syn})");
    assert!(o.num_sacks as usize <= TCP_NUM_SACKS);
    // 2. Emit and parse back.
    let mut buf = [0u8; 40];
    let n = o.emit(&mut buf);
    assert_eq!(n, o.len());
    assert!(n <= 40 && n % 4 == 0);
    let back = TcpOptions::parse(&buf[..n], syn);
    assert_eq!(
        (back.mss, back.wscale, back.sack_ok, back.ts),
        (o.mss, o.wscale, o.sack_ok, o.ts)
    );
    let kept = back.num_sacks as usize;
    assert!(kept <= o.num_sacks as usize && back.sack_blocks() == &o.sack_blocks()[..kept]);
    // 3. The header view over arbitrary bytes (the rest of the input).
    let raw = inp.bytes(usize::MAX);
    let th = TcpHdr::new_unchecked(raw);
    let _ = th.to_string();
    if let Ok(h) = TcpHdr::new_checked(raw) {
        let hl = h.header_len();
        assert!((20..=60).contains(&hl) && hl <= raw.len());
        assert_eq!(hl, (raw[12] >> 4) as usize * 4);
        assert_eq!(h.options(), &raw[20..hl]);
        assert_eq!(h.payload(), &raw[hl..]);
        assert_eq!(h.seq(), u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]));
        assert_eq!(h.flags() & 0x3f, raw[13] & 0x3f);
        let _ = TcpOptions::parse(h.options(), h.syn());
    } else if raw.len() >= 20 {
        let hl = (raw[12] >> 4) as usize * 4;
        assert!(hl < 20 || hl > raw.len(), "a valid header refused");
    }
    // 4. Checksum over pieces, cut where the input says.
    let (src, dst) = ([10, 0, 0, 2], [10, 0, 0, 1]);
    if raw.len() <= 65535 {
        let cut = if raw.is_empty() {
            0
        } else {
            (opts.len() * 7) % raw.len()
        };
        let (a, b) = raw.split_at(cut);
        let c = tcp_v4_check(src, dst, &[a, b]);
        let mut seg = raw.to_vec();
        if seg.len() >= 18 {
            seg[16..18].copy_from_slice(&c.to_be_bytes());
            let z = l4_csum(src.into(), dst.into(), 6, &seg);
            // The stored checksum, over a segment whose checksum field was zero, verifies —
            // unless the original field was not zero (then the sum includes it twice).
            if raw[16] == 0 && raw[17] == 0 {
                assert_eq!(z, 0, "tcp_v4_check of {raw:02x?}");
                assert!(tcp_v4_verify(src, dst, &[&seg]));
            }
        }
    }
});
