//! Inputs the fuzz targets in `ipv4/fuzz/` found wrong, replayed as plain tests (each names
//! the target and the invariant it broke).

mod common;

use common::*;

/// Target `icmp` (and `tunnel`): "ICMP checksum sent". An echo request whose reply is all
/// zeroes (code 0, id 0, seq 0, no payload, or zero payload) got the checksum 0x0000 from the
/// RFC 1624 incremental update where only 0xffff is valid: receivers dropped the reply.
#[test]
fn echo_reply_to_an_all_zero_request_has_a_valid_checksum() {
    for payload in [&[][..], &[0u8; 8][..], &[0u8; 3][..]] {
        let mut h = Harness::new().with_static_peer();
        let out = h.exchange(&ping_frame(0, 0, payload));
        assert_eq!(out.len(), 1, "one echo reply");
        // parse_icmp checks the ICMP checksum (etherparse and RFC 1071).
        let r = parse_icmp(&out[0]);
        assert_eq!(r.icmp.checksum, 0xffff);
        assert_eq!(r.payload, payload);
        h.assert_pool_baseline();
    }
}

/// `tests/malformed.rs`'s mutation fuzz (seed 14): the other case where the incremental update
/// yields 0x0000. id 0xffff, seq 0xffff, no payload: the reply's other words sum to 0xffff, so
/// a full sum (Linux's icmp_reply) gives 0x0000, and blink sent 0xffff (valid to a receiver
/// in one's complement, but not the checksum of the message).
#[test]
fn echo_reply_whose_other_words_sum_to_all_ones_has_checksum_zero() {
    let mut h = Harness::new().with_static_peer();
    let out = h.exchange(&ping_frame(0xffff, 0xffff, &[]));
    assert_eq!(out.len(), 1, "one echo reply");
    let r = parse_icmp(&out[0]);
    assert_eq!(r.icmp.checksum, 0x0000);
    h.assert_pool_baseline();
}

/// Target `defrag`: "delivered packet: the IP total length and the skb disagree". Each
/// fragment was held to 65,535 bytes with its own header length, but the datagram takes the
/// first fragment's: with 40 bytes of options there and none on the last fragment, 60 +
/// 65,515 bytes were reassembled and the 16-bit total length wrapped to 39.
#[test]
fn reassembly_past_65535_with_the_first_headers_options_is_dropped() {
    let mut h = Harness::new().with_static_peer();
    let total = 65_515usize;
    let frag = |off: usize, len: usize, options: usize| {
        let mut p = vec![0u8; 20 + options];
        p[0] = 0x40 | ((20 + options) / 4) as u8;
        let tot = (20 + options + len) as u16;
        p[2..4].copy_from_slice(&tot.to_be_bytes());
        p[4..6].copy_from_slice(&0x4242u16.to_be_bytes());
        let mf = if off + len < total { 0x2000 } else { 0 };
        p[6..8].copy_from_slice(&((off / 8) as u16 | mf).to_be_bytes());
        p[8] = 64;
        p[9] = 253;
        p[12..16].copy_from_slice(&PEER_IP.octets());
        p[16..20].copy_from_slice(&STACK_IP.octets());
        for b in &mut p[20..] {
            *b = 1; // NOPs
        }
        let c = inet_csum(&p);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend((off..off + len).map(|o| o as u8));
        eth_frame(STACK_MAC, PEER_MAC, ETH_P_IP, &p)
    };
    let before = h.mib();
    let mut out = h.exchange(&frag(0, 1472, 40));
    let mut off = 1472;
    while off < total {
        let len = 1472.min(total - off);
        out.extend(h.exchange(&frag(off, len, 0)));
        off += len;
    }
    let d = h.diff(&before);
    assert!(out.is_empty(), "nothing answered: {} frames", out.len());
    assert_eq!(d.get("Ip.ReasmOKs"), None, "{d:?}");
    assert_eq!(d.get("Ip.ReasmFails"), Some(&1), "{d:?}");
    assert_eq!(d.get("Drop.Oversize"), Some(&45), "{d:?}");
    h.assert_pool_baseline();
}
